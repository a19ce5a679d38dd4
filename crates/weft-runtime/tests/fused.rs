//! What is particular to fused links: when the planner fuses, when it cannot, and
//! that a composite is compiled once.

mod common;

use common::*;
use weft_runtime::HostApi;
use weft_runtime::wasmtime::component::Val;

fn workload(mode: &str, provider_limits: &str) -> String {
    format!(
        r#"
name: fusing
components:
  - {{ name: client, source: {GREETER_CLIENT}, args: [fused] }}
  - {{ name: greeter, source: {GREETER}, env: {{ GREETING: Hi }} {provider_limits} }}
links:
  - {{ from: client, import: "weft:fixtures/greeter@0.1.0", to: greeter, mode: {mode} }}
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_fused_link_that_cannot_be_fused_is_rejected_with_the_reason() {
    let t = host().await;
    let rejection = t.rejection(&workload("fused", ", limits: { cpuTime: 100ms }")).await;
    let text = rejection.to_string();
    assert_eq!(rejection.problems.len(), 1, "{text}");
    assert!(
        text.contains(
            "component `client`: the link of `weft:fixtures/greeter@0.1.0` is pinned to `fused`, but it cannot be \
             fused: component `greeter` sets its own cpuTime, which only a dynamic link enforces"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_to_dynamic_and_says_why() {
    let t = host().await;
    let w = t.start_ok(&workload("auto", ", limits: { memory: 32MiB }")).await;
    let link = &w.plan().imports_of("client")[0];
    assert_eq!(
        link.provider.to_string(),
        "component `greeter` (weft:fixtures/greeter@0.1.0, dynamic: component `greeter` sets its own memory, which \
         only a dynamic link enforces)"
    );
    w.run("client").await.unwrap();
    assert_eq!(t.stdout("client"), ["Hi, fused!"]);
    // One workload of a name at a time.
    t.host.workload_stop(w.id()).await.unwrap();

    let fused = t.start_ok(&workload("auto", "")).await;
    assert!(fused.plan().imports_of("client")[0].provider.to_string().ends_with(", fused)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_composite_is_compiled_once_across_starts_and_host_restarts() {
    let cache = tempfile::tempdir().unwrap();
    let manifest = workload("fused", "");

    let first = host_with(Some(cache.path().to_path_buf())).await;
    let w = first.start_ok(&manifest).await;
    w.run("client").await.unwrap();
    // The client, the greeter, and their composite.
    assert_eq!(first.host.cache_stats().compiled, 3);
    first.host.workload_stop(w.id()).await.unwrap();
    first.start_ok(&manifest).await.run("client").await.unwrap();
    assert_eq!(first.host.cache_stats().compiled, 3);
    drop(first);

    let second = host_with(Some(cache.path().to_path_buf())).await;
    second.start_ok(&manifest).await.run("client").await.unwrap();
    let stats = second.host.cache_stats();
    assert_eq!((stats.compiled, stats.disk_hits), (0, 3));
    assert_eq!(second.stdout("client"), ["Hi, fused!"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_inside_a_composite_starts_fresh_in_every_invocation() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            "name: fresh\ncomponents:\n  - {{ name: caller, source: {TYPES_CALLER} }}\n  - {{ name: provider, source: {TYPES_PROVIDER} }}\n"
        ))
        .await;
    assert!(w.plan().imports_of("caller").iter().any(|l| l.provider.to_string().ends_with(", fused)")));
    for _ in 0..2 {
        // The provider counts the counters it destroyed: 10 each time, never 20.
        let out = w.invoke("caller", "weft:types/scenarios@0.1.0#counters", &[Val::U32(10)]).await.unwrap();
        assert_eq!(out, [Val::Tuple(vec![Val::S64(55), Val::U32(10)])]);
    }
    let status = t.host.workload_status(w.id()).await.unwrap();
    let caller = status.components.iter().find(|c| c.name == "caller").unwrap();
    // A composite's memory limit is its members' limits together.
    assert_eq!(caller.limits.memory.0, 2 * weft_runtime::limits::Limits::DEFAULT.memory.0);
}
