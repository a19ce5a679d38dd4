//! Buckets in a directory: one subdirectory per bucket, one file per key (names
//! encoded by [`crate::filenames`], long keys included). Writes go to a temporary
//! file renamed into place, so a crash never leaves half a value; the data
//! survives a host restart.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Backend, COUNTER_MAX_LEN, KvError, KvResult, add_to_counter};
use crate::budget::Budget;
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

    /// The value's file, opened, and its size. Writes replace the file whole
    /// (a rename), so what is read from it is one whole value.
    async fn open_value(&self, bucket: &str, key: &str) -> KvResult<Option<(tokio::fs::File, u64)>> {
        let file = match tokio::fs::File::open(self.path(bucket, key)).await {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let size = file.metadata().await.map_err(io)?.len();
        Ok(Some((file, size)))
    }
}

fn io(e: std::io::Error) -> KvError {
    KvError::Other(format!("filesystem: {e}"))
}

/// At most `max` bytes of `file`.
async fn read(file: tokio::fs::File, max: u64) -> KvResult<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).await.map_err(io)?;
    Ok(bytes)
}

#[async_trait]
impl Backend for Filesystem {
    async fn get(&self, bucket: &str, key: &str, budget: &Budget) -> KvResult<Option<Vec<u8>>> {
        let Some((file, size)) = self.open_value(bucket, key).await? else { return Ok(None) };
        budget.charge(size, "the value").map_err(KvError::Other)?;
        read(file, size).await.map(Some)
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

    async fn exists(&self, bucket: &str, key: &str) -> KvResult<bool> {
        match tokio::fs::metadata(self.path(bucket, key)).await {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io(e)),
        }
    }

    async fn keys(&self, bucket: &str, budget: &Budget) -> KvResult<Vec<String>> {
        filenames::list(&self.bucket_dir(bucket), budget).await.map_err(io)
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64> {
        let _one_at_a_time = self.increments.lock().await;
        // A value longer than any counter is not one: it is not read whole.
        let current = match self.open_value(bucket, key).await? {
            Some((file, _)) => Some(read(file, COUNTER_MAX_LEN + 1).await?),
            None => None,
        };
        let sum = add_to_counter(current.as_deref(), delta)?;
        self.set(bucket, key, sum.to_string().into_bytes()).await?;
        Ok(sum)
    }
}
