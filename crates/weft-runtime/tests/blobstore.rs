//! A component as a provider: blobby stores objects through `wasi:blobstore`,
//! served by the blobstore-filesystem component over a mounted directory.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_ten_mebibyte_object_is_streamed_in_listed_read_back_and_deleted() {
    let t = host().await;
    let object: Vec<u8> = (0..10u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    t.file("in/big.bin", &object);
    std::fs::create_dir_all(t.dir.path().join("blobs")).unwrap();
    std::fs::create_dir_all(t.dir.path().join("out")).unwrap();
    let w = t
        .start_ok(&format!(
            r#"
name: blobs
components:
  - name: store
    source: {BLOBSTORE_FILESYSTEM}
    volumeMounts: [{{ name: blobs, mountPath: /blobs }}]
  - name: put
    source: {BLOBBY}
    args: [put, photos, big.bin, /in/big.bin, list, photos, info, photos, big.bin, get, photos, big.bin, /out/big.bin]
    volumeMounts: [{{ name: in, mountPath: /in, readOnly: true }}, {{ name: out, mountPath: /out }}]
  - name: delete
    source: {BLOBBY}
    args: [delete, photos, big.bin, list, photos]
volumes:
  - {{ name: blobs, hostPath: {{ path: blobs }} }}
  - {{ name: in, hostPath: {{ path: in }} }}
  - {{ name: out, hostPath: {{ path: out }} }}
"#
        ))
        .await;

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
    // The object is a file in the store's directory, and came back byte-exact.
    let stored = t.dir.path().join("blobs/photos/big.bin");
    assert!(std::fs::read(&stored).unwrap() == object, "stored bytes differ");
    assert!(std::fs::read(t.dir.path().join("out/big.bin")).unwrap() == object, "read-back bytes differ");
    // Nothing is left in staging.
    assert_eq!(std::fs::read_dir(t.dir.path().join("blobs/.staging")).unwrap().count(), 0);
    // blobby never saw the store's directory: it has no such volume.
    assert!(!t.dir.path().join("in/photos").exists());

    w.run("delete").await.unwrap();
    assert_eq!(t.stdout("delete"), ["delete photos/big.bin: done", "list photos: "]);
    assert!(!stored.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn blobstore_errors_reach_the_caller_as_values() {
    let t = host().await;
    std::fs::create_dir_all(t.dir.path().join("blobs")).unwrap();
    let w = t
        .start_ok(&format!(
            r#"
name: missing
components:
  - {{ name: store, source: {BLOBSTORE_FILESYSTEM}, volumeMounts: [{{ name: blobs, mountPath: /blobs }}] }}
  - {{ name: get, source: {BLOBBY}, args: [get, nowhere, thing, /tmp/x] }}
volumes: [{{ name: blobs, hostPath: {{ path: blobs }} }}]
"#
        ))
        .await;
    let err = w.run("get").await.unwrap_err();
    assert!(matches!(err, weft_runtime::InvokeError::Exit { code: 1, .. }), "{err}");
    assert_eq!(
        t.output.lines_of("get", weft_runtime::output::Stream::Stderr),
        ["blobby: get: container `nowhere` does not exist"]
    );
}
