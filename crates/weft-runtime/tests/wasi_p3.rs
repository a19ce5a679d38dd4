//! WASI 0.3: a component that uses component-model async runs on the host's
//! second engine (concurrency support on), made the first time a workload needs
//! it; WASI 0.2 workloads stay on the first, also beside a 0.3 one.

mod common;

use common::*;
use std::sync::Arc;
use std::time::Duration;
use weft_runtime::engine::{AllocatorChoice, Concurrency, EngineConfig};

use weft_runtime::wasmtime::component::Val;
use weft_runtime::{HostApi, HostConfig, RunningWorkload, SharedStats, WorkloadState};

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_command_runs_on_the_engine_with_concurrency() {
    let t = host().await;
    let beat = t.host.heartbeat().await.unwrap();
    let engines: Vec<_> = beat.engines.iter().map(|e| e.concurrency).collect();
    assert_eq!(engines, [Concurrency::Off], "only the WASI 0.2 engine before any 0.3 workload");

    let w = t
        .start_ok(&format!(
            "name: p3\ncomponents:\n  - {{ name: hello, source: {HELLO_P3}, args: [from, weft], env: {{ HELLO_WAIT_MS: \"20\" }} }}\n"
        ))
        .await;
    assert_eq!(w.status().concurrency, Some(Concurrency::On));
    let started = std::time::Instant::now();
    w.run("hello").await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(20), "the async clock wait was awaited");
    assert_eq!(t.stdout("hello"), ["from weft (WASI 0.3)"]);

    let beat = t.host.heartbeat().await.unwrap();
    let engines: Vec<_> = beat.engines.iter().map(|e| (e.concurrency, e.workloads)).collect();
    assert_eq!(engines, [(Concurrency::Off, 0), (Concurrency::On, 1)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_run_that_fails_is_an_error() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            "name: p3-fails\ncomponents:\n  - {{ name: hello, source: {HELLO_P3}, env: {{ HELLO_FAIL: \"1\" }} }}\n"
        ))
        .await;
    let error = w.run("hello").await.unwrap_err().to_string();
    assert!(error.contains("hello"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_service_runs_to_completion() {
    let t = host().await;
    let w =
        t.start_ok(&format!("name: p3-job\nservice: {{ name: job, source: {HELLO_P3}, args: [a, service] }}\n")).await;
    assert_eq!(w.wait_for(|s| s != WorkloadState::Running).await, WorkloadState::Completed);
    assert_eq!(t.stdout("job"), ["a service (WASI 0.3)"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_2_workload_beside_a_0_3_one_keeps_the_engine_without_concurrency() {
    let t = host().await;
    let p3 = t.start_ok(&format!("name: p3\ncomponents:\n  - {{ name: new, source: {HELLO_P3} }}\n")).await;
    let p2 =
        t.start_ok(&format!("name: p2\ncomponents:\n  - {{ name: old, source: {HELLO}, args: [still, 0.2] }}\n")).await;
    assert_eq!(p3.status().concurrency, Some(Concurrency::On));
    assert_eq!(p2.status().concurrency, Some(Concurrency::Off));
    p2.run("old").await.unwrap();
    p3.run("new").await.unwrap();
    assert_eq!(t.stdout("old"), ["still 0.2"]);
    let beat = t.host.heartbeat().await.unwrap();
    let engines: Vec<_> = beat.engines.iter().map(|e| (e.concurrency, e.workloads)).collect();
    assert_eq!(engines, [(Concurrency::Off, 1), (Concurrency::On, 1)]);
}

/// The engine is chosen from the component's types alone: the least component
/// that uses component-model async, one whose only type is `stream<u8>`, is
/// accepted onto the engine with concurrency (before, it was rejected).
#[tokio::test(flavor = "multi_thread")]
async fn a_component_whose_only_async_part_is_a_stream_type_gets_the_concurrency_engine() {
    let t = host().await;
    t.file("stream.wasm", b"\0asm\x0d\x00\x01\x00\x07\x04\x01\x66\x01\x7d");
    let w = t.start_ok("name: s\ncomponents: [{ name: c, source: stream.wasm }]\n").await;
    assert_eq!(w.status().concurrency, Some(Concurrency::On));
}

/// The counter's tally: (instance, count, most at once).
fn tally(value: &Val) -> (u64, u32, u32) {
    let Val::Record(fields) = value else { panic!("a tally record, got {value:?}") };
    match fields.as_slice() {
        [(_, Val::U64(instance)), (_, Val::U32(count)), (_, Val::U32(most))] => (*instance, *count, *most),
        other => panic!("tally fields: {other:?}"),
    }
}

const BUMP_THROUGH: &str = "weft:shared/relay@0.1.0#bump-through";

fn shared_counter(idle: &str) -> String {
    format!(
        r#"
name: shared
components:
  - name: caller
    source: {COUNTER_CALLER_P3}
    limits: {{ maxConcurrent: 128 }}
  - name: counter
    source: {COUNTER_P3}
    shared: {{ idleTimeout: {idle} }}
    limits: {{ maxConcurrent: 128 }}
"#
    )
}

/// A hundred invocations of the caller, each in its own instance, call the
/// counter at once: one instance answers them all (its counter saw every call,
/// many in progress together), it is dropped once idle, and the next call
/// makes a new one.
#[tokio::test(flavor = "multi_thread")]
async fn one_shared_instance_serves_a_hundred_concurrent_callers_and_goes_when_idle() {
    // A hundred callers' instances at once: more than the test hosts' pool holds.
    let t = host_configured(HostConfig {
        engine: EngineConfig {
            allocator: AllocatorChoice::OnDemand,
            cache_dir: Some(shared_cache()),
            ..EngineConfig::default()
        },
        ..HostConfig::default()
    })
    .await;
    let w = t.start_ok(&shared_counter("300ms")).await;
    assert_eq!(w.shared_instance("counter").unwrap(), SharedStats { live: false, started: 0 }, "made on first use");

    let calls: Vec<_> = (0..100)
        .map(|_| {
            let w = w.clone();
            tokio::spawn(async move { w.invoke("caller", BUMP_THROUGH, &[Val::U32(200)]).await })
        })
        .collect();
    let mut tallies = Vec::new();
    for call in calls {
        let results = call.await.unwrap().unwrap_or_else(|e| panic!("a caller failed: {e}"));
        tallies.push(tally(&results[0]));
    }
    let instance = tallies[0].0;
    assert!(tallies.iter().all(|t| t.0 == instance), "one instance answered every call: {tallies:?}");
    let mut counts: Vec<u32> = tallies.iter().map(|t| t.1).collect();
    counts.sort();
    assert_eq!(counts, (1..=100).collect::<Vec<_>>(), "the instance counted each call once");
    let most = tallies.iter().map(|t| t.2).max().unwrap();
    assert!(most >= 10, "calls overlapped in the one instance (at most {most} at once)");
    assert_eq!(w.shared_instance("counter").unwrap(), SharedStats { live: true, started: 1 });

    let started = std::time::Instant::now();
    while w.shared_instance("counter").unwrap().live {
        assert!(started.elapsed() < Duration::from_secs(10), "the idle instance was never dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = w.invoke("caller", BUMP_THROUGH, &[Val::U32(0)]).await.unwrap();
    let (next, count, _) = tally(&again[0]);
    assert_ne!(next, instance, "a new instance after the idle timeout");
    assert_eq!(count, 1, "the new instance starts from its own state");
    assert_eq!(w.shared_instance("counter").unwrap(), SharedStats { live: true, started: 2 });

    // Stopping the workload retires the instance.
    t.host.workload_stop(w.id()).await.unwrap();
    assert!(!w.shared_instance("counter").unwrap().live);
}

/// What cannot be shared is refused before anything runs: a provider whose
/// interface carries resources (values cross into the shared store, and a
/// handle belongs to one store), and limits that mean nothing for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_provider_refuses_resources_and_per_invocation_limits() {
    let t = host().await;
    let text = t
        .rejection(&format!(
            r#"
name: bad-shared
components:
  - {{ name: caller, source: {TYPES_CALLER} }}
  - name: provider
    source: {TYPES_PROVIDER}
    shared: {{}}
"#
        ))
        .await
        .to_string();
    assert!(text.contains("component `provider` is shared"), "{text}");
    assert!(text.contains("resource"), "{text}");

    let text = t
        .rejection(&format!(
            "name: bad-limits\ncomponents:\n  - {{ name: caller, source: {COUNTER_CALLER_P3} }}\n  - {{ name: counter, source: {COUNTER_P3}, shared: {{}}, reuseInstances: true, limits: {{ cpuTime: 1s }} }}\n"
        ))
        .await
        .to_string();
    assert!(text.contains("`shared` and `reuseInstances` exclude each other"), "{text}");
    assert!(text.contains("`limits.cpuTime` budgets one invocation"), "{text}");
}

/// A plain (WASI 0.2, sync) provider can be shared too: its calls take turns in
/// the one instance, which keeps its own environment.
#[tokio::test(flavor = "multi_thread")]
async fn a_plain_provider_can_be_shared() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            r#"
name: greetings
components:
  - {{ name: client, source: {GREETER_CLIENT}, args: [one, two] }}
  - {{ name: greeter, source: {GREETER}, env: {{ GREETING: Ahoy }}, shared: {{ idleTimeout: 1m }} }}
"#
        ))
        .await;
    w.run("client").await.unwrap();
    w.run("client").await.unwrap();
    assert_eq!(t.stdout("client"), ["Ahoy, one!", "Ahoy, two!", "Ahoy, one!", "Ahoy, two!"]);
    assert_eq!(w.shared_instance("greeter").unwrap(), SharedStats { live: true, started: 1 });
}

const PROBE: &str = "weft:shared/probe@0.1.0";

/// The prober and the async provider, linked `mode`.
async fn async_pair(t: &TestHost, mode: &str) -> Arc<RunningWorkload> {
    t.start_ok(&format!(
        r#"
name: async-{mode}
components:
  - {{ name: prober, source: {LINK_PROBER_P3}, env: {{ WHO: prober }} }}
  - {{ name: provider, source: {COUNTER_P3}, env: {{ WHO: provider }} }}
links:
  - {{ from: prober, import: "weft:shared/counter@0.1.0", to: provider, mode: {mode} }}
  - {{ from: prober, import: "weft:shared/streams@0.1.0", to: provider, mode: {mode} }}
"#
    ))
    .await
}

/// An async link, in either mode: the caller's concurrent calls run
/// concurrently in the one provider instance of its invocation, streams go both
/// ways, and each component keeps its own WASI context while their tasks
/// interleave. Fused, a call the caller drops is cancelled in the provider.
async fn async_link_suite(mode: &str) {
    let t = host().await;
    let w = async_pair(&t, mode).await;
    let expected = if mode == "dynamic" { ", dynamic" } else { ", fused)" };
    for link in w.plan().imports_of("prober").iter().filter(|l| l.import.starts_with("weft:shared/")) {
        assert!(link.provider.to_string().contains(expected), "{}: {}", link.import, link.provider);
    }

    let back = w.invoke("prober", &format!("{PROBE}#bump-many"), &[Val::U32(20), Val::U32(50)]).await.unwrap();
    let Val::List(tallies) = &back[0] else { panic!("a list: {back:?}") };
    let tallies: Vec<_> = tallies.iter().map(tally).collect();
    assert!(tallies.iter().all(|t| t.0 == tallies[0].0), "one provider instance: {tallies:?}");
    let mut counts: Vec<u32> = tallies.iter().map(|t| t.1).collect();
    counts.sort();
    assert_eq!(counts, (1..=20).collect::<Vec<_>>());
    assert_eq!(tallies.iter().map(|t| t.2).max(), Some(20), "all twenty calls were in progress at once");

    let text: String = (0..2_000).map(|i| format!("line {i} of the stream\n")).collect();
    let back = w
        .invoke("prober", &format!("{PROBE}#upper-through"), &[Val::String(text.clone()), Val::U32(777)])
        .await
        .unwrap();
    assert_eq!(back, [Val::String(text.to_uppercase())]);

    let back = w
        .invoke("prober", &format!("{PROBE}#env-interleaved"), &[Val::String("WHO".into()), Val::U32(8)])
        .await
        .unwrap();
    let who = |name: &str| Val::Option(Some(Box::new(Val::String(name.into()))));
    let eight = |name: &str| Val::List(vec![who(name); 8]);
    assert_eq!(back, [Val::Tuple(vec![eight("prober"), eight("provider")])], "each saw its own environment");

    let back = w.invoke("prober", &format!("{PROBE}#abandon-work"), &[Val::U32(20)]).await.unwrap();
    // Wasmtime 48 cannot cancel a guest task the host started: through the
    // host, the dropped call runs on unanswered.
    let cancelled = if mode == "dynamic" { 0 } else { 1 };
    assert_eq!(back, [Val::U32(cancelled)], "cancellations the provider saw");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_link_fused_carries_concurrent_calls_streams_and_cancellation() {
    async_link_suite("auto").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_link_dynamic_carries_concurrent_calls_and_streams_with_each_components_wasi() {
    async_link_suite("dynamic").await;
}
