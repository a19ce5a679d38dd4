//! Compiled components are cached by the sha256 of their bytes: in memory, and on
//! disk across host restarts.

mod common;

use common::*;
use weft_runtime::HostApi;

#[tokio::test(flavor = "multi_thread")]
async fn a_component_is_compiled_once_per_host_and_once_per_cache_dir() {
    let cache = tempfile::tempdir().unwrap();
    let manifest = format!("name: twice\ncomponents: [{{ name: hello, source: {HELLO} }}]\n");

    let first = host_with(Some(cache.path().to_path_buf())).await;
    let w = first.start_ok(&manifest).await;
    // One workload of a name at a time: stopped, its component stays cached.
    first.host.workload_stop(w.id()).await.unwrap();
    first.start_ok(&manifest).await;
    let stats = first.host.cache_stats();
    assert_eq!((stats.compiled, stats.memory_hits, stats.disk_hits), (1, 1, 0));
    drop(first);

    // A new host with the same cache dir loads the artifact instead of compiling.
    let second = host_with(Some(cache.path().to_path_buf())).await;
    second.start_ok(&manifest).await.run("hello").await.unwrap();
    let stats = second.host.cache_stats();
    assert_eq!((stats.compiled, stats.disk_hits), (0, 1));

    // A damaged artifact is not trusted: the component is compiled again.
    for entry in walk(cache.path()) {
        std::fs::write(entry, b"not an artifact").unwrap();
    }
    let third = host_with(Some(cache.path().to_path_buf())).await;
    third.start_ok(&manifest).await.run("hello").await.unwrap();
    assert_eq!(third.host.cache_stats().compiled, 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    assert!(!files.is_empty() || dir.file_name().is_some());
    files
}
