//! Containers in a directory: one subdirectory per container, one file per object
//! (names encoded by [`crate::filenames`], long ones included). Objects are copied
//! in through a temporary file and renamed into place.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Backend, BlobResult, ObjectInfo, Reader};
use crate::budget::Budget;
use crate::filenames;

pub struct Filesystem {
    root: PathBuf,
}

impl Filesystem {
    pub fn open(root: &Path) -> anyhow::Result<Filesystem> {
        std::fs::create_dir_all(root)
            .map_err(|e| anyhow::anyhow!("blobstore: cannot create {}: {e}", root.display()))?;
        Ok(Filesystem { root: root.to_path_buf() })
    }

    fn dir(&self, container: &str) -> PathBuf {
        self.root.join(filenames::encode(container))
    }

    fn file(&self, container: &str, object: &str) -> PathBuf {
        filenames::path(&self.dir(container), object)
    }

    async fn existing_dir(&self, container: &str) -> BlobResult<PathBuf> {
        let dir = self.dir(container);
        match tokio::fs::metadata(&dir).await {
            Ok(m) if m.is_dir() => Ok(dir),
            _ => Err(format!("container `{container}` does not exist")),
        }
    }
}

fn io(e: std::io::Error) -> String {
    format!("filesystem: {e}")
}

fn seconds(meta: &std::fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()).unwrap_or(0)
}

#[async_trait]
impl Backend for Filesystem {
    async fn create_container(&self, name: &str) -> BlobResult<()> {
        match tokio::fs::create_dir(self.dir(name)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(format!("container `{name}` already exists"))
            }
            Err(e) => Err(io(e)),
        }
    }

    async fn container(&self, name: &str) -> BlobResult<Option<u64>> {
        Ok(tokio::fs::metadata(self.dir(name)).await.ok().filter(|m| m.is_dir()).map(|m| seconds(&m)))
    }

    async fn delete_container(&self, name: &str) -> BlobResult<()> {
        tokio::fs::remove_dir_all(self.existing_dir(name).await?).await.map_err(io)
    }

    async fn put(&self, container: &str, object: &str, staged: &Path) -> BlobResult<()> {
        let dir = self.existing_dir(container).await?;
        let staged = staged.to_path_buf();
        let copy = move |file: &mut std::fs::File| std::io::copy(&mut std::fs::File::open(&staged)?, file).map(|_| ());
        filenames::write(&dir, &self.file(container, object), copy).await.map_err(io)
    }

    async fn read(&self, container: &str, object: &str, start: u64, len: u64) -> BlobResult<Reader> {
        let mut file = tokio::fs::File::open(self.file(container, object))
            .await
            .map_err(|_| format!("object `{container}/{object}` does not exist"))?;
        file.seek(std::io::SeekFrom::Start(start)).await.map_err(io)?;
        Ok(Box::new(file.take(len)))
    }

    async fn info(&self, container: &str, object: &str) -> BlobResult<Option<ObjectInfo>> {
        self.existing_dir(container).await?;
        Ok(tokio::fs::metadata(self.file(container, object))
            .await
            .ok()
            .filter(|m| m.is_file())
            .map(|m| ObjectInfo { size: m.len(), created_at: seconds(&m) }))
    }

    async fn list(&self, container: &str, budget: &Budget) -> BlobResult<Vec<String>> {
        filenames::list(&self.existing_dir(container).await?, budget).await.map_err(io)
    }

    async fn delete(&self, container: &str, object: &str) -> BlobResult<()> {
        let dir = self.existing_dir(container).await?;
        filenames::remove(&dir, &self.file(container, object)).await.map_err(io)
    }

    async fn copy(&self, from: (&str, &str), to: (&str, &str)) -> BlobResult<()> {
        self.existing_dir(to.0).await?;
        let source = self.file(from.0, from.1);
        self.put(to.0, to.1, &source).await.map_err(|e| format!("copy `{}/{}`: {e}", from.0, from.1))
    }

    async fn rename(&self, from: (&str, &str), to: (&str, &str)) -> BlobResult<()> {
        let dir = self.existing_dir(to.0).await?;
        let (source, target) = (self.file(from.0, from.1), self.file(to.0, to.1));
        filenames::rename(&dir, &source, &target).await.map_err(|e| format!("move `{}/{}`: {e}", from.0, from.1))?;
        filenames::prune(&self.dir(from.0), &source).await;
        Ok(())
    }
}
