//! The built-in blobstore: blobby, unchanged, against each backend; and against
//! the blobstore-filesystem component by changing only the manifest.

mod common;

use common::*;
use weft_plugins::blobstore::Store as Blobs;
use weft_testkit::Server;

const SIZE: u32 = 10 << 20;

/// An object name longer, once encoded, than a file name may be: the filesystem
/// providers continue it in directories. It starts with a dot, and in the
/// component's encoding (where a dot is kept, except first in a file name) its
/// second dot falls just where the first piece is full.
fn long_name() -> String {
    format!(".{}.x/{}photo.jpg", "a".repeat(251), "album/".repeat(20))
}

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
    let long = long_name();
    format!(
        r#"name: blobs
components:
{store}  - name: put
    source: {BLOBBY}
    args: [put, photos, big.bin, /in/big.bin, put, photos, "{long}", /in/small.txt, list, photos,
           info, photos, big.bin, get, photos, big.bin, /out/big.bin, get, photos, "{long}", /out/small.txt]
    volumeMounts: [{{ name: in, mountPath: /in, readOnly: true }}, {{ name: out, mountPath: /out }}]
  - {{ name: delete, source: {BLOBBY}, args: [delete, photos, big.bin, delete, photos, "{long}", list, photos] }}
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
    std::fs::write(t.dir.path().join("in/small.txt"), b"small").unwrap();
    let long = long_name();
    let w = t.start_ok(&workload(component)).await;
    let provider =
        &w.plan().imports_of("put").iter().find(|l| l.import.starts_with("wasi:blobstore/blobstore")).unwrap().provider;
    let expected = if component { "component `store`" } else { "plugin `blobstore`" };
    assert!(provider.to_string().starts_with(expected), "{provider}");
    w.run("put").await.unwrap();
    assert_eq!(
        t.stdout("put"),
        [
            "put photos/big.bin: 10485760 bytes".to_string(),
            format!("put photos/{long}: 5 bytes"),
            format!("list photos: {long} big.bin"),
            "info photos/big.bin: 10485760 bytes".to_string(),
            "get photos/big.bin: 10485760 bytes -> /out/big.bin".to_string(),
            format!("get photos/{long}: 5 bytes -> /out/small.txt"),
        ]
    );
    assert!(std::fs::read(t.dir.path().join("out/big.bin")).unwrap() == data, "read-back bytes differ");
    assert_eq!(std::fs::read(t.dir.path().join("out/small.txt")).unwrap(), b"small");
    w.run("delete").await.unwrap();
    assert_eq!(
        t.stdout("delete"),
        ["delete photos/big.bin: done".to_string(), format!("delete photos/{long}: done"), "list photos: ".to_string()]
    );
}

async fn host_with_blobs(blobs: Blobs) -> TestHost {
    host_with(weft_plugins::Settings { blobstore: blobs.into(), ..Default::default() }).await
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
    // The container is a directory of the backend, scoped to the workload, and
    // deleting the long-named object left nothing of it behind.
    let container = dir.path().join("default%2Eblobs%2Ephotos");
    assert_eq!(std::fs::read_dir(&container).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_nats_object_stores() {
    let nats = Server::nats();
    round_trip(&host_with_blobs(Blobs::Nats { url: nats.url() }).await, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_workload_against_the_component() {
    let t = host().await;
    round_trip(&t, true).await;
    let container = t.dir.path().join("blobs/photos");
    assert_eq!(std::fs::read_dir(&container).unwrap().count(), 0);
}

/// Staging on disk is bounded: a value past `maxObjectSize`, or past what
/// `stagingLimit` leaves, fails in the guest's write; what a failed value staged
/// is given back, so a value that fits is stored next.
#[tokio::test(flavor = "multi_thread")]
async fn staging_is_bounded_per_value_and_in_all() {
    use weft_plugins::blobstore::Settings;
    use weft_runtime::limits::ByteSize;
    use weft_runtime::output::Stream;
    for (settings, refusal) in [
        (Settings { max_object_size: ByteSize(1 << 20), ..Blobs::Memory.into() }, "`maxObjectSize` of 1MiB"),
        (
            Settings { staging_limit: ByteSize(1 << 20), ..Blobs::Memory.into() },
            "staging is full (`stagingLimit` 1MiB)",
        ),
    ] {
        let t = host_with(weft_plugins::Settings { blobstore: settings, ..Default::default() }).await;
        std::fs::create_dir_all(t.dir.path().join("in")).unwrap();
        std::fs::write(t.dir.path().join("in/large"), vec![1; 2 << 20]).unwrap();
        std::fs::write(t.dir.path().join("in/small"), vec![2; 700 << 10]).unwrap();
        let blobby = |name: &str, args: &str| {
            format!(
                "  - {{ name: {name}, source: {BLOBBY}, args: [{args}], volumeMounts: [{{ name: in, mountPath: /in }}] }}\n"
            )
        };
        let w = t
            .start_ok(&format!(
                "name: staging\ncomponents:\n{}{}volumes: [{{ name: in, hostPath: {{ path: in }} }}]\n",
                blobby("large", "put, c, large, /in/large"),
                blobby("small", "put, c, small, /in/small, put, c, again, /in/small, list, c"),
            ))
            .await;
        assert!(w.run("large").await.is_err());
        let stderr = t.output.lines_of("large", Stream::Stderr).join("\n");
        assert!(stderr.contains(refusal), "{stderr}");
        w.run("small").await.unwrap();
        assert_eq!(
            t.stdout("small"),
            ["put c/small: 716800 bytes", "put c/again: 716800 bytes", "list c: again small"]
        );
    }
}
