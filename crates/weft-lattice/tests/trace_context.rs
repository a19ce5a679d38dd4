//! Trace context on the control subjects: a client's span and the agent's span
//! for the same request are one trace, as a real OTLP receiver sees it.

use std::time::Duration;

use weft_lattice::{AgentConfig, HostAgent, RemoteHost};
use weft_runtime::telemetry::{SpanContext, Telemetry, TelemetrySettings};
use weft_runtime::{Host, HostApi, HostConfig, WorkloadSpec};
use weft_testkit::{OtlpReceiver, Server, otlp_attribute};

fn settings(receiver: &OtlpReceiver, service: &str) -> TelemetrySettings {
    serde_json::from_value(serde_json::json!({
        "endpoint": receiver.url(),
        "serviceName": service,
        "exportInterval": "100ms",
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_request_and_its_handling_are_one_trace() {
    let receiver = OtlpReceiver::start();
    let nats = Server::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let output = std::sync::Arc::new(weft_runtime::output::CapturedOutput::default());
    let host = Host::new(HostConfig {
        stdio: weft_runtime::wasi::GuestStdio::Sink(output),
        telemetry: Some(settings(&receiver, "weft-host")),
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let id = host.id().to_string();
    let agent = HostAgent::start(host.clone(), client.clone(), AgentConfig::default()).await.unwrap();

    let (caller_trace, caller_span) = ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174");
    let caller = SpanContext::from_headers(&format!("00-{caller_trace}-{caller_span}-01"), None);
    let telemetry = Telemetry::start(&settings(&receiver, "weft-client"), Vec::new()).unwrap();
    let remote = RemoteHost::new(client.clone(), &id, Duration::from_secs(30))
        .with_telemetry(telemetry.clone())
        .with_trace_parent(caller);
    remote.heartbeat().await.unwrap();
    let bad = WorkloadSpec::from_yaml("name: bad\ncomponents: [{ name: c, source: /nowhere.wasm }]\n").unwrap();
    assert!(remote.workload_start(bad).await.is_err());
    // A request without trace context starts a trace of its own.
    client.request(format!("runtime.host.{id}.heartbeat"), "{}".into()).await.unwrap();
    telemetry.shutdown().await;

    let spans = tokio::task::block_in_place(|| {
        receiver.wait_for("traces", |spans| spans.iter().filter(|s| s["kind"] == "SPAN_KIND_SERVER").count() >= 3)
    });
    let find = |name: &str, kind: &str| -> Vec<serde_json::Value> {
        spans.iter().filter(|s| s["name"] == name && s["kind"] == kind).cloned().collect()
    };
    let sent = find("heartbeat", "SPAN_KIND_CLIENT");
    assert_eq!(sent.len(), 1, "{spans:#?}");
    let sent = &sent[0];
    assert_eq!(sent["traceId"], caller_trace);
    assert_eq!(sent["parentSpanId"], caller_span);
    assert_eq!(otlp_attribute(sent, "messaging.system")["stringValue"], "nats");
    let served = find("heartbeat", "SPAN_KIND_SERVER");
    let handled = served.iter().find(|s| s["parentSpanId"] == sent["spanId"]).unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(handled["traceId"], caller_trace);
    assert_eq!(otlp_attribute(handled, "weft.host.id")["stringValue"], id.as_str());
    assert_eq!(
        otlp_attribute(handled, "messaging.destination.name")["stringValue"],
        format!("runtime.host.{id}.heartbeat")
    );
    // The untraced request: a root span.
    assert!(served.iter().any(|s| s["traceId"] != caller_trace && s.get("parentSpanId").is_none()), "{served:#?}");

    // A rejected start: the host's span says why.
    let start = find("workload.start", "SPAN_KIND_SERVER");
    assert_eq!(start.len(), 1, "{spans:#?}");
    assert_eq!(start[0]["traceId"], caller_trace);
    assert_eq!(start[0]["status"]["code"], "STATUS_CODE_ERROR");
    assert!(start[0]["status"]["message"].as_str().unwrap().contains("/nowhere.wasm"), "{}", start[0]);
    let asked = find("workload.start", "SPAN_KIND_CLIENT");
    assert_eq!(asked[0]["spanId"], start[0]["parentSpanId"]);
    agent.shutdown().await;
    host.shutdown().await;
}
