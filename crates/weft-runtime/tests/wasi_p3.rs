//! WASI 0.3: a component that uses component-model async runs on the host's
//! second engine (concurrency support on), made the first time a workload needs
//! it; WASI 0.2 workloads stay on the first, also beside a 0.3 one.

mod common;

use common::*;
use weft_runtime::engine::Concurrency;
use weft_runtime::{HostApi, WorkloadState};

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
