//! OTLP's JSON encoding (the protobuf JSON mapping, with the OTLP exceptions:
//! trace and span ids in hex, enums as integers).

use base64::Engine as _;
use serde_json::{Map, Value as Json, json};

use super::model::*;

fn any_value(v: &Value) -> Json {
    match v {
        Value::String(s) => json!({ "stringValue": s }),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Int(i) => json!({ "intValue": i.to_string() }),
        Value::Double(f) => json!({ "doubleValue": double(*f) }),
        Value::Bytes(b) => json!({ "bytesValue": base64::engine::general_purpose::STANDARD.encode(b) }),
        Value::Array(values) => json!({ "arrayValue": { "values": values.iter().map(any_value).collect::<Vec<_>>() } }),
        Value::Map(entries) => json!({ "kvlistValue": { "values": attributes(entries) } }),
    }
}

/// Non-finite doubles are strings in the JSON mapping.
fn double(f: f64) -> Json {
    if f.is_finite() {
        json!(f)
    } else if f.is_nan() {
        json!("NaN")
    } else if f > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

fn attributes(kvs: &[KeyValue]) -> Vec<Json> {
    kvs.iter().map(|kv| json!({ "key": kv.key, "value": any_value(&kv.value) })).collect()
}

fn resource(r: &Resource) -> Json {
    json!({ "attributes": attributes(&r.attributes) })
}

fn scope(s: &Scope) -> Json {
    json!({ "name": s.name, "version": s.version, "attributes": attributes(&s.attributes) })
}

/// 64-bit integers are strings in the JSON mapping.
fn u64s(v: u64) -> Json {
    Json::String(v.to_string())
}

fn groups<T>(groups: &[Group<T>], outer: &str, inner: &str, items: &str, item: impl Fn(&T) -> Json) -> Vec<u8> {
    let list: Vec<Json> = groups
        .iter()
        .map(|g| {
            json!({
                "resource": resource(&g.resource),
                "schemaUrl": g.resource.schema_url,
                inner: [{
                    "scope": scope(&g.scope),
                    "schemaUrl": g.scope.schema_url,
                    items: g.items.iter().map(&item).collect::<Vec<_>>(),
                }],
            })
        })
        .collect();
    serde_json::to_vec(&json!({ outer: list })).expect("JSON values serialize")
}

pub fn traces(g: &[Group<Span>]) -> Vec<u8> {
    groups(g, "resourceSpans", "scopeSpans", "spans", span)
}

pub fn logs(g: &[Group<LogRecord>]) -> Vec<u8> {
    groups(g, "resourceLogs", "scopeLogs", "logRecords", log_record)
}

pub fn metrics(g: &[Group<Metric>]) -> Vec<u8> {
    groups(g, "resourceMetrics", "scopeMetrics", "metrics", metric)
}

fn span(s: &Span) -> Json {
    let status = match &s.status {
        Status::Unset => json!({}),
        Status::Ok => json!({ "code": 1 }),
        Status::Error(message) => json!({ "code": 2, "message": message }),
    };
    let mut out = json!({
        "traceId": s.trace_id.to_string(),
        "spanId": s.span_id.to_string(),
        "traceState": s.trace_state,
        "flags": s.flags,
        "name": s.name,
        "kind": s.kind as u8,
        "startTimeUnixNano": u64s(s.start),
        "endTimeUnixNano": u64s(s.end),
        "attributes": attributes(&s.attributes),
        "droppedAttributesCount": s.dropped_attributes,
        "events": s.events.iter().map(|e| json!({
            "timeUnixNano": u64s(e.time),
            "name": e.name,
            "attributes": attributes(&e.attributes),
        })).collect::<Vec<_>>(),
        "droppedEventsCount": s.dropped_events,
        "links": s.links.iter().map(|l| json!({
            "traceId": l.trace_id.to_string(),
            "spanId": l.span_id.to_string(),
            "traceState": l.trace_state,
            "attributes": attributes(&l.attributes),
            "flags": l.flags,
        })).collect::<Vec<_>>(),
        "droppedLinksCount": s.dropped_links,
        "status": status,
    });
    if let Some(parent) = &s.parent_span_id {
        out["parentSpanId"] = json!(parent.to_string());
    }
    out
}

fn log_record(r: &LogRecord) -> Json {
    let mut out = json!({
        "timeUnixNano": u64s(r.time),
        "observedTimeUnixNano": u64s(r.observed_time),
        "severityNumber": r.severity_number,
        "severityText": r.severity_text,
        "attributes": attributes(&r.attributes),
        "flags": r.flags,
        "eventName": r.event_name,
    });
    if let Some(body) = &r.body {
        out["body"] = any_value(body);
    }
    if let Some(trace) = &r.trace_id {
        out["traceId"] = json!(trace.to_string());
    }
    if let Some(span) = &r.span_id {
        out["spanId"] = json!(span.to_string());
    }
    out
}

fn metric(m: &Metric) -> Json {
    let mut out = Map::new();
    out.insert("name".into(), json!(m.name));
    out.insert("description".into(), json!(m.description));
    out.insert("unit".into(), json!(m.unit));
    let (key, data) = match &m.data {
        MetricData::Gauge(points) => {
            ("gauge", json!({ "dataPoints": points.iter().map(number_point).collect::<Vec<_>>() }))
        }
        MetricData::Sum { points, temporality, monotonic } => (
            "sum",
            json!({
                "dataPoints": points.iter().map(number_point).collect::<Vec<_>>(),
                "aggregationTemporality": *temporality as u8,
                "isMonotonic": monotonic,
            }),
        ),
        MetricData::Histogram { points, temporality } => (
            "histogram",
            json!({
                "dataPoints": points.iter().map(histogram_point).collect::<Vec<_>>(),
                "aggregationTemporality": *temporality as u8,
            }),
        ),
        MetricData::ExponentialHistogram { points, temporality } => (
            "exponentialHistogram",
            json!({
                "dataPoints": points.iter().map(exponential_point).collect::<Vec<_>>(),
                "aggregationTemporality": *temporality as u8,
            }),
        ),
    };
    out.insert(key.into(), data);
    Json::Object(out)
}

fn number_into(out: &mut Json, n: Number) {
    match n {
        Number::Double(f) => out["asDouble"] = double(f),
        Number::Int(i) => out["asInt"] = json!(i.to_string()),
    }
}

fn number_point(p: &NumberPoint) -> Json {
    let mut out = json!({
        "attributes": attributes(&p.attributes),
        "startTimeUnixNano": u64s(p.start),
        "timeUnixNano": u64s(p.time),
        "exemplars": p.exemplars.iter().map(exemplar).collect::<Vec<_>>(),
    });
    number_into(&mut out, p.value);
    out
}

fn optional_doubles(out: &mut Json, fields: [(&str, Option<f64>); 3]) {
    for (name, value) in fields {
        if let Some(v) = value {
            out[name] = double(v);
        }
    }
}

fn histogram_point(p: &HistogramPoint) -> Json {
    let mut out = json!({
        "attributes": attributes(&p.attributes),
        "startTimeUnixNano": u64s(p.start),
        "timeUnixNano": u64s(p.time),
        "count": u64s(p.count),
        "bucketCounts": p.bucket_counts.iter().map(|c| u64s(*c)).collect::<Vec<_>>(),
        "explicitBounds": p.bounds.iter().map(|b| double(*b)).collect::<Vec<_>>(),
        "exemplars": p.exemplars.iter().map(exemplar).collect::<Vec<_>>(),
    });
    optional_doubles(&mut out, [("sum", p.sum), ("min", p.min), ("max", p.max)]);
    out
}

fn exponential_point(p: &ExponentialHistogramPoint) -> Json {
    let buckets = |b: &Buckets| json!({ "offset": b.offset, "bucketCounts": b.counts.iter().map(|c| u64s(*c)).collect::<Vec<_>>() });
    let mut out = json!({
        "attributes": attributes(&p.attributes),
        "startTimeUnixNano": u64s(p.start),
        "timeUnixNano": u64s(p.time),
        "count": u64s(p.count),
        "scale": p.scale,
        "zeroCount": u64s(p.zero_count),
        "positive": buckets(&p.positive),
        "negative": buckets(&p.negative),
        "zeroThreshold": double(p.zero_threshold),
        "exemplars": p.exemplars.iter().map(exemplar).collect::<Vec<_>>(),
    });
    optional_doubles(&mut out, [("sum", p.sum), ("min", p.min), ("max", p.max)]);
    out
}

fn exemplar(e: &Exemplar) -> Json {
    let mut out = json!({
        "filteredAttributes": attributes(&e.filtered_attributes),
        "timeUnixNano": u64s(e.time),
    });
    number_into(&mut out, e.value);
    if let Some(span) = &e.span_id {
        out["spanId"] = json!(span.to_string());
    }
    if let Some(trace) = &e.trace_id {
        out["traceId"] = json!(trace.to_string());
    }
    out
}
