//! Loading components: from bytes to a compiled [`wasmtime::component::Component`],
//! through a cache keyed by the sha256 of the bytes.
//!
//! The in-memory cache makes a second start of the same component free. The disk cache
//! (when a directory is configured) keeps Wasmtime's serialized artifacts in a
//! subdirectory named after the engine's compatibility hash, so a different engine
//! configuration or Wasmtime version never loads an artifact made by another; Wasmtime
//! checks the artifact header again on load, and a file it refuses is recompiled.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;

use crate::engine::Concurrency;
use crate::limits::ByteSize;

/// sha256 of a component's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How often the cache compiled, and how often it did not have to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub compiled: u64,
    pub memory_hits: u64,
    pub disk_hits: u64,
}

pub struct ComponentCache {
    engine: wasmtime::Engine,
    /// `<cache dir>/<engine compatibility key>-concurrency-<on|off>`.
    dir: Option<PathBuf>,
    /// One slot per digest; its mutex serialises compiles of the same bytes.
    entries: Mutex<HashMap<Digest, Arc<Mutex<Option<Component>>>>>,
    compiled: AtomicU64,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
}

impl ComponentCache {
    pub fn new(engine: wasmtime::Engine, concurrency: Concurrency, cache_dir: Option<PathBuf>) -> ComponentCache {
        // The concurrency setting is named too: an engine's compatibility hash
        // need not cover it, and code compiled with one is not for the other.
        let dir = cache_dir.map(|d| d.join(format!("{}-concurrency-{}", engine_key(&engine), concurrency.as_str())));
        ComponentCache {
            engine,
            dir,
            entries: Mutex::default(),
            compiled: AtomicU64::new(0),
            memory_hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
        }
    }

    /// The engine it compiles for.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Where compiled code is kept on disk, if anywhere.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
        }
    }

    /// The compiled component for `bytes`; compiles (blocking, CPU-heavy) on a miss.
    /// The error says in words what the bytes are when they are not a component.
    pub fn load(&self, bytes: &[u8]) -> Result<(Digest, Component), String> {
        let digest = Digest::of(bytes);
        self.load_keyed(digest, || Ok(bytes.to_vec())).map(|c| (digest, c))
    }

    /// The compiled component cached under `key`, made from the bytes `produce`
    /// returns on a miss (composites are keyed by the digest of their inputs, so a
    /// hit does not even compose them).
    pub fn load_keyed(
        &self,
        key: Digest,
        produce: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Component, String> {
        let slot = self.entries.lock().unwrap().entry(key).or_default().clone();
        let mut slot = slot.lock().unwrap();
        if let Some(component) = &*slot {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(component.clone());
        }
        let component = match self.load_from_disk(&key) {
            Some(component) => {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                component
            }
            None => {
                let bytes = produce()?;
                let component = Component::new(&self.engine, &bytes).map_err(|e| describe_invalid(&bytes, &e))?;
                self.compiled.fetch_add(1, Ordering::Relaxed);
                self.store_to_disk(&key, &component);
                component
            }
        };
        *slot = Some(component.clone());
        Ok(component)
    }

    fn artifact_path(&self, digest: &Digest) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("{}.cwasm", hex::encode(digest.0))))
    }

    fn load_from_disk(&self, digest: &Digest) -> Option<Component> {
        let path = self.artifact_path(digest)?;
        // Read, not mmap (`deserialize_file`): a file changed under a mapping would
        // crash the host with SIGBUS.
        let bytes = std::fs::read(&path).ok()?;
        // SAFETY: the cache directory belongs to this host and holds only artifacts
        // that `store_to_disk` wrote; Wasmtime still checks that an artifact matches
        // this engine's configuration and version before using it.
        match unsafe { Component::deserialize(&self.engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {e}");
                None
            }
        }
    }

    fn store_to_disk(&self, digest: &Digest, component: &Component) {
        let Some(path) = self.artifact_path(digest) else { return };
        let write = || -> std::io::Result<()> {
            let bytes = component.serialize().map_err(std::io::Error::other)?;
            let dir = path.parent().expect("artifact path has a parent");
            std::fs::create_dir_all(dir)?;
            // Write then rename, so that a concurrent reader never sees half a file.
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, &bytes)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), "cannot write compiled artifact to the cache: {e}");
        }
    }
}

/// A directory name that changes whenever Wasmtime would refuse another's artifacts.
fn engine_key(engine: &wasmtime::Engine) -> String {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn finish(&self) -> u64 {
            unreachable!("only the digest is read")
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("wasmtime-{}", &hex::encode(hasher.0.finalize())[..16])
}

/// Whether a component uses component-model async (`async` functions, `stream`,
/// `future`, the async ABI: WASI 0.3), which only an engine with concurrency
/// support runs: it is valid with those features and not without them. Bytes
/// invalid either way say `Off`, and compiling them reports why.
pub fn concurrency_needed(bytes: &[u8]) -> Concurrency {
    use wasmparser::{Validator, WasmFeatures};
    let async_features = WasmFeatures::CM_ASYNC
        | WasmFeatures::CM_MORE_ASYNC_BUILTINS
        | WasmFeatures::CM_ASYNC_STACKFUL
        | WasmFeatures::CM_THREADING
        | WasmFeatures::CM_ERROR_CONTEXT;
    let all = WasmFeatures::default() | async_features;
    let valid = |features: WasmFeatures| Validator::new_with_features(features).validate_all(bytes).is_ok();
    if !valid(all - async_features) && valid(all) { Concurrency::On } else { Concurrency::Off }
}

const WASM_MAGIC: &[u8; 4] = b"\0asm";
const CORE_MODULE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// Why `bytes` did not compile, in terms a user can act on.
pub fn describe_invalid(bytes: &[u8], error: &wasmtime::Error) -> String {
    if bytes.is_empty() {
        return "the file is empty, not a WebAssembly component".into();
    }
    if !bytes.starts_with(WASM_MAGIC) {
        let head = &bytes[..bytes.len().min(8)];
        let text = std::str::from_utf8(head).ok().filter(|t| t.chars().all(|c| !c.is_control() || c.is_whitespace()));
        return match text {
            Some(t) => format!("not WebAssembly: it starts with the text {t:?}, not the `\\0asm` magic number"),
            None => {
                format!("not WebAssembly: it starts with bytes {}, not the `\\0asm` magic number", hex::encode(head))
            }
        };
    }
    if bytes.len() < 8 {
        return "truncated: the WebAssembly header is incomplete".into();
    }
    if bytes[4..8] == CORE_MODULE_VERSION {
        return "a core WebAssembly module, not a component: build it for `wasm32-wasip2`, \
                or wrap it with `wasm-tools component new`"
            .into();
    }
    let message = root_message(error);
    if message.contains("unexpected end") || message.contains(&format!("(bound = {})", bytes.len())) {
        return format!("invalid component: the file ends early (truncated?): {message}");
    }
    format!("invalid component: {message}")
}

fn root_message(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = error.chain().map(|e| e.to_string()).collect();
    parts.dedup();
    parts.join(": ")
}

/// How large a component file may be unless the host says otherwise.
pub const MAX_COMPONENT_SIZE: ByteSize = ByteSize(256 << 20);

/// Reads a component file of at most `limit` bytes; the error names the path.
pub fn read_source(path: &Path, limit: ByteSize) -> Result<Vec<u8>, String> {
    read_regular_file(path, limit).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("source file {} does not exist", path.display()),
        _ => format!("cannot read source file {}: {e}", path.display()),
    })
}

/// Reads a regular file of at most `limit` bytes. Anything else is refused before
/// it is opened: a FIFO would block the open until a writer comes, a device such as
/// `/dev/zero` never ends, and neither answers to Ctrl-C.
pub fn read_regular_file(path: &Path, limit: ByteSize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let refuse = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
    let check = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(refuse(format!("it is {}, not a regular file", file_kind(&meta.file_type()))));
        }
        if meta.len() > limit.0 {
            return Err(refuse(format!("it is {}, larger than the limit of {limit}", ByteSize(meta.len()))));
        }
        Ok(())
    };
    check(&std::fs::metadata(path)?)?;
    let file = std::fs::File::open(path)?;
    // Again on what was opened, in case the path changed in between.
    check(&file.metadata()?)?;
    let mut bytes = Vec::new();
    // One byte more than allowed tells a file that grew from one that fits.
    file.take(limit.0.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit.0 {
        return Err(refuse(format!("it is larger than the limit of {limit}")));
    }
    Ok(bytes)
}

fn file_kind(ty: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ty.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if ty.is_char_device() || ty.is_block_device() {
            return "a device";
        }
        if ty.is_socket() {
            return "a socket";
        }
    }
    if ty.is_dir() { "a directory" } else { "a special file" }
}

/// The names core modules inside a component give themselves (their name
/// sections), e.g. `types_provider.wasm`.
pub fn module_names(bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes).flatten() {
        if let wasmparser::Payload::CustomSection(section) = payload
            && let wasmparser::KnownCustom::Name(reader) = section.as_known()
        {
            for name in reader.into_iter().flatten() {
                if let wasmparser::Name::Module { name, .. } = name {
                    names.push(name.to_string());
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}
