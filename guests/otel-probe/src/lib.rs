//! An HTTP handler that does what an OpenTelemetry SDK does through `wasi:otel`:
//! reads the host's span around the call, starts and ends a child span of it
//! (with attributes of every JSON kind, an event and the outer span as a link),
//! emits a log record inside that span and exports a counter. It answers
//! `<outer trace id> <outer span id> <its span id>`.
//!
//! `/malformed` ends a span whose trace id is not hex, which the host must drop.

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-io-0.2.0", "../../wit/deps/wasi-clocks", "../../wit/deps/wasi-otel"],
    world: "wasi:otel/imports",
    generate_all,
});

use std::io::Write;

use wasi::clocks::wall_clock;
use wasi::otel::types::{InstrumentationScope, KeyValue, Resource};
use wasi::otel::{logs, metrics, tracing};
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Probe;

fn attribute(key: &str, json: &str) -> KeyValue {
    KeyValue { key: key.into(), value: json.into() }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "otel-probe".into(),
        version: Some("0.0.0".into()),
        schema_url: None,
        attributes: Vec::new(),
    }
}

fn respond(out: ResponseOutparam, body: &str) {
    let response = OutgoingResponse::new(Fields::new());
    let outgoing = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let mut stream = outgoing.write().unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    stream.flush().unwrap();
    drop(stream);
    OutgoingBody::finish(outgoing, None).unwrap();
}

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let outer = tracing::outer_span_context();
        let malformed = request.path_with_query().unwrap_or_default().starts_with("/malformed");
        let span_id = format!("{:016x}", wasip2::random::random::get_random_u64() | 1);
        let context = tracing::SpanContext {
            trace_id: if malformed { "not a trace id".into() } else { outer.trace_id.clone() },
            span_id: span_id.clone(),
            trace_flags: tracing::TraceFlags::SAMPLED,
            is_remote: false,
            trace_state: outer.trace_state.clone(),
        };
        let start = wall_clock::now();
        tracing::on_start(&context);

        logs::on_emit(&logs::LogRecord {
            timestamp: Some(wall_clock::now()),
            observed_timestamp: None,
            severity_text: Some("INFO".into()),
            severity_number: Some(9),
            body: Some("\"probe handled a request\"".into()),
            attributes: Some(vec![attribute("probe.step", "\"log\"")]),
            event_name: None,
            resource: Some(Resource {
                attributes: vec![attribute("service.name", "\"otel-probe-service\"")],
                schema_url: None,
            }),
            instrumentation_scope: Some(scope()),
            trace_id: Some(context.trace_id.clone()),
            span_id: Some(span_id.clone()),
            trace_flags: Some(tracing::TraceFlags::SAMPLED),
        });

        let now = wall_clock::now();
        let counter = metrics::Metric {
            name: "probe.requests".into(),
            description: "requests the probe handled".into(),
            unit: "{request}".into(),
            data: metrics::MetricData::U64Sum(metrics::Sum {
                data_points: vec![metrics::SumDataPoint {
                    attributes: vec![attribute("route", "\"/\"")],
                    value: metrics::MetricNumber::U64(1),
                    exemplars: Vec::new(),
                }],
                start_time: start,
                time: now,
                temporality: metrics::Temporality::Cumulative,
                is_monotonic: true,
            }),
        };
        let exported = metrics::export(&metrics::ResourceMetrics {
            resource: Resource { attributes: Vec::new(), schema_url: None },
            scope_metrics: vec![metrics::ScopeMetrics { scope: scope(), metrics: vec![counter] }],
        });

        tracing::on_end(&tracing::SpanData {
            span_context: context,
            parent_span_id: outer.span_id.clone(),
            span_kind: tracing::SpanKind::Internal,
            name: "probe work".into(),
            start_time: start,
            end_time: wall_clock::now(),
            attributes: vec![
                attribute("probe.string", "\"text\""),
                attribute("probe.int", "42"),
                attribute("probe.double", "2.5"),
                attribute("probe.bool", "true"),
                attribute("probe.array", "[1,2,3]"),
                attribute("probe.bytes", "\"data:application/octet-stream;base64,AAEC\""),
                attribute("probe.not-json", "plain words"),
                attribute("probe.exported", &format!("{}", exported.is_ok())),
            ],
            events: vec![tracing::Event { name: "halfway".into(), time: now, attributes: Vec::new() }],
            links: Vec::new(),
            status: tracing::Status::Ok,
            instrumentation_scope: scope(),
            dropped_attributes: 0,
            dropped_events: 0,
            dropped_links: 0,
        });
        respond(out, &format!("{} {} {span_id}", outer.trace_id, outer.span_id));
    }
}

wasip2::http::proxy::export!(Probe);
