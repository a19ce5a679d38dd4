//! What component-model async costs and buys across links (issue #12), measured
//! in one run:
//!
//! * an `async func` `add` through a fused link (the only kind an async function
//!   can cross in one store), beside the plain `add` through a `dynamic` and a
//!   `fused` link, each loop running inside its caller;
//! * 1,000 concurrent invocations whose caller calls a provider: one `shared`
//!   provider instance for all of them, against a provider instance per
//!   invocation (fused into each caller), with wall time and the process's peak
//!   resident memory over the batch.
//!
//! `cargo bench -p weft-runtime --bench async` prints the tables that
//! `docs/benchmarks.md` records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use weft_runtime::engine::{AllocatorChoice, EngineConfig};
use weft_runtime::output::CapturedOutput;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::wasmtime::component::Val;
use weft_runtime::{Host, HostApi, HostConfig, RunningWorkload, WorkloadSpec};

async fn new_host(allocator: AllocatorChoice, max_instances: u32) -> Host {
    Host::new(HostConfig {
        engine: EngineConfig { allocator, max_instances, ..EngineConfig::default() },
        stdio: GuestStdio::Sink(Arc::new(CapturedOutput::default())),
        ..HostConfig::default()
    })
    .await
    .unwrap()
}

async fn start(host: &Host, yaml: &str) -> Arc<RunningWorkload> {
    let spec = WorkloadSpec::from_yaml(yaml).unwrap();
    let status = host.workload_start(spec).await.unwrap();
    host.workload(&status.id).unwrap()
}

/// ns per call: the median of 5 runs of `n` calls, less a run of none.
fn per_call(rt: &Runtime, w: &RunningWorkload, function: &str, args: impl Fn(u32) -> Vec<Val>, n: u32) -> f64 {
    let time = |n: u32| {
        rt.block_on(async {
            let mut invocation = w.instantiate("caller").await.unwrap();
            let started = Instant::now();
            std::hint::black_box(invocation.call(function, &args(n)).await.unwrap());
            started.elapsed()
        })
    };
    time(n); // warm up: code paged in, the provider's instance made
    let mut runs: Vec<f64> =
        (0..5).map(|_| (time(n).as_nanos() as f64 - time(0).as_nanos() as f64) / f64::from(n)).collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn link_calls(rt: &Runtime) {
    let host = rt.block_on(new_host(AllocatorChoice::Auto, 64));
    let plain = |mode: &str| {
        format!(
            "name: plain-{mode}\ncomponents:\n  - {{ name: caller, source: {}, limits: {{ cpuTime: unlimited, timeout: unlimited }} }}\n  - {{ name: provider, source: {} }}\nlinks:\n  - {{ from: caller, import: \"weft:bench/calls@0.1.0\", to: provider, mode: {mode} }}\n",
            weft_guests::BENCH_CALLER,
            weft_guests::BENCH_PROVIDER
        )
    };
    let kind = |n: u32| vec![Val::U32(n), Val::Enum("add".into())];
    let n = 20_000;
    let dynamic = rt.block_on(start(&host, &plain("dynamic")));
    let fused = rt.block_on(start(&host, &plain("fused")));
    let asynchronous = rt.block_on(start(
        &host,
        &format!(
            "name: async\ncomponents:\n  - {{ name: caller, source: {}, limits: {{ cpuTime: unlimited, timeout: unlimited }} }}\n  - {{ name: provider, source: {} }}\n",
            weft_guests::BENCH_ASYNC_CALLER,
            weft_guests::BENCH_ASYNC_PROVIDER
        ),
    ));
    let run = "weft:bench/driver@0.1.0#run";
    println!("\n| `add` through a link (ns per call, median of 5 × {n}) | |\n|---|---|");
    println!("| plain `add`, `dynamic` link | {:.0} |", per_call(rt, &dynamic, run, kind, n));
    println!("| plain `add`, `fused` link | {:.0} |", per_call(rt, &fused, run, kind, n));
    let async_run = "weft:bench-async/async-driver@0.1.0#run";
    println!(
        "| `async func` `add`, `fused` link (engine with concurrency) | {:.0} |",
        per_call(rt, &asynchronous, async_run, |n| vec![Val::U32(n)], n)
    );
}

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Peak resident memory while `work` runs, sampled every millisecond, above
/// what it was before.
fn peak_rss_during<R>(work: impl FnOnce() -> R) -> (R, u64) {
    let before = rss();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let result = work();
    peak.fetch_max(rss(), Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    (result, peak.load(Ordering::Relaxed).saturating_sub(before))
}

const CONCURRENT: u32 = 1_000;

fn shared_or_not(rt: &Runtime) {
    // On-demand allocation, so that resident memory is what instances use.
    let host = rt.block_on(new_host(AllocatorChoice::OnDemand, 4_000));
    let manifest = |shared: bool| {
        format!(
            "name: counter-{}\ncomponents:\n  - {{ name: caller, source: {}, limits: {{ maxConcurrent: {CONCURRENT} }} }}\n  - {{ name: counter, source: {}, limits: {{ maxConcurrent: {CONCURRENT} }}{} }}\n",
            if shared { "shared" } else { "per-call" },
            weft_guests::COUNTER_CALLER_P3,
            weft_guests::COUNTER_P3,
            if shared { ", shared: { idleTimeout: 1m }" } else { "" },
        )
    };
    let batch = |w: &Arc<RunningWorkload>| {
        rt.block_on(async {
            let started = Instant::now();
            let calls: Vec<_> = (0..CONCURRENT)
                .map(|_| {
                    let w = w.clone();
                    tokio::spawn(async move {
                        w.invoke("caller", "weft:shared/relay@0.1.0#bump-through", &[Val::U32(10)]).await.unwrap()
                    })
                })
                .collect();
            for call in calls {
                call.await.unwrap();
            }
            started.elapsed()
        })
    };
    println!(
        "\n| {CONCURRENT} concurrent calls, each waiting 10 ms in the provider | batch (ms) | peak RSS over the batch (MiB) |\n|---|---|---|"
    );
    for (shared, what) in [(true, "one `shared` provider instance"), (false, "a provider instance per call (fused)")] {
        let w = rt.block_on(start(&host, &manifest(shared)));
        batch(&w); // warm up
        let mut runs: Vec<(f64, f64)> = (0..5)
            .map(|_| {
                let (elapsed, peak) = peak_rss_during(|| batch(&w));
                (elapsed.as_secs_f64() * 1000.0, peak as f64 / f64::from(1 << 20))
            })
            .collect();
        let median = |pick: fn(&(f64, f64)) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            values[2]
        };
        let (ms, mib) = (median(|r| r.0), median(|r| r.1));
        runs.clear();
        println!("| {what} | {ms:.0} | {mib:.1} |");
        rt.block_on(host.workload_stop(w.id())).unwrap();
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    link_calls(&rt);
    shared_or_not(&rt);
}
