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
    identity: Identity,
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

/// A name no other server of this machine carries.
fn unique_name() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("weft-test-{}-{n}", std::process::id())
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

/// Whether the server answering on a port is the one this harness started.
/// A port that was free a moment ago can be taken by anything else on the
/// machine (another test binary's listener, an outgoing connection's local
/// port) before the server binds it; the server then exits, and a bare
/// connect would reach the other listener and call it ready.
#[derive(Clone)]
enum Identity {
    /// The `server_name` in the NATS `INFO` line.
    NatsName(String),
    /// `process_id:` in redis's `INFO server`.
    RedisPid,
    /// A response header the registry is configured to send.
    HttpHeader(String),
    /// Our own script, which exits when it cannot bind: alive and listening is enough.
    Listening,
}

impl Identity {
    fn matches(&self, stream: &mut TcpStream, pid: u32) -> bool {
        use std::io::{Read, Write};
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let (request, wanted) = match self {
            Identity::Listening => return true,
            Identity::NatsName(name) => (None, format!("\"server_name\":\"{name}\"")),
            Identity::RedisPid => (Some("INFO server\r\n".to_string()), format!("process_id:{pid}\r\n")),
            Identity::HttpHeader(token) => {
                (Some("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_string()), token.clone())
            }
        };
        if let Some(request) = request
            && stream.write_all(request.as_bytes()).is_err()
        {
            return false;
        }
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while seen.len() < 64 * 1024 {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&seen).contains(&wanted) {
                return true;
            }
        }
        false
    }
}

enum Ready {
    Yes,
    /// It exited (most likely: the port was taken before it bound it).
    Exited(std::process::ExitStatus),
    /// Something else answers on the port.
    Impostor,
}

/// Waits until `child` listens on `port` and answers as itself. A connection to
/// a port nobody listens on in the ephemeral range can succeed by connecting to
/// itself (TCP simultaneous open); that one does not count.
fn wait_ready(program: &str, child: &mut Child, port: u16, identity: &Identity) -> Ready {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Ready::Exited(status);
        }
        if let Ok(mut stream) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
            && stream.local_addr().ok() != stream.peer_addr().ok()
        {
            if identity.matches(&mut stream, child.id()) {
                return Ready::Yes;
            }
            // Ours may still be starting while it fails to bind; give it a
            // moment to exit before calling the answer an impostor's.
            std::thread::sleep(Duration::from_millis(200));
            if let Ok(Some(status)) = child.try_wait() {
                return Ready::Exited(status);
            }
            return Ready::Impostor;
        }
        assert!(Instant::now() < deadline, "`{program}` did not listen on port {port} within 15 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `program` on a free port, again on another port (up to five times)
/// when the port turns out to be taken.
fn launch(program: &str, identity: &Identity, mut spawn_on: impl FnMut(u16) -> Child) -> (Child, u16) {
    let mut failures = Vec::new();
    for _ in 0..5 {
        let port = free_port();
        let mut child = spawn_on(port);
        match wait_ready(program, &mut child, port, identity) {
            Ready::Yes => return (child, port),
            Ready::Exited(status) => failures.push(format!("port {port}: exited ({status})")),
            Ready::Impostor => {
                let _ = child.kill();
                let _ = child.wait();
                failures.push(format!("port {port}: another server answered"));
            }
        }
    }
    panic!("`{program}` did not start: {}", failures.join("; "))
}

impl Server {
    fn start(program: &'static str, identity: Identity, args: impl Fn(u16, &Path) -> Vec<String>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut args_used = Vec::new();
        let (child, port) = launch(program, &identity, |port| {
            args_used = args(port, dir.path());
            spawn(program, &args_used, dir.path())
        });
        Server { child, port, program, args: args_used, dir, identity }
    }

    /// `nats-server` with JetStream, its store in a temporary directory.
    pub fn nats() -> Server {
        Server::nats_with(&[])
    }

    /// [`nats`](Server::nats) with more arguments (`["--auth", "secret"]`).
    pub fn nats_with(extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let name = unique_name();
        Server::start("nats-server", Identity::NatsName(name.clone()), move |port, dir| {
            let store = dir.join("jetstream").display().to_string();
            let mut args =
                vec!["-a".into(), "127.0.0.1".into(), "-p".into(), port.to_string(), "-n".into(), name.clone()];
            args.extend(["-js".into(), "-sd".into(), store]);
            args.extend(extra.iter().cloned());
            args
        })
    }

    /// `redis-server` without persistence.
    pub fn redis() -> Server {
        Server::start("redis-server", Identity::RedisPid, |port, dir| {
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
        let token = unique_name();
        Server::start("docker-registry", Identity::HttpHeader(token.clone()), move |port, dir| {
            let mut config = format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Weft-Test: [{token}]\n",
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
        match wait_ready(self.program, &mut self.child, self.port, &self.identity) {
            Ready::Yes => {}
            Ready::Exited(status) => panic!("`{}` exited ({status}) on restart, port {}", self.program, self.port),
            Ready::Impostor => {
                panic!("port {} was taken by another server while `{}` was down", self.port, self.program)
            }
        }
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
        let (mut child, port) =
            launch("otlp-receiver.py (needs the opentelemetry-proto package)", &Identity::Listening, |port| {
                Command::new("python3")
                    .arg(&script)
                    .arg(port.to_string())
                    .args(args)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| {
                        panic!("cannot start {} ({e}); scripts/setup.sh installs what it needs", script.display())
                    })
            });
        let exports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (sink, stdout) = (exports.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
                let value: serde_json::Value = serde_json::from_str(&line).expect("the receiver prints JSON lines");
                sink.lock().unwrap().push(value);
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_starts_and_answers_as_itself() {
        for server in [Server::nats(), Server::redis(), Server::registry(None)] {
            let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            assert!(server.identity.matches(&mut stream, server.child.id()), "{}", server.program);
        }
    }

    #[test]
    fn a_port_someone_else_listens_on_is_not_taken_for_the_server() {
        // Another listener holds the port and answers every connection.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in taken.incoming() {
                use std::io::Write;
                let _ = stream.and_then(|mut s| s.write_all(b"INFO {\"server_name\":\"someone-else\"}\r\n"));
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let name = unique_name();
        let args: Vec<String> =
            ["-a", "127.0.0.1", "-p", &port.to_string(), "-n", &name].iter().map(|a| a.to_string()).collect();
        let mut child = spawn("nats-server", &args, dir.path());
        let ready = wait_ready("nats-server", &mut child, port, &Identity::NatsName(name));
        let _ = child.kill();
        let _ = child.wait();
        assert!(matches!(ready, Ready::Exited(_) | Ready::Impostor), "a foreign listener was taken for nats-server");
    }
}
