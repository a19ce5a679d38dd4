//! The service: the workload's long-running `wasi:cli/run` component, restarted on
//! failure with exponential backoff until its policy gives up.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{RunningWorkload, WorkloadState};
use crate::manifest::RestartPolicy;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub component: String,
    pub restarts: u32,
    /// The most recent runs, oldest first (at most [`ServiceStatus::HISTORY`]).
    pub runs: Vec<ServiceRun>,
}

/// One run of the service; times are milliseconds since the workload started.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRun {
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// How the run ended: `None` while running or after success, else the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pause before the next run, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay_ms: Option<u64>,
}

impl ServiceStatus {
    pub const HISTORY: usize = 32;
}

/// Runs the service until it completes, fails for good, or the workload stops
/// (which aborts this task).
pub(crate) async fn supervise(workload: Arc<RunningWorkload>, index: usize, policy: RestartPolicy) {
    let component = workload.components[index].clone();
    let since = |t: Instant| t.duration_since(workload.started).as_millis() as u64;
    let mut restarts = 0;
    loop {
        let started = since(Instant::now());
        workload.update(|l| {
            let runs = &mut l.service.as_mut().expect("service status exists").runs;
            if runs.len() == ServiceStatus::HISTORY {
                runs.remove(0);
            }
            runs.push(ServiceRun { started_ms: started, ended_ms: None, error: None, restart_delay_ms: None });
        });
        let outcome = workload.run_component(&component).await;
        if workload.is_stopping() {
            return;
        }
        let ended = since(Instant::now());
        let give_up = restarts >= policy.max_restarts;
        let delay = (!give_up).then(|| policy.backoff.delay(restarts + 1));
        workload.update(|l| {
            let service = l.service.as_mut().expect("service status exists");
            let run = service.runs.last_mut().expect("this run is recorded");
            run.ended_ms = Some(ended);
            match &outcome {
                Ok(()) => {
                    l.state = WorkloadState::Completed;
                    l.message = Some(format!("service `{}` ran to completion", component.name));
                }
                Err(e) => {
                    run.error = Some(e.to_string());
                    run.restart_delay_ms = delay.map(|d| d.as_millis() as u64);
                    if give_up {
                        l.state = WorkloadState::Failed;
                        l.message = Some(format!(
                            "service `{}` failed and its restart policy allows no more restarts ({} of {}): {e}",
                            component.name, restarts, policy.max_restarts
                        ));
                    } else {
                        service.restarts = restarts + 1;
                    }
                }
            }
        });
        match (&outcome, delay) {
            (Err(e), Some(delay)) => {
                tracing::warn!(workload = %workload.name, service = %component.name, "service failed, restarting in {delay:?}: {e}");
                restarts += 1;
                tokio::time::sleep(delay).await;
            }
            (Err(e), None) => {
                tracing::error!(workload = %workload.name, service = %component.name, "service failed for good: {e}");
                return;
            }
            (Ok(()), _) => return,
        }
    }
}
