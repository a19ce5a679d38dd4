//! Local files reach a remote host through the lattice's object store, by
//! digest: uploaded once, fetched and checked by the host, cached after.

use std::sync::Arc;
use std::time::Duration;

use weft_lattice::components::{BUCKET, ComponentStore};
use weft_lattice::{AgentConfig, HostAgent, Lattice, RemoteHost};
use weft_runtime::engine::EngineConfig;
use weft_runtime::limits::ByteSize;
use weft_runtime::manifest::Source;
use weft_runtime::output::{CapturedOutput, Stream};
use weft_runtime::{Host, HostApi, HostConfig, HostError, WorkloadId, WorkloadSpec, WorkloadState};
use weft_testkit::Server;

const LIMIT: ByteSize = ByteSize(64 << 20);

fn greeting(name: &str) -> WorkloadSpec {
    WorkloadSpec::from_yaml(&format!(
        "name: {name}\ncomponents: [{{ name: greeter, source: \"{}\" }}]\nservice: {{ name: client, source: \"{}\", args: [lattice] }}\n",
        weft_guests::GREETER,
        weft_guests::GREETER_CLIENT
    ))
    .unwrap()
}

async fn until_done(remote: &RemoteHost, id: &WorkloadId) -> WorkloadState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = remote.workload_status(id).await.unwrap().state;
        if state != WorkloadState::Running && state != WorkloadState::Starting {
            return state;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_files_travel_by_digest_once_and_are_checked() {
    let nats = Server::nats();
    let cache = tempfile::tempdir().unwrap();
    let output = Arc::new(CapturedOutput::default());
    let host_client = async_nats::connect(nats.url()).await.unwrap();
    let host_store = Arc::new(ComponentStore::new(host_client.clone(), &Lattice::default()));
    let host = Host::new(HostConfig {
        engine: EngineConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            max_instances: 32,
            ..EngineConfig::default()
        },
        stdio: weft_runtime::wasi::GuestStdio::Sink(output.clone()),
        digest_store: Some(host_store.clone()),
        ..HostConfig::default()
    })
    .await
    .unwrap();
    let host_id = host.id().to_string();
    let agent = HostAgent::start(host, host_client, AgentConfig::default()).await.unwrap();

    let client = async_nats::connect(nats.url()).await.unwrap();
    let store = ComponentStore::new(client.clone(), &Lattice::default());
    let remote = RemoteHost::new(client.clone(), &host_id, Duration::from_secs(30));

    let (spec, uploaded) = store.upload_local_sources(&greeting("greet"), LIMIT).await.unwrap();
    assert_eq!(uploaded.len(), 2);
    assert!(uploaded.iter().all(|u| u.sent && u.digest.starts_with("sha256:")), "{uploaded:?}");
    assert!(matches!(&spec.service.as_ref().unwrap().source, Source::Digest(d) if *d == uploaded[1].digest));
    let id = WorkloadId("greet-1".into());
    remote.workload_start_as(id.clone(), spec).await.unwrap();
    assert_eq!(until_done(&remote, &id).await, WorkloadState::Completed);
    assert_eq!(output.lines_of("client", Stream::Stdout), vec!["Hello, lattice!".to_string()]);
    assert_eq!(host_store.counts(), (0, 2));
    remote.workload_stop(&id).await.unwrap();

    // Again: nothing sent, nothing fetched (the host's cache has both).
    let (spec, uploaded) = store.upload_local_sources(&greeting("greet"), LIMIT).await.unwrap();
    assert!(uploaded.iter().all(|u| !u.sent), "{uploaded:?}");
    assert_eq!(store.counts(), (2, 0));
    let id = WorkloadId("greet-2".into());
    remote.workload_start_as(id.clone(), spec).await.unwrap();
    assert_eq!(until_done(&remote, &id).await, WorkloadState::Completed);
    assert_eq!(host_store.counts(), (0, 2));

    // Bytes stored under a digest that is not theirs are refused.
    let forged = format!("sha256:{}", "ab".repeat(32));
    let jetstream = async_nats::jetstream::new(client.clone());
    let bucket = jetstream.get_object_store(BUCKET).await.unwrap();
    bucket.put(forged.as_str(), &mut &b"not the component"[..]).await.unwrap();
    let missing = format!("sha256:{}", "cd".repeat(32));
    let spec = WorkloadSpec::from_yaml(&format!(
        "name: forged\ncomponents:\n  - {{ name: f, source: \"digest://{forged}\" }}\n  - {{ name: m, source: \"digest://{missing}\" }}\n  - {{ name: b, source: \"digest://sha256:00\" }}\n"
    ))
    .unwrap();
    let Err(HostError::Rejected(rejection)) = remote.workload_start(spec).await else { panic!("accepted") };
    let text = rejection.to_string();
    assert!(text.contains("component `f`") && text.contains("the stored bytes have the digest"), "{text}");
    assert!(text.contains("component `m`") && text.contains("not in the lattice's `weft_components` store"), "{text}");
    assert!(text.contains("component `b`") && text.contains("64 lowercase hex"), "{text}");
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_on_no_lattice_explains_digest_sources() {
    let host = Host::new(HostConfig::default()).await.unwrap();
    let spec = WorkloadSpec::from_yaml(&format!(
        "name: d\ncomponents: [{{ name: c, source: \"digest://sha256:{}\" }}]\n",
        "ef".repeat(32)
    ))
    .unwrap();
    let Err(HostError::Rejected(rejection)) = host.workload_start(spec).await else { panic!("accepted") };
    assert!(rejection.to_string().contains("on no lattice"), "{rejection}");
}
