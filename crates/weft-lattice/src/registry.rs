//! The lattice's record of its hosts: each host keeps its last heartbeat in the
//! JetStream key-value bucket `weft_hosts` (key: the host id), so that a host
//! that stops answering (killed, cut off) is still known, and shown as lost once
//! it has missed [`MISSED_BEATS`] heartbeats. A host that stops cleanly removes its
//! entry. Without JetStream there is no record, and only live hosts are known.

use std::time::Duration;

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::wire;

pub const BUCKET: &str = "weft_hosts";

/// Heartbeats a host may miss before it counts as lost.
pub const MISSED_BEATS: u32 = 3;

/// Entries of hosts gone without a word expire after this.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What a host records of itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    pub heartbeat: wire::HostHeartbeat,
    pub interval_ms: u64,
}

/// A known host, as `weft host list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownHost {
    /// `live` or `lost`.
    pub state: String,
    /// Seconds since its last heartbeat (0 for one that answered just now).
    pub last_seen_secs: u64,
    pub heartbeat: wire::HostHeartbeat,
}

#[derive(Clone)]
pub struct Registry {
    store: async_nats::jetstream::kv::Store,
}

impl Registry {
    /// The bucket, created if missing; an error when the server has no JetStream.
    pub async fn open(client: &async_nats::Client, lattice: &crate::Lattice) -> Result<Registry, String> {
        let jetstream = async_nats::jetstream::new(client.clone());
        let bucket = lattice.bucket(BUCKET);
        let store = match jetstream.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                weft_plugins::nats_client::create_key_value(client, &bucket, FORGET_AFTER).await?;
                jetstream.get_key_value(&bucket).await.map_err(|e| format!("NATS: {e}"))?
            }
        };
        Ok(Registry { store })
    }

    pub async fn record(&self, record: &HostRecord) -> Result<(), String> {
        let value = serde_json::to_vec(record).expect("a record serialises");
        self.store.put(&record.heartbeat.id, value.into()).await.map(drop).map_err(|e| format!("NATS: {e}"))
    }

    pub async fn forget(&self, host_id: &str) -> Result<(), String> {
        self.store.purge(host_id).await.map_err(|e| format!("NATS: {e}"))
    }

    /// Every recorded host, live or lost, by when it was last seen.
    pub async fn hosts(&self) -> Result<Vec<KnownHost>, String> {
        let nats = |e: &dyn std::fmt::Display| format!("NATS: {e}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut keys = self.store.keys().await.map_err(|e| nats(&e))?;
        let mut hosts = Vec::new();
        while let Some(key) = keys.try_next().await.map_err(|e| nats(&e))? {
            let Some(entry) = self.store.entry(&key).await.map_err(|e| nats(&e))? else { continue };
            let Ok(record) = serde_json::from_slice::<HostRecord>(&entry.value) else { continue };
            let seen = u64::try_from(entry.created.unix_timestamp()).unwrap_or(0);
            let last_seen_secs = now.saturating_sub(seen);
            let allowed = Duration::from_millis(record.interval_ms) * MISSED_BEATS;
            let lost = Duration::from_secs(last_seen_secs) > allowed.max(Duration::from_secs(1));
            let state = if lost { "lost" } else { "live" };
            hosts.push(KnownHost { state: state.into(), last_seen_secs, heartbeat: record.heartbeat });
        }
        hosts.sort_by_key(|h| h.last_seen_secs);
        Ok(hosts)
    }
}
