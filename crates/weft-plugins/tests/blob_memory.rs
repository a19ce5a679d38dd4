//! Host memory follows the guest's limit: a component limited to 32 MiB reading
//! a 128 MiB object whole (`consume-sync`) gets an error, and the host does not
//! fetch the object to find out. Alone in its own test binary (its own process),
//! so that the resident memory it measures is its own.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::*;
use weft_plugins::blobstore::Store;

/// The highest resident set seen, sampled every millisecond until dropped.
struct PeakRss {
    peak: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let (peak, done) = (Arc::new(AtomicU64::new(rss_bytes())), Arc::new(AtomicBool::new(false)));
        let (p, d) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        PeakRss { peak, done }
    }

    fn peak(&self) -> u64 {
        self.peak.fetch_max(rss_bytes(), Ordering::Relaxed).max(rss_bytes())
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

const OBJECT: usize = 128 << 20;
const LIMIT: u64 = 32 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn consume_sync_of_an_object_four_times_the_memory_limit_fails_in_the_guest_and_the_host_stays_flat() {
    let store = tempfile::tempdir().unwrap();
    let t = host_with(weft_plugins::Settings {
        blobstore: Store::Filesystem { path: store.path().into() }.into(),
        ..Default::default()
    })
    .await;
    std::fs::create_dir_all(t.dir.path().join("in")).unwrap();
    std::fs::write(t.dir.path().join("in/big.bin"), vec![0x5A; OBJECT]).unwrap();
    let w = t
        .start_ok(&format!(
            r#"name: slurp
components:
  - {{ name: put, source: {BLOBBY}, args: [put, photos, big.bin, /in/big.bin], volumeMounts: [{{ name: in, mountPath: /in, readOnly: true }}] }}
  - {{ name: read, source: {BLOBBY}, args: [read, photos, big.bin], limits: {{ memory: 32MiB }} }}
  - {{ name: stream, source: {BLOBBY}, args: [get, photos, big.bin, /out/big.bin], limits: {{ memory: 32MiB }}, volumeMounts: [{{ name: out, mountPath: /out }}] }}
volumes:
  - {{ name: in, hostPath: {{ path: in }} }}
  - {{ name: out, emptyDir: {{}} }}
"#
        ))
        .await;
    w.run("put").await.unwrap();
    assert_eq!(t.stdout("put"), [format!("put photos/big.bin: {OBJECT} bytes")]);

    let baseline = rss_bytes();
    let sampler = PeakRss::start();
    let refused = w.run("read").await.unwrap_err().to_string();
    let peak = sampler.peak();
    drop(sampler);
    let stderr = t.output.lines_of("read", weft_runtime::output::Stream::Stderr).join("\n");
    assert!(stderr.contains("128MiB") && stderr.contains("its memory limit is 32MiB"), "{refused}\n{stderr}");
    assert!(stderr.contains("consume-async"), "{stderr}");
    // The bound: the guest's own memory (at most its limit) and a few MiB of
    // instance and bookkeeping; the object is never fetched.
    let grown = peak.saturating_sub(baseline);
    eprintln!("consume-sync of {} MiB by a 32 MiB guest: the host grew by {} MiB", OBJECT >> 20, grown >> 20);
    assert!(grown < LIMIT + (16 << 20), "the host grew by {} MiB reading for a 32 MiB guest", grown >> 20);

    // The same object streamed (consume-async) by the same small guest: fine.
    w.run("stream").await.unwrap();
    assert_eq!(t.stdout("stream"), [format!("get photos/big.bin: {OBJECT} bytes -> /out/big.bin")]);
}
