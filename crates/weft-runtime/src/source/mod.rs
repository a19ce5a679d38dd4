//! Where components' bytes come from: files beside the manifest, and OCI
//! registries ([`oci`]). Validation fetches every source of a workload at once.

pub mod oci;

use std::path::PathBuf;

use crate::limits::ByteSize;

use self::oci::{OciClient, Progress, PullPolicy, Reference};

/// A component's source, resolved: a path made absolute, a reference parsed.
#[derive(Debug, Clone)]
pub enum Origin {
    File(PathBuf),
    Oci(Reference),
}

/// The host's ways of fetching components.
pub struct Sources {
    pub oci: OciClient,
    /// Told of each pull's progress (a terminal shows a bar).
    pub progress: Option<Progress>,
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
                    return Err(format!("oci://{reference}: the component is larger than the limit of {limit}"));
                }
                Ok(pulled.bytes)
            }
        }
    }
}
