//! The host: runs workloads, behind the [`HostApi`] trait that the lattice later
//! serves over NATS. Everything here works in-process, without any network.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::component::CacheStats;
use crate::engine::{AllocatorKind, Concurrency, Engine, EngineConfig, Engines};
use crate::error::{Problem, Rejection};
use crate::manifest::WorkloadSpec;
use crate::output::PrefixedStdio;
use crate::plugin::{HostPlugin, PluginRegistry};
use crate::source::oci::{OciClient, OciSettings, OciStats, Progress};
use crate::source::{DigestStore, Sources};
use crate::telemetry::model::KeyValue;
use crate::telemetry::{Telemetry, TelemetrySettings};
use crate::wasi::{self, GuestStdio};
use crate::workload::{self, HostContext, RunningWorkload, ValidatedWorkload, WorkloadId, WorkloadStatus};

/// What a host says about itself, periodically and on request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub host_id: String,
    pub friendly_name: String,
    pub version: String,
    pub uptime_secs: u64,
    pub labels: IndexMap<String, String>,
    /// Workloads not yet stopped, and their components (the service included).
    pub workloads: usize,
    pub components: usize,
    /// Interfaces this host can provide to components (WASI and plugins).
    pub interfaces: Vec<String>,
    /// Interfaces of components this host can drive (its plugins' exports:
    /// `wasi:http/incoming-handler`, ...).
    #[serde(default)]
    pub exports: Vec<String>,
    /// The port its HTTP server listens on, once it serves.
    #[serde(default)]
    pub http_port: Option<u16>,
    /// Where the host says it runs (a tenant, a Kubernetes namespace), for
    /// schedulers that keep tenants apart.
    #[serde(default)]
    pub environment: Option<String>,
    /// The allocator of the engine WASI 0.2 workloads run on.
    pub allocator: AllocatorKind,
    /// The engines started so far: the one without component-model concurrency
    /// always, the one with it once a workload has needed it.
    #[serde(default)]
    pub engines: Vec<EngineStatus>,
}

/// One of a host's engines, in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub concurrency: Concurrency,
    pub allocator: AllocatorKind,
    /// Workloads not yet stopped that run on it.
    pub workloads: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("no workload with id `{0}` on this host")]
    NotFound(WorkloadId),
    #[error("a workload with id `{0}` is already on this host")]
    DuplicateId(WorkloadId),
    /// The host could not be asked (a remote host: unreachable, no answer in
    /// time, or an answer that could not be read).
    #[error("{0}")]
    Unreachable(String),
}

/// The operations a host offers; served in-process by [`Host`] and over NATS by
/// the lattice.
pub trait HostApi: Send + Sync {
    fn heartbeat(&self) -> impl Future<Output = Result<Heartbeat, HostError>> + Send;
    /// Validates `spec` and starts it under a new id; a rejected workload leaves
    /// nothing behind.
    fn workload_start(&self, spec: WorkloadSpec) -> impl Future<Output = Result<WorkloadStatus, HostError>> + Send {
        self.workload_start_as(WorkloadId::generate(), spec)
    }
    /// [`workload_start`](Self::workload_start) under the id the caller chose (a
    /// lattice client names its workloads); an id already on the host is refused.
    fn workload_start_as(
        &self,
        id: WorkloadId,
        spec: WorkloadSpec,
    ) -> impl Future<Output = Result<WorkloadStatus, HostError>> + Send;
    fn workload_status(&self, id: &WorkloadId) -> impl Future<Output = Result<WorkloadStatus, HostError>> + Send;
    /// Every workload not yet stopped, in the order they started.
    fn workload_list(&self) -> impl Future<Output = Result<Vec<WorkloadStatus>, HostError>> + Send;
    fn workload_stop(&self, id: &WorkloadId) -> impl Future<Output = Result<WorkloadStatus, HostError>> + Send;
}

pub struct HostConfig {
    /// Shown in heartbeats; defaults to the machine's hostname.
    pub friendly_name: Option<String>,
    pub labels: IndexMap<String, String>,
    /// Sent in heartbeats as the host's environment (wasmCloud's scheduler keeps
    /// tenants apart by it).
    pub environment: Option<String>,
    pub engine: EngineConfig,
    /// Where emptyDirs live; defaults to a temporary directory removed with the host.
    pub scratch_dir: Option<PathBuf>,
    /// Where guests' stdio goes; defaults to the host's stdout/stderr, prefixed.
    pub stdio: GuestStdio,
    pub plugins: Vec<Arc<dyn HostPlugin>>,
    /// Registries: credentials, which are plain HTTP.
    pub oci: OciSettings,
    /// Told of each pull from a registry as it goes (a terminal shows a bar).
    pub pull_progress: Option<Progress>,
    /// Where `digest://` sources come from (a lattice's uploaded components).
    pub digest_store: Option<Arc<dyn DigestStore>>,
    /// OpenTelemetry export; off when `None`.
    pub telemetry: Option<TelemetrySettings>,
    /// Remote links (wRPC on a lattice); without it, a workload that links an
    /// import to the lattice or serves an export to it is refused.
    pub remote: Option<Arc<dyn crate::remote::RemoteLinks>>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            friendly_name: None,
            labels: IndexMap::new(),
            environment: None,
            engine: EngineConfig::default(),
            scratch_dir: None,
            stdio: GuestStdio::Sink(Arc::new(PrefixedStdio)),
            plugins: Vec::new(),
            oci: OciSettings::default(),
            pull_progress: None,
            digest_store: None,
            telemetry: None,
            remote: None,
        }
    }
}

/// How long a replaced workload may take to finish the calls it has in flight
/// before it is stopped (which cancels what is left).
pub const REPLACED_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Statuses of stopped workloads kept for `workload_status`.
const STOPPED_KEPT: usize = 64;

#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

struct HostInner {
    id: String,
    friendly_name: String,
    labels: IndexMap<String, String>,
    environment: Option<String>,
    started: Instant,
    cx: HostContext,
    workloads: Mutex<IndexMap<WorkloadId, Arc<RunningWorkload>>>,
    /// `(namespace, name)` of every workload starting or running, and the id
    /// holding it: a name names one workload's data, so two at once would share
    /// it (but for a replacement, which takes the name over from the one it replaces).
    names: Mutex<HashMap<(String, String), WorkloadId>>,
    /// Ids of workloads being validated and started, so that one id starts once.
    starting: Mutex<HashSet<WorkloadId>>,
    stopped: Mutex<VecDeque<WorkloadStatus>>,
    _scratch: Option<tempfile::TempDir>,
}

impl Host {
    /// Creates the host and starts its plugins.
    pub async fn new(config: HostConfig) -> anyhow::Result<Host> {
        let engines = Engines::new(&config.engine).map_err(anyhow::Error::from)?;
        let mut plugins = config.plugins;
        if let Some(remote) = &config.remote {
            plugins.push(remote.clone());
        }
        let plugins = PluginRegistry::new(plugins);
        for plugin in plugins.all() {
            plugin.start().await.map_err(|e| anyhow::anyhow!("plugin `{}` cannot start: {e}", plugin.id()))?;
        }
        let (scratch_dir, scratch) = match config.scratch_dir {
            Some(dir) => (dir, None),
            None => {
                let tmp = tempfile::Builder::new().prefix("weft-").tempdir()?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        // Pulled artifacts beside the compiled code, or with the scratch files.
        let oci_cache = config.engine.cache_dir.clone().unwrap_or_else(|| scratch_dir.clone()).join("oci");
        let sources = Arc::new(Sources {
            oci: OciClient::new(config.oci, Some(oci_cache), config.engine.max_component_size.0),
            progress: config.pull_progress,
            digests: config.digest_store,
        });
        let id = uuid::Uuid::new_v4().simple().to_string();
        let friendly_name = config.friendly_name.unwrap_or_else(default_name);
        let telemetry = match &config.telemetry {
            Some(settings) => Telemetry::start(
                settings,
                vec![
                    KeyValue::new("service.instance.id", id.as_str()),
                    KeyValue::new("host.name", friendly_name.as_str()),
                    KeyValue::new("weft.host.id", id.as_str()),
                ],
            )
            .map_err(|e| anyhow::anyhow!("telemetry: {e}"))?,
            None => Telemetry::disabled(),
        };
        tracing::info!(host = %id, name = %friendly_name, allocator = ?engines.default_engine().allocator(), "host started");
        let host = Host {
            inner: Arc::new(HostInner {
                id,
                friendly_name,
                labels: config.labels,
                environment: config.environment,
                started: Instant::now(),
                cx: HostContext {
                    engines,
                    plugins,
                    stdio: config.stdio,
                    scratch_dir,
                    sources,
                    telemetry,
                    remote: config.remote,
                },
                workloads: Mutex::default(),
                names: Mutex::default(),
                starting: Mutex::default(),
                stopped: Mutex::default(),
                _scratch: scratch,
            }),
        };
        let inner = Arc::downgrade(&host.inner);
        host.inner.cx.telemetry.set_gauges(Box::new(move |instruments, now| {
            let Some(inner) = inner.upgrade() else { return };
            let workloads: Vec<Arc<RunningWorkload>> = inner.workloads.lock().unwrap().values().cloned().collect();
            instruments.workloads(now, workloads.len() as u64);
            for w in &workloads {
                for c in &w.components {
                    if let Some(metrics) = &c.metrics {
                        instruments.instances(metrics.attributes(), now, c.gate.in_use().into(), c.idle_count() as u64);
                    }
                }
            }
        }));
        Ok(host)
    }

    /// The host's telemetry: disabled unless the configuration asked for it.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.cx.telemetry
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The engine WASI 0.2 workloads run on (component-model concurrency off).
    pub fn engine(&self) -> &Arc<Engine> {
        self.inner.cx.engines.default_engine()
    }

    /// The engine for components that need `concurrency`, made now if it is the
    /// first need of it.
    pub fn engine_for(&self, concurrency: Concurrency) -> anyhow::Result<Arc<Engine>> {
        self.inner.cx.engines.get(concurrency).map_err(anyhow::Error::from)
    }

    /// Compiled-component cache counters, summed over the engines started.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cx.engines.started().iter().map(|e| e.cache().stats()).fold(CacheStats::default(), |a, b| {
            CacheStats {
                compiled: a.compiled + b.compiled,
                memory_hits: a.memory_hits + b.memory_hits,
                disk_hits: a.disk_hits + b.disk_hits,
            }
        })
    }

    /// What this host has fetched from registries.
    pub fn oci_stats(&self) -> OciStats {
        self.inner.cx.sources.oci.stats()
    }

    /// Validates a workload without starting it (what `weft inspect` shows).
    pub async fn validate(&self, spec: WorkloadSpec) -> Result<ValidatedWorkload, Rejection> {
        workload::validate(&self.inner.cx, WorkloadId::generate(), spec).await
    }

    /// Whether a workload with this id runs here or ran here recently.
    fn workload_known(&self, id: &WorkloadId) -> bool {
        self.inner.workloads.lock().unwrap().contains_key(id)
            || self.inner.stopped.lock().unwrap().iter().any(|s| &s.id == id)
    }

    /// The running workload with this id, to invoke its components in-process.
    pub fn workload(&self, id: &WorkloadId) -> Option<Arc<RunningWorkload>> {
        self.inner.workloads.lock().unwrap().get(id).cloned()
    }

    /// Starts `spec` in place of the running workload `old` (`weft dev` after a
    /// rebuild): the new workload is validated and started while `old` still
    /// serves, and takes over its HTTP routes (and its name, so its key-value and
    /// blob data). `old` then gets no new requests; it stops once the calls it
    /// has in flight are done (or after [`REPLACED_DRAIN`]), in the background.
    /// A rejected replacement leaves `old` running as it was.
    pub async fn workload_replace(&self, old: &WorkloadId, spec: WorkloadSpec) -> Result<WorkloadStatus, HostError> {
        let Some(running) = self.workload(old) else { return Err(HostError::NotFound(old.clone())) };
        if !running.state().is_active() {
            return Err(HostError::NotFound(old.clone()));
        }
        let status = self.start_workload(WorkloadId::generate(), spec, Some(&running)).await?;
        let (host, old) = (self.clone(), old.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + REPLACED_DRAIN;
            while running.calls_in_flight() > 0 && Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let _ = host.workload_stop(&old).await;
        });
        Ok(status)
    }

    async fn start_workload(
        &self,
        id: WorkloadId,
        spec: WorkloadSpec,
        replacing: Option<&Arc<RunningWorkload>>,
    ) -> Result<WorkloadStatus, HostError> {
        if self.workload_known(&id) || !self.inner.starting.lock().unwrap().insert(id.clone()) {
            return Err(HostError::DuplicateId(id));
        }
        let _starting = IdReservation { ids: &self.inner.starting, id: id.clone() };
        let name = spec.name.clone();
        let key = (spec.namespace.clone(), spec.name.clone());
        let takes_over = replacing.is_some_and(|old| old.namespace == key.0 && old.name == key.1);
        let reservation = if takes_over {
            // The name stays with `replacing` until the replacement runs.
            NameReservation { names: &self.inner.names, key: None }
        } else {
            let mut names = self.inner.names.lock().unwrap();
            if names.contains_key(&key) {
                let problem = Problem::new(
                    "manifest",
                    format!(
                        "a workload named `{}` is already running in namespace `{}` on this host (stop it first)",
                        key.1, key.0
                    ),
                );
                return Err(Rejection { workload: name, problems: vec![problem] }.into());
            }
            names.insert(key.clone(), id.clone());
            // Dropped half-way (the caller gave up), the name is released too.
            NameReservation { names: &self.inner.names, key: Some(key.clone()) }
        };
        let replaces = replacing.map(|w| w.id().clone());
        let started = async {
            let validated = workload::validate(&self.inner.cx, id.clone(), spec).await.inspect_err(|rejection| {
                tracing::info!(workload = %name, "{rejection}");
            })?;
            Ok::<_, HostError>(RunningWorkload::start(validated, self.telemetry().clone(), replaces).await?)
        };
        let running = started.await?;
        tracing::info!(workload = %name, id = %id, "running");
        if let Some(remote) = &self.inner.cx.remote {
            for c in &running.plan().components {
                for link in &c.imports {
                    let crate::workload::Provider::Remote { group } = &link.provider else { continue };
                    if !remote.is_served(group.as_deref(), &link.import).await {
                        tracing::warn!(workload = %name, component = %c.component,
                            "no host of the lattice serves `{}` now: its calls fail until one does", link.import);
                    }
                }
            }
        }
        self.inner.workloads.lock().unwrap().insert(id.clone(), running.clone());
        if takes_over {
            self.inner.names.lock().unwrap().insert(key, id);
        }
        reservation.keep();
        Ok(running.status())
    }

    /// Stops the plugins first (so no new work arrives, and servers drain the
    /// requests in flight), then every workload.
    pub async fn shutdown(&self) {
        for plugin in self.inner.cx.plugins.all() {
            plugin.stop().await;
        }
        let ids: Vec<WorkloadId> = self.inner.workloads.lock().unwrap().keys().cloned().collect();
        for id in ids {
            let _ = self.workload_stop(&id).await;
        }
        self.inner.cx.telemetry.shutdown().await;
    }
}

impl HostApi for Host {
    async fn heartbeat(&self) -> Result<Heartbeat, HostError> {
        let (workloads, components, on_engine) = {
            let map = self.inner.workloads.lock().unwrap();
            let active: Vec<_> = map.values().filter(|w| w.state().is_active()).collect();
            let on_engine = |c: Concurrency| active.iter().filter(|w| w.concurrency() == c).count();
            let on_engine = [on_engine(Concurrency::Off), on_engine(Concurrency::On)];
            (active.len(), active.iter().map(|w| w.components.len()).sum(), on_engine)
        };
        let engines = self
            .inner
            .cx
            .engines
            .started()
            .iter()
            .map(|e| EngineStatus {
                concurrency: e.concurrency(),
                allocator: e.allocator(),
                workloads: on_engine[usize::from(e.concurrency() == Concurrency::On)],
            })
            .collect();
        let mut interfaces: Vec<String> =
            wasi::interfaces().chain(self.inner.cx.plugins.interfaces()).map(|i| i.to_string()).collect();
        interfaces.sort();
        interfaces.dedup();
        let mut exports: Vec<String> = self.inner.cx.plugins.driven_interfaces().map(|i| i.to_string()).collect();
        exports.sort();
        exports.dedup();
        Ok(Heartbeat {
            host_id: self.inner.id.clone(),
            friendly_name: self.inner.friendly_name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            labels: self.inner.labels.clone(),
            workloads,
            components,
            interfaces,
            exports,
            http_port: self.inner.cx.plugins.all().find_map(|p| p.http_port()),
            environment: self.inner.environment.clone(),
            allocator: self.engine().allocator(),
            engines,
        })
    }

    async fn workload_start_as(&self, id: WorkloadId, spec: WorkloadSpec) -> Result<WorkloadStatus, HostError> {
        self.start_workload(id, spec, None).await
    }

    async fn workload_list(&self) -> Result<Vec<WorkloadStatus>, HostError> {
        let workloads: Vec<Arc<RunningWorkload>> = self.inner.workloads.lock().unwrap().values().cloned().collect();
        Ok(workloads.iter().map(|w| w.status()).collect())
    }

    async fn workload_status(&self, id: &WorkloadId) -> Result<WorkloadStatus, HostError> {
        if let Some(w) = self.workload(id) {
            return Ok(w.status());
        }
        let stopped = self.inner.stopped.lock().unwrap();
        stopped.iter().find(|s| &s.id == id).cloned().ok_or_else(|| HostError::NotFound(id.clone()))
    }

    async fn workload_stop(&self, id: &WorkloadId) -> Result<WorkloadStatus, HostError> {
        let Some(workload) = self.workload(id) else {
            return self.workload_status(id).await;
        };
        let status = workload.stop().await;
        self.inner.workloads.lock().unwrap().shift_remove(id);
        {
            // Unless a replacement has taken the name over.
            let mut names = self.inner.names.lock().unwrap();
            let key = (workload.namespace.clone(), workload.name.clone());
            if names.get(&key) == Some(id) {
                names.remove(&key);
            }
        }
        let mut stopped = self.inner.stopped.lock().unwrap();
        if stopped.len() == STOPPED_KEPT {
            stopped.pop_front();
        }
        stopped.push_back(status.clone());
        Ok(status)
    }
}

/// An id held while its workload starts.
struct IdReservation<'a> {
    ids: &'a Mutex<HashSet<WorkloadId>>,
    id: WorkloadId,
}

impl Drop for IdReservation<'_> {
    fn drop(&mut self) {
        self.ids.lock().unwrap().remove(&self.id);
    }
}

/// A workload name held while its workload starts; released unless kept.
struct NameReservation<'a> {
    names: &'a Mutex<HashMap<(String, String), WorkloadId>>,
    key: Option<(String, String)>,
}

impl NameReservation<'_> {
    fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for NameReservation<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.names.lock().unwrap().remove(&key);
        }
    }
}

fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "weft".to_string())
}
