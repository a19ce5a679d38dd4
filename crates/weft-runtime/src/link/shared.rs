//! Links to a *shared* provider (`shared:` in the manifest): one instance, in a
//! store of its own, serves every caller of the workload at once.
//!
//! The instance is made on the first call and runs under a driver task that
//! keeps the store inside `run_concurrent`: each call arrives over a channel and
//! becomes a concurrent call of the export (`call_concurrent`), so an `async`
//! export takes many at once. When no call has been in progress for the idle
//! timeout, the driver retires the instance and drops its store; the next call
//! makes a new one. Values cross between the caller's store and the provider's
//! as [`Val`]s, so only plain data can: resources, streams and futures belong to
//! one store, and a function that carries one is refused when the link is made.
//!
//! What callers share is the instance; their calls are still admitted one by one
//! through the provider's concurrency gate (`maxConcurrent`, `maxQueued`), each
//! bounded by the provider's `timeout`. Wasmtime 48 cannot cancel a guest task
//! the host started (its #11833): a caller that gives up, or times out, stops
//! waiting, but the provider's task runs to its end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Accessor, ComponentExportIndex, Instance, Linker, LinkerInstance, Val};

use super::Part;
use super::resources::{func_has, is_async_value, is_handle};
use crate::engine::Engine;
use crate::limits::UNLIMITED;
use crate::store::StoreState;
use crate::workload::instance::WorkloadComponent;

/// How long a retired instance's calls may still take, at most.
const MAX_DRAIN: Duration = Duration::from_secs(3600);
/// How long they may take when the workload is stopping.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The shared instance of one provider: at most one lives at a time.
pub(crate) struct SharedInstance {
    idle_timeout: Duration,
    engine: Arc<Engine>,
    live: Mutex<Option<Live>>,
    /// Instances made so far (each after the previous one was retired).
    started: AtomicU64,
}

/// The instance that takes calls now: its driver's channel.
struct Live {
    generation: u64,
    calls: mpsc::UnboundedSender<Call>,
}

struct Call {
    func: ComponentExportIndex,
    params: Vec<Val>,
    results: usize,
    reply: oneshot::Sender<wasmtime::Result<Vec<Val>>>,
    /// The provider's concurrency slot, held until the call ends.
    _admitted: OwnedSemaphorePermit,
}

/// What a host API reports of a shared provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedStats {
    /// Whether an instance lives now.
    pub live: bool,
    /// Instances made since the workload started.
    pub started: u64,
}

impl SharedInstance {
    pub fn new(engine: Arc<Engine>, idle_timeout: Duration) -> SharedInstance {
        SharedInstance { idle_timeout, engine, live: Mutex::new(None), started: AtomicU64::new(0) }
    }

    pub fn stats(&self) -> SharedStats {
        let live = self.live.lock().unwrap().as_ref().is_some_and(|l| !l.calls.is_closed());
        SharedStats { live, started: self.started.load(Ordering::Relaxed) }
    }

    /// Stops taking calls: the driver ends once the calls it has are answered
    /// (the workload is stopping; its interruption ends guest code that runs on).
    pub fn retire_now(&self) {
        self.live.lock().unwrap().take();
    }

    /// Retires the instance of `generation`, unless a newer one took its place.
    fn retire(&self, generation: u64) {
        retire_locked(&mut self.live.lock().unwrap(), generation);
    }

    /// Retires the instance of `generation` if no call waits in its channel;
    /// callers send while holding the lock, so none can slip in after this.
    fn retire_if_idle(&self, generation: u64, calls: &mut mpsc::UnboundedReceiver<Call>) -> bool {
        let mut live = self.live.lock().unwrap();
        if !calls.is_empty() {
            return false;
        }
        retire_locked(&mut live, generation);
        true
    }

    /// Calls `func` of `provider`'s shared instance, making the instance first
    /// when none lives.
    async fn call(
        self: &Arc<Self>,
        provider: &Arc<WorkloadComponent>,
        stop: Arc<AtomicBool>,
        func: ComponentExportIndex,
        params: Vec<Val>,
        results: usize,
    ) -> wasmtime::Result<Vec<Val>> {
        let admitted = provider.gate.enter().await.map_err(|busy| {
            wasmtime::format_err!("the shared instance of component `{}` is busy: {busy}", provider.name)
        })?;
        let (reply, answer) = oneshot::channel();
        let mut call = Call { func, params, results, reply, _admitted: admitted };
        {
            let mut live = self.live.lock().unwrap();
            loop {
                let calls = match live.as_ref() {
                    Some(l) if !l.calls.is_closed() => &l.calls,
                    _ => {
                        let generation = self.started.fetch_add(1, Ordering::Relaxed) + 1;
                        let (calls, queue) = mpsc::unbounded_channel();
                        let driver = drive(self.clone(), provider.clone(), stop.clone(), generation, queue);
                        tokio::spawn(driver);
                        &live.insert(Live { generation, calls }).calls
                    }
                };
                match calls.send(call) {
                    Ok(()) => break,
                    // The driver ended (its instance failed) since the check.
                    Err(mpsc::error::SendError(back)) => {
                        *live = None;
                        call = back;
                    }
                }
            }
        }
        let answer = async {
            answer.await.unwrap_or_else(|_| {
                Err(wasmtime::format_err!("the shared instance of component `{}` ended during the call", provider.name))
            })
        };
        match provider.limits.timeout {
            Some(limit) => tokio::time::timeout(limit, answer).await.unwrap_or_else(|_| {
                Err(wasmtime::format_err!(
                    "component `{}` did not answer within its timeout of {limit:?} (its task runs on)",
                    provider.name
                ))
            }),
            None => answer.await,
        }
    }
}

fn retire_locked(live: &mut Option<Live>, generation: u64) {
    if live.as_ref().is_some_and(|l| l.generation == generation) {
        *live = None;
    }
}

/// Runs one instance of `provider`: instantiates it, takes calls until it has
/// been idle for the idle timeout (or is retired), then drops the store.
async fn drive(
    shared: Arc<SharedInstance>,
    provider: Arc<WorkloadComponent>,
    stop: Arc<AtomicBool>,
    generation: u64,
    mut queue: mpsc::UnboundedReceiver<Call>,
) {
    let (mut store, instance) = match provider.instantiate(&shared.engine, stop.clone()).await {
        Ok(live) => live,
        Err(e) => {
            shared.retire(generation);
            fail_queued(&mut queue, &format!("cannot instantiate the shared instance: {e}"));
            return;
        }
    };
    store.data_mut().enter(provider.index, None);
    let idle = shared.idle_timeout;
    let served = store
        .run_concurrent(async |accessor| {
            let mut calls = FuturesUnordered::new();
            loop {
                tokio::select! {
                    call = queue.recv() => match call {
                        Some(call) => calls.push(serve(accessor, instance, call)),
                        None => break,
                    },
                    Some(ok) = calls.next(), if !calls.is_empty() => {
                        // A call that failed may have left the instance in a state
                        // no later call should see.
                        if !ok {
                            shared.retire(generation);
                        }
                    }
                    () = tokio::time::sleep(idle), if calls.is_empty() && idle != UNLIMITED => {
                        if shared.retire_if_idle(generation, &mut queue) {
                            break;
                        }
                    }
                }
            }
            // Retired with calls in progress: they get the idle timeout to end, or
            // a moment when the workload is stopping (guest code is interrupted).
            let grace = if stop.load(Ordering::Relaxed) { STOP_GRACE } else { idle.min(MAX_DRAIN) };
            let drained = async { while calls.next().await.is_some() {} };
            let _ = tokio::time::timeout(grace, drained).await;
        })
        .await;
    shared.retire(generation);
    let reason = match served {
        Ok(()) => "the shared instance was retired".to_string(),
        Err(e) => format!("the shared instance failed: {e}"),
    };
    fail_queued(&mut queue, &reason);
}

/// One call of the shared instance; whether it succeeded.
async fn serve(accessor: &Accessor<StoreState>, instance: Instance, call: Call) -> bool {
    let Call { func, params, results, reply, _admitted } = call;
    let mut values = vec![Val::Bool(false); results];
    let outcome = match accessor.with(|mut store| instance.get_func(&mut store, func)) {
        Some(func) => func.call_concurrent(accessor, &params, &mut values).await,
        None => Err(wasmtime::format_err!("the export is not a function")),
    };
    let ok = outcome.is_ok();
    let _ = reply.send(outcome.map(|()| values));
    ok
}

fn fail_queued(queue: &mut mpsc::UnboundedReceiver<Call>, reason: &str) {
    queue.close();
    while let Ok(call) = queue.try_recv() {
        let _ = call.reply.send(Err(wasmtime::format_err!("{reason}")));
    }
}

/// Defines `import` in a caller's linker by forwarding to the shared instance
/// of `provider`'s `export`.
pub(crate) fn forward_import(
    linker: &mut Linker<StoreState>,
    import: &str,
    item: &ComponentItem,
    provider: &Arc<WorkloadComponent>,
    shared: &Arc<SharedInstance>,
    export: &str,
) -> wasmtime::Result<()> {
    super::each_part(linker, import, item, provider, export, |linker, part| match part {
        Part::Func { name, ty, func, .. } => forward_func(linker, name, ty, provider, shared, func),
        Part::Other { item: ComponentItem::Type(_), .. } => Ok(()),
        Part::Other { name, .. } => wasmtime::bail!(
            "`{name}` of `{import}` is a resource, and component `{}` is shared: values cross into its own store, \
             which only plain data can",
            provider.name
        ),
    })
}

fn forward_func(
    linker: &mut LinkerInstance<'_, StoreState>,
    name: &str,
    ty: &ComponentFunc,
    provider: &Arc<WorkloadComponent>,
    shared: &Arc<SharedInstance>,
    func: ComponentExportIndex,
) -> wasmtime::Result<()> {
    if func_has(ty, &|t| is_handle(t) || is_async_value(t)) {
        wasmtime::bail!(
            "`{name}` takes or returns a resource, stream or future, and component `{}` is shared: values cross \
             into its own store, which only plain data can",
            provider.name
        );
    }
    let link = Arc::new(SharedLink { provider: provider.clone(), shared: shared.clone(), func });
    // Wasmtime matches the host function's kind to the WIT type: an `async func`
    // takes a concurrent one (the caller's other tasks go on meanwhile), a plain
    // one a blocking one.
    if ty.async_() {
        linker.func_new_concurrent(name, move |accessor, _ty, params, results| {
            let link = link.clone();
            let stop = accessor.with(|mut store| store.data_mut().stop_flag());
            Box::pin(async move { link.call(stop, params, results).await })
        })
    } else {
        linker.func_new_async(name, move |store, _ty, params, results| {
            let link = link.clone();
            let stop = store.data().stop_flag();
            Box::new(async move { link.call(stop, params, results).await })
        })
    }
}

/// One function of a shared provider, as a caller imports it.
struct SharedLink {
    provider: Arc<WorkloadComponent>,
    shared: Arc<SharedInstance>,
    func: ComponentExportIndex,
}

impl SharedLink {
    async fn call(&self, stop: Arc<AtomicBool>, params: &[Val], results: &mut [Val]) -> wasmtime::Result<()> {
        let values = self.shared.call(&self.provider, stop, self.func, params.to_vec(), results.len()).await?;
        for (slot, value) in results.iter_mut().zip(values) {
            *slot = value;
        }
        Ok(())
    }
}
