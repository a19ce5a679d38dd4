//! The Wasmtime engines weft runs everything on: per host, one with
//! component-model concurrency off for WASI 0.2 components, and one with it on for
//! components that use component-model async (WASI 0.3), created on first need
//! ([`Engines`], docs/engine.md). Both:
//!
//! * async execution, so that guests run on Tokio without blocking it;
//! * the pooling instance allocator where the machine allows it (it reserves a large
//!   range of virtual memory up front), otherwise on-demand allocation; the heartbeat
//!   reports which;
//! * epoch interruption, driven by one ticker thread per engine: every tick lets
//!   running guests yield to the executor and charges them CPU time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::{InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::component::ComponentCache;
use crate::limits::ByteSize;

/// Which instance allocator to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorChoice {
    /// Pooling if the machine allows it, on-demand otherwise.
    #[default]
    Auto,
    Pooling,
    OnDemand,
}

/// The allocator actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorKind {
    Pooling,
    OnDemand,
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub allocator: AllocatorChoice,
    /// How often the epoch advances: the granularity of CPU limits and of yielding.
    pub epoch_tick: Duration,
    /// Where compiled components are kept between runs (none: memory only).
    pub cache_dir: Option<PathBuf>,
    /// With pooling: how many component instances may be alive at once.
    pub max_instances: u32,
    /// The largest component file validation reads.
    pub max_component_size: ByteSize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            allocator: AllocatorChoice::Auto,
            epoch_tick: Duration::from_millis(10),
            cache_dir: None,
            max_instances: 1000,
            max_component_size: crate::component::MAX_COMPONENT_SIZE,
        }
    }
}

/// Whether an engine has Wasmtime's component-model concurrency support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// WASI 0.2 and synchronous component functions: every host-mediated call is
    /// cheaper without concurrency support.
    Off,
    /// Component-model async: `async` functions, `stream`, `future`, WASI 0.3.
    On,
}

impl Concurrency {
    pub fn as_str(self) -> &'static str {
        match self {
            Concurrency::Off => "off",
            Concurrency::On => "on",
        }
    }
}

/// A host's engines: the one without concurrency support, made with the host,
/// and the one with it, made the first time a workload needs it.
pub struct Engines {
    config: EngineConfig,
    off: Arc<Engine>,
    on: std::sync::Mutex<Option<Arc<Engine>>>,
}

impl Engines {
    pub fn new(config: &EngineConfig) -> wasmtime::Result<Engines> {
        Ok(Engines { config: config.clone(), off: Engine::new(config, Concurrency::Off)?, on: Default::default() })
    }

    /// The engine without concurrency support, which WASI 0.2 workloads run on.
    pub fn default_engine(&self) -> &Arc<Engine> {
        &self.off
    }

    /// The engine for `concurrency`, made now if it is the first need of it.
    pub fn get(&self, concurrency: Concurrency) -> wasmtime::Result<Arc<Engine>> {
        match concurrency {
            Concurrency::Off => Ok(self.off.clone()),
            Concurrency::On => {
                let mut on = self.on.lock().unwrap();
                if let Some(engine) = &*on {
                    return Ok(engine.clone());
                }
                let engine = Engine::new(&self.config, Concurrency::On)?;
                tracing::info!(allocator = ?engine.allocator(), "engine with component-model concurrency started");
                *on = Some(engine.clone());
                Ok(engine)
            }
        }
    }

    /// The engines made so far.
    pub fn started(&self) -> Vec<Arc<Engine>> {
        std::iter::once(self.off.clone()).chain(self.on.lock().unwrap().clone()).collect()
    }
}

/// A configured Wasmtime engine, its epoch ticker and its compiled-component cache.
pub struct Engine {
    engine: wasmtime::Engine,
    concurrency: Concurrency,
    allocator: AllocatorKind,
    epoch_tick: Duration,
    max_component_size: ByteSize,
    cache: ComponentCache,
    _ticker: EpochTicker,
}

impl Engine {
    pub fn new(config: &EngineConfig, concurrency: Concurrency) -> wasmtime::Result<Arc<Engine>> {
        let on_demand = || wasmtime::Engine::new(&base_config(concurrency));
        let (engine, allocator) = match config.allocator {
            AllocatorChoice::OnDemand => (on_demand()?, AllocatorKind::OnDemand),
            AllocatorChoice::Pooling => (pooling_engine(config, concurrency)?, AllocatorKind::Pooling),
            AllocatorChoice::Auto => match pooling_engine(config, concurrency) {
                Ok(engine) => (engine, AllocatorKind::Pooling),
                Err(e) => {
                    tracing::info!("pooling allocator unavailable ({e}); using on-demand allocation");
                    (on_demand()?, AllocatorKind::OnDemand)
                }
            },
        };
        let cache = ComponentCache::new(engine.clone(), concurrency, config.cache_dir.clone());
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick);
        Ok(Arc::new(Engine {
            engine,
            concurrency,
            allocator,
            epoch_tick: config.epoch_tick,
            max_component_size: config.max_component_size,
            cache,
            _ticker: ticker,
        }))
    }

    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }

    pub fn concurrency(&self) -> Concurrency {
        self.concurrency
    }

    pub fn allocator(&self) -> AllocatorKind {
        self.allocator
    }

    pub fn epoch_tick(&self) -> Duration {
        self.epoch_tick
    }

    pub fn max_component_size(&self) -> ByteSize {
        self.max_component_size
    }

    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    /// Whole epoch ticks in `d`, rounded up, at least one.
    pub fn ticks(&self, d: Duration) -> u64 {
        (d.as_nanos().div_ceil(self.epoch_tick.as_nanos().max(1)) as u64).max(1)
    }
}

fn base_config(concurrency: Concurrency) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .wasm_component_model(true)
        // Composites import one WASI interface under several labels (fused links).
        .wasm_component_model_implements(true)
        .epoch_interruption(true)
        // WASI 0.2 components need no component-model concurrency, and leaving it
        // off keeps every host-mediated call cheaper (docs/engine.md).
        .concurrency_support(concurrency == Concurrency::On)
        .cranelift_opt_level(OptLevel::Speed);
    config
}

/// With pooling: how many bytes of the pages an instance wrote to its linear
/// memory are reset in place when it is dropped, rather than handed back to the
/// kernel. A fresh instance per call then neither faults those pages in again nor
/// makes the kernel flush other CPUs' TLBs to take them away. Only pages written
/// are touched (Linux's `PAGEMAP_SCAN`, 6.7+; without it, the lowest bytes). The
/// cost is resident memory: at most this much per warm slot of the pool.
pub const MEMORY_KEEP_RESIDENT: usize = 1 << 20;
/// The same for tables, which are small.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

fn pooling_engine(config: &EngineConfig, concurrency: Concurrency) -> wasmtime::Result<wasmtime::Engine> {
    let n = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component built for wasm32-wasip2 holds a handful of core instances,
    // memories and tables (the program, the WASI adapter, and their shims).
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(8))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(4 << 30)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut wasm_config = base_config(concurrency);
    wasm_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    wasmtime::Engine::new(&wasm_config)
}

/// Advances the engine's epoch every tick until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine, tick: Duration) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawn epoch ticker thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
