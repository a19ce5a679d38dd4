//! `weft run` as a user runs it: the real binary, real components.

use std::path::Path;
use std::process::{Command, Output};

fn weft(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(cwd)
        .env("WEFT_CACHE_DIR", cwd.join("cache"))
        .output()
        .expect("run weft")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_a_command_with_args_env_and_dirs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/in.txt"), "from the host").unwrap();
    let out = weft(
        &[
            "run",
            "--env",
            "HELLO_READ=/mnt/in.txt",
            "--env",
            "HELLO_WRITE=/mnt/out.txt",
            "--dir",
            "data::/mnt",
            weft_guests::HELLO,
            "--",
            "a",
            "b",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "a b");
    assert!(lines.contains(&"read /mnt/in.txt: from the host"), "{stdout}");
    assert_eq!(std::fs::read_to_string(dir.path().join("data/out.txt")).unwrap(), "written by hello");
}

#[test]
fn the_guest_exit_status_is_weft_s() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(&["run", "--env", "HELLO_EXIT=9", weft_guests::HELLO], dir.path());
    // Rust's standard library reports any non-zero exit to WASI 0.2 as a failure,
    // which reaches the host as status 1.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = weft(&["run", weft_guests::TRAP], dir.path());
    assert_eq!(out.status.code(), Some(134), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the trap fixture always traps"), "{stderr}");
    assert!(stderr.contains("error: component `trap` trapped"), "{stderr}");
    let out = weft(&["run", "--cpu-time", "200ms", weft_guests::BUSY_LOOP], dir.path());
    assert_eq!(out.status.code(), Some(134), "{out:?}");
    assert!(text(&out.stderr).contains("CPU time limit of 200ms"));
}

#[test]
fn run_a_manifest_until_its_service_completes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app.yaml");
    std::fs::write(
        &manifest,
        format!(
            "name: greet\ncomponents: [{{ name: greeter, source: {} }}]\nservice: {{ name: client, source: {}, args: [cli] }}\n",
            weft_guests::GREETER,
            weft_guests::GREETER_CLIENT
        ),
    )
    .unwrap();
    let out = weft(&["run", "app.yaml"], dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "[greet/client] Hello, cli!\n");
    let stderr = text(&out.stderr);
    for line in ["workload `greet`", "is running", "is completed: service `client` ran to completion", "is stopped"] {
        assert!(stderr.contains(line), "`{line}` not in {stderr}");
    }
}

#[test]
fn a_rejected_manifest_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "name: bad\ncomponents: [{ name: x, source: gone.wasm, colour: red }]\n",
    )
    .unwrap();
    let out = weft(&["run", "bad.yaml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("workload `bad` rejected (2 problems)"), "{stderr}");
    assert!(stderr.contains("unknown field `components[0].colour` (component `x`)"), "{stderr}");
    assert!(stderr.contains("gone.wasm does not exist"), "{stderr}");
}

/// An example's manifest (`examples/<name>/<file>`), with its component paths pointed
/// at the components this build made, copied into `dir` with the example's data.
fn example_manifest(name: &str, file: &str, dir: &Path) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    let mut yaml = std::fs::read_to_string(source.join(file)).unwrap();
    for (wasm, path) in [
        ("greeter.wasm", weft_guests::GREETER),
        ("greeter-client.wasm", weft_guests::GREETER_CLIENT),
        ("blobstore_filesystem.wasm", weft_guests::BLOBSTORE_FILESYSTEM),
        ("blobby.wasm", weft_guests::BLOBBY),
        ("blobby_http.wasm", weft_guests::BLOBBY_HTTP),
        ("http_hello.wasm", weft_guests::HTTP_HELLO),
        ("http_keyvalue_counter.wasm", weft_guests::HTTP_KEYVALUE_COUNTER),
        ("http_ticks_p3.wasm", weft_guests::HTTP_TICKS_P3),
    ] {
        yaml = yaml.replace(&format!("../../target/guests/wasm32-wasip2/release/{wasm}"), path);
    }
    assert!(!yaml.contains("../../target"), "an example refers to a component this test does not know");
    for sub in ["data", "blobs"] {
        let from = source.join(sub);
        if from.is_dir() {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                if entry.file_type().unwrap().is_file() {
                    std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
                }
            }
        }
    }
    let manifest = dir.join(file);
    std::fs::write(&manifest, yaml).unwrap();
    manifest
}

fn example(name: &str, dir: &Path) -> std::path::PathBuf {
    example_manifest(name, "workload.yaml", dir)
}

/// `weft run <manifest>` in the background, its HTTP server on a port the OS chose.
struct Serving {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Serving {
    fn start(manifest: &str, dir: &Path) -> Serving {
        Serving::start_with(Command::new(env!("CARGO_BIN_EXE_weft")).stdout(std::process::Stdio::null()), manifest, dir)
    }

    /// With `command`'s own stdout and environment.
    fn start_with(command: &mut Command, manifest: &str, dir: &Path) -> Serving {
        Serving::start_args(command, &["run", manifest], dir)
    }

    /// `weft <args>` with a host configuration that listens on a free port.
    fn start_args(command: &mut Command, args: &[&str], dir: &Path) -> Serving {
        Serving::start_configured(command, args, dir, "")
    }

    /// With `extra` appended to the host configuration.
    fn start_configured(command: &mut Command, args: &[&str], dir: &Path, extra: &str) -> Serving {
        let (child, stderr) = launch_configured(command, args, dir, extra);
        let mut seen = Vec::new();
        let addr = loop {
            let line = stderr
                .recv_timeout(std::time::Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("weft never said where it listens: {seen:#?}"));
            if let Some(at) = line.find("HTTP server listening address=") {
                let rest = &line[at + "HTTP server listening address=".len()..];
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            seen.push(line);
        };
        // The server listens before the workload has started; until it has,
        // requests get 503 "not running yet". Wait for weft to say it runs.
        loop {
            let line = stderr
                .recv_timeout(std::time::Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("weft never said the workload runs: {seen:#?}"));
            if line.starts_with("weft: workload `") && line.ends_with(") is running") {
                break;
            }
            seen.push(line);
        }
        Serving { child, addr, stderr }
    }

    /// One HTTP/1.0 exchange (so the body ends with the connection): status and body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(self.addr).unwrap();
        write!(tcp, "{method} {path} HTTP/1.0\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n", body.len()).unwrap();
        tcp.write_all(body).unwrap();
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
        (status, response[split + 4..].to_vec())
    }

    fn text(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let (status, body) = self.request(method, path, body);
        (status, String::from_utf8(body).unwrap())
    }

    /// Ctrl-C, as a user stops it; the workload must stop cleanly.
    fn stop(self) {
        self.stop_with("-INT");
    }

    /// Stops weft with a signal (`-INT`, `-TERM`); the workload must stop cleanly
    /// and promptly. What weft wrote to stderr meanwhile.
    fn stop_with(mut self, signal: &str) -> Vec<String> {
        self.signal(signal);
        let status = wait_at_most(&mut self.child, std::time::Duration::from_secs(30));
        let rest: Vec<String> = self.stderr.iter().collect();
        assert!(status.success(), "{status}: {rest:#?}");
        assert!(rest.iter().any(|l| l.ends_with("is stopped")), "{rest:#?}");
        rest
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
    }
}

/// `weft <args>` in the background with a host configuration that listens on a
/// free port; its stderr, line by line.
fn launch(
    command: &mut Command,
    args: &[&str],
    dir: &Path,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    launch_configured(command, args, dir, "")
}

/// [`launch`], with `extra` appended to the host configuration.
fn launch_configured(
    command: &mut Command,
    args: &[&str],
    dir: &Path,
    extra: &str,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    let config = format!("plugins:\n  http:\n    listen: [\"127.0.0.1:0\"]\n    drainTimeout: 10s\n{extra}");
    std::fs::write(dir.join("host.yaml"), config).unwrap();
    let mut child = command
        .args(args)
        .args(["--host-config", "host.yaml"])
        .current_dir(dir)
        .env("WEFT_CACHE_DIR", dir.join("cache"))
        .env_remove("WEFT_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run weft");
    let (lines, stderr) = std::sync::mpsc::channel();
    let pipe = std::io::BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(pipe).map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, stderr)
}

/// The child's exit status; kills it (and fails) if it takes longer than `limit`.
fn wait_at_most(child: &mut std::process::Child, limit: std::time::Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("weft did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `weft <args>` that must exit within `limit`.
fn weft_within(args: &[&str], cwd: &Path, limit: std::time::Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .current_dir(cwd)
        .env("WEFT_CACHE_DIR", cwd.join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run weft");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut buf).unwrap();
        buf
    });
    let stderr = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut buf).unwrap();
        buf
    });
    let status = wait_at_most(&mut child, limit);
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

#[test]
fn the_http_hello_example_answers() {
    let dir = tempfile::tempdir().unwrap();
    example("http-hello", dir.path());
    let serving = Serving::start("workload.yaml", dir.path());
    assert_eq!(serving.text("GET", "/greet?me", b""), (200, "Hello from weft! You asked for /greet?me\n".into()));
    serving.stop();
}

#[test]
fn the_wasi_0_3_ticks_example_streams_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    example("http-ticks-p3", dir.path());
    let serving = Serving::start("workload.yaml", dir.path());
    let started = std::time::Instant::now();
    assert_eq!(serving.text("GET", "/?ticks=3", b""), (200, "tick 1 of 3\ntick 2 of 3\ntick 3 of 3\n".into()));
    // Two waits of 100 ms on WASI 0.3's async clock.
    assert!(started.elapsed() >= std::time::Duration::from_millis(200));
    serving.stop();
}

/// `weft serve x.wasm`, as `wasmtime serve`: the one component on every path, on
/// the address `--listen` gives; a component with no handler is refused.
#[test]
fn serve_runs_one_http_component_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null());
    let serving = Serving::start_args(&mut command, &["serve", weft_guests::HTTP_PROBE, "--env", "A=b"], dir.path());
    assert_eq!(serving.text("GET", "/any/path?q=1", b""), (200, "http_probe GET /any/path\n".into()));
    assert_eq!(serving.text("POST", "/", b"").0, 200);
    serving.stop();

    // A WASI 0.3 handler the same way.
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null());
    let serving = Serving::start_args(&mut command, &["serve", weft_guests::HTTP_P3], dir.path());
    assert_eq!(serving.text("GET", "/x", b""), (200, "hello from WASI 0.3\n".into()));
    serving.stop();

    // `--listen` is where it listens, over the host configuration.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null());
    let serving =
        Serving::start_args(&mut command, &["serve", weft_guests::HTTP_PROBE, "--listen", &listen], dir.path());
    assert_eq!(serving.addr.port(), port);
    serving.stop();

    let out = weft_within(&["serve", weft_guests::HELLO], dir.path(), std::time::Duration::from_secs(60));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the component does not export it"), "{stderr}");
}

#[test]
fn the_http_keyvalue_counter_example_counts() {
    let dir = tempfile::tempdir().unwrap();
    example("http-keyvalue-counter", dir.path());
    let serving = Serving::start("workload.yaml", dir.path());
    for n in 1..=3 {
        assert_eq!(serving.text("POST", "/hit", b""), (200, format!("{n}\n")));
    }
    assert_eq!(serving.text("GET", "/count", b""), (200, "3\n".into()));
    serving.stop();
}

/// With `telemetry` configured, a request's trace reaches a real OTLP receiver:
/// the server span a child of the client's `traceparent`, the component's
/// invocation a child of it; the invocation counted; weft's log exported.
#[test]
fn telemetry_exports_a_requests_trace_metrics_and_logs_over_otlp() {
    let receiver = weft_testkit::OtlpReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    example("http-hello", dir.path());
    let config =
        format!("telemetry:\n  endpoint: {}\n  exportInterval: 100ms\n  metricsInterval: 200ms\n", receiver.url());
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null());
    let serving = Serving::start_configured(&mut command, &["run", "workload.yaml"], dir.path(), &config);
    let (client_trace, client_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(serving.addr).unwrap();
        write!(
            tcp,
            "GET /traced HTTP/1.0\r\nhost: localhost\r\ntraceparent: 00-{client_trace}-{client_span}-01\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
    }
    receiver.wait_for("traces", |spans| spans.len() >= 2);
    serving.stop();
    let attribute = weft_testkit::otlp_attribute;
    let spans = receiver.items("traces");
    let server = spans.iter().find(|s| s["kind"] == "SPAN_KIND_SERVER").unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(server["traceId"], client_trace);
    assert_eq!(server["parentSpanId"], client_span);
    assert_eq!(server["name"], "GET /*");
    assert_eq!(attribute(server, "http.response.status_code")["intValue"], "200");
    assert_eq!(attribute(server, "url.path")["stringValue"], "/traced");
    let invocation = spans
        .iter()
        .find(|s| s["parentSpanId"] == server["spanId"])
        .unwrap_or_else(|| panic!("no span under the request's: {spans:#?}"));
    assert_eq!(invocation["traceId"], client_trace);
    assert_eq!(attribute(invocation, "weft.component")["stringValue"], "hello");
    assert!(invocation["name"].as_str().unwrap().contains("incoming-handler"), "{invocation}");

    // Exports reach this process through the receiver's reader thread: wait for them.
    let metrics = receiver.wait_for("metrics", |m| m.iter().any(|m| m["name"] == "weft.invocation.duration"));
    let ok_invocations = metrics
        .iter()
        .filter(|m| m["name"] == "weft.invocations")
        .flat_map(|m| m["sum"]["dataPoints"].as_array().cloned().unwrap_or_default())
        .filter(|p| {
            attribute(p, "outcome")["stringValue"] == "ok" && attribute(p, "weft.component")["stringValue"] == "hello"
        })
        .map(|p| p["asInt"].as_str().unwrap_or("0").parse::<u64>().unwrap())
        .max();
    assert_eq!(ok_invocations, Some(1), "{metrics:#?}");
    let durations = metrics.iter().find(|m| m["name"] == "weft.invocation.duration").expect("a duration histogram");
    assert_eq!(durations["histogram"]["dataPoints"][0]["count"], "1");

    let is_running = |l: &serde_json::Value| l["body"]["stringValue"] == "running" && l["severityText"] == "INFO";
    let logs = receiver.wait_for("logs", |logs| logs.iter().any(is_running));
    assert!(logs.iter().any(is_running), "{logs:#?}");
}

/// The blobby-http REST round trip: store, list, read back, delete.
fn blobby_over_http(serving: &Serving, object: &[u8]) {
    assert_eq!(serving.text("PUT", "/docs/data.bin", object), (201, format!("stored {} bytes\n", object.len())));
    assert_eq!(serving.text("GET", "/docs", b""), (200, "data.bin\n".into()));
    assert_eq!(serving.request("GET", "/docs/data.bin", b""), (200, object.to_vec()));
    assert_eq!(serving.text("DELETE", "/docs/data.bin", b""), (200, "deleted data.bin\n".into()));
    assert_eq!(serving.text("GET", "/docs/data.bin", b""), (404, "no object `data.bin`\n".into()));
    assert_eq!(serving.text("GET", "/elsewhere", b""), (404, "no container `elsewhere`\n".into()));
}

fn object() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

#[test]
fn the_blobby_http_example_on_the_built_in_blobstore() {
    let dir = tempfile::tempdir().unwrap();
    example("blobby-http", dir.path());
    let serving = Serving::start("workload.yaml", dir.path());
    blobby_over_http(&serving, &object());
    serving.stop();
}

#[test]
fn the_blobby_http_example_on_the_blobstore_filesystem_component() {
    let dir = tempfile::tempdir().unwrap();
    example_manifest("blobby-http", "with-component.yaml", dir.path());
    let serving = Serving::start("with-component.yaml", dir.path());
    let object = object();
    assert_eq!(serving.text("PUT", "/archive/kept.bin", &object), (201, format!("stored {} bytes\n", object.len())));
    assert_eq!(std::fs::read(dir.path().join("blobs/archive/kept.bin")).unwrap(), object);
    blobby_over_http(&serving, &object);
    serving.stop();
}

#[test]
fn the_blobby_example_stores_its_file_in_the_mounted_directory() {
    let dir = tempfile::tempdir().unwrap();
    example("blobby", dir.path());
    let out = weft(&["run", "workload.yaml"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("[blobby/blobby] list docs: readme.txt"), "{stdout}");
    let stored = std::fs::read(dir.path().join("blobs/docs/readme.txt")).unwrap();
    assert_eq!(stored, std::fs::read(dir.path().join("data/readme.txt")).unwrap());
}

#[test]
fn inspect_shows_a_component_world_and_a_workload_plan() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(&["inspect", weft_guests::TYPES_PROVIDER, "--output", "json"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let exports = json["world"]["exports"].as_array().unwrap();
    let counters = exports.iter().find(|e| e["name"] == "weft:types/counters@0.1.0").expect("counters exported");
    let members: Vec<&str> =
        counters["members"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(members.contains(&"counter") && members.contains(&"[constructor]counter"), "{members:?}");
    // A WASI 0.3 component: compiled on the engine with concurrency, `async` shown.
    let p3 = text(&weft(&["inspect", weft_guests::HTTP_P3], dir.path()).stdout);
    assert!(
        p3.contains("export wasi:http/handler@0.3.2") && p3.contains("handle: async func(request: request)"),
        "{p3}"
    );
    let text_out = weft(&["inspect", weft_guests::GREETER], dir.path());
    let wit = text(&text_out.stdout);
    assert!(
        wit.contains("export weft:fixtures/greeter@0.1.0: interface {\n    greet: func(name: string) -> string;"),
        "{wit}"
    );

    example("hello", dir.path());
    let out = weft(&["inspect", "workload.yaml"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let plan = text(&out.stdout);
    assert!(plan.contains("component `client` (service)"), "{plan}");
    assert!(
        plan.contains("weft:fixtures/greeter@0.1.0     ← component `greeter` (weft:fixtures/greeter@0.1.0, fused)"),
        "{plan}"
    );
    let out = weft(&["inspect", "workload.yaml", "-o", "json"], dir.path());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let client = json["links"]["components"].as_array().unwrap().iter().find(|c| c["component"] == "client").unwrap();
    let link =
        client["imports"].as_array().unwrap().iter().find(|i| i["import"] == "weft:fixtures/greeter@0.1.0").unwrap();
    assert_eq!(
        link["provider"],
        serde_json::json!({ "kind": "component", "component": "greeter", "export": "weft:fixtures/greeter@0.1.0", "mode": "fused" })
    );
}

/// A provider that imports from host plugins (config, key-value) is fused by
/// `auto`; one with limits of its own stays dynamic, and the plan says why.
#[test]
fn inspect_shows_a_plugin_using_provider_fused() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = |limits: &str| {
        format!(
            "name: own\ncomponents:\n  - {{ name: caller, source: {}, config: {{ who: caller }} }}\n  \
             - {{ name: provider, source: {}, config: {{ who: provider }}{limits} }}\n",
            weft_guests::OWN_STATE_CALLER,
            weft_guests::OWN_STATE_PROVIDER
        )
    };
    std::fs::write(dir.path().join("workload.yaml"), manifest("")).unwrap();
    let out = weft(&["inspect", "workload.yaml"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let plan = text(&out.stdout);
    assert!(
        plan.contains(
            "weft:fixtures/own-state@0.1.0      ← component `provider` (weft:fixtures/own-state@0.1.0, fused)"
        ),
        "{plan}"
    );
    std::fs::write(dir.path().join("workload.yaml"), manifest(", limits: { memory: 64MiB }")).unwrap();
    let plan = text(&weft(&["inspect", "workload.yaml"], dir.path()).stdout);
    assert!(
        plan.contains("(weft:fixtures/own-state@0.1.0, dynamic: component `provider` sets its own memory"),
        "{plan}"
    );
}

/// Remote links are planned and shown without a lattice, checked (resources do
/// not cross), and refused by a host that is not on one.
#[test]
fn inspect_shows_remote_links_and_a_host_off_the_lattice_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = |counters_to: &str| {
        format!(
            r#"
name: remote
components:
  - {{ name: caller, source: {caller} }}
  - {{ name: local, source: {provider}, serve: [{{ interface: "weft:types/values@0.1.0", group: eu }}] }}
links:
  - {{ from: caller, import: "weft:types/values@0.1.0", to: "lattice:eu" }}
  - {{ from: caller, import: "weft:types/faults@0.1.0", to: lattice }}
  - {{ from: caller, import: "weft:types/counters@0.1.0", to: {counters_to} }}
  - {{ from: caller, import: "weft:types/pipes@0.1.0", to: local }}
"#,
            caller = weft_guests::TYPES_CALLER,
            provider = weft_guests::TYPES_PROVIDER
        )
    };
    std::fs::write(dir.path().join("remote.yaml"), manifest("local")).unwrap();
    let out = weft(&["inspect", "remote.yaml"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    let shown = |name: &str, how: &str| plan.lines().any(|l| l.trim_start().starts_with(name) && l.ends_with(how));
    assert!(shown("weft:types/values@0.1.0", "← the lattice, group `eu` (remote, wRPC)"), "{plan}");
    assert!(shown("weft:types/faults@0.1.0", "← the lattice (remote, wRPC)"), "{plan}");
    assert!(shown("weft:types/values@0.1.0", "→ the lattice (served over wRPC, group `eu`)"), "{plan}");
    let out = weft(&["inspect", "remote.yaml", "-o", "json"], dir.path());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let caller = json["links"]["components"].as_array().unwrap().iter().find(|c| c["component"] == "caller").unwrap();
    let values =
        caller["imports"].as_array().unwrap().iter().find(|i| i["import"] == "weft:types/values@0.1.0").unwrap();
    assert_eq!(values["provider"], serde_json::json!({ "kind": "remote", "group": "eu" }));
    assert_eq!(
        json["serves"]["local"][0],
        serde_json::json!({ "interface": "weft:types/values@0.1.0", "group": "eu" })
    );

    // A resource cannot cross: validation says so, whatever the host.
    std::fs::write(dir.path().join("resources.yaml"), manifest("lattice")).unwrap();
    let out = weft(&["inspect", "resources.yaml"], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot link `weft:types/counters@0.1.0` to the lattice"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("resources cannot cross a remote link"), "{}", text(&out.stderr));

    // `weft run` is no lattice host.
    let out = weft_within(&["run", "remote.yaml"], dir.path(), std::time::Duration::from_secs(60));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("links `weft:types/values@0.1.0` to the lattice, but this host is not on one"), "{stderr}");
    assert!(stderr.contains("serves exports to the lattice, but this host is not on one"), "{stderr}");
}

/// An HTTP/1.0 GET that must be answered within `limit`: status and body.
fn get_within(addr: std::net::SocketAddr, path: &str, limit: std::time::Duration) -> (u16, String) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, limit).unwrap();
    tcp.set_read_timeout(Some(limit)).unwrap();
    write!(tcp, "GET {path} HTTP/1.0\r\nhost: localhost\r\n\r\n").unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).unwrap_or_else(|e| panic!("GET {path}: no answer within {limit:?}: {e}"));
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("GET {path}: {response:?}"));
    (head.split_whitespace().nth(1).unwrap().parse().unwrap(), body.to_string())
}

/// A workload serving `http-probe` on every path, and more of `extra`.
fn probe_manifest(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("probe.yaml"),
        format!(
            "name: probe\ncomponents: [{{ name: api, source: {} }}]\nhostInterfaces:\n  - {{ interface: wasi:http/incoming-handler@0.2.0, component: api, config: {{ routes: [{{ path: \"/*\" }}] }} }}\n{extra}",
            weft_guests::HTTP_PROBE
        ),
    )
    .unwrap();
}

#[test]
fn guest_output_nobody_reads_does_not_stall_serving() {
    let dir = tempfile::tempdir().unwrap();
    probe_manifest(dir.path(), &format!("service: {{ name: chatter, source: {} }}\n", weft_guests::CHATTER));
    // weft's stdout is a pipe this test never reads: it fills at once. One worker
    // thread: a guest blocked writing would stall everything else.
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::piped()).env("TOKIO_WORKER_THREADS", "1");
    let mut serving = Serving::start_with(&mut command, "probe.yaml", dir.path());
    let _unread = serving.child.stdout.take().unwrap();
    let started = std::time::Instant::now();
    for n in 0..20 {
        let (status, body) = get_within(serving.addr, &format!("/hello/{n}"), std::time::Duration::from_secs(10));
        assert_eq!((status, body), (200, format!("api GET /hello/{n}\n")));
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
    let started = std::time::Instant::now();
    let rest = serving.stop_with("-INT");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "stopping took {:?}", started.elapsed());
    assert!(rest.iter().any(|l| l.contains("lines of output dropped")), "{rest:#?}");
}

/// A slow request in flight when weft is told to stop still gets its answer, and
/// the host's temporary directory is gone afterwards.
fn drains_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    probe_manifest(dir.path(), "volumes: [{ name: scratch, emptyDir: {} }]\n");
    let yaml = std::fs::read_to_string(dir.path().join("probe.yaml")).unwrap();
    let yaml = yaml.replace("source:", "volumeMounts: [{ name: scratch, mountPath: /scratch }], source:");
    std::fs::write(dir.path().join("probe.yaml"), yaml).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null()).env("TMPDIR", &tmp);
    let serving = Serving::start_with(&mut command, "probe.yaml", dir.path());
    assert!(std::fs::read_dir(&tmp).unwrap().count() > 0, "the host's scratch directory is not in TMPDIR");
    let addr = serving.addr;
    let slow = std::thread::spawn(move || get_within(addr, "/slow?ms=3000", std::time::Duration::from_secs(20)));
    std::thread::sleep(std::time::Duration::from_millis(700));
    let started = std::time::Instant::now();
    let rest = serving.stop_with(signal);
    assert_eq!(slow.join().unwrap(), (200, "slept\n".to_string()), "{rest:#?}");
    assert!(started.elapsed() > std::time::Duration::from_millis(1500), "weft did not wait for the request");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn sigterm_drains_requests_in_flight() {
    drains_on("-TERM");
}

#[test]
fn ctrl_c_drains_requests_in_flight() {
    drains_on("-INT");
}

#[test]
fn ctrl_c_stops_weft_while_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    probe_manifest(dir.path(), "");
    // Each NATS backend waits a while for a server that is not there.
    let url = "nats://127.0.0.1:1";
    std::fs::write(
        dir.path().join("slow.yaml"),
        format!("plugins:\n  keyvalue: {{ backend: nats, url: \"{url}\" }}\n  blobstore: {{ backend: nats, url: \"{url}\" }}\n  messaging: {{ backend: nats, url: \"{url}\" }}\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", "probe.yaml", "--host-config", "slow.yaml"])
        .current_dir(dir.path())
        .env("WEFT_CACHE_DIR", dir.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let started = std::time::Instant::now();
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = wait_at_most(&mut child, std::time::Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}: {stderr}", started.elapsed());
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("weft: interrupted before `probe` started"), "{stderr}");
}

#[test]
fn inputs_that_are_not_regular_files_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for fifo in ["pipe.yaml", "pipe.wasm"] {
        assert!(Command::new("mkfifo").arg(dir.path().join(fifo)).status().unwrap().success());
    }
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.wasm")).unwrap();
    std::fs::write(dir.path().join("zero.yaml"), "name: zero\ncomponents: [{ name: z, source: /dev/zero }]\n").unwrap();
    std::fs::write(dir.path().join("fifo.yaml"), "name: fifo\ncomponents: [{ name: f, source: pipe.wasm }]\n").unwrap();
    let limit = std::time::Duration::from_secs(20);
    let cases: &[(&[&str], &str)] = &[
        (&["run", "pipe.yaml"], "pipe.yaml: it is a named pipe (FIFO), not a regular file"),
        (&["run", "/dev/zero"], "cannot read manifest /dev/zero: it is a device, not a regular file"),
        (&["inspect", "pipe.yaml"], "it is a named pipe (FIFO), not a regular file"),
        (&["run", "pipe.wasm"], "pipe.wasm: it is a named pipe (FIFO), not a regular file"),
        (&["run", "zero.wasm"], "zero.wasm: it is a device, not a regular file"),
        (&["inspect", "zero.wasm"], "it is a device, not a regular file"),
        (&["run", "zero.yaml"], "cannot read source file /dev/zero: it is a device, not a regular file"),
        (&["run", "fifo.yaml"], "pipe.wasm: it is a named pipe (FIFO), not a regular file"),
    ];
    for (args, message) in cases {
        let out = weft_within(args, dir.path(), limit);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: `{message}` not in {stderr}");
    }
}

#[test]
fn manifest_and_component_sizes_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let limit = std::time::Duration::from_secs(60);
    // A valid manifest, padded past 4 MiB with comments.
    let mut yaml = format!("name: big\ncomponents: [{{ name: g, source: {} }}]\n", weft_guests::GREETER);
    while yaml.len() <= 4 << 20 {
        yaml.push_str("# padding padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(dir.path().join("big.yaml"), &yaml).unwrap();
    let out = weft_within(&["inspect", "big.yaml"], dir.path(), limit);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("larger than the limit of 4MiB"), "{}", text(&out.stderr));
    let out = weft_within(&["inspect", "big.yaml", "--max-manifest-size", "8MiB"], dir.path(), limit);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = weft_within(&["run", "--max-component-size", "1KiB", weft_guests::HELLO], dir.path(), limit);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("larger than the limit of 1KiB"), "{}", text(&out.stderr));
    let out = weft_within(&["inspect", "--max-component-size", "1KiB", weft_guests::HELLO], dir.path(), limit);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("larger than the limit of 1KiB"), "{}", text(&out.stderr));
}

#[test]
fn deeply_nested_yaml_is_refused_fast() {
    let dir = tempfile::tempdir().unwrap();
    let n = 100_000;
    std::fs::write(dir.path().join("deep.yaml"), format!("name: deep\nconfig: {}{}\n", "[".repeat(n), "]".repeat(n)))
        .unwrap();
    std::fs::write(dir.path().join("dashes.yaml"), format!("name: deep\nconfig:\n{}1\n", "- ".repeat(n))).unwrap();
    for (file, line) in [("deep.yaml", 2), ("dashes.yaml", 3)] {
        let started = std::time::Instant::now();
        let out = weft_within(&["run", file], dir.path(), std::time::Duration::from_secs(20));
        assert_eq!(out.status.code(), Some(2));
        let message = format!("manifest nests deeper than 64 levels (line {line})");
        assert!(text(&out.stderr).contains(&message), "{}", text(&out.stderr));
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    }
}

#[test]
fn any_file_name_runs_as_a_command() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["my app.wasm", "runtime.wasm", "v1.2 (copy).wasm", "ünïcode.wasm", "-.wasm"] {
        std::fs::copy(weft_guests::HELLO, dir.path().join(name)).unwrap();
        let out = weft(&["run", &format!("./{name}"), "--", "a", "b"], dir.path());
        assert!(out.status.success(), "{name}: {out:?}");
        assert_eq!(text(&out.stdout).lines().next(), Some("a b"), "{name}");
    }
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    example("hello", dir.path());
    for args in [
        &["inspect", weft_guests::GREETER][..],
        &["inspect", weft_guests::GREETER, "-o", "json"],
        &["inspect", "workload.yaml"],
        &["inspect", "workload.yaml", "-o", "json"],
    ] {
        // Like `weft inspect … | head -0`: the reader is gone before weft writes.
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .current_dir(dir.path())
            .env("WEFT_CACHE_DIR", dir.path().join("cache"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{args:?}: {}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// `weft host` on a real nats-server takes workloads from `weft workload`, serves
/// them, reports and stops them, and leaves cleanly on SIGTERM.
#[test]
fn a_host_on_nats_takes_workloads_from_weft_workload() {
    let nats = weft_testkit::Server::nats();
    let dir = tempfile::tempdir().unwrap();
    probe_manifest(dir.path(), "");
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null());
    let (mut host, stderr) =
        launch(&mut command, &["host", "--nats", &nats.url(), "--label", "zone=a", "--name", "laptop"], dir.path());
    let next_line =
        |what: &str| stderr.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what}"));
    // The host says who it is before it serves anything.
    let id = loop {
        let line = next_line("the host names itself");
        if let Some(rest) = line.strip_prefix("weft: host ") {
            assert!(rest.contains("(laptop)"), "{line}");
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let workload = |args: &[&str]| {
        let mut all = vec!["workload"];
        all.extend_from_slice(args);
        let url = nats.url();
        all.extend_from_slice(&["--host", &id, "--nats", &url]);
        weft_within(&all, dir.path(), std::time::Duration::from_secs(60))
    };
    // Listed, with its labels; a workload placed by label lands on it.
    let url = nats.url();
    let listed =
        weft_within(&["host", "list", "--nats", &url, "-o", "json"], dir.path(), std::time::Duration::from_secs(30));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let me =
        listed.as_array().unwrap().iter().find(|h| h["heartbeat"]["id"] == id.as_str()).expect("the host is listed");
    assert_eq!(me["state"], "live");
    let beat = &me["heartbeat"];
    assert_eq!((beat["friendlyName"].as_str(), beat["labels"]["zone"].as_str()), (Some("laptop"), Some("a")));
    let nowhere = weft_within(
        &["workload", "start", "probe.yaml", "--label", "zone=mars", "--nats", &url],
        dir.path(),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(nowhere.status.code(), Some(2));
    assert!(text(&nowhere.stderr).contains("no live host has the labels [zone=mars]"), "{}", text(&nowhere.stderr));
    let started = weft_within(
        &["workload", "start", "probe.yaml", "--id", "wl-7", "--label", "zone=a", "--nats", &url],
        dir.path(),
        std::time::Duration::from_secs(60),
    );
    assert!(started.status.success(), "{}", text(&started.stderr));
    assert!(text(&started.stderr).contains(&format!("placed on host {id} (laptop)")), "{}", text(&started.stderr));
    // The host cannot read this directory: the component went by digest.
    assert!(
        text(&started.stderr).contains("component `api`: uploaded as digest://sha256:"),
        "{}",
        text(&started.stderr)
    );
    assert_eq!(text(&started.stdout).trim(), format!("workload wl-7 is running on host {id}"));
    let addr: std::net::SocketAddr = loop {
        let line = next_line("the workload's HTTP server listens");
        if let Some(at) = line.find("HTTP server listening address=") {
            break line[at + "HTTP server listening address=".len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
        }
    };
    let answer = get_within(addr, "/hello", std::time::Duration::from_secs(10));
    assert_eq!(answer, (200, "api GET /hello\n".into()));
    let status = workload(&["status", "wl-7", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "running");
    let stopped = workload(&["stop", "wl-7"]);
    assert!(text(&stopped.stdout).starts_with("workload wl-7 is stopped"), "{}", text(&stopped.stdout));
    let unknown = workload(&["status", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("no workload with id `nope`"), "{}", text(&unknown.stderr));
    assert!(Command::new("kill").args(["-TERM", &host.id().to_string()]).status().unwrap().success());
    let status = wait_at_most(&mut host, std::time::Duration::from_secs(30));
    let rest: Vec<String> = stderr.try_iter().collect();
    assert!(status.success(), "{status}: {rest:#?}");
    assert!(rest.iter().any(|l| l.contains(&format!("host {id} stopped"))), "{rest:#?}");
    // A host killed (SIGKILL) is shown as lost after its missed heartbeats.
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null());
    let (mut doomed, doomed_stderr) =
        launch(&mut command, &["host", "--nats", &url, "--heartbeat-interval", "300ms"], dir.path());
    let doomed_id = loop {
        let line = doomed_stderr.recv_timeout(std::time::Duration::from_secs(60)).expect("the host names itself");
        if let Some(rest) = line.strip_prefix("weft: host ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::sleep(std::time::Duration::from_millis(700));
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let listed =
        weft_within(&["host", "list", "--nats", &url, "-o", "json"], dir.path(), std::time::Duration::from_secs(30));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let lost = listed.as_array().unwrap().iter().find(|h| h["heartbeat"]["id"] == doomed_id.as_str());
    assert_eq!(lost.map(|h| h["state"].clone()), Some(serde_json::json!("lost")), "{listed:#}");
    assert!(
        !listed.as_array().unwrap().iter().any(|h| h["heartbeat"]["id"] == id.as_str()),
        "stopped cleanly: forgotten"
    );

    // A host that is gone: a clear error naming it.
    let gone = workload(&["status", "wl-7", "--timeout", "5s"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(text(&gone.stderr).contains(&format!("host `{id}`")), "{}", text(&gone.stderr));
}

/// NATS authentication for every lattice command: a token server refuses a client
/// without it (a clear error, at once), and answers one with it.
#[test]
fn lattice_commands_authenticate_to_nats() {
    let nats = weft_testkit::Server::nats_with(&["--auth", "s3cret"]);
    let dir = tempfile::tempdir().unwrap();
    let url = nats.url();
    let refused = weft_within(&["host", "list", "--nats", &url], dir.path(), std::time::Duration::from_secs(30));
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains(&format!("connect to NATS at {url}")), "{}", text(&refused.stderr));
    let listed = weft_within(
        &["host", "list", "--nats", &url, "--nats-token", "s3cret", "-o", "json"],
        dir.path(),
        std::time::Duration::from_secs(30),
    );
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(text(&listed.stdout).trim(), "[]");
}

/// With no NATS server to be found, `weft host` starts anyway (it keeps trying),
/// and still stops cleanly on SIGTERM.
#[test]
fn a_host_starts_without_nats_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null());
    let (mut host, stderr) = launch(&mut command, &["host", "--nats", "nats://127.0.0.1:1"], dir.path());
    let started = std::time::Instant::now();
    loop {
        let line = stderr.recv_timeout(std::time::Duration::from_secs(30)).expect("the host starts without NATS");
        if line.starts_with("weft: host ") {
            break;
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "took {:?}", started.elapsed());
    assert!(Command::new("kill").args(["-TERM", &host.id().to_string()]).status().unwrap().success());
    let status = wait_at_most(&mut host, std::time::Duration::from_secs(20));
    let rest: Vec<String> = stderr.try_iter().collect();
    assert!(status.success(), "{status}: {rest:#?}");
}

/// `weft oci push` a component with an annotation, `weft oci pull` it back, and
/// `weft run` a manifest whose service comes from the registry.
#[test]
fn push_pull_and_run_components_from_a_registry() {
    let registry = weft_testkit::Server::registry(None);
    let dir = tempfile::tempdir().unwrap();
    let url = registry.url();
    let reference = format!("{url}/weft/greeter-client:1");
    let out = weft(
        &["oci", "push", "--insecure", weft_guests::GREETER_CLIENT, &reference, "--annotation", "team=core"],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let digest = text(&out.stdout).trim().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    assert!(text(&out.stderr).contains(&format!("to oci://{reference}")), "{out:?}");
    // The annotations, as another client (the `oras` SDK) reads them.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/oci-peer.py");
    let manifest = Command::new("python3").arg(script).args(["manifest", &reference]).output().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest.stdout).expect("oci-peer.py prints the manifest");
    assert_eq!(manifest["annotations"]["team"], "core", "{manifest}");
    let file_name = Path::new(weft_guests::GREETER_CLIENT).file_name().unwrap().to_str().unwrap();
    assert_eq!(manifest["annotations"]["org.opencontainers.image.title"], file_name, "{manifest}");

    let out = weft(
        &["oci", "pull", "--insecure", &format!("oci://{url}/weft/greeter-client@{digest}"), "-o", "got.wasm"],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(dir.path().join("got.wasm")).unwrap(),
        std::fs::read(weft_guests::GREETER_CLIENT).unwrap()
    );

    // Without `--insecure` the registry's plain HTTP is refused, with the cure named.
    let out = weft(&["oci", "pull", &reference, "-o", "no.wasm"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("must be marked `insecure`"), "{out:?}");
    let out = weft(&["oci", "pull", "--insecure", &format!("{url}/weft/nothing:1"), "-o", "no.wasm"], dir.path());
    assert!(text(&out.stderr).contains("not found in the registry"), "{out:?}");

    std::fs::write(dir.path().join("host.yaml"), format!("oci:\n  registries:\n    \"{url}\": {{ insecure: true }}\n"))
        .unwrap();
    std::fs::write(
        dir.path().join("app.yaml"),
        format!(
            "name: greet\ncomponents: [{{ name: greeter, source: {} }}]\nservice: {{ name: client, source: \"oci://{reference}\", args: [registry] }}\n",
            weft_guests::GREETER
        ),
    )
    .unwrap();
    let out = weft(&["run", "--host-config", "host.yaml", "app.yaml"], dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "[greet/client] Hello, registry!\n");
}

/// Three hosts on one nats-server, two in-process agents and one `weft host`
/// process: all listed; workloads placed by label land where the labels say
/// (and serve HTTP there); the lattice survives a nats-server restart; a host
/// killed with SIGKILL is shown lost.
#[test]
fn three_hosts_one_lattice() {
    use std::sync::Arc;
    use std::time::Duration;
    use weft_runtime::{Host, HostConfig, WorkloadId};
    let mut nats = weft_testkit::Server::nats();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (hosts, _agents): (Vec<Host>, Vec<weft_lattice::HostAgent>) = runtime.block_on(async {
        let (mut hosts, mut agents) = (Vec::new(), Vec::new());
        for zone in ["a", "b"] {
            let client = async_nats::ConnectOptions::new().retry_on_initial_connect().connect(&url).await.unwrap();
            let store = Arc::new(weft_lattice::components::ComponentStore::new(client.clone(), &Default::default()));
            let output = Arc::new(weft_runtime::output::CapturedOutput::default());
            let host = Host::new(HostConfig {
                friendly_name: Some(format!("in-process-{zone}")),
                labels: [("zone".to_string(), zone.to_string())].into_iter().collect(),
                stdio: weft_runtime::wasi::GuestStdio::Sink(output),
                digest_store: Some(store),
                ..HostConfig::default()
            })
            .await
            .unwrap();
            let config =
                weft_lattice::AgentConfig { heartbeat_interval: Duration::from_millis(300), ..Default::default() };
            agents.push(weft_lattice::HostAgent::start(host.clone(), client, config).await.unwrap());
            hosts.push(host);
        }
        (hosts, agents)
    });
    probe_manifest(dir.path(), "");
    std::fs::write(
        dir.path().join("ticker.yaml"),
        format!(
            "name: ticker\nservice: {{ name: svc, source: {}, env: {{ TICKS: \"1000000\" }} }}\n",
            weft_guests::TICKER
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.stdout(std::process::Stdio::null());
    let (mut process, stderr) = launch(
        &mut command,
        &["host", "--nats", &url, "--label", "zone=c", "--name", "process", "--heartbeat-interval", "300ms"],
        dir.path(),
    );
    let next_line = |what: &str| stderr.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what}"));
    let process_id = loop {
        let line = next_line("the host names itself");
        if let Some(rest) = line.strip_prefix("weft: host ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let ids = [hosts[0].id().to_string(), hosts[1].id().to_string(), process_id.clone()];
    let states = || {
        let listed = weft_within(&["host", "list", "--nats", &url, "-o", "json"], dir.path(), Duration::from_secs(30));
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        ids.iter()
            .map(|id| {
                let host = listed.as_array().unwrap().iter().find(|h| h["heartbeat"]["id"] == id.as_str());
                host.map_or("absent".to_string(), |h| h["state"].as_str().unwrap().to_string())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(states(), ["live", "live", "live"]);
    let until_states = |expected: [&str; 3]| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = states();
            if now == expected {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{now:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // Placed by label: the HTTP workload on the process host, the ticker on b.
    let started = weft_within(
        &["workload", "start", "probe.yaml", "--label", "zone=c", "--nats", &url],
        dir.path(),
        Duration::from_secs(60),
    );
    assert!(text(&started.stderr).contains(&format!("placed on host {process_id} (process)")), "{started:?}");
    let addr: std::net::SocketAddr = loop {
        let line = next_line("the workload's HTTP server listens");
        if let Some(at) = line.find("HTTP server listening address=") {
            let rest = &line[at + "HTTP server listening address=".len()..];
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    assert_eq!(get_within(addr, "/where", Duration::from_secs(10)), (200, "api GET /where\n".into()));
    let started = weft_within(
        &["workload", "start", "ticker.yaml", "--id", "t-1", "--label", "zone=b", "--nats", &url],
        dir.path(),
        Duration::from_secs(60),
    );
    assert!(started.status.success(), "{started:?}");
    let ticker = WorkloadId("t-1".into());
    assert!(hosts[1].workload(&ticker).is_some() && hosts[0].workload(&ticker).is_none());
    // Every live host's workloads, in one listing.
    let listed = weft_within(&["workload", "list", "--nats", &url, "-o", "json"], dir.path(), Duration::from_secs(30));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let mut seen: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["host"].as_str().unwrap().to_string(), w["status"]["name"].as_str().unwrap().to_string()))
        .collect();
    seen.sort();
    let mut expected = vec![(ids[1].clone(), "ticker".to_string()), (process_id.clone(), "probe".to_string())];
    expected.sort();
    assert_eq!(seen, expected, "{listed:#}");

    // nats-server restarted: every host reconnects, and the client reaches them.
    nats.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = weft_within(
            &["workload", "status", "t-1", "--host", &ids[1], "--nats", &url, "-o", "json"],
            dir.path(),
            Duration::from_secs(30),
        );
        if status.status.success() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "{status:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["state"], "running");
    until_states(["live", "live", "live"]);
    let stopped = weft_within(
        &["workload", "stop", "t-1", "--host", &ids[1], "--nats", &url],
        dir.path(),
        Duration::from_secs(30),
    );
    assert!(text(&stopped.stdout).starts_with("workload t-1 is stopped"), "{stopped:?}");

    // SIGKILL: lost after its missed heartbeats; the others stay live.
    process.kill().unwrap();
    process.wait().unwrap();
    until_states(["live", "live", "lost"]);
    runtime.block_on(async {
        for host in &hosts {
            host.shutdown().await;
        }
    });
}

/// A remote link to a `weft host` process: the call crosses; SIGKILL of the
/// serving process mid-call fails the call within the caller's deadline, with a
/// message naming the function; a new host serving the export takes the next call.
#[test]
fn a_serving_weft_host_killed_mid_call_fails_the_call_in_time_and_a_new_one_serves() {
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use weft_runtime::wasmtime::component::Val;
    use weft_runtime::{Host, HostApi, HostConfig, WorkloadSpec};
    let nats = weft_testkit::Server::nats();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("serve.yaml"),
        format!(
            "name: served\ncomponents:\n  - name: provider\n    source: {}\n    env: {{ WHO: process }}\n    \
             limits: {{ cpuTime: unlimited, timeout: unlimited }}\n    serve: [\"weft:types/faults@0.1.0\"]\n",
            weft_guests::TYPES_PROVIDER
        ),
    )
    .unwrap();
    let serve_on_a_new_host = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
        command.stdout(std::process::Stdio::null());
        let (host, stderr) = launch(&mut command, &["host", "--nats", &url], dir.path());
        let id = loop {
            let line = stderr.recv_timeout(Duration::from_secs(60)).expect("the host names itself");
            if let Some(rest) = line.strip_prefix("weft: host ") {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        let started = weft_within(
            &["workload", "start", "serve.yaml", "--host", &id, "--nats", &url],
            dir.path(),
            Duration::from_secs(60),
        );
        assert!(started.status.success(), "{}", text(&started.stderr));
        host
    };
    let mut doomed = serve_on_a_new_host();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    // What holds NATS subscriptions is dropped inside the runtime.
    let _entered = runtime.enter();
    let caller = runtime.block_on(async {
        let client = async_nats::connect(&url).await.unwrap();
        let host = Host::new(HostConfig {
            stdio: weft_runtime::wasi::GuestStdio::Sink(Arc::new(weft_runtime::output::CapturedOutput::default())),
            remote: Some(weft_lattice::wrpc::WrpcLinks::new(client, weft_lattice::Lattice::default())),
            ..HostConfig::default()
        })
        .await
        .unwrap();
        let spec = WorkloadSpec::from_yaml(&format!(
            r#"
name: calling
components:
  - {{ name: caller, source: {caller}, limits: {{ timeout: 5s }} }}
  - {{ name: local, source: {provider} }}
links:
  - {{ from: caller, import: "weft:types/faults@0.1.0", to: lattice }}
  - {{ from: caller, import: "weft:types/values@0.1.0", to: local }}
  - {{ from: caller, import: "weft:types/counters@0.1.0", to: local }}
  - {{ from: caller, import: "weft:types/pipes@0.1.0", to: local }}
"#,
            caller = weft_guests::TYPES_CALLER,
            provider = weft_guests::TYPES_PROVIDER
        ))
        .unwrap();
        let status = host.workload_start(spec).await.unwrap();
        (host.clone(), host.workload(&status.id).unwrap())
    });
    let (_host, caller) = caller;
    let who = |caller: &weft_runtime::RunningWorkload| {
        runtime.block_on(caller.invoke("caller", "weft:types/scenarios@0.1.0#env-both", &[Val::String("WHO".into())]))
    };
    let seen = who(&caller).unwrap();
    assert!(format!("{seen:?}").contains("process"), "{seen:?}");

    let started = Instant::now();
    let call = {
        let caller = caller.clone();
        runtime.spawn(async move { caller.invoke("caller", "weft:types/scenarios@0.1.0#spin-through", &[]).await })
    };
    std::thread::sleep(Duration::from_millis(500));
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let err = runtime.block_on(call).unwrap().unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(6), "within the caller's 5 s: {:?}", started.elapsed());
    assert!(err.contains("weft:types/faults@0.1.0#spin"), "{err}");

    let mut fresh = serve_on_a_new_host();
    let seen = who(&caller).unwrap();
    assert!(format!("{seen:?}").contains("process"), "{seen:?}");
    assert!(Command::new("kill").args(["-TERM", &fresh.id().to_string()]).status().unwrap().success());
    wait_at_most(&mut fresh, Duration::from_secs(30));
}

/// Projects `weft new` makes share one cargo target directory, so their
/// dependencies (wasip2, wit-bindgen) compile once for all these tests and runs.
const TEMPLATE_TARGET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/template-projects");

/// `weft new NAME --template T` in `dir`, then `weft build` in the new project: its path.
fn new_and_build(dir: &Path, name: &str, template: &str) -> std::path::PathBuf {
    let out = weft(&["new", name, "--template", template], dir);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains(&format!("created `{name}` from template {template}")), "{out:?}");
    let project = dir.join(name);
    for file in ["weft.yaml", "README.md", ".gitignore"] {
        assert!(project.join(file).is_file(), "{template} has no {file}");
    }
    let out = weft_build(&project, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    project
}

fn weft_build(project: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("build")
        .args(args)
        .current_dir(project)
        .env("CARGO_TARGET_DIR", TEMPLATE_TARGET)
        .output()
        .expect("run weft build")
}

#[test]
fn weft_new_lists_its_templates_and_writes_over_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(&["new", "--list"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<String> =
        text(&out.stdout).lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect();
    assert_eq!(listed, ["http", "http-keyvalue", "plugin", "provider", "service"]);

    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let out = weft(&["new", "taken"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("exists and is not empty"), "{out:?}");
    assert_eq!(std::fs::read_dir(dir.path().join("taken")).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(), "mine");

    for bad in ["My_App", "2fast", "a--b", "fn"] {
        let out = weft(&["new", bad], dir.path());
        assert_eq!(out.status.code(), Some(2), "{bad}: {out:?}");
        assert!(!dir.path().join(bad).exists(), "{bad}");
    }
    let out = weft(&["new", "app", "--template", "nope"], dir.path());
    assert!(
        text(&out.stderr).contains("the embedded ones are http, http-keyvalue, plugin, provider, service"),
        "{out:?}"
    );
    assert!(!dir.path().join("app").exists());

    // A local template directory: placeholders in contents and paths, `.tmpl` dropped.
    let template = dir.path().join("mine");
    std::fs::create_dir_all(template.join("src")).unwrap();
    std::fs::write(template.join("Cargo.toml.tmpl"), "name = \"{{name}}\"\n").unwrap();
    std::fs::write(template.join("src/{{crate_name}}.txt"), "{{crate_name}} of {{name}}\n").unwrap();
    let out = weft(&["new", "my-app", "--template", template.to_str().unwrap(), "--dir", "elsewhere"], dir.path());
    assert!(out.status.success(), "{out:?}");
    let made = dir.path().join("elsewhere");
    assert_eq!(std::fs::read_to_string(made.join("Cargo.toml")).unwrap(), "name = \"my-app\"\n");
    assert_eq!(std::fs::read_to_string(made.join("src/my_app.txt")).unwrap(), "my_app of my-app\n");
}

#[test]
fn template_http_builds_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_and_build(dir.path(), "hello-site", "http");
    let serving = Serving::start("weft.yaml", &project);
    let (status, body) = serving.text("GET", "/greet", b"");
    assert_eq!((status, body.as_str()), (200, "Hello from hello-site! You asked for /greet\n"));
    serving.stop();

    // Without a weft.yaml, the directory is a plain cargo component project.
    std::fs::remove_file(project.join("weft.yaml")).unwrap();
    let out = weft_build(&project, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello_site.wasm"), "{}", text(&out.stdout));

    // A compiler error: the compiler's own message, and a failed build.
    std::fs::write(
        project.join("weft.yaml"),
        "name: x\ncomponents: [{ name: x, source: target/wasm32-wasip2/release/hello_site.wasm }]\n",
    )
    .unwrap();
    let lib = project.join("src/lib.rs");
    std::fs::write(&lib, std::fs::read_to_string(&lib).unwrap().replace("struct Handler;", "struct Handler")).unwrap();
    let out = weft_build(&project, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: expected") && stderr.contains("src/lib.rs"), "{stderr}");
    assert!(stderr.contains("error: 1 of 1 builds failed"), "{stderr}");
}

#[test]
fn template_http_keyvalue_builds_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_and_build(dir.path(), "counter", "http-keyvalue");
    let serving = Serving::start("weft.yaml", &project);
    for expected in ["1\n", "2\n"] {
        assert_eq!(serving.text("POST", "/", b""), (200, expected.to_string()));
    }
    assert_eq!(serving.text("GET", "/count", b""), (200, "2\n".to_string()));
    serving.stop();
}

#[test]
fn template_service_builds_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_and_build(dir.path(), "pulse", "service");
    let yaml = std::fs::read_to_string(project.join("weft.yaml")).unwrap();
    std::fs::write(project.join("weft.yaml"), yaml.replace("\"1000\"", "\"50\"")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", "weft.yaml"])
        .current_dir(&project)
        .env("WEFT_CACHE_DIR", dir.path().join("cache"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "[pulse/pulse] pulse started, reporting every 50 ms");
    assert_eq!(lines.next().unwrap().unwrap(), "[pulse/pulse] pulse: tick 1");
    assert_eq!(lines.next().unwrap().unwrap(), "[pulse/pulse] pulse: tick 2");
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    assert!(wait_at_most(&mut child, std::time::Duration::from_secs(30)).success());
}

/// The provider template's two crates, and a third component made by a command
/// that must run after the provider's build.
#[test]
fn template_provider_builds_with_a_custom_command_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let project = new_and_build(dir.path(), "greetings", "provider");
    let out = weft(&["run", "weft.yaml"], &project);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "[greetings/consumer] Hello, world!\n");
    let out = weft(&["inspect", "weft.yaml", "-o", "json"], &project);
    assert!(text(&out.stdout).contains("\"mode\": \"fused\""), "{out:?}");

    // Built from scratch: remove what the first build made.
    std::fs::remove_dir_all(project.join("target")).unwrap();
    let provider_wasm = "target/wasm32-wasip2/release/greetings_provider.wasm";
    let yaml = std::fs::read_to_string(project.join("weft.yaml")).unwrap();
    let extra = format!(
        "  - name: tool-made\n    source: dist/tool-made.wasm\n    build:\n      command: \
         test -f {provider_wasm} && mkdir -p out && cp \"{}\" out/made.wasm && echo made $WEFT_COMPONENT\n      \
         output: out/made.wasm\n      after: [provider]\n  - name: prebuilt\n    source: {}\n",
        weft_guests::GREETER,
        weft_guests::GREETER
    );
    let yaml = yaml.replace("service:", &format!("{extra}service:"));
    std::fs::write(project.join("weft.yaml"), yaml).unwrap();
    let out = weft_build(&project, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for (name, path) in [
        ("provider", provider_wasm),
        ("consumer", "target/wasm32-wasip2/release/greetings-consumer.wasm"),
        ("tool-made", "dist/tool-made.wasm"),
    ] {
        let line =
            stdout.lines().find(|l| l.starts_with(&format!("built {name}  "))).unwrap_or_else(|| panic!("{stdout}"));
        let size = std::fs::metadata(project.join(path)).unwrap().len();
        assert!(size > 1000 && line.contains(path) && (line.contains("KiB") || line.contains("MiB")), "{line}");
    }
    assert!(stdout.contains("built 3 components in "), "{stdout}");
    // A component no build makes, whose file is there, is used as it is.
    assert!(text(&out.stderr).contains("component `prebuilt`: no crate builds"), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(project.join("dist/tool-made.wasm")).unwrap(),
        std::fs::read(weft_guests::GREETER).unwrap()
    );

    // A failing tool: its own output, the failure, and what came after it skipped.
    let yaml = std::fs::read_to_string(project.join("weft.yaml")).unwrap();
    let yaml = yaml.replace("test -f", "echo 'made.py line 3, syntax error' >&2; exit 3; test -f").replace(
        "service:",
        "  - name: later\n    source: dist/later.wasm\n    build: { command: 'true', after: [tool-made] }\nservice:",
    );
    std::fs::write(project.join("weft.yaml"), yaml).unwrap();
    let out = weft_build(&project, &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("component `tool-made`:") && stderr.contains("failed (exit status: 3)"), "{stderr}");
    assert!(stderr.contains("made.py line 3, syntax error"), "{stderr}");
    assert!(stderr.contains("not building later: a build it comes after failed"), "{stderr}");
}

/// What bash offers on <Tab> for a line: the completion function that weft's
/// script registered, called with the line's words. Plugins from `plugin_dir`.
fn bash_completer(dir: &Path, plugin_dir: &Path) -> impl Fn(&str) -> Vec<String> + use<> {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["completions", "bash"])
        .env("WEFT_PLUGIN_DIR", plugin_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let script = dir.join("weft.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    move |line: &str| {
        let program = r#"
            source "$SCRIPT"
            read -ra COMP_WORDS <<< "$LINE"
            [[ "$LINE" == *" " ]] && COMP_WORDS+=("")
            COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
            COMP_LINE="$LINE"; COMP_POINT=${#LINE}
            spec=$(complete -p weft)
            function=$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<< "$spec")
            "$function" weft "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
            printf '%s\n' "${COMPREPLY[@]}"
        "#;
        let out = Command::new("bash").args(["-c", program]).env("LINE", line).env("SCRIPT", &script).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        text(&out.stdout).lines().map(str::to_string).collect()
    }
}

#[test]
fn bash_completes_subcommands_and_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let complete = bash_completer(dir.path(), &dir.path().join("no-plugins"));
    assert_eq!(complete("weft n"), ["new"]);
    let oci = complete("weft oci ");
    assert!(oci.contains(&"push".to_string()) && oci.contains(&"pull".to_string()), "{oci:?}");
    let templates = complete("weft new app --template ");
    for t in ["http", "http-keyvalue", "plugin", "provider", "service"] {
        assert!(templates.contains(&t.to_string()), "{templates:?}");
    }
    assert_eq!(complete("weft completions fi"), ["fish"]);
    assert_eq!(complete("weft inspect x.wasm -o j"), ["json"]);
}

/// A stderr line of `serving` that `wanted` picks, within `limit`.
fn line_within(serving: &Serving, limit: std::time::Duration, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match serving.stderr.recv_timeout(left) {
            Ok(line) if wanted(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no such line within {limit:?}: {seen:#?}"),
        }
    }
}

/// `GET /count` until it answers `body` (a swap lands a moment after the save).
fn answers_within(serving: &Serving, body: &str, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let (status, got) = serving.text("GET", "/count", b"");
        if status == 200 && got == body {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "still {status} {got:?}, not {body:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The developer's loop on the http-keyvalue template: edit, save, the answer
/// changes; a broken build keeps the old version serving; a loop of requests
/// across the swaps sees every request answered by one version or the other; the
/// counter's data survives; a manifest edit re-plans.
#[test]
fn weft_dev_swaps_each_saved_change_in_while_serving() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let project = new_and_build(dir.path(), "tally", "http-keyvalue");
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.env("CARGO_TARGET_DIR", TEMPLATE_TARGET).stdout(std::process::Stdio::null());
    let serving = Serving::start_args(&mut command, &["dev", "--poll", "100ms"], &project);
    assert_eq!(serving.text("POST", "/", b""), (200, "1\n".to_string()));
    assert_eq!(serving.text("POST", "/", b""), (200, "2\n".to_string()));

    // Requests all along, each on a new connection: every one answered 200.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, addr) = (stop.clone(), serving.addr);
        std::thread::spawn(move || {
            let mut answers: Vec<String> = Vec::new();
            let mut count = 0;
            // Asked to stop, it still goes on until it has been answered by the
            // last version too: a request it sent just before that swap may come
            // back from the old one after the test saw the new.
            let last = "total: 2\n";
            while !stop.load(Ordering::Relaxed) || answers.last().is_none_or(|a: &String| a != last) {
                let (status, body) = get_within(addr, "/count", Duration::from_secs(10));
                assert_eq!(status, 200, "request {count}: {body}");
                if answers.last() != Some(&body) {
                    answers.push(body);
                }
                count += 1;
            }
            (count, answers)
        })
    };
    let lib = project.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    assert!(source.contains(r#"format!("{n}\n")"#));
    std::fs::write(&lib, source.replace(r#"format!("{n}\n")"#, r#"format!("count: {n}\n")"#)).unwrap();
    let swapped = line_within(&serving, Duration::from_secs(180), |l| l.starts_with("weft: swapped in `tally`"));
    assert!(swapped.contains("src/lib.rs changed; build ") && swapped.contains(" ms"), "{swapped}");
    answers_within(&serving, "count: 2\n", Duration::from_secs(10));

    // A syntax error: the compiler's message, and the old version still serves.
    let broken = source.replace(r#"format!("{n}\n")"#, r#"format!("count: {n}\n")"#);
    std::fs::write(&lib, broken.replace("struct Handler;", "struct Handler")).unwrap();
    let compiler = line_within(&serving, Duration::from_secs(180), |l| l.starts_with("error: expected"));
    assert!(compiler.contains(';') || compiler.contains("struct"), "{compiler}");
    line_within(&serving, Duration::from_secs(60), |l| l.contains("the previous version still serves"));
    assert_eq!(serving.text("GET", "/count", b""), (200, "count: 2\n".to_string()));

    // Fixed: swapped again.
    std::fs::write(&lib, source.replace(r#"format!("{n}\n")"#, r#"format!("total: {n}\n")"#)).unwrap();
    line_within(&serving, Duration::from_secs(180), |l| l.starts_with("weft: swapped in `tally`"));
    answers_within(&serving, "total: 2\n", Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    let (count, answers) = load.join().unwrap();
    assert!(count > 10, "{count} requests");
    assert_eq!(answers.first().map(String::as_str), Some("2\n"), "{answers:?}");
    assert_eq!(answers.last().map(String::as_str), Some("total: 2\n"), "{answers:?}");
    assert_eq!(serving.text("POST", "/", b""), (200, "total: 3\n".to_string()));

    // An invalid manifest keeps the old version; a valid edit re-plans the routes.
    let manifest = project.join("weft.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, yaml.replace("components:", "components: [")).unwrap();
    line_within(&serving, Duration::from_secs(60), |l| l.ends_with("; the previous version still serves"));
    assert_eq!(serving.text("GET", "/count", b""), (200, "total: 3\n".to_string()));
    std::fs::write(&manifest, yaml.replace(r#"path: "/*""#, r#"path: "/api/*""#)).unwrap();
    let swapped = line_within(&serving, Duration::from_secs(180), |l| l.starts_with("weft: swapped in `tally`"));
    assert!(swapped.contains("the manifest changed"), "{swapped}");
    assert_eq!(serving.text("GET", "/api/count", b""), (200, "total: 3\n".to_string()));
    assert_eq!(serving.text("GET", "/count", b"").0, 404);
    serving.stop();
}

/// The plugin template, installed: `weft lines` runs it, sandboxed (the working
/// directory only, no network), its hook runs in `weft build`, bash completes it,
/// and plugins whose commands collide are refused.
#[test]
fn a_plugin_from_the_template_runs_as_a_weft_command_in_its_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let weft_with_plugins = |args: &[&str], cwd: &Path| {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .current_dir(cwd)
            .env("WEFT_PLUGIN_DIR", &plugins)
            .env("WEFT_CACHE_DIR", dir.path().join("cache"))
            .env("CARGO_TARGET_DIR", TEMPLATE_TARGET)
            .output()
            .unwrap()
    };
    let project = new_and_build(dir.path(), "lines", "plugin");
    let out =
        weft_with_plugins(&["plugin", "install", "target/wasm32-wasip2/release/lines.wasm", "--allow-dir"], &project);
    assert!(out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("installed plugin `lines` 0.1.0: weft lines"), "{stderr}");
    assert!(stderr.contains("it asks for the network, which it does not get"), "{stderr}");
    let out = weft_with_plugins(&["plugin", "list"], &project);
    assert!(text(&out.stdout).starts_with("lines\t0.1.0\tcommands: lines\tgranted: working directory\t"), "{out:?}");
    let help = text(&weft_with_plugins(&["--help"], &project).stdout);
    assert!(help.lines().any(|l| l.trim_start().starts_with("lines") && l.contains("(plugin `lines`)")), "{help}");

    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("two.txt"), "a\nb\n").unwrap();
    std::fs::write(dir.path().join("outside.txt"), "secret\n").unwrap();
    let out = weft_with_plugins(&["lines", "two.txt"], &work);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "     2 two.txt\n"), "{out:?}");
    let outside = dir.path().join("outside.txt");
    for path in ["../outside.txt", outside.to_str().unwrap()] {
        let out = weft_with_plugins(&["lines", path], &work);
        assert_eq!(out.status.code(), Some(1), "{path}: {out:?}");
        assert!(text(&out.stderr).contains(&format!("cannot read {path}")), "{out:?}");
        assert!(!text(&out.stdout).contains("secret") && text(&out.stdout).is_empty(), "{out:?}");
    }
    // No network: a connection to a listener here is refused before it is made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let out = weft_with_plugins(&["lines", "--connect", &address], &work);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains(&format!("cannot connect to {address}")), "{out:?}");
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);

    // Its after-build hook, in weft build.
    let out = weft_with_plugins(&["build"], &project);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stderr).contains("lines: built ./weft.yaml"), "{out:?}");

    let complete = bash_completer(dir.path(), &plugins);
    assert_eq!(complete("weft lin"), ["lines"]);
    assert!(complete("weft lines --c").contains(&"--connect".to_string()));
    assert_eq!(complete("weft plugin uninstall l"), ["lines"]);

    // Colliding commands: with another plugin's, with a built-in.
    let other = new_and_build(dir.path(), "other", "plugin");
    let lib = other.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let command_name = "name: \"other\".into(),\n                about: \"Count the lines of files\"";
    assert!(source.contains(command_name), "{source}");
    for (command, refusal) in [
        ("lines", "its command `lines` collides with command `lines` of the installed plugin `lines`"),
        ("build", "its command `build` collides with weft's built-in command `build`"),
    ] {
        std::fs::write(&lib, source.replace(command_name, &command_name.replace("other", command))).unwrap();
        assert!(weft_build(&other, &[]).status.success());
        let out = weft_with_plugins(&["plugin", "install", "target/wasm32-wasip2/release/other.wasm"], &other);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(text(&out.stderr).contains(&format!("plugin `other`: {refusal}")), "{out:?}");
    }
    let out = weft_with_plugins(&["plugin", "list"], &project);
    assert_eq!(text(&out.stdout).lines().count(), 1, "{out:?}");

    let out = weft_with_plugins(&["plugin", "uninstall", "lines"], &project);
    assert!(out.status.success(), "{out:?}");
    let out = weft_with_plugins(&["lines", "two.txt"], &work);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("unrecognized subcommand 'lines'"), "{out:?}");

    // From a registry, as pushed by `weft oci push`.
    let registry = weft_testkit::Server::registry(None);
    let reference = format!("{}/plugins/lines:0.1.0", registry.url());
    let wasm = "target/wasm32-wasip2/release/lines.wasm";
    assert!(weft_with_plugins(&["oci", "push", "--insecure", wasm, &reference], &project).status.success());
    let source = format!("oci://{reference}");
    let out = weft_with_plugins(&["plugin", "install", "--insecure", "--allow-dir", &source], &work);
    assert!(out.status.success(), "{out:?}");
    let out = weft_with_plugins(&["lines", "two.txt"], &work);
    assert_eq!((out.status.code(), text(&out.stdout).as_str()), (Some(0), "     2 two.txt\n"), "{out:?}");
}
