//! Limits per component: a guest that loops, hogs memory, traps or floods the host
//! gets an error; the host and the next invocation are fine.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use weft_runtime::InvokeError;

#[tokio::test(flavor = "multi_thread")]
async fn misbehaving_guests_get_errors_and_the_host_carries_on() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            r#"
name: unruly
components:
  - {{ name: spin, source: {BUSY_LOOP}, limits: {{ cpuTime: 300ms }} }}
  - {{ name: hog, source: {MEMORY_HOG}, limits: {{ memory: 48MiB }} }}
  - {{ name: trap, source: {TRAP} }}
  - {{ name: hello, source: {HELLO}, args: [still, alive] }}
"#
        ))
        .await;

    let started = Instant::now();
    let err = w.run("spin").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&err, InvokeError::Timeout { component, limit } if &**component == "spin" && *limit == Duration::from_millis(300)),
        "{err}"
    );
    assert!(err.to_string().contains("CPU time limit of 300ms"), "{err}");
    assert!(elapsed < Duration::from_millis(600), "interrupted after {elapsed:?}, limit 300ms");
    w.run("hello").await.unwrap();

    let err = w.run("hog").await.unwrap_err();
    assert!(matches!(&err, InvokeError::OutOfMemory { component, .. } if &**component == "hog"), "{err}");
    assert!(err.to_string().contains("limit of 48MiB"), "{err}");
    w.run("hello").await.unwrap();

    let err = w.run("trap").await.unwrap_err();
    assert!(
        matches!(&err, InvokeError::Trap { component, message } if component == "trap" && message.contains("unreachable")),
        "{err}"
    );
    w.run("hello").await.unwrap();
    assert_eq!(t.stdout("hello"), ["still alive"; 3]);

    // Each of them again, to be sure the first failure poisoned nothing.
    assert!(matches!(w.run("spin").await, Err(InvokeError::Timeout { .. })));
    assert!(matches!(w.run("hog").await, Err(InvokeError::OutOfMemory { .. })));
    assert!(matches!(w.run("trap").await, Err(InvokeError::Trap { .. })));

    // And another workload runs fine on the same host.
    let other =
        t.start_ok(&format!("name: next\ncomponents: [{{ name: hello, source: {HELLO}, args: [next] }}]\n")).await;
    other.run("hello").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_waits_forever_is_abandoned_at_its_timeout() {
    let t = host().await;
    // The ticker sleeps between ticks forever: it uses almost no CPU, so only the
    // wall-clock timeout ends it. One slot, no queue: a slot kept by an abandoned
    // invocation would make the next one fail "busy".
    let w = t
        .start_ok(&format!(
            "name: sleepy\ncomponents:\n  - {{ name: ticker, source: {TICKER}, limits: {{ timeout: 300ms, maxConcurrent: 1, maxQueued: 0 }} }}\n"
        ))
        .await;
    for _ in 0..2 {
        let err = w.run("ticker").await.unwrap_err();
        assert!(
            matches!(&err, InvokeError::DeadlineExceeded { component, limit } if &**component == "ticker" && *limit == Duration::from_millis(300)),
            "{err}"
        );
        assert!(err.to_string().contains("did not finish within its timeout of 300ms"), "{err}");
        assert_eq!(err.exit_code(), 134);
    }
    assert!(t.stdout("ticker").contains(&"tick 2".to_string()), "it ran until abandoned: {:?}", t.stdout("ticker"));
}

#[tokio::test(flavor = "multi_thread")]
async fn excess_invocations_wait_then_fail_busy() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            r#"
name: narrow
components:
  - name: spin
    source: {BUSY_LOOP}
    limits: {{ maxConcurrent: 1, maxQueued: 1, queueTimeout: 100ms, cpuTime: 1s }}
"#
        ))
        .await;
    let first = tokio::spawn({
        let w = w.clone();
        async move { w.run("spin").await }
    });
    // Wait until the first invocation holds the only slot.
    while w.status().components[0].in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (second, third) = tokio::join!(w.run("spin"), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.run("spin").await
    });
    // The second waited its queueTimeout, the third found the queue full.
    match (&second, &third) {
        (Err(InvokeError::Busy { busy: a, .. }), Err(InvokeError::Busy { busy: b, .. })) => {
            assert!(!a.queue_full && b.queue_full, "{a} / {b}");
            assert!(third.as_ref().unwrap_err().to_string().contains("component `spin` is busy"));
        }
        other => panic!("expected two busy errors, got {other:?}"),
    }
    assert!(matches!(first.await.unwrap(), Err(InvokeError::Timeout { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_volumes_refuse_writes() {
    let t = host().await;
    let file = t.file("ro/file.txt", b"original");
    let w: Arc<_> = t
        .start_ok(&format!(
            r#"
name: ro
components:
  - name: by-volume
    source: {HELLO}
    env: {{ HELLO_WRITE: /data/file.txt }}
    volumeMounts: [{{ name: ro, mountPath: /data }}]
  - name: by-mount
    source: {HELLO}
    env: {{ HELLO_WRITE: /data/file.txt }}
    volumeMounts: [{{ name: rw, mountPath: /data, readOnly: true }}]
  - name: writer
    source: {HELLO}
    env: {{ HELLO_WRITE: /data/file.txt }}
    volumeMounts: [{{ name: rw, mountPath: /data }}]
volumes:
  - {{ name: ro, hostPath: {{ path: ro, readOnly: true }} }}
  - {{ name: rw, hostPath: {{ path: ro }} }}
"#
        ))
        .await;
    for component in ["by-volume", "by-mount"] {
        let err = w.run(component).await.unwrap_err();
        assert!(matches!(err, InvokeError::Exit { code: 1, .. }), "{component}: {err}");
        let out = t.stdout(component);
        assert!(out.iter().any(|l| l.starts_with("write /data/file.txt failed")), "{component}: {out:?}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "original");
    }
    // The same directory mounted writable is writable: the refusals above were the
    // read-only settings, not a broken mount.
    w.run("writer").await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "written by hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_whose_call_was_abandoned_half_way_is_not_reused() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            "name: abandoned\ncomponents:\n  - {{ name: spin, source: {BUSY_LOOP}, reuseInstances: true }}\n"
        ))
        .await;
    let mut invocation = w.instantiate("spin").await.unwrap();
    // The caller stops waiting (a client that went away): the call's future is
    // dropped at one of its epoch yields, mid-loop.
    let call = invocation.call("wasi:cli/run@0.2.0#run", &[]);
    assert!(tokio::time::timeout(Duration::from_millis(300), call).await.is_err(), "the loop never ends");
    drop(invocation);
    assert_eq!(w.idle_instances("spin").unwrap(), 0, "an instance stopped mid-call went back to the idle pool");
}
