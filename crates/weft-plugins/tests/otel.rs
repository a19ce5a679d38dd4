//! `wasi:otel`: a real guest's spans, log records and metrics reach a real OTLP
//! receiver through the host's pipeline, under the request that caused them.

mod common;

use common::*;
use weft_testkit::{OtlpReceiver, otlp_attribute as attribute};

async fn traced_host(receiver: &OtlpReceiver) -> TestHost {
    let telemetry = serde_json::from_value(serde_json::json!({
        "endpoint": receiver.url(),
        "exportInterval": "100ms",
        "metricsInterval": "200ms",
    }))
    .unwrap();
    let host = host_configured(weft_plugins::Settings::default(), Some(telemetry)).await;
    host.start_ok(&format!(
        "name: traced\ncomponents:\n  - {{ name: probe, source: {OTEL_PROBE} }}\nhostInterfaces:\n{}",
        serve("probe", r#"[{ path: "/*" }]"#)
    ))
    .await;
    host
}

/// Blocks on the receiver without holding up the host's runtime.
fn wait(
    receiver: &OtlpReceiver,
    signal: &str,
    enough: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    tokio::task::block_in_place(|| receiver.wait_for(signal, enough))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guests_span_log_and_metric_join_the_hosts_trace_and_pipeline() {
    let receiver = OtlpReceiver::start();
    let host = traced_host(&receiver).await;
    let (client_trace, client_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let traceparent = format!("00-{client_trace}-{client_span}-01");
    let (status, _, body) =
        request_with(&format!("{}/work", host.base().await), &[("traceparent", traceparent.as_str())]).await;
    assert_eq!(status, 200, "{body}");
    let [outer_trace, outer_span, guest_span]: [&str; 3] =
        body.split(' ').collect::<Vec<_>>().try_into().unwrap_or_else(|_| panic!("{body}"));
    // The guest saw the invocation's span, in the client's trace.
    assert_eq!(outer_trace, client_trace);

    let spans = wait(&receiver, "traces", |spans| spans.iter().any(|s| s["spanId"] == guest_span));
    let invocation = spans.iter().find(|s| s["spanId"] == outer_span).unwrap_or_else(|| panic!("{spans:#?}"));
    assert!(invocation["name"].as_str().unwrap().starts_with("probe "), "{invocation}");
    let server = spans.iter().find(|s| s["spanId"] == invocation["parentSpanId"]).expect("the request's span");
    assert_eq!(server["parentSpanId"], client_span);

    let with_resource = receiver.items_with_resource("traces");
    let (resource, span) = with_resource.iter().find(|(_, s)| s["spanId"] == guest_span).unwrap();
    assert_eq!(span["traceId"], client_trace);
    assert_eq!(span["parentSpanId"], outer_span);
    assert_eq!(span["name"], "probe work");
    assert_eq!(span["status"]["code"], "STATUS_CODE_OK");
    assert_eq!(span["events"][0]["name"], "halfway");
    assert_eq!(attribute(span, "probe.string")["stringValue"], "text");
    assert_eq!(attribute(span, "probe.int")["intValue"], "42");
    assert_eq!(attribute(span, "probe.double")["doubleValue"], 2.5);
    assert_eq!(attribute(span, "probe.bool")["boolValue"], true);
    assert_eq!(attribute(span, "probe.array")["arrayValue"]["values"][2]["intValue"], "3");
    assert_eq!(attribute(span, "probe.bytes")["bytesValue"], "AAEC");
    assert_eq!(attribute(span, "probe.not-json")["stringValue"], "plain words");
    assert_eq!(attribute(span, "probe.exported")["boolValue"], true);
    for (key, value) in [("weft.component", "probe"), ("weft.workload", "traced"), ("service.name", "probe")] {
        assert_eq!(attribute(resource, key)["stringValue"], value, "{resource}");
    }

    wait(&receiver, "logs", |logs| logs.iter().any(|l| l["spanId"] == guest_span));
    let with_resource = receiver.items_with_resource("logs");
    let (resource, log) = with_resource.iter().find(|(_, l)| l["spanId"] == guest_span).expect("the guest's record");
    assert_eq!(log["traceId"], client_trace);
    assert_eq!(log["body"]["stringValue"], "probe handled a request");
    assert_eq!(log["severityNumber"], "SEVERITY_NUMBER_INFO");
    // The guest names its service; the identity weft gave it stays.
    assert_eq!(attribute(resource, "service.name")["stringValue"], "otel-probe-service");
    assert_eq!(attribute(resource, "weft.component")["stringValue"], "probe");

    let metrics = wait(&receiver, "metrics", |m| m.iter().any(|m| m["name"] == "probe.requests"));
    let counter = metrics.iter().find(|m| m["name"] == "probe.requests").unwrap_or_else(|| panic!("{metrics:#?}"));
    assert_eq!(counter["sum"]["isMonotonic"], true);
    assert_eq!(counter["sum"]["dataPoints"][0]["asInt"], "1");
    assert_eq!(attribute(&counter["sum"]["dataPoints"][0], "route")["stringValue"], "/");
    host.host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_span_with_a_malformed_id_is_dropped_and_counted() {
    let receiver = OtlpReceiver::start();
    let host = traced_host(&receiver).await;
    let (status, body) = get(&format!("{}/malformed", host.base().await)).await;
    assert_eq!(status, 200, "{body}");
    let dropped = |metrics: &[serde_json::Value]| -> Option<String> {
        let metric = metrics.iter().rev().find(|m| m["name"] == "weft.telemetry.dropped")?;
        let points = metric["sum"]["dataPoints"].as_array()?;
        let span = points.iter().find(|p| attribute(p, "kind")["stringValue"] == "span")?;
        span["asInt"].as_str().map(str::to_string)
    };
    let metrics = wait(&receiver, "metrics", |m| dropped(m).is_some());
    assert_eq!(dropped(&metrics).as_deref(), Some("1"), "{metrics:#?}");
    // The request's own spans still went out; the guest's did not.
    let spans = wait(&receiver, "traces", |spans| spans.iter().any(|s| s["kind"] == "SPAN_KIND_SERVER"));
    assert!(spans.iter().any(|s| s["kind"] == "SPAN_KIND_SERVER"), "{spans:#?}");
    assert!(!spans.iter().any(|s| s["name"] == "probe work"), "{spans:#?}");
    host.host.shutdown().await;
}
