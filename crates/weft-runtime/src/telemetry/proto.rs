//! OTLP's protobuf encoding (`opentelemetry/proto/collector/*/v1`), written out
//! by hand: weft only ever encodes these few messages, and a protobuf code
//! generator would cost more build than the encoder is long.

use super::model::*;

/// A protobuf message being written. Fields at their default value are left
/// out, as proto3 does.
#[derive(Default)]
struct Writer(Vec<u8>);

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    /// `sint32`: zigzag.
    fn sint(&mut self, field: u32, v: i32) {
        self.uint(field, ((v << 1) ^ (v >> 31)) as u32 as u64);
    }

    fn bool(&mut self, field: u32, v: bool) {
        self.uint(field, u64::from(v));
    }

    fn fixed64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn fixed32(&mut self, field: u32, v: u32) {
        if v != 0 {
            self.key(field, FIXED32);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A `double` always written (a `oneof` member or `optional` field).
    fn double_present(&mut self, field: u32, v: f64) {
        self.key(field, FIXED64);
        self.0.extend_from_slice(&v.to_le_bytes());
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.double_present(field, v);
        }
    }

    fn bytes(&mut self, field: u32, v: &[u8]) {
        if !v.is_empty() {
            self.bytes_present(field, v);
        }
    }

    fn bytes_present(&mut self, field: u32, v: &[u8]) {
        self.key(field, LEN);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }

    fn string(&mut self, field: u32, v: &str) {
        self.bytes(field, v.as_bytes());
    }

    /// An embedded message, written even when empty (presence matters for
    /// `oneof` members and for repeated messages).
    fn message(&mut self, field: u32, write: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        write(&mut inner);
        self.bytes_present(field, &inner.0);
    }

    fn packed_fixed64(&mut self, field: u32, values: &[u64]) {
        if !values.is_empty() {
            self.key(field, LEN);
            self.varint(8 * values.len() as u64);
            for v in values {
                self.0.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn packed_double(&mut self, field: u32, values: &[f64]) {
        if !values.is_empty() {
            self.key(field, LEN);
            self.varint(8 * values.len() as u64);
            for v in values {
                self.0.extend_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn packed_uint(&mut self, field: u32, values: &[u64]) {
        if !values.is_empty() {
            let mut inner = Writer::default();
            for v in values {
                inner.varint(*v);
            }
            self.bytes_present(field, &inner.0);
        }
    }
}

fn any_value(w: &mut Writer, value: &Value) {
    match value {
        Value::String(s) => w.bytes_present(1, s.as_bytes()),
        Value::Bool(b) => {
            w.key(2, VARINT);
            w.varint(u64::from(*b));
        }
        Value::Int(i) => {
            w.key(3, VARINT);
            w.varint(*i as u64);
        }
        Value::Double(f) => w.double_present(4, *f),
        Value::Array(values) => w.message(5, |w| {
            for v in values {
                w.message(1, |w| any_value(w, v));
            }
        }),
        Value::Map(entries) => w.message(6, |w| attributes(w, 1, entries)),
        Value::Bytes(b) => w.bytes_present(7, b),
    }
}

fn attributes(w: &mut Writer, field: u32, kvs: &[KeyValue]) {
    for kv in kvs {
        w.message(field, |w| {
            w.string(1, &kv.key);
            w.message(2, |w| any_value(w, &kv.value));
        });
    }
}

fn resource(w: &mut Writer, r: &Resource) {
    w.message(1, |w| attributes(w, 1, &r.attributes));
}

fn scope(w: &mut Writer, s: &Scope) {
    w.message(1, |w| {
        w.string(1, &s.name);
        w.string(2, &s.version);
        attributes(w, 3, &s.attributes);
    });
}

/// An `Export*ServiceRequest`: per group a `Resource*` message holding its
/// resource and one `Scope*` message with the items (the same field numbers
/// for traces, logs and metrics).
fn resource_groups<T>(groups: &[Group<T>], item: fn(&mut Writer, &T)) -> Vec<u8> {
    let mut w = Writer::default();
    for group in groups {
        w.message(1, |w| {
            resource(w, &group.resource);
            w.message(2, |w| {
                scope(w, &group.scope);
                for i in &group.items {
                    w.message(2, |w| item(w, i));
                }
                w.string(3, &group.scope.schema_url);
            });
            w.string(3, &group.resource.schema_url);
        });
    }
    w.0
}

/// `ExportTraceServiceRequest`.
pub fn traces(groups: &[Group<Span>]) -> Vec<u8> {
    resource_groups(groups, span)
}

fn span(w: &mut Writer, s: &Span) {
    w.bytes(1, &s.trace_id.0);
    w.bytes(2, &s.span_id.0);
    w.string(3, &s.trace_state);
    if let Some(parent) = &s.parent_span_id {
        w.bytes(4, &parent.0);
    }
    w.string(5, &s.name);
    w.uint(6, s.kind as u64);
    w.fixed64(7, s.start);
    w.fixed64(8, s.end);
    attributes(w, 9, &s.attributes);
    w.uint(10, s.dropped_attributes.into());
    for event in &s.events {
        w.message(11, |w| {
            w.fixed64(1, event.time);
            w.string(2, &event.name);
            attributes(w, 3, &event.attributes);
        });
    }
    w.uint(12, s.dropped_events.into());
    for link in &s.links {
        w.message(13, |w| {
            w.bytes(1, &link.trace_id.0);
            w.bytes(2, &link.span_id.0);
            w.string(3, &link.trace_state);
            attributes(w, 4, &link.attributes);
            w.fixed32(6, link.flags);
        });
    }
    w.uint(14, s.dropped_links.into());
    w.message(15, |w| match &s.status {
        Status::Unset => {}
        Status::Ok => w.uint(3, 1),
        Status::Error(message) => {
            w.string(2, message);
            w.uint(3, 2);
        }
    });
    w.fixed32(16, s.flags);
}

/// `ExportLogsServiceRequest`.
pub fn logs(groups: &[Group<LogRecord>]) -> Vec<u8> {
    resource_groups(groups, log_record)
}

fn log_record(w: &mut Writer, r: &LogRecord) {
    w.fixed64(1, r.time);
    w.uint(2, r.severity_number.into());
    w.string(3, &r.severity_text);
    if let Some(body) = &r.body {
        w.message(5, |w| any_value(w, body));
    }
    attributes(w, 6, &r.attributes);
    w.fixed32(8, r.flags);
    if let Some(trace) = &r.trace_id {
        w.bytes(9, &trace.0);
    }
    if let Some(span) = &r.span_id {
        w.bytes(10, &span.0);
    }
    w.fixed64(11, r.observed_time);
    w.string(12, &r.event_name);
}

/// `ExportMetricsServiceRequest`.
pub fn metrics(groups: &[Group<Metric>]) -> Vec<u8> {
    resource_groups(groups, metric)
}

fn metric(w: &mut Writer, m: &Metric) {
    w.string(1, &m.name);
    w.string(2, &m.description);
    w.string(3, &m.unit);
    match &m.data {
        MetricData::Gauge(points) => w.message(5, |w| {
            for p in points {
                w.message(1, |w| number_point(w, p));
            }
        }),
        MetricData::Sum { points, temporality, monotonic } => w.message(7, |w| {
            for p in points {
                w.message(1, |w| number_point(w, p));
            }
            w.uint(2, *temporality as u64);
            w.bool(3, *monotonic);
        }),
        MetricData::Histogram { points, temporality } => w.message(9, |w| {
            for p in points {
                w.message(1, |w| histogram_point(w, p));
            }
            w.uint(2, *temporality as u64);
        }),
        MetricData::ExponentialHistogram { points, temporality } => w.message(10, |w| {
            for p in points {
                w.message(1, |w| exponential_point(w, p));
            }
            w.uint(2, *temporality as u64);
        }),
    }
}

fn number(w: &mut Writer, double_field: u32, int_field: u32, n: Number) {
    match n {
        Number::Double(f) => w.double_present(double_field, f),
        Number::Int(i) => {
            w.key(int_field, FIXED64);
            w.0.extend_from_slice(&i.to_le_bytes());
        }
    }
}

fn number_point(w: &mut Writer, p: &NumberPoint) {
    w.fixed64(2, p.start);
    w.fixed64(3, p.time);
    number(w, 4, 6, p.value);
    for e in &p.exemplars {
        w.message(5, |w| exemplar(w, e));
    }
    attributes(w, 7, &p.attributes);
}

fn histogram_point(w: &mut Writer, p: &HistogramPoint) {
    w.fixed64(2, p.start);
    w.fixed64(3, p.time);
    w.fixed64(4, p.count);
    if let Some(sum) = p.sum {
        w.double_present(5, sum);
    }
    w.packed_fixed64(6, &p.bucket_counts);
    w.packed_double(7, &p.bounds);
    for e in &p.exemplars {
        w.message(8, |w| exemplar(w, e));
    }
    attributes(w, 9, &p.attributes);
    if let Some(min) = p.min {
        w.double_present(11, min);
    }
    if let Some(max) = p.max {
        w.double_present(12, max);
    }
}

fn exponential_point(w: &mut Writer, p: &ExponentialHistogramPoint) {
    attributes(w, 1, &p.attributes);
    w.fixed64(2, p.start);
    w.fixed64(3, p.time);
    w.fixed64(4, p.count);
    if let Some(sum) = p.sum {
        w.double_present(5, sum);
    }
    w.sint(6, p.scale);
    w.fixed64(7, p.zero_count);
    for (field, buckets) in [(8, &p.positive), (9, &p.negative)] {
        w.message(field, |w| {
            w.sint(1, buckets.offset);
            w.packed_uint(2, &buckets.counts);
        });
    }
    for e in &p.exemplars {
        w.message(11, |w| exemplar(w, e));
    }
    if let Some(min) = p.min {
        w.double_present(12, min);
    }
    if let Some(max) = p.max {
        w.double_present(13, max);
    }
    w.double(14, p.zero_threshold);
}

fn exemplar(w: &mut Writer, e: &Exemplar) {
    w.fixed64(2, e.time);
    number(w, 3, 6, e.value);
    if let Some(span) = &e.span_id {
        w.bytes(4, &span.0);
    }
    if let Some(trace) = &e.trace_id {
        w.bytes(5, &trace.0);
    }
    attributes(w, 7, &e.filtered_attributes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag() {
        let mut w = Writer::default();
        w.varint(300);
        assert_eq!(w.0, [0xac, 0x02]);
        let mut w = Writer::default();
        w.sint(1, -1);
        assert_eq!(w.0, [0x08, 0x01]);
        let mut w = Writer::default();
        any_value(&mut w, &Value::Int(-1));
        assert_eq!(w.0.len(), 11, "a negative int64 takes ten bytes after its key");
    }

    #[test]
    fn a_string_attribute() {
        let mut w = Writer::default();
        attributes(&mut w, 1, &[KeyValue::new("a", "b")]);
        // KeyValue{key: "a", value: AnyValue{string_value: "b"}}
        assert_eq!(w.0, [0x0a, 0x08, 0x0a, 0x01, b'a', 0x12, 0x03, 0x0a, 0x01, b'b']);
    }
}
