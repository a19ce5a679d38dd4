//! What a `wasi:keyvalue/batch` round costs on each backend: one invocation of
//! `guests/keyvalue-probe batch 1000` sets 1,000 keys (64-byte values) with one
//! `set-many`, reads them back with one `get-many` and removes them with one
//! `delete-many`. Redis and NATS are real servers on loopback, started here.
//!
//! `cargo bench -p weft-plugins --bench keyvalue`. Needs `redis-server` and
//! `nats-server` on the PATH.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use weft_plugins::keyvalue::Settings as Kv;
use weft_runtime::output::{CapturedOutput, Stream};
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{Host, HostApi, HostConfig, RunningWorkload, WorkloadSpec};
use weft_testkit::Server;

const KEYS: usize = 1000;

struct Backend {
    rt: Runtime,
    workload: Arc<RunningWorkload>,
    output: Arc<CapturedOutput>,
    _host: Host,
    _server: Option<Server>,
    _dir: tempfile::TempDir,
}

fn backend(name: &str) -> Backend {
    let rt = Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (kv, server) = match name {
        "memory" => (Kv::Memory, None),
        "filesystem" => (Kv::Filesystem { path: dir.path().join("kv") }, None),
        "redis" => {
            let server = Server::redis();
            (Kv::Redis { url: server.url() }, Some(server))
        }
        "nats" => {
            let server = Server::nats();
            (Kv::Nats { url: server.url() }, Some(server))
        }
        other => panic!("no backend {other}"),
    };
    let output = Arc::new(CapturedOutput::default());
    let (host, workload) = rt.block_on(async {
        let settings = weft_plugins::Settings { keyvalue: kv, ..Default::default() };
        let host = Host::new(HostConfig {
            plugins: weft_plugins::load(&settings).await.unwrap(),
            stdio: GuestStdio::Sink(output.clone()),
            ..HostConfig::default()
        })
        .await
        .unwrap();
        let spec = WorkloadSpec::from_yaml(&format!(
            "name: bench\ncomponents:\n  - {{ name: probe, source: {}, args: [batch, \"{KEYS}\", things] }}\n",
            weft_guests::KEYVALUE_PROBE
        ))
        .unwrap();
        let status = host.workload_start(spec).await.unwrap();
        let workload = host.workload(&status.id).unwrap();
        (host, workload)
    });
    Backend { rt, workload, output, _host: host, _server: server, _dir: dir }
}

fn batches(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("keyvalue batch of {KEYS}"));
    group.sample_size(20);
    for name in ["memory", "filesystem", "redis", "nats"] {
        let b = backend(name);
        group.bench_function(name, |bench| bench.iter(|| b.rt.block_on(b.workload.run("probe")).unwrap()));
        let lines = b.output.lines_of("probe", Stream::Stdout);
        assert!(lines.iter().all(|l| l == &format!("batch {KEYS}: ok")), "{name}: {lines:?}");
    }
    group.finish();
}

criterion_group!(benches, batches);
criterion_main!(benches);
