//! The host agent: serves a host's [`HostApi`] on NATS in wasmCloud v2's wire
//! format, and publishes its heartbeat.
//!
//! Subjects (in the default lattice, wasmCloud's as they are; a named one
//! prefixes them, see [`Lattice`]): requests on
//! `runtime.host.<host id>.{heartbeat, workload.start, workload.status,
//! workload.stop}`, heartbeats published on `runtime.operator.heartbeat.<host id>`
//! (the first at once, then every `heartbeat_interval`). Every request gets a reply:
//! a malformed, oversized or wrong-typed one gets an `ERROR` status naming what is
//! wrong and changes nothing (wasmCloud's own host stays silent instead, which
//! leaves the caller waiting for its timeout).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use weft_runtime::telemetry::model::SpanKind;
use weft_runtime::telemetry::{ActiveSpan, SpanContext};
use weft_runtime::{Host, HostApi, HostError, WorkloadId};

use crate::lattice::Lattice;
use crate::registry::{self, HostRecord, Registry};
use crate::wire::{self, WorkloadResponse, WorkloadState, WorkloadStatus};
use crate::{mapping, time};

/// The largest request the agent reads (a manifest's components travel by
/// reference, so a start request is small; NATS's own default cap is 1 MiB).
pub const MAX_REQUEST: usize = 1 << 20;

/// How often the heartbeat task looks whether the client has (re)connected.
const RECONNECT_POLL: Duration = Duration::from_millis(250);

/// How many requests the agent handles at once (a start validates and compiles).
const CONCURRENT_REQUESTS: usize = 16;

pub struct AgentConfig {
    pub heartbeat_interval: Duration,
    pub lattice: Lattice,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig { heartbeat_interval: Duration::from_secs(15), lattice: Lattice::default() }
    }
}

/// Serves a host on NATS until [`shutdown`](HostAgent::shutdown) (or drop).
pub struct HostAgent {
    host: Host,
    client: async_nats::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started_at: Arc<str>,
    registry: Arc<std::sync::Mutex<Option<Registry>>>,
    lattice: Lattice,
}

pub fn request_subject(lattice: &Lattice, host_id: &str, command: &str) -> String {
    lattice.subject(&format!("runtime.host.{host_id}.{command}"))
}

/// Where weft hosts answer "who is there?" with their heartbeat (a weft
/// extension: wasmCloud's operator learns of hosts from published heartbeats).
pub const DISCOVERY_SUBJECT: &str = "weft.hosts.ping";

pub fn heartbeat_subject(lattice: &Lattice, host_id: &str) -> String {
    lattice.subject(&format!("runtime.operator.heartbeat.{host_id}"))
}

impl HostAgent {
    /// Subscribes (and confirms the subscription with the server) before it returns.
    pub async fn start(host: Host, client: async_nats::Client, config: AgentConfig) -> anyhow::Result<HostAgent> {
        let started_at: Arc<str> = Arc::from(time::now_rfc3339());
        let lattice = config.lattice;
        let requests = client.subscribe(request_subject(&lattice, host.id(), ">")).await?;
        let pings = client.subscribe(lattice.subject(DISCOVERY_SUBJECT)).await?;
        // Confirmed by the server when it is there; when it is not, the client
        // subscribes once it connects, and the host serves its workloads meanwhile.
        if tokio::time::timeout(Duration::from_secs(2), client.flush()).await.is_err() {
            tracing::warn!("NATS is not reachable: serving the host API once it is (retrying meanwhile)");
        }
        let prefix = request_subject(&lattice, host.id(), "");
        let serve = tokio::spawn(serve(host.clone(), client.clone(), requests, prefix, started_at.clone()));
        let discovery = tokio::spawn(answer_pings(host.clone(), client.clone(), pings, started_at.clone()));
        // Opened by the heartbeat task once JetStream answers (the server may be away).
        let registry: Arc<std::sync::Mutex<Option<Registry>>> = Arc::default();
        let beat = tokio::spawn(heartbeats(
            host.clone(),
            client.clone(),
            config.heartbeat_interval,
            started_at.clone(),
            registry.clone(),
            lattice.clone(),
        ));
        tracing::info!(host = %host.id(), %lattice, "serving the host API on NATS");
        Ok(HostAgent { host, client, tasks: vec![serve, beat, discovery], started_at, registry, lattice })
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Stops answering, shuts the host down (drains, stops every workload), and
    /// publishes a last heartbeat (with no workloads).
    pub async fn shutdown(mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.host.shutdown().await;
        if let Ok(beat) = self.host.heartbeat().await {
            let beat = mapping::wire_heartbeat(&beat, &self.started_at);
            let subject = heartbeat_subject(&self.lattice, self.host.id());
            let _ = self.client.publish(subject, json(&beat).into()).await;
            // Not waited for long: the server may be away.
            let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        }
        // Gone on purpose: not lost.
        let registry = self.registry.lock().unwrap().clone();
        if let Some(registry) = registry {
            let _ = registry.forget(self.host.id()).await;
        }
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// On the interval, and at once whenever the client (re)connects, so that a
/// restarted server learns of the host without waiting for the next tick.
async fn heartbeats(
    host: Host,
    client: async_nats::Client,
    interval: Duration,
    started_at: Arc<str>,
    registry: Arc<std::sync::Mutex<Option<Registry>>>,
    lattice: Lattice,
) {
    use std::sync::atomic::Ordering;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let statistics = client.statistics();
    let mut connects = statistics.connects.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::time::sleep(RECONNECT_POLL) => {
                let now = statistics.connects.load(Ordering::Relaxed);
                if now == connects {
                    continue;
                }
                connects = now;
            }
        }
        let Ok(beat) = host.heartbeat().await else { continue };
        let beat = mapping::wire_heartbeat(&beat, &started_at);
        if let Err(e) = client.publish(heartbeat_subject(&lattice, host.id()), json(&beat).into()).await {
            tracing::debug!("heartbeat not sent: {e}");
        }
        let opened = registry.lock().unwrap().clone();
        let opened = match opened {
            Some(opened) => Some(opened),
            None => match Registry::open(&client, &lattice).await {
                Ok(opened) => {
                    *registry.lock().unwrap() = Some(opened.clone());
                    Some(opened)
                }
                Err(e) => {
                    tracing::debug!("hosts are not recorded in `{}` (needs JetStream): {e}", registry::BUCKET);
                    None
                }
            },
        };
        if let Some(opened) = opened {
            let record = HostRecord { heartbeat: beat, interval_ms: interval.as_millis() as u64 };
            if let Err(e) = opened.record(&record).await {
                tracing::debug!("heartbeat not recorded: {e}");
            }
        }
    }
}

async fn answer_pings(host: Host, client: async_nats::Client, mut pings: async_nats::Subscriber, started_at: Arc<str>) {
    while let Some(ping) = pings.next().await {
        let (Some(reply), Ok(beat)) = (ping.reply, host.heartbeat().await) else { continue };
        let _ = client.publish(reply, json(&mapping::wire_heartbeat(&beat, &started_at)).into()).await;
    }
}

async fn serve(
    host: Host,
    client: async_nats::Client,
    requests: async_nats::Subscriber,
    prefix: String,
    started_at: Arc<str>,
) {
    requests
        .for_each_concurrent(CONCURRENT_REQUESTS, |message| {
            let (host, client, prefix, started_at) = (host.clone(), client.clone(), prefix.clone(), started_at.clone());
            async move {
                let Some(reply) = message.reply.clone() else { return };
                let command = message.subject.strip_prefix(prefix.as_str()).unwrap_or_default();
                let mut span = request_span(&host, &message, command);
                let answer = answer(&host, command, &message.payload, &started_at).await;
                if span.is_recording()
                    && let Ok(response) = serde_json::from_slice::<WorkloadResponse>(&answer)
                    && response.workload_status.workload_state == WorkloadState::Error
                {
                    span.fail(response.workload_status.message);
                }
                if let Err(e) = client.publish(reply, answer.into()).await {
                    tracing::debug!("reply not sent: {e}");
                }
            }
        })
        .await;
}

/// The server span of one control request, in the trace its `traceparent`
/// header names (the client's span), ended once the reply is sent.
fn request_span(host: &Host, message: &async_nats::Message, command: &str) -> ActiveSpan {
    let telemetry = host.telemetry();
    if !telemetry.traces() {
        return ActiveSpan::none();
    }
    let header = |name: &str| message.headers.as_ref()?.get(name).map(|v| v.as_str().to_string());
    let parent = header(TRACEPARENT).and_then(|tp| SpanContext::from_headers(&tp, header(TRACESTATE).as_deref()));
    let mut span = telemetry.span(command.to_string(), SpanKind::Server, parent.as_ref());
    span.set("messaging.system", "nats");
    span.set("messaging.destination.name", message.subject.as_str());
    span.set("weft.host.id", host.id());
    span
}

/// W3C trace context, as NATS message headers (the names HTTP uses).
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// weft's extension of the host API: `runtime.host.<id>.workload.list` answers
/// [`WorkloadList`], weft's own status JSON (a wasmCloud client never sends it).
pub const LIST_COMMAND: &str = "workload.list";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct WorkloadList {
    pub workloads: Vec<weft_runtime::WorkloadStatus>,
}

/// The reply to one request, as JSON.
async fn answer(host: &Host, command: &str, payload: &[u8], started_at: &str) -> Vec<u8> {
    if payload.len() > MAX_REQUEST {
        let message = format!("the request is {} bytes, more than the {MAX_REQUEST} this host reads", payload.len());
        return json(&error(String::new(), message));
    }
    match command {
        "heartbeat" => match host.heartbeat().await {
            Ok(beat) => json(&mapping::wire_heartbeat(&beat, started_at)),
            Err(e) => json(&error(String::new(), e.to_string())),
        },
        "workload.start" => json(&start(host, payload).await),
        "workload.status" | "workload.stop" => {
            let request: wire::WorkloadIdRequest = match decode(payload) {
                Ok(request) => request,
                Err(e) => return json(&error(String::new(), e)),
            };
            if request.workload_id.is_empty() {
                return json(&error(String::new(), "`workloadId` is required".into()));
            }
            let id = WorkloadId(request.workload_id.clone());
            let result = match command {
                "workload.status" => host.workload_status(&id).await,
                _ => host.workload_stop(&id).await,
            };
            json(&response(request.workload_id, result))
        }
        LIST_COMMAND => match host.workload_list().await {
            Ok(workloads) => json(&WorkloadList { workloads }),
            Err(e) => json(&error(String::new(), e.to_string())),
        },
        other => json(&error(String::new(), format!("unknown command `{other}`"))),
    }
}

async fn start(host: &Host, payload: &[u8]) -> WorkloadResponse {
    let request: wire::WorkloadStartRequest = match decode(payload) {
        Ok(request) => request,
        Err(e) => return error(String::new(), e),
    };
    let id = request.workload_id;
    if id.is_empty() {
        return error(id, "`workloadId` is required".into());
    }
    let Some(workload) = request.workload else { return error(id, "`workload` is required".into()) };
    let spec = match mapping::workload_spec(&workload) {
        Ok(spec) => spec,
        Err(e) => return error(id, e),
    };
    let result = host.workload_start_as(WorkloadId(id.clone()), spec).await;
    response(id, result)
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    // An empty body is the empty message.
    let payload = if payload.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { payload };
    serde_json::from_slice(payload).map_err(|e| format!("malformed request: {e}"))
}

fn response(id: String, result: Result<weft_runtime::WorkloadStatus, HostError>) -> WorkloadResponse {
    let status = match result {
        Ok(status) => {
            let message = match (status.state, status.message) {
                (weft_runtime::WorkloadState::Stopped, None) => mapping::STOPPED.to_string(),
                (weft_runtime::WorkloadState::Stopped, Some(m)) => format!("{}: {m}", mapping::STOPPED),
                (_, message) => message.unwrap_or_default(),
            };
            WorkloadStatus { workload_id: id, workload_state: mapping::wire_state(status.state), message }
        }
        Err(HostError::NotFound(_)) => WorkloadStatus {
            workload_id: id,
            workload_state: WorkloadState::NotFound,
            message: "Workload not found".into(),
        },
        Err(e) => WorkloadStatus { workload_id: id, workload_state: WorkloadState::Error, message: e.to_string() },
    };
    WorkloadResponse { workload_status: status }
}

fn error(id: String, message: String) -> WorkloadResponse {
    WorkloadResponse {
        workload_status: WorkloadStatus { workload_id: id, workload_state: WorkloadState::Error, message },
    }
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("wire messages serialise")
}
