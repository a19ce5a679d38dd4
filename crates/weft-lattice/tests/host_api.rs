//! The host API over a real nats-server: one behaviour run against an in-process
//! host and against the same host through its agent, and wasmCloud's wire format
//! spoken by hand (JSON written from the protos, no weft types) to the agent.

use std::time::Duration;

use weft_lattice::{AgentConfig, HostAgent, RemoteHost};
use weft_runtime::{Host, HostApi, HostConfig, HostError, WorkloadId, WorkloadSpec, WorkloadState};
use weft_testkit::Server;

async fn host() -> Host {
    let output = std::sync::Arc::new(weft_runtime::output::CapturedOutput::default());
    Host::new(HostConfig { stdio: weft_runtime::wasi::GuestStdio::Sink(output), ..HostConfig::default() })
        .await
        .unwrap()
}

fn spec(yaml: &str) -> WorkloadSpec {
    WorkloadSpec::from_yaml(yaml).unwrap()
}

/// The same expectations, whoever serves the API.
async fn behaves_as_a_host(api: &impl HostApi, host_id: &str) {
    let beat = api.heartbeat().await.unwrap();
    assert_eq!(beat.host_id, host_id);
    assert_eq!(beat.workloads, 0);
    assert!(beat.interfaces.iter().any(|i| i.starts_with("wasi:cli/environment")), "{:?}", beat.interfaces);

    let service = format!(
        "name: ticking\nservice: {{ name: svc, source: {}, env: {{ TICKS: \"1000000\" }} }}\n",
        weft_guests::TICKER
    );
    let id = WorkloadId("wl-1".into());
    let started = api.workload_start_as(id.clone(), spec(&service)).await.unwrap();
    assert_eq!((started.id.clone(), started.state), (id.clone(), WorkloadState::Running));
    assert_eq!(api.workload_status(&id).await.unwrap().state, WorkloadState::Running);
    assert_eq!(api.heartbeat().await.unwrap().workloads, 1);
    let listed = api.workload_list().await.unwrap();
    assert_eq!(listed.iter().map(|s| (s.id.clone(), s.name.as_str())).collect::<Vec<_>>(), [(id.clone(), "ticking")]);

    // One id starts once.
    let again = api.workload_start_as(id.clone(), spec(&service.replace("ticking", "other"))).await;
    assert!(matches!(again, Err(HostError::DuplicateId(ref d)) if *d == id), "{again:?}");

    // A rejection names its problems.
    let bad = api.workload_start(spec("name: bad\ncomponents: [{ name: c, source: /nowhere.wasm }]\n")).await;
    let Err(HostError::Rejected(rejection)) = bad else { panic!("{bad:?}") };
    assert!(rejection.to_string().contains("/nowhere.wasm does not exist"), "{rejection}");

    let stopped = api.workload_stop(&id).await.unwrap();
    assert_eq!(stopped.state, WorkloadState::Stopped);
    assert!(api.workload_list().await.unwrap().is_empty());
    let unknown = WorkloadId("no-such-workload".into());
    assert!(matches!(api.workload_status(&unknown).await, Err(HostError::NotFound(_))));
    assert!(matches!(api.workload_stop(&unknown).await, Err(HostError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread")]
async fn in_process() {
    let host = host().await;
    behaves_as_a_host(&host, host.id()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_nats() {
    let nats = Server::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let host = host().await;
    let id = host.id().to_string();
    let agent = HostAgent::start(host, client.clone(), AgentConfig::default()).await.unwrap();
    behaves_as_a_host(&RemoteHost::new(client.clone(), &id, Duration::from_secs(60)), &id).await;
    agent.shutdown().await;
    // A host that is gone is an error naming it, at once.
    let gone = RemoteHost::new(client, &id, Duration::from_secs(5)).heartbeat().await.unwrap_err().to_string();
    assert!(gone.contains(&format!("host `{id}`")) && gone.contains("no such host"), "{gone}");
}

/// A client knowing only wasmCloud's protos: JSON by hand, on its subjects.
#[tokio::test(flavor = "multi_thread")]
async fn a_wasmcloud_client_speaks_to_the_agent() {
    use serde_json::{Value, json};
    let nats = Server::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut beats = client.subscribe("runtime.operator.heartbeat.>").await.unwrap();
    client.flush().await.unwrap();
    let host = host().await;
    let id = host.id().to_string();
    let config = AgentConfig { heartbeat_interval: Duration::from_millis(300), ..AgentConfig::default() };
    let _agent = HostAgent::start(host, client.clone(), config).await.unwrap();
    let ask = |command: &str, body: Value| {
        let (client, subject) = (client.clone(), format!("runtime.host.{id}.{command}"));
        async move {
            let reply = client.request(subject, body.to_string().into()).await.unwrap();
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };

    // The first heartbeat comes at once, then on the interval.
    for _ in 0..2 {
        let beat = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut beats))
            .await
            .expect("a heartbeat")
            .unwrap();
        assert_eq!(beat.subject.as_str(), format!("runtime.operator.heartbeat.{id}"));
        let beat: Value = serde_json::from_slice(&beat.payload).unwrap();
        assert_eq!(beat["id"], json!(id));
        assert!(beat["startedAt"].as_str().unwrap().ends_with('Z'));
        let memory: u64 = beat["systemMemoryTotal"].as_str().expect("a 64-bit string").parse().unwrap();
        assert!(memory > 1 << 20, "{beat}");
        assert!(!beat["osKernel"].as_str().unwrap().is_empty(), "{beat}");
        // A float, in percent; zero (left out) only on an idle machine.
        let cpu = beat.get("systemCpuUsage").map_or(0.0, |c| c.as_f64().expect("a number"));
        assert!((0.0..=100.0).contains(&cpu), "{beat}");
        assert!(beat.get("workloadCount").is_none(), "a zero count is left out: {beat}");
    }
    let beat = ask("heartbeat", json!({})).await;
    assert_eq!(beat["id"], json!(id));

    let start = json!({
        "workloadId": "k8s-uid-1",
        "workload": {
            "namespace": "team-a", "name": "hello",
            "witWorld": { "components": [{ "name": "hello", "image": format!("file://{}", weft_guests::HELLO),
                                            "localResources": { "environment": { "HELLO": "x" } } }] },
            "service": { "image": weft_guests::TICKER, "maxRestarts": "2", "localResources": { "environment": { "TICKS": "1000000" } } },
        }
    });
    let started = ask("workload.start", start.clone()).await;
    assert_eq!(started["workloadStatus"]["workloadId"], json!("k8s-uid-1"), "{started}");
    assert_eq!(started["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_RUNNING"), "{started}");
    let beat = ask("heartbeat", json!({})).await;
    assert_eq!(beat["workloadCount"], json!("1"), "64-bit counts are strings: {beat}");
    let status = ask("workload.status", json!({ "workloadId": "k8s-uid-1" })).await;
    assert_eq!(status["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_RUNNING"));
    let twice = ask("workload.start", start).await;
    assert_eq!(twice["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_ERROR"));
    assert!(twice["workloadStatus"]["message"].as_str().unwrap().contains("already"), "{twice}");

    // Bad requests: an ERROR reply each, and the running workload is untouched.
    for (command, body) in [
        ("workload.start", "{not json".to_string()),
        ("workload.start", json!({ "workloadId": "x", "workload": { "name": "w", "colour": "red" } }).to_string()),
        ("workload.start", json!({ "workloadId": "x" }).to_string()),
        ("workload.start", json!({ "workload": { "name": "w" } }).to_string()),
        ("workload.status", json!({ "workloadId": 7 }).to_string()),
        ("workload.stop", "[]".to_string()),
        ("workload.frobnicate", "{}".to_string()),
        ("workload.start", format!("{{\"workloadId\":\"{}\"}}", "x".repeat(2 << 20))),
    ] {
        let reply = client.request(format!("runtime.host.{id}.{command}"), body.clone().into()).await;
        let reply: Value = match reply {
            Ok(reply) => serde_json::from_slice(&reply.payload).unwrap(),
            // Past the server's max_payload the request never leaves the client.
            Err(e) => {
                assert!(body.len() > 1 << 20, "{command}: {e}");
                continue;
            }
        };
        assert_eq!(reply["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_ERROR"), "{command} {reply}");
        assert!(!reply["workloadStatus"]["message"].as_str().unwrap().is_empty(), "{reply}");
    }
    let status = ask("workload.status", json!({ "workloadId": "k8s-uid-1" })).await;
    assert_eq!(status["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_RUNNING"));

    let stopped = ask("workload.stop", json!({ "workloadId": "k8s-uid-1" })).await;
    assert_eq!(stopped["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_STOPPING"), "{stopped}");
    let unknown = ask("workload.status", json!({ "workloadId": "never-started" })).await;
    assert_eq!(unknown["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_NOT_FOUND"));
    assert_eq!(unknown["workloadStatus"]["workloadId"], json!("never-started"));
}

/// Hosts answer discovery with their heartbeat; placement takes the matching one.
#[tokio::test(flavor = "multi_thread")]
async fn hosts_are_discovered_and_placement_follows_labels() {
    let nats = Server::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut agents = Vec::new();
    for zone in ["a", "b"] {
        let output = std::sync::Arc::new(weft_runtime::output::CapturedOutput::default());
        let host = Host::new(HostConfig {
            labels: [("zone".to_string(), zone.to_string())].into_iter().collect(),
            stdio: weft_runtime::wasi::GuestStdio::Sink(output),
            ..HostConfig::default()
        })
        .await
        .unwrap();
        agents.push(HostAgent::start(host, client.clone(), AgentConfig::default()).await.unwrap());
    }
    let hosts = weft_lattice::client::discover(&client, &Default::default(), Duration::from_millis(500)).await.unwrap();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    let wanted = [("zone".to_string(), "b".to_string())];
    let chosen = weft_lattice::client::place(&hosts, &wanted).unwrap();
    assert_eq!(chosen.id, agents[1].host().id());
    for agent in agents {
        agent.shutdown().await;
    }
    assert!(
        weft_lattice::client::discover(&client, &Default::default(), Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
}

/// nats-server restarted under a running host: the host reconnects, resubscribes
/// and heartbeats at once (not at its next tick, an hour away here).
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_nats_server_finds_the_host_again() {
    let mut nats = Server::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let observer = async_nats::connect(nats.url()).await.unwrap();
    let mut beats = observer.subscribe("runtime.operator.heartbeat.>").await.unwrap();
    observer.flush().await.unwrap();
    let host = host().await;
    let id = host.id().to_string();
    let config = AgentConfig { heartbeat_interval: Duration::from_secs(3600), ..AgentConfig::default() };
    let _agent = HostAgent::start(host, client.clone(), config).await.unwrap();
    next_beat(&mut beats).await;
    nats.restart();
    let beat = next_beat(&mut beats).await;
    assert_eq!(beat.subject.as_str(), format!("runtime.operator.heartbeat.{id}"));
    let remote = RemoteHost::new(client, &id, Duration::from_secs(2));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match remote.heartbeat().await {
            Ok(beat) => break assert_eq!(beat.host_id, id),
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "the host never answered again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn next_beat(beats: &mut async_nats::Subscriber) -> async_nats::Message {
    let wait = tokio::time::timeout(Duration::from_secs(15), futures_util::StreamExt::next(beats));
    wait.await.expect("a heartbeat").unwrap()
}

/// A host that vanishes without a word (its process killed) is shown as lost once
/// it has missed its heartbeats; one that stops cleanly is not shown at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_gone_silent_is_lost_and_a_stopped_one_is_forgotten() {
    let nats = Server::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let config = || AgentConfig { heartbeat_interval: Duration::from_millis(200), ..AgentConfig::default() };
    let silent = HostAgent::start(host().await, client.clone(), config()).await.unwrap();
    let clean = HostAgent::start(host().await, client.clone(), config()).await.unwrap();
    let (silent_id, clean_id) = (silent.host().id().to_string(), clean.host().id().to_string());
    let states = || async {
        let hosts =
            weft_lattice::client::known_hosts(&client, &Default::default(), Duration::from_millis(300)).await.unwrap();
        hosts.into_iter().map(|h| (h.heartbeat.id, h.state)).collect::<std::collections::HashMap<_, _>>()
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = states().await;
    assert_eq!(seen.get(&silent_id).map(String::as_str), Some("live"), "{seen:?}");
    assert_eq!(seen.get(&clean_id).map(String::as_str), Some("live"), "{seen:?}");
    // Dropped: its tasks end with no last word, as when its process is killed.
    drop(silent);
    clean.shutdown().await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let seen = states().await;
    assert_eq!(seen.get(&silent_id).map(String::as_str), Some("lost"), "{seen:?}");
    assert!(!seen.contains_key(&clean_id), "{seen:?}");
}

/// wasmCloud's bare `image` references are pulled from the registry they name.
#[tokio::test(flavor = "multi_thread")]
async fn a_wasmcloud_workload_with_registry_images_runs() {
    use serde_json::{Value, json};
    use weft_runtime::source::oci::{OciClient, OciSettings, Reference, RegistrySettings};
    let nats = Server::nats();
    let registry = Server::registry(None);
    let mut oci = OciSettings { docker_config: Some("/nonexistent/config.json".into()), ..OciSettings::default() };
    oci.registries.insert(registry.url(), RegistrySettings { insecure: true, ..RegistrySettings::default() });
    let pusher = OciClient::new(oci.clone(), None, 1 << 30);
    for (guest, name) in [(weft_guests::TICKER, "ticker"), (weft_guests::HELLO, "hello")] {
        let reference = Reference::parse(&format!("{}/acme/{name}:1", registry.url())).unwrap();
        pusher.push(&reference, std::fs::read(guest).unwrap(), Default::default()).await.unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let output = std::sync::Arc::new(weft_runtime::output::CapturedOutput::default());
    let host = Host::new(HostConfig {
        stdio: weft_runtime::wasi::GuestStdio::Sink(output),
        engine: weft_runtime::engine::EngineConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..weft_runtime::engine::EngineConfig::default()
        },
        oci,
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let id = host.id().to_string();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let _agent = HostAgent::start(host.clone(), client.clone(), AgentConfig::default()).await.unwrap();
    let ask = |body: Value| {
        let (client, subject) = (client.clone(), format!("runtime.host.{id}.workload.start"));
        async move {
            let reply = client.request(subject, body.to_string().into()).await.unwrap();
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };
    let url = registry.url();
    let started = ask(json!({
        "workloadId": "pulled-1",
        "workload": {
            "name": "pulled",
            "witWorld": { "components": [{ "name": "hello", "image": format!("oci://{url}/acme/hello:1") }] },
            "service": { "image": format!("{url}/acme/ticker:1"), "localResources": { "environment": { "TICKS": "1000000" } } },
        }
    }))
    .await;
    assert_eq!(started["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_RUNNING"), "{started}");
    assert_eq!(host.oci_stats().blobs, 2);

    let missing = ask(json!({
        "workloadId": "pulled-2",
        "workload": { "name": "other", "service": { "image": format!("{url}/acme/nothing:1") } }
    }))
    .await;
    assert_eq!(missing["workloadStatus"]["workloadState"], json!("WORKLOAD_STATE_ERROR"), "{missing}");
    let message = missing["workloadStatus"]["message"].as_str().unwrap();
    assert!(message.contains("acme/nothing:1: not found in the registry"), "{message}");
}

/// Two named lattices on one nats-server see nothing of each other: hosts,
/// requests, uploaded components.
#[tokio::test(flavor = "multi_thread")]
async fn named_lattices_on_one_server_are_apart() {
    use weft_lattice::Lattice;
    use weft_lattice::components::ComponentStore;
    use weft_runtime::source::DigestStore;
    let nats = Server::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let (blue, green) = (Lattice::named("blue").unwrap(), Lattice::named("green").unwrap());
    let blue_host = host().await;
    let blue_id = blue_host.id().to_string();
    let config = AgentConfig { lattice: blue.clone(), ..AgentConfig::default() };
    let _agent = HostAgent::start(blue_host, client.clone(), config).await.unwrap();

    let wait = Duration::from_millis(300);
    let found = weft_lattice::client::discover(&client, &blue, wait).await.unwrap();
    assert_eq!(found.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), [blue_id.as_str()]);
    assert!(weft_lattice::client::discover(&client, &green, wait).await.unwrap().is_empty());
    assert!(weft_lattice::client::discover(&client, &Lattice::default(), wait).await.unwrap().is_empty());
    let in_blue = RemoteHost::new(client.clone(), &blue_id, Duration::from_secs(5)).in_lattice(blue.clone());
    assert_eq!(in_blue.heartbeat().await.unwrap().host_id, blue_id);
    for other in [green.clone(), Lattice::default()] {
        let elsewhere = RemoteHost::new(client.clone(), &blue_id, Duration::from_secs(5)).in_lattice(other);
        let e = elsewhere.heartbeat().await.unwrap_err().to_string();
        assert!(e.contains("no such host"), "{e}");
    }

    let (digest, _) = ComponentStore::new(client.clone(), &blue).upload(b"blue bytes").await.unwrap();
    let green_store = ComponentStore::new(client.clone(), &green);
    let e = green_store.fetch(&digest, 1 << 20).await.unwrap_err();
    assert!(e.contains("weft_components_green"), "{e}");
    assert_eq!(ComponentStore::new(client, &blue).fetch(&digest, 1 << 20).await.unwrap(), b"blue bytes");
}
