//! `wasi:otel` 0.2.0-rc.2 (`tracing`, `metrics`, `logs`): what a guest's
//! OpenTelemetry SDK hands over joins the host's own pipeline
//! ([`weft_runtime::telemetry`]), under a resource naming the component.
//!
//! * `outer-span-context` is the span weft is in around the call (the
//!   invocation's), so a guest's spans sit under the request that caused them;
//!   all-zero ids when tracing is off.
//! * `on-end` queues the span; `on-start` is accepted and ignored: weft parents
//!   nothing of its own under a guest's span.
//! * `logs.on-emit` queues the record; `metrics.export` queues the metrics for
//!   the host's next metrics export.
//!
//! Telemetry off, every function returns at once (and `export` succeeds). A guest's
//! input is bounded ([`MAX_ITEM_BYTES`], [`MAX_LIST`]): what exceeds is dropped and
//! counted in the item's `dropped_*` fields; an item weft cannot read (a malformed
//! id) is dropped whole and counted in `weft.telemetry.dropped`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use wasmtime::component::{HasData, LinkerInstance};
use weft_runtime::interface::{InterfaceName, ItemName};
use weft_runtime::plugin::{BoxFuture, ComponentIdentity, HostPlugin, PluginWorld, Whose};
use weft_runtime::store::StoreState;
use weft_runtime::telemetry::model::{self as otel, Number};
use weft_runtime::telemetry::{Signal, SpanId, Telemetry, TraceId};

pub const ID: &str = "otel";

/// The most bytes of names, attributes, events and links weft keeps of one span,
/// log record or metrics export.
pub const MAX_ITEM_BYTES: usize = 16 * 1024;
/// The most attributes, events, links or data points weft keeps of one list.
pub const MAX_LIST: usize = 128;
/// The longest `tracestate` weft keeps (what W3C asks every vendor to pass on).
const MAX_TRACE_STATE: usize = 512;

mod bindings {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/wasi-io-0.2.0", "../../wit/deps/wasi-clocks", "../../wit/deps/wasi-otel"],
        world: "wasi:otel/imports",
        imports: { default: trappable },
    });
}

use bindings::wasi::clocks::wall_clock::Datetime;
use bindings::wasi::otel::{logs, metrics, tracing, types};

#[derive(Default)]
pub struct OtelPlugin {
    /// Each component's resource, made on its first use and dropped on unbind.
    resources: Mutex<HashMap<ComponentIdentity, Arc<otel::Resource>>>,
}

impl OtelPlugin {
    pub fn new() -> OtelPlugin {
        OtelPlugin::default()
    }

    /// The host's resource with the component's identity: where its spans come
    /// from, and what its own resource attributes extend.
    fn resource_of(&self, telemetry: &Telemetry, caller: &ComponentIdentity) -> Arc<otel::Resource> {
        let mut resources = self.resources.lock().unwrap();
        if let Some(resource) = resources.get(caller) {
            return resource.clone();
        }
        let mut attributes = telemetry.resource().map(|r| r.attributes.clone()).unwrap_or_default();
        let identity = [
            ("service.name", caller.component.to_string()),
            ("weft.component", caller.component.to_string()),
            ("weft.workload", caller.workload.to_string()),
            ("weft.namespace", caller.namespace.to_string()),
            ("weft.workload.id", caller.workload_id.to_string()),
        ];
        for (key, value) in identity {
            attributes.retain(|kv| kv.key != key);
            attributes.push(otel::KeyValue::new(key, value));
        }
        let resource = Arc::new(otel::Resource { attributes, schema_url: String::new() });
        resources.insert(caller.clone(), resource.clone());
        resource
    }
}

impl HostPlugin for OtelPlugin {
    fn id(&self) -> &str {
        ID
    }

    fn world(&self) -> PluginWorld {
        let name = |i: &str| InterfaceName::parse(&format!("wasi:otel/{i}@0.2.0-rc.2")).expect("valid name");
        PluginWorld {
            imports: vec![name("types"), name("tracing"), name("metrics"), name("logs")],
            exports: Vec::new(),
        }
    }

    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.resources.lock().unwrap().remove(identity);
        })
    }

    fn add_to_linker(
        &self,
        instance: &mut LinkerInstance<StoreState>,
        import: &str,
        whose: Whose,
    ) -> wasmtime::Result<()> {
        let name = ItemName::parse(import);
        let interface = name.as_interface().map(|i| i.interface.as_str()).unwrap_or_default();
        let getter = weft_runtime::for_whose!(whose, view);
        match interface {
            // Types only: the instance has nothing to define.
            "types" => Ok(()),
            "tracing" => tracing::add_to_linker_instance::<StoreState, Otel>(instance, getter),
            "metrics" => metrics::add_to_linker_instance::<StoreState, Otel>(instance, getter),
            "logs" => logs::add_to_linker_instance::<StoreState, Otel>(instance, getter),
            other => wasmtime::bail!("the otel plugin has no interface `{other}`"),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Otel;

impl HasData for Otel {
    type Data<'a> = View<'a>;
}

/// The store, and whose export this is (see [`Whose`]).
struct View<'a> {
    state: &'a StoreState,
    whose: Whose,
}

fn view<const WHOSE: usize>(state: &mut StoreState) -> View<'_> {
    View { state, whose: Whose::from_const(WHOSE) }
}

fn plugin(state: &StoreState) -> &OtelPlugin {
    state.plugin::<OtelPlugin>(ID).expect("the otel plugin is loaded")
}

impl types::Host for View<'_> {}

impl tracing::Host for View<'_> {
    fn on_start(&mut self, _: tracing::SpanContext) -> wasmtime::Result<()> {
        Ok(())
    }

    fn on_end(&mut self, span: tracing::SpanData) -> wasmtime::Result<()> {
        let telemetry = self.state.telemetry();
        if !telemetry.is_exporting(Signal::Traces)
            || !span.span_context.trace_flags.contains(tracing::TraceFlags::SAMPLED)
        {
            return Ok(());
        }
        let Some(converted) = span_of(span) else {
            telemetry.dropped_malformed(Signal::Traces);
            return Ok(());
        };
        let (scope, span) = converted;
        let resource = plugin(self.state).resource_of(telemetry, self.state.caller(self.whose));
        telemetry.guest_span(resource, Arc::new(scope), span);
        Ok(())
    }

    fn outer_span_context(&mut self) -> wasmtime::Result<tracing::SpanContext> {
        Ok(match self.state.trace_context() {
            Some(context) => tracing::SpanContext {
                trace_id: context.trace_id.to_string(),
                span_id: context.span_id.to_string(),
                trace_flags: if context.sampled { tracing::TraceFlags::SAMPLED } else { tracing::TraceFlags::empty() },
                is_remote: context.remote,
                trace_state: trace_state_members(&context.trace_state),
            },
            None => tracing::SpanContext {
                trace_id: TraceId([0; 16]).to_string(),
                span_id: SpanId([0; 8]).to_string(),
                trace_flags: tracing::TraceFlags::empty(),
                is_remote: false,
                trace_state: Vec::new(),
            },
        })
    }
}

impl logs::Host for View<'_> {
    fn on_emit(&mut self, record: logs::LogRecord) -> wasmtime::Result<()> {
        let telemetry = self.state.telemetry();
        if !telemetry.is_exporting(Signal::Logs) {
            return Ok(());
        }
        let own = plugin(self.state).resource_of(telemetry, self.state.caller(self.whose));
        let Some((resource, scope, record)) = log_of(&own, record) else {
            telemetry.dropped_malformed(Signal::Logs);
            return Ok(());
        };
        telemetry.guest_log(resource, scope, record);
        Ok(())
    }
}

impl metrics::Host for View<'_> {
    fn export(&mut self, exported: metrics::ResourceMetrics) -> wasmtime::Result<Result<(), metrics::Error>> {
        let telemetry = self.state.telemetry();
        if !telemetry.is_exporting(Signal::Metrics) {
            return Ok(Ok(()));
        }
        let own = plugin(self.state).resource_of(telemetry, self.state.caller(self.whose));
        let mut budget = Budget::new();
        let resource = resource_with(&own, Some(exported.resource), &mut budget);
        let mut taken = true;
        for scoped in exported.scope_metrics {
            let scope = Arc::new(scope_of(scoped.scope, &mut budget));
            let items: Vec<otel::Metric> =
                scoped.metrics.into_iter().filter_map(|m| metric_of(m, &mut budget)).collect();
            if !items.is_empty() {
                taken &= telemetry.guest_metrics(otel::Group { resource: resource.clone(), scope, items });
            }
        }
        Ok(if taken { Ok(()) } else { Err("weft's telemetry queue is full: these metrics were dropped".into()) })
    }
}

/// What is left of an item's byte allowance.
struct Budget {
    left: usize,
}

impl Budget {
    fn new() -> Budget {
        Budget { left: MAX_ITEM_BYTES }
    }

    /// Takes `n` bytes if they are left.
    fn take(&mut self, n: usize) -> bool {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }

    /// `s` as far as the allowance goes (cut at a character boundary).
    fn text(&mut self, mut s: String) -> String {
        if s.len() > self.left {
            let mut cut = self.left;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        self.left -= s.len();
        s
    }
}

/// Attributes within the allowance and [`MAX_LIST`]; with how many were dropped.
fn attributes_of(list: Vec<types::KeyValue>, budget: &mut Budget) -> (Vec<otel::KeyValue>, u32) {
    let mut kept = Vec::new();
    let mut dropped = 0u32;
    for kv in list {
        if kept.len() < MAX_LIST && budget.take(kv.key.len() + kv.value.len()) {
            kept.push(otel::KeyValue { value: value_of(&kv.value), key: kv.key });
        } else {
            dropped = dropped.saturating_add(1);
        }
    }
    (kept, dropped)
}

/// A `wasi:otel` value: an OpenTelemetry `AnyValue` as JSON. Text that is not
/// JSON is taken as a string, as a guest most likely meant it.
fn value_of(json: &str) -> otel::Value {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(value) => from_json(value),
        Err(_) => otel::Value::String(json.to_string()),
    }
}

const BYTES_PREFIX: &str = "data:application/octet-stream;base64,";

fn from_json(value: serde_json::Value) -> otel::Value {
    use serde_json::Value as J;
    match value {
        J::Null => otel::Value::String(String::new()),
        J::Bool(b) => otel::Value::Bool(b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => otel::Value::Int(i),
            (None, Some(u)) => otel::Value::from(u),
            _ => otel::Value::Double(n.as_f64().unwrap_or_default()),
        },
        J::String(s) => match s.strip_prefix(BYTES_PREFIX).map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        {
            Some(Ok(bytes)) => otel::Value::Bytes(bytes),
            _ => otel::Value::String(s),
        },
        J::Array(items) => otel::Value::Array(items.into_iter().map(from_json).collect()),
        J::Object(map) => otel::Value::Map(
            map.into_iter().map(|(key, value)| otel::KeyValue { key, value: from_json(value) }).collect(),
        ),
    }
}

fn nanos(t: Datetime) -> u64 {
    t.seconds.saturating_mul(1_000_000_000).saturating_add(u64::from(t.nanoseconds))
}

fn trace_state_of(members: Vec<(String, String)>) -> String {
    let mut state = String::new();
    for (key, value) in members {
        let member = format!("{}{key}={value}", if state.is_empty() { "" } else { "," });
        if state.len() + member.len() > MAX_TRACE_STATE {
            break;
        }
        state.push_str(&member);
    }
    state
}

fn trace_state_members(state: &str) -> Vec<(String, String)> {
    state.split(',').filter_map(|m| m.trim().split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn scope_of(scope: types::InstrumentationScope, budget: &mut Budget) -> otel::Scope {
    let name = budget.text(scope.name);
    let (attributes, _) = attributes_of(scope.attributes, budget);
    otel::Scope {
        name,
        version: budget.text(scope.version.unwrap_or_default()),
        attributes,
        schema_url: budget.text(scope.schema_url.unwrap_or_default()),
    }
}

/// The component's resource, extended by what the guest says of itself; the
/// identity weft gave it stays.
fn resource_with(
    own: &Arc<otel::Resource>,
    guest: Option<types::Resource>,
    budget: &mut Budget,
) -> Arc<otel::Resource> {
    let Some(guest) = guest.filter(|r| !r.attributes.is_empty() || r.schema_url.is_some()) else {
        return own.clone();
    };
    let (attributes, _) = attributes_of(guest.attributes, budget);
    let fixed = |key: &str| key.starts_with("weft.") || key == "host.name" || key == "service.instance.id";
    let mut merged: Vec<otel::KeyValue> = own
        .attributes
        .iter()
        .filter(|kv| !attributes.iter().any(|g| g.key == kv.key && !fixed(&kv.key)))
        .cloned()
        .collect();
    merged.extend(attributes.into_iter().filter(|kv| !fixed(&kv.key)));
    Arc::new(otel::Resource { attributes: merged, schema_url: budget.text(guest.schema_url.unwrap_or_default()) })
}

/// A span context's ids, or `None` if they are not hex of the right length.
fn ids(context: &tracing::SpanContext) -> Option<(TraceId, SpanId)> {
    Some((TraceId::parse(&context.trace_id)?, SpanId::parse(&context.span_id)?))
}

fn span_of(span: tracing::SpanData) -> Option<(otel::Scope, otel::Span)> {
    let (trace_id, span_id) = ids(&span.span_context)?;
    let parent_span_id = match span.parent_span_id.as_str() {
        "" => None,
        hex => Some(SpanId::parse(hex)?).filter(|id| id.0 != [0; 8]),
    };
    let mut budget = Budget::new();
    let name = budget.text(span.name);
    let (attributes, dropped_attributes) = attributes_of(span.attributes, &mut budget);
    let mut dropped_events = span.dropped_events;
    let mut events = Vec::new();
    for event in span.events {
        if events.len() >= MAX_LIST || !budget.take(event.name.len()) {
            dropped_events = dropped_events.saturating_add(1);
            continue;
        }
        let (attributes, _) = attributes_of(event.attributes, &mut budget);
        events.push(otel::Event { time: nanos(event.time), name: event.name, attributes });
    }
    let mut dropped_links = span.dropped_links;
    let mut links = Vec::new();
    for link in span.links {
        match ids(&link.span_context) {
            Some((trace_id, span_id)) if links.len() < MAX_LIST => {
                let (attributes, _) = attributes_of(link.attributes, &mut budget);
                links.push(otel::Link {
                    trace_id,
                    span_id,
                    trace_state: trace_state_of(link.span_context.trace_state),
                    flags: u32::from(link.span_context.trace_flags.contains(tracing::TraceFlags::SAMPLED)),
                    attributes,
                });
            }
            _ => dropped_links = dropped_links.saturating_add(1),
        }
    }
    let scope = scope_of(span.instrumentation_scope, &mut budget);
    let kind = match span.span_kind {
        tracing::SpanKind::Client => otel::SpanKind::Client,
        tracing::SpanKind::Server => otel::SpanKind::Server,
        tracing::SpanKind::Producer => otel::SpanKind::Producer,
        tracing::SpanKind::Consumer => otel::SpanKind::Consumer,
        tracing::SpanKind::Internal => otel::SpanKind::Internal,
    };
    let status = match span.status {
        tracing::Status::Unset => otel::Status::Unset,
        tracing::Status::Ok => otel::Status::Ok,
        tracing::Status::Error(message) => otel::Status::Error(budget.text(message)),
    };
    let span = otel::Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: trace_state_of(span.span_context.trace_state),
        flags: 1,
        name,
        kind,
        start: nanos(span.start_time),
        end: nanos(span.end_time),
        attributes,
        events,
        links,
        status,
        dropped_attributes: span.dropped_attributes.saturating_add(dropped_attributes),
        dropped_events,
        dropped_links,
    };
    Some((scope, span))
}

type LogParts = (Arc<otel::Resource>, Arc<otel::Scope>, otel::LogRecord);

/// An optional id in hex: `Err` if present and malformed.
fn optional_id<T>(hex: Option<String>, parse: fn(&str) -> Option<T>) -> Result<Option<T>, ()> {
    match hex.filter(|h| !h.is_empty()) {
        None => Ok(None),
        Some(hex) => parse(&hex).map(Some).ok_or(()),
    }
}

fn log_of(own: &Arc<otel::Resource>, record: logs::LogRecord) -> Option<LogParts> {
    let trace_id = optional_id(record.trace_id, TraceId::parse).ok()?;
    let span_id = optional_id(record.span_id, SpanId::parse).ok()?;
    let mut budget = Budget::new();
    let body = record.body.map(|json| value_of(&budget.text(json)));
    let (attributes, _) = attributes_of(record.attributes.unwrap_or_default(), &mut budget);
    let scope = match record.instrumentation_scope {
        Some(scope) => scope_of(scope, &mut budget),
        None => otel::Scope::default(),
    };
    let resource = resource_with(own, record.resource, &mut budget);
    let log = otel::LogRecord {
        time: record.timestamp.map(nanos).unwrap_or_default(),
        observed_time: record.observed_timestamp.map_or_else(otel::now_nanos, nanos),
        severity_number: record.severity_number.filter(|n| *n <= 24).unwrap_or_default(),
        severity_text: budget.text(record.severity_text.unwrap_or_default()),
        body,
        attributes,
        trace_id: trace_id.filter(|t| t.0 != [0; 16]),
        span_id: span_id.filter(|s| s.0 != [0; 8]),
        flags: u32::from(record.trace_flags.is_some_and(|f| f.contains(tracing::TraceFlags::SAMPLED))),
        event_name: budget.text(record.event_name.unwrap_or_default()),
    };
    Some((resource, Arc::new(scope), log))
}

fn number(n: metrics::MetricNumber) -> Number {
    match n {
        metrics::MetricNumber::F64(f) => Number::Double(f),
        metrics::MetricNumber::S64(i) => Number::Int(i),
        metrics::MetricNumber::U64(u) => Number::Int(i64::try_from(u).unwrap_or(i64::MAX)),
    }
}

/// OTLP knows delta and cumulative; the SDKs' "low memory" is delta for
/// monotonic sums and histograms, cumulative for the rest.
fn temporality(t: metrics::Temporality, delta_when_low_memory: bool) -> otel::Temporality {
    match t {
        metrics::Temporality::Cumulative => otel::Temporality::Cumulative,
        metrics::Temporality::Delta => otel::Temporality::Delta,
        metrics::Temporality::LowMemory if delta_when_low_memory => otel::Temporality::Delta,
        metrics::Temporality::LowMemory => otel::Temporality::Cumulative,
    }
}

fn exemplars(list: Vec<metrics::Exemplar>, budget: &mut Budget) -> Vec<otel::Exemplar> {
    list.into_iter()
        .take(MAX_LIST)
        .map(|e| otel::Exemplar {
            filtered_attributes: attributes_of(e.filtered_attributes, budget).0,
            time: nanos(e.time),
            value: number(e.value),
            span_id: SpanId::parse(&e.span_id),
            trace_id: TraceId::parse(&e.trace_id),
        })
        .collect()
}

/// Data points within [`MAX_LIST`] and the allowance (each costs its attributes
/// and a fixed share for its numbers).
fn points<P, T>(list: Vec<P>, budget: &mut Budget, mut convert: impl FnMut(P, &mut Budget) -> T) -> Vec<T> {
    const POINT_BYTES: usize = 64;
    let mut kept = Vec::new();
    for point in list.into_iter().take(MAX_LIST) {
        if !budget.take(POINT_BYTES) {
            break;
        }
        kept.push(convert(point, budget));
    }
    kept
}

fn metric_of(metric: metrics::Metric, budget: &mut Budget) -> Option<otel::Metric> {
    use metrics::MetricData as D;
    if !budget.take(metric.name.len() + metric.description.len() + metric.unit.len()) {
        return None;
    }
    let gauge = |g: metrics::Gauge, budget: &mut Budget| {
        let (start, time) = (g.start_time.map(nanos).unwrap_or_default(), nanos(g.time));
        otel::MetricData::Gauge(points(g.data_points, budget, |p, budget| otel::NumberPoint {
            attributes: attributes_of(p.attributes, budget).0,
            start,
            time,
            value: number(p.value),
            exemplars: exemplars(p.exemplars, budget),
        }))
    };
    let sum = |s: metrics::Sum, budget: &mut Budget| {
        let (start, time) = (nanos(s.start_time), nanos(s.time));
        otel::MetricData::Sum {
            points: points(s.data_points, budget, |p, budget| otel::NumberPoint {
                attributes: attributes_of(p.attributes, budget).0,
                start,
                time,
                value: number(p.value),
                exemplars: exemplars(p.exemplars, budget),
            }),
            temporality: temporality(s.temporality, s.is_monotonic),
            monotonic: s.is_monotonic,
        }
    };
    let histogram = |h: metrics::Histogram, budget: &mut Budget| {
        let (start, time) = (nanos(h.start_time), nanos(h.time));
        otel::MetricData::Histogram {
            points: points(h.data_points, budget, |p, budget| {
                // Bounds and counts cost their bytes too.
                let counted = budget.take(8 * (p.bounds.len() + p.bucket_counts.len()));
                otel::HistogramPoint {
                    attributes: attributes_of(p.attributes, budget).0,
                    start,
                    time,
                    count: p.count,
                    sum: Some(number(p.sum).as_f64()),
                    bucket_counts: if counted { p.bucket_counts } else { Vec::new() },
                    bounds: if counted { p.bounds } else { Vec::new() },
                    min: p.min.map(|n| number(n).as_f64()),
                    max: p.max.map(|n| number(n).as_f64()),
                    exemplars: exemplars(p.exemplars, budget),
                }
            }),
            temporality: temporality(h.temporality, true),
        }
    };
    let exponential = |h: metrics::ExponentialHistogram, budget: &mut Budget| {
        let (start, time) = (nanos(h.start_time), nanos(h.time));
        otel::MetricData::ExponentialHistogram {
            points: points(h.data_points, budget, |p, budget| {
                let counted = budget.take(8 * (p.positive_bucket.counts.len() + p.negative_bucket.counts.len()));
                let buckets = |b: metrics::ExponentialBucket| match counted {
                    true => otel::Buckets { offset: b.offset, counts: b.counts },
                    false => otel::Buckets::default(),
                };
                otel::ExponentialHistogramPoint {
                    attributes: attributes_of(p.attributes, budget).0,
                    start,
                    time,
                    count: p.count,
                    sum: Some(number(p.sum).as_f64()),
                    scale: i32::from(p.scale),
                    zero_count: p.zero_count,
                    positive: buckets(p.positive_bucket),
                    negative: buckets(p.negative_bucket),
                    min: p.min.map(|n| number(n).as_f64()),
                    max: p.max.map(|n| number(n).as_f64()),
                    zero_threshold: p.zero_threshold,
                    exemplars: exemplars(p.exemplars, budget),
                }
            }),
            temporality: temporality(h.temporality, true),
        }
    };
    let data = match metric.data {
        D::F64Gauge(g) | D::U64Gauge(g) | D::S64Gauge(g) => gauge(g, budget),
        D::F64Sum(s) | D::U64Sum(s) | D::S64Sum(s) => sum(s, budget),
        D::F64Histogram(h) | D::U64Histogram(h) | D::S64Histogram(h) => histogram(h, budget),
        D::F64ExponentialHistogram(h) | D::U64ExponentialHistogram(h) | D::S64ExponentialHistogram(h) => {
            exponential(h, budget)
        }
    };
    Some(otel::Metric { name: metric.name, description: metric.description, unit: metric.unit, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> types::KeyValue {
        types::KeyValue { key: key.into(), value: value.into() }
    }

    #[test]
    fn values_are_json_any_values_and_other_text_is_a_string() {
        assert_eq!(value_of("\"a\""), otel::Value::String("a".into()));
        assert_eq!(value_of("-3"), otel::Value::Int(-3));
        assert_eq!(value_of("18446744073709551615"), otel::Value::Int(i64::MAX));
        assert_eq!(value_of("0.5"), otel::Value::Double(0.5));
        assert_eq!(value_of("false"), otel::Value::Bool(false));
        assert_eq!(value_of("\"data:application/octet-stream;base64,/w==\""), otel::Value::Bytes(vec![255]));
        assert_eq!(
            value_of("\"data:application/octet-stream;base64,!!\""),
            otel::Value::String("data:application/octet-stream;base64,!!".into())
        );
        assert_eq!(
            value_of(r#"{"k":[1,"x"]}"#),
            otel::Value::Map(vec![otel::KeyValue::new(
                "k",
                otel::Value::Array(vec![otel::Value::Int(1), otel::Value::String("x".into())])
            )])
        );
        assert_eq!(value_of("not json"), otel::Value::String("not json".into()));
    }

    #[test]
    fn attributes_past_the_count_or_the_bytes_are_dropped_and_counted() {
        let many: Vec<_> = (0..MAX_LIST + 10).map(|i| kv(&format!("k{i}"), "1")).collect();
        let (kept, dropped) = attributes_of(many, &mut Budget::new());
        assert_eq!((kept.len(), dropped), (MAX_LIST, 10));

        let big = "x".repeat(MAX_ITEM_BYTES / 2);
        let (kept, dropped) = attributes_of(vec![kv("a", &big), kv("b", &big), kv("c", "1")], &mut Budget::new());
        assert_eq!(kept.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn text_is_cut_at_a_character_boundary_within_the_allowance() {
        let mut budget = Budget { left: 4 };
        assert_eq!(budget.text("aéé".into()), "aé");
        assert_eq!(budget.text("more".into()), "m");
        assert_eq!(budget.text("none".into()), "");
    }

    #[test]
    fn trace_state_round_trips_and_is_bounded() {
        let members = vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())];
        assert_eq!(trace_state_of(members.clone()), "a=1,b=2");
        assert_eq!(trace_state_members("a=1,b=2"), members);
        let long: Vec<_> = (0..100).map(|i| (format!("key{i}"), "v".repeat(20))).collect();
        assert!(trace_state_of(long).len() <= MAX_TRACE_STATE);
    }
}
