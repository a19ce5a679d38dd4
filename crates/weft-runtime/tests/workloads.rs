//! A workload's life: start, run, invoke, stop, seen through the host API.

mod common;

use std::time::Duration;

use common::*;
use weft_runtime::{HostApi, WorkloadState};

#[tokio::test(flavor = "multi_thread")]
async fn two_components_and_a_service_start_run_and_stop() {
    let t = host().await;
    let before = t.host.heartbeat().await.unwrap();
    assert_eq!((before.workloads, before.components), (0, 0));

    let w = t
        .start_ok(&format!(
            r#"
name: shop
components:
  - {{ name: greeter, source: {GREETER}, env: {{ GREETING: Bonjour }} }}
  - {{ name: client, source: {GREETER_CLIENT}, args: [ada] }}
service:
  name: ticker
  source: {TICKER}
"#
        ))
        .await;
    assert_eq!(w.state(), WorkloadState::Running);
    let status = t.host.workload_status(w.id()).await.unwrap();
    assert_eq!(status.state, WorkloadState::Running);
    assert_eq!(status.components.len(), 3);
    assert!(status.components.iter().all(|c| c.digest.starts_with("sha256:")));
    let beat = t.host.heartbeat().await.unwrap();
    assert_eq!((beat.workloads, beat.components), (1, 3));
    assert!(beat.interfaces.iter().any(|i| i == "wasi:io/streams@0.2.12"), "{:?}", beat.interfaces);

    // The service runs for the life of the workload…
    t.wait_for_line("ticker", |l| l == "tick 3").await;
    // …and the components can be invoked meanwhile; the client's import is served
    // by the greeter, in-process, with the greeter's own environment.
    w.run("client").await.unwrap();
    assert_eq!(t.stdout("client"), ["Bonjour, ada!"]);

    let stopped = t.host.workload_stop(w.id()).await.unwrap();
    assert_eq!(stopped.state, WorkloadState::Stopped);
    assert_eq!(t.host.workload_status(w.id()).await.unwrap().state, WorkloadState::Stopped);
    let after = t.host.heartbeat().await.unwrap();
    assert_eq!((after.workloads, after.components), (0, 0));
    // Nothing runs any more.
    let ticks = t.stdout("ticker").len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.stdout("ticker").len(), ticks);
    assert!(matches!(w.run("client").await, Err(weft_runtime::InvokeError::Stopped)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_sees_its_args_env_and_volumes() {
    let t = host().await;
    t.file("data/greeting.txt", b"hi from the host");
    let w = t
        .start_ok(&format!(
            r#"
name: files
components:
  - name: hello
    source: {HELLO}
    args: [one, two]
    env: {{ HELLO_PRINT_ENV: "1", HELLO_READ: /data/greeting.txt, COLOUR: blue }}
    volumeMounts: [{{ name: data, mountPath: /data }}]
volumes:
  - {{ name: data, hostPath: {{ path: data }} }}
"#
        ))
        .await;
    w.run("hello").await.unwrap();
    let out = t.stdout("hello");
    assert_eq!(out[0], "one two");
    assert!(out.contains(&"COLOUR=blue".to_string()), "{out:?}");
    assert!(out.contains(&"read /data/greeting.txt: hi from the host".to_string()), "{out:?}");
}
