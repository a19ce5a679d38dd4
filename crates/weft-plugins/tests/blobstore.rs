//! The built-in blobstore: blobby, unchanged, against each backend; and against
//! the blobstore-filesystem component by changing only the manifest.

mod common;

use common::*;
use weft_plugins::blobstore::Settings as Blobs;
use weft_testkit::Server;

const SIZE: u32 = 10 << 20;

fn object() -> Vec<u8> {
    (0..SIZE).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect()
}

/// blobby's script; with the component as the provider when `component` is set.
fn workload(component: bool) -> String {
    let store = if component {
        format!(
            "  - {{ name: store, source: {BLOBSTORE_FILESYSTEM}, volumeMounts: [{{ name: blobs, mountPath: /blobs }}] }}\n"
        )
    } else {
        String::new()
    };
    let blobs_volume = if component { "  - { name: blobs, hostPath: { path: blobs } }\n" } else { "" };
    format!(
        r#"name: blobs
components:
{store}  - name: put
    source: {BLOBBY}
    args: [put, photos, big.bin, /in/big.bin, list, photos, info, photos, big.bin, get, photos, big.bin, /out/big.bin]
    volumeMounts: [{{ name: in, mountPath: /in, readOnly: true }}, {{ name: out, mountPath: /out }}]
  - {{ name: delete, source: {BLOBBY}, args: [delete, photos, big.bin, list, photos] }}
volumes:
{blobs_volume}  - {{ name: in, hostPath: {{ path: in }} }}
  - {{ name: out, hostPath: {{ path: out }} }}
"#
    )
}

async fn round_trip(t: &TestHost, component: bool) {
    let data = object();
    for dir in ["in", "out", "blobs"] {
        std::fs::create_dir_all(t.dir.path().join(dir)).unwrap();
    }
    std::fs::write(t.dir.path().join("in/big.bin"), &data).unwrap();
    let w = t.start_ok(&workload(component)).await;
    let provider =
        &w.plan().imports_of("put").iter().find(|l| l.import.starts_with("wasi:blobstore/blobstore")).unwrap().provider;
    let expected = if component { "component `store`" } else { "plugin `blobstore`" };
    assert!(provider.to_string().starts_with(expected), "{provider}");
    w.run("put").await.unwrap();
    assert_eq!(
        t.stdout("put"),
        [
            "put photos/big.bin: 10485760 bytes",
            "list photos: big.bin",
            "info photos/big.bin: 10485760 bytes",
            "get photos/big.bin: 10485760 bytes -> /out/big.bin",
        ]
    );
    assert!(std::fs::read(t.dir.path().join("out/big.bin")).unwrap() == data, "read-back bytes differ");
    w.run("delete").await.unwrap();
    assert_eq!(t.stdout("delete"), ["delete photos/big.bin: done", "list photos: "]);
}

async fn host_with_blobs(blobs: Blobs) -> TestHost {
    host_with(weft_plugins::Settings { blobstore: blobs, ..Default::default() }).await
}

#[tokio::test(flavor = "multi_thread")]
async fn in_memory() {
    round_trip(&host_with_blobs(Blobs::Memory).await, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let t = host_with_blobs(Blobs::Filesystem { path: dir.path().to_path_buf() }).await;
    round_trip(&t, false).await;
    // The container is a directory of the backend, scoped to the workload.
    assert!(dir.path().join("default%2Eblobs%2Ephotos").is_dir());
}

#[tokio::test(flavor = "multi_thread")]
async fn in_nats_object_stores() {
    let nats = Server::nats();
    round_trip(&host_with_blobs(Blobs::Nats { url: nats.url() }).await, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_workload_against_the_component() {
    round_trip(&host().await, true).await;
}
