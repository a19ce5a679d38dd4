//! The HTTP server: serves components that export `wasi:http/incoming-handler`
//! 0.2 or `wasi:http/handler` 0.3 (an async `handle`: the component runs on the
//! engine with component-model concurrency, its body written by its own tasks
//! while the store's event loop runs), side by side on the addresses the host
//! configuration gives (HTTP/1.1 and h2, TLS with rustls when a certificate is
//! configured), routed by host, path and method.
//!
//! A component is served when its manifest asks, with its routes:
//!
//! ```yaml
//! hostInterfaces:
//!   - interface: wasi:http/incoming-handler@0.2.0
//!     component: api
//!     config:
//!       routes:
//!         - { host: api.example.com, path: /users/{id}, methods: [GET] }
//!         - { path: /static/* }
//! ```
//!
//! A workload's only HTTP component may leave `routes` out: it is served on `/*`.
//!
//! Every request gets a fresh instance, or an idle one with `reuseInstances`,
//! within the component's limits: past its concurrency bound and queue the answer
//! is `503` with `Retry-After`. Bodies stream both ways. An unknown route is `404` (`405` when only the method does
//! not match); a handler that traps, or returns no response, is `500` and the
//! server carries on. The server's own error answers name a request id and
//! nothing else; the detail is in the log under that id. Stopping the host drains
//! requests in flight.

mod router;
mod server;
mod tls;

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::component::LinkerInstance;
use weft_runtime::RunningWorkload;
use weft_runtime::interface::InterfaceName;
use weft_runtime::plugin::{Binding, BindingSettings, BoxFuture, ComponentIdentity, HostPlugin, PluginWorld, Whose};
use weft_runtime::store::StoreState;
use weft_runtime::workload::Provider;

pub use self::router::RouteSpec;
use self::router::{Route, Routes};

pub const ID: &str = "http";
/// The handler interfaces it serves: WASI 0.2's, and WASI 0.3's (an async
/// `handle`, for components on the engine with component-model concurrency).
const HANDLERS: [&str; 2] = ["wasi:http/incoming-handler@0.2.0", "wasi:http/handler@0.3.0"];

/// The handler export among `exports`, if any.
fn handler_export(exports: &[String]) -> Option<&String> {
    exports.iter().find(|e| HANDLERS.iter().any(|h| interface_matches(h, e)))
}

/// Why a component without `routes` cannot be served.
fn no_handler() -> String {
    format!("the HTTP server needs `routes` for it (it exports neither `{}` nor `{}`)", HANDLERS[0], HANDLERS[1])
}

/// Whether `export` is WASI 0.3's handler (served through the store's event loop).
pub(crate) fn is_p3_handler(export: &str) -> bool {
    interface_matches(HANDLERS[1], export)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Addresses to listen on once a workload asks to be served.
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// How long a stopping host waits for requests in flight.
    #[serde(default = "default_drain", with = "weft_runtime::limits::duration")]
    pub drain_timeout: Duration,
    /// How long a new connection may take to finish its TLS handshake and send
    /// its first request head (an HTTP/1 request: every request head); past it
    /// the connection is closed.
    #[serde(default = "default_header_read", with = "weft_runtime::limits::duration")]
    pub header_read_timeout: Duration,
    /// How long a connection that has been served may sit with no request in
    /// progress before it is closed.
    #[serde(default = "default_idle", with = "weft_runtime::limits::duration")]
    pub idle_timeout: Duration,
    /// Open connections per listener; at the cap the listener stops accepting and
    /// new connections wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

fn default_listen() -> Vec<SocketAddr> {
    vec![SocketAddr::from(([127, 0, 0, 1], 8080))]
}

fn default_drain() -> Duration {
    Duration::from_secs(10)
}

fn default_header_read() -> Duration {
    Duration::from_secs(30)
}

fn default_idle() -> Duration {
    Duration::from_secs(60)
}

fn default_max_connections() -> u32 {
    10_000
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: default_listen(),
            tls: None,
            drain_timeout: default_drain(),
            header_read_timeout: default_header_read(),
            idle_timeout: default_idle(),
            max_connections: default_max_connections(),
        }
    }
}

pub struct HttpPlugin {
    settings: Settings,
    shared: Arc<Shared>,
    server: tokio::sync::Mutex<Option<server::Server>>,
    /// The first listening address's port while the server runs; 0 otherwise.
    port: std::sync::atomic::AtomicU16,
}

/// What the connection tasks need.
pub(crate) struct Shared {
    routes: RwLock<Routes>,
    workloads: RwLock<HashMap<ComponentIdentity, Arc<RunningWorkload>>>,
    /// Components served on `/*` for want of routes.
    defaults: RwLock<HashSet<ComponentIdentity>>,
    /// The host's, learnt from the first workload bound: requests' spans.
    telemetry: std::sync::OnceLock<weft_runtime::telemetry::Telemetry>,
}

impl HttpPlugin {
    pub fn new(settings: &Settings) -> HttpPlugin {
        HttpPlugin {
            settings: settings.clone(),
            shared: Arc::new(Shared {
                routes: RwLock::default(),
                workloads: RwLock::default(),
                defaults: RwLock::default(),
                telemetry: std::sync::OnceLock::new(),
            }),
            server: tokio::sync::Mutex::new(None),
            port: std::sync::atomic::AtomicU16::new(0),
        }
    }

    /// The addresses the server listens on (empty until a workload is served).
    pub async fn local_addrs(&self) -> Vec<SocketAddr> {
        self.server.lock().await.as_ref().map(|s| s.local_addrs()).unwrap_or_default()
    }

    fn routes_of(binding: &BindingSettings) -> Result<Vec<Route>, String> {
        let mut routes = Vec::new();
        for (interface, config) in &binding.config {
            let Some(export) = binding.exports.iter().find(|e| interface_matches(interface, e)) else {
                return Err(format!("`{interface}` is asked of the HTTP server, but the component does not export it"));
            };
            for (key, value) in config {
                if key != "routes" {
                    return Err(format!("unknown HTTP setting `{key}` (expected `routes`)"));
                }
                let specs: Vec<RouteSpec> =
                    serde_json::from_value(value.clone()).map_err(|e| format!("invalid `routes`: {e}"))?;
                for spec in &specs {
                    routes.push(Route::parse(spec, binding.identity.clone(), export.clone())?);
                }
            }
        }
        Ok(routes)
    }

    /// The component's routes; without any, `/*` when it is its workload's only
    /// HTTP component. A component whose handler another component of the
    /// workload imports is not served unless it has routes (it is a middle link).
    /// The flag says whether the routes are the default.
    fn routes_or_default(&self, binding: &Binding) -> Result<(Vec<Route>, bool), String> {
        let routes = Self::routes_of(binding)?;
        let identity = &binding.identity;
        let served_beside: Vec<ComponentIdentity> = self
            .shared
            .workloads
            .read()
            .unwrap()
            .keys()
            .filter(|other| other.workload_id == identity.workload_id && *other != identity)
            .cloned()
            .collect();
        let defaults = self.shared.defaults.read().unwrap();
        if !routes.is_empty() {
            if let Some(other) = served_beside.iter().find(|o| defaults.contains(o)) {
                return Err(format!(
                    "component `{}` has no HTTP routes and is served on `/*` only while it is the workload's only \
                     HTTP component: give it `routes` too",
                    other.component
                ));
            }
            return Ok((routes, false));
        }
        let Some(export) = handler_export(&binding.exports) else {
            return Err(no_handler());
        };
        let linked = binding.workload.plan().components.iter().flat_map(|c| &c.imports).any(|l| {
            matches!(&l.provider, Provider::Component { component, export: e, .. }
                if **component == *identity.component && HANDLERS.iter().any(|h| interface_matches(h, e)))
        });
        if linked {
            tracing::debug!(workload = %identity.workload, component = %identity.component,
                "not served over HTTP: another component of the workload calls its handler");
            return Ok((Vec::new(), false));
        }
        if let Some(other) = served_beside.first() {
            return Err(format!(
                "it exports `{export}` with no `routes`, and component `{}` of the workload is served too: \
                 a component without routes is served on `/*` only when it is the workload's only HTTP component",
                other.component
            ));
        }
        let spec = RouteSpec { host: None, path: "/*".into(), methods: Vec::new() };
        Ok((vec![Route::parse(&spec, identity.clone(), export.clone())?], true))
    }
}

fn interface_matches(asked: &str, export: &str) -> bool {
    use weft_runtime::interface::ItemName;
    ItemName::parse(export).satisfies(&ItemName::parse(asked))
}

impl HostPlugin for HttpPlugin {
    fn id(&self) -> &str {
        ID
    }

    fn world(&self) -> PluginWorld {
        PluginWorld {
            imports: Vec::new(),
            exports: HANDLERS.iter().map(|h| InterfaceName::parse(h).expect("valid name")).collect(),
        }
    }

    /// The settings alone: every route parses, and the component exports what it
    /// is served for. (Conflicts with routes of running workloads are found at bind.)
    fn validate(&self, settings: &BindingSettings) -> Result<(), String> {
        let routes = Self::routes_of(settings)?;
        if routes.is_empty() && handler_export(&settings.exports).is_none() {
            return Err(no_handler());
        }
        Ok(())
    }

    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (routes, default) = self.routes_or_default(binding)?;
            if routes.is_empty() {
                return Ok(());
            }
            // The workload, then its routes (which may take over those of the workload
            // it replaces): a request that finds a route finds its workload. All
            // before the server listens.
            self.shared.workloads.write().unwrap().insert(binding.identity.clone(), binding.workload.clone());
            if let Err(e) = self.shared.routes.write().unwrap().add(routes, binding.replacing.as_ref()) {
                self.shared.workloads.write().unwrap().remove(&binding.identity);
                return Err(e);
            }
            if default {
                tracing::info!(workload = %binding.identity.workload, component = %binding.identity.component,
                    "served on `/*`: the workload's only HTTP component, with no routes");
                self.shared.defaults.write().unwrap().insert(binding.identity.clone());
            }
            self.shared.telemetry.get_or_init(|| binding.workload.telemetry().clone());
            let mut server = self.server.lock().await;
            if server.is_none() {
                match server::Server::start(&self.settings, self.shared.clone()).await {
                    Ok(started) => {
                        let port = started.local_addrs().first().map_or(0, |a| a.port());
                        self.port.store(port, std::sync::atomic::Ordering::Relaxed);
                        *server = Some(started);
                    }
                    Err(e) => {
                        drop(server);
                        self.unbind(&binding.identity).await;
                        return Err(e);
                    }
                }
            }
            Ok(())
        })
    }

    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.shared.routes.write().unwrap().remove(identity);
            self.shared.defaults.write().unwrap().remove(identity);
            self.shared.workloads.write().unwrap().remove(identity);
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(server) = self.server.lock().await.take() {
                self.port.store(0, std::sync::atomic::Ordering::Relaxed);
                server.shutdown(self.settings.drain_timeout).await;
            }
        })
    }

    fn add_to_linker(&self, _: &mut LinkerInstance<StoreState>, import: &str, _: Whose) -> wasmtime::Result<()> {
        wasmtime::bail!("the HTTP server provides no imports (asked for `{import}`)")
    }

    fn http_port(&self) -> Option<u16> {
        Some(self.port.load(std::sync::atomic::Ordering::Relaxed)).filter(|p| *p != 0)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
