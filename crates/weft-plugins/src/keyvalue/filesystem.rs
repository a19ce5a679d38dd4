//! Buckets in a directory: one subdirectory per bucket, one file per key (names
//! encoded by [`crate::filenames`], long keys included). Writes go to a temporary
//! file renamed into place, so a crash never leaves half a value; the data
//! survives a host restart.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Backend, KvError, KvResult, counter};
use crate::filenames;

pub struct Filesystem {
    root: PathBuf,
    /// Serialises increments: read-add-write must not interleave within this host.
    increments: Mutex<()>,
}

impl Filesystem {
    pub fn open(root: &Path) -> anyhow::Result<Filesystem> {
        std::fs::create_dir_all(root)
            .map_err(|e| anyhow::anyhow!("keyvalue: cannot create {}: {e}", root.display()))?;
        Ok(Filesystem { root: root.to_path_buf(), increments: Mutex::new(()) })
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(filenames::encode(bucket))
    }

    fn path(&self, bucket: &str, key: &str) -> PathBuf {
        filenames::path(&self.bucket_dir(bucket), key)
    }
}

fn io(e: std::io::Error) -> KvError {
    KvError::Other(format!("filesystem: {e}"))
}

#[async_trait]
impl Backend for Filesystem {
    async fn get(&self, bucket: &str, key: &str) -> KvResult<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(bucket, key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> KvResult<()> {
        // Buckets come into being with their first key.
        let dir = self.bucket_dir(bucket);
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let write = move |file: &mut std::fs::File| std::io::Write::write_all(file, &value);
        filenames::write(&dir, &self.path(bucket, key), write).await.map_err(io)
    }

    async fn delete(&self, bucket: &str, key: &str) -> KvResult<()> {
        filenames::remove(&self.bucket_dir(bucket), &self.path(bucket, key)).await.map_err(io)
    }

    async fn keys(&self, bucket: &str) -> KvResult<Vec<String>> {
        filenames::list(&self.bucket_dir(bucket)).await.map_err(io)
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64> {
        let _one_at_a_time = self.increments.lock().await;
        let sum = counter(self.get(bucket, key).await?.as_deref())?.wrapping_add(delta);
        self.set(bucket, key, sum.to_string().into_bytes()).await?;
        Ok(sum)
    }
}
