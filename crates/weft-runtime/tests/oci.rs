//! Components from OCI registries: a real `docker-registry`, artifacts pushed by
//! weft's client and by the `oras` SDK (scripts/oci-peer.py), pulls verified
//! and cached by digest, and every failure a clear rejection.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use weft_runtime::engine::EngineConfig;
use weft_runtime::output::{CapturedOutput, Stream};
use weft_runtime::source::oci::{OciClient, OciSettings, OciStats, PullPolicy, Reference, RegistrySettings};
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{Host, HostApi, HostConfig, HostError, WorkloadSpec};
use weft_testkit::Server;

fn settings(registry: &Server, credentials: Option<(&str, &str)>) -> OciSettings {
    let mut settings = OciSettings {
        // Never the user's own ~/.docker/config.json.
        docker_config: Some(PathBuf::from("/nonexistent/config.json")),
        ..OciSettings::default()
    };
    settings.registries.insert(
        registry.url(),
        RegistrySettings {
            insecure: true,
            username: credentials.map(|(u, _)| u.to_string()),
            password: credentials.map(|(_, p)| p.to_string()),
            token: None,
        },
    );
    settings
}

struct OciHost {
    host: Host,
    output: Arc<CapturedOutput>,
    _scratch: tempfile::TempDir,
}

async fn oci_host(oci: OciSettings, cache: &Path) -> OciHost {
    let scratch = tempfile::tempdir().unwrap();
    let output = Arc::new(CapturedOutput::default());
    let host = Host::new(HostConfig {
        engine: EngineConfig { cache_dir: Some(cache.to_path_buf()), max_instances: 32, ..EngineConfig::default() },
        scratch_dir: Some(scratch.path().join("scratch")),
        stdio: GuestStdio::Sink(output.clone()),
        oci,
        ..HostConfig::default()
    })
    .await
    .unwrap();
    OciHost { host, output, _scratch: scratch }
}

fn hello_from(source: &str) -> WorkloadSpec {
    WorkloadSpec::from_yaml(&format!(
        "name: pulled\ncomponents:\n  - {{ name: hello, source: \"{source}\", args: [pulled, hello] }}\n"
    ))
    .unwrap()
}

impl OciHost {
    /// Starts hello from `source`, runs it, and stops it.
    async fn run_hello(&self, source: &str) {
        let status = self.host.workload_start(hello_from(source)).await.unwrap_or_else(|e| panic!("{e}"));
        self.host.workload(&status.id).unwrap().run("hello").await.unwrap();
        assert_eq!(self.output.lines_of("hello", Stream::Stdout).last().map(String::as_str), Some("pulled hello"));
        self.host.workload_stop(&status.id).await.unwrap();
    }

    async fn rejected(&self, source: &str) -> String {
        match self.host.workload_start(hello_from(source)).await {
            Err(HostError::Rejected(r)) => r.to_string(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_component_is_pulled_verified_and_cached_so_a_second_start_pulls_nothing() {
    let mut registry = Server::registry(None);
    let cache = tempfile::tempdir().unwrap();
    let client = OciClient::new(settings(&registry, None), None, 1 << 30);
    let reference = Reference::parse(&format!("{}/weft/hello:1.0", registry.url())).unwrap();
    let digest = client.push(&reference, bytes(HELLO), BTreeMap::new()).await.unwrap();

    let first = oci_host(settings(&registry, None), cache.path()).await;
    let source = format!("oci://{reference}");
    first.run_hello(&source).await;
    assert_eq!(first.host.oci_stats(), OciStats { manifests: 1, blobs: 1 });
    // Pinned by digest, the same artifact: already cached.
    first.run_hello(&format!("oci://{}/weft/hello@{digest}", registry.url())).await;
    assert_eq!(first.host.oci_stats(), OciStats { manifests: 1, blobs: 1 });

    // A new host on the same cache, the registry gone: nothing to fetch.
    registry.stop();
    let second = oci_host(settings(&registry, None), cache.path()).await;
    second.run_hello(&source).await;
    assert_eq!(second.host.oci_stats(), OciStats::default());

    // A damaged cached layer is not trusted: with the registry back, it is fetched again.
    registry.restart();
    for file in walk(&cache.path().join("oci/blobs")) {
        std::fs::write(file, b"damaged").unwrap();
    }
    let third = oci_host(settings(&registry, None), cache.path()).await;
    third.run_hello(&source).await;
    assert_eq!(third.host.oci_stats().blobs, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_failures_reject_the_workload_whole_with_the_cause() {
    let registry = Server::registry(None);
    let cache = tempfile::tempdir().unwrap();
    let host = oci_host(settings(&registry, None), cache.path()).await;
    let url = registry.url();

    let missing = host.rejected(&format!("oci://{url}/weft/missing:1")).await;
    assert!(missing.contains("not found in the registry"), "{missing}");

    // Something other than a Wasm artifact (a container image's config media type).
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, "{}").unwrap();
    let layer = dir.path().join("layer.tar");
    std::fs::write(&layer, "not wasm").unwrap();
    oras(
        &["push", &format!("{url}/weft/image:1")],
        &[&layer, &config],
        &["application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.config.v1+json"],
    );
    let image = host.rejected(&format!("oci://{url}/weft/image:1")).await;
    assert!(
        image.contains("not a Wasm artifact") && image.contains("application/vnd.oci.image.config.v1+json"),
        "{image}"
    );

    // Plain HTTP only where the host configuration says so.
    let strict = oci_host(OciSettings::default(), cache.path()).await;
    let https = strict.rejected(&format!("oci://{url}/weft/missing:1")).await;
    assert!(https.contains("is unreachable") && https.contains("TLS"), "{https}");

    // Nothing listening: tried again with backoff, then refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut down = OciSettings::default();
    down.registries.insert(format!("127.0.0.1:{port}"), RegistrySettings { insecure: true, ..Default::default() });
    let host_down = oci_host(down, cache.path()).await;
    let started = std::time::Instant::now();
    let unreachable = host_down.rejected(&format!("oci://127.0.0.1:{port}/weft/hello:1")).await;
    assert!(unreachable.contains("is unreachable") && unreachable.contains("4 tries"), "{unreachable}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());

    // One bad source rejects the workload whole, and every problem is named.
    let spec = WorkloadSpec::from_yaml(&format!(
        "name: mixed\ncomponents:\n  - {{ name: a, source: \"{HELLO}\" }}\n  - {{ name: b, source: \"oci://{url}/weft/missing:2\" }}\n  - {{ name: c, source: \"oci://{url}/Bad\" }}\n"
    ))
    .unwrap();
    let Err(HostError::Rejected(rejection)) = host.host.workload_start(spec).await else { panic!("accepted") };
    let text = rejection.to_string();
    assert!(text.contains("component `b`") && text.contains("not found"), "{text}");
    assert!(text.contains("component `c`") && text.contains("not an OCI reference"), "{text}");
    assert_eq!(host.host.heartbeat().await.unwrap().workloads, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_credentials_from_the_host_configuration_or_docker_config() {
    let registry = Server::registry(Some(("ann", "s3cret")));
    let cache = tempfile::tempdir().unwrap();
    let url = registry.url();
    let reference = Reference::parse(&format!("{url}/team/hello:1")).unwrap();
    let source = format!("oci://{reference}");

    let anonymous = OciClient::new(settings(&registry, None), None, 1 << 30);
    let e = anonymous.push(&reference, bytes(HELLO), BTreeMap::new()).await.unwrap_err();
    assert!(e.to_string().contains("unauthorized") && e.to_string().contains("none are configured"), "{e}");
    let client = OciClient::new(settings(&registry, Some(("ann", "s3cret"))), None, 1 << 30);
    client.push(&reference, bytes(HELLO), BTreeMap::new()).await.unwrap();

    let wrong = oci_host(settings(&registry, Some(("ann", "guess"))), cache.path()).await;
    let refused = wrong.rejected(&source).await;
    assert!(refused.contains("unauthorized"), "{refused}");

    oci_host(settings(&registry, Some(("ann", "s3cret"))), cache.path()).await.run_hello(&source).await;

    // The Docker configuration's `auths`, when the host configuration has none.
    let docker = tempfile::tempdir().unwrap();
    let config = docker.path().join("config.json");
    std::fs::write(&config, format!(r#"{{"auths": {{"{url}": {{"auth": "YW5uOnMzY3JldA=="}}}}}}"#)).unwrap();
    let mut from_docker = settings(&registry, None);
    from_docker.docker_config = Some(config);
    let other_cache = tempfile::tempdir().unwrap();
    let host = oci_host(from_docker, other_cache.path()).await;
    host.run_hello(&source).await;
    assert_eq!(host.host.oci_stats(), OciStats { manifests: 1, blobs: 1 });
}

#[tokio::test(flavor = "multi_thread")]
async fn artifacts_cross_between_weft_and_oras_both_ways() {
    let registry = Server::registry(None);
    let url = registry.url();
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // oras pushes the component in the Wasm layout; a weft host runs it.
    let wasm = dir.path().join("hello.wasm");
    std::fs::write(&wasm, bytes(HELLO)).unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"architecture":"wasm","os":"wasip2"}"#).unwrap();
    oras(
        &["push", &format!("{url}/oras/hello:1")],
        &[&wasm, &config],
        &["application/wasm", "application/vnd.wasm.config.v0+json"],
    );
    oci_host(settings(&registry, None), cache.path()).await.run_hello(&format!("oci://{url}/oras/hello:1")).await;

    // weft pushes, with annotations; oras reads the manifest and pulls the layer.
    let client = OciClient::new(settings(&registry, None), None, 1 << 30);
    let reference = Reference::parse(&format!("{url}/weft/hello:2")).unwrap();
    let annotations = BTreeMap::from([("org.opencontainers.image.title".to_string(), "hello".to_string())]);
    client.push(&reference, bytes(HELLO), annotations).await.unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&oras(&["manifest", &reference.to_string()], &[], &[])).unwrap();
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(manifest["annotations"]["org.opencontainers.image.title"], "hello");
    assert!(manifest["annotations"]["org.opencontainers.image.created"].is_string(), "{manifest}");
    let out = dir.path().join("pulled");
    oras(&["pull", &reference.to_string(), out.to_str().unwrap()], &[], &[]);
    let pulled: Vec<PathBuf> = walk(&out);
    assert_eq!(pulled.len(), 1, "{pulled:?}");
    assert_eq!(std::fs::read(&pulled[0]).unwrap(), bytes(HELLO));

    // And weft's own pull of what it pushed, tag resolved again.
    let again = client.pull(&reference, PullPolicy::Always, None).await.unwrap();
    assert_eq!((again.bytes, again.from_cache), (bytes(HELLO), false));
}

/// Runs scripts/oci-peer.py: `args`, then each file with its media type.
fn oras(args: &[&str], files: &[&Path], media_types: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oci-peer.py");
    let mut command = std::process::Command::new("python3");
    command.arg(script).args(args);
    for (file, media_type) in files.iter().zip(media_types) {
        command.arg(file).arg(media_type);
    }
    let output = command.output().expect("python3 runs");
    assert!(
        output.status.success(),
        "oci-peer.py {args:?} failed (pip install oras; scripts/setup.sh does): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// A registry with token authentication (docker-registry's `auth.token`): the
/// client follows the Bearer challenge to the realm, with its basic
/// credentials, and uses the token it gets. The realm is a small issuer run
/// here, signing RS256 JWTs with a key whose self-signed certificate the
/// registry trusts.
#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_from_the_registry_s_token_service() {
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "key.pem"]);
    openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der"]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "key.pem",
        "-subj",
        "/CN=weft-test-issuer",
        "-days",
        "2",
        "-out",
        "cert.pem",
    ]);
    openssl(&["x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der"]);
    let key = ring::signature::RsaKeyPair::from_pkcs8(&std::fs::read(dir.path().join("key.der")).unwrap()).unwrap();
    let cert = std::fs::read(dir.path().join("cert.der")).unwrap();

    let issuer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let realm = format!("http://{}/token", issuer.local_addr().unwrap());
    let asked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    tokio::spawn(serve_tokens(issuer, Arc::new(key), cert, asked.clone()));
    let registry =
        Server::registry_with_token(&realm, "weft-test-registry", "weft-test-issuer", &dir.path().join("cert.pem"));

    let reference = Reference::parse(&format!("{}/team/hello:1", registry.url())).unwrap();
    let client = OciClient::new(settings(&registry, Some(("ann", "s3cret"))), None, 1 << 30);
    client.push(&reference, bytes(HELLO), BTreeMap::new()).await.unwrap();
    let cache = tempfile::tempdir().unwrap();
    let host = oci_host(settings(&registry, Some(("ann", "s3cret"))), cache.path()).await;
    host.run_hello(&format!("oci://{reference}")).await;
    let asked = asked.lock().unwrap().clone();
    assert!(asked.iter().any(|q| q.contains("scope=repository%3Ateam%2Fhello%3Apull%2Cpush")), "{asked:?}");
    assert!(
        asked
            .iter()
            .any(|q| q.contains("scope=repository%3Ateam%2Fhello%3Apull") && q.contains("service=weft-test-registry")),
        "{asked:?}"
    );

    // Credentials the issuer refuses: unauthorized, saying the token service refused them.
    let wrong = oci_host(settings(&registry, Some(("ann", "guess"))), tempfile::tempdir().unwrap().path()).await;
    let refused = wrong.rejected(&format!("oci://{reference}")).await;
    assert!(refused.contains("unauthorized") && refused.contains("token service refused"), "{refused}");
}

/// The token issuer: `GET /token?service=…&scope=…` with `ann:s3cret` answers
/// `{"token": <JWT granting the scope>}`; anything else 401.
async fn serve_tokens(
    listener: tokio::net::TcpListener,
    key: Arc<ring::signature::RsaKeyPair>,
    cert: Vec<u8>,
    asked: Arc<std::sync::Mutex<Vec<String>>>,
) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD as std_b64, URL_SAFE_NO_PAD as b64};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else { return };
        let (key, cert, asked) = (key.clone(), cert.clone(), asked.clone());
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let Ok(n) = tcp.read(&mut buf).await else { return };
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split_whitespace().nth(1).unwrap_or_default().to_string();
            asked.lock().unwrap().push(target.clone());
            let expected = format!("Basic {}", std_b64.encode("ann:s3cret"));
            let authorized = head.lines().any(|l| {
                l.split_once(':')
                    .is_some_and(|(name, value)| name.eq_ignore_ascii_case("authorization") && value.trim() == expected)
            });
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|p| p.strip_prefix(&format!("{name}=")))
                    .map(percent_decode)
                    .unwrap_or_default()
            };
            let scope = param("scope");
            let response = if authorized && !scope.is_empty() {
                // `repository:<name>:<actions>`
                let mut parts = scope.splitn(3, ':');
                let (kind, name, actions) =
                    (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [std_b64.encode(&cert)] });
                let claims = serde_json::json!({
                    "iss": "weft-test-issuer", "sub": "ann", "aud": param("service"),
                    "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", rand_suffix()),
                    "access": [{ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }],
                });
                let signing_input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
                let mut signature = vec![0; key.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                key.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut signature).unwrap();
                let body =
                    serde_json::json!({ "token": format!("{signing_input}.{}", b64.encode(signature)) }).to_string();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
            };
            let _ = tcp.write_all(response.as_bytes()).await;
        });
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
