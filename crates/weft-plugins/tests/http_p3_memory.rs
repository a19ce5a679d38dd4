//! A WASI 0.3 HTTP handler streaming a large body, alone in its own test binary
//! (its own process), so that the resident memory it measures is its own.

mod common;

use common::*;
use http_body_util::BodyExt;

#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_handler_streams_ten_mebibytes_in_flat_memory() {
    let t = host().await;
    t.start_ok(&format!(
        "name: big\ncomponents:\n  - {{ name: big, source: {HTTP_P3}, limits: {{ timeout: unlimited, cpuTime: unlimited }} }}\nhostInterfaces:\n{}",
        serve_p3("big", r#"[{ path: "/*" }]"#)
    ))
    .await;
    const TOTAL: usize = 10 << 20;
    let url = format!("{}/stream?bytes={TOTAL}", t.base().await);
    // Warm: the engine, the compiled code, a pool slot, and the buffers and
    // allocator arenas a streamed body uses, so that what follows is growth.
    assert_eq!(get(&format!("{}/stream?bytes={}", t.base().await, 2 << 20)).await.0, 200);
    let baseline = rss_bytes();
    let response = client().get(url.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (mut received, mut peak) = (0usize, baseline);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else { continue };
        for (i, b) in data.iter().enumerate() {
            assert_eq!(*b, b'a' + ((received + i) % (64 * 1024) % 26) as u8, "byte {}", received + i);
        }
        received += data.len();
        peak = peak.max(rss_bytes());
    }
    assert_eq!(received, TOTAL);
    // Streamed, not collected: the host holds a few chunks, never the body
    // (measured: 1–3 MiB of growth, the same for 40 MiB as for 10).
    let growth = peak.saturating_sub(baseline);
    assert!(growth < (TOTAL / 2) as u64, "resident memory grew {} KiB while streaming 10 MiB", growth >> 10);
}
