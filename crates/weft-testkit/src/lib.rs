//! Real servers for tests and benchmarks: `nats-server` (with JetStream),
//! `redis-server` and `docker-registry` (the CNCF distribution registry), each on a free port of 127.0.0.1 with a temporary directory,
//! stopped by their process id when dropped. A missing server binary fails the
//! test loudly, naming the package that provides it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

enum RegistryAuth {
    /// One `user:bcrypt-hash` line.
    Htpasswd(String),
    /// The `auth:` section.
    Token(String),
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    program: &'static str,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

/// A port nothing on 127.0.0.1 listens on, never one this process handed out
/// before: two tests of one binary start servers at the same moment, and the
/// kernel may give both the same just-released port.
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

fn spawn(program: &'static str, args: &[String], dir: &Path) -> Child {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start `{program}` ({e}): this test needs it on the PATH (Debian: apt-get install {program}; scripts/setup.sh installs it)")
        })
}

/// Waits until `child` listens on `port`. A connection to a port nobody listens
/// on in the ephemeral range can succeed by connecting to itself (TCP
/// simultaneous open); that one does not count.
fn wait_for_port(program: &str, child: &mut Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("`{program}` exited ({status}) before listening on port {port}");
        }
        if let Ok(stream) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
            && stream.local_addr().ok() != stream.peer_addr().ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "`{program}` did not listen on port {port} within 15 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Server {
    fn start(program: &'static str, args: impl Fn(u16, &Path) -> Vec<String>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let args = args(port, dir.path());
        let mut child = spawn(program, &args, dir.path());
        wait_for_port(program, &mut child, port);
        Server { child, port, program, args, dir }
    }

    /// `nats-server` with JetStream, its store in a temporary directory.
    pub fn nats() -> Server {
        Server::nats_with(&[])
    }

    /// [`nats`](Server::nats) with more arguments (`["--auth", "secret"]`).
    pub fn nats_with(extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        Server::start("nats-server", move |port, dir| {
            let store = dir.join("jetstream").display().to_string();
            let mut args =
                vec!["-a".into(), "127.0.0.1".into(), "-p".into(), port.to_string(), "-js".into(), "-sd".into(), store];
            args.extend(extra.iter().cloned());
            args
        })
    }

    /// `redis-server` without persistence.
    pub fn redis() -> Server {
        Server::start("redis-server", |port, dir| {
            vec![
                "--bind".into(),
                "127.0.0.1".into(),
                "--port".into(),
                port.to_string(),
                "--save".into(),
                String::new(),
                "--appendonly".into(),
                "no".into(),
                "--dir".into(),
                dir.display().to_string(),
            ]
        })
    }

    /// `docker-registry` over plain HTTP, its storage in a temporary directory;
    /// with `basic`, it asks for that user and password (an htpasswd file,
    /// bcrypt-hashed by Python's `bcrypt`, which scripts/setup.sh installs).
    pub fn registry(basic: Option<(&str, &str)>) -> Server {
        let auth = basic.map(|(user, password)| {
            let hashed = Command::new("python3")
                .args([
                    "-c",
                    "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(5)).decode())",
                    password,
                ])
                .output()
                .unwrap_or_else(|e| panic!("cannot run python3 to hash a password: {e}"));
            assert!(
                hashed.status.success(),
                "python3 bcrypt failed (pip install bcrypt; scripts/setup.sh does): {}",
                String::from_utf8_lossy(&hashed.stderr)
            );
            let line = format!("{user}:{}", String::from_utf8_lossy(&hashed.stdout).trim());
            RegistryAuth::Htpasswd(line)
        });
        Server::registry_with(auth)
    }

    /// `docker-registry` with token authentication: clients are sent to `realm`
    /// for a JWT that `issuer` signed for `service`, with the key of the
    /// certificate `cert` (PEM), which the registry trusts.
    pub fn registry_with_token(realm: &str, service: &str, issuer: &str, cert: &Path) -> Server {
        let config = format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
            cert.display()
        );
        Server::registry_with(Some(RegistryAuth::Token(config)))
    }

    fn registry_with(auth: Option<RegistryAuth>) -> Server {
        Server::start("docker-registry", move |port, dir| {
            let mut config = format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("storage").display()
            );
            match &auth {
                Some(RegistryAuth::Htpasswd(line)) => {
                    let htpasswd = dir.join("htpasswd");
                    std::fs::write(&htpasswd, line).unwrap();
                    config.push_str(&format!(
                        "auth:\n  htpasswd:\n    realm: weft-test\n    path: {}\n",
                        htpasswd.display()
                    ));
                }
                Some(RegistryAuth::Token(section)) => config.push_str(section),
                None => {}
            }
            let path = dir.join("config.yml");
            std::fs::write(&path, config).unwrap();
            vec!["serve".into(), path.display().to_string()]
        })
    }

    pub fn url(&self) -> String {
        match self.program {
            "redis-server" => format!("redis://127.0.0.1:{}", self.port),
            "docker-registry" => format!("127.0.0.1:{}", self.port),
            _ => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// Stops the server (by its process id) and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port, with the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(self.program, &self.args, self.dir.path());
        wait_for_port(self.program, &mut self.child, self.port);
    }
}

/// `scripts/otlp-receiver.py`: an OTLP/HTTP receiver that decodes with the
/// OpenTelemetry project's own protobuf classes; every export it took, as JSON.
pub struct OtlpReceiver {
    child: Child,
    pub port: u16,
    exports: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl OtlpReceiver {
    /// OTLP/HTTP (protobuf and JSON).
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::launch(&[])
    }

    /// OTLP/gRPC, over HTTP/2 without TLS.
    pub fn start_grpc() -> OtlpReceiver {
        OtlpReceiver::launch(&["--grpc"])
    }

    fn launch(args: &[&str]) -> OtlpReceiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/otlp-receiver.py");
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {} ({e}); scripts/setup.sh installs what it needs", script.display())
            });
        let exports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sink, stdout) = (exports.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                let value: serde_json::Value = serde_json::from_str(&line).expect("the receiver prints JSON lines");
                sink.lock().unwrap().push(value);
            }
        });
        wait_for_port("otlp-receiver.py (needs the opentelemetry-proto package)", &mut child, port);
        OtlpReceiver { child, port, exports }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bodies of the exports of `signal` (`traces`, `metrics`, `logs`) so far;
    /// fails on any export the receiver could not decode.
    pub fn exports(&self, signal: &str) -> Vec<serde_json::Value> {
        let all = self.exports.lock().unwrap();
        for e in all.iter() {
            assert!(e.get("error").is_none(), "the receiver could not decode an export: {e}");
        }
        all.iter().filter(|e| e["signal"] == signal).map(|e| e["body"].clone()).collect()
    }
}

impl OtlpReceiver {
    /// Every span, log record or metric of `signal`'s exports so far, out of
    /// their resource and scope groups.
    pub fn items(&self, signal: &str) -> Vec<serde_json::Value> {
        self.items_with_resource(signal).into_iter().map(|(_, item)| item).collect()
    }

    /// How each export so far was encoded (`protobuf`, `json`, `grpc`).
    pub fn encodings(&self) -> Vec<String> {
        let all = self.exports.lock().unwrap();
        all.iter().filter_map(|e| e["encoding"].as_str().map(str::to_string)).collect()
    }

    /// [`OtlpReceiver::items`], each with the resource it came under.
    pub fn items_with_resource(&self, signal: &str) -> Vec<(serde_json::Value, serde_json::Value)> {
        let [resources, scopes, items] = match signal {
            "traces" => ["resourceSpans", "scopeSpans", "spans"],
            "logs" => ["resourceLogs", "scopeLogs", "logRecords"],
            "metrics" => ["resourceMetrics", "scopeMetrics", "metrics"],
            other => panic!("no OTLP signal `{other}`"),
        };
        let list = |v: &serde_json::Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
        let mut all = Vec::new();
        for batch in self.exports(signal) {
            for group in list(&batch, resources) {
                for scoped in list(&group, scopes) {
                    for item in list(&scoped, items) {
                        all.push((group["resource"].clone(), item));
                    }
                }
            }
        }
        all
    }

    /// Waits (at most 30 s) until `enough` holds of `signal`'s items.
    pub fn wait_for(&self, signal: &str, enough: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let items = self.items(signal);
            if enough(&items) || Instant::now() >= deadline {
                return items;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The value of the OTLP attribute `key` of `item` (a span, log record, data
/// point or resource), as OTLP/JSON (`{"stringValue": ...}`), or null.
pub fn otlp_attribute(item: &serde_json::Value, key: &str) -> serde_json::Value {
    item["attributes"]
        .as_array()
        .and_then(|list| list.iter().find(|a| a["key"] == key))
        .map(|a| a["value"].clone())
        .unwrap_or_default()
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A NATS client with a responder that answers every request on `bench.<n>`
/// with `n` bytes: the floor of any NATS-based RPC, for the link benchmarks.
pub struct NatsPair {
    client: async_nats::Client,
    _responder: tokio::task::JoinHandle<()>,
}

impl NatsPair {
    pub async fn connect(url: &str) -> NatsPair {
        let client = async_nats::connect(url).await.unwrap();
        let responder_client = async_nats::connect(url).await.unwrap();
        let mut requests = responder_client.subscribe("bench.>").await.unwrap();
        responder_client.flush().await.unwrap();
        let responder = tokio::spawn(async move {
            use futures_util::StreamExt;
            while let Some(msg) = requests.next().await {
                let size: usize = msg.subject.rsplit('.').next().unwrap().parse().unwrap();
                if let Some(reply) = msg.reply {
                    responder_client.publish(reply, vec![7u8; size].into()).await.unwrap();
                }
            }
        });
        NatsPair { client, _responder: responder }
    }

    /// Time for `n` round trips of `request` bytes out and `reply` bytes back.
    pub async fn round_trips(&self, n: u32, request: usize, reply: usize) -> Duration {
        let payload: bytes::Bytes = vec![1u8; request].into();
        let subject = format!("bench.{reply}");
        let started = Instant::now();
        for _ in 0..n {
            let answer = self.client.request(subject.clone(), payload.clone()).await.unwrap();
            assert_eq!(answer.payload.len(), reply);
        }
        started.elapsed()
    }
}
