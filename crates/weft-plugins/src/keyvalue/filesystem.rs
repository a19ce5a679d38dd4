//! Buckets in a directory: one subdirectory per bucket, one file per key (both
//! names percent-encoded). Writes go to a temporary file renamed into place, so a
//! crash never leaves half a value; the data survives a host restart.
//!
//! A key whose encoded name is longer than a file name may be is split: every
//! full [`NAME_MAX`]-byte piece but the last becomes a directory named `+<piece>`
//! (`+` never appears in an encoded name), the last piece names the file.

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
        let encoded = encode(key);
        let mut path = self.bucket_dir(bucket);
        let mut rest = encoded.as_str();
        while rest.len() > NAME_MAX {
            let (piece, tail) = rest.split_at(NAME_MAX);
            path.push(format!("{CONTINUED}{piece}"));
            rest = tail;
        }
        path.push(rest);
        path
    }
}

/// The longest file name written: most filesystems allow 255 bytes.
const NAME_MAX: usize = 200;

/// Starts the name of a directory holding the rest of longer key names.
const CONTINUED: char = '+';

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
        let path = self.path(bucket, key);
        let dir = path.parent().expect("a key's file is inside its bucket");
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let tmp = dir.join(format!(".tmp-{}", uuid_like()));
        tokio::fs::write(&tmp, value).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }

    async fn delete(&self, bucket: &str, key: &str) -> KvResult<()> {
        let path = self.path(bucket, key);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        // Continuation directories left empty go too (removing one that is not
        // empty fails, which is what stops the climb).
        let bucket_dir = self.bucket_dir(bucket);
        for dir in path.ancestors().skip(1).take_while(|d| *d != bucket_dir) {
            if tokio::fs::remove_dir(dir).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    async fn keys(&self, bucket: &str) -> KvResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut pending = vec![(self.bucket_dir(bucket), String::new())];
        while let Some((dir, prefix)) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(io)? {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
                if let Some(piece) = name.strip_prefix(CONTINUED) {
                    pending.push((entry.path(), format!("{prefix}{piece}")));
                } else if !name.starts_with('.')
                    && let Some(key) = decode(&format!("{prefix}{name}"))
                {
                    keys.push(key);
                }
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
    fn long_keys_spill_into_continuation_directories() {
        let fs = Filesystem { root: PathBuf::from("/kv"), increments: Mutex::new(()) };
        let key = "é".repeat(150); // 300 bytes, 900 encoded
        let path = fs.path("b", &key);
        let names: Vec<String> = path.iter().skip(3).map(|n| n.to_str().unwrap().to_string()).collect();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(names.iter().all(|n| n.len() <= NAME_MAX + 1), "{names:?}");
        assert!(names[..4].iter().all(|n| n.starts_with(CONTINUED)) && !names[4].starts_with(CONTINUED));
        let joined: String = names.iter().map(|n| n.trim_start_matches(CONTINUED)).collect();
        assert_eq!(decode(&joined).as_deref(), Some(key.as_str()));
        assert_eq!(fs.path("b", "short"), PathBuf::from("/kv/b/short"));
    }

    #[test]
    fn names_round_trip() {
        for name in ["plain", "with space", "a/b", "..", "ünï", "%41"] {
            let file = encode(name);
            assert!(!file.contains('/') && file != ".." && !file.starts_with('.'), "{file}");
            assert_eq!(decode(&file).as_deref(), Some(name));
        }
    }
}
