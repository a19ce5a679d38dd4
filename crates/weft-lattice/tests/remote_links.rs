//! Remote links on a real nats-server: a caller on one host, the provider of
//! its import on another. Every kind of value and chains are the link suite's
//! `remote` mode (`weft-runtime/tests/links.rs`); here, what is particular to a
//! lattice: traps come back named, faults of hosts and NATS, load sharing,
//! groups, tracing, malformed calls, both framings, and nothing goes to NATS
//! unless a manifest links to the lattice.

use std::sync::Arc;
use std::time::Duration;

use weft_lattice::Lattice;
use weft_lattice::wrpc::WrpcLinks;
use weft_runtime::output::{CapturedOutput, Stream};
use weft_runtime::wasmtime::component::Val;
use weft_runtime::{Host, HostApi, HostConfig, RunningWorkload, WorkloadSpec};
use weft_testkit::Server;

struct OnHost {
    host: Host,
    output: Arc<CapturedOutput>,
}

async fn host_on(nats: &Server) -> OnHost {
    traced_host_on(nats, None).await
}

async fn traced_host_on(nats: &Server, telemetry: Option<weft_runtime::telemetry::TelemetrySettings>) -> OnHost {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let output = Arc::new(CapturedOutput::default());
    let host = Host::new(HostConfig {
        stdio: weft_runtime::wasi::GuestStdio::Sink(output.clone()),
        remote: Some(WrpcLinks::new(client, Lattice::default())),
        telemetry,
        ..HostConfig::default()
    })
    .await
    .unwrap();
    OnHost { host, output }
}

async fn start(host: &Host, yaml: &str) -> Arc<RunningWorkload> {
    let spec = WorkloadSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let status = host.workload_start(spec).await.unwrap_or_else(|e| panic!("{e}"));
    host.workload(&status.id).unwrap()
}

/// The caller's workload `name`: `values` linked to `values_to` and `faults` to
/// `faults_to` (the lattice, or `local`); `counters` and `pipes`, which hold
/// resources, always to a provider of its own.
fn calling(name: &str, values_to: &str, faults_to: &str, caller_extra: &str) -> String {
    format!(
        r#"
name: {name}
components:
  - {{ name: caller, source: {caller}{caller_extra} }}
  - {{ name: local, source: {provider} }}
links:
  - {{ from: caller, import: "weft:types/values@0.1.0", to: "{values_to}" }}
  - {{ from: caller, import: "weft:types/faults@0.1.0", to: "{faults_to}" }}
  - {{ from: caller, import: "weft:types/counters@0.1.0", to: local }}
  - {{ from: caller, import: "weft:types/pipes@0.1.0", to: local }}
"#,
        caller = weft_guests::TYPES_CALLER,
        provider = weft_guests::TYPES_PROVIDER
    )
}

/// The provider of `values` and `faults` on host B, the caller on host A (with
/// `counters` and `pipes`, which hold resources, from a provider of its own).
async fn pair(nats: &Server) -> (OnHost, OnHost, Arc<RunningWorkload>) {
    let (a, b) = (host_on(nats).await, host_on(nats).await);
    start(
        &b.host,
        &format!(
            "name: served\ncomponents:\n  - name: provider\n    source: {}\n    env: {{ WHO: provider }}\n    \
             serve: [\"weft:types/values@0.1.0\", \"weft:types/faults@0.1.0\"]\n",
            weft_guests::TYPES_PROVIDER
        ),
    )
    .await;
    let caller = start(&a.host, &calling("calling", "lattice", "lattice", ", env: { WHO: caller }")).await;
    (a, b, caller)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_on_the_serving_host_fails_the_call_naming_the_provider() {
    let nats = Server::nats();
    let (_a, _b, caller) = pair(&nats).await;
    let err = caller
        .invoke("caller", "weft:types/scenarios@0.1.0#crash-through", &[Val::String("on purpose".into())])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("remote call of `weft:types/faults@0.1.0#crash` failed"), "{err}");
    assert!(err.contains("in component `provider` on another host"), "{err}");
    // The provider kept its own environment, and the next call works.
    let env = caller.invoke("caller", "weft:types/values@0.1.0#echo-u32", &[Val::U32(7)]).await.unwrap();
    assert_eq!(env, [Val::U32(7)]);
}

/// greeter-client on `a`, linked to the lattice; on `b`, a relay serving the
/// greeter interface, linked to a local greeter.
async fn chain(a: &OnHost, b: &OnHost) -> Arc<RunningWorkload> {
    start(
        &b.host,
        &format!(
            r#"
name: relaying
components:
  - {{ name: relay, source: {relay}, env: {{ RELAY_MARK: via-b }}, serve: ["weft:fixtures/greeter@0.1.0"] }}
  - {{ name: greeter, source: {greeter}, env: {{ GREETING: Ahoy }} }}
links:
  - {{ from: relay, import: "weft:fixtures/greeter@0.1.0", to: greeter }}
"#,
            relay = weft_guests::RELAY,
            greeter = weft_guests::GREETER
        ),
    )
    .await;
    start(
        &a.host,
        &format!(
            "name: asking\ncomponents:\n  - {{ name: a, source: {}, args: [chain] }}\nlinks:\n  - {{ from: a, import: \"weft:fixtures/greeter@0.1.0\", to: lattice }}\n",
            weft_guests::GREETER_CLIENT
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_call_is_one_trace_across_both_hosts() {
    let receiver = weft_testkit::OtlpReceiver::start();
    let settings = || {
        Some(
            serde_json::from_value(serde_json::json!({ "endpoint": receiver.url(), "exportInterval": "100ms" }))
                .unwrap(),
        )
    };
    let nats = Server::nats();
    let (a, b) = (traced_host_on(&nats, settings()).await, traced_host_on(&nats, settings()).await);
    chain(&a, &b).await.run("a").await.unwrap();
    // Each host exports its spans in batches of its own: wait for all three.
    let prefixes = ["a run", "weft:fixtures/greeter@0.1.0/greet", "relay "];
    let spans = tokio::task::block_in_place(|| {
        receiver.wait_for("traces", |spans| {
            prefixes.iter().all(|p| spans.iter().any(|s| s["name"].as_str().is_some_and(|n| n.starts_with(p))))
        })
    });
    let named = |prefix: &str| {
        spans
            .iter()
            .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .unwrap_or_else(|| panic!("no span `{prefix}…`: {spans:#?}"))
    };
    let [run, call, served] = prefixes.map(named);
    assert_eq!(call["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(call["parentSpanId"], run["spanId"]);
    assert_eq!(weft_testkit::otlp_attribute(call, "weft.link.mode")["stringValue"], "remote");
    assert_eq!(served["parentSpanId"], call["spanId"]);
    assert_eq!(served["traceId"], run["traceId"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_workload_without_remote_links_sends_nothing_to_nats() {
    let nats = Server::nats();
    let watcher = async_nats::connect(nats.url()).await.unwrap();
    let mut everything = watcher.subscribe(">").await.unwrap();
    watcher.flush().await.unwrap();
    let a = host_on(&nats).await;
    let w = start(
        &a.host,
        &format!(
            "name: local\ncomponents:\n  - {{ name: a, source: {}, args: [local] }}\n  - {{ name: g, source: {} }}\n",
            weft_guests::GREETER_CLIENT,
            weft_guests::GREETER
        ),
    )
    .await;
    w.run("a").await.unwrap();
    assert_eq!(a.output.lines_of("a", Stream::Stdout), ["Hello, local!"]);
    let seen = tokio::time::timeout(Duration::from_millis(500), futures_util::StreamExt::next(&mut everything)).await;
    assert!(seen.is_err(), "something went to NATS: {:?}", seen.unwrap().map(|m| m.subject));
}

/// `faults` served by `hosts` hosts in one group, each provider's environment
/// naming its host, under `limits`; a caller linked to them on a host of its own.
async fn served_by(nats: &Server, hosts: usize, limits: &str) -> (Vec<OnHost>, OnHost, Arc<RunningWorkload>) {
    let mut serving = Vec::new();
    for i in 0..hosts {
        let b = host_on(nats).await;
        start(
            &b.host,
            &format!(
                "name: served\ncomponents:\n  - name: provider\n    source: {}\n    env: {{ WHO: host-{i} }}\n    \
                 limits: {{ {limits} }}\n    serve: [\"weft:types/faults@0.1.0\", \"weft:types/values@0.1.0\"]\n",
                weft_guests::TYPES_PROVIDER
            ),
        )
        .await;
        serving.push(b);
    }
    let a = host_on(nats).await;
    let caller = start(&a.host, &calling("calling", "lattice", "lattice", ", limits: { timeout: 3s }")).await;
    (serving, a, caller)
}

/// The provider's `WHO`, as the caller sees it through the link.
async fn env_of(caller: &RunningWorkload) -> Result<Val, String> {
    let back = caller
        .invoke("caller", "weft:types/scenarios@0.1.0#env-both", &[Val::String("WHO".into())])
        .await
        .map_err(|e| e.to_string())?;
    let [Val::Tuple(views)] = &back[..] else { panic!("{back:?}") };
    Ok(views[0].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_serving_one_export_share_its_calls() {
    let nats = Server::nats();
    let (_serving, _a, caller) = served_by(&nats, 2, "").await;
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for _ in 0..200 {
        let back = env_of(&caller).await.unwrap();
        *seen.entry(format!("{back:?}")).or_default() += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.values().all(|n| *n > 10), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_the_serving_components_queue_answers_busy() {
    let nats = Server::nats();
    let (_serving, _a, caller) = served_by(&nats, 1, "maxConcurrent: 1, maxQueued: 0, cpuTime: 1s").await;
    let spin = || caller.invoke("caller", "weft:types/scenarios@0.1.0#spin-through", &[]);
    let (first, second) = tokio::join!(spin(), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        spin().await
    });
    let (first, second) = (first.unwrap_err().to_string(), second.unwrap_err().to_string());
    assert!(second.contains("busy"), "{second}");
    assert!(first.contains("CPU time limit"), "{first}");
    assert_eq!(env_of(&caller).await.unwrap(), Val::Option(Some(Box::new(Val::String("host-0".into())))));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_deadline_bounds_a_remote_call() {
    let nats = Server::nats();
    let (_serving, _a, caller) = served_by(&nats, 1, "cpuTime: unlimited, timeout: unlimited").await;
    let started = std::time::Instant::now();
    let err = caller.invoke("caller", "weft:types/scenarios@0.1.0#spin-through", &[]).await.unwrap_err().to_string();
    // Whichever fires first: the remote call's bound, the serving host's bound
    // (the deadline travels with the call), or the invocation's timeout.
    let remote = err.contains("remote call of `weft:types/faults@0.1.0#spin` failed: no answer within");
    let served = err.contains("on another host: the caller's deadline");
    assert!(remote || served || err.contains("timeout") || err.contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_serving_host_that_stops_mid_call_fails_the_call_and_another_host_takes_the_next() {
    let nats = Server::nats();
    let (mut serving, _a, caller) = served_by(&nats, 1, "cpuTime: unlimited, timeout: unlimited").await;
    let started = std::time::Instant::now();
    let doomed = serving.remove(0);
    let (err, ()) = tokio::join!(caller.invoke("caller", "weft:types/scenarios@0.1.0#spin-through", &[]), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        doomed.host.shutdown().await;
    });
    let err = err.unwrap_err().to_string();
    assert!(err.contains("remote call of `weft:types/faults@0.1.0#spin` failed"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(2900), "within the caller's 3 s: {:?}", started.elapsed());
    // No host serves it now: an error at once, naming why.
    let none = env_of(&caller).await.unwrap_err();
    assert!(none.contains("no host of the lattice serves it"), "{none}");
    // A host that starts serving it takes the next call.
    let again = host_on(&nats).await;
    start(
        &again.host,
        &format!(
            "name: served\ncomponents:\n  - name: provider\n    source: {}\n    env: {{ WHO: again }}\n    \
             serve: [\"weft:types/faults@0.1.0\"]\n",
            weft_guests::TYPES_PROVIDER
        ),
    )
    .await;
    assert_eq!(env_of(&caller).await.unwrap(), Val::Option(Some(Box::new(Val::String("again".into())))));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_nats_down_remote_calls_fail_at_once_and_local_links_keep_working() {
    let mut nats = Server::nats();
    let (_serving, _a, caller) = served_by(&nats, 1, "").await;
    assert!(env_of(&caller).await.is_ok());
    nats.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let err = env_of(&caller).await.unwrap_err();
    assert!(err.contains("NATS is not connected"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    // The local link to `counters` does not care.
    let counted =
        caller.invoke("caller", "weft:types/scenarios@0.1.0#merge", &[Val::S64(2), Val::S64(3)]).await.unwrap();
    assert_eq!(counted, [Val::S64(5)]);
    // NATS back: the clients reconnect and resubscribe, and calls cross again.
    nats.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match env_of(&caller).await {
            Ok(v) => break assert_eq!(v, Val::Option(Some(Box::new(Val::String("host-0".into()))))),
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no call crossed after NATS came back: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_unfinished_calls_get_nothing_and_disturb_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wrpc_transport::Invoke;
    let nats = Server::nats();
    let (_serving, _a, caller) = served_by(&nats, 1, "").await;
    let prefix = WrpcLinks::offline(Lattice::default()).prefix(None);
    let raw = wrpc_transport_nats::Client::new(async_nats::connect(nats.url()).await.unwrap(), prefix.clone(), None)
        .await
        .unwrap();
    let no_paths: &[&[Option<usize>]] = &[];
    // A string whose length runs past the bytes, and bytes that are not UTF-8.
    for garbage in [vec![0xff, 0xff, 0xff, 0xff, 0x0f], vec![0x02, 0xff, 0xfe], vec![0x80; 12]] {
        let (mut tx, mut rx) =
            raw.invoke(None, "weft:types/values@0.1.0", "echo-string", garbage.into(), no_paths).await.unwrap();
        tx.shutdown().await.unwrap();
        let mut results = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), rx.read_to_end(&mut results)).await.unwrap().unwrap();
        assert!(results.is_empty(), "{results:?}");
    }
    // A caller that starts a call and never finishes its parameters holds it only
    // for a while; meanwhile every other call goes through.
    let (mut stalled, _rx) =
        raw.invoke(None, "weft:types/values@0.1.0", "echo-string", vec![0x05, b'a'].into(), no_paths).await.unwrap();
    stalled.flush().await.unwrap();
    // The same garbage in weft's own framing is answered with why, as parameters
    // after a well-formed start (1000 ms left, no subject for parts) and as the
    // start itself; a call with nowhere to answer is dropped.
    let plain = async_nats::connect(nats.url()).await.unwrap();
    let subject = format!("{prefix}.call.weft:types/values@0.1.0.echo-string");
    let start = [0xe8, 0x07, 0x00];
    for garbage in [vec![0xff, 0xff, 0xff, 0xff, 0x0f], vec![0x02, 0xff, 0xfe], vec![0x80; 12], vec![]] {
        for (payload, expected) in
            [([&start[..], &garbage].concat(), "unreadable parameters"), (garbage.clone(), "an unreadable call")]
        {
            let asked = plain.request(subject.clone(), payload.into());
            let answer = tokio::time::timeout(Duration::from_secs(5), asked).await.unwrap().unwrap();
            let status = answer.headers.as_ref().and_then(|h| h.get("weft-status")).map(|v| v.to_string());
            assert_eq!(status.as_deref(), Some("error"));
            let why = String::from_utf8_lossy(&answer.payload);
            assert!(why.contains(expected), "{why}");
        }
    }
    plain.publish(subject, [&start[..], &[0x01, b'a']].concat().into()).await.unwrap();
    for _ in 0..3 {
        assert_eq!(env_of(&caller).await.unwrap(), Val::Option(Some(Box::new(Val::String("host-0".into())))));
    }
}

/// Between weft hosts a call is one NATS request and its reply; results larger
/// than a message come in several, and parameters larger than one go over wRPC,
/// failures included.
#[tokio::test(flavor = "multi_thread")]
async fn calls_larger_than_a_nats_message_cross_in_parts_or_over_wrpc() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(&config, "max_payload: 16384\n").unwrap();
    let nats = Server::nats_with(&["-c", config.to_str().unwrap()]);
    let (a, b) = (host_on(&nats).await, host_on(&nats).await);
    let who: String = (0..100_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    start(
        &b.host,
        &format!(
            "name: served\ncomponents:\n  - name: provider\n    source: {}\n    env: {{ WHO: {who} }}\n    \
             serve: [\"weft:types/values@0.1.0\", \"weft:types/faults@0.1.0\"]\n",
            weft_guests::TYPES_PROVIDER
        ),
    )
    .await;
    let caller = start(&a.host, &calling("calling", "lattice", "lattice", "")).await;
    // Small parameters, results of seven messages.
    assert_eq!(env_of(&caller).await.unwrap(), Val::Option(Some(Box::new(Val::String(who.clone())))));
    // Parameters of seven messages: wRPC, both ways.
    let bytes = Val::List(who.bytes().map(Val::U8).collect());
    let back =
        caller.invoke("caller", "weft:types/values@0.1.0#echo-bytes", std::slice::from_ref(&bytes)).await.unwrap();
    assert_eq!(back, [bytes]);
    let err = caller
        .invoke("caller", "weft:types/scenarios@0.1.0#crash-through", &[Val::String(who.clone())])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("remote call of `weft:types/faults@0.1.0#crash` failed"), "{err}");
    assert!(err.contains("in component `provider` on another host"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_can_tell_whether_an_interface_is_served() {
    use weft_runtime::remote::RemoteLinks;
    let nats = Server::nats();
    let links = WrpcLinks::new(async_nats::connect(nats.url()).await.unwrap(), Lattice::default());
    assert!(!links.is_served(None, "weft:types/faults@0.1.0").await);
    let (serving, _a, _caller) = served_by(&nats, 1, "").await;
    assert!(links.is_served(None, "weft:types/faults@0.1.0").await);
    assert!(!links.is_served(Some("elsewhere"), "weft:types/faults@0.1.0").await);
    // Stopped, it serves no more.
    for s in serving {
        s.host.shutdown().await;
    }
    assert!(!links.is_served(None, "weft:types/faults@0.1.0").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_is_served_apart_and_reused_instances_serve_it() {
    let nats = Server::nats();
    let (a, b) = (host_on(&nats).await, host_on(&nats).await);
    start(
        &b.host,
        &format!(
            "name: served\ncomponents:\n  - name: provider\n    source: {}\n    env: {{ WHO: grouped }}\n    \
             reuseInstances: true\n    serve: [{{ interface: \"weft:types/faults@0.1.0\", group: eu }}]\n",
            weft_guests::TYPES_PROVIDER
        ),
    )
    .await;
    let workload = |name: &str, to: &str| calling(name, "local", to, "");
    let in_group = start(&a.host, &workload("in-group", "lattice:eu")).await;
    for _ in 0..5 {
        assert_eq!(env_of(&in_group).await.unwrap(), Val::Option(Some(Box::new(Val::String("grouped".into())))));
    }
    let elsewhere = start(&a.host, &workload("elsewhere", "lattice")).await;
    let err = env_of(&elsewhere).await.unwrap_err();
    assert!(err.contains("no host of the lattice serves it"), "{err}");
}
