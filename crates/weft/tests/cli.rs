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
        std::fs::write(dir.join("host.yaml"), "plugins:\n  http:\n    listen: [\"127.0.0.1:0\"]\n").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["run", manifest, "--host-config", "host.yaml"])
            .current_dir(dir)
            .env("WEFT_CACHE_DIR", dir.join("cache"))
            .env_remove("WEFT_LOG")
            .stdout(std::process::Stdio::null())
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
    fn stop(mut self) {
        let interrupted = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(interrupted.success());
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.stderr.iter().collect();
        assert!(status.success(), "{status}: {rest:#?}");
        assert!(rest.iter().any(|l| l.ends_with("is stopped")), "{rest:#?}");
    }
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
