//! Local files reach remote hosts without a registry: `weft workload start`
//! uploads a manifest's file sources to the JetStream object store
//! `weft_components`, named by their sha256 digest (once: a digest already
//! there is not sent again), and sends the manifest with `digest://sha256:…`
//! sources. Hosts fetch them through [`ComponentStore`] as their
//! [`DigestStore`], check the digest, and cache them like OCI layers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream::object_store::{Config, ObjectStore};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;
use weft_runtime::WorkloadSpec;
use weft_runtime::component::read_source;
use weft_runtime::limits::ByteSize;
use weft_runtime::manifest::{ComponentSpec, Source};
use weft_runtime::source::DigestStore;
use weft_runtime::source::oci::sha256_digest;

pub const BUCKET: &str = "weft_components";

/// The lattice's uploaded components, on one NATS connection.
pub struct ComponentStore {
    client: async_nats::Client,
    /// `weft_components`, or its lattice's.
    name: String,
    bucket: OnceCell<ObjectStore>,
    uploads: AtomicU64,
    downloads: AtomicU64,
}

/// A file source rewritten to a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub component: String,
    pub digest: String,
    pub size: u64,
    /// False when the store had it already.
    pub sent: bool,
}

impl ComponentStore {
    pub fn new(client: async_nats::Client, lattice: &crate::Lattice) -> ComponentStore {
        ComponentStore {
            client,
            name: lattice.bucket(BUCKET),
            bucket: OnceCell::new(),
            uploads: AtomicU64::new(0),
            downloads: AtomicU64::new(0),
        }
    }

    /// Objects sent and fetched so far by this store.
    pub fn counts(&self) -> (u64, u64) {
        (self.uploads.load(Ordering::Relaxed), self.downloads.load(Ordering::Relaxed))
    }

    /// The bucket, created on first use by whoever comes first.
    async fn bucket(&self) -> Result<&ObjectStore, String> {
        self.bucket
            .get_or_try_init(|| async {
                let jetstream = async_nats::jetstream::new(self.client.clone());
                match jetstream.get_object_store(&self.name).await {
                    Ok(store) => Ok(store),
                    Err(_) => jetstream
                        .create_object_store(Config { bucket: self.name.clone(), ..Config::default() })
                        .await
                        .map_err(|e| format!("the JetStream object store `{}` (is JetStream on?): {e}", self.name)),
                }
            })
            .await
    }

    /// Stores `bytes` under their digest unless already there.
    pub async fn upload(&self, bytes: &[u8]) -> Result<(String, bool), String> {
        let digest = sha256_digest(bytes);
        let bucket = self.bucket().await?;
        if bucket.info(&digest).await.is_ok_and(|info| !info.deleted && info.size == bytes.len()) {
            return Ok((digest, false));
        }
        let mut reader = bytes;
        bucket.put(digest.as_str(), &mut reader).await.map_err(|e| format!("uploading {digest}: {e}"))?;
        self.uploads.fetch_add(1, Ordering::Relaxed);
        Ok((digest, true))
    }

    /// Rewrites every file source of `spec` (components and service) to a
    /// digest source, uploading what the store lacks. Other sources stay.
    pub async fn upload_local_sources(
        &self,
        spec: &WorkloadSpec,
        limit: ByteSize,
    ) -> Result<(WorkloadSpec, Vec<Uploaded>), String> {
        let mut sent = spec.clone();
        let mut uploaded = Vec::new();
        let components = sent.components.iter_mut().chain(sent.service.iter_mut());
        for c in components {
            if let Some(done) = self.upload_source(spec, c, limit).await? {
                uploaded.push(done);
            }
        }
        Ok((sent, uploaded))
    }

    async fn upload_source(
        &self,
        spec: &WorkloadSpec,
        c: &mut ComponentSpec,
        limit: ByteSize,
    ) -> Result<Option<Uploaded>, String> {
        let Source::Path(path) = &c.source else { return Ok(None) };
        if path.as_os_str().is_empty() {
            return Ok(None);
        }
        let path = spec.resolve_path(path);
        let bytes = tokio::task::spawn_blocking(move || read_source(&path, limit))
            .await
            .map_err(|e| format!("reading a source failed: {e}"))??;
        let (digest, sent) = self.upload(&bytes).await.map_err(|e| format!("component `{}`: {e}", c.name))?;
        c.source = Source::Digest(digest.clone());
        Ok(Some(Uploaded { component: c.name.clone(), digest, size: bytes.len() as u64, sent }))
    }

    async fn download(&self, digest: &str, limit: u64) -> Result<Vec<u8>, String> {
        let bucket = self.bucket().await?;
        let mut object = bucket.get(digest).await.map_err(|e| match e.kind() {
            async_nats::jetstream::object_store::GetErrorKind::NotFound => {
                format!("not in the lattice's `{}` store (was it uploaded by `weft workload start`?)", self.name)
            }
            _ => format!("fetching from `{}`: {e}", self.name),
        })?;
        if object.info.size as u64 > limit {
            return Err(format!("it is {} bytes, over the limit of {}", object.info.size, ByteSize(limit)));
        }
        self.downloads.fetch_add(1, Ordering::Relaxed);
        let mut bytes = Vec::with_capacity(object.info.size);
        // One byte past the limit tells a lying size from a true one.
        (&mut object)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("fetching from `{}`: {e}", self.name))?;
        if bytes.len() as u64 > limit {
            return Err(format!("it is over the limit of {}", ByteSize(limit)));
        }
        Ok(bytes)
    }
}

impl DigestStore for ComponentStore {
    fn fetch<'a>(
        &'a self,
        digest: &'a str,
        limit: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>> {
        Box::pin(self.download(digest, limit))
    }
}
