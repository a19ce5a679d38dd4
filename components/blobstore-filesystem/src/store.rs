//! The root directory and the files under it.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use wasip2::io::streams::InputStream;

use crate::exports::wasi::blobstore::blobstore::ObjectId;
use crate::names;

const STAGING: &str = ".staging";

thread_local! {
    static NEXT_STAGING: Cell<u64> = const { Cell::new(0) };
    /// Files behind streams handed out: a stream must not outlive its file, and a
    /// file cannot be dropped while its stream lives, so they stay open until the
    /// instance ends.
    static OPEN: std::cell::RefCell<Vec<Descriptor>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub struct Root {
    dir: PathBuf,
}

impl Root {
    pub fn get() -> Result<Root, String> {
        let dir = PathBuf::from(std::env::var("BLOBSTORE_ROOT").unwrap_or_else(|_| "/blobs".into()));
        if !dir.is_dir() {
            return Err(format!("the blobstore root {} is not a directory: mount a volume there", dir.display()));
        }
        Ok(Root { dir })
    }

    pub fn container_dir(&self, name: &str) -> Result<PathBuf, String> {
        Ok(self.dir.join(names::encode(name)?))
    }

    pub fn existing_container(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.container_dir(name)?;
        if !dir.is_dir() {
            return Err(format!("container `{name}` does not exist"));
        }
        Ok(dir)
    }

    /// Where an object goes; its container must exist.
    pub fn object_path(&self, id: &ObjectId) -> Result<PathBuf, String> {
        names::object_path(&self.existing_container(&id.container)?, &id.object)
    }

    pub fn existing_object(&self, id: &ObjectId) -> Result<PathBuf, String> {
        let path = self.object_path(id)?;
        if !path.is_file() {
            return Err(format!("object `{}/{}` does not exist", id.container, id.object));
        }
        Ok(path)
    }

    /// A new, unique, empty file in the staging directory.
    pub fn staging_file(&self) -> Result<PathBuf, String> {
        let dir = self.dir.join(STAGING);
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        loop {
            let n = NEXT_STAGING.replace(NEXT_STAGING.get() + 1);
            let path = dir.join(format!("{:016x}-{n}", instance_tag()));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("create {}: {e}", path.display())),
            }
        }
    }

    pub fn open_for_writing(&self, path: &Path) -> Result<Descriptor, String> {
        self.open(path, OpenFlags::TRUNCATE, DescriptorFlags::WRITE)
    }

    /// An input stream of the whole file.
    pub fn open_stream(&self, path: &Path) -> Result<InputStream, String> {
        let file = self.open(path, OpenFlags::empty(), DescriptorFlags::READ)?;
        let stream = file.read_via_stream(0).map_err(|e| format!("read {}: {e:?}", path.display()))?;
        OPEN.with_borrow_mut(|open| open.push(file));
        Ok(stream)
    }

    /// Opens a file under the root through the preopened directory that holds it.
    fn open(&self, path: &Path, open: OpenFlags, flags: DescriptorFlags) -> Result<Descriptor, String> {
        let (dir, relative) = wasip2::filesystem::preopens::get_directories()
            .into_iter()
            .find_map(|(dir, mount)| {
                let relative = path.strip_prefix(&mount).ok()?.to_str()?.to_string();
                Some((dir, relative))
            })
            .ok_or_else(|| format!("no mounted directory holds {}", path.display()))?;
        dir.open_at(PathFlags::empty(), &relative, open, flags).map_err(|e| format!("open {}: {e:?}", path.display()))
    }
}

/// A file's modification time in seconds since the Unix epoch (creation times are
/// not available everywhere).
pub fn seconds(meta: &std::fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()).unwrap_or(0)
}

/// A random tag per instance, so that instances sharing the root never pick the
/// same staging name.
fn instance_tag() -> u64 {
    thread_local! {
        static TAG: u64 = wasip2::random::random::get_random_u64();
    }
    TAG.with(|t| *t)
}
