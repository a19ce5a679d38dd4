//! OpenTelemetry for operators: weft's own traces, metrics and logs, and what
//! guests hand over through `wasi:otel`, exported over OTLP (HTTP with protobuf
//! or JSON, or gRPC) to the receiver the host configuration names. Off unless
//! configured; off, every hook is a branch on `None`.
//!
//! Spans and log records wait in bounded queues and leave in batches every
//! `exportInterval` (sooner when a batch fills); metrics are read every
//! `metricsInterval`. A full queue drops what arrives and counts it
//! (`weft.telemetry.dropped`); a receiver that is down costs batches, never a
//! request: nothing on a guest's path waits for the network.

pub mod context;
mod export;
pub mod json;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod proto;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

pub use self::context::{SpanContext, SpanId, TraceId};
use self::export::Exporter;
pub use self::metrics::{ComponentMetrics, Instruments, Outcome};
use self::model::*;

/// The `telemetry` section of a host configuration.
///
/// ```yaml
/// telemetry:
///   endpoint: http://127.0.0.1:4318
///   protocol: http/protobuf    # or http/json, grpc (endpoint :4317)
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The receiver's base URL: OTLP/HTTP posts to `<endpoint>/v1/traces` (and
    /// `metrics`, `logs`); gRPC calls the collector services at it.
    pub endpoint: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// Sent with every export (an API key, say).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Which signals weft exports.
    #[serde(default = "all_signals")]
    pub signals: Vec<Signal>,
    /// `service.name` of the host's resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// More attributes of the host's resource (`deployment.environment`, ...).
    #[serde(default)]
    pub resource: IndexMap<String, String>,
    /// How often queued spans and log records are sent.
    #[serde(default = "default_export_interval", with = "crate::limits::duration")]
    pub export_interval: Duration,
    /// How often metrics are read and sent.
    #[serde(default = "default_metrics_interval", with = "crate::limits::duration")]
    pub metrics_interval: Duration,
    /// Spans (and, apart, log records) waiting to be sent; past it, new ones are
    /// dropped and counted. Guests' metric exports have a queue of 256 of their own.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// The least severe of weft's own log records that are exported.
    #[serde(default = "default_log_level")]
    pub log_level: LogLevel,
    /// How long one export may take.
    #[serde(default = "default_timeout", with = "crate::limits::duration")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
    #[serde(rename = "grpc")]
    Grpc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

fn all_signals() -> Vec<Signal> {
    vec![Signal::Traces, Signal::Metrics, Signal::Logs]
}
fn default_service_name() -> String {
    "weft".into()
}
fn default_export_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_metrics_interval() -> Duration {
    Duration::from_secs(15)
}
fn default_max_queue() -> usize {
    4096
}
fn default_log_level() -> LogLevel {
    LogLevel::Info
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// At most this many spans or log records go in one export request.
const MAX_BATCH: usize = 512;
/// Guests' metric exports held between two metrics collections (each at most
/// 16 KiB of a guest's data: see the otel plugin).
const MAX_GUEST_METRIC_GROUPS: usize = 256;
/// How long a stopping host waits for its last exports.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A failing receiver is reported at most this often per signal.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// The host's telemetry: cheap to clone; [`Telemetry::disabled`] does nothing.
#[derive(Clone, Default)]
pub struct Telemetry {
    pipeline: Option<Arc<Pipeline>>,
}

struct Pipeline {
    exporter: Exporter,
    signals: Vec<Signal>,
    log_level: LogLevel,
    export_interval: Duration,
    metrics_interval: Duration,
    max_queue: usize,
    resource: Arc<Resource>,
    scope: Arc<Scope>,
    spans: Mutex<Vec<Queued<Span>>>,
    logs: Mutex<Vec<Queued<LogRecord>>>,
    guest_metrics: Mutex<Vec<Group<Metric>>>,
    components: Mutex<Vec<Weak<ComponentMetrics>>>,
    gauges: Mutex<Option<GaugeSource>>,
    /// Dropped spans, log records, guest metric exports.
    dropped: [AtomicU64; 3],
    started: u64,
    wake: Notify,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A span or log record waiting to be sent, with where it comes from.
type Queued<T> = (Arc<Resource>, Arc<Scope>, T);

/// Reads the host's gauges (instances, workloads) at collection time.
pub type GaugeSource = Box<dyn Fn(&mut Instruments, u64) + Send + Sync>;

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_enabled() { "Telemetry(on)" } else { "Telemetry(off)" })
    }
}

impl Telemetry {
    pub fn disabled() -> Telemetry {
        Telemetry { pipeline: None }
    }

    /// Starts exporting under a resource of `service.name`, `service.version` and
    /// `attributes` (plus the configured ones). Needs a Tokio runtime.
    pub fn start(settings: &TelemetrySettings, attributes: Vec<KeyValue>) -> Result<Telemetry, String> {
        let exporter = Exporter::new(&settings.endpoint, settings.protocol, &settings.headers, settings.timeout)?;
        if settings.export_interval.is_zero() || settings.metrics_interval.is_zero() {
            return Err("`exportInterval` and `metricsInterval` must be longer than zero".into());
        }
        if settings.max_queue == 0 {
            return Err("`maxQueue` must be at least 1".into());
        }
        let mut resource = vec![
            KeyValue::new("service.name", settings.service_name.as_str()),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ];
        resource.extend(attributes);
        for (key, value) in &settings.resource {
            resource.retain(|kv| &kv.key != key);
            resource.push(KeyValue::new(key.as_str(), value.as_str()));
        }
        let pipeline = Arc::new(Pipeline {
            exporter,
            signals: settings.signals.clone(),
            log_level: settings.log_level,
            export_interval: settings.export_interval,
            metrics_interval: settings.metrics_interval,
            max_queue: settings.max_queue,
            resource: Arc::new(Resource { attributes: resource, schema_url: String::new() }),
            scope: Arc::new(Scope {
                name: "weft".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Scope::default()
            }),
            spans: Mutex::default(),
            logs: Mutex::default(),
            guest_metrics: Mutex::default(),
            components: Mutex::default(),
            gauges: Mutex::default(),
            dropped: Default::default(),
            started: now_nanos(),
            wake: Notify::new(),
            stop: watch::Sender::new(false),
            task: Mutex::default(),
        });
        let task = tokio::spawn(run(pipeline.clone()));
        *pipeline.task.lock().unwrap() = Some(task);
        Ok(Telemetry { pipeline: Some(pipeline) })
    }

    pub fn is_enabled(&self) -> bool {
        self.pipeline.is_some()
    }

    fn exports(&self, signal: Signal) -> Option<&Arc<Pipeline>> {
        self.pipeline.as_ref().filter(|p| p.signals.contains(&signal))
    }

    /// Whether weft records spans (so trace context is worth reading and passing on).
    pub fn traces(&self) -> bool {
        self.is_exporting(Signal::Traces)
    }

    /// Whether `signal` is exported at all.
    pub fn is_exporting(&self, signal: Signal) -> bool {
        self.exports(signal).is_some()
    }

    /// Starts a span of weft's own: a child of `parent`, or the root of a new
    /// trace. Ends (and is queued) when dropped. A parent that is not sampled
    /// gives a span that records nothing but passes its context on.
    pub fn span(&self, name: impl Into<String>, kind: SpanKind, parent: Option<&SpanContext>) -> ActiveSpan {
        let Some(pipeline) = self.exports(Signal::Traces) else { return ActiveSpan::none() };
        let context = match parent {
            Some(parent) => parent.child(),
            None => SpanContext::root(),
        };
        if !context.sampled {
            return ActiveSpan { recording: None, context: Some(context) };
        }
        let remote_flags = match parent {
            Some(p) => 0x100 | if p.remote { 0x200 } else { 0 },
            None => 0,
        };
        let span = Span {
            trace_id: context.trace_id,
            span_id: context.span_id,
            parent_span_id: parent.map(|p| p.span_id),
            trace_state: context.trace_state.clone(),
            flags: 1 | remote_flags,
            name: name.into(),
            kind,
            start: now_nanos(),
            end: 0,
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: Status::Unset,
            dropped_attributes: 0,
            dropped_events: 0,
            dropped_links: 0,
        };
        ActiveSpan { recording: Some(Box::new((pipeline.clone(), span))), context: Some(context) }
    }

    /// The counters of one component of a workload, read at every collection
    /// for as long as the returned value lives.
    pub fn component_metrics(&self, attributes: Vec<KeyValue>) -> Option<Arc<ComponentMetrics>> {
        let pipeline = self.exports(Signal::Metrics)?;
        let metrics = Arc::new(ComponentMetrics::new(attributes));
        let mut all = pipeline.components.lock().unwrap();
        all.retain(|m| m.strong_count() > 0);
        all.push(Arc::downgrade(&metrics));
        Some(metrics)
    }

    /// Where the host's gauges are read from.
    pub fn set_gauges(&self, source: GaugeSource) {
        if let Some(pipeline) = self.exports(Signal::Metrics) {
            *pipeline.gauges.lock().unwrap() = Some(source);
        }
    }

    /// The host's resource, which guests' resources extend.
    pub fn resource(&self) -> Option<Arc<Resource>> {
        self.pipeline.as_ref().map(|p| p.resource.clone())
    }

    /// Whether weft exports its log records of `level`.
    pub fn exports_logs_at(&self, level: LogLevel) -> bool {
        self.exports(Signal::Logs).is_some_and(|p| level >= p.log_level)
    }

    /// Queues one of weft's own log records.
    pub fn log(&self, record: LogRecord) {
        if let Some(p) = self.exports(Signal::Logs) {
            let item = (p.resource.clone(), p.scope.clone(), record);
            p.enqueue(&p.logs, item, 1, p.max_queue);
        }
    }

    /// Queues a span a guest ended, under the guest's resource and scope.
    /// Returns whether it was taken (telemetry on, room in the queue).
    pub fn guest_span(&self, resource: Arc<Resource>, scope: Arc<Scope>, span: Span) -> bool {
        self.exports(Signal::Traces).is_some_and(|p| p.enqueue(&p.spans, (resource, scope, span), 0, p.max_queue))
    }

    pub fn guest_log(&self, resource: Arc<Resource>, scope: Arc<Scope>, record: LogRecord) -> bool {
        self.exports(Signal::Logs).is_some_and(|p| p.enqueue(&p.logs, (resource, scope, record), 1, p.max_queue))
    }

    /// Queues metrics a guest exported, sent with the host's next metrics.
    pub fn guest_metrics(&self, group: Group<Metric>) -> bool {
        self.exports(Signal::Metrics).is_some_and(|p| p.enqueue(&p.guest_metrics, group, 2, MAX_GUEST_METRIC_GROUPS))
    }

    /// Counts telemetry a guest handed over that weft could not take.
    pub fn dropped_malformed(&self, signal: Signal) {
        if let Some(p) = &self.pipeline {
            let index = match signal {
                Signal::Traces => 0,
                Signal::Logs => 1,
                Signal::Metrics => 2,
            };
            p.dropped[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends what is queued, and the metrics as they are now; waits at most a
    /// few seconds for the receiver.
    pub async fn shutdown(&self) {
        let Some(pipeline) = &self.pipeline else { return };
        pipeline.stop.send_replace(true);
        let task = pipeline.task.lock().unwrap().take();
        if let Some(mut task) = task
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err()
        {
            task.abort();
            tracing::warn!(target: "weft::telemetry", "telemetry still unsent after {SHUTDOWN_GRACE:?} was dropped");
        }
    }
}

impl Pipeline {
    fn enqueue<T>(&self, queue: &Mutex<Vec<T>>, item: T, dropped: usize, capacity: usize) -> bool {
        let mut queue = queue.lock().unwrap();
        if queue.len() >= capacity || *self.stop.borrow() {
            self.dropped[dropped].fetch_add(1, Ordering::Relaxed);
            return false;
        }
        queue.push(item);
        if queue.len() >= MAX_BATCH {
            self.wake.notify_one();
        }
        true
    }

    fn collect_metrics(&self) -> Vec<Group<Metric>> {
        let now = now_nanos();
        let mut instruments = Instruments::default();
        let components: Vec<Arc<ComponentMetrics>> =
            self.components.lock().unwrap().iter().filter_map(Weak::upgrade).collect();
        for c in &components {
            c.collect(now, &mut instruments);
        }
        if let Some(source) = &*self.gauges.lock().unwrap() {
            source(&mut instruments, now);
        }
        for (index, kind) in ["span", "log", "metrics"].into_iter().enumerate() {
            let n = self.dropped[index].load(Ordering::Relaxed);
            if n > 0 {
                instruments.dropped.push(NumberPoint {
                    attributes: vec![KeyValue::new("kind", kind)],
                    start: self.started,
                    time: now,
                    value: Number::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                    exemplars: Vec::new(),
                });
            }
        }
        let mut groups = vec![Group {
            resource: self.resource.clone(),
            scope: self.scope.clone(),
            items: instruments.into_metrics(),
        }];
        groups.append(&mut self.guest_metrics.lock().unwrap());
        groups.retain(|g| !g.items.is_empty());
        groups
    }
}

/// Failures of one signal's exports, reported now and then.
#[derive(Default)]
struct Failures {
    since_report: u64,
    reported: Option<Instant>,
}

impl Failures {
    fn failed(&mut self, signal: Signal, message: &str) {
        self.since_report += 1;
        if self.reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            // This target is never exported itself, or a dead receiver would feed its own queue.
            tracing::warn!(target: "weft::telemetry", failures = self.since_report, "exporting {}: {message}", signal.as_str());
            self.reported = Some(Instant::now());
            self.since_report = 0;
        }
    }
}

async fn run(p: Arc<Pipeline>) {
    let mut failures: [Failures; 3] = Default::default();
    let mut stop = p.stop.subscribe();
    let mut metrics_due = Instant::now() + p.metrics_interval;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(p.export_interval) => false,
            _ = p.wake.notified() => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        export_queue(&p, Signal::Traces, &p.spans, proto::traces, json::traces, &mut failures[0]).await;
        export_queue(&p, Signal::Logs, &p.logs, proto::logs, json::logs, &mut failures[1]).await;
        if p.signals.contains(&Signal::Metrics) && (stopping || Instant::now() >= metrics_due) {
            metrics_due = Instant::now() + p.metrics_interval;
            let groups = p.collect_metrics();
            if !groups.is_empty() {
                let encoded = encode(&p, &groups, proto::metrics, json::metrics).into();
                send(&p, Signal::Metrics, encoded, &mut failures[2]).await;
            }
        }
        if stopping {
            return;
        }
    }
}

fn encode<T>(
    p: &Pipeline,
    groups: &[Group<T>],
    proto: fn(&[Group<T>]) -> Vec<u8>,
    json: fn(&[Group<T>]) -> Vec<u8>,
) -> Vec<u8> {
    match p.exporter.protocol() {
        Protocol::HttpJson => json(groups),
        Protocol::HttpProtobuf | Protocol::Grpc => proto(groups),
    }
}

/// Sends everything queued, a batch at a time.
async fn export_queue<T>(
    p: &Pipeline,
    signal: Signal,
    queue: &Mutex<Vec<Queued<T>>>,
    proto: fn(&[Group<T>]) -> Vec<u8>,
    json: fn(&[Group<T>]) -> Vec<u8>,
    failures: &mut Failures,
) {
    loop {
        let batch: Vec<_> = {
            let mut queue = queue.lock().unwrap();
            let n = queue.len().min(MAX_BATCH);
            queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        let mut groups = Vec::new();
        for (resource, scope, item) in batch {
            push_grouped(&mut groups, &resource, &scope, item);
        }
        send(p, signal, encode(p, &groups, proto, json).into(), failures).await;
    }
}

/// One export, tried again once after a second when the failure may pass.
async fn send(p: &Pipeline, signal: Signal, encoded: hyper::body::Bytes, failures: &mut Failures) {
    let mut outcome = p.exporter.send(signal, encoded.clone()).await;
    if let Err(e) = &outcome
        && e.retry
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        outcome = p.exporter.send(signal, encoded).await;
    }
    if let Err(e) = outcome {
        failures.failed(signal, &e.message);
    }
}

/// A span of weft's own, recorded until dropped.
pub struct ActiveSpan {
    recording: Option<Box<(Arc<Pipeline>, Span)>>,
    context: Option<SpanContext>,
}

impl ActiveSpan {
    /// A span that records nothing and has no context (telemetry off).
    pub fn none() -> ActiveSpan {
        ActiveSpan { recording: None, context: None }
    }

    /// Where this span sits, to pass on to its children (`None` with tracing off).
    pub fn context(&self) -> Option<&SpanContext> {
        self.context.as_ref()
    }

    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        if let Some(recording) = &mut self.recording {
            recording.1.attributes.push(KeyValue::new(key, value));
        }
    }

    /// Names the span better than it could be named at its start (an HTTP
    /// request's, once routed).
    pub fn rename(&mut self, name: impl Into<String>) {
        if let Some(recording) = &mut self.recording {
            recording.1.name = name.into();
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, message: impl Into<String>) {
        if let Some(recording) = &mut self.recording {
            recording.1.status = Status::Error(message.into());
        }
    }

    pub fn end(self) {}
}

impl Drop for ActiveSpan {
    fn drop(&mut self) {
        if let Some(recording) = self.recording.take() {
            let (pipeline, mut span) = *recording;
            span.end = now_nanos().max(span.start);
            let item = (pipeline.resource.clone(), pipeline.scope.clone(), span);
            pipeline.enqueue(&pipeline.spans, item, 0, pipeline.max_queue);
        }
    }
}
