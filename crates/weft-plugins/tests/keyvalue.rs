//! wasi:keyvalue through the http-keyvalue-counter example, on every backend.

mod common;

use std::time::Duration;

use common::*;
use weft_plugins::keyvalue::Settings as Kv;
use weft_testkit::Server;

fn counter_workload(name: &str) -> String {
    format!(
        "name: {name}\ncomponents:\n  - {{ name: counter, source: {HTTP_KEYVALUE_COUNTER}, limits: {{ maxConcurrent: 64, maxQueued: 1000 }} }}\nhostInterfaces:\n{}",
        serve("counter", r#"[{ path: "/*" }]"#)
    )
}

async fn host_with_kv(kv: Kv) -> TestHost {
    host_with(weft_plugins::Settings { keyvalue: kv, ..Default::default() }).await
}

/// 1,000 requests from 50 concurrent clients; then the count.
async fn thousand_requests(t: &TestHost) -> (u16, String) {
    let base = t.base().await;
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let url = format!("{base}/hit");
            tokio::spawn(async move {
                for _ in 0..20 {
                    let (status, body) = get(&url).await;
                    assert_eq!(status, 200, "{body}");
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    get(&format!("{base}/count")).await
}

/// The body of the first 200 answer from `url`, asked every 200 ms while NATS
/// operations fail; fails the test if none comes `within`.
async fn first_success(url: &str, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = get(url).await;
        if status == 200 {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "NATS operations did not start working: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_exactly_in_memory() {
    let t = host_with_kv(Kv::Memory).await;
    t.start_ok(&counter_workload("count")).await;
    assert_eq!(thousand_requests(&t).await, (200, "1000\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_exactly_on_the_filesystem_and_survives_a_host_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = host_with_kv(Kv::Filesystem { path: dir.path().to_path_buf() }).await;
    t.start_ok(&counter_workload("count")).await;
    assert_eq!(thousand_requests(&t).await, (200, "1000\n".into()));
    t.host.shutdown().await;
    drop(t);

    let again = host_with_kv(Kv::Filesystem { path: dir.path().to_path_buf() }).await;
    again.start_ok(&counter_workload("count")).await;
    assert_eq!(get(&format!("{}/count", again.base().await)).await, (200, "1000\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_exactly_in_redis() {
    let redis = Server::redis();
    let t = host_with_kv(Kv::Redis { url: redis.url() }).await;
    t.start_ok(&counter_workload("count")).await;
    assert_eq!(thousand_requests(&t).await, (200, "1000\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_exactly_in_nats_and_rides_out_a_nats_restart() {
    let mut nats = Server::nats();
    let t = host_with_kv(Kv::Nats { url: nats.url() }).await;
    t.start_ok(&counter_workload("count")).await;
    assert_eq!(thousand_requests(&t).await, (200, "1000\n".into()));

    let count = format!("{}/count", t.base().await);
    nats.stop();
    let (status, body) = get(&count).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("key-value error") && body.contains("NATS"), "{body}");

    nats.restart();
    // The client reconnects on its own; no restart of weft.
    assert_eq!(first_success(&count, Duration::from_secs(20)).await, "1000\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_started_before_nats_fails_clearly_then_serves_once_nats_is_up() {
    let mut nats = Server::nats();
    nats.stop();
    let t = host_with_kv(Kv::Nats { url: nats.url() }).await;
    t.start_ok(&counter_workload("early")).await;
    let hit = format!("{}/hit", t.base().await);
    // No operation waits for a connection that is not there.
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), get(&hit)).await.expect("no request hangs");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("NATS: not connected"), "{body}");

    nats.restart();
    assert_eq!(first_success(&hit, Duration::from_secs(30)).await, "1\n", "the failed requests counted nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn buckets_are_per_workload_unless_shared() {
    let t = host_with_kv(Kv::Memory).await;
    let workload = |name: &str, path: &str, shared: bool| {
        let shared = if shared {
            "  - { interface: \"wasi:keyvalue/store@0.2.0-draft\", config: { sharedBuckets: [counter] } }\n"
        } else {
            ""
        };
        format!(
            "name: {name}\ncomponents:\n  - {{ name: c, source: {HTTP_KEYVALUE_COUNTER} }}\nhostInterfaces:\n{}{shared}",
            serve("c", &format!("[{{ path: \"/{path}/*\" }}]"))
        )
    };
    t.start_ok(&workload("one", "one", false)).await;
    t.start_ok(&workload("two", "two", false)).await;
    t.start_ok(&workload("three", "three", true)).await;
    t.start_ok(&workload("four", "four", true)).await;
    let base = t.base().await;
    for path in ["one", "one", "three", "three", "three"] {
        assert_eq!(get(&format!("{base}/{path}/hit")).await.0, 200);
    }
    let count = |p: &'static str| {
        let base = base.clone();
        async move { get(&format!("{base}/{p}/count")).await.1 }
    };
    assert_eq!(count("one").await, "2\n");
    assert_eq!(count("two").await, "0\n");
    assert_eq!(count("three").await, "3\n");
    assert_eq!(count("four").await, "3\n", "a shared bucket is one bucket");
}

/// What `guests/keyvalue-probe` must see on every backend: all of store, atomics
/// and batch, odd keys, empty and binary values, and listings past one page.
const TRANSCRIPT: &[&str] = &[
    "open empty name: opened",
    "get absent: none",
    "exists absent: false",
    "set: ok",
    "get: \"one\"",
    "exists: true",
    "overwrite: ok",
    "get overwritten: \"two\"",
    "set empty value: ok",
    "get empty value: \"\"",
    "delete: ok",
    "get deleted: none",
    "exists deleted: false",
    "delete again: ok",
    "empty key: error other",
    "key \"with space\": true",
    "key \"ключ\": true",
    "key \"a/b\": true",
    "key \"a.b\": true",
    "key \".hidden\": true",
    "key \"%41\": true",
    "key \"_41\": true",
    "key \"*\": true",
    "key \">\": true",
    "key \"kkkkkkkkkkkk\": true",
    "64 KiB binary value: true",
    "list odd keys: 11 keys in pages of 11",
    "odd keys listed sorted: true",
    "delete odd keys: ok",
    "set-many 2500: ok",
    "list 2500: 2500 keys in pages of 1000+1000+500",
    "listed in order: true",
    "get-many: k0000=0 none k2499=2499",
    "delete-many: ok",
    "list after delete-many: 500 keys in pages of 500",
    "left: k2000..k2499",
    "delete-many rest: ok",
    "set-many with a key twice: \"last\"",
    "delete dup: ok",
    "list emptied: 0 keys in pages of 0",
    "increment absent: 5",
    "increment: 1099511627781",
    "counter reads as: \"1099511627781\"",
    "set counter: ok",
    "increment set counter: 42",
    "set text: ok",
    "increment text: error other",
    "text unchanged: \"text\"",
    "set negative: ok",
    "increment negative: error other",
    "set leading zero: ok",
    "increment leading zero: error other",
    "set largest: ok",
    "increment past largest: error other",
    "largest unchanged: \"9223372036854775807\"",
    "increment by more than largest: error other",
    "delete counters: ok",
];

async fn probe_transcript(kv: Kv) {
    let t = host_with_kv(kv).await;
    let w = t
        .start_ok(&format!(
            "name: conformance\ncomponents:\n  - {{ name: probe, source: {KEYVALUE_PROBE}, args: [things] }}\n"
        ))
        .await;
    w.run("probe").await.unwrap();
    let seen = t.stdout("probe");
    for (i, (seen, expected)) in seen.iter().zip(TRANSCRIPT).enumerate() {
        assert_eq!(seen, expected, "line {} of the transcript", i + 1);
    }
    assert_eq!(seen.len(), TRANSCRIPT.len(), "{seen:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_interface_behaves_alike_in_memory() {
    probe_transcript(Kv::Memory).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_interface_behaves_alike_on_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    probe_transcript(Kv::Filesystem { path: dir.path().to_path_buf() }).await;
    // Only the two keys left at the end are there: no temporary files, and the
    // long key's continuation directories went with it.
    let bucket = dir.path().join("default%2Econformance%2Ethings");
    let mut left: Vec<String> =
        std::fs::read_dir(&bucket).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["n", "t"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_interface_behaves_alike_in_redis() {
    let redis = Server::redis();
    probe_transcript(Kv::Redis { url: redis.url() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_interface_behaves_alike_in_nats() {
    let nats = Server::nats();
    probe_transcript(Kv::Nats { url: nats.url() }).await;
}

/// A value written by a component with room for it, read by one limited to less:
/// the reader gets an error naming its limit (the host does not fetch the value
/// to hand it a trap), and a value that fits still reads.
async fn a_value_larger_than_the_readers_memory_is_refused(kv: Kv) {
    let t = host_with_kv(kv).await;
    let probe = |name: &str, args: &str, memory: &str| {
        format!("  - {{ name: {name}, source: {KEYVALUE_PROBE}, args: [{args}], limits: {{ memory: {memory} }} }}\n")
    };
    let w = t
        .start_ok(&format!(
            "name: sizes\ncomponents:\n{}{}{}{}",
            probe("writer", "hold, 12582912, things", "64MiB"),
            probe("small-writer", "hold, 65536, things", "64MiB"),
            probe("reader", "fetch, things", "8MiB"),
            probe("big-reader", "fetch, things", "64MiB"),
        ))
        .await;
    w.run("writer").await.unwrap();
    w.run("reader").await.unwrap();
    let refused = t.stdout("reader");
    assert_eq!(refused.len(), 2, "{refused:?}");
    for line in &refused {
        assert!(line.contains("12MiB") && line.contains("its memory limit is 8MiB"), "{line}");
    }
    w.run("big-reader").await.unwrap();
    assert_eq!(t.stdout("big-reader"), ["get big: 12582912 bytes", "get-many big: 12582912 bytes"]);
    w.run("small-writer").await.unwrap();
    w.run("reader").await.unwrap();
    assert_eq!(t.stdout("reader")[2..], ["get big: 65536 bytes", "get-many big: 65536 bytes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_larger_than_the_readers_memory_is_refused_in_memory() {
    a_value_larger_than_the_readers_memory_is_refused(Kv::Memory).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_larger_than_the_readers_memory_is_refused_on_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    a_value_larger_than_the_readers_memory_is_refused(Kv::Filesystem { path: dir.path().to_path_buf() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_value_larger_than_the_readers_memory_is_refused_in_redis() {
    let redis = Server::redis();
    a_value_larger_than_the_readers_memory_is_refused(Kv::Redis { url: redis.url() }).await;
}
