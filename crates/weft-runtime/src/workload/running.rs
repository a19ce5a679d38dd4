//! A started workload: its components ready to invoke, its service supervised.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime::component::{ComponentNamedList, Func, Instance, Lift, Lower, TypedFunc, Val};

use super::instance::{WorkloadComponent, classify};
use super::service::{ServiceStatus, supervise};
use super::validate::ValidatedWorkload;
use super::volumes::{self, Volume};
use super::{ComponentStatus, LinkPlan, Provider, WorkloadId, WorkloadState, WorkloadStatus};
use crate::engine::Engine;
use crate::error::{InvokeError, Problem, Rejection};
use crate::interface::ItemName;
use crate::manifest::{RestartPolicy, WorkloadSpec};
use crate::plugin::{Binding, ComponentIdentity, HostPlugin, PluginRegistry};
use crate::store::StoreState;

/// The part of a workload's status that changes over its life.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    pub state: WorkloadState,
    pub message: Option<String>,
    pub service: Option<ServiceStatus>,
}

pub struct RunningWorkload {
    id: WorkloadId,
    pub(crate) name: String,
    namespace: String,
    engine: Arc<Engine>,
    pub(crate) components: Vec<Arc<WorkloadComponent>>,
    service: Option<(usize, RestartPolicy)>,
    plan: LinkPlan,
    volumes: Vec<Volume>,
    /// Set when the workload starts stopping: new invocations are refused.
    stopping: AtomicBool,
    /// Set once in-flight invocations had their grace period: running guests are
    /// interrupted at their next epoch tick.
    interrupt: Arc<AtomicBool>,
    pub(crate) started: Instant,
    lifecycle: watch::Sender<Lifecycle>,
    service_task: Mutex<Option<JoinHandle<()>>>,
    /// Plugins bound to the workload's components, to unbind when it stops.
    bound: tokio::sync::Mutex<Vec<(Arc<dyn HostPlugin>, ComponentIdentity)>>,
}

/// A service run as its entry point: `wasi:cli/run.run`.
const RUN: &str = "wasi:cli/run@0.2.0#run";

/// An instance of a component, ready for calls (see [`RunningWorkload::instantiate`]).
pub struct Invocation {
    component: Arc<WorkloadComponent>,
    /// Taken back by `drop` when the component reuses instances.
    live: Option<(Store<StoreState>, Instance)>,
    /// Whether every call so far ended cleanly: only then may the instance serve
    /// another invocation.
    clean: bool,
    /// When the component's `timeout` runs out for this invocation.
    deadline: Option<Instant>,
    _slot: OwnedSemaphorePermit,
}

/// Runs a call into `component` until it ends or `deadline` passes. Past the
/// deadline the call's future is dropped, which Wasmtime allows at any await
/// point; the store it ran in must not serve again.
async fn before_deadline<T>(
    component: &WorkloadComponent,
    deadline: Option<Instant>,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<wasmtime::Result<T>, InvokeError> {
    let Some(deadline) = deadline else { return Ok(call.await) };
    tokio::time::timeout_at(deadline.into(), call).await.map_err(|_| InvokeError::DeadlineExceeded {
        component: component.name.clone(),
        limit: component.limits.timeout.unwrap_or_default(),
    })
}

impl Invocation {
    /// Calls an exported function (named as for [`RunningWorkload::invoke`]); each
    /// call gets the component's full CPU time limit.
    pub async fn call(&mut self, function: &str, params: &[Val]) -> Result<Vec<Val>, InvokeError> {
        let func = self.func(function)?;
        let (component, deadline) = (self.component.clone(), self.deadline);
        let store = self.store();
        let mut results = vec![Val::Bool(false); func.ty(&*store).results().len()];
        store.data_mut().enter(component.index, None);
        let outcome = before_deadline(&component, deadline, func.call_async(&mut *store, params, &mut results)).await;
        self.settle(outcome).map(|()| results)
    }

    /// Calls a typed function of this instance (from [`Invocation::typed_func`]),
    /// with the component's full CPU time limit; errors as for [`Invocation::call`].
    pub async fn call_typed<P, R>(&mut self, func: &TypedFunc<P, R>, params: P) -> Result<R, InvokeError>
    where
        P: ComponentNamedList + Lower + Send + Sync + 'static,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let (component, deadline) = (self.component.clone(), self.deadline);
        let store = self.store();
        store.data_mut().enter(component.index, None);
        let outcome = before_deadline(&component, deadline, func.call_async(&mut *store, params)).await;
        self.settle(outcome)
    }

    /// A failed (or abandoned) call leaves the instance in a state nobody should
    /// see again.
    fn settle<T>(&mut self, outcome: Result<wasmtime::Result<T>, InvokeError>) -> Result<T, InvokeError> {
        let outcome = outcome.inspect_err(|_| self.clean = false)?;
        outcome.map_err(|e| {
            self.clean = false;
            let (store, _) = self.live.as_ref().expect("live until dropped");
            classify(&self.component, e, store.data())
        })
    }

    /// An exported function with static types, for the fastest calls from Rust.
    pub fn typed_func<P, R>(&mut self, function: &str) -> Result<TypedFunc<P, R>, InvokeError>
    where
        P: ComponentNamedList + Lower,
        R: ComponentNamedList + Lift,
    {
        let func = self.func(function)?;
        func.typed(&*self.store()).map_err(|e| InvokeError::NoSuchFunction {
            component: self.component.name.to_string(),
            function: format!("{function}: {e}"),
        })
    }

    fn func(&mut self, function: &str) -> Result<Func, InvokeError> {
        let index = self.component.export_func(function)?;
        let instance = self.instance();
        instance.get_func(self.store(), index).ok_or_else(|| InvokeError::NoSuchFunction {
            component: self.component.name.to_string(),
            function: function.to_string(),
        })
    }

    pub fn store(&mut self) -> &mut Store<StoreState> {
        &mut self.live.as_mut().expect("live until dropped").0
    }

    pub fn instance(&self) -> Instance {
        self.live.as_ref().expect("live until dropped").1
    }
}

impl Drop for Invocation {
    fn drop(&mut self) {
        if let Some((store, instance)) = self.live.take()
            && self.clean
        {
            self.component.put_idle(store, instance);
        }
    }
}

impl RunningWorkload {
    /// Creates the workload's emptyDirs, binds it to the plugins its components
    /// use (any of which may refuse it), and starts its service.
    pub(crate) async fn start(
        engine: Arc<Engine>,
        plugins: &PluginRegistry,
        validated: ValidatedWorkload,
    ) -> Result<Arc<RunningWorkload>, Rejection> {
        let ValidatedWorkload { id, spec, components, service, volumes, plan } = validated;
        let reject = |problem| Rejection { workload: spec.name.clone(), problems: vec![problem] };
        volumes::create(&volumes).map_err(|e| reject(Problem::new("volumes", e.to_string())))?;
        let service_status = service
            .as_ref()
            .map(|(index, _)| ServiceStatus { component: components[*index].name.to_string(), ..Default::default() });
        let bindings = plan_bindings(plugins, &spec, &components, &plan);
        let workload = Arc::new(RunningWorkload {
            id,
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            engine,
            components,
            service,
            plan,
            volumes,
            stopping: AtomicBool::new(false),
            interrupt: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
            lifecycle: watch::Sender::new(Lifecycle {
                state: WorkloadState::Starting,
                message: None,
                service: service_status,
            }),
            service_task: Mutex::new(None),
            bound: tokio::sync::Mutex::new(Vec::new()),
        });
        // Every plugin is asked, so that a rejection lists every refusal at once.
        let mut refusals = Vec::new();
        for PlannedBinding { plugin, component, imports, exports, config } in bindings {
            let identity = workload.components[component].identity.clone();
            let component_config = spec
                .all_components()
                .find(|c| *c.name == *identity.component)
                .map(|c| c.config.clone())
                .unwrap_or_default();
            let binding = Binding { identity, workload: workload.clone(), imports, exports, config, component_config };
            match plugin.bind(&binding).await {
                Ok(()) => workload.bound.lock().await.push((plugin, binding.identity)),
                Err(reason) => {
                    // Bindings still to come may take traffic before they are undone:
                    // turn it away, as for a workload that is stopping.
                    workload.stopping.store(true, Ordering::Relaxed);
                    refusals.push(Problem::new(
                        format!("component `{}`", binding.identity.component),
                        format!("plugin `{}` refused it: {reason}", plugin.id()),
                    ));
                }
            }
        }
        if !refusals.is_empty() {
            workload.unbind_all().await;
            volumes::remove(&workload.volumes);
            return Err(Rejection { workload: spec.name.clone(), problems: refusals });
        }
        workload.update(|l| l.state = WorkloadState::Running);
        if let Some((index, policy)) = workload.service.clone() {
            let task = tokio::spawn(supervise(workload.clone(), index, policy));
            *workload.service_task.lock().unwrap() = Some(task);
        }
        Ok(workload)
    }

    async fn unbind_all(&self) {
        let bound = std::mem::take(&mut *self.bound.lock().await);
        for (plugin, identity) in bound.into_iter().rev() {
            plugin.unbind(&identity).await;
        }
    }

    pub fn id(&self) -> &WorkloadId {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn plan(&self) -> &LinkPlan {
        &self.plan
    }

    pub fn state(&self) -> WorkloadState {
        self.lifecycle.borrow().state
    }

    /// Waits until the workload is in a state `done` accepts, and returns it.
    pub async fn wait_for(&self, done: impl Fn(WorkloadState) -> bool) -> WorkloadState {
        let mut rx = self.lifecycle.subscribe();
        let lifecycle = rx.wait_for(|l| done(l.state)).await.expect("the sender lives as long as self");
        lifecycle.state
    }

    pub fn status(&self) -> WorkloadStatus {
        let l = self.lifecycle.borrow().clone();
        WorkloadStatus {
            id: self.id.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            state: l.state,
            message: l.message,
            components: self
                .components
                .iter()
                .map(|c| ComponentStatus {
                    name: c.name.to_string(),
                    digest: c.digest.to_string(),
                    service: self.service.as_ref().is_some_and(|(i, _)| *i == c.index),
                    limits: c.limits.clone(),
                    in_flight: c.gate.in_use(),
                })
                .collect(),
            service: l.service,
            uptime_ms: self.started.elapsed().as_millis() as u64,
        }
    }

    /// Calls an exported function of a component, in a fresh instance, within the
    /// component's limits. `function` is `interface#name` (the interface matched
    /// semver-compatibly, e.g. `wasi:cli/run@0.2.0#run`) or a plain exported name.
    pub async fn invoke(&self, component: &str, function: &str, params: &[Val]) -> Result<Vec<Val>, InvokeError> {
        self.instantiate(component).await?.call(function, params).await
    }

    /// An instance of a component in a store of its own, holding one of the
    /// component's concurrency slots until dropped: for callers that make several
    /// calls into one instance (plugins, benchmarks). The instance is fresh unless
    /// the component has `reuseInstances`; then it may be one whose previous
    /// invocation ended cleanly.
    pub async fn instantiate(&self, component: &str) -> Result<Invocation, InvokeError> {
        let c = self.component(component)?;
        let slot = self.admit(c).await?;
        let deadline = c.deadline();
        let live = match c.take_idle() {
            Some(idle) => idle,
            None => c.instantiate(&self.engine, self.interrupt.clone()).await?,
        };
        Ok(Invocation { component: c.clone(), live: Some(live), clean: true, deadline, _slot: slot })
    }

    /// Runs a component's `wasi:cli/run` export once, within its limits. An exit
    /// status of 0 is success.
    pub async fn run(&self, component: &str) -> Result<(), InvokeError> {
        let c = self.component(component)?;
        let _slot = self.admit(c).await?;
        self.run_component(c).await
    }

    pub(crate) async fn run_component(&self, c: &WorkloadComponent) -> Result<(), InvokeError> {
        let func = c.export_func(RUN)?;
        let deadline = c.deadline();
        let (mut store, instance) = c.instantiate(&self.engine, self.interrupt.clone()).await?;
        let run = instance.get_typed_func::<(), (Result<(), ()>,)>(&mut store, func).map_err(|e| {
            InvokeError::NoSuchFunction { component: c.name.to_string(), function: format!("{RUN}: {e}") }
        })?;
        match before_deadline(c, deadline, run.call_async(&mut store, ())).await? {
            Ok((Ok(()),)) => Ok(()),
            Ok((Err(()),)) => Err(InvokeError::RunFailed { component: c.name.to_string() }),
            Err(e) => match classify(c, e, store.data()) {
                InvokeError::Exit { code: 0, .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    fn component(&self, name: &str) -> Result<&Arc<WorkloadComponent>, InvokeError> {
        self.components.iter().find(|c| &*c.name == name).ok_or_else(|| InvokeError::NoSuchComponent(name.to_string()))
    }

    async fn admit(&self, c: &WorkloadComponent) -> Result<OwnedSemaphorePermit, InvokeError> {
        if self.is_stopping() {
            return Err(InvokeError::Stopped);
        }
        c.gate.enter().await.map_err(|busy| InvokeError::Busy { component: c.name.to_string(), busy })
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Lifecycle)) {
        self.lifecycle.send_modify(f);
    }

    /// Unbinds the plugins (no new requests arrive), stops the service, gives
    /// invocations in flight a grace period and then interrupts them, deletes the
    /// emptyDirs, and returns the final status.
    pub(crate) async fn stop(&self) -> WorkloadStatus {
        if self.stopping.swap(true, Ordering::SeqCst) {
            self.wait_for(|s| s == WorkloadState::Stopped).await;
            return self.status();
        }
        self.update(|l| l.state = WorkloadState::Stopping);
        self.unbind_all().await;
        let task = self.service_task.lock().unwrap().take();
        if let Some(task) = task {
            // Guests yield at every epoch tick, so the abort lands within a tick
            // even when the service is busy-looping.
            task.abort();
            let _ = task.await;
        }
        let drained = |grace: Duration| async move {
            let deadline = Instant::now() + grace;
            while self.components.iter().any(|c| c.gate.in_use() > 0) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        drained(Self::GRACE).await;
        // What is still running is interrupted at its next tick.
        self.interrupt.store(true, Ordering::SeqCst);
        drained(Duration::from_secs(1)).await;
        for c in &self.components {
            c.drop_idle();
        }
        volumes::remove(&self.volumes);
        self.update(|l| {
            l.state = WorkloadState::Stopped;
            l.message = None;
        });
        tracing::info!(workload = %self.name, id = %self.id, "stopped");
        self.status()
    }

    /// How long invocations in flight may finish on their own when the workload stops.
    const GRACE: Duration = Duration::from_millis(500);
}

/// A plugin to bind to a component of a starting workload.
struct PlannedBinding {
    plugin: Arc<dyn HostPlugin>,
    component: usize,
    imports: Vec<String>,
    exports: Vec<String>,
    config: Vec<(String, IndexMap<String, serde_json::Value>)>,
}

/// Which plugins each component is bound to: those serving its imports, those
/// driving exports a `hostInterfaces` entry asks them to (so a server plugin
/// drives only what it was asked to), and those an entry naming the component
/// addresses. An entry naming no component configures every component bound.
fn plan_bindings(
    plugins: &PluginRegistry,
    spec: &WorkloadSpec,
    components: &[Arc<WorkloadComponent>],
    plan: &LinkPlan,
) -> Vec<PlannedBinding> {
    let mut out = Vec::new();
    for c in components {
        let engine = c.component.engine();
        let exports: Vec<String> = c.component.component_type().exports(engine).map(|(n, _)| n.to_string()).collect();
        // Entries for this component, and whether each names it (an entry naming no
        // component applies to every component that uses the plugin anyway).
        let asked: Vec<(String, IndexMap<String, serde_json::Value>, bool)> = spec
            .host_interfaces
            .iter()
            .filter(|hi| hi.component.as_deref().is_none_or(|t| t == &*c.name))
            .map(|hi| (hi.interface.clone(), hi.config.clone(), hi.component.is_some()))
            .collect();
        for plugin in plugins.all() {
            let world = plugin.world();
            let in_world = |name: &str| {
                let item = ItemName::parse(name);
                let Some(i) = item.as_interface() else { return false };
                world.imports.iter().chain(&world.exports).any(|w| w.satisfies(i) || i.satisfies(w))
            };
            let imports: Vec<String> = plan
                .imports_of(&c.name)
                .iter()
                .filter(|l| matches!(&l.provider, Provider::Plugin { plugin: p } if p == plugin.id()))
                .map(|l| l.import.clone())
                .collect();
            let entries: Vec<_> = asked.iter().filter(|(i, _, _)| in_world(i)).collect();
            let named = entries.iter().any(|(_, _, named)| *named);
            let config: Vec<_> = entries.into_iter().map(|(i, c, _)| (i.clone(), c.clone())).collect();
            // An export the plugin drives is bound even with no entry for it: the
            // plugin decides what that means (the HTTP server may serve it on `/*`).
            let drives = |name: &str| {
                ItemName::parse(name).as_interface().is_some_and(|i| world.exports.iter().any(|w| i.satisfies(w)))
            };
            let driven: Vec<String> = exports
                .iter()
                .filter(|e| {
                    in_world(e)
                        && (drives(e) || config.iter().any(|(i, _)| ItemName::parse(i).satisfies(&ItemName::parse(e))))
                })
                .cloned()
                .collect();
            if !imports.is_empty() || !driven.is_empty() || named {
                out.push(PlannedBinding {
                    plugin: plugin.clone(),
                    component: c.index,
                    imports,
                    exports: driven,
                    config,
                });
            }
        }
    }
    out
}
