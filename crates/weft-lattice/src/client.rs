//! A remote host, behind the same [`HostApi`] as an in-process one: requests go to
//! its agent over NATS, each bounded by a timeout, and a host that does not answer
//! is an error naming it.

use std::time::Duration;

use weft_runtime::{Heartbeat, HostApi, HostError, Rejection, WorkloadId, WorkloadSpec, WorkloadStatus};

use crate::agent::request_subject;
use crate::mapping;
use crate::wire::{self, WorkloadResponse, WorkloadState};

pub struct RemoteHost {
    client: async_nats::Client,
    host_id: String,
    timeout: Duration,
}

impl RemoteHost {
    /// Requests wait at most `timeout` for the answer (a start validates and
    /// compiles before it answers: give it time).
    pub fn new(client: async_nats::Client, host_id: impl Into<String>, timeout: Duration) -> RemoteHost {
        RemoteHost { client, host_id: host_id.into(), timeout }
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    async fn request(&self, command: &str, body: Vec<u8>) -> Result<Vec<u8>, HostError> {
        let subject = request_subject(&self.host_id, command);
        let unreachable = |why: String| HostError::Unreachable(format!("host `{}`: {why}", self.host_id));
        let asked = self.client.request(subject, body.into());
        match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok(reply)) => Ok(reply.payload.to_vec()),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                Err(unreachable("no such host on the lattice (nothing answers its subjects)".into()))
            }
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn workload_request(&self, command: &str, body: Vec<u8>) -> Result<wire::WorkloadStatus, HostError> {
        let reply = self.request(command, body).await?;
        let response: WorkloadResponse = serde_json::from_slice(&reply)
            .map_err(|e| HostError::Unreachable(format!("host `{}`: unreadable answer: {e}", self.host_id)))?;
        Ok(response.workload_status)
    }
}

/// What the client knows of a workload from a wire status: its id, state and
/// message (the wire carries no more; name and namespace are the caller's).
fn status(wire: wire::WorkloadStatus, name: &str, namespace: &str) -> Result<WorkloadStatus, HostError> {
    let id = WorkloadId(wire.workload_id.clone());
    match wire.workload_state {
        WorkloadState::NotFound => Err(HostError::NotFound(id)),
        state => Ok(WorkloadStatus {
            id,
            name: name.to_string(),
            namespace: namespace.to_string(),
            state: mapping::weft_state(state, &wire.message),
            message: (!wire.message.is_empty()).then_some(wire.message),
            components: Vec::new(),
            service: None,
            uptime_ms: 0,
        }),
    }
}

impl HostApi for RemoteHost {
    async fn heartbeat(&self) -> Result<Heartbeat, HostError> {
        let reply = self.request("heartbeat", b"{}".to_vec()).await?;
        let beat: wire::HostHeartbeat = serde_json::from_slice(&reply)
            .map_err(|e| HostError::Unreachable(format!("host `{}`: unreadable heartbeat: {e}", self.host_id)))?;
        Ok(mapping::weft_heartbeat(&beat, 0))
    }

    async fn workload_start_as(&self, id: WorkloadId, spec: WorkloadSpec) -> Result<WorkloadStatus, HostError> {
        let request = wire::WorkloadStartRequest { workload: Some(mapping::wire_workload(&spec)), workload_id: id.0 };
        let body = serde_json::to_vec(&request).expect("wire messages serialise");
        let answer = self.workload_request("workload.start", body).await?;
        if answer.workload_state == WorkloadState::Error && answer.message.starts_with("a workload with id") {
            return Err(HostError::DuplicateId(WorkloadId(answer.workload_id)));
        }
        if answer.workload_state == WorkloadState::Error {
            // The host's rejection, whole, as one problem (the wire has one message).
            let problem = weft_runtime::Problem::new("remote host", answer.message);
            return Err(HostError::Rejected(Rejection { workload: spec.name.clone(), problems: vec![problem] }));
        }
        status(answer, &spec.name, &spec.namespace)
    }

    async fn workload_status(&self, id: &WorkloadId) -> Result<WorkloadStatus, HostError> {
        let body = serde_json::to_vec(&wire::WorkloadIdRequest { workload_id: id.0.clone() }).expect("serialises");
        status(self.workload_request("workload.status", body).await?, "", "")
    }

    async fn workload_stop(&self, id: &WorkloadId) -> Result<WorkloadStatus, HostError> {
        let body = serde_json::to_vec(&wire::WorkloadIdRequest { workload_id: id.0.clone() }).expect("serialises");
        status(self.workload_request("workload.stop", body).await?, "", "")
    }
}
