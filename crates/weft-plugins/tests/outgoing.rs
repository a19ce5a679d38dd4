//! Outgoing HTTP: the name and the address a request reaches, checked in
//! `outgoing-handler.handle`, with real components and this host's own server as
//! the destination.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;

/// A component sending requests (`outgoing-probe`), served on `/{name}/*`, with
/// its `wasi:http/outgoing-handler` settings.
fn sender(name: &str, settings: &str) -> (String, String) {
    (
        format!("  - {{ name: {name}, source: {OUTGOING_PROBE} }}\n"),
        format!(
            "{}  - {{ interface: \"wasi:http/outgoing-handler@0.2.0\", component: {name}, config: {{ {settings} }} }}\n",
            serve(name, &format!(r#"[{{ path: "/{name}/*" }}]"#))
        ),
    )
}

/// A workload of the senders and a `target` (`http-probe`, on `/target/*`).
fn workload(name: &str, senders: &[(String, String)]) -> String {
    let components: String = senders.iter().map(|(c, _)| c.as_str()).collect();
    let interfaces: String = senders.iter().map(|(_, i)| i.as_str()).collect();
    format!(
        "name: {name}\ncomponents:\n{components}  - {{ name: target, source: {HTTP_PROBE} }}\nhostInterfaces:\n{interfaces}{}",
        serve("target", r#"[{ path: "/target/*" }]"#)
    )
}

/// What `sender` answers when asked to send `body` bytes to `url`.
async fn send(base: &str, sender: &str, url: &str, body: usize) -> String {
    let (status, answer) = get(&format!("{base}/{sender}/send?url={url}&body={body}")).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn an_allowed_name_that_resolves_to_loopback_is_denied_at_handle_unless_its_address_is_allowed() {
    let t = host().await;
    t.start_ok(&workload(
        "names",
        &[
            sender("nameonly", r#"allowedHosts: ["localhost"]"#),
            sender("granted", r#"allowedHosts: ["localhost"], allowedAddresses: ["127.0.0.1"]"#),
            sender("otherrange", r#"allowedHosts: ["localhost"], allowedAddresses: ["10.0.0.0/8", "127.0.0.2"]"#),
        ],
    ))
    .await;
    let base = t.base().await;
    let port = t.http.local_addrs().await[0].port();
    let target = format!("http://localhost:{port}/target/x");
    // Refused in `handle` itself, so the guest never starts writing a body into a
    // request that is already dead (which `wstd` reports as "connection reset").
    for body in [0, 100_000] {
        assert_eq!(send(&base, "nameonly", &target, body).await, "handle: ErrorCode::HttpRequestDenied", "{body}");
        // Allowing other addresses allows none of `localhost`'s.
        assert_eq!(send(&base, "otherrange", &target, body).await, "handle: ErrorCode::HttpRequestDenied", "{body}");
    }
    // With the address allowed, the same request reaches the server, body and all.
    assert_eq!(send(&base, "granted", &target, 0).await, "status 200: target GET /target/x\n");
    let echo = format!("http://localhost:{port}/target/echo");
    assert_eq!(send(&base, "granted", &echo, 20_000).await, format!("status 200: {}", "x".repeat(20_000)));
}

#[tokio::test(flavor = "multi_thread")]
async fn cloud_metadata_and_other_non_public_addresses_are_refused_even_to_a_star() {
    let t = host().await;
    t.start_ok(&workload("star", &[sender("any", r#"allowedHosts: ["*"]"#)])).await;
    let base = t.base().await;
    let port = t.http.local_addrs().await[0].port();
    for url in [
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:169.254.169.254]/latest/meta-data/".to_string(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
        "http://100.100.100.200/latest/meta-data/".to_string(),
        format!("http://127.0.0.1:{port}/target/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/target/x"),
        format!("http://0.0.0.0:{port}/target/x"),
        format!("http://localhost:{port}/target/x"),
        "http://10.0.0.1/".to_string(),
        "http://192.168.0.1/".to_string(),
        "http://[fe80::1]/".to_string(),
        "http://255.255.255.255/".to_string(),
    ] {
        assert_eq!(send(&base, "any", &url, 10).await, "handle: ErrorCode::HttpRequestDenied", "{url}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bracketed_ipv6_hosts_and_ip_grants() {
    let t = host().await;
    t.start_ok(&workload(
        "six",
        &[
            sender("v4", r#"allowedHosts: ["127.0.0.1"], allowedAddresses: ["127.0.0.0/8"]"#),
            sender("v6", r#"allowedHosts: ["[::1]:9", "http://[::1]"], allowedAddresses: ["::1"]"#),
        ],
    ))
    .await;
    let base = t.base().await;
    let port = t.http.local_addrs().await[0].port();
    assert_eq!(
        send(&base, "v4", &format!("http://127.0.0.1:{port}/target/y"), 0).await,
        "status 200: target GET /target/y\n"
    );
    // An IPv4-mapped address is its IPv4 address, for the name and the address check.
    assert_eq!(
        send(&base, "v4", &format!("http://[::ffff:127.0.0.1]:{port}/target/y"), 0).await,
        "status 200: target GET /target/y\n"
    );
    // The pattern and the grant match; nothing listens on [::1] here.
    let answer = send(&base, "v6", &format!("http://[::1]:{port}/target/y"), 0).await;
    assert!(answer.starts_with("response: ErrorCode::ConnectionRefused"), "{answer}");
    assert_eq!(send(&base, "v6", &format!("https://[::1]:{port}/"), 0).await, "handle: ErrorCode::HttpRequestDenied");
    assert_eq!(send(&base, "v6", &format!("http://[::2]:{port}/"), 0).await, "handle: ErrorCode::HttpRequestDenied");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_goes_over_the_vetted_connection_and_checks_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut settings = weft_plugins::Settings::default();
    settings.http.tls = Some(weft_plugins::http::TlsSettings { cert: cert_path, key: key_path });
    let t = host_with(settings).await;
    t.start_ok(&workload(
        "secure",
        &[sender("granted", r#"allowedHosts: ["localhost"], allowedAddresses: ["127.0.0.1"]"#)],
    ))
    .await;
    let addr = t.http.local_addrs().await[0];
    // The test's own client talks TLS to the listener; the guest's request, to the
    // same listener, fails the handshake: its certificate is in no webpki root.
    let base = format!("https://localhost:{}", addr.port());
    let answer = https_get(addr, &format!("{base}/granted/send?url={base}/target/x&body=0"), &cert).await;
    assert_eq!(answer, "response: ErrorCode::TlsProtocolError");
}

/// A GET over TLS that trusts `cert`, and the body of the answer.
async fn https_get(addr: std::net::SocketAddr, url: &str, cert: &rcgen::CertifiedKey) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect("localhost".try_into().unwrap(), tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(url)
        .header(http::header::HOST, format!("localhost:{}", addr.port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_that_cannot_work_are_refused_at_start() {
    let t = host().await;
    for (settings, expected) in [
        (
            r#"allowedHosts: ["127.0.0.1"]"#,
            r#"allowed host `127.0.0.1` is a loopback address, which requests reach only if `allowedAddresses` allows it (for example `allowedAddresses: ["127.0.0.1"]`)"#,
        ),
        (r#"allowedHosts: ["[fe80::1]:80"]"#, r#"allowed host `[fe80::1]:80` is a link-local address"#),
        (r#"allowedHosts: ["::1"]"#, "an IPv6 address is written in brackets, `[::1]` or `[::1]:8080`"),
        (r#"allowedAddresses: ["10.0.0.1/8"]"#, "address bits are set past /8 (the range starts at 10.0.0.0)"),
        (r#"allowedAddresses: ["localhost"]"#, "invalid allowed address `localhost`"),
        (r#"allowedAddresses: "10.0.0.0/8""#, "`allowedAddresses` must be a list"),
        (r#"allowedAdresses: []"#, "unknown setting `allowedAdresses` (expected `allowedHosts` or `allowedAddresses`)"),
    ] {
        let err = t.start(&workload("bad", &[sender("s", settings)])).await.err().expect(settings).to_string();
        assert!(err.contains(expected), "{settings}:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn denials_are_logged_at_warn_with_the_reason() {
    let t = host().await;
    t.start_ok(&workload(
        "logged",
        &[sender("s", r#"allowedHosts: ["localhost", "allowed.test"], allowedAddresses: ["10.0.0.0/8"]"#)],
    ))
    .await;
    let base = t.base().await;
    let captured = captured();
    let port = t.http.local_addrs().await[0].port();
    let by_address = format!("http://localhost:{port}/logged-by-address");
    let by_name = format!("http://elsewhere.test:{port}/logged-by-name");
    assert_eq!(send(&base, "s", &by_address, 0).await, "handle: ErrorCode::HttpRequestDenied");
    assert_eq!(send(&base, "s", &by_name, 0).await, "handle: ErrorCode::HttpRequestDenied");
    let events = captured.0.lock().unwrap().clone();
    let about = |uri: &str| -> Vec<(tracing::Level, String)> {
        events
            .iter()
            .filter(|e| e.get("uri").is_some_and(|u| u == uri))
            .map(|e| (e.level, e.get("message").cloned().unwrap_or_default()))
            .collect()
    };
    let logged = about(&by_address);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].0, tracing::Level::WARN);
    assert!(logged[0].1.contains("`localhost` is at ") && logged[0].1.contains("127.0.0.1 (loopback)"), "{logged:?}");
    assert!(logged[0].1.contains("allowedAddresses do not allow"), "{logged:?}");
    let logged = about(&by_name);
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].0, tracing::Level::WARN);
    assert!(logged[0].1.contains("allowedHosts do not allow it"), "{logged:?}");
}

/// One `tracing` event: its level and fields as text.
#[derive(Debug, Clone)]
struct Event {
    level: tracing::Level,
    fields: BTreeMap<String, String>,
}

impl Event {
    fn get(&self, field: &str) -> Option<&String> {
        self.fields.get(field)
    }
}

#[derive(Default, Clone)]
struct Captured(Arc<Mutex<Vec<Event>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut BTreeMap<String, String>);
        impl tracing::field::Visit for Fields<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_string(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_string(), value.to_string());
            }
        }
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Event { level: *event.metadata().level(), fields });
    }
}

/// Every event of this test binary, from the moment of the first call (a global
/// subscriber: each test picks its own events by their `uri`).
fn captured() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt;
            let captured = Captured::default();
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(captured.clone())).unwrap();
            captured
        })
        .clone()
}
