//! A started workload: its components ready to invoke, its service supervised.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinHandle;
use wasmtime::Store;
use wasmtime::component::{Accessor, ComponentNamedList, Func, Instance, Lift, Lower, TypedFunc, Val};

use super::bindings::PlannedBinding;
use super::instance::{WorkloadComponent, classify};
use super::service::{ServiceStatus, supervise};
use super::validate::ValidatedWorkload;
use super::volumes::{self, Volume};
use super::{ComponentStatus, LinkPlan, WorkloadId, WorkloadState, WorkloadStatus};
use crate::engine::Engine;
use crate::error::{InvokeError, Problem, Rejection};
use crate::manifest::RestartPolicy;
use crate::plugin::{Binding, ComponentIdentity, HostPlugin};
use crate::store::StoreState;
use crate::telemetry::model::SpanKind;
use crate::telemetry::{ActiveSpan, Outcome, SpanContext};

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
    pub(crate) namespace: String,
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
    /// Set last when stopping: calls still in flight (blocked in a host call, which
    /// an interrupt does not reach) are dropped.
    cancel: watch::Sender<bool>,
    pub(crate) started: Instant,
    lifecycle: watch::Sender<Lifecycle>,
    service_task: Mutex<Option<JoinHandle<()>>>,
    /// Plugins bound to the workload's components, to unbind when it stops.
    bound: tokio::sync::Mutex<Vec<(Arc<dyn HostPlugin>, ComponentIdentity)>>,
    telemetry: crate::telemetry::Telemetry,
}

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
    cancelled: watch::Receiver<bool>,
    /// The span the caller works in (an HTTP request's), to parent each call's span.
    parent: Option<SpanContext>,
    /// The function last looked up, which names the span of a typed call.
    function: Option<Arc<str>>,
    /// For a component that does not reuse instances: what its next spare is
    /// made with. It is made once this invocation ends, not while it runs, so
    /// that the call does not compete with it for the machine.
    spare_from: Option<(Arc<Engine>, Arc<AtomicBool>)>,
    _slot: OwnedSemaphorePermit,
}

/// Runs a call into `component` until it ends, `deadline` passes or the workload
/// cancels what is in flight. Then the call's future is dropped, which Wasmtime
/// allows at any await point; the store it ran in must not serve again.
async fn before_deadline<T>(
    component: &WorkloadComponent,
    deadline: Option<Instant>,
    mut cancelled: watch::Receiver<bool>,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Result<wasmtime::Result<T>, InvokeError> {
    let timeout = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        outcome = call => Ok(outcome),
        () = timeout => Err(InvokeError::DeadlineExceeded {
            component: component.name.clone(),
            limit: component.limits.timeout.unwrap_or_default(),
        }),
        _ = cancelled.wait_for(|c| *c) => Err(InvokeError::Stopped),
    }
}

impl Invocation {
    /// Calls an exported function (named as for [`RunningWorkload::invoke`]); each
    /// call gets the component's full CPU time limit.
    pub async fn call(&mut self, function: &str, params: &[Val]) -> Result<Vec<Val>, InvokeError> {
        let func = self.func(function)?;
        let (component, deadline, cancelled) = (self.component.clone(), self.deadline, self.cancelled.clone());
        let watch = self.watch();
        let was_clean = self.begin_call();
        let store = self.store();
        let mut results = vec![Val::Bool(false); func.ty(&*store).results().len()];
        store.data_mut().enter(component.index, None);
        let call = func.call_async(&mut *store, params, &mut results);
        let outcome = before_deadline(&component, deadline, cancelled, call).await;
        let outcome = self.settle(outcome, was_clean);
        watch.finish(&self.component, &outcome);
        outcome.map(|()| results)
    }

    /// Ends the invocation, and makes the component's next fresh instance (when
    /// it does not reuse instances) in this task rather than in one of its own:
    /// for a caller that has already answered its client.
    pub async fn finish(mut self) {
        let spare_from = self.spare_from.take();
        let component = self.component.clone();
        drop(self);
        if let Some((engine, stop)) = spare_from {
            component.make_spare_here(&engine, &stop).await;
        }
    }

    /// Sets the span this invocation's calls are children of (the caller's
    /// request), when tracing is on.
    pub fn set_trace_parent(&mut self, parent: Option<SpanContext>) {
        self.parent = parent;
    }

    /// Starts timing a call, and its span (the store's current span meanwhile).
    fn watch(&mut self) -> CallWatch {
        let c = &self.component;
        if c.metrics.is_none() && !c.telemetry.traces() {
            return CallWatch { started: None, span: ActiveSpan::none() };
        }
        let function = self.function.as_deref().unwrap_or("call");
        let mut span = c.telemetry.span(format!("{} {function}", c.name), SpanKind::Internal, self.parent.as_ref());
        if span.is_recording() {
            let id = &c.identity;
            span.set("weft.workload", &*id.workload);
            span.set("weft.namespace", &*id.namespace);
            span.set("weft.workload.id", id.workload_id.to_string());
            span.set("weft.component", &*c.name);
            span.set("weft.function", function);
        }
        let context = span.context().cloned();
        self.store().data_mut().swap_trace_context(context);
        CallWatch { started: Some(Instant::now()), span }
    }

    /// Calls a typed function of this instance (from [`Invocation::typed_func`]),
    /// with the component's full CPU time limit; errors as for [`Invocation::call`].
    pub async fn call_typed<P, R>(&mut self, func: &TypedFunc<P, R>, params: P) -> Result<R, InvokeError>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        R: ComponentNamedList + Lift + Send + Sync + 'static,
    {
        let (component, deadline, cancelled) = (self.component.clone(), self.deadline, self.cancelled.clone());
        let watch = self.watch();
        let was_clean = self.begin_call();
        let store = self.store();
        store.data_mut().enter(component.index, None);
        let outcome = before_deadline(&component, deadline, cancelled, func.call_async(&mut *store, params)).await;
        let outcome = self.settle(outcome, was_clean);
        watch.finish(&self.component, &outcome);
        outcome
    }

    /// Runs `work` inside the store's event loop, under the component's
    /// deadline and the workload's cancellation, and returns when `work` does:
    /// for async exports (component-model concurrency, WASI 0.3) whose tasks go
    /// on after they return, such as a 0.3 HTTP handler writing the body of the
    /// response it returned. Only for components on the engine with concurrency.
    pub async fn run_concurrent<R: Send + 'static>(
        &mut self,
        work: impl AsyncFnOnce(&Accessor<StoreState>, Instance) -> wasmtime::Result<R>,
    ) -> Result<R, InvokeError> {
        let (component, deadline, cancelled) = (self.component.clone(), self.deadline, self.cancelled.clone());
        let watch = self.watch();
        let was_clean = self.begin_call();
        let instance = self.instance();
        let store = self.store();
        store.data_mut().enter(component.index, None);
        let run = async { store.run_concurrent(async |accessor| work(accessor, instance).await).await.and_then(|r| r) };
        let outcome = before_deadline(&component, deadline, cancelled, run).await;
        let outcome = self.settle(outcome, was_clean);
        watch.finish(&self.component, &outcome);
        outcome
    }

    /// Marks the instance unclean until the call ends (see [`Self::settle`]):
    /// one abandoned half-way (its future dropped because the client went
    /// away) leaves an instance nobody should reuse. Returns whether it was clean.
    fn begin_call(&mut self) -> bool {
        std::mem::replace(&mut self.clean, false)
    }

    /// A failed (or abandoned) call leaves the instance in a state nobody should
    /// see again.
    fn settle<T>(
        &mut self,
        outcome: Result<wasmtime::Result<T>, InvokeError>,
        was_clean: bool,
    ) -> Result<T, InvokeError> {
        match outcome {
            Ok(Ok(value)) => {
                self.clean = was_clean;
                Ok(value)
            }
            Ok(Err(e)) => {
                let (store, _) = self.live.as_ref().expect("live until dropped");
                Err(classify(&self.component, e, store.data()))
            }
            Err(e) => Err(e),
        }
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
        if self.function.as_deref() != Some(function) {
            self.function = Some(function.into());
        }
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

/// A call being timed and traced.
struct CallWatch {
    /// `None` when neither metrics nor traces are exported.
    started: Option<Instant>,
    span: ActiveSpan,
}

impl CallWatch {
    fn finish<T>(mut self, component: &WorkloadComponent, outcome: &Result<T, InvokeError>) {
        let Some(started) = self.started else { return };
        let kind = outcome.as_ref().err().map_or(Outcome::Ok, InvokeError::outcome);
        if let Some(metrics) = &component.metrics {
            metrics.invoked(started.elapsed(), kind);
        }
        if let Err(e) = outcome {
            self.span.set("error.type", kind.as_str());
            self.span.fail(e.to_string());
        }
    }
}

impl Drop for Invocation {
    fn drop(&mut self) {
        if let Some((store, instance)) = self.live.take()
            && self.clean
        {
            self.component.put_idle(store, instance);
        }
        if let Some((engine, stop)) = &self.spare_from {
            self.component.make_spare(engine, stop);
        }
    }
}

impl RunningWorkload {
    /// Creates the workload's emptyDirs, binds it to the plugins its components
    /// use (any of which may refuse it), and starts its service. A workload
    /// `replacing` another one that still runs may take over what its bindings
    /// hold (HTTP routes).
    pub(crate) async fn start(
        validated: ValidatedWorkload,
        telemetry: crate::telemetry::Telemetry,
        replacing: Option<WorkloadId>,
    ) -> Result<Arc<RunningWorkload>, Rejection> {
        let ValidatedWorkload { id, spec, components, service, volumes, engine, plan, bindings } = validated;
        let reject = |problem| Rejection { workload: spec.name.clone(), problems: vec![problem] };
        volumes::create(&volumes).map_err(|e| reject(Problem::new("volumes", e.to_string())))?;
        let service_status = service
            .as_ref()
            .map(|(index, _)| ServiceStatus { component: components[*index].name.to_string(), ..Default::default() });
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
            cancel: watch::Sender::new(false),
            started: Instant::now(),
            lifecycle: watch::Sender::new(Lifecycle {
                state: WorkloadState::Starting,
                message: None,
                service: service_status,
            }),
            service_task: Mutex::new(None),
            bound: tokio::sync::Mutex::new(Vec::new()),
            telemetry,
        });
        // Every plugin is asked, so that a rejection lists every refusal at once.
        let mut refusals = Vec::new();
        for PlannedBinding { plugin, settings } in bindings {
            let binding = Binding { settings, workload: workload.clone(), replacing: replacing.clone() };
            match plugin.bind(&binding).await {
                Ok(()) => workload.bound.lock().await.push((plugin, binding.settings.identity)),
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
            let task = tokio::spawn(watch_supervisor(workload.clone(), index, policy));
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

    /// The functions of `component`'s export `interface` (its exact name), with
    /// their types: what a plugin serving the export needs to carry calls.
    pub fn export_functions(
        &self,
        component: &str,
        interface: &str,
    ) -> Option<Vec<(String, wasmtime::component::types::ComponentFunc)>> {
        use wasmtime::component::types::ComponentItem;
        let c = self.components.iter().find(|c| *c.name == *component)?;
        let engine = c.component.engine();
        let ty = c.component.component_type();
        let (_, item) = ty.exports(engine).find(|(name, _)| *name == interface)?;
        let ComponentItem::ComponentInstance(ty) = item.ty else { return None };
        let functions = ty
            .exports(engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::ComponentFunc(func) => Some((name.to_string(), func)),
                _ => None,
            })
            .collect();
        Some(functions)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host's telemetry (its spans parent this workload's invocations).
    pub fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.telemetry
    }

    pub fn plan(&self) -> &LinkPlan {
        &self.plan
    }

    /// Invocations of its components in flight, the service's own run aside.
    pub fn calls_in_flight(&self) -> u32 {
        let service = self.service.as_ref().map(|(index, _)| *index);
        self.components.iter().enumerate().filter(|(i, _)| Some(*i) != service).map(|(_, c)| c.gate.in_use()).sum()
    }

    /// Whether its engine has component-model concurrency support.
    pub fn concurrency(&self) -> crate::engine::Concurrency {
        self.engine.concurrency()
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
            concurrency: Some(self.engine.concurrency()),
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
        let mut live = match c.take_idle() {
            Some(idle) => idle,
            None if c.idle.is_some() => c.instantiate(&self.engine, self.interrupt.clone()).await?,
            // A component that does not reuse instances keeps one made ahead
            // (made again when this invocation ends: see its `drop`).
            None => match c.take_spare() {
                Some(spare) => spare,
                None => c.instantiate(&self.engine, self.interrupt.clone()).await?,
            },
        };
        live.0.data_mut().set_deadline(deadline);
        let cancelled = self.cancel.subscribe();
        Ok(Invocation {
            component: c.clone(),
            live: Some(live),
            clean: true,
            deadline,
            cancelled,
            parent: None,
            function: None,
            spare_from: c.idle.is_none().then(|| (self.engine.clone(), self.interrupt.clone())),
            _slot: slot,
        })
    }

    /// How many instances of `component` wait to be reused: an invocation gives
    /// its instance back when its call returns, which for an HTTP handler may be
    /// a moment after the client has the whole response.
    pub fn idle_instances(&self, component: &str) -> Result<usize, InvokeError> {
        Ok(self.component(component)?.idle_count())
    }

    /// The shared instance of a component with `shared:`: whether one lives, and
    /// how many were made.
    pub fn shared_instance(&self, component: &str) -> Result<crate::SharedStats, InvokeError> {
        let c = self.component(component)?;
        c.shared
            .as_ref()
            .map(|s| s.stats())
            .ok_or_else(|| InvokeError::NoSuchComponent(format!("{component} (shared)")))
    }

    /// Runs a component's `wasi:cli/run` export once, within its limits. An exit
    /// status of 0 is success.
    pub async fn run(&self, component: &str) -> Result<(), InvokeError> {
        let c = self.component(component)?;
        let _slot = self.admit(c).await?;
        self.run_component(c).await
    }

    pub(crate) async fn run_component(&self, c: &WorkloadComponent) -> Result<(), InvokeError> {
        let (run, func) = c.run_func()?;
        let deadline = c.deadline();
        let started = Instant::now();
        let mut span = c.telemetry.span(format!("{} run", c.name), SpanKind::Internal, None);
        span.set("weft.workload", &*c.identity.workload);
        span.set("weft.component", &*c.name);
        let outcome = async {
            let (mut store, instance) = c.instantiate(&self.engine, self.interrupt.clone()).await?;
            store.data_mut().swap_trace_context(span.context().cloned());
            store.data_mut().set_deadline(deadline);
            let run = instance.get_typed_func::<(), (Result<(), ()>,)>(&mut store, func).map_err(|e| {
                InvokeError::NoSuchFunction { component: c.name.to_string(), function: format!("{run}: {e}") }
            })?;
            match before_deadline(c, deadline, self.cancel.subscribe(), run.call_async(&mut store, ())).await? {
                Ok((Ok(()),)) => Ok(()),
                Ok((Err(()),)) => Err(InvokeError::RunFailed { component: c.name.to_string() }),
                Err(e) => match classify(c, e, store.data()) {
                    InvokeError::Exit { code: 0, .. } => Ok(()),
                    other => Err(other),
                },
            }
        }
        .await;
        CallWatch { started: Some(started), span }.finish(c, &outcome);
        outcome
    }

    fn component(&self, name: &str) -> Result<&Arc<WorkloadComponent>, InvokeError> {
        self.components.iter().find(|c| &*c.name == name).ok_or_else(|| InvokeError::NoSuchComponent(name.to_string()))
    }

    async fn admit(&self, c: &WorkloadComponent) -> Result<OwnedSemaphorePermit, InvokeError> {
        if self.is_stopping() {
            return Err(InvokeError::Stopped);
        }
        if self.state() == WorkloadState::Starting {
            return Err(InvokeError::NotStarted);
        }
        c.gate.enter().await.map_err(|busy| {
            if let Some(metrics) = &c.metrics {
                metrics.rejected_busy();
            }
            InvokeError::Busy { component: c.name.to_string(), busy }
        })
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut Lifecycle)) {
        self.lifecycle.send_modify(f);
    }

    /// Stops admitting (plugins unbound, new invocations refused), stops the
    /// service, gives invocations in flight a grace period, then interrupts them
    /// (guests running code) and cancels them (guests blocked in host calls),
    /// and only once none is left deletes the emptyDirs. Returns the final status;
    /// its message says what had to be cut short.
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
        let in_flight = || self.components.iter().map(|c| c.gate.in_use()).sum::<u32>();
        drained(Self::GRACE).await;
        let cut_short = in_flight();
        // What is still running is interrupted at its next tick, and what waits in
        // a host call is dropped at its next poll.
        self.interrupt.store(true, Ordering::SeqCst);
        self.cancel.send_replace(true);
        drained(Self::CANCEL_GRACE).await;
        for c in &self.components {
            c.drop_idle();
            if let Some(shared) = &c.shared {
                shared.retire_now();
            }
        }
        let left = in_flight();
        let message = if left == 0 {
            volumes::remove(&self.volumes);
            (cut_short > 0).then(|| format!("{cut_short} invocation(s) in flight were cancelled"))
        } else {
            // Something holds an invocation outside any call (a plugin streaming a
            // body): its volumes stay rather than vanish under it.
            tracing::warn!(workload = %self.name, "{left} invocation(s) still held after stopping; emptyDirs kept");
            Some(format!("{left} invocation(s) were still held when the workload stopped; its emptyDirs were kept"))
        };
        self.update(|l| {
            l.state = WorkloadState::Stopped;
            l.message = message;
        });
        tracing::info!(workload = %self.name, id = %self.id, "stopped");
        self.status()
    }

    /// How long invocations in flight may finish on their own when the workload stops.
    const GRACE: Duration = Duration::from_millis(500);
    /// How long cancelled invocations have to let go of their slots.
    const CANCEL_GRACE: Duration = Duration::from_secs(1);
}

/// Runs the supervisor as a task of its own and turns its failure (a panic: a bug
/// of weft's) into a `failed` workload with the cause, instead of a status that
/// says `running` while nothing supervises. Aborting this task aborts both.
async fn watch_supervisor(workload: Arc<RunningWorkload>, index: usize, policy: RestartPolicy) {
    struct AbortOnDrop(JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut supervisor = AbortOnDrop(tokio::spawn(supervise(workload.clone(), index, policy)));
    let Err(e) = (&mut supervisor.0).await else { return };
    if !e.is_panic() {
        return;
    }
    let panic = e.into_panic();
    let cause = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str));
    let message = format!(
        "the supervisor of service `{}` failed: {}",
        workload.components[index].name,
        cause.unwrap_or("(no message)")
    );
    tracing::error!(workload = %workload.name, "{message}");
    workload.update(|l| {
        l.state = WorkloadState::Failed;
        l.message = Some(message);
    });
}
