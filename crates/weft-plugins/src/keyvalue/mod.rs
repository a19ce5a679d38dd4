//! `wasi:keyvalue` 0.2.0-draft (`store`, `atomics`, `batch`) over a choice of
//! backends: in memory (the default), a directory (survives a host restart), NATS
//! JetStream key-value buckets, Redis.
//!
//! Buckets are scoped per workload: `open("carts")` in workload `shop` of namespace
//! `prod` opens the backend bucket `prod.shop.carts` ([`crate::scope`]), and
//! `open("")` the workload's default bucket. A workload opens a bucket of its
//! namespace's shared scope (`prod.carts`, which no workload's own bucket can be)
//! by naming it:
//!
//! ```yaml
//! hostInterfaces:
//!   - interface: wasi:keyvalue/store@0.2.0-draft
//!     config: { sharedBuckets: [carts] }
//! ```

mod filesystem;
mod memory;
mod nats;
mod redis;

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};
use wasmtime::component::{HasData, LinkerInstance, Resource, ResourceTable};
use weft_runtime::interface::{InterfaceName, ItemName};
use weft_runtime::plugin::{Binding, BindingSettings, BoxFuture, ComponentIdentity, HostPlugin, PluginWorld, Whose};
use weft_runtime::store::StoreState;

use crate::budget::Budget;
use crate::scope::Scope;

pub const ID: &str = "keyvalue";

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/deps/wasi-keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: { "wasi:keyvalue/store.bucket": super::Bucket },
    });
}

use bindings::wasi::keyvalue::{atomics, batch, store};

/// Which backend holds the buckets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "backend", deny_unknown_fields)]
pub enum Settings {
    #[default]
    Memory,
    /// One directory per bucket, one file per key.
    Filesystem { path: PathBuf },
    /// NATS JetStream key-value stores, e.g. `nats://127.0.0.1:4222`.
    Nats { url: String },
    /// Redis, e.g. `redis://127.0.0.1:6379`.
    Redis { url: String },
}

/// A backend's error, as the guest sees it.
#[derive(Debug)]
pub enum KvError {
    NoSuchStore,
    Other(String),
}

impl From<KvError> for store::Error {
    fn from(e: KvError) -> store::Error {
        match e {
            KvError::NoSuchStore => store::Error::NoSuchStore,
            KvError::Other(message) => store::Error::Other(message),
        }
    }
}

pub type KvResult<T> = Result<T, KvError>;

/// Where buckets live. Bucket names reaching a backend are already scoped.
///
/// What a backend reads for the guest (values, key listings) it charges to the
/// call's [`Budget`], before holding the bytes where the backend tells their size
/// first: a value larger than the caller's memory limit is an error.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    async fn get(&self, bucket: &str, key: &str, budget: &Budget) -> KvResult<Option<Vec<u8>>>;
    async fn set(&self, bucket: &str, key: &str, value: Vec<u8>) -> KvResult<()>;
    async fn delete(&self, bucket: &str, key: &str) -> KvResult<()>;
    async fn exists(&self, bucket: &str, key: &str) -> KvResult<bool>;
    /// Every key of the bucket, in a stable order.
    async fn keys(&self, bucket: &str, budget: &Budget) -> KvResult<Vec<String>>;
    /// Adds `delta` to the counter stored at `key` (0 when absent), atomically
    /// with respect to every other client of the backend; see [`add_to_counter`].
    async fn increment(&self, bucket: &str, key: &str, delta: u64) -> KvResult<u64>;

    /// The values of `keys`, in their order. Unless a backend has a command for
    /// it, the reads run concurrently.
    async fn get_many(&self, bucket: &str, keys: &[String], budget: &Budget) -> KvResult<Vec<Option<Vec<u8>>>> {
        // By index: a closure over `&String` would not be `Send` for every lifetime.
        let reads = stream::iter(0..keys.len()).map(|i| self.get(bucket, &keys[i], budget));
        reads.buffered(BATCH_IN_FLIGHT).try_collect().await
    }

    /// Sets every pair (each write atomic, the batch not); a key given twice ends
    /// with its last value, as if the pairs were set one after another.
    async fn set_many(&self, bucket: &str, entries: Vec<(String, Vec<u8>)>) -> KvResult<()> {
        let writes = stream::iter(last_value_per_key(entries))
            .map(|(key, value)| async move { self.set(bucket, &key, value).await });
        writes.buffer_unordered(BATCH_IN_FLIGHT).try_collect().await
    }

    async fn delete_many(&self, bucket: &str, keys: &[String]) -> KvResult<()> {
        let deletes = stream::iter(0..keys.len()).map(|i| self.delete(bucket, &keys[i]));
        deletes.buffer_unordered(BATCH_IN_FLIGHT).try_collect().await
    }
}

/// How many operations of one batch a backend has in flight at once.
const BATCH_IN_FLIGHT: usize = 32;

/// The pairs to write for a batch: for a key given more than once, only its last
/// value (which is what writing them in order would leave).
fn last_value_per_key(entries: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut seen = HashSet::with_capacity(entries.len());
    entries.into_iter().rev().filter(|(key, _)| seen.insert(key.clone())).collect()
}

/// The largest counter: what Redis `HINCRBY` can hold, so that every backend
/// refuses the same increments.
pub const COUNTER_MAX: u64 = i64::MAX as u64;

/// The longest stored value that can be a counter (`COUNTER_MAX` has 19 digits).
pub(crate) const COUNTER_MAX_LEN: u64 = 19;

/// `value` (absent: 0) plus `delta`. A counter is stored as decimal digits, no
/// sign, no leading zero, as Redis reads and writes them; anything else, and a
/// sum past [`COUNTER_MAX`], is an error on every backend.
pub(crate) fn add_to_counter(value: Option<&[u8]>, delta: u64) -> KvResult<u64> {
    let current = match value {
        None => 0,
        Some(bytes) => {
            let canonical =
                !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) && (bytes[0] != b'0' || bytes.len() == 1);
            let parsed = canonical.then(|| std::str::from_utf8(bytes).ok()?.parse::<u64>().ok()).flatten();
            parsed.filter(|n| *n <= COUNTER_MAX).ok_or_else(|| KvError::Other("the value is not a counter".into()))?
        }
    };
    current
        .checked_add(delta)
        .filter(|sum| *sum <= COUNTER_MAX)
        .ok_or_else(|| KvError::Other(format!("the counter would pass {COUNTER_MAX}")))
}

pub struct KeyValuePlugin {
    backend: Arc<dyn Backend>,
    /// Where each bound component's buckets live.
    scopes: Mutex<HashMap<ComponentIdentity, Arc<Scope>>>,
}

/// An open bucket: the backend's name for it.
pub struct Bucket {
    name: String,
}

/// Keys per `list-keys` page.
const PAGE: usize = 1000;

impl KeyValuePlugin {
    pub async fn new(settings: &Settings) -> anyhow::Result<KeyValuePlugin> {
        let backend: Arc<dyn Backend> = match settings {
            Settings::Memory => Arc::new(memory::Memory::default()),
            Settings::Filesystem { path } => Arc::new(filesystem::Filesystem::open(path)?),
            Settings::Nats { url } => Arc::new(nats::Nats::connect(url).await?),
            Settings::Redis { url } => Arc::new(redis::Redis::connect(url).await?),
        };
        Ok(KeyValuePlugin { backend, scopes: Mutex::default() })
    }
}

impl HostPlugin for KeyValuePlugin {
    fn id(&self) -> &str {
        ID
    }

    fn world(&self) -> PluginWorld {
        let name = |i: &str| InterfaceName::parse(&format!("wasi:keyvalue/{i}@0.2.0-draft")).expect("valid name");
        PluginWorld { imports: vec![name("store"), name("atomics"), name("batch")], exports: Vec::new() }
    }

    fn validate(&self, settings: &BindingSettings) -> Result<(), String> {
        Scope::from_settings(settings, "sharedBuckets").map(drop)
    }

    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let scope = Arc::new(Scope::from_settings(binding, "sharedBuckets")?);
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
            "store" => store::add_to_linker_instance::<StoreState, Kv>(instance, getter),
            "atomics" => atomics::add_to_linker_instance::<StoreState, Kv>(instance, getter),
            "batch" => batch::add_to_linker_instance::<StoreState, Kv>(instance, getter),
            other => wasmtime::bail!("the keyvalue plugin has no interface `{other}`"),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// What the host functions work with: the store's table, the backend, and where
/// the calling component's buckets live.
pub struct View<'a> {
    table: &'a mut ResourceTable,
    plugin: Arc<dyn Backend>,
    scope: Arc<Scope>,
    /// The caller's memory limit: the most one call may read for it.
    read_limit: u64,
}

struct Kv;

impl HasData for Kv {
    type Data<'a> = View<'a>;
}

fn view<const WHOSE: usize>(state: &mut StoreState) -> View<'_> {
    let whose = Whose::from_const(WHOSE);
    let plugin = state.plugin::<KeyValuePlugin>(ID).expect("the keyvalue plugin is loaded");
    // A caller not bound (its workload is stopping) still reaches only its own data.
    let scope = plugin.scopes.lock().unwrap().get(state.caller(whose)).cloned();
    let scope = scope.unwrap_or_else(|| Arc::new(Scope::new(state.caller(whose), Vec::new())));
    let backend = plugin.backend.clone();
    let read_limit = state.caller_memory_limit(whose);
    View { table: state.table(), plugin: backend, scope, read_limit }
}

type Wasm<T> = wasmtime::Result<Result<T, store::Error>>;

impl View<'_> {
    fn bucket(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }

    fn budget(&self) -> Budget {
        Budget::new(self.read_limit)
    }
}

/// Keys are non-empty on every backend (a file or a NATS subject token cannot be
/// empty), so a workload behaves the same whichever backend the host chose.
fn check_keys<'k>(keys: impl IntoIterator<Item = &'k str>) -> Result<(), store::Error> {
    match keys.into_iter().any(str::is_empty) {
        true => Err(store::Error::Other("keys must not be empty".into())),
        false => Ok(()),
    }
}

/// Returns the guest-visible error from a host function when `$check` fails.
macro_rules! guest_try {
    ($check:expr) => {
        if let Err(e) = $check {
            return Ok(Err(e));
        }
    };
}

impl store::Host for View<'_> {
    async fn open(&mut self, identifier: String) -> Wasm<Resource<Bucket>> {
        let name = self.scope.backend_name(&identifier);
        Ok(Ok(self.table.push(Bucket { name })?))
    }
}

impl store::HostBucket for View<'_> {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Wasm<Option<Vec<u8>>> {
        guest_try!(check_keys([key.as_str()]));
        let name = self.bucket(&bucket)?;
        Ok(self.plugin.get(&name, &key, &self.budget()).await.map_err(Into::into))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Wasm<()> {
        guest_try!(check_keys([key.as_str()]));
        let name = self.bucket(&bucket)?;
        Ok(self.plugin.set(&name, &key, value).await.map_err(Into::into))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Wasm<()> {
        guest_try!(check_keys([key.as_str()]));
        let name = self.bucket(&bucket)?;
        Ok(self.plugin.delete(&name, &key).await.map_err(Into::into))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Wasm<bool> {
        guest_try!(check_keys([key.as_str()]));
        let name = self.bucket(&bucket)?;
        Ok(self.plugin.exists(&name, &key).await.map_err(Into::into))
    }

    async fn list_keys(&mut self, bucket: Resource<Bucket>, cursor: Option<u64>) -> Wasm<store::KeyResponse> {
        let name = self.bucket(&bucket)?;
        let keys = match self.plugin.keys(&name, &self.budget()).await {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(e.into())),
        };
        let start = cursor.unwrap_or(0) as usize;
        let page: Vec<String> = keys.iter().skip(start).take(PAGE).cloned().collect();
        let next = (start + page.len() < keys.len()).then_some((start + page.len()) as u64);
        Ok(Ok(store::KeyResponse { keys: page, cursor: next }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for View<'_> {
    async fn increment(&mut self, bucket: Resource<Bucket>, key: String, delta: u64) -> Wasm<u64> {
        guest_try!(check_keys([key.as_str()]));
        let name = self.bucket(&bucket)?;
        Ok(self.plugin.increment(&name, &key, delta).await.map_err(Into::into))
    }
}

impl batch::Host for View<'_> {
    async fn get_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Wasm<Vec<Option<(String, Vec<u8>)>>> {
        guest_try!(check_keys(keys.iter().map(String::as_str)));
        let name = self.bucket(&bucket)?;
        Ok(match self.plugin.get_many(&name, &keys, &self.budget()).await {
            Ok(values) => Ok(keys.into_iter().zip(values).map(|(key, value)| value.map(|v| (key, v))).collect()),
            Err(e) => Err(e.into()),
        })
    }

    async fn set_many(&mut self, bucket: Resource<Bucket>, key_values: Vec<(String, Vec<u8>)>) -> Wasm<()> {
        guest_try!(check_keys(key_values.iter().map(|(k, _)| k.as_str())));
        let name = self.bucket(&bucket)?;
        Ok(self.plugin.set_many(&name, key_values).await.map_err(Into::into))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Wasm<()> {
        guest_try!(check_keys(keys.iter().map(String::as_str)));
        let name = self.bucket(&bucket)?;
        Ok(self.plugin.delete_many(&name, &keys).await.map_err(Into::into))
    }
}
