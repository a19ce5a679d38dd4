//! Tenants' data kept apart: on every key-value and blobstore backend, dotted
//! names cannot make two workloads' scopes meet, a shared name cannot reach a
//! workload's own bucket, and one namespace and name run once at a time.

mod common;

use common::*;
use weft_plugins::blobstore::Store as Blobs;
use weft_plugins::keyvalue::Settings as Kv;
use weft_testkit::Server;

/// The counter example as workload `name` of `namespace`, served on `host`.
fn counter(namespace: &str, name: &str, host: &str, extra: &str) -> String {
    format!(
        "name: {name}\nnamespace: {namespace}\ncomponents:\n  - {{ name: counter, source: {HTTP_KEYVALUE_COUNTER} }}\nhostInterfaces:\n{}{extra}",
        serve("counter", &format!("[{{ host: {host}, path: \"/*\" }}]"))
    )
}

async fn hit(t: &TestHost, host: &str, path: &str) -> String {
    let (status, body) = request("GET", &format!("{}{path}", t.base().await), Some(host), b"").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Namespace `x.y` with workload `z`, and namespace `x` with workload `y.z`, both
/// open bucket `counter`: once the same backend bucket `x.y.z.counter`.
async fn dotted_names_keep_buckets_apart(kv: Kv) {
    let t = host_with(weft_plugins::Settings { keyvalue: kv, ..Default::default() }).await;
    t.start_ok(&counter("x.y", "z", "one.test", "")).await;
    t.start_ok(&counter("x", "y.z", "two.test", "")).await;
    for _ in 0..3 {
        hit(&t, "one.test", "/hit").await;
    }
    assert_eq!(hit(&t, "one.test", "/count").await, "3\n");
    assert_eq!(hit(&t, "two.test", "/count").await, "0\n", "another workload's bucket");
}

#[tokio::test(flavor = "multi_thread")]
async fn dotted_names_keep_buckets_apart_in_memory() {
    dotted_names_keep_buckets_apart(Kv::Memory).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dotted_names_keep_buckets_apart_on_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    dotted_names_keep_buckets_apart(Kv::Filesystem { path: dir.path().to_path_buf() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dotted_names_keep_buckets_apart_in_redis() {
    let redis = Server::redis();
    dotted_names_keep_buckets_apart(Kv::Redis { url: redis.url() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dotted_names_keep_buckets_apart_in_nats() {
    let nats = Server::nats();
    dotted_names_keep_buckets_apart(Kv::Nats { url: nats.url() }).await;
}

/// blobby-http as workload `name`, served on `host`.
fn blobby(name: &str, host: &str) -> String {
    format!(
        "name: {name}\ncomponents:\n  - {{ name: blobby, source: {BLOBBY_HTTP} }}\nhostInterfaces:\n{}",
        serve("blobby", &format!("[{{ host: {host}, path: \"/*\" }}]"))
    )
}

/// Workload `a.b` with container `c`, and workload `a` with container `b.c`: once
/// the same backend container `default.a.b.c`.
async fn dotted_names_keep_containers_apart(blobs: Blobs) {
    let t = host_with(weft_plugins::Settings { blobstore: blobs.into(), ..Default::default() }).await;
    t.start_ok(&blobby("a.b", "one.test")).await;
    t.start_ok(&blobby("a", "two.test")).await;
    let base = t.base().await;
    let (status, body) = request("PUT", &format!("{base}/c/secret.txt"), Some("one.test"), b"mine").await;
    assert!(status < 300, "{status} {body}");
    assert_eq!(request("GET", &format!("{base}/c/secret.txt"), Some("one.test"), b"").await, (200, "mine".into()));
    let (status, body) = request("GET", &format!("{base}/b.c/secret.txt"), Some("two.test"), b"").await;
    assert_ne!((status, body.as_str()), (200, "mine"), "another workload's container");
    // Its own container of that name is its own, and empty.
    let (status, body) = request("PUT", &format!("{base}/b.c/other.txt"), Some("two.test"), b"theirs").await;
    assert!(status < 300, "{status} {body}");
    let (_, listing) = request("GET", &format!("{base}/c"), Some("one.test"), b"").await;
    assert_eq!(listing.lines().collect::<Vec<_>>(), ["secret.txt"], "{listing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dotted_names_keep_containers_apart_in_memory() {
    dotted_names_keep_containers_apart(Blobs::Memory).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dotted_names_keep_containers_apart_on_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    dotted_names_keep_containers_apart(Blobs::Filesystem { path: dir.path().to_path_buf() }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dotted_names_keep_containers_apart_in_nats() {
    let nats = Server::nats();
    dotted_names_keep_containers_apart(Blobs::Nats { url: nats.url() }).await;
}

/// A workload that claims another workload's bucket as shared, in every spelling
/// that reached it before, gets a bucket of its own namespace's shared scope.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_bucket_cannot_be_another_workloads_own() {
    let redis = Server::redis();
    let t = host_with(weft_plugins::Settings { keyvalue: Kv::Redis { url: redis.url() }, ..Default::default() }).await;
    t.start_ok(&counter("default", "victim", "victim.test", "")).await;
    for _ in 0..2 {
        hit(&t, "victim.test", "/hit").await;
    }
    // The counter opens `counter`: shared, that is `default.counter`, never
    // `default.victim.counter`.
    let shared = "  - { interface: \"wasi:keyvalue/store@0.2.0-draft\", config: { sharedBuckets: [counter] } }\n";
    t.start_ok(&counter("default", "thief", "thief.test", shared)).await;
    t.start_ok(&counter("victim", "counter", "thief2.test", "")).await;
    assert_eq!(hit(&t, "thief.test", "/hit").await, "1\n");
    assert_eq!(hit(&t, "thief2.test", "/hit").await, "1\n");
    assert_eq!(hit(&t, "victim.test", "/count").await, "2\n", "the victim's count is untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_namespace_and_name_runs_once_and_keeps_its_data_across_runs() {
    let t = host().await;
    let first = t.start_ok(&counter("prod", "shop", "shop.test", "")).await;
    hit(&t, "shop.test", "/hit").await;
    let second = t.start(&counter("prod", "shop", "other.test", "")).await;
    let message = second.err().expect("the second one is rejected").to_string();
    assert!(message.contains("already running in namespace `prod`"), "{message}");
    // The same name in another namespace is another workload.
    t.start_ok(&counter("staging", "shop", "staging.test", "")).await;

    use weft_runtime::HostApi;
    t.host.workload_stop(first.id()).await.unwrap();
    t.start_ok(&counter("prod", "shop", "shop.test", "")).await;
    assert_eq!(hit(&t, "shop.test", "/count").await, "1\n", "a restarted workload keeps its data");
}
