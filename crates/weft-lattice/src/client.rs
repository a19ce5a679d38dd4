//! A remote host, behind the same [`HostApi`] as an in-process one: requests go to
//! its agent over NATS, each bounded by a timeout, and a host that does not answer
//! is an error naming it.

use std::time::Duration;

use weft_runtime::telemetry::model::SpanKind;
use weft_runtime::telemetry::{SpanContext, Telemetry};
use weft_runtime::{Heartbeat, HostApi, HostError, Rejection, WorkloadId, WorkloadSpec, WorkloadStatus};

use crate::agent::{DISCOVERY_SUBJECT, TRACEPARENT, TRACESTATE, request_subject};
use crate::lattice::Lattice;
use crate::mapping;
use crate::registry::{KnownHost, Registry};
use crate::wire::{self, WorkloadResponse, WorkloadState};

pub struct RemoteHost {
    client: async_nats::Client,
    host_id: String,
    timeout: Duration,
    lattice: Lattice,
    /// Records a client span per request, when on.
    telemetry: Telemetry,
    /// The span requests belong to (the caller's), if any.
    trace_parent: Option<SpanContext>,
}

impl RemoteHost {
    /// Requests wait at most `timeout` for the answer (a start validates and
    /// compiles before it answers: give it time).
    pub fn new(client: async_nats::Client, host_id: impl Into<String>, timeout: Duration) -> RemoteHost {
        RemoteHost {
            client,
            host_id: host_id.into(),
            timeout,
            lattice: Lattice::default(),
            telemetry: Telemetry::disabled(),
            trace_parent: None,
        }
    }

    /// Records a client span for each request and sends its context along (the
    /// agent's server span is its child).
    pub fn with_telemetry(self, telemetry: Telemetry) -> RemoteHost {
        RemoteHost { telemetry, ..self }
    }

    /// Puts every request in `parent`'s trace: its context travels as the
    /// request's `traceparent` header (through the client span, if recorded).
    pub fn with_trace_parent(self, parent: Option<SpanContext>) -> RemoteHost {
        RemoteHost { trace_parent: parent, ..self }
    }

    /// The same host in a named lattice.
    pub fn in_lattice(self, lattice: Lattice) -> RemoteHost {
        RemoteHost { lattice, ..self }
    }

    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    async fn request(&self, command: &str, body: Vec<u8>) -> Result<Vec<u8>, HostError> {
        let subject = request_subject(&self.lattice, &self.host_id, command);
        let unreachable = |why: String| HostError::Unreachable(format!("host `{}`: {why}", self.host_id));
        let mut span = self.telemetry.span(command.to_string(), SpanKind::Client, self.trace_parent.as_ref());
        if span.is_recording() {
            span.set("messaging.system", "nats");
            span.set("messaging.destination.name", subject.as_str());
            span.set("weft.host.id", self.host_id.as_str());
        }
        let mut headers = async_nats::HeaderMap::new();
        if let Some(context) = span.context().or(self.trace_parent.as_ref()) {
            headers.insert(TRACEPARENT, context.traceparent().as_str());
            if !context.trace_state.is_empty() {
                headers.insert(TRACESTATE, context.trace_state.as_str());
            }
        }
        let asked = self.client.request_with_headers(subject, headers, body.into());
        let outcome = match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok(reply)) => Ok(reply.payload.to_vec()),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                Err(unreachable("no such host on the lattice (nothing answers its subjects)".into()))
            }
            Ok(Err(e)) => Err(unreachable(e.to_string())),
            Err(_) => Err(unreachable(format!("no answer within {:?}", self.timeout))),
        };
        if let Err(e) = &outcome {
            span.fail(e.to_string());
        }
        outcome
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
            concurrency: None,
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

    /// A weft extension (`workload.list`): wasmCloud's host API has no listing.
    async fn workload_list(&self) -> Result<Vec<WorkloadStatus>, HostError> {
        let reply = self.request(crate::agent::LIST_COMMAND, b"{}".to_vec()).await?;
        let list: crate::agent::WorkloadList = serde_json::from_slice(&reply)
            .map_err(|e| HostError::Unreachable(format!("host `{}`: unreadable workload list: {e}", self.host_id)))?;
        Ok(list.workloads)
    }

    async fn workload_stop(&self, id: &WorkloadId) -> Result<WorkloadStatus, HostError> {
        let body = serde_json::to_vec(&wire::WorkloadIdRequest { workload_id: id.0.clone() }).expect("serialises");
        status(self.workload_request("workload.stop", body).await?, "", "")
    }
}

/// The hosts of the lattice that answer within `wait`, by heartbeat, in the order
/// they answered.
pub async fn discover(
    client: &async_nats::Client,
    lattice: &Lattice,
    wait: Duration,
) -> anyhow::Result<Vec<wire::HostHeartbeat>> {
    use futures_util::StreamExt;
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await?;
    client.publish_with_reply(lattice.subject(DISCOVERY_SUBJECT), inbox, "{}".into()).await?;
    client.flush().await?;
    let mut hosts: Vec<wire::HostHeartbeat> = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
        match serde_json::from_slice::<wire::HostHeartbeat>(&answer.payload) {
            Ok(beat) if !hosts.iter().any(|h| h.id == beat.id) => hosts.push(beat),
            Ok(_) => {}
            Err(e) => tracing::debug!("an unreadable heartbeat: {e}"),
        }
    }
    Ok(hosts)
}

/// Every host the lattice knows: those recorded in the registry (live, or lost
/// after missing heartbeats) and those that answer within `wait`; a host that
/// answers is live.
pub async fn known_hosts(
    client: &async_nats::Client,
    lattice: &Lattice,
    wait: Duration,
) -> anyhow::Result<Vec<KnownHost>> {
    let answering = discover(client, lattice, wait).await?;
    let mut hosts = match Registry::open(client, lattice).await {
        Ok(registry) => registry.hosts().await.unwrap_or_else(|e| {
            tracing::warn!("the host registry cannot be read: {e}");
            Vec::new()
        }),
        Err(e) => {
            tracing::debug!("no host registry (needs JetStream): {e}");
            Vec::new()
        }
    };
    for beat in answering {
        match hosts.iter_mut().find(|h| h.heartbeat.id == beat.id) {
            Some(known) => *known = KnownHost { state: "live".into(), last_seen_secs: 0, heartbeat: beat },
            None => hosts.push(KnownHost { state: "live".into(), last_seen_secs: 0, heartbeat: beat }),
        }
    }
    Ok(hosts)
}

/// Where a workload goes: among `hosts` whose labels include every one of
/// `labels`, the one running the fewest workloads (the first of those).
pub fn place<'h>(hosts: &'h [wire::HostHeartbeat], labels: &[(String, String)]) -> Option<&'h wire::HostHeartbeat> {
    hosts.iter().filter(|h| labels.iter().all(|(k, v)| h.labels.get(k) == Some(v))).min_by_key(|h| h.workload_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_takes_the_matching_host_with_the_fewest_workloads() {
        let host = |id: &str, zone: &str, workloads: u64| wire::HostHeartbeat {
            id: id.into(),
            labels: [("zone".to_string(), zone.to_string())].into_iter().collect(),
            workload_count: workloads,
            ..wire::HostHeartbeat::default()
        };
        let hosts = [host("a", "x", 3), host("b", "y", 5), host("c", "y", 1), host("d", "y", 1)];
        let zone = |z: &str| vec![("zone".to_string(), z.to_string())];
        assert_eq!(place(&hosts, &zone("y")).unwrap().id, "c");
        assert_eq!(place(&hosts, &zone("x")).unwrap().id, "a");
        assert_eq!(place(&hosts, &[]).unwrap().id, "c");
        assert!(place(&hosts, &zone("z")).is_none());
    }
}
