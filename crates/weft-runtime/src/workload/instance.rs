//! A component of a running workload, and how it is instantiated for one invocation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, ComponentExportIndex, Instance, InstancePre, types::ComponentItem};
use wasmtime::{AsContextMut, Store};
use wasmtime_wasi::I32Exit;

use crate::component::Digest;
use crate::engine::{Concurrency, Engine};
use crate::error::InvokeError;
use crate::interface::ItemName;
use crate::limits::{ConcurrencyGate, Limits};
use crate::link::resources::ProvidedResources;
use crate::link::shared::SharedInstance;
use crate::plugin::{ComponentIdentity, PluginRegistry};
use crate::store::{Frame, Interruption, StoreState};
use crate::telemetry::{ComponentMetrics, Outcome, Telemetry};
use crate::wasi::WasiTemplate;

/// A component of a workload, compiled, linked and ready to instantiate.
pub(crate) struct WorkloadComponent {
    /// Position in the workload; the frame index in every store.
    pub index: usize,
    pub name: Arc<str>,
    pub identity: ComponentIdentity,
    /// The host's plugins, which its stores make reachable to host functions.
    pub plugins: PluginRegistry,
    pub digest: Digest,
    pub component: Component,
    pub pre: InstancePre<StoreState>,
    pub wasi: WasiTemplate,
    pub limits: Limits,
    pub cpu_budget: Option<u64>,
    pub gate: ConcurrencyGate,
    /// Resource types it defines, as its callers see them.
    pub resources: ProvidedResources,
    /// Names of the core modules inside it, to tell where in a composite a trap
    /// happened.
    pub modules: Vec<String>,
    /// For a composite: the providers fused into it, each with its WASI slot.
    pub members: Vec<Member>,
    /// With `reuseInstances`: stores whose last invocation ended cleanly, ready
    /// for the next one. At most `maxConcurrent` exist, as each was in use once.
    pub idle: Option<Mutex<Vec<LiveInstance>>>,
    /// Without `reuseInstances`: the instance made ahead for the next invocation.
    pub spare: Spare,
    /// Providers reached through async dynamic links (directly or not), made
    /// with every instance of this one, providers first.
    pub eager: Vec<Arc<WorkloadComponent>>,
    /// With `shared`: the one instance its link callers share.
    pub shared: Option<Arc<SharedInstance>>,
    /// Exported functions found so far, by the name they were asked for.
    pub exports: Mutex<HashMap<Box<str>, ComponentExportIndex>>,
    pub telemetry: Telemetry,
    /// Its invocation counters, when the host exports metrics.
    pub metrics: Option<Arc<ComponentMetrics>>,
}

/// An instance and the store it lives in.
pub(crate) type LiveInstance = (Store<StoreState>, Instance);

/// A fresh instance made in the background once an invocation has taken the
/// previous one, so that the next invocation does not wait for instantiation. It
/// has run nothing but its instantiation: no invocation's state is in it.
#[derive(Default)]
pub(crate) struct Spare {
    ready: Mutex<Option<LiveInstance>>,
    /// Set while one is being made.
    making: AtomicBool,
}

/// How many names `export_func` remembers per component: names come from
/// callers (a host API's invocations), so what is kept is bounded.
const REMEMBERED_EXPORTS: usize = 64;

/// A provider fused into a composite.
pub(crate) struct Member {
    pub slot: usize,
    pub component: Arc<WorkloadComponent>,
}

impl WorkloadComponent {
    pub fn new_frame(&self) -> wasmtime::Result<Frame> {
        let (wasi, outgoing) = (self.wasi.build()?, self.wasi.outgoing.clone());
        Ok(Frame::new(self.identity.clone(), wasi, outgoing, &self.limits, self.cpu_budget))
    }

    /// Gives each fused member of a composite its own WASI context in the store,
    /// reachable through the member's slot.
    pub fn prepare_members(&self, state: &mut StoreState) -> wasmtime::Result<()> {
        for member in &self.members {
            state.ensure_frame(member.component.index, || member.component.new_frame())?;
            if state.slot_frames.len() <= member.slot {
                state.slot_frames.resize(member.slot + 1, None);
            }
            state.slot_frames[member.slot] = Some(member.component.index);
        }
        Ok(())
    }

    /// A fresh store with this component instantiated in it: one per top-level
    /// invocation, so no state survives from one invocation to the next.
    pub async fn instantiate(
        &self,
        engine: &Engine,
        stop: Arc<AtomicBool>,
    ) -> Result<(Store<StoreState>, Instance), InvokeError> {
        let frame = self.new_frame().map_err(|e| self.instantiate_error(e))?;
        let mut state = StoreState::new(self.index, frame, self.plugins.clone(), stop, self.telemetry.clone());
        self.prepare_members(&mut state).map_err(|e| self.instantiate_error(e))?;
        let mut store = Store::new(engine.wasmtime(), state);
        store.limiter(|state| state);
        store.epoch_deadline_callback(|mut cx| cx.data_mut().on_epoch_tick());
        store.set_epoch_deadline(1);
        if engine.concurrency() == Concurrency::On {
            store.call_hook(StoreState::follow_task);
        }
        let instance = match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return Err(classify(self, e, store.data())),
        };
        // A concurrent host function cannot instantiate (it holds no store
        // across an await), so the providers of async dynamic links are made now.
        for provider in &self.eager {
            if let Err(e) = crate::link::instance_of(&mut store.as_context_mut(), provider).await {
                return Err(classify(self, e, store.data()));
            }
        }
        Ok((store, instance))
    }

    /// When an invocation starting now must end, by the component's `timeout`
    /// (none when unlimited, or too far off to represent).
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.limits.timeout.and_then(|t| std::time::Instant::now().checked_add(t))
    }

    /// An idle instance to reuse, when the component reuses instances and has one.
    pub fn take_idle(&self) -> Option<LiveInstance> {
        let (mut store, instance) = self.idle.as_ref()?.lock().unwrap().pop()?;
        // The deadline may have passed while the store was idle.
        store.set_epoch_deadline(1);
        Some((store, instance))
    }

    /// Keeps a store whose invocation ended cleanly for the next invocation; drops
    /// it when the component does not reuse instances, or the workload is stopping.
    pub fn put_idle(&self, store: Store<StoreState>, instance: Instance) {
        if let Some(idle) = &self.idle
            && !store.data().is_stopping()
            && store.data().memory_denied().is_none()
        {
            idle.lock().unwrap().push((store, instance));
        }
    }

    /// The spare instance, if one is ready (see [`Spare`]).
    pub fn take_spare(&self) -> Option<LiveInstance> {
        let (mut store, instance) = self.spare.ready.lock().unwrap().take()?;
        // Its epoch deadline passed while it waited.
        store.set_epoch_deadline(1);
        Some((store, instance))
    }

    /// Starts making a spare instance in a task of its own (see [`Self::make_spare_here`]).
    pub fn make_spare(self: &Arc<Self>, engine: &Arc<Engine>, stop: &Arc<AtomicBool>) {
        // An invocation dropped outside the runtime (at exit) leaves none.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        if self.spare_wanted(stop) {
            let (c, engine, stop) = (self.clone(), engine.clone(), stop.clone());
            runtime.spawn(async move { c.make_wanted_spare(&engine, stop).await });
        }
    }

    /// Makes a spare instance in the calling task, unless one is ready or being
    /// made, or the workload is stopping: for a caller that has answered its own
    /// client and has nothing better to do, which spares the runtime a task and
    /// the machine a thread woken to run it. One that cannot be made is not
    /// retried here: the next invocation instantiates in its own path and
    /// reports why.
    pub async fn make_spare_here(&self, engine: &Engine, stop: &Arc<AtomicBool>) {
        if self.spare_wanted(stop) {
            self.make_wanted_spare(engine, stop.clone()).await;
        }
    }

    /// Whether a spare should be made, claiming the making of it if so.
    fn spare_wanted(&self, stop: &AtomicBool) -> bool {
        !(stop.load(Ordering::Relaxed)
            || self.spare.ready.lock().unwrap().is_some()
            || self.spare.making.swap(true, Ordering::AcqRel))
    }

    async fn make_wanted_spare(&self, engine: &Engine, stop: Arc<AtomicBool>) {
        /// Lets the next invocation make a spare again, also when this making is
        /// dropped half-way (the caller's task cancelled).
        struct Making<'a>(&'a AtomicBool);
        impl Drop for Making<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _making = Making(&self.spare.making);
        let made = self.instantiate(engine, stop).await;
        let mut ready = self.spare.ready.lock().unwrap();
        match made {
            // Checked under the lock `drop_idle` takes after the flag is set.
            Ok(live) if !live.0.data().is_stopping() => *ready = Some(live),
            Ok(_) => {}
            Err(e) => tracing::debug!(component = %self.name, "no spare instance: {e}"),
        }
    }

    /// How many instances wait to be reused.
    pub fn idle_count(&self) -> usize {
        self.idle.as_ref().map_or(0, |idle| idle.lock().unwrap().len())
    }

    /// Drops the idle instances and the spare (the workload stops).
    pub fn drop_idle(&self) {
        if let Some(idle) = &self.idle {
            idle.lock().unwrap().clear();
        }
        self.spare.ready.lock().unwrap().take();
    }

    fn instantiate_error(&self, e: wasmtime::Error) -> InvokeError {
        InvokeError::Instantiate { component: self.name.to_string(), message: format!("{e:#}") }
    }

    /// For a composite: the fused member a trap happened in (when not the entry
    /// itself), and the export of it the call tree was in, from the Wasm backtrace.
    pub fn trap_site(&self, error: &wasmtime::Error) -> Option<(Arc<str>, String)> {
        if self.members.is_empty() {
            return None;
        }
        let frames = error.downcast_ref::<wasmtime::WasmBacktrace>()?.frames();
        let (at, module) = frames.iter().enumerate().find_map(|(i, f)| Some((i, f.module().name()?)))?;
        if self.modules.iter().any(|m| m == module) {
            return None;
        }
        let owners: Vec<&str> = self
            .members
            .iter()
            .filter(|m| m.component.modules.iter().any(|n| n == module))
            .map(|m| &*m.component.name)
            .collect();
        let member = match owners.as_slice() {
            [one] => one.to_string(),
            [] => return None,
            many => format!("{}` or `{}", many[..many.len() - 1].join("`, `"), many[many.len() - 1]),
        };
        let function = frames[at..]
            .iter()
            .filter(|f| f.module().name() == Some(module))
            .find_map(|f| f.func_name().filter(|n| n.contains('#')))?;
        Some((member.into(), function.to_string()))
    }

    /// Finds an exported function by `interface#function` (the interface matched
    /// semver-compatibly) or by a plain `function` name.
    pub fn export_func(&self, path: &str) -> Result<ComponentExportIndex, InvokeError> {
        if let Some(index) = self.exports.lock().unwrap().get(path) {
            return Ok(*index);
        }
        let index = self.find_export_func(path)?;
        let mut exports = self.exports.lock().unwrap();
        if exports.len() < REMEMBERED_EXPORTS {
            exports.insert(path.into(), index);
        }
        Ok(index)
    }

    /// Its `wasi:cli/run` function (WASI 0.2 or 0.3), and the name found.
    pub fn run_func(&self) -> Result<(String, ComponentExportIndex), InvokeError> {
        crate::wasi::RUN_EXPORTS
            .map(|run| format!("{run}#run"))
            .into_iter()
            .find_map(|run| self.export_func(&run).ok().map(|index| (run, index)))
            .ok_or_else(|| InvokeError::NoSuchFunction {
                component: self.name.to_string(),
                function: crate::wasi::RUN_EXPORTS.join(" or "),
            })
    }

    fn find_export_func(&self, path: &str) -> Result<ComponentExportIndex, InvokeError> {
        let missing = || InvokeError::NoSuchFunction { component: self.name.to_string(), function: path.to_string() };
        match path.split_once('#') {
            Some((interface, func)) => {
                let wanted = ItemName::parse(interface);
                let ty = self.component.component_type();
                let engine = self.component.engine();
                let export = ty
                    .exports(engine)
                    .find(|(name, item)| {
                        matches!(item.ty, ComponentItem::ComponentInstance(_))
                            && ItemName::parse(name).satisfies(&wanted)
                    })
                    .map(|(name, _)| name)
                    .ok_or_else(missing)?;
                let instance = self.component.get_export_index(None, export).ok_or_else(missing)?;
                self.component.get_export_index(Some(&instance), func).ok_or_else(missing)
            }
            None => self.component.get_export_index(None, path).ok_or_else(missing),
        }
    }
}

/// Turns a failed call into the error a user should see, using what the store
/// recorded about why it stopped.
pub(crate) fn classify(c: &WorkloadComponent, error: wasmtime::Error, state: &StoreState) -> InvokeError {
    let component = &*c.name;
    match &state.interruption {
        Some(Interruption::CpuTime { component, limit }) => {
            return InvokeError::Timeout { component: component.clone(), limit: *limit };
        }
        Some(Interruption::Stopped) => return InvokeError::Stopped,
        None => {}
    }
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return InvokeError::Exit { component: component.to_string(), code: exit.0 };
    }
    let mut message = describe(&error);
    if let Some((member, function)) = c.trap_site(&error) {
        message = format!("in component `{member}`, calling `{function}`: {message}");
    }
    if let Some((component, limit)) = state.memory_denied() {
        return InvokeError::OutOfMemory { component, limit, message };
    }
    InvokeError::Trap { component: component.to_string(), message }
}

/// The error chain on one line, outermost context first, without the backtrace.
pub(crate) fn describe(error: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !text.starts_with("error while executing at wasm backtrace") && !parts.contains(&text) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

impl InvokeError {
    /// How an invocation that failed with this error ended, for metrics.
    pub(crate) fn outcome(&self) -> Outcome {
        match self {
            InvokeError::Timeout { .. } | InvokeError::DeadlineExceeded { .. } => Outcome::Timeout,
            InvokeError::OutOfMemory { .. } => Outcome::OutOfMemory,
            InvokeError::Exit { .. } | InvokeError::RunFailed { .. } => Outcome::Exit,
            InvokeError::Instantiate { .. } => Outcome::Instantiate,
            InvokeError::Stopped => Outcome::Cancelled,
            InvokeError::Trap { .. }
            | InvokeError::NoSuchComponent(_)
            | InvokeError::NoSuchFunction { .. }
            | InvokeError::Busy { .. }
            | InvokeError::NotStarted => Outcome::Trap,
        }
    }
}
