//! Buckets in NATS JetStream key-value stores. The client reconnects on its own:
//! while the server is away operations fail at once with an error naming NATS,
//! and they succeed again once it is back, without restarting the host.

use std::collections::HashMap;

use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use tokio::sync::Mutex;

use super::{Backend, KvError, KvResult, add_to_counter};
use crate::budget::Budget;
use crate::nats_client;

pub struct Nats {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stores: Mutex<HashMap<String, kv::Store>>,
}

impl Nats {
    pub async fn connect(url: &str) -> anyhow::Result<Nats> {
        let client = nats_client::connect(url, "keyvalue").await?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(std::time::Duration::from_secs(2));
        Ok(Nats { client, jetstream, stores: Mutex::default() })
    }

    /// The JetStream store for a bucket, created on first use.
    async fn store(&self, bucket: &str) -> KvResult<kv::Store> {
        nats_client::ready(&self.client).map_err(KvError::Other)?;
        let name = encode(bucket, false);
        if let Some(store) = self.stores.lock().await.get(&name) {
            return Ok(store.clone());
        }
        // Looked up without the lock, so a slow server stalls only this bucket's
        // first use; two first uses at once both find (or create) the same bucket.
        let store = match self.jetstream.get_key_value(&name).await {
            Ok(store) => store,
            Err(_) => {
                nats_client::create_key_value(&self.client, &name, std::time::Duration::ZERO)
                    .await
                    .map_err(KvError::Other)?;
                self.jetstream.get_key_value(&name).await.map_err(nats)?
            }
        };
        self.stores.lock().await.insert(name, store.clone());
        Ok(store)
    }
}

fn nats(e: impl std::fmt::Display) -> KvError {
    KvError::Other(format!("NATS: {e}"))
}

/// A bucket or key name NATS accepts: `[A-Za-z0-9-]` (and, in keys, `/` and `=`)
/// kept, every other byte `_XX`.
fn encode(name: &str, key: bool) -> String {
    name.bytes()
        .map(|b| {
            let plain = b.is_ascii_alphanumeric() || b == b'-' || (key && (b == b'/' || b == b'='));
            if plain { (b as char).to_string() } else { format!("_{b:02X}") }
        })
        .collect()
}

fn decode(name: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = name.bytes();
    while let Some(b) = bytes.next() {
        if b == b'_' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[async_trait]
impl Backend for Nats {
    async fn get(&self, bucket: &str, key: &str, budget: &Budget) -> KvResult<Option<Vec<u8>>> {
        let store = self.store(bucket).await?;
        // The server gives no size first; a value is at most its `max_payload`.
        let Some(value) = store.get(encode(key, true)).await.map_err(nats)? else { return Ok(None) };
        budget.charge(value.len() as u64, "the value").map_err(KvError::Other)?;
        Ok(Some(value.to_vec()))
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> KvResult<()> {
        let store = self.store(bucket).await?;
        store.put(encode(key, true), value.into()).await.map_err(nats)?;
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> KvResult<()> {
        let store = self.store(bucket).await?;
        store.delete(encode(key, true)).await.map_err(nats)
    }

    async fn exists(&self, bucket: &str, key: &str) -> KvResult<bool> {
        let store = self.store(bucket).await?;
        Ok(store.get(encode(key, true)).await.map_err(nats)?.is_some())
    }

    async fn keys(&self, bucket: &str, budget: &Budget) -> KvResult<Vec<String>> {
        let store = self.store(bucket).await?;
        let mut stream = store.keys().await.map_err(nats)?;
        let mut keys = Vec::new();
        // An error part-way fails the listing: a partial one would look whole.
        while let Some(key) = stream.try_next().await.map_err(nats)? {
            budget.charge(key.len() as u64, "the listing").map_err(KvError::Other)?;
            // A key no weft host wrote (not in this encoding) is not listed.
            keys.extend(decode(&key));
        }
        keys.sort();
        Ok(keys)
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64> {
        let store = self.store(bucket).await?;
        let key = encode(key, true);
        // Compare-and-set on the entry's revision until no one else wrote in between.
        // (nats-server 2.9 answers a lost race with an error the client cannot always
        // parse, so a failure counts as a lost race when the revision moved.)
        loop {
            let entry = store.entry(&key).await.map_err(nats)?;
            let revision = entry.as_ref().map(|e| e.revision);
            let live = entry.as_ref().filter(|e| e.operation == kv::Operation::Put);
            let sum = add_to_counter(live.map(|e| &e.value[..]), delta)?;
            let value = sum.to_string().into_bytes().into();
            let written = match revision {
                Some(revision) => store.update(&key, value, revision).await.map(|_| ()).map_err(|e| e.to_string()),
                None => store.create(&key, value).await.map(|_| ()).map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(sum),
                Err(e) => {
                    let now = store.entry(&key).await.map_err(nats)?.map(|e| e.revision);
                    if now == revision {
                        return Err(KvError::Other(format!("NATS: {e}")));
                    }
                }
            }
        }
    }
}
