//! Property tests of what a manifest can hold: any text is parsed or refused with
//! a message; any manifest of the right shape but hostile values is validated
//! (accepted or rejected with problems) without a panic; what parses prints back
//! to the same manifest. `PROPTEST_CASES=20000 cargo test -p weft-runtime --test
//! properties` is the longer run (docs/reliability.md).

mod common;

use std::sync::OnceLock;

use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use weft_runtime::WorkloadSpec;

/// Cases per property: `PROPTEST_CASES` when set, else a number CI affords.
fn config(ci_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(ci_cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Mostly `valid`, sometimes anything at all: so that most cases parse and reach
/// validation, and the rest try the parser.
fn mostly(valid: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Value> {
    prop_oneof![40 => valid.boxed(), 1 => scalar().boxed(), 1 => name().boxed()]
}

/// Names as a hostile manifest writes them.
fn name() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => "[a-z][a-z0-9-]{0,10}".prop_map(Value::from),
        1 => "\\PC{0,12}".prop_map(Value::from),
        1 => Just(json!("a.b")),
        1 => Just(json!("")),
        1 => Just(json!("x".repeat(200))),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
    ]
}

/// Values for sizes, durations and numbers: valid, absurd and mistyped.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("64MiB")),
        Just(json!("unlimited")),
        Just(json!("250ms")),
        Just(json!("18446744073709551615GiB")),
        Just(json!("-1")),
        Just(json!(1e300)),
        Just(json!(-0.5)),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,10}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ]
}

fn source() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!(HELLO)),
        2 => Just(json!(GREETER_CLIENT)),
        2 => Just(json!(GREETER)),
        1 => Just(json!("missing.wasm")),
        1 => Just(json!("/dev/zero")),
        1 => Just(json!("/")),
        1 => "\\PC{0,20}".prop_map(Value::from),
    ]
}

/// A name from a small pool, so that links, mounts and host interfaces often
/// name what the manifest declares.
fn pooled() -> impl Strategy<Value = Value> {
    mostly(prop_oneof![Just(json!("a")), Just(json!("b")), Just(json!("c"))])
}

fn interface() -> impl Strategy<Value = Value> {
    mostly(prop_oneof![
        Just(json!("wasi:http/incoming-handler@0.2.0")),
        Just(json!("wasi:keyvalue/store@0.2.0-draft")),
        Just(json!("weft:fixtures/greeter@0.1.0")),
        "[a-z]{1,4}:[a-z]{1,4}/[a-z]{1,4}@0\\.[0-9]\\.[0-9]".prop_map(Value::from),
    ])
}

fn size() -> impl Strategy<Value = Value> {
    mostly(prop_oneof![(1u64..512).prop_map(|m| json!(format!("{m}MiB"))), any::<u32>().prop_map(Value::from)])
}

fn duration() -> impl Strategy<Value = Value> {
    mostly(prop_oneof![(0u64..100_000).prop_map(|ms| json!(format!("{ms}ms"))), Just(json!("unlimited"))])
}

fn count() -> impl Strategy<Value = Value> {
    mostly(prop_oneof![(0u64..70_000).prop_map(Value::from)])
}

fn component() -> impl Strategy<Value = Value> {
    (pooled(), source(), size(), duration(), count(), proptest::option::of(pooled()), any::<bool>()).prop_map(
        |(name, source, memory, timeout, concurrent, mount, reuse)| {
            let mut c = json!({
                "name": name, "source": source,
                "limits": { "memory": memory, "timeout": timeout, "maxConcurrent": concurrent },
                "reuseInstances": reuse,
                "env": { "A": "b" }, "args": ["x"],
            });
            if let Some(volume) = mount {
                c["volumeMounts"] = json!([{ "name": volume, "mountPath": "/m" }]);
            }
            c
        },
    )
}

fn manifest() -> impl Strategy<Value = Value> {
    (
        name(),
        proptest::option::of(name()),
        proptest::collection::vec(component(), 0..4),
        proptest::option::of((component(), count(), duration(), mostly((-2.0f64..1e12).prop_map(Value::from)), duration())),
        proptest::collection::vec((pooled(), any::<bool>()), 0..3),
        proptest::collection::vec((pooled(), pooled(), mostly(prop_oneof![Just(json!("fused")), Just(json!("dynamic")), Just(json!("auto"))])), 0..2),
        proptest::collection::vec((interface(), proptest::option::of(pooled()), scalar()), 0..3),
    )
        .prop_map(|(name, namespace, components, service, volumes, links, host_interfaces)| {
            let mut m = json!({ "name": name, "components": components });
            if let Some(namespace) = namespace {
                m["namespace"] = namespace;
            }
            if let Some((mut service, restarts, initial, multiplier, max)) = service {
                service["restart"] =
                    json!({ "maxRestarts": restarts, "backoff": { "initial": initial, "multiplier": multiplier, "max": max } });
                m["service"] = service;
            }
            m["volumes"] = volumes
                .into_iter()
                .map(|(name, empty)| if empty { json!({ "name": name, "emptyDir": {} }) } else { json!({ "name": name, "hostPath": { "path": "." } }) })
                .collect();
            m["links"] = links
                .into_iter()
                .map(|(from, to, mode)| json!({ "import": "weft:fixtures/greeter@0.1.0", "from": from, "to": to, "mode": mode }))
                .collect();
            m["hostInterfaces"] = host_interfaces
                .into_iter()
                .map(|(interface, component, setting)| json!({ "interface": interface, "component": component, "config": { "routes": setting, "sharedBuckets": setting } }))
                .collect();
            m
        })
}

/// One host and runtime for every case (validation compiles each component once).
fn host() -> &'static (tokio::runtime::Runtime, TestHost) {
    static HOST: OnceLock<(tokio::runtime::Runtime, TestHost)> = OnceLock::new();
    HOST.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let t = runtime.block_on(common::host());
        (runtime, t)
    })
}

proptest! {
    #![proptest_config(config(2000))]

    /// Any text (and any text that looks a little like a manifest) is a manifest
    /// or an error; no panic, whatever it holds.
    #[test]
    fn any_text_parses_or_is_refused(text in "\\PC{0,200}|(name: |components:\n  - |\\{|\\[|: |\n|-|&a |\\*a|!!|'|\")*") {
        let _ = WorkloadSpec::from_yaml(&text);
        let _ = WorkloadSpec::from_json(&text);
    }
}

proptest! {
    #![proptest_config(config(200))]

    /// Any manifest of the right shape, with hostile names and values, is
    /// validated whole: accepted, or rejected listing its problems; what parses
    /// prints back as the same manifest.
    #[test]
    fn hostile_manifests_are_validated_without_panic(manifest in manifest()) {
        let yaml = serde_yaml_ng::to_string(&manifest).unwrap();
        let Ok(mut spec) = WorkloadSpec::from_yaml(&yaml) else { return Ok(()) };
        let printed = serde_yaml_ng::to_string(&spec).unwrap();
        let again = WorkloadSpec::from_yaml(&printed).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        prop_assert_eq!(serde_json::to_value(&spec).unwrap(), serde_json::to_value(&again).unwrap());
        let (runtime, t) = host();
        spec.base_dir = Some(t.dir.path().to_path_buf());
        if let Err(rejection) = runtime.block_on(t.host.validate(spec)) {
            prop_assert!(!rejection.problems.is_empty(), "a rejection names its problems");
        }
    }
}
