//! Buckets in a directory: one subdirectory per bucket, one file per key (both
//! names percent-encoded). Writes go to a temporary file renamed into place, so a
//! crash never leaves half a value; the data survives a host restart.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Backend, KvError, KvResult, counter};

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
        self.root.join(encode(bucket))
    }

    fn path(&self, bucket: &str, key: &str) -> PathBuf {
        self.bucket_dir(bucket).join(encode(key))
    }
}

fn io(e: std::io::Error) -> KvError {
    KvError::Other(format!("filesystem: {e}"))
}

/// Any string as a file name: `[A-Za-z0-9_-]` kept, every other byte `%XX`.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn decode(file: &str) -> Option<String> {
    let mut out = Vec::new();
    let mut bytes = file.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
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
        let dir = self.bucket_dir(bucket);
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let path = self.path(bucket, key);
        let tmp = dir.join(format!(".{}.{}", encode(key), uuid_like()));
        tokio::fs::write(&tmp, value).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }

    async fn delete(&self, bucket: &str, key: &str) -> KvResult<()> {
        match tokio::fs::remove_file(self.path(bucket, key)).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
            _ => Ok(()),
        }
    }

    async fn keys(&self, bucket: &str) -> KvResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut entries = match tokio::fs::read_dir(self.bucket_dir(bucket)).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
            Err(e) => return Err(io(e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            if let Some(name) = entry.file_name().to_str().filter(|n| !n.starts_with('.')).and_then(decode) {
                keys.push(name);
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64> {
        let _one_at_a_time = self.increments.lock().await;
        let sum = counter(self.get(bucket, key).await?.as_deref())?.wrapping_add(delta);
        self.set(bucket, key, sum.to_string().into_bytes()).await?;
        Ok(sum)
    }
}

/// A name part unique enough for a temporary file.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["plain", "with space", "a/b", "..", "ünï", "%41"] {
            let file = encode(name);
            assert!(!file.contains('/') && file != ".." && !file.starts_with('.'), "{file}");
            assert_eq!(decode(&file).as_deref(), Some(name));
        }
    }
}
