//! `wasi:blobstore` 0.2.0-draft built into the host, over a choice of backends: in
//! memory (the default), a directory, NATS JetStream object stores. The same
//! workload runs against the `blobstore-filesystem` component or this plugin by
//! changing only its manifest: a component of the workload that exports
//! `wasi:blobstore` is preferred; without one, the plugin serves it.
//!
//! Values stream both ways: an outgoing value is written through a WASI output
//! stream into a staging file of the host, and handed to the backend when
//! finished; an incoming value is read through a WASI input stream from the
//! backend. Containers are scoped per workload (`<namespace>.<workload>.<name>`,
//! [`crate::scope`]); the names a `hostInterfaces` entry lists under
//! `sharedContainers` open in the namespace's shared scope (`<namespace>.<name>`).

mod filesystem;
mod memory;
mod nats;

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;
use wasmtime::component::{HasData, LinkerInstance, Resource, ResourceTable};
use wasmtime_wasi::p2::pipe::AsyncReadStream;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};
use weft_runtime::interface::{InterfaceName, ItemName};
use weft_runtime::limits::ByteSize;
use weft_runtime::plugin::{Binding, BindingSettings, BoxFuture, ComponentIdentity, HostPlugin, PluginWorld, Whose};
use weft_runtime::store::StoreState;

use crate::budget::Budget;
use crate::scope::Scope;

pub const ID: &str = "blobstore";

mod bindings {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/wasi-io", "../../wit/deps/wasi-blobstore"],
        world: "wasi:blobstore/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:blobstore/container.container": super::ContainerHandle,
            "wasi:blobstore/container.stream-object-names": super::ObjectNames,
            "wasi:blobstore/types.outgoing-value": super::OutgoingValue,
            "wasi:blobstore/types.incoming-value": super::IncomingValue,
        },
    });
}

use bindings::wasi::blobstore::{blobstore, container, types};

/// `plugins.blobstore` of a host configuration: where containers live, and how
/// much the host stages on disk for values being written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// The backend (its fields sit beside these; unknown ones are refused by it).
    #[serde(flatten)]
    pub store: Store,
    /// The largest value one `outgoing-value` may stage; writing more fails.
    #[serde(default = "default_max_object_size")]
    pub max_object_size: ByteSize,
    /// The most bytes staged for all unfinished values together.
    #[serde(default = "default_staging_limit")]
    pub staging_limit: ByteSize,
}

fn default_max_object_size() -> ByteSize {
    ByteSize(1 << 30)
}

fn default_staging_limit() -> ByteSize {
    ByteSize(4 << 30)
}

impl Default for Settings {
    fn default() -> Settings {
        Store::default().into()
    }
}

impl From<Store> for Settings {
    fn from(store: Store) -> Settings {
        Settings { store, max_object_size: default_max_object_size(), staging_limit: default_staging_limit() }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "backend", deny_unknown_fields)]
pub enum Store {
    #[default]
    Memory,
    /// One directory per container, one file per object.
    Filesystem { path: PathBuf },
    /// One NATS JetStream object store per container.
    Nats { url: String },
}

/// What the backend knows of an object.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

pub type BlobResult<T> = Result<T, String>;

/// A byte stream read from a backend.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// Where containers live. Names reaching a backend are already scoped.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Fails if the container exists.
    async fn create_container(&self, name: &str) -> BlobResult<()>;
    /// When it was created, if it exists.
    async fn container(&self, name: &str) -> BlobResult<Option<u64>>;
    async fn delete_container(&self, name: &str) -> BlobResult<()>;
    /// Stores the bytes of `staged` (a file of the host) as an object, replacing one.
    async fn put(&self, container: &str, object: &str, staged: &Path) -> BlobResult<()>;
    /// Bytes `start .. start + len` of an object.
    async fn read(&self, container: &str, object: &str, start: u64, len: u64) -> BlobResult<Reader>;
    async fn info(&self, container: &str, object: &str) -> BlobResult<Option<ObjectInfo>>;
    /// The container's object names, charged to `budget` as they arrive.
    async fn list(&self, container: &str, budget: &Budget) -> BlobResult<Vec<String>>;
    /// Succeeds when the object does not exist.
    async fn delete(&self, container: &str, object: &str) -> BlobResult<()>;
    async fn copy(&self, from: (&str, &str), to: (&str, &str)) -> BlobResult<()>;
    async fn rename(&self, from: (&str, &str), to: (&str, &str)) -> BlobResult<()> {
        self.copy(from, to).await?;
        self.delete(from.0, from.1).await
    }
}

pub struct BlobstorePlugin {
    backend: Arc<dyn Backend>,
    /// Where outgoing values are staged.
    staging: Arc<Staging>,
    /// Where each bound component's containers live.
    scopes: Mutex<HashMap<ComponentIdentity, Arc<Scope>>>,
}

impl BlobstorePlugin {
    pub async fn new(settings: &Settings) -> anyhow::Result<BlobstorePlugin> {
        let backend: Arc<dyn Backend> = match &settings.store {
            Store::Memory => Arc::new(memory::Memory::default()),
            Store::Filesystem { path } => Arc::new(filesystem::Filesystem::open(path)?),
            Store::Nats { url } => Arc::new(nats::Nats::connect(url).await?),
        };
        let staging = Arc::new(Staging {
            dir: tempfile::Builder::new().prefix("weft-blobstore-").tempdir()?,
            max_object_size: settings.max_object_size.0,
            limit: settings.staging_limit.0,
            staged: AtomicU64::new(0),
            next: AtomicU64::new(0),
        });
        Ok(BlobstorePlugin { backend, staging, scopes: Mutex::default() })
    }
}

impl HostPlugin for BlobstorePlugin {
    fn id(&self) -> &str {
        ID
    }

    fn world(&self) -> PluginWorld {
        let name = |i: &str| InterfaceName::parse(&format!("wasi:blobstore/{i}@0.2.0-draft")).expect("valid name");
        PluginWorld { imports: vec![name("types"), name("container"), name("blobstore")], exports: Vec::new() }
    }

    fn validate(&self, settings: &BindingSettings) -> Result<(), String> {
        Scope::from_settings(settings, "sharedContainers").map(drop)
    }

    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let scope = Arc::new(Scope::from_settings(binding, "sharedContainers")?);
            self.scopes.lock().unwrap().insert(binding.identity.clone(), scope);
            Ok(())
        })
    }

    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.scopes.lock().unwrap().remove(identity);
        })
    }

    fn add_to_linker(
        &self,
        instance: &mut LinkerInstance<StoreState>,
        import: &str,
        whose: Whose,
    ) -> wasmtime::Result<()> {
        let name = ItemName::parse(import);
        let interface = name.as_interface().map(|i| i.interface.as_str()).unwrap_or_default();
        let getter = weft_runtime::for_whose!(whose, view);
        match interface {
            "types" => types::add_to_linker_instance::<StoreState, Blobs>(instance, getter),
            "container" => container::add_to_linker_instance::<StoreState, Blobs>(instance, getter),
            "blobstore" => blobstore::add_to_linker_instance::<StoreState, Blobs>(instance, getter),
            other => wasmtime::bail!("the blobstore plugin has no interface `{other}`"),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A container, opened: its name as the guest knows it and as the backend does.
pub struct ContainerHandle {
    name: String,
    backend_name: String,
}

pub struct ObjectNames {
    names: std::collections::VecDeque<String>,
}

/// The host's staging directory, and the bytes staged in it.
struct Staging {
    dir: tempfile::TempDir,
    max_object_size: u64,
    /// The most bytes of all staged files together.
    limit: u64,
    staged: AtomicU64,
    next: AtomicU64,
}

impl Staging {
    fn new_file(self: &Arc<Staging>) -> std::io::Result<Arc<StagedFile>> {
        let path = self.dir.path().join(format!("value-{}", self.next.fetch_add(1, Ordering::Relaxed)));
        std::fs::File::create(&path)?;
        Ok(Arc::new(StagedFile { path, written: AtomicU64::new(0), staging: self.clone() }))
    }
}

/// One value's staging file: removed, and its bytes given back to the staging
/// limit, when neither the value nor its body stream holds it any more.
struct StagedFile {
    path: PathBuf,
    written: AtomicU64,
    staging: Arc<Staging>,
}

impl StagedFile {
    /// Counts `bytes` more against the object's and the host's limits.
    fn reserve(&self, bytes: u64) -> Result<(), String> {
        let staging = &self.staging;
        let written = self.written.load(Ordering::Relaxed);
        if written.saturating_add(bytes) > staging.max_object_size {
            return Err(format!(
                "the value is larger than the host's blobstore `maxObjectSize` of {}",
                ByteSize(staging.max_object_size)
            ));
        }
        let staged = staging.staged.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |staged| {
            staged.checked_add(bytes).filter(|total| *total <= staging.limit)
        });
        if staged.is_err() {
            return Err(format!(
                "the host's blobstore staging is full (`stagingLimit` {}): try again later",
                ByteSize(staging.limit)
            ));
        }
        self.written.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        self.staging.staged.fetch_sub(*self.written.get_mut(), Ordering::Relaxed);
    }
}

/// Bytes being written: a staging file; `finish` hands it to the backend.
pub struct OutgoingValue {
    staged: Arc<StagedFile>,
    body_taken: bool,
    destination: Option<(String, String)>,
}

/// The body stream of an outgoing value: writes go straight to its staging file,
/// so that when the guest finishes the value every byte is there. (A local file
/// takes a 64 KiB write without blocking for long.)
struct StagedWrite {
    file: std::fs::File,
    staged: Arc<StagedFile>,
}

const STAGED_WRITE_BUDGET: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl Pollable for StagedWrite {
    async fn ready(&mut self) {}
}

impl OutputStream for StagedWrite {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        use std::io::Write;
        let failed = |e: String| StreamError::LastOperationFailed(wasmtime::format_err!("{e}"));
        self.staged.reserve(bytes.len() as u64).map_err(failed)?;
        self.file.write_all(&bytes).map_err(|e| StreamError::LastOperationFailed(e.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(STAGED_WRITE_BUDGET)
    }
}

/// Bytes of an object, not yet read.
pub struct IncomingValue {
    container: String,
    object: String,
    start: u64,
    len: u64,
}

struct Blobs;

impl HasData for Blobs {
    type Data<'a> = View<'a>;
}

pub struct View<'a> {
    table: &'a mut ResourceTable,
    backend: Arc<dyn Backend>,
    staging: Arc<Staging>,
    scope: Arc<Scope>,
    /// The caller's memory limit: the most one call may read for it.
    read_limit: u64,
}

fn view<const WHOSE: usize>(state: &mut StoreState) -> View<'_> {
    let whose = Whose::from_const(WHOSE);
    let plugin = state.plugin::<BlobstorePlugin>(ID).expect("the blobstore plugin is loaded");
    // A caller not bound (its workload is stopping) still reaches only its own data.
    let scope = plugin.scopes.lock().unwrap().get(state.caller(whose)).cloned();
    let scope = scope.unwrap_or_else(|| Arc::new(Scope::new(state.caller(whose), Vec::new())));
    let (backend, staging) = (plugin.backend.clone(), plugin.staging.clone());
    let read_limit = state.caller_memory_limit(whose);
    View { table: state.table(), backend, staging, scope, read_limit }
}

type Wasm<T> = wasmtime::Result<Result<T, String>>;

impl View<'_> {
    fn scoped(&self, container: &str) -> String {
        self.scope.backend_name(container)
    }

    fn open(&mut self, name: String) -> wasmtime::Result<Resource<ContainerHandle>> {
        let backend_name = self.scoped(&name);
        Ok(self.table.push(ContainerHandle { name, backend_name })?)
    }

    fn container(&self, c: &Resource<ContainerHandle>) -> wasmtime::Result<(String, String)> {
        let c = self.table.get(c)?;
        Ok((c.name.clone(), c.backend_name.clone()))
    }

    fn budget(&self) -> Budget {
        Budget::new(self.read_limit)
    }
}

impl types::Host for View<'_> {}

impl types::HostOutgoingValue for View<'_> {
    async fn new_outgoing_value(&mut self) -> wasmtime::Result<Resource<OutgoingValue>> {
        let staged = self.staging.new_file()?;
        Ok(self.table.push(OutgoingValue { staged, body_taken: false, destination: None })?)
    }

    async fn outgoing_value_write_body(
        &mut self,
        value: Resource<OutgoingValue>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, ()>> {
        let outgoing = self.table.get_mut(&value)?;
        if std::mem::replace(&mut outgoing.body_taken, true) {
            return Ok(Err(()));
        }
        let file = std::fs::OpenOptions::new().write(true).open(&outgoing.staged.path)?;
        let stream: DynOutputStream = Box::new(StagedWrite { file, staged: outgoing.staged.clone() });
        Ok(Ok(self.table.push_child(stream, &value)?))
    }

    async fn finish(&mut self, value: Resource<OutgoingValue>) -> Wasm<()> {
        let outgoing = self.table.delete(value)?;
        let Some((container, object)) = &outgoing.destination else {
            // Finished but never written anywhere: nothing to keep.
            return Ok(Ok(()));
        };
        Ok(self.backend.put(container, object, &outgoing.staged.path).await)
    }

    async fn drop(&mut self, value: Resource<OutgoingValue>) -> wasmtime::Result<()> {
        self.table.delete(value)?;
        Ok(())
    }
}

impl types::HostIncomingValue for View<'_> {
    async fn incoming_value_consume_sync(&mut self, value: Resource<IncomingValue>) -> Wasm<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let incoming = self.table.delete(value)?;
        // Read whole, it must fit the caller: larger values are for consume-async.
        if let Err(e) = self.budget().charge(incoming.len, "the value") {
            return Ok(Err(format!("{e}; read it with `incoming-value-consume-async`")));
        }
        let reader = match self.backend.read(&incoming.container, &incoming.object, incoming.start, incoming.len).await
        {
            Ok(reader) => reader,
            Err(e) => return Ok(Err(e)),
        };
        let mut bytes = Vec::with_capacity(incoming.len as usize);
        // The object may have been replaced by a larger one meanwhile.
        if let Err(e) = reader.take(incoming.len).read_to_end(&mut bytes).await {
            return Ok(Err(format!("reading the value: {e}")));
        }
        Ok(Ok(bytes))
    }

    async fn incoming_value_consume_async(&mut self, value: Resource<IncomingValue>) -> Wasm<Resource<DynInputStream>> {
        let incoming = self.table.delete(value)?;
        let reader = match self.backend.read(&incoming.container, &incoming.object, incoming.start, incoming.len).await
        {
            Ok(reader) => reader,
            Err(e) => return Ok(Err(e)),
        };
        let stream: DynInputStream = Box::new(AsyncReadStream::new(reader));
        Ok(Ok(self.table.push(stream)?))
    }

    async fn size(&mut self, value: Resource<IncomingValue>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&value)?.len)
    }

    async fn drop(&mut self, value: Resource<IncomingValue>) -> wasmtime::Result<()> {
        self.table.delete(value)?;
        Ok(())
    }
}

impl container::Host for View<'_> {}

impl container::HostContainer for View<'_> {
    async fn name(&mut self, c: Resource<ContainerHandle>) -> Wasm<String> {
        Ok(Ok(self.container(&c)?.0))
    }

    async fn info(&mut self, c: Resource<ContainerHandle>) -> Wasm<types::ContainerMetadata> {
        let (name, scoped) = self.container(&c)?;
        Ok(match self.backend.container(&scoped).await {
            Ok(Some(created_at)) => Ok(types::ContainerMetadata { name, created_at }),
            Ok(None) => Err(format!("container `{name}` does not exist")),
            Err(e) => Err(e),
        })
    }

    async fn get_data(
        &mut self,
        c: Resource<ContainerHandle>,
        name: String,
        start: u64,
        end: u64,
    ) -> Wasm<Resource<IncomingValue>> {
        let (container, scoped) = self.container(&c)?;
        let size = match self.backend.info(&scoped, &name).await {
            Ok(Some(info)) => info.size,
            Ok(None) => return Ok(Err(format!("object `{container}/{name}` does not exist"))),
            Err(e) => return Ok(Err(e)),
        };
        let last = end.min(size.saturating_sub(1));
        if size > 0 && start > last {
            return Ok(Err(format!("range {start}..={end} is outside `{container}/{name}` ({size} bytes)")));
        }
        let len = if size == 0 { 0 } else { last - start + 1 };
        Ok(Ok(self.table.push(IncomingValue { container: scoped, object: name, start, len })?))
    }

    async fn write_data(
        &mut self,
        c: Resource<ContainerHandle>,
        name: String,
        data: Resource<OutgoingValue>,
    ) -> Wasm<()> {
        let (container, scoped) = self.container(&c)?;
        match self.backend.container(&scoped).await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(Err(format!("container `{container}` does not exist"))),
            Err(e) => return Ok(Err(e)),
        }
        self.table.get_mut(&data)?.destination = Some((scoped, name));
        Ok(Ok(()))
    }

    async fn list_objects(&mut self, c: Resource<ContainerHandle>) -> Wasm<Resource<ObjectNames>> {
        let (_, scoped) = self.container(&c)?;
        match self.backend.list(&scoped, &self.budget()).await {
            Ok(names) => Ok(Ok(self.table.push(ObjectNames { names: names.into() })?)),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn delete_object(&mut self, c: Resource<ContainerHandle>, name: String) -> Wasm<()> {
        let (_, scoped) = self.container(&c)?;
        Ok(self.backend.delete(&scoped, &name).await)
    }

    async fn delete_objects(&mut self, c: Resource<ContainerHandle>, names: Vec<String>) -> Wasm<()> {
        let (_, scoped) = self.container(&c)?;
        for name in names {
            if let Err(e) = self.backend.delete(&scoped, &name).await {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    async fn has_object(&mut self, c: Resource<ContainerHandle>, name: String) -> Wasm<bool> {
        let (_, scoped) = self.container(&c)?;
        Ok(self.backend.info(&scoped, &name).await.map(|i| i.is_some()))
    }

    async fn object_info(&mut self, c: Resource<ContainerHandle>, name: String) -> Wasm<types::ObjectMetadata> {
        let (container, scoped) = self.container(&c)?;
        Ok(match self.backend.info(&scoped, &name).await {
            Ok(Some(info)) => {
                Ok(types::ObjectMetadata { name, container, created_at: info.created_at, size: info.size })
            }
            Ok(None) => Err(format!("object `{container}/{name}` does not exist")),
            Err(e) => Err(e),
        })
    }

    async fn clear(&mut self, c: Resource<ContainerHandle>) -> Wasm<()> {
        let (_, scoped) = self.container(&c)?;
        let names = match self.backend.list(&scoped, &self.budget()).await {
            Ok(names) => names,
            Err(e) => return Ok(Err(e)),
        };
        for name in names {
            if let Err(e) = self.backend.delete(&scoped, &name).await {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    async fn drop(&mut self, c: Resource<ContainerHandle>) -> wasmtime::Result<()> {
        self.table.delete(c)?;
        Ok(())
    }
}

impl container::HostStreamObjectNames for View<'_> {
    async fn read_stream_object_names(&mut self, names: Resource<ObjectNames>, len: u64) -> Wasm<(Vec<String>, bool)> {
        let names = &mut self.table.get_mut(&names)?.names;
        let n = names.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        let batch: Vec<String> = names.drain(..n).collect();
        Ok(Ok((batch, names.is_empty())))
    }

    async fn skip_stream_object_names(&mut self, names: Resource<ObjectNames>, num: u64) -> Wasm<(u64, bool)> {
        let names = &mut self.table.get_mut(&names)?.names;
        let n = names.len().min(usize::try_from(num).unwrap_or(usize::MAX));
        names.drain(..n);
        Ok(Ok((n as u64, names.is_empty())))
    }

    async fn drop(&mut self, names: Resource<ObjectNames>) -> wasmtime::Result<()> {
        self.table.delete(names)?;
        Ok(())
    }
}

impl blobstore::Host for View<'_> {
    async fn create_container(&mut self, name: String) -> Wasm<Resource<ContainerHandle>> {
        let scoped = self.scoped(&name);
        if let Err(e) = self.backend.create_container(&scoped).await {
            return Ok(Err(e.replace(&scoped, &name)));
        }
        Ok(Ok(self.open(name)?))
    }

    async fn get_container(&mut self, name: String) -> Wasm<Resource<ContainerHandle>> {
        match self.backend.container(&self.scoped(&name)).await {
            Ok(Some(_)) => Ok(Ok(self.open(name)?)),
            Ok(None) => Ok(Err(format!("container `{name}` does not exist"))),
            Err(e) => Ok(Err(e)),
        }
    }

    async fn delete_container(&mut self, name: String) -> Wasm<()> {
        Ok(self.backend.delete_container(&self.scoped(&name)).await)
    }

    async fn container_exists(&mut self, name: String) -> Wasm<bool> {
        Ok(self.backend.container(&self.scoped(&name)).await.map(|c| c.is_some()))
    }

    async fn copy_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Wasm<()> {
        let (from, to) = (self.scoped(&src.container), self.scoped(&dest.container));
        Ok(self.backend.copy((&from, &src.object), (&to, &dest.object)).await)
    }

    async fn move_object(&mut self, src: types::ObjectId, dest: types::ObjectId) -> Wasm<()> {
        let (from, to) = (self.scoped(&src.container), self.scoped(&dest.container));
        Ok(self.backend.rename((&from, &src.object), (&to, &dest.object)).await)
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
