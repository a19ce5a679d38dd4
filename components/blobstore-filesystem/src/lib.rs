//! `wasi:blobstore` 0.2.0-draft over `wasi:filesystem`.
//!
//! Layout under the root directory: one subdirectory per container, one file per
//! object. Names are percent-encoded into file names (long ones continuing in
//! directories), so any UTF-8 name is allowed and none can step outside the root.
//! Values are written to a staging file and renamed into place when finished, so
//! a reader never sees half an object; their bytes travel through WASI streams of
//! the files themselves, never through the component's memory in one piece.

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-io", "../../wit/deps/wasi-blobstore", "wit"],
    world: "weft:blobstore-filesystem/blobstore-filesystem",
    with: {
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:blobstore/types@0.2.0-draft": generate,
        "wasi:blobstore/container@0.2.0-draft": generate,
        "wasi:blobstore/blobstore@0.2.0-draft": generate,
    },
});

mod names;
mod store;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;

use exports::wasi::blobstore::blobstore::{self, ObjectId};
use exports::wasi::blobstore::container::{self, ContainerMetadata, ObjectMetadata};
use exports::wasi::blobstore::types::{self, Error, IncomingValueAsyncBody, IncomingValueSyncBody};
use wasip2::io::streams::OutputStream;

use crate::store::Root;

struct Component;

export!(Component);

impl types::Guest for Component {
    type OutgoingValue = OutgoingValue;
    type IncomingValue = IncomingValue;
}

impl container::Guest for Component {
    type Container = Container;
    type StreamObjectNames = ObjectNames;
}

impl blobstore::Guest for Component {
    fn create_container(name: String) -> Result<container::Container, Error> {
        let dir = Root::get()?.container_dir(&name)?;
        if dir.exists() {
            return Err(format!("container `{name}` already exists"));
        }
        std::fs::create_dir(&dir).map_err(|e| format!("create container `{name}`: {e}"))?;
        Ok(container::Container::new(Container { name, dir }))
    }

    fn get_container(name: String) -> Result<container::Container, Error> {
        let dir = Root::get()?.existing_container(&name)?;
        Ok(container::Container::new(Container { name, dir }))
    }

    fn delete_container(name: String) -> Result<(), Error> {
        let dir = Root::get()?.existing_container(&name)?;
        std::fs::remove_dir_all(dir).map_err(|e| format!("delete container `{name}`: {e}"))
    }

    fn container_exists(name: String) -> Result<bool, Error> {
        Ok(Root::get()?.container_dir(&name)?.is_dir())
    }

    fn copy_object(src: ObjectId, dest: ObjectId) -> Result<(), Error> {
        let root = Root::get()?;
        let from = root.existing_object(&src)?;
        let dir = root.existing_container(&dest.container)?;
        let to = names::object_path(&dir, &dest.object)?;
        // Through a staging file, so that the destination changes at once.
        let staging = root.staging_file()?;
        std::fs::copy(&from, &staging).map_err(|e| format!("copy {}: {e}", show(&src)))?;
        names::place(&dir, &staging, &to).map_err(|e| format!("copy to {}: {e}", show(&dest)))
    }

    fn move_object(src: ObjectId, dest: ObjectId) -> Result<(), Error> {
        let root = Root::get()?;
        let from = root.existing_object(&src)?;
        let dir = root.existing_container(&dest.container)?;
        let to = names::object_path(&dir, &dest.object)?;
        names::place(&dir, &from, &to).map_err(|e| format!("move {} to {}: {e}", show(&src), show(&dest)))?;
        names::prune(&root.container_dir(&src.container)?, &from);
        Ok(())
    }
}

fn show(id: &ObjectId) -> String {
    format!("`{}/{}`", id.container, id.object)
}

pub struct Container {
    name: String,
    dir: PathBuf,
}

impl Container {
    fn object(&self, name: &str) -> Result<PathBuf, Error> {
        names::object_path(&self.dir, name)
    }

    fn existing(&self, name: &str) -> Result<PathBuf, Error> {
        let path = self.object(name)?;
        if !path.is_file() {
            return Err(format!("object `{}/{name}` does not exist", self.name));
        }
        Ok(path)
    }
}

impl container::GuestContainer for Container {
    fn name(&self) -> Result<String, Error> {
        Ok(self.name.clone())
    }

    fn info(&self) -> Result<ContainerMetadata, Error> {
        let meta = std::fs::metadata(&self.dir).map_err(|e| format!("container `{}`: {e}", self.name))?;
        Ok(ContainerMetadata { name: self.name.clone(), created_at: store::seconds(&meta) })
    }

    fn get_data(&self, name: String, start: u64, end: u64) -> Result<types::IncomingValue, Error> {
        let path = self.existing(&name)?;
        let size = std::fs::metadata(&path).map_err(|e| e.to_string())?.len();
        let last = end.min(size.saturating_sub(1));
        if size > 0 && start > last {
            return Err(format!("range {start}..={end} is outside `{}/{name}` ({size} bytes)", self.name));
        }
        let len = if size == 0 { 0 } else { last - start + 1 };
        Ok(types::IncomingValue::new(IncomingValue { path, start, len, whole: start == 0 && len == size }))
    }

    fn write_data(&self, name: String, data: types::OutgoingValueBorrow<'_>) -> Result<(), Error> {
        let destination = self.object(&name)?;
        data.get::<OutgoingValue>().destination.replace(Some((self.dir.clone(), destination)));
        Ok(())
    }

    fn list_objects(&self) -> Result<container::StreamObjectNames, Error> {
        let names = names::list(&self.dir).map_err(|e| format!("list `{}`: {e}", self.name))?;
        Ok(container::StreamObjectNames::new(ObjectNames { names: RefCell::new(names.into()) }))
    }

    fn delete_object(&self, name: String) -> Result<(), Error> {
        let path = self.object(&name)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("delete `{}/{name}`: {e}", self.name)),
            _ => {
                names::prune(&self.dir, &path);
                Ok(())
            }
        }
    }

    fn delete_objects(&self, names: Vec<String>) -> Result<(), Error> {
        names.into_iter().try_for_each(|name| self.delete_object(name))
    }

    fn has_object(&self, name: String) -> Result<bool, Error> {
        Ok(self.object(&name)?.is_file())
    }

    fn object_info(&self, name: String) -> Result<ObjectMetadata, Error> {
        let meta = std::fs::metadata(self.existing(&name)?).map_err(|e| e.to_string())?;
        Ok(ObjectMetadata { name, container: self.name.clone(), created_at: store::seconds(&meta), size: meta.len() })
    }

    fn clear(&self) -> Result<(), Error> {
        for entry in std::fs::read_dir(&self.dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            // Objects, and the directories long names continue in.
            let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            removed.map_err(|e| format!("clear `{}`: {e}", self.name))?;
        }
        Ok(())
    }
}

pub struct ObjectNames {
    names: RefCell<VecDeque<String>>,
}

impl container::GuestStreamObjectNames for ObjectNames {
    fn read_stream_object_names(&self, len: u64) -> Result<(Vec<String>, bool), Error> {
        let mut names = self.names.borrow_mut();
        let n = names.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        let batch: Vec<String> = names.drain(..n).collect();
        Ok((batch, names.is_empty()))
    }

    fn skip_stream_object_names(&self, num: u64) -> Result<(u64, bool), Error> {
        let mut names = self.names.borrow_mut();
        let n = names.len().min(usize::try_from(num).unwrap_or(usize::MAX));
        names.drain(..n);
        Ok((n as u64, names.is_empty()))
    }
}

/// Bytes being written: a staging file, renamed to its object on `finish`.
pub struct OutgoingValue {
    staging: PathBuf,
    /// The open file behind the body stream; it must outlive the stream.
    file: RefCell<Option<wasip2::filesystem::types::Descriptor>>,
    body_taken: Cell<bool>,
    /// The container's directory and the object's file in it.
    destination: RefCell<Option<(PathBuf, PathBuf)>>,
}

impl types::GuestOutgoingValue for OutgoingValue {
    fn new_outgoing_value() -> types::OutgoingValue {
        // Creation cannot report an error; a missing root shows up at the first write.
        let staging = Root::get().and_then(|r| r.staging_file()).unwrap_or_default();
        types::OutgoingValue::new(OutgoingValue {
            staging,
            file: RefCell::new(None),
            body_taken: Cell::new(false),
            destination: RefCell::new(None),
        })
    }

    fn outgoing_value_write_body(&self) -> Result<OutputStream, ()> {
        if self.body_taken.replace(true) {
            return Err(());
        }
        let file = Root::get().and_then(|r| r.open_for_writing(&self.staging)).map_err(|_| ())?;
        let stream = file.write_via_stream(0).map_err(|_| ())?;
        self.file.replace(Some(file));
        Ok(stream)
    }

    fn finish(this: types::OutgoingValue) -> Result<(), Error> {
        let value: OutgoingValue = this.into_inner();
        drop(value.file.take());
        match value.destination.take() {
            Some((dir, destination)) => names::place(&dir, &value.staging, &destination)
                .map_err(|e| format!("store {}: {e}", destination.display())),
            // Finished but never written anywhere: nothing to keep.
            None => Ok(()),
        }
    }
}

impl Drop for OutgoingValue {
    fn drop(&mut self) {
        // Unfinished values are discarded; after a rename this finds nothing.
        let _ = std::fs::remove_file(&self.staging);
    }
}

/// Bytes `start .. start + len` of an object.
pub struct IncomingValue {
    path: PathBuf,
    start: u64,
    len: u64,
    whole: bool,
}

impl types::GuestIncomingValue for IncomingValue {
    fn incoming_value_consume_sync(this: types::IncomingValue) -> Result<IncomingValueSyncBody, Error> {
        use std::io::{Read, Seek, SeekFrom};
        let value: IncomingValue = this.into_inner();
        let mut file = std::fs::File::open(&value.path).map_err(|e| e.to_string())?;
        file.seek(SeekFrom::Start(value.start)).map_err(|e| e.to_string())?;
        let mut bytes = Vec::with_capacity(value.len as usize);
        file.take(value.len).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        Ok(bytes)
    }

    fn incoming_value_consume_async(this: types::IncomingValue) -> Result<IncomingValueAsyncBody, Error> {
        let value: IncomingValue = this.into_inner();
        let root = Root::get()?;
        // A stream of a file runs to its end: a part of an object is staged first.
        let path = if value.whole {
            value.path
        } else {
            let staging = root.staging_file()?;
            let part = Self::incoming_value_consume_sync(types::IncomingValue::new(value))?;
            std::fs::write(&staging, part).map_err(|e| e.to_string())?;
            staging
        };
        root.open_stream(&path)
    }

    fn size(&self) -> u64 {
        self.len
    }
}
