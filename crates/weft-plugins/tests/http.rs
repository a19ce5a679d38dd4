//! The HTTP server plugin, with real components and a real client.

mod common;

use std::time::Duration;

use common::*;
use weft_runtime::{HostApi, WorkloadState};

/// Every `tracing` event of this test binary, as `LEVEL message field=value ...`
/// (one global subscriber, installed by the first test that asks).
fn logs() -> &'static std::sync::Mutex<Vec<String>> {
    use tracing_subscriber::layer::SubscriberExt;
    struct Capture;
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            struct Fields(String);
            impl tracing::field::Visit for Fields {
                fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                    if field.name() == "message" {
                        self.0.insert_str(0, &format!("{value:?}"));
                    } else {
                        self.0.push_str(&format!(" {}={value:?}", field.name()));
                    }
                }
            }
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            let mut all = LOGS.lock().unwrap();
            // A runaway logger must not eat the test's memory: the count is enough then.
            if all.len() < 100_000 {
                all.push(format!("{} {}", event.metadata().level(), fields.0));
            }
            LOGGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    static LOGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // `info` and up, as `weft run` shows: debug and trace would swamp the capture.
        let capture = tracing_subscriber::Layer::with_filter(Capture, tracing_subscriber::filter::LevelFilter::INFO);
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture)).unwrap();
    });
    &LOGS
}

/// Events logged so far, counting those past the capture's cap.
static LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The log lines that mention `needle`.
fn logged(needle: &str) -> Vec<String> {
    logs().lock().unwrap().iter().filter(|l| l.contains(needle)).cloned().collect()
}

/// Checks a 500 the server gave: a generic body naming the request id of the
/// header, nothing of the failure itself, which the log has under that id.
fn assert_generic_500(answer: &(u16, http::HeaderMap, String), detail: &str) {
    let (status, headers, body) = answer;
    assert_eq!(*status, 500, "{body}");
    let id = headers.get("x-weft-request-id").expect("a request id header").to_str().unwrap();
    assert_eq!(body, &format!("the component failed (request {id})\n"));
    let lines = logged(id);
    assert!(
        lines.iter().any(|l| l.starts_with("WARN") && l.contains(detail)),
        "no warning with `{detail}` under request {id}: {lines:?}"
    );
}

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
    // A fully qualified name, with its final dot, is the same host.
    assert_eq!(request("GET", &url("/x"), Some("api.example.com."), b"").await, (200, "api GET /x\n".into()));
    assert_eq!(request("GET", &url("/x"), Some("Shop.Example.com.:80"), b"").await, (200, "wild GET /x\n".into()));
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
async fn a_workloads_only_http_component_needs_no_routes_it_is_served_on_everything() {
    let t = host().await;
    t.start_ok(&format!("name: bare\ncomponents:\n{}", probe("p", ""))).await;
    let base = t.base().await;
    assert_eq!(get(&format!("{base}/any/path")).await, (200, "p GET /any/path\n".into()));
    assert_eq!(request("POST", &format!("{base}/"), None, b"").await, (200, "p POST /\n".into()));
    // An entry naming it, with no routes, is the same.
    let t = host().await;
    t.start_ok(&format!(
        "name: named\ncomponents:\n{}hostInterfaces:\n  - {{ interface: \"wasi:http/incoming-handler@0.2.0\", component: p }}\n",
        probe("p", "")
    ))
    .await;
    assert_eq!(get(&format!("{}/x", t.base().await)).await, (200, "p GET /x\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn beside_another_http_component_one_without_routes_is_refused_either_way_round() {
    let t = host().await;
    let routed = serve("routed", r#"[{ path: "/r/*" }]"#);
    let cases = [
        (format!("name: first\ncomponents:\n{}{}hostInterfaces:\n{routed}", probe("bare", ""), probe("routed", ""))),
        (format!("name: second\ncomponents:\n{}{}hostInterfaces:\n{routed}", probe("routed", ""), probe("bare", ""))),
    ];
    for yaml in cases {
        let err = t.start(&yaml).await.err().expect("the workload is rejected").to_string();
        assert!(err.contains("plugin `http` refused it"), "{err}");
        assert!(err.contains("component `bare`") && err.contains("`routes`"), "{err}");
        assert!(err.contains("served on `/*` only") && err.contains("only HTTP component"), "{err}");
    }
    // Nothing of theirs is left serving.
    let (routed, bare) = (format!("{}/r/x", t.base().await), format!("{}/x", t.base().await));
    assert_eq!(get(&routed).await.0, 404);
    assert_eq!(get(&bare).await.0, 404);
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
    logs();
    let trapped = request_with(&format!("{base}/trap"), &[]).await;
    assert_generic_500(&trapped, "component `p` trapped");
    assert_generic_500(&request_with(&format!("{base}/silent"), &[]).await, "the handler returned without a response");
    assert_eq!(get(&format!("{base}/after")).await, (200, "p GET /after\n".into()));
}

/// A handler that traps after its response has begun cannot take the status
/// back, but the client must not read a complete-looking answer: the body
/// fails (or the connection closes before the head went out).
#[tokio::test(flavor = "multi_thread")]
async fn a_handler_trapping_half_way_through_its_body_ends_it_with_an_error() {
    let t = host().await;
    start_fresh_and_reused(&t, "mid-body").await;
    let base = t.base().await;
    for component in ["fresh", "reused", "reused"] {
        assert_never_whole(&format!("{base}/{component}/trap-mid-body")).await;
        // The server carries on, on the same component.
        assert_eq!(get(&format!("{base}/{component}/served")).await, (200, "served 1".into()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_code_answer_is_logged_and_a_generic_500() {
    let t = host().await;
    t.start_ok(&format!(
        "name: codes\ncomponents:\n{}hostInterfaces:\n{}",
        probe("p", ""),
        serve("p", r#"[{ path: "/*" }]"#)
    ))
    .await;
    logs();
    let answer = request_with(&format!("{}/error-code", t.base().await), &[]).await;
    // The guest's own words stay in the log.
    assert!(!answer.2.contains("probe secret") && !answer.2.contains("InternalError"), "{}", answer.2);
    assert_generic_500(&answer, "InternalError(Some(\"probe secret 42\"))");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_cannot_forge_path_parameters_or_other_host_headers() {
    let t = host().await;
    t.start_ok(&format!(
        "name: forged\ncomponents:\n{}hostInterfaces:\n{}",
        probe("users", ""),
        serve("users", r#"[{ path: "/users/{id}/posts/{post}" }]"#)
    ))
    .await;
    let url = format!("{}/users/7/posts/42", t.base().await);
    let forged = [("weft-param-id", "666"), ("Weft-Param-Admin", "yes"), ("weft-param-post", "0")];
    let (status, _, body) = request_with(&url, &forged).await;
    assert_eq!((status, body.as_str()), (200, "users GET /users/7/posts/42 id=7 post=42\n"));
}

/// The probe twice: `fresh` on `/fresh/*`, and `reused` (`reuseInstances`) on `/reused/*`.
async fn start_fresh_and_reused(t: &TestHost, name: &str) -> std::sync::Arc<weft_runtime::RunningWorkload> {
    t.start_ok(&format!(
        "name: {name}\ncomponents:\n{}{}hostInterfaces:\n{}{}",
        probe("fresh", ""),
        probe("reused", ", reuseInstances: true"),
        serve("fresh", r#"[{ path: "/fresh/*" }]"#),
        serve("reused", r#"[{ path: "/reused/*" }]"#),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_are_fresh_per_request_unless_reuse_is_asked_for() {
    let t = host().await;
    let workload = start_fresh_and_reused(&t, "reuse").await;
    let base = t.base().await;
    // The handler gives its instance back when it returns, which may be just
    // after the client has the response: wait for that before the next request.
    let idle = |expected: usize| {
        let workload = workload.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while workload.idle_instances("reused").unwrap() != expected {
                assert!(std::time::Instant::now() < deadline, "never {expected} idle instances");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // One request at a time, so a reused instance is the same one each time.
    for _ in 0..3 {
        assert_eq!(get(&format!("{base}/fresh/served")).await, (200, "served 1".into()));
    }
    assert_eq!(workload.idle_instances("fresh").unwrap(), 0);
    for n in 1..=3 {
        assert_eq!(get(&format!("{base}/reused/served")).await, (200, format!("served {n}")));
        idle(1).await;
    }
    // A trap ends the instance: the next request gets a fresh one.
    assert_eq!(get(&format!("{base}/reused/trap")).await.0, 500);
    idle(0).await;
    assert_eq!(get(&format!("{base}/reused/served")).await, (200, "served 1".into()));
    idle(1).await;
    assert_eq!(get(&format!("{base}/reused/served")).await, (200, "served 2".into()));
}

/// A handler that finishes its response without waiting on anything has it sent
/// whole, with a `content-length`; one that goes on writing after a pause has
/// its first bytes at the client before the pause ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_finished_answer_goes_out_with_its_length_and_a_dripping_one_streams() {
    use http_body_util::BodyExt;
    let t = host().await;
    start_fresh_and_reused(&t, "lengths").await;
    let base = t.base().await;
    for component in ["fresh", "reused", "reused"] {
        let (status, headers, body) = request_with(&format!("{base}/{component}/hello"), &[]).await;
        assert_eq!((status, body.as_str()), (200, format!("{component} GET /{component}/hello\n").as_str()));
        assert_eq!(
            headers.get(http::header::CONTENT_LENGTH).map(|v| v.to_str().unwrap()),
            Some(&*body.len().to_string())
        );
        assert!(headers.get(http::header::TRANSFER_ENCODING).is_none(), "{headers:?}");
    }
    let pause = Duration::from_millis(1500);
    let asked = std::time::Instant::now();
    let response = get_response(&format!("{base}/fresh/drip?ms={}", pause.as_millis())).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get(http::header::CONTENT_LENGTH).is_none());
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first\n");
    assert!(asked.elapsed() < pause, "the first bytes came only after {:?}", asked.elapsed());
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second\n");
    assert!(asked.elapsed() >= pause);
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
    logs();
    let answer = tokio::time::timeout(Duration::from_secs(30), request_with(&format!("{base}/slow?ms=600000"), &[]))
        .await
        .expect("no hang");
    assert_generic_500(&answer, "did not finish within its timeout of 300ms");
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

/// A TLS connection to `addr` that trusts `cert` and offers only h2.
async fn tls_connect(
    addr: std::net::SocketAddr,
    cert: &rcgen::CertifiedKey,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
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
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
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
    let tls = tls_connect(addr, &cert).await;
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

/// The client's half of an h2 connection: the preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// How long after `since` the server closes `stream` (reading, and ignoring,
/// whatever it sends until then); failing if it keeps it open for 20 s.
async fn closed_after(mut stream: impl tokio::io::AsyncRead + Unpin, since: std::time::Instant) -> Duration {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0; 4096];
    let read = async {
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            let _ = n;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the server closes the connection");
    since.elapsed()
}

fn assert_closed_on_time(what: &str, after: Duration, limit: Duration) {
    assert!(
        after >= limit.saturating_sub(Duration::from_millis(100)) && after < limit + Duration::from_secs(1),
        "{what}: closed after {after:?}, expected {limit:?} (+ less than 1 s)"
    );
}

async fn patient_host(settings: weft_plugins::Settings) -> TestHost {
    let t = host_with(settings).await;
    t.start_ok(&format!(
        "name: patient\ncomponents:\n{}hostInterfaces:\n{}",
        probe("p", ""),
        serve("p", r#"[{ path: "/*" }]"#)
    ))
    .await;
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_connections_are_closed_within_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    const HEADER_READ: Duration = Duration::from_secs(1);
    let dir = tempfile::tempdir().unwrap();
    for tls in [false, true] {
        let mut settings = weft_plugins::Settings::default();
        settings.http.header_read_timeout = HEADER_READ;
        // Not what applies: these connections never sent a request.
        settings.http.idle_timeout = Duration::from_secs(60);
        let cert = tls.then(|| self_signed(dir.path()));
        settings.http.tls = cert.as_ref().map(|c| c.1.clone());
        let t = patient_host(settings).await;
        let addr = t.http.local_addrs().await[0];
        for preface in [&b""[..], H2_PREFACE] {
            let what = format!("tls={tls} h2 preface={}", !preface.is_empty());
            let since = std::time::Instant::now();
            let after = match &cert {
                None => {
                    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                    tcp.write_all(preface).await.unwrap();
                    closed_after(tcp, since).await
                }
                Some((cert, _)) => {
                    // The handshake done, then nothing (or the h2 preface and nothing).
                    let mut stream = tls_connect(addr, cert).await;
                    stream.write_all(preface).await.unwrap();
                    stream.flush().await.unwrap();
                    closed_after(stream, since).await
                }
            };
            assert_closed_on_time(&what, after, HEADER_READ);
        }
        if !tls {
            assert_eq!(get(&format!("{}/x", t.base().await)).await, (200, "p GET /x\n".into()));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn served_connections_are_closed_after_the_idle_timeout_never_mid_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const IDLE: Duration = Duration::from_secs(1);
    let mut settings = weft_plugins::Settings::default();
    // Longer, so that what closes these connections is the idle timeout.
    settings.http.header_read_timeout = Duration::from_secs(10);
    settings.http.idle_timeout = IDLE;
    let t = patient_host(settings).await;
    let addr = t.http.local_addrs().await[0];

    // HTTP/1.1 keep-alive: one request, then nothing.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /kept HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    // The whole answer: its head, then as many bytes as its `content-length` says.
    let whole = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer);
        let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
        let length = head.lines().find_map(|l| l.strip_prefix("content-length: ")).expect("a content-length");
        body.len() >= length.parse().unwrap()
    };
    while !whole(&answer) {
        let mut buf = [0; 1024];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("p GET /kept\n"), "{text}");
    assert_closed_on_time("HTTP/1.1 keep-alive", closed_after(tcp, std::time::Instant::now()).await, IDLE);

    // h2 (prior knowledge): one request, then nothing; the server ends the connection.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req =
        http::Request::get(format!("http://{addr}/h2")).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(req).await.unwrap();
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"p GET /h2\n");
    let since = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), conn).await.expect("the server ends the h2 connection").ok();
    assert_closed_on_time("h2", since.elapsed(), IDLE);

    // A request that takes longer than both timeouts is not cut.
    let mut settings = weft_plugins::Settings::default();
    settings.http.header_read_timeout = Duration::from_millis(500);
    settings.http.idle_timeout = Duration::from_millis(500);
    let t = patient_host(settings).await;
    assert_eq!(get(&format!("{}/slow?ms=2000", t.base().await)).await, (200, "slept\n".into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_holds_and_a_waiting_client_is_served_when_one_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CAP: usize = 3;
    let mut settings = weft_plugins::Settings::default();
    settings.http.max_connections = CAP as u32;
    let t = patient_host(settings).await;
    let addr = t.http.local_addrs().await[0];
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The kernel takes the next connection into the backlog; the server does not serve it.
    let mut waiting = tokio::net::TcpStream::connect(addr).await.unwrap();
    waiting.write_all(b"GET /waited HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(1500), waiting.read_to_end(&mut answer)).await;
    assert!(early.is_err() && answer.is_empty(), "served past the cap: {}", String::from_utf8_lossy(&answer));
    // One slot frees: the waiting client is served.
    drop(idle.pop());
    tokio::time::timeout(Duration::from_secs(10), waiting.read_to_end(&mut answer))
        .await
        .expect("served once a slot is free")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("p GET /waited\n"), "{answer}");
}

/// The CPU time this process has used, from its open /proc/self/stat (clock
/// ticks of 10 ms), read again from the start without needing a descriptor.
fn cpu_time(stat: &std::fs::File) -> Duration {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; 4096];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let stat = String::from_utf8_lossy(&buf[..n]);
    // Fields after the command name, which is in parentheses: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

const EMFILE_CHILD: &str = "WEFT_HTTP_TEST_EMFILE_CHILD";

/// Runs `accept_backoff_child` in a child process with few file descriptors.
#[test]
fn accept_failures_back_off_instead_of_spinning() {
    if std::env::var_os(EMFILE_CHILD).is_some() {
        return;
    }
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 256 && exec "$0" --exact accept_backoff_child --nocapture --test-threads 1"#)
        .arg(std::env::current_exe().unwrap())
        .env(EMFILE_CHILD, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success() && stdout.contains("1 passed"), "{stdout}\n{stderr}");
    assert!(stdout.contains("the child ran"), "{stdout}\n{stderr}");
}

/// Runs only in the child process `accept_failures_back_off_instead_of_spinning`
/// starts: uses up the file descriptors while a client waits to be accepted.
#[tokio::test(flavor = "multi_thread")]
async fn accept_backoff_child() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if std::env::var_os(EMFILE_CHILD).is_none() {
        return;
    }
    logs();
    let t = patient_host(weft_plugins::Settings::default()).await;
    let addr = t.http.local_addrs().await[0];
    assert_eq!(get(&format!("{}/before", t.base().await)).await.0, 200);
    let stat = std::fs::File::open("/proc/self/stat").unwrap();
    // Every descriptor taken, then one given back for the client: the server's
    // accept has none left.
    let mut hoard = Vec::new();
    // The connection of the request before may close a moment later and give
    // a descriptor back: hoard until none comes back for a while.
    let mut quiet = 0;
    while quiet < 3 {
        let before = hoard.len();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(file) => hoard.push(file),
                Err(e) if e.raw_os_error() == Some(24) => break,
                Err(e) => panic!("{e}"),
            }
        }
        quiet = if hoard.len() == before { quiet + 1 } else { 0 };
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hoard.pop();
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu, events) = (cpu_time(&stat), LOGGED.load(std::sync::atomic::Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu, events) = (cpu_time(&stat) - cpu, LOGGED.load(std::sync::atomic::Ordering::Relaxed) - events);
    let failures = logged("accept failed");
    assert!(!failures.is_empty(), "the failure is reported");
    assert!(cpu < Duration::from_millis(500), "{cpu:?} of CPU in 2 s while accept fails");
    assert!(events <= 2, "{events} events in 2 s while accept fails: {failures:?}");
    // Descriptors back: the waiting client is served.
    hoard.truncate(hoard.len().saturating_sub(64));
    client.write_all(b"GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await.expect("served").unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("p GET /after\n"), "{answer}");
    println!("the child ran");
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

/// What `weft inspect` shows (`Host::validate`) refuses the HTTP settings that
/// starting refuses, with the same message, before anything is served.
#[tokio::test(flavor = "multi_thread")]
async fn validation_refuses_the_http_settings_that_start_refuses() {
    let t = host().await;
    for (config, expected) in [
        (r#"{ routes: [{ path: "no-slash" }] }"#, "route path `no-slash` must start with `/`"),
        (r#"{ routes: [{ path: "/a/*/b" }] }"#, "`*` only at the end"),
        ("{ rout: [] }", "unknown HTTP setting `rout` (expected `routes`)"),
        (r#"{ routes: "/x" }"#, "invalid `routes`"),
    ] {
        let yaml = format!(
            "name: bad\ncomponents:\n{}hostInterfaces:\n  - {{ interface: \"wasi:http/incoming-handler@0.2.0\", component: p, config: {config} }}\n",
            probe("p", "")
        );
        let mut spec = weft_runtime::WorkloadSpec::from_yaml(&yaml).unwrap();
        spec.base_dir = Some(t.dir.path().to_path_buf());
        let validated = t.host.validate(spec).await.err().expect("validation refuses it").to_string();
        let started = t.start(&yaml).await.err().expect("start refuses it").to_string();
        assert!(validated.contains(expected), "{validated}");
        assert_eq!(validated, started);
    }
    assert!(t.http.local_addrs().await.is_empty(), "nothing was served, so the server never listened");
}

/// Stopping a workload while a request waits in a host call (the handler sleeps
/// for a minute): the stop waits its grace, cancels the request, says so in the
/// status, and only then removes the emptyDirs.
#[tokio::test(flavor = "multi_thread")]
async fn stop_cancels_a_request_blocked_in_a_host_call_then_removes_volumes() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            "name: sleepy\ncomponents:\n  - {{ name: p, source: {HTTP_PROBE}, volumeMounts: [{{ name: scratch, mountPath: /scratch }}], limits: {{ timeout: unlimited }} }}\nvolumes: [{{ name: scratch, emptyDir: {{}} }}]\nhostInterfaces:\n{}",
            serve("p", r#"[{ path: "/*" }]"#)
        ))
        .await;
    let scratch = t.dir.path().join("scratch");
    let url = format!("{}/slow?ms=60000", t.base().await);
    let request = tokio::spawn(async move { get(&url).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while w.status().components.iter().map(|c| c.in_flight).sum::<u32>() == 0 {
        assert!(std::time::Instant::now() < deadline, "the request never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(std::fs::read_dir(&scratch).unwrap().count() > 0, "the emptyDir exists while running");
    let started = std::time::Instant::now();
    let status = weft_runtime::HostApi::workload_stop(&t.host, w.id()).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    assert_eq!(status.state, weft_runtime::WorkloadState::Stopped);
    assert_eq!(status.message.as_deref(), Some("1 invocation(s) in flight were cancelled"));
    let (code, _) = tokio::time::timeout(Duration::from_secs(5), request).await.expect("the request ended").unwrap();
    assert!(code >= 500, "the cancelled request answered {code}");
    let left: Vec<_> = std::fs::read_dir(&scratch).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "emptyDirs left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_heartbeat_reports_the_servers_port_once_it_listens_and_what_it_drives() {
    use weft_runtime::HostApi;
    let t = host().await;
    let before = t.host.heartbeat().await.unwrap();
    assert_eq!(before.http_port, None);
    assert!(before.exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler")), "{:?}", before.exports);
    t.start_ok(&format!("name: bare\ncomponents:\n{}", probe("p", ""))).await;
    let port = t.http.local_addrs().await[0].port();
    assert_eq!(t.host.heartbeat().await.unwrap().http_port, Some(port));
}

/// `Host::workload_replace` (what `weft dev` swaps with): a rejected replacement
/// changes nothing; an accepted one takes the routes over at once, while a slow
/// request the old version is serving finishes there, and then the old one stops.
#[tokio::test(flavor = "multi_thread")]
async fn a_replacement_takes_over_the_routes_while_the_old_version_finishes_its_requests() {
    let t = host().await;
    let spec = |component: &str, routes: &str| {
        let yaml =
            format!("name: swap\ncomponents:\n{}hostInterfaces:\n{}", probe(component, ""), serve(component, routes));
        let mut spec = weft_runtime::WorkloadSpec::from_yaml(&yaml).unwrap();
        spec.base_dir = Some(t.dir.path().to_path_buf());
        spec
    };
    let old = t.host.workload_start(spec("old", r#"[{ path: "/*" }]"#)).await.unwrap();
    let base = t.base().await;
    let slow = {
        let url = format!("{base}/slow?ms=1500");
        tokio::spawn(async move { get(&url).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let err = t.host.workload_replace(&old.id, spec("new", r#"[{ path: "no-slash" }]"#)).await.unwrap_err();
    assert!(err.to_string().contains("must start with `/`"), "{err}");
    assert_eq!(get(&format!("{base}/x")).await, (200, "old GET /x\n".into()));

    let new = t.host.workload_replace(&old.id, spec("new", r#"[{ path: "/*" }]"#)).await.unwrap();
    assert_eq!(get(&format!("{base}/x")).await, (200, "new GET /x\n".into()));
    assert_eq!(t.host.workload_status(&old.id).await.unwrap().state, WorkloadState::Running);
    // Past the half second a stopping workload gives its calls: the replaced one
    // waited for it.
    assert_eq!(slow.await.unwrap(), (200, "slept\n".into()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.host.workload_status(&old.id).await.unwrap().state != WorkloadState::Stopped {
        assert!(std::time::Instant::now() < deadline, "the replaced workload never stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listed: Vec<_> = t.host.workload_list().await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, [new.id]);
    // The name is the new workload's: another of that name is still refused.
    let err = t.host.workload_start(spec("third", r#"[{ path: "/other" }]"#)).await.unwrap_err();
    assert!(err.to_string().contains("a workload named `swap` is already running"), "{err}");
}
