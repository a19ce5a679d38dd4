//! Every OTLP protocol weft speaks (HTTP with protobuf, HTTP with JSON, gRPC),
//! against a receiver that decodes with the OpenTelemetry project's own classes.

use std::time::Duration;

use weft_runtime::telemetry::model::{KeyValue, LogRecord, SpanKind, Value, now_nanos};
use weft_runtime::telemetry::{Outcome, Telemetry, TelemetrySettings};
use weft_testkit::{OtlpReceiver, otlp_attribute};

async fn exports_every_signal(receiver: &OtlpReceiver, protocol: &str, encoding: &str) {
    let settings: TelemetrySettings = serde_json::from_value(serde_json::json!({
        "endpoint": receiver.url(),
        "protocol": protocol,
        "exportInterval": "100ms",
        "metricsInterval": "100ms",
    }))
    .unwrap();
    let telemetry = Telemetry::start(&settings, vec![KeyValue::new("weft.host.id", "h-1")]).unwrap();
    let mut span = telemetry.span("probe", SpanKind::Server, None);
    span.set("probe.protocol", protocol);
    let context = span.context().cloned().unwrap();
    drop(span);
    telemetry.log(LogRecord {
        time: now_nanos(),
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(Value::String(format!("over {protocol}"))),
        trace_id: Some(context.trace_id),
        span_id: Some(context.span_id),
        ..LogRecord::default()
    });
    let metrics = telemetry.component_metrics(vec![KeyValue::new("weft.component", "c")]).unwrap();
    metrics.invoked(Duration::from_millis(3), Outcome::Ok);
    telemetry.shutdown().await;

    // The receiver answers an export once it has printed it, but the line reaches
    // this process through a reader thread: wait for what the last export carried.
    let metrics = receiver.wait_for("metrics", |m| {
        ["weft.invocations", "weft.invocation.duration"].iter().all(|name| m.iter().any(|m| m["name"] == *name))
    });
    let exports = receiver.exports("traces");
    assert!(!exports.is_empty());
    let encodings = receiver.encodings();
    assert!(encodings.iter().all(|e| e == encoding), "{protocol}: {encodings:?}");

    let spans = receiver.items("traces");
    let span = spans.iter().find(|s| s["name"] == "probe").unwrap_or_else(|| panic!("{protocol}: {spans:#?}"));
    assert_eq!(span["traceId"], context.trace_id.to_string(), "{protocol}");
    assert_eq!(span["spanId"], context.span_id.to_string(), "{protocol}");
    assert_eq!(span["kind"], "SPAN_KIND_SERVER");
    assert_eq!(otlp_attribute(span, "probe.protocol")["stringValue"], protocol);
    let (resource, _) = receiver.items_with_resource("traces").into_iter().next().unwrap();
    assert_eq!(otlp_attribute(&resource, "weft.host.id")["stringValue"], "h-1");

    let logs = receiver.items("logs");
    let log = logs.iter().find(|l| l["body"]["stringValue"] == format!("over {protocol}")).expect("the log record");
    assert_eq!(log["spanId"], context.span_id.to_string(), "{protocol}");

    let invocations =
        metrics.iter().find(|m| m["name"] == "weft.invocations").unwrap_or_else(|| panic!("{metrics:#?}"));
    assert_eq!(invocations["sum"]["dataPoints"][0]["asInt"], "1", "{protocol}");
    let duration = metrics.iter().find(|m| m["name"] == "weft.invocation.duration").unwrap();
    assert_eq!(duration["histogram"]["dataPoints"][0]["count"], "1", "{protocol}");
}

#[tokio::test(flavor = "multi_thread")]
async fn http_protobuf() {
    exports_every_signal(&OtlpReceiver::start(), "http/protobuf", "protobuf").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_json() {
    exports_every_signal(&OtlpReceiver::start(), "http/json", "json").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc() {
    exports_every_signal(&OtlpReceiver::start_grpc(), "grpc", "grpc").await;
}
