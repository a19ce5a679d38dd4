//! Containers as NATS JetStream object stores (one per container), which chunk
//! objects of any size.

use std::collections::HashMap;
use std::path::Path;

use async_nats::jetstream;
use async_nats::jetstream::object_store::{self, InfoErrorKind, ObjectStore};
use async_trait::async_trait;
use futures_util::TryStreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use super::{Backend, BlobResult, ObjectInfo, Reader};
use crate::budget::Budget;
use crate::nats_client;

pub struct Nats {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    stores: Mutex<HashMap<String, ObjectStore>>,
}

fn nats(e: impl std::fmt::Display) -> String {
    format!("NATS: {e}")
}

/// A bucket name NATS accepts: `[A-Za-z0-9-]` kept, every other byte `_XX`.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("_{b:02X}") })
        .collect()
}

impl Nats {
    pub async fn connect(url: &str) -> anyhow::Result<Nats> {
        let client = nats_client::connect(url, "blobstore").await?;
        let mut jetstream = jetstream::new(client.clone());
        jetstream.set_timeout(std::time::Duration::from_secs(5));
        Ok(Nats { client, jetstream, stores: Mutex::default() })
    }

    /// The stream behind a container: its creation time, if it exists.
    async fn stream_created(&self, container: &str) -> BlobResult<Option<u64>> {
        nats_client::ready(&self.client)?;
        let reply = self
            .client
            .request(format!("$JS.API.STREAM.INFO.OBJ_{}", encode(container)), "".into())
            .await
            .map_err(nats)?;
        let info: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(nats)?;
        if info.get("error").is_some() {
            return Ok(None);
        }
        let created = info["created"].as_str().unwrap_or_default();
        // RFC 3339: read the date and time fields; the seconds since the epoch suffice.
        Ok(Some(rfc3339_seconds(created).unwrap_or(0)))
    }

    async fn store(&self, container: &str) -> BlobResult<ObjectStore> {
        nats_client::ready(&self.client)?;
        let name = encode(container);
        if let Some(store) = self.stores.lock().await.get(&name) {
            return Ok(store.clone());
        }
        // Looked up without the lock: a slow server stalls only this container.
        let store = self
            .jetstream
            .get_object_store(&name)
            .await
            .map_err(|_| format!("container `{container}` does not exist"))?;
        self.stores.lock().await.insert(name, store.clone());
        Ok(store)
    }
}

/// `2026-11-25T20:00:50.409Z` → seconds since the Unix epoch.
fn rfc3339_seconds(text: &str) -> Option<u64> {
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (h, min) = (t.next()?.parse::<i64>().ok()?, t.next()?.parse::<i64>().ok()?);
    let s = t.next()?.get(..2)?.parse::<i64>().ok()?;
    // Days from the civil date (proleptic Gregorian), as in Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + min * 60 + s).ok()
}

/// What the store knows of a live object: `None` if there is none (or it was
/// deleted); an error only when NATS could not say.
async fn live_object(store: &ObjectStore, object: &str) -> BlobResult<Option<object_store::ObjectInfo>> {
    match store.info(object).await {
        Ok(info) => Ok(Some(info).filter(|i| !i.deleted)),
        Err(e) if matches!(e.kind(), InfoErrorKind::NotFound | InfoErrorKind::InvalidName) => Ok(None),
        Err(e) => Err(nats(e)),
    }
}

#[async_trait]
impl Backend for Nats {
    async fn create_container(&self, name: &str) -> BlobResult<()> {
        nats_client::ready(&self.client)?;
        let bucket = encode(name);
        // A plain JetStream API request: async-nats 0.49's `create_object_store`
        // first reads account info in a shape nats-server 2.9 does not send.
        let config = serde_json::json!({
            "name": format!("OBJ_{bucket}"),
            "subjects": [format!("$O.{bucket}.C.>"), format!("$O.{bucket}.M.>")],
            "retention": "limits",
            "max_consumers": -1,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msg_size": -1,
            "storage": "file",
            "discard": "new",
            "num_replicas": 1,
            "allow_rollup_hdrs": true,
            "allow_direct": true,
        });
        let reply = self
            .client
            .request(format!("$JS.API.STREAM.CREATE.OBJ_{bucket}"), config.to_string().into())
            .await
            .map_err(nats)?;
        let answer: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(nats)?;
        match answer.get("error") {
            Some(e) if e["err_code"] == 10058 => Err(format!("container `{name}` already exists")),
            Some(e) => Err(format!("NATS: cannot create container `{name}`: {e}")),
            None => Ok(()),
        }
    }

    async fn container(&self, name: &str) -> BlobResult<Option<u64>> {
        self.stream_created(name).await
    }

    async fn delete_container(&self, name: &str) -> BlobResult<()> {
        nats_client::ready(&self.client)?;
        self.stores.lock().await.remove(&encode(name));
        self.jetstream.delete_object_store(encode(name)).await.map_err(nats)
    }

    async fn put(&self, container: &str, object: &str, staged: &Path) -> BlobResult<()> {
        let store = self.store(container).await?;
        let mut file = tokio::fs::File::open(staged).await.map_err(|e| e.to_string())?;
        store.put(object, &mut file).await.map_err(nats)?;
        Ok(())
    }

    async fn read(&self, container: &str, object: &str, start: u64, len: u64) -> BlobResult<Reader> {
        let store = self.store(container).await?;
        let mut value = store.get(object).await.map_err(|_| format!("object `{container}/{object}` does not exist"))?;
        if start > 0 {
            tokio::io::copy(&mut (&mut value).take(start), &mut tokio::io::sink()).await.map_err(nats)?;
        }
        Ok(Box::new(value.take(len)))
    }

    async fn info(&self, container: &str, object: &str) -> BlobResult<Option<ObjectInfo>> {
        let store = self.store(container).await?;
        Ok(live_object(&store, object).await?.map(|i| ObjectInfo {
            size: i.size as u64,
            created_at: i.modified.map(|t| t.unix_timestamp().max(0) as u64).unwrap_or(0),
        }))
    }

    async fn list(&self, container: &str, budget: &Budget) -> BlobResult<Vec<String>> {
        let store = self.store(container).await?;
        let mut list = store.list().await.map_err(nats)?;
        let mut names = Vec::new();
        // An error part-way fails the listing: a partial one would look whole.
        while let Some(info) = list.try_next().await.map_err(nats)? {
            if !info.deleted {
                budget.charge(info.name.len() as u64, "the listing")?;
                names.push(info.name);
            }
        }
        names.sort();
        Ok(names)
    }

    async fn delete(&self, container: &str, object: &str) -> BlobResult<()> {
        let store = self.store(container).await?;
        match live_object(&store, object).await? {
            Some(_) => store.delete(object).await.map_err(nats),
            None => Ok(()),
        }
    }

    async fn copy(&self, from: (&str, &str), to: (&str, &str)) -> BlobResult<()> {
        let source = self.store(from.0).await?;
        let target = self.store(to.0).await?;
        let mut value =
            source.get(from.1).await.map_err(|_| format!("object `{}/{}` does not exist", from.0, from.1))?;
        target.put(to.1, &mut value).await.map_err(nats)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(super::rfc3339_seconds("2026-11-25T20:00:50.409114669Z"), Some(1_795_636_850));
    }
}
