//! Where components' bytes come from: files beside the manifest, OCI
//! registries ([`oci`]), and a lattice's store of uploaded components
//! ([`DigestStore`]). Validation fetches every source of a workload at once.

pub mod oci;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::limits::ByteSize;

use self::oci::{OciClient, Progress, PullPolicy, Reference};

/// A component's source, resolved: a path made absolute, a reference parsed.
#[derive(Debug, Clone)]
pub enum Origin {
    File(PathBuf),
    Oci(Reference),
    /// `sha256:…`, from the host's [`DigestStore`].
    Digest(String),
}

impl std::fmt::Display for Origin {
    /// As a manifest writes it (a path shown absolute).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Oci(reference) => write!(f, "oci://{reference}"),
            Origin::Digest(digest) => write!(f, "{}{digest}", crate::manifest::DIGEST_SCHEME),
        }
    }
}

/// Components by digest, where a lattice client put them (weft-lattice: a
/// JetStream object store). The bytes are checked against the digest here.
pub trait DigestStore: Send + Sync {
    /// The bytes stored under `digest`, at most `limit` of them.
    fn fetch<'a>(
        &'a self,
        digest: &'a str,
        limit: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;
}

/// The host's ways of fetching components.
pub struct Sources {
    pub oci: OciClient,
    /// Told of each pull's progress (a terminal shows a bar).
    pub progress: Option<Progress>,
    /// Uploaded components (a host on a lattice).
    pub digests: Option<Arc<dyn DigestStore>>,
}

impl Sources {
    /// The component's bytes, at most `limit` of them.
    pub async fn fetch(&self, origin: &Origin, limit: ByteSize) -> Result<Vec<u8>, String> {
        match origin {
            Origin::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || crate::component::read_source(&path, limit))
                    .await
                    .map_err(|e| format!("reading the source failed: {e}"))?
            }
            Origin::Oci(reference) => {
                let pulled = self
                    .oci
                    .pull(reference, PullPolicy::IfNotPresent, self.progress.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                if pulled.bytes.len() as u64 > limit.0 {
                    return Err(format!("{origin}: the component is larger than the limit of {limit}"));
                }
                Ok(pulled.bytes)
            }
            Origin::Digest(digest) => self.fetch_digest(digest, limit).await.map_err(|e| format!("{origin}: {e}")),
        }
    }

    /// From the blob cache the OCI pulls share, else from the digest store,
    /// checked, then cached.
    async fn fetch_digest(&self, digest: &str, limit: ByteSize) -> Result<Vec<u8>, String> {
        if let Some(bytes) = self.oci.cached_blob(digest).await {
            return Ok(bytes);
        }
        let store =
            self.digests.as_ref().ok_or("this host is on no lattice, so it has no uploaded components to fetch")?;
        let bytes = store.fetch(digest, limit.0).await?;
        let actual = oci::sha256_digest(&bytes);
        if actual != digest {
            return Err(format!("the stored bytes have the digest {actual}; refused"));
        }
        Ok(self.oci.cache_blob(digest, bytes).await)
    }
}
