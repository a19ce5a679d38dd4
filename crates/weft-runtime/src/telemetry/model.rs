//! What weft exports, shaped like OTLP's messages so that guests' data (which
//! `wasi:otel` hands over already aggregated) and weft's own take one path.

use super::context::{SpanId, TraceId};

/// OpenTelemetry's `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<KeyValue>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::String(s.clone())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<u64> for Value {
    fn from(i: u64) -> Value {
        Value::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}

impl From<u16> for Value {
    fn from(i: u16) -> Value {
        Value::Int(i.into())
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Double(f)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<Value>) -> KeyValue {
        KeyValue { key: key.into(), value: value.into() }
    }
}

/// The entity that produced telemetry: a host, or a component on it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    pub attributes: Vec<KeyValue>,
    pub schema_url: String,
}

/// The library (or component) that produced telemetry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scope {
    pub name: String,
    pub version: String,
    pub attributes: Vec<KeyValue>,
    pub schema_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Status {
    #[default]
    Unset,
    Ok,
    Error(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub trace_state: String,
    /// OTLP span flags: bit 0 sampled; bit 8 says bit 9 is known, bit 9 that
    /// the parent is remote.
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    /// Unix nanoseconds.
    pub start: u64,
    pub end: u64,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
    pub status: Status,
    pub dropped_attributes: u32,
    pub dropped_events: u32,
    pub dropped_links: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: u64,
    pub name: String,
    pub attributes: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub trace_state: String,
    pub flags: u32,
    pub attributes: Vec<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord {
    pub time: u64,
    pub observed_time: u64,
    /// 1 (TRACE) to 24 (FATAL4); 0 unspecified.
    pub severity_number: u8,
    pub severity_text: String,
    pub body: Option<Value>,
    pub attributes: Vec<KeyValue>,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
    /// W3C trace flags (bit 0: sampled).
    pub flags: u32,
    pub event_name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub description: String,
    pub unit: String,
    pub data: MetricData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    Delta = 1,
    Cumulative = 2,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricData {
    Gauge(Vec<NumberPoint>),
    Sum { points: Vec<NumberPoint>, temporality: Temporality, monotonic: bool },
    Histogram { points: Vec<HistogramPoint>, temporality: Temporality },
    ExponentialHistogram { points: Vec<ExponentialHistogramPoint>, temporality: Temporality },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Double(f64),
    Int(i64),
}

impl Number {
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Double(f) => f,
            Number::Int(i) => i as f64,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NumberPoint {
    pub attributes: Vec<KeyValue>,
    pub start: u64,
    pub time: u64,
    pub value: Number,
    pub exemplars: Vec<Exemplar>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    pub attributes: Vec<KeyValue>,
    pub start: u64,
    pub time: u64,
    pub count: u64,
    pub sum: Option<f64>,
    /// One more than `bounds`: the last counts what is above every bound.
    pub bucket_counts: Vec<u64>,
    pub bounds: Vec<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub exemplars: Vec<Exemplar>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExponentialHistogramPoint {
    pub attributes: Vec<KeyValue>,
    pub start: u64,
    pub time: u64,
    pub count: u64,
    pub sum: Option<f64>,
    pub scale: i32,
    pub zero_count: u64,
    pub positive: Buckets,
    pub negative: Buckets,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub zero_threshold: f64,
    pub exemplars: Vec<Exemplar>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets {
    pub offset: i32,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub filtered_attributes: Vec<KeyValue>,
    pub time: u64,
    pub value: Number,
    pub span_id: Option<SpanId>,
    pub trace_id: Option<TraceId>,
}

/// Items of one kind from one resource and scope: the unit OTLP groups by.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<T> {
    pub resource: std::sync::Arc<Resource>,
    pub scope: std::sync::Arc<Scope>,
    pub items: Vec<T>,
}

/// Files `item` under its resource and scope, keeping first-seen order.
pub(crate) fn push_grouped<T>(
    groups: &mut Vec<Group<T>>,
    resource: &std::sync::Arc<Resource>,
    scope: &std::sync::Arc<Scope>,
    item: T,
) {
    let same = |g: &Group<T>| {
        (std::sync::Arc::ptr_eq(&g.resource, resource) || g.resource == *resource)
            && (std::sync::Arc::ptr_eq(&g.scope, scope) || g.scope == *scope)
    };
    match groups.iter_mut().find(|g| same(g)) {
        Some(group) => group.items.push(item),
        None => groups.push(Group { resource: resource.clone(), scope: scope.clone(), items: vec![item] }),
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
