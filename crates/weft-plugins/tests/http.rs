//! The HTTP server plugin, with real components and a real client.

mod common;

use std::time::Duration;

use common::*;

fn probe(name: &str, limits: &str) -> String {
    format!("  - {{ name: {name}, source: {HTTP_PROBE} {limits} }}\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_host_wildcard_host_path_params_and_method() {
    let t = host().await;
    t.start_ok(&format!(
        "name: site\ncomponents:\n{}{}{}{}hostInterfaces:\n{}{}{}{}",
        probe("api", ""),
        probe("wild", ""),
        probe("users", ""),
        probe("fallback", ""),
        serve("api", r#"[{ host: api.example.com, path: "/*" }]"#),
        serve("wild", r#"[{ host: "*.example.com", path: "/*" }]"#),
        serve("users", r#"[{ path: "/users/{id}/posts/{post}", methods: [GET] }]"#),
        serve("fallback", r#"[{ path: "/pages/*" }]"#),
    ))
    .await;
    let base = t.base().await;
    let url = |p: &str| format!("{base}{p}");
    assert_eq!(request("GET", &url("/x"), Some("api.example.com"), b"").await, (200, "api GET /x\n".into()));
    assert_eq!(request("GET", &url("/x"), Some("shop.example.com"), b"").await, (200, "wild GET /x\n".into()));
    assert_eq!(get(&url("/users/7/posts/42")).await, (200, "users GET /users/7/posts/42 id=7 post=42\n".into()));
    assert_eq!(get(&url("/pages/a/b")).await, (200, "fallback GET /pages/a/b\n".into()));
    // Unknown route, unknown host for a host-only route, wrong method.
    assert_eq!(get(&url("/nowhere")).await.0, 404);
    assert_eq!(request("GET", &url("/x"), Some("example.org"), b"").await.0, 404);
    assert_eq!(request("POST", &url("/users/7/posts/42"), None, b"").await.0, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_conflicting_route_rejects_the_second_workload_naming_both() {
    let t = host().await;
    t.start_ok(&format!(
        "name: first\ncomponents:\n{}hostInterfaces:\n{}",
        probe("a", ""),
        serve("a", r#"[{ path: "/same/{x}" }]"#)
    ))
    .await;
    let err = t
        .start(&format!(
            "name: second\ncomponents:\n{}hostInterfaces:\n{}",
            probe("b", ""),
            serve("b", r#"[{ path: "/same/{y}" }]"#)
        ))
        .await
        .err()
        .expect("the second workload is rejected");
    let text = err.to_string();
    assert!(text.contains("workload `second` rejected"), "{text}");
    assert!(
        text.contains("route `/same/{y}` conflicts with route `/same/{x}` of component `a` in workload `first`"),
        "{text}"
    );
    // The first one keeps serving.
    assert_eq!(get(&format!("{}/same/1", t.base().await)).await, (200, "a GET /same/1 x=1\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_handler_is_a_500_and_the_server_carries_on() {
    let t = host().await;
    t.start_ok(&format!(
        "name: traps\ncomponents:\n{}hostInterfaces:\n{}",
        probe("p", ""),
        serve("p", r#"[{ path: "/*" }]"#)
    ))
    .await;
    let base = t.base().await;
    let (status, body) = get(&format!("{base}/trap")).await;
    assert_eq!(status, 500);
    assert!(body.contains("trapped"), "{body}");
    assert_eq!(get(&format!("{base}/silent")).await.0, 500);
    assert_eq!(get(&format!("{base}/after")).await, (200, "p GET /after\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_are_fresh_per_request_unless_reuse_is_asked_for() {
    let t = host().await;
    t.start_ok(&format!(
        "name: reuse\ncomponents:\n{}{}hostInterfaces:\n{}{}",
        probe("fresh", ""),
        probe("reused", ", reuseInstances: true"),
        serve("fresh", r#"[{ path: "/fresh/*" }]"#),
        serve("reused", r#"[{ path: "/reused/*" }]"#),
    ))
    .await;
    let base = t.base().await;
    // One request at a time, so a reused instance is the same one each time.
    for _ in 0..3 {
        assert_eq!(get(&format!("{base}/fresh/served")).await, (200, "served 1".into()));
    }
    for n in 1..=3 {
        assert_eq!(get(&format!("{base}/reused/served")).await, (200, format!("served {n}")));
    }
    // A trap ends the instance: the next request gets a fresh one.
    assert_eq!(get(&format!("{base}/reused/trap")).await.0, 500);
    assert_eq!(get(&format!("{base}/reused/served")).await, (200, "served 1".into()));
    assert_eq!(get(&format!("{base}/reused/served")).await, (200, "served 2".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saturated_component_answers_503_never_hangs_never_loses_a_request() {
    let t = host().await;
    t.start_ok(&format!(
        "name: narrow\ncomponents:\n{}hostInterfaces:\n{}",
        probe("slow", ", limits: { maxConcurrent: 4, maxQueued: 4, queueTimeout: 10s }"),
        serve("slow", r#"[{ path: "/*" }]"#)
    ))
    .await;
    let url = format!("{}/slow?ms=300", t.base().await);
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let req = http::Request::get(&url).body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
                let response = tokio::time::timeout(Duration::from_secs(30), client().request(req)).await;
                let response = response.expect("no request hangs").expect("every request is answered");
                (response.status().as_u16(), response.headers().get("retry-after").is_some())
            })
        })
        .collect();
    let (mut ok, mut busy) = (0, 0);
    for answer in requests {
        match answer.await.unwrap() {
            (200, _) => ok += 1,
            (503, true) => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(ok + busy, 100);
    assert!(ok >= 8, "the 4 running and the 4 queued are served: {ok}");
    assert!(busy > 0, "the rest are turned away: {busy}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_past_its_timeout_is_a_500_and_its_slot_is_freed() {
    let t = host().await;
    t.start_ok(&format!(
        "name: sleepy\ncomponents:\n{}hostInterfaces:\n{}",
        probe("slow", ", limits: { timeout: 300ms, maxConcurrent: 1, maxQueued: 0 }"),
        serve("slow", r#"[{ path: "/*" }]"#)
    ))
    .await;
    let base = t.base().await;
    // A handler waiting for ten minutes uses no CPU; only the timeout ends it.
    let (status, body) =
        tokio::time::timeout(Duration::from_secs(30), get(&format!("{base}/slow?ms=600000"))).await.expect("no hang");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("did not finish within its timeout of 300ms"), "{body}");
    // The one slot is free again: not a 503.
    assert_eq!(get(&format!("{base}/slow?ms=10")).await, (200, "slept\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn outgoing_requests_are_denied_unless_allowed() {
    let t = host().await;
    // A second HTTP route of this same host serves as the outgoing target.
    t.start_ok(&format!(
        "name: net\ncomponents:\n{}{}hostInterfaces:\n{}{}  - {{ interface: \"wasi:http/outgoing-handler@0.2.0\", component: allowed, config: {{ allowedHosts: [\"127.0.0.1\"], allowedAddresses: [\"127.0.0.1\"] }} }}\n",
        probe("allowed", ""),
        probe("denied", ""),
        serve("allowed", r#"[{ path: "/allowed/*" }]"#),
        serve("denied", r#"[{ path: "/denied/*" }]"#),
    ))
    .await;
    let base = t.base().await;
    let target = format!("{base}/denied/target");
    let (status, body) = get(&format!("{base}/denied/fetch?url={target}")).await;
    assert_eq!((status, body.as_str()), (502, "fetch failed: ErrorCode::HttpRequestDenied"));
    let (status, body) = get(&format!("{base}/allowed/fetch?url={target}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "fetched 200: denied GET /denied/target\n");
}

/// A certificate for `localhost`, generated here, and TLS settings serving it.
fn self_signed(dir: &std::path::Path) -> (rcgen::CertifiedKey, weft_plugins::http::TlsSettings) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (cert, weft_plugins::http::TlsSettings { cert: cert_path, key: key_path })
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_generated_certificate_serves_h2() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, tls) = self_signed(dir.path());
    let mut settings = weft_plugins::Settings::default();
    settings.http.tls = Some(tls);
    let t = host_with(settings).await;
    t.start_ok(&format!(
        "name: secure\ncomponents:\n{}hostInterfaces:\n{}",
        probe("p", ""),
        serve("p", r#"[{ path: "/*" }]"#)
    ))
    .await;
    let addr = t.http.local_addrs().await[0];

    // A TLS client that trusts the generated certificate and speaks only h2.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://localhost:{}/secure", addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"p GET /secure\n");
}

/// Reads from `stream` until the server closes it (failing if it never does).
async fn closed_by_the_server(mut stream: impl tokio::io::AsyncRead + Unpin) {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    read.expect("the server closes the connection").ok();
    assert!(answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_that_never_finish_a_request_head_are_closed() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    for tls in [false, true] {
        let mut settings = weft_plugins::Settings::default();
        settings.http.header_read_timeout = Duration::from_millis(300);
        settings.http.tls = tls.then(|| self_signed(dir.path()).1);
        let t = host_with(settings).await;
        t.start_ok(&format!(
            "name: patient\ncomponents:\n{}hostInterfaces:\n{}",
            probe("p", ""),
            serve("p", r#"[{ path: "/*" }]"#)
        ))
        .await;
        let addr = t.http.local_addrs().await[0];
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        if tls {
            // Not even a ClientHello.
            closed_by_the_server(tcp).await;
        } else {
            tcp.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n").await.unwrap();
            closed_by_the_server(tcp).await;
            // A client that does send its request is served as ever.
            assert_eq!(get(&format!("{}/x", t.base().await)).await, (200, "p GET /x\n".into()));
        }
    }
}

/// The resident set of this process, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    kib * 1024
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

#[tokio::test(flavor = "multi_thread")]
async fn stopping_the_host_drains_requests_in_flight() {
    let t = host().await;
    t.start_ok(&format!(
        "name: drain\ncomponents:\n{}hostInterfaces:\n{}",
        probe("p", ""),
        serve("p", r#"[{ path: "/*" }]"#)
    ))
    .await;
    let url = format!("{}/slow?ms=800", t.base().await);
    let in_flight = tokio::spawn(async move { get(&url).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.host.shutdown().await;
    assert_eq!(in_flight.await.unwrap(), (200, "slept\n".into()));
}
