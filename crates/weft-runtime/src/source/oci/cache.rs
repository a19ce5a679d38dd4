//! Pulled artifacts on disk, by digest:
//!
//! ```text
//! <root>/blobs/sha256/<hex>        layers, verified again when read
//! <root>/manifests/sha256/<hex>    manifests
//! <root>/tags/<registry>/<repository>/<tag>   the manifest digest a tag had
//! ```
//!
//! A tag is resolved once and then read from here (Kubernetes' `IfNotPresent`):
//! a second start pulls nothing. `weft oci pull` resolves tags again.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::reference::Reference;

#[derive(Debug, Clone)]
pub struct OciCache {
    root: PathBuf,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl OciCache {
    pub fn new(root: PathBuf) -> OciCache {
        OciCache { root }
    }

    fn by_digest(&self, kind: &str, digest: &str) -> PathBuf {
        // Digests are checked (`sha256:` + hex) before they get here.
        self.root.join(kind).join("sha256").join(digest.trim_start_matches("sha256:"))
    }

    fn tag_path(&self, reference: &Reference, tag: &str) -> PathBuf {
        // Registry, repository and tag passed `Reference::parse`: no `..`, no
        // empty parts, nothing but a file name in the tag.
        self.root.join("tags").join(&reference.registry).join(&reference.repository).join(tag)
    }

    /// A blob whose bytes still have its digest; one that does not is removed.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.verified(&self.by_digest("blobs", digest), digest)
    }

    pub fn manifest(&self, digest: &str) -> Option<Vec<u8>> {
        self.verified(&self.by_digest("manifests", digest), digest)
    }

    fn verified(&self, path: &Path, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(path).ok()?;
        if sha256_digest(&bytes) == digest {
            return Some(bytes);
        }
        tracing::warn!(path = %path.display(), "a cached OCI blob does not match its digest; fetching it again");
        let _ = std::fs::remove_file(path);
        None
    }

    pub fn put_blob(&self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.by_digest("blobs", digest), bytes)
    }

    pub fn put_manifest(&self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.by_digest("manifests", digest), bytes)
    }

    /// The manifest digest `reference`'s tag had when last resolved.
    pub fn tag(&self, reference: &Reference) -> Option<String> {
        let tag = reference.tag.as_deref()?;
        let digest = std::fs::read_to_string(self.tag_path(reference, tag)).ok()?;
        super::reference::check_digest(digest.trim()).ok().map(|()| digest.trim().to_string())
    }

    pub fn put_tag(&self, reference: &Reference, digest: &str) -> std::io::Result<()> {
        match reference.tag.as_deref() {
            Some(tag) => write_atomically(&self.tag_path(reference, tag), digest.as_bytes()),
            None => Ok(()),
        }
    }
}

/// Writes to a temporary file beside `path`, then renames: a reader sees the
/// old file or the whole new one, never a part.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache paths have a parent");
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
