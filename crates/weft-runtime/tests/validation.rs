//! Validation on receipt: bad manifests are rejected whole, with every problem named,
//! and nothing of them stays behind; other workloads are untouched.

mod common;

use std::path::Path;

use common::*;
use weft_runtime::{HostApi, WorkloadState};

/// A workload that keeps running through all the rejections, with a file in its emptyDir.
async fn bystander(t: &TestHost) -> std::sync::Arc<weft_runtime::RunningWorkload> {
    let w = t
        .start_ok(&format!(
            r#"
name: bystander
components:
  - name: writer
    source: {HELLO}
    env: {{ HELLO_WRITE: /scratch/keep.txt }}
    volumeMounts: [{{ name: scratch, mountPath: /scratch }}]
service: {{ name: ticker, source: {TICKER} }}
volumes: [{{ name: scratch, emptyDir: {{}} }}]
"#
        ))
        .await;
    w.run("writer").await.unwrap();
    w
}

fn scratch_entries(t: &TestHost) -> Vec<String> {
    let dir = t.dir.path().join("scratch");
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn keep_file(t: &TestHost, w: &weft_runtime::RunningWorkload) -> String {
    std::fs::read_to_string(t.dir.path().join("scratch").join(&w.id().0).join("scratch/keep.txt")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_fault_is_rejected_with_its_cause_and_bystanders_are_untouched() {
    let t = host().await;
    let w = bystander(&t).await;
    assert_eq!(keep_file(&t, &w), "written by hello");
    let scratch_before = scratch_entries(&t);

    t.file("core.wasm", b"\0asm\x01\0\0\0");
    t.file("random.wasm", &(0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>());
    let hello = std::fs::read(HELLO).unwrap();
    t.file("truncated.wasm", &hello[..hello.len() / 2]);
    t.file("notes.wasm", b"these are not the bytes you are looking for");

    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown field",
            format!("name: a\ncomponents: [{{ name: c, source: {HELLO}, colour: red }}]\n"),
            vec!["manifest", "unknown field `components[0].colour`"],
        ),
        (
            "missing source",
            "name: a\ncomponents: [{ name: c, source: nowhere.wasm }]\n".into(),
            vec!["component `c`", "nowhere.wasm does not exist"],
        ),
        (
            "core module",
            "name: a\ncomponents: [{ name: c, source: core.wasm }]\n".into(),
            vec!["component `c`", "a core WebAssembly module, not a component"],
        ),
        (
            "random bytes",
            "name: a\ncomponents: [{ name: c, source: random.wasm }]\n".into(),
            vec!["component `c`", "not WebAssembly"],
        ),
        (
            "text",
            "name: a\ncomponents: [{ name: c, source: notes.wasm }]\n".into(),
            vec!["component `c`", "starts with the text \"these ar\""],
        ),
        (
            "truncated",
            "name: a\ncomponents: [{ name: c, source: truncated.wasm }]\n".into(),
            vec!["component `c`", "invalid component"],
        ),
        (
            "import nobody provides",
            format!("name: a\ncomponents: [{{ name: client, source: {GREETER_CLIENT} }}]\n"),
            vec!["component `client`", "imports `weft:fixtures/greeter@0.1.0`, which nothing provides"],
        ),
        (
            "two exporters",
            format!(
                "name: a\ncomponents:\n  - {{ name: client, source: {GREETER_CLIENT} }}\n  - {{ name: g1, source: {GREETER} }}\n  - {{ name: g2, source: {GREETER} }}\n"
            ),
            vec!["component `client`", "2 components export (`g1`, `g2`)", "links"],
        ),
        (
            "link cycle",
            format!("name: a\ncomponents:\n  - {{ name: r1, source: {RELAY} }}\n  - {{ name: r2, source: {RELAY} }}\n"),
            vec!["links", "link cycle: `r1` → `r2` → `r1`"],
        ),
        (
            "undeclared volume",
            format!(
                "name: a\ncomponents: [{{ name: c, source: {HELLO}, volumeMounts: [{{ name: ghost, mountPath: /g }}] }}]\nvolumes: [{{ name: real, emptyDir: {{}} }}]\n"
            ),
            vec!["component `c`", "mounts volume `ghost`, which `volumes` does not declare (declared: real)"],
        ),
        (
            "a service reusing instances",
            format!("name: a\nservice: {{ name: s, source: {TICKER}, reuseInstances: true }}\n"),
            vec!["component `s`", "`reuseInstances` does not apply to the service"],
        ),
    ];
    for (case, yaml, expected) in &cases {
        let rejection = t.rejection(yaml).await;
        let text = rejection.to_string();
        assert_eq!(rejection.problems.len(), 1, "{case}: {text}");
        for needle in expected {
            assert!(text.contains(needle), "{case}: `{needle}` not in:\n{text}");
        }
    }

    // Found by the property test: linking looked the second `b` up by name and
    // panicked; now the first declaration links and the name is the problem.
    let twice = t
        .rejection(&format!(
            "name: a\ncomponents: [{{ name: b, source: {GREETER} }}]\nservice: {{ name: b, source: {GREETER_CLIENT} }}\nlinks: [{{ import: \"weft:fixtures/greeter@0.1.0\", from: b, to: b }}]\n"
        ))
        .await
        .to_string();
    assert!(twice.contains("component `b`: the name is used by more than one component"), "{twice}");

    // The bystander never noticed.
    assert_eq!(w.state(), WorkloadState::Running);
    assert_eq!(keep_file(&t, &w), "written by hello");
    assert_eq!(scratch_entries(&t), scratch_before, "a rejected workload left something in the scratch dir");
    let beat = t.host.heartbeat().await.unwrap();
    assert_eq!((beat.workloads, beat.components), (1, 2));
    w.run("writer").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_problem_is_reported_at_once() {
    let t = host().await;
    let rejection = t
        .rejection(&format!(
            r#"
name: broken
components:
  - {{ name: missing, source: missing.wasm }}
  - {{ name: client, source: {GREETER_CLIENT} }}
  - name: mounter
    source: {HELLO}
    volumeMounts: [{{ name: ghost, mountPath: /ghost }}]
    limits: {{ cpuTme: 1s }}
"#
        ))
        .await;
    let text = rejection.to_string();
    assert_eq!(rejection.problems.len(), 4, "{text}");
    assert!(text.starts_with("workload `broken` rejected (4 problems):"), "{text}");
    for needle in [
        "manifest: unknown field `components[2].limits.cpuTme`",
        "component `missing`: source file",
        "component `client`: imports `weft:fixtures/greeter@0.1.0`, which nothing provides",
        "component `mounter`: mounts volume `ghost`",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    assert!(!t.dir.path().join("scratch").exists() || scratch_entries(&t).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_link_resolves_two_exporters() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            r#"
name: chosen
components:
  - {{ name: client, source: {GREETER_CLIENT} }}
  - {{ name: english, source: {GREETER} }}
  - {{ name: french, source: {GREETER}, env: {{ GREETING: Salut }} }}
links:
  - {{ from: client, import: "weft:fixtures/greeter@0.1.0", to: french }}
"#
        ))
        .await;
    w.run("client").await.unwrap();
    assert_eq!(t.stdout("client"), ["Salut, weft!"]);
    let plan = w.plan();
    let link = plan.imports_of("client").iter().find(|i| i.import.starts_with("weft:fixtures/greeter")).unwrap();
    assert_eq!(link.provider.to_string(), "component `french` (weft:fixtures/greeter@0.1.0, fused)");
    assert!(
        plan.imports_of("client")
            .iter()
            .filter(|i| i.import.starts_with("wasi:"))
            .all(|i| i.provider.to_string() == "runtime (WASI)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_read_from_files_resolve_paths_against_their_directory() {
    let t = host().await;
    let app = t.dir.path().join("app");
    std::fs::create_dir_all(app.join("data")).unwrap();
    std::fs::copy(HELLO, app.join("hello.wasm")).unwrap();
    std::fs::write(app.join("data/x.txt"), "relative").unwrap();
    std::fs::write(
        app.join("workload.json"),
        r#"{"name": "rel", "components": [{"name": "hello", "source": "hello.wasm",
            "env": {"HELLO_READ": "/d/x.txt"}, "volumeMounts": [{"name": "d", "mountPath": "/d"}]}],
            "volumes": [{"name": "d", "hostPath": {"path": "data", "readOnly": true}}]}"#,
    )
    .unwrap();
    let spec = weft_runtime::WorkloadSpec::from_file(app.join("workload.json")).unwrap();
    assert_eq!(spec.base_dir.as_deref(), Some(Path::new(&app)));
    let status = t.host.workload_start(spec).await.unwrap();
    t.host.workload(&status.id).unwrap().run("hello").await.unwrap();
    assert!(t.stdout("hello").contains(&"read /d/x.txt: relative".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_imported_at_different_minor_versions_links_to_the_runtime() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            "name: versions\ncomponents:\n  - {{ name: hello, source: {HELLO}, args: [ok] }}\n  - {{ name: trap, source: {TRAP} }}\n"
        ))
        .await;
    let mut versions = std::collections::BTreeSet::new();
    for component in ["hello", "trap"] {
        for import in w.plan().imports_of(component) {
            assert_eq!(import.provider, weft_runtime::workload::Provider::Runtime, "{}", import.import);
            versions.insert(import.import.split_once('@').unwrap().1.to_string());
        }
    }
    // `hello` uses WASI 0.2.12 bindings; `trap` only what the standard library imports.
    assert!(versions.len() >= 2 && versions.contains("0.2.12"), "{versions:?}");
    w.run("hello").await.unwrap();
    assert_eq!(t.stdout("hello"), ["ok"]);
}
