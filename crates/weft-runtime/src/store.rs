//! The data of one Wasmtime store: one top-level invocation (or, for a component
//! with `reuseInstances`, a series of them).
//!
//! A store holds the entry component's instance and, created on first use, the
//! instances of the providers it calls through in-process links. Each of them keeps
//! its own WASI context, memory account and CPU budget in a [`Frame`]; the store
//! knows which frame is executing, so WASI calls see the capabilities of the
//! component that makes them, and limits are charged to it. The resource table is
//! shared, so that handles (streams, pollables) can pass between them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{GuestTaskId, Instance, ResourceTable, ResourceType};
use wasmtime::{CallHook, ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::limits::{ByteSize, Limits};
use crate::link::call_memory::CallMemory;
use crate::link::resources::Proxies;
use crate::plugin::{ComponentIdentity, HostPlugin, PluginRegistry, Whose};
use crate::telemetry::{SpanContext, Telemetry};
use crate::wasi::http::OutgoingPolicy;

/// Why the runtime stopped a store's execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// A component used up its CPU time for the invocation.
    CpuTime { component: Arc<str>, limit: Duration },
    /// The workload is stopping.
    Stopped,
}

/// One component's state inside a store.
pub(crate) struct Frame {
    pub identity: ComponentIdentity,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub outgoing: OutgoingPolicy,
    pub instance: Option<Instance>,
    /// The instance's own resource types, with the host types callers see them as.
    pub provided: Vec<(ResourceType, u32)>,
    memory_limit: u64,
    memory_used: u64,
    pub memory_denied: Option<ByteSize>,
    cpu_limit: Option<Duration>,
    cpu_budget: Option<u64>,
    cpu_used: u64,
}

impl Frame {
    /// `cpu_budget` is `limits.cpu_time` in epoch ticks.
    pub fn new(
        identity: ComponentIdentity,
        wasi: WasiCtx,
        outgoing: OutgoingPolicy,
        limits: &Limits,
        cpu_budget: Option<u64>,
    ) -> Frame {
        Frame {
            identity,
            wasi,
            http: WasiHttpCtx::new(),
            outgoing,
            instance: None,
            provided: Vec::new(),
            memory_limit: limits.memory.0,
            memory_used: 0,
            memory_denied: None,
            cpu_limit: limits.cpu_time,
            cpu_budget,
            cpu_used: 0,
        }
    }
}

pub struct StoreState {
    table: ResourceTable,
    /// Indexed like the workload's components; `None` until instantiated here.
    pub(crate) frames: Vec<Option<Frame>>,
    pub(crate) active: usize,
    /// The component the store was made for: who runs when no task below says.
    entry: usize,
    /// With concurrency: the guest tasks that dynamic links started, each with
    /// the provider component it runs. Tasks interleave, so on every call into
    /// the host the call hook finds the caller's component from the task stack
    /// ([`StoreState::follow_task`]).
    pub(crate) tasks: Vec<(GuestTaskId, usize)>,
    /// Blocks for the futures of calls into providers, one per nesting depth
    /// reached ([`crate::link::call_memory`]).
    call_memory: Vec<CallMemory>,
    pub(crate) proxies: Proxies,
    /// Composite member slots in use in this store: slot → the component index
    /// whose frame (WASI context) the slot's capability imports use.
    pub(crate) slot_frames: Vec<Option<usize>>,
    plugins: PluginRegistry,
    stop: Arc<AtomicBool>,
    pub(crate) interruption: Option<Interruption>,
    telemetry: Telemetry,
    /// The span the running code is inside (its invocation's, or a dynamic
    /// link's), while tracing is on.
    trace: Option<SpanContext>,
    /// When the current invocation's `timeout` runs out.
    deadline: Option<std::time::Instant>,
}

impl StoreState {
    pub(crate) fn new(
        entry: usize,
        frame: Frame,
        plugins: PluginRegistry,
        stop: Arc<AtomicBool>,
        telemetry: Telemetry,
    ) -> StoreState {
        let mut state = StoreState {
            table: ResourceTable::new(),
            frames: Vec::new(),
            active: entry,
            entry,
            tasks: Vec::new(),
            call_memory: Vec::new(),
            proxies: Proxies::default(),
            slot_frames: Vec::new(),
            plugins,
            stop,
            interruption: None,
            telemetry,
            trace: None,
            deadline: None,
        };
        state.enter(entry, Some(frame));
        state
    }

    /// Makes component `index` the one executing (installing its frame if given),
    /// with a fresh CPU budget for this call; returns the previously active index.
    pub(crate) fn enter(&mut self, index: usize, frame: Option<Frame>) -> usize {
        if self.frames.len() <= index {
            self.frames.resize_with(index + 1, || None);
        }
        if let Some(frame) = frame {
            self.frames[index] = Some(frame);
        }
        if let Some(frame) = self.frames[index].as_mut() {
            frame.cpu_used = 0;
        }
        std::mem::replace(&mut self.active, index)
    }

    /// Creates component `index`'s frame unless the store has it already.
    pub(crate) fn ensure_frame(
        &mut self,
        index: usize,
        make: impl FnOnce() -> wasmtime::Result<Frame>,
    ) -> wasmtime::Result<()> {
        if self.frames.len() <= index {
            self.frames.resize_with(index + 1, || None);
        }
        if self.frames[index].is_none() {
            self.frames[index] = Some(make()?);
        }
        Ok(())
    }

    /// The call hook of stores on the engine with concurrency: before a guest
    /// calls into the host, makes the component of the task that calls active:
    /// the youngest task on the stack that a dynamic link started, else the
    /// store's entry. Only stores with such tasks in progress pay for the
    /// lookup; the others only reset to the entry.
    pub(crate) fn follow_task(mut cx: StoreContextMut<'_, StoreState>, hook: CallHook) -> wasmtime::Result<()> {
        if !matches!(hook, CallHook::CallingHost) {
            return Ok(());
        }
        if cx.data().tasks.is_empty() {
            let state = cx.data_mut();
            state.active = state.entry;
            return Ok(());
        }
        // Copied out first: the stack borrows the store.
        let mut stack = [None; 16];
        match cx.async_call_stack() {
            Ok(tasks) => stack.iter_mut().zip(tasks).for_each(|(slot, task)| *slot = Some(task)),
            Err(_) => return Ok(()),
        }
        let state = cx.data_mut();
        let linked = stack
            .iter()
            .map_while(|t| *t)
            .find_map(|task| state.tasks.iter().find(|(t, _)| *t == task).map(|(_, component)| *component));
        state.active = linked.unwrap_or(state.entry);
        Ok(())
    }

    /// A block for the future of a call into a provider: one given back by an
    /// earlier call, or a new one.
    pub(crate) fn take_call_memory(&mut self) -> CallMemory {
        self.call_memory.pop().unwrap_or_else(CallMemory::new)
    }

    pub(crate) fn give_back_call_memory(&mut self, memory: CallMemory) {
        self.call_memory.push(memory);
    }

    /// Returns execution to the component `enter` returned.
    pub(crate) fn leave(&mut self, previous: usize) {
        self.active = previous;
    }

    pub(crate) fn frames_and_table(&mut self) -> (&mut [Option<Frame>], &mut ResourceTable) {
        (&mut self.frames, &mut self.table)
    }

    pub(crate) fn frame(&self, index: usize) -> Option<&Frame> {
        self.frames.get(index)?.as_ref()
    }

    fn active_frame(&mut self) -> &mut Frame {
        self.frames[self.active].as_mut().expect("the active frame exists")
    }

    /// Called by the epoch deadline on every tick while guest code runs: charges the
    /// tick to the executing component and yields to the executor, or stops the guest.
    pub(crate) fn on_epoch_tick(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if self.stop.load(Ordering::Relaxed) {
            self.interruption = Some(Interruption::Stopped);
            return Err(wasmtime::format_err!("interrupted: the workload is stopping"));
        }
        let frame = self.active_frame();
        frame.cpu_used += 1;
        if let (Some(budget), Some(limit)) = (frame.cpu_budget, frame.cpu_limit)
            && frame.cpu_used > budget
        {
            let component = frame.identity.component.clone();
            self.interruption = Some(Interruption::CpuTime { component: component.clone(), limit });
            return Err(wasmtime::format_err!("component `{component}` exceeded its CPU time limit of {limit:?}"));
        }
        Ok(UpdateDeadline::Yield(1))
    }

    /// Whether the workload this store belongs to is stopping.
    /// The host's telemetry (disabled unless configured).
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// The span the running code is inside, to parent what it does (an outgoing
    /// request, a guest's own spans) under; `None` with tracing off.
    pub fn trace_context(&self) -> Option<&SpanContext> {
        self.trace.as_ref()
    }

    /// When the invocation running in this store must end (its `timeout`), if ever:
    /// what a remote call may still take.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline
    }

    pub(crate) fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
    }

    /// Makes `trace` the current span; returns the one it replaces.
    pub(crate) fn swap_trace_context(&mut self, trace: Option<SpanContext>) -> Option<SpanContext> {
        std::mem::replace(&mut self.trace, trace)
    }

    /// The workload's stop flag, which every store of it shares.
    pub(crate) fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A component whose memory growth the limiter refused during this store's life.
    pub(crate) fn memory_denied(&self) -> Option<(Arc<str>, ByteSize)> {
        self.frames.iter().flatten().find_map(|f| f.memory_denied.map(|limit| (f.identity.component.clone(), limit)))
    }

    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The component `whose` names: who a plugin's host function serves.
    pub fn caller(&self, whose: Whose) -> &ComponentIdentity {
        &self.frame_of(whose).identity
    }

    /// The memory limit of the component `whose` names. A host function never
    /// buffers more than this for it: a value that large could not be handed to
    /// the component anyway.
    pub fn caller_memory_limit(&self, whose: Whose) -> u64 {
        self.frame_of(whose).memory_limit
    }

    /// The frame of the component `whose` names: a composite member's if its
    /// slot is in use in this store, else the running component's.
    pub(crate) fn frame_index(&self, whose: Whose) -> usize {
        match whose.number() {
            Whose::RUNNING => self.active,
            slot => self.slot_frames.get(slot).copied().flatten().unwrap_or(self.active),
        }
    }

    fn frame_of(&self, whose: Whose) -> &Frame {
        self.frames[self.frame_index(whose)].as_ref().expect("a caller's frame exists")
    }

    /// A plugin of the host, as its own type.
    pub fn plugin<P: HostPlugin>(&self, id: &str) -> Option<&P> {
        self.plugins.get(id)?.as_any().downcast_ref()
    }

    /// Handles of providers' resources that callers in this store hold right now.
    pub fn linked_resources(&self) -> usize {
        self.proxies.len()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let frame = self.frames[self.active].as_mut().expect("the active frame exists");
        WasiCtxView { ctx: &mut frame.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        let frame = self.frames[self.active].as_mut().expect("the active frame exists");
        WasiHttpCtxView { ctx: &mut frame.http, hooks: &mut frame.outgoing, table: &mut self.table }
    }
}

impl ResourceLimiter for StoreState {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let frame = self.active_frame();
        let growth = desired.saturating_sub(current) as u64;
        if frame.memory_used.saturating_add(growth) > frame.memory_limit {
            frame.memory_denied = Some(ByteSize(frame.memory_limit));
            return Ok(false);
        }
        frame.memory_used += growth;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // A table entry is a pointer; count it against the same memory account.
        let frame = self.active_frame();
        Ok((desired as u64).saturating_mul(8) <= frame.memory_limit)
    }
}
