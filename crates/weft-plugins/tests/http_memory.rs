//! The HTTP server streaming a large body, alone in its own test binary (its own
//! process): the resident memory it measures is then its own, not that of the
//! other HTTP tests running beside it.

mod common;

use common::*;

fn probe(name: &str, limits: &str) -> String {
    format!("  - {{ name: {name}, source: {HTTP_PROBE} {limits} }}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_gibibyte_upload_streams_back_byte_exact_in_bounded_memory() {
    use http_body_util::BodyExt;
    let t = host().await;
    t.start_ok(&format!(
        "name: echo\ncomponents:\n{}hostInterfaces:\n{}",
        probe("echo", ", limits: { cpuTime: unlimited, timeout: unlimited }"),
        serve("echo", r#"[{ path: "/*" }]"#)
    ))
    .await;
    const TOTAL: u64 = 1 << 30;
    const CHUNK: usize = 256 * 1024;
    // A deterministic stream of bytes, generated as it is sent.
    let byte = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
    let chunks = Box::pin(futures_util::stream::unfold(0u64, move |sent| async move {
        (sent < TOTAL).then(|| {
            let chunk: Vec<u8> = (sent..sent + CHUNK as u64).map(byte).collect();
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(chunk))),
                sent + CHUNK as u64,
            )
        })
    }));
    let body = http_body_util::StreamBody::new(chunks);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}/echo", t.base().await)).body(body).unwrap();
    let baseline = rss_bytes();
    let response = client.request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (mut received, mut peak) = (0u64, baseline);
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        for (i, b) in data.iter().enumerate() {
            assert_eq!(*b, byte(received + i as u64), "byte {} differs", received + i as u64);
        }
        received += data.len() as u64;
        if received % (64 << 20) < data.len() as u64 {
            peak = peak.max(rss_bytes());
        }
    }
    assert_eq!(received, TOTAL);
    peak = peak.max(rss_bytes());
    assert!(peak < 256 << 20, "resident memory reached {} MiB (baseline {} MiB)", peak >> 20, baseline >> 20);
}
