//! The service: runs for the life of the workload, completes, or fails and is
//! restarted per its policy; stopping the workload stops it promptly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use weft_runtime::{HostApi, WorkloadState};

#[tokio::test(flavor = "multi_thread")]
async fn a_service_that_returns_completes_the_workload() {
    let t = host().await;
    let w =
        t.start_ok(&format!("name: job\nservice: {{ name: job, source: {TICKER}, env: {{ TICKS: \"3\" }} }}\n")).await;
    assert_eq!(w.wait_for(|s| s != WorkloadState::Running).await, WorkloadState::Completed);
    assert_eq!(t.stdout("job"), ["tick 1", "tick 2", "tick 3"]);
    let status = t.host.workload_status(w.id()).await.unwrap();
    assert_eq!(status.message.as_deref(), Some("service `job` ran to completion"));
    assert_eq!(status.service.unwrap().restarts, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_service_is_restarted_with_backoff_then_fails() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            r#"
name: flaky
service:
  name: svc
  source: {TRAP}
  restart: {{ maxRestarts: 3, backoff: {{ initial: 40ms, multiplier: 2, max: 100ms }} }}
"#
        ))
        .await;
    assert_eq!(w.wait_for(|s| s != WorkloadState::Running).await, WorkloadState::Failed);
    let status = t.host.workload_status(w.id()).await.unwrap();
    let message = status.message.unwrap();
    assert!(message.contains("service `svc` failed") && message.contains("3 of 3"), "{message}");
    assert!(message.contains("trapped"), "{message}");
    let service = status.service.unwrap();
    assert_eq!(service.restarts, 3);
    assert_eq!(service.runs.len(), 4);
    let delays: Vec<Option<u64>> = service.runs.iter().map(|r| r.restart_delay_ms).collect();
    assert_eq!(delays, [Some(40), Some(80), Some(100), None]);
    for pair in service.runs.windows(2) {
        let gap = pair[1].started_ms - pair[0].ended_ms.unwrap();
        assert!(gap >= pair[0].restart_delay_ms.unwrap(), "restarted after {gap} ms: {pair:?}");
        assert!(pair[0].error.as_deref().unwrap().contains("unreachable"));
    }
}

/// A multiplier whose powers overflow a `Duration` after a few restarts (it
/// panicked the supervisor, leaving `running` forever): the delay stays at `max`
/// and the workload reaches `failed` with the cause.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_backoff_multiplier_saturates_and_the_service_still_fails() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            "name: huge\nservice: {{ name: svc, source: {TRAP}, restart: {{ maxRestarts: 6, backoff: {{ initial: 1ms, multiplier: 1e10, max: 20ms }} }} }}\n"
        ))
        .await;
    assert_eq!(w.wait_for(|s| s != WorkloadState::Running).await, WorkloadState::Failed);
    let status = t.host.workload_status(w.id()).await.unwrap();
    let message = status.message.unwrap();
    assert!(message.contains("6 of 6") && message.contains("trapped"), "{message}");
    let delays: Vec<Option<u64>> = status.service.unwrap().runs.iter().map(|r| r.restart_delay_ms).collect();
    assert_eq!(delays, [Some(1), Some(20), Some(20), Some(20), Some(20), Some(20), None]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_exiting_with_an_error_is_restarted() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            "name: exits\nservice: {{ name: svc, source: {TICKER}, env: {{ FAIL_AFTER: \"2\" }}, restart: {{ maxRestarts: 1, backoff: {{ initial: 10ms }} }} }}\n"
        ))
        .await;
    assert_eq!(w.wait_for(|s| s != WorkloadState::Running).await, WorkloadState::Failed);
    let service = w.status().service.unwrap();
    assert_eq!(service.runs.len(), 2);
    assert!(service.runs[0].error.as_deref().unwrap().contains("exited with status 1"), "{:?}", service.runs[0]);
    assert_eq!(t.stdout("svc"), ["tick 1", "tick 2", "tick 1", "tick 2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_cancels_a_busy_service_promptly() {
    let t = host().await;
    for source in [BUSY_LOOP, TICKER] {
        let w = t.start_ok(&format!("name: forever\nservice: {{ name: svc, source: {source} }}\n")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(w.state(), WorkloadState::Running);
        let started = Instant::now();
        let status = t.host.workload_stop(w.id()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "stop took {:?}", started.elapsed());
        assert_eq!(status.state, WorkloadState::Stopped);
    }
}
