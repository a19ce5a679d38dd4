//! Per-call cost of a component-to-component call, measured from inside the caller,
//! through a `dynamic` and a `fused` link, beside references measured in the same
//! run: the same hop in a bare Wasmtime embedding (`func_new_async` forwarding
//! with `call_async`, no weft code: the floor of a host-mediated hop), the
//! provider called directly from the host through `TypedFunc`, and a
//! request/reply round trip through a local `nats-server` with the same payload
//! (the floor of any NATS-based RPC). Also: what a composite costs to compile and
//! to instantiate.
//!
//! `cargo bench --bench links`: criterion statistics, then a summary table (medians
//! of 3 runs, the empty loop subtracted) in the form `docs/benchmarks.md` records.
//! Needs `nats-server` on the PATH.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use tokio::runtime::Runtime;
use weft_runtime::engine::EngineConfig;
use weft_runtime::output::CapturedOutput;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::wasmtime::component::Val;
use weft_runtime::workload::Invocation;
use weft_runtime::{Host, HostApi, HostConfig, RunningWorkload, WorkloadSpec};
use weft_testkit::NatsPair;

const KINDS: &[&str] = &["empty", "add", "echo16", "sum64", "record", "bytes64k"];
const MODES: &[&str] = &["dynamic", "fused"];
const RUN: &str = "weft:bench/driver@0.1.0#run";

async fn new_host() -> Host {
    Host::new(HostConfig {
        engine: EngineConfig { max_instances: 64, ..EngineConfig::default() },
        stdio: GuestStdio::Sink(std::sync::Arc::new(CapturedOutput::default())),
        ..HostConfig::default()
    })
    .await
    .unwrap()
}

/// The caller's limits let criterion's long runs finish; the provider sets none of
/// its own, so that a `fused` link (which runs it under the caller's) is allowed.
fn manifest(mode: &str) -> WorkloadSpec {
    WorkloadSpec::from_yaml(&format!(
        r#"
name: bench-{mode}
components:
  - {{ name: caller, source: {}, limits: {{ cpuTime: unlimited, timeout: unlimited }} }}
  - {{ name: provider, source: {} }}
links:
  - {{ from: caller, import: "weft:bench/calls@0.1.0", to: provider, mode: {mode} }}
"#,
        weft_guests::BENCH_CALLER,
        weft_guests::BENCH_PROVIDER
    ))
    .unwrap()
}

/// Calls handed to one invocation at most: criterion may ask for billions of a
/// near-empty call, which must neither wrap a `u32` nor outlast any limit.
const CHUNK: u64 = 1_000_000;
/// Iterations measured at most per sample; past that the time is scaled.
const MEASURED: u64 = 200_000_000;

/// Time for `iters` iterations of `run`, given at most [`CHUNK`] at a time.
fn chunked(iters: u64, mut run: impl FnMut(u32) -> Duration) -> Duration {
    let measured = iters.min(MEASURED);
    let mut total = Duration::ZERO;
    let mut left = measured;
    while left > 0 {
        let n = left.min(CHUNK);
        total += run(n as u32);
        left -= n;
    }
    let scale = iters as f64 / measured as f64;
    Duration::try_from_secs_f64(total.as_secs_f64() * scale).unwrap_or(Duration::MAX)
}

/// The floor of any async host hop on Wasmtime 48: the same two components in
/// one store of a bare embedding (WASI 0.2 and nothing else of weft's), the
/// caller's import defined with `func_new_async` forwarding to the provider's
/// export with `call_async`. Same engine (configuration) as weft's.
mod bare {
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
    use weft_runtime::wasmtime::component::{Component, Func, Instance, Linker, ResourceTable, Val};
    use weft_runtime::wasmtime::{Engine, Store};

    pub struct State {
        wasi: WasiCtx,
        table: ResourceTable,
        provider: Option<Instance>,
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
        }
    }

    pub struct Bare {
        pub store: Store<State>,
        pub run: Func,
    }

    pub async fn setup(engine: &Engine) -> Bare {
        let provider = Component::from_file(engine, weft_guests::BENCH_PROVIDER).unwrap();
        let caller = Component::from_file(engine, weft_guests::BENCH_CALLER).unwrap();
        let mut linker = Linker::<State>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        let provider_pre = linker.instantiate_pre(&provider).unwrap();
        let calls = "weft:bench/calls@0.1.0";
        let exported = provider.get_export_index(None, calls).unwrap();
        {
            let mut instance = linker.instance(calls).unwrap();
            for name in ["add", "echo", "sum", "translate", "length"] {
                let index = provider.get_export_index(Some(&exported), name).unwrap();
                instance
                    .func_new_async(name, move |mut store, _ty, params: &[Val], results: &mut [Val]| {
                        Box::new(async move {
                            let provider = store.data().provider.expect("instantiated first");
                            let func = provider.get_func(&mut store, index).unwrap();
                            func.call_async(&mut store, params, results).await
                        })
                    })
                    .unwrap();
            }
        }
        let state = State { wasi: WasiCtx::builder().build(), table: ResourceTable::new(), provider: None };
        let mut store = Store::new(engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        let provider = provider_pre.instantiate_async(&mut store).await.unwrap();
        store.data_mut().provider = Some(provider);
        let caller = linker.instantiate_async(&mut store, &caller).await.unwrap();
        let run = super::bare_run_index(&caller, &mut store);
        let run = caller.get_func(&mut store, run).unwrap();
        Bare { store, run }
    }
}

/// The caller's `weft:bench/driver#run`.
fn bare_run_index(
    instance: &weft_runtime::wasmtime::component::Instance,
    store: &mut weft_runtime::wasmtime::Store<bare::State>,
) -> weft_runtime::wasmtime::component::ComponentExportIndex {
    let driver = instance.get_export_index(&mut *store, None, "weft:bench/driver@0.1.0").unwrap();
    instance.get_export_index(&mut *store, Some(&driver), "run").unwrap()
}

struct Setup {
    rt: Runtime,
    bare: bare::Bare,
    _host: Host,
    workloads: Vec<std::sync::Arc<RunningWorkload>>,
    /// One caller instance per mode, reused for every measurement.
    callers: Vec<Invocation>,
    provider: Invocation,
}

fn setup() -> Setup {
    let rt = Runtime::new().unwrap();
    let host = rt.block_on(new_host());
    let (workloads, callers, provider) = rt.block_on(async {
        let mut workloads = Vec::new();
        let mut callers = Vec::new();
        for mode in MODES {
            let status = host.workload_start(manifest(mode)).await.unwrap();
            let w = host.workload(&status.id).unwrap();
            callers.push(w.instantiate("caller").await.unwrap());
            workloads.push(w);
        }
        let provider = workloads[0].instantiate("provider").await.unwrap();
        (workloads, callers, provider)
    });
    let bare = rt.block_on(bare::setup(host.engine().wasmtime()));
    Setup { rt, bare, _host: host, workloads, callers, provider }
}

impl Setup {
    /// Time for `n` calls of `kind` made by the caller through a link of `MODES[mode]`.
    fn through_link(&mut self, mode: usize, kind: &str, n: u32) -> Duration {
        let params = [Val::U32(n), Val::Enum(kind.to_string())];
        let started = Instant::now();
        self.rt.block_on(self.callers[mode].call(RUN, &params)).unwrap();
        started.elapsed()
    }

    /// Time for `n` calls of `kind` made by the caller through the bare embedding's hop.
    fn through_bare_hop(&mut self, kind: &str, n: u32) -> Duration {
        let params = [Val::U32(n), Val::Enum(kind.to_string())];
        let mut results = [Val::U64(0)];
        let bare = &mut self.bare;
        let started = Instant::now();
        self.rt.block_on(bare.run.call_async(&mut bare.store, &params, &mut results)).unwrap();
        started.elapsed()
    }

    /// Time for `n` calls of the provider's `add` made by the host through `TypedFunc`.
    fn host_typed_add(&mut self, n: u32) -> Duration {
        let add = self.provider.typed_func::<(u32, u32), (u32,)>("weft:bench/calls@0.1.0#add").unwrap();
        let store = self.provider.store();
        let started = Instant::now();
        self.rt.block_on(async {
            for i in 0..n {
                std::hint::black_box(add.call_async(&mut *store, (i, 7)).await.unwrap());
            }
        });
        started.elapsed()
    }

    /// Time for `n` fresh instances of the caller (with `MODES[mode]` links): a new
    /// store each, as every top-level invocation gets.
    fn instantiate(&mut self, mode: usize, n: u32) -> Duration {
        let w = self.workloads[mode].clone();
        let started = Instant::now();
        self.rt.block_on(async {
            for _ in 0..n {
                drop(std::hint::black_box(w.instantiate("caller").await.unwrap()));
            }
        });
        started.elapsed()
    }
}

/// Time to validate a workload on a fresh host, that is mostly to compile it: for
/// `dynamic`, the two components; for `fused`, those and their composite.
fn validate_cold(rt: &Runtime, mode: &str) -> Duration {
    let host = rt.block_on(new_host());
    let started = Instant::now();
    rt.block_on(host.validate(manifest(mode))).unwrap();
    started.elapsed()
}

/// Payload sizes of the NATS round trips, matching what each call moves
/// (arguments out, results back).
const NATS_PAYLOADS: &[(&str, usize, usize)] =
    &[("add", 8, 4), ("echo16", 16, 16), ("sum64", 256, 4), ("record", 48, 48), ("bytes64k", 64 * 1024, 4)];

fn criterion_links(c: &mut Criterion) {
    let mut s = setup();
    for (m, mode) in MODES.iter().enumerate() {
        let mut group = c.benchmark_group(*mode);
        for kind in KINDS {
            group.bench_function(*kind, |b| b.iter_custom(|iters| chunked(iters, |n| s.through_link(m, kind, n))));
        }
        group.finish();
    }
    let mut group = c.benchmark_group("bare-wasmtime-hop");
    for kind in KINDS {
        group.bench_function(*kind, |b| b.iter_custom(|iters| chunked(iters, |n| s.through_bare_hop(kind, n))));
    }
    group.finish();
    c.bench_function("host-typed/add", |b| b.iter_custom(|iters| chunked(iters, |n| s.host_typed_add(n))));
    let mut group = c.benchmark_group("instantiate");
    for (m, what) in ["plain", "composite"].iter().enumerate() {
        group.bench_function(*what, |b| b.iter_custom(|iters| chunked(iters, |n| s.instantiate(m, n))));
    }
    group.finish();

    let nats = weft_testkit::Server::nats();
    let pair = s.rt.block_on(NatsPair::connect(&nats.url()));
    let mut group = c.benchmark_group("nats-request-reply");
    for (kind, request, reply) in NATS_PAYLOADS {
        group.bench_function(*kind, |b| {
            b.iter_custom(|iters| chunked(iters, |n| s.rt.block_on(pair.round_trips(n, *request, *reply))))
        });
    }
    group.finish();
}

/// ns per unit: median of 3 runs of `n` units.
fn median_ns(n: u32, mut run: impl FnMut(u32) -> Duration) -> f64 {
    let mut runs: Vec<f64> = (0..3).map(|_| run(n).as_nanos() as f64 / f64::from(n)).collect();
    runs.sort_by(f64::total_cmp);
    runs[1]
}

fn summary() {
    let mut s = setup();
    let n = 20_000;
    println!("\n| hop (ns per call) | {} |", KINDS[1..].join(" | "));
    println!("|---|{}", "---|".repeat(KINDS.len() - 1));
    for (m, mode) in MODES.iter().enumerate() {
        s.through_link(m, "add", 1_000); // warm up: the provider's instance in a dynamic store
        let empty = median_ns(n, |n| s.through_link(m, "empty", n));
        let figures: Vec<String> = KINDS[1..]
            .iter()
            .map(|kind| {
                let calls = if *kind == "bytes64k" { n / 20 } else { n };
                format!("{:.0}", median_ns(calls, |n| s.through_link(m, kind, n)) - empty)
            })
            .collect();
        println!("| weft `{mode}` link (empty loop {empty:.1} ns subtracted) | {} |", figures.join(" | "));
    }
    s.through_bare_hop("add", 1_000);
    let empty = median_ns(n, |n| s.through_bare_hop("empty", n));
    let figures: Vec<String> = KINDS[1..]
        .iter()
        .map(|kind| {
            let calls = if *kind == "bytes64k" { n / 20 } else { n };
            format!("{:.0}", median_ns(calls, |n| s.through_bare_hop(kind, n)) - empty)
        })
        .collect();
    println!(
        "| bare Wasmtime hop, `func_new_async` + `call_async` (empty loop {empty:.1} ns subtracted) | {} |",
        figures.join(" | ")
    );
    println!("| host → provider, `TypedFunc::call_async` | {:.0} | | | | |", median_ns(n, |n| s.host_typed_add(n)));
    let nats = weft_testkit::Server::nats();
    let pair = s.rt.block_on(NatsPair::connect(&nats.url()));
    let trips: Vec<String> = NATS_PAYLOADS
        .iter()
        .map(|(_, request, reply)| {
            format!("{:.0}", median_ns(2_000, |n| s.rt.block_on(pair.round_trips(n, *request, *reply))))
        })
        .collect();
    println!("| request/reply through a local nats-server | {} |", trips.join(" | "));

    println!("\n| instantiation, fresh store (µs) | median of 3 × 2,000 |\n|---|---|");
    for (m, what) in ["caller alone (dynamic link)", "caller + provider composite (fused link)"].iter().enumerate() {
        println!("| {what} | {:.1} |", median_ns(2_000, |n| s.instantiate(m, n)) / 1000.0);
    }

    let median_ms = |mode: &str| {
        let mut runs: Vec<f64> = (0..3).map(|_| validate_cold(&s.rt, mode).as_secs_f64() * 1000.0).collect();
        runs.sort_by(f64::total_cmp);
        runs[1]
    };
    let (parts, fused) = (median_ms("dynamic"), median_ms("fused"));
    println!("\n| compile on a fresh host (ms) | median of 3 |\n|---|---|");
    println!("| the two components (`dynamic` workload) | {parts:.0} |");
    println!("| the two components and their composite (`fused` workload) | {fused:.0} |");
    println!("| the composite alone (difference) | {:.0} ({:.2}× the parts) |", fused - parts, (fused - parts) / parts);
}

criterion_group!(benches, criterion_links);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
