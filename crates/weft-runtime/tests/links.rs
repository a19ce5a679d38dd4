//! In-process links between components: every kind of value crosses exactly,
//! resources and WASI streams work across the link, errors stay where they belong.
//! The whole suite runs once per link mode: `dynamic`, `fused` and `auto`; its
//! values and chains also with the provider on another host of a lattice
//! (`remote`: wRPC on a real nats-server).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use weft_lattice::Lattice;
use weft_lattice::wrpc::WrpcLinks;
use weft_runtime::engine::{Concurrency, EngineConfig};
use weft_runtime::wasmtime::component::Val;
use weft_runtime::{HostConfig, InvokeError, RunningWorkload};
use weft_testkit::Server;

/// The host a test of `mode` runs its caller on; for `remote`, one on a lattice
/// of its own nats-server, with a second host on it to serve the providers.
struct SuiteHost {
    host: TestHost,
    serving: Option<(TestHost, Server)>,
}

impl std::ops::Deref for SuiteHost {
    type Target = TestHost;

    fn deref(&self) -> &TestHost {
        &self.host
    }
}

impl SuiteHost {
    fn serving(&self) -> &TestHost {
        &self.serving.as_ref().expect("a remote suite host").0
    }
}

async fn suite_host(mode: &str) -> SuiteHost {
    if mode != "remote" {
        return SuiteHost { host: host().await, serving: None };
    }
    let nats = Server::nats();
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let client = async_nats::connect(nats.url()).await.unwrap();
        hosts.push(
            host_configured(HostConfig {
                engine: EngineConfig { cache_dir: Some(shared_cache()), ..EngineConfig::default() },
                remote: Some(WrpcLinks::new(client, Lattice::default())),
                ..HostConfig::default()
            })
            .await,
        );
    }
    let serving = hosts.pop().unwrap();
    SuiteHost { host: hosts.pop().unwrap(), serving: Some((serving, nats)) }
}

/// A host with the config plugin and in-memory key-value.
async fn plugin_host() -> TestHost {
    let keyvalue = weft_plugins::keyvalue::KeyValuePlugin::new(&Default::default()).await.unwrap();
    let config = weft_plugins::config::ConfigPlugin::new(&Default::default());
    host_with_plugins(Some(shared_cache()), vec![Arc::new(keyvalue), Arc::new(config)]).await
}

/// `caller` imports everything `provider` exports, through links of `mode`. The
/// provider has a volume and an environment of its own; the caller has neither.
/// Behind a dynamic link the provider has its own CPU limit; a composite runs
/// under its entry's limits, so there the caller's limit covers the call tree.
/// Remote, the provider serves `values` and `faults` from the other host;
/// `counters` and `pipes`, which hold resources, stay in-process.
async fn pair(t: &SuiteHost, mode: &str) -> Arc<RunningWorkload> {
    let remote = mode == "remote";
    let note = "written by the host for the provider".as_bytes();
    t.file("provider-data/note.txt", note);
    if remote {
        t.serving().file("provider-data/note.txt", note);
    }
    let (caller_cpu, provider_limits) =
        if link_mode(mode) == "dynamic" || remote { ("5s", "limits: { cpuTime: 200ms }") } else { ("300ms", "") };
    let provider = |serve: &str| {
        format!(
            r#"
  - name: provider
    source: {TYPES_PROVIDER}
    env: {{ WHO: provider }}
    volumeMounts: [{{ name: data, mountPath: /data, readOnly: true }}]
    {provider_limits}
    {serve}
"#
        )
    };
    let volumes = "volumes:\n  - { name: data, hostPath: { path: provider-data } }\n";
    let to = |i: &str| match (remote, i) {
        (true, "values" | "faults") => "to: lattice".to_string(),
        (true, _) => "to: provider".to_string(),
        (false, _) => format!("to: provider, mode: {}", link_mode(mode)),
    };
    let links: String = ["values", "counters", "pipes", "faults"]
        .iter()
        .map(|i| format!("  - {{ from: caller, import: \"weft:types/{i}@0.1.0\", {} }}\n", to(i)))
        .collect();
    if remote {
        let serve = r#"serve: ["weft:types/values@0.1.0", "weft:types/faults@0.1.0"]"#;
        t.serving().start_ok(&format!("name: served\ncomponents:{}{volumes}", provider(serve))).await;
    }
    let w = t
        .start_ok(&format!(
            r#"
name: pair
components:
  - name: caller
    source: {TYPES_CALLER}
    env: {{ WHO: caller }}
    limits: {{ cpuTime: {caller_cpu} }}{}{}{volumes}links:
{links}"#,
            provider(""),
            engine_extra(mode),
        ))
        .await;
    assert_engine(&w, mode);
    let expected = match link_mode(mode) {
        "dynamic" => ", dynamic",
        "remote" => "the lattice (remote, wRPC)",
        _ => ", fused",
    };
    for link in w.plan().imports_of("caller").iter().filter(|l| l.import.starts_with("weft:types/")) {
        let crosses = !remote || ["values", "faults"].iter().any(|i| is_interface(&link.import, i));
        if crosses {
            assert!(link.provider.to_string().contains(expected), "{mode}: {}", link.provider);
        }
    }
    w
}

/// The link mode a suite mode uses: `<mode>_on_async_engine` runs `<mode>`
/// links in a workload that also holds a WASI 0.3 component, so on the engine
/// with concurrency, where calls into a provider are guest tasks.
fn link_mode(mode: &str) -> &str {
    mode.strip_suffix("_on_async_engine").unwrap_or(mode)
}

/// The component that puts a workload of `mode` on the engine with concurrency.
fn engine_extra(mode: &str) -> String {
    if mode.ends_with("_on_async_engine") { format!("  - {{ name: p3, source: {HELLO_P3} }}\n") } else { String::new() }
}

fn assert_engine(w: &RunningWorkload, mode: &str) {
    let on = mode.ends_with("_on_async_engine");
    assert_eq!(w.status().concurrency, Some(if on { Concurrency::On } else { Concurrency::Off }), "{mode}");
}

fn is_interface(import: &str, interface: &str) -> bool {
    import.starts_with(&format!("weft:types/{interface}@"))
}

/// greeter-client `a` → relay `b` → greeter `c`, each link of `mode`; remote,
/// `b` and `c` are on the other host (`b` serves, its link to `c` is local
/// there). What `a` printed.
async fn chain_output(mode: &str) -> Vec<String> {
    let t = suite_host(mode).await;
    let b = format!("{{ name: b, source: {RELAY}, env: {{ RELAY_MARK: via-b }}");
    let c = format!("{{ name: c, source: {GREETER}, env: {{ GREETING: Ahoy }} }}");
    let a = format!("{{ name: a, source: {GREETER_CLIENT}, args: [chain] }}");
    let greeter = "\"weft:fixtures/greeter@0.1.0\"";
    let w = if mode == "remote" {
        t.serving()
            .start_ok(&format!(
                "name: relaying\ncomponents:\n  - {b}, serve: [{greeter}] }}\n  - {c}\n\
                 links:\n  - {{ from: b, import: {greeter}, to: c }}\n"
            ))
            .await;
        t.start_ok(&format!(
            "name: chain\ncomponents:\n  - {a}\nlinks:\n  - {{ from: a, import: {greeter}, to: lattice }}\n"
        ))
        .await
    } else {
        t.start_ok(&format!(
            "name: chain\ncomponents:\n  - {a}\n  - {b} }}\n  - {c}\n{}links:\n  \
             - {{ from: a, import: {greeter}, to: b, mode: {m} }}\n  - {{ from: b, import: {greeter}, to: c, mode: {m} }}\n",
            engine_extra(mode),
            m = link_mode(mode),
        ))
        .await
    };
    w.run("a").await.unwrap();
    t.stdout("a")
}

/// Values equal, floats compared by their bits.
fn same(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Float32(x), Val::Float32(y)) => x.to_bits() == y.to_bits(),
        (Val::Float64(x), Val::Float64(y)) => x.to_bits() == y.to_bits(),
        (Val::List(x), Val::List(y)) | (Val::Tuple(x), Val::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Val::Record(x), Val::Record(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((n, a), (m, b))| n == m && same(a, b))
        }
        (Val::Variant(n, x), Val::Variant(m, y)) => n == m && same_opt(x, y),
        (Val::Option(x), Val::Option(y)) => same_opt(x, y),
        (Val::Result(Ok(x)), Val::Result(Ok(y))) | (Val::Result(Err(x)), Val::Result(Err(y))) => same_opt(x, y),
        (a, b) => a == b,
    }
}

fn same_opt(a: &Option<Box<Val>>, b: &Option<Box<Val>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same(a, b),
        _ => false,
    }
}

/// Sends each value through caller → provider → caller and checks it came back intact.
async fn round_trip(mode: &str, function: &str, values: Vec<Vec<Val>>) {
    let t = suite_host(mode).await;
    let w = pair(&t, mode).await;
    let mut caller = w.instantiate("caller").await.unwrap();
    for params in values {
        let path = format!("weft:types/values@0.1.0#{function}");
        let back = caller.call(&path, &params).await.unwrap_or_else(|e| panic!("{function}: {e}"));
        let expected = if params.len() == 1 { params[0].clone() } else { Val::Tuple(params.clone()) };
        assert!(same(&back[0], &expected), "{function}: sent {expected:?}, got {:?}", back[0]);
    }
    // One instance of the provider served every call of this invocation.
    assert_eq!(caller.store().data().linked_resources(), 0);
}

fn one(v: Val) -> Vec<Val> {
    vec![v]
}

/// Values of every kind and a chain: what every mode carries, `remote` included.
macro_rules! crossing_tests {
    () => {
        #[tokio::test(flavor = "multi_thread")]
        async fn bools_cross() {
            round_trip(MODE, "echo-bool", vec![one(Val::Bool(true)), one(Val::Bool(false))]).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn integers_of_every_width_cross_at_their_edges() {
            round_trip(MODE, "echo-u8", [0, 1, u8::MAX].map(|v| one(Val::U8(v))).to_vec()).await;
            round_trip(MODE, "echo-s8", [i8::MIN, -1, 0, i8::MAX].map(|v| one(Val::S8(v))).to_vec()).await;
            round_trip(MODE, "echo-u16", [0, u16::MAX].map(|v| one(Val::U16(v))).to_vec()).await;
            round_trip(MODE, "echo-s16", [i16::MIN, 0, i16::MAX].map(|v| one(Val::S16(v))).to_vec()).await;
            round_trip(MODE, "echo-u32", [0, 1 << 31, u32::MAX].map(|v| one(Val::U32(v))).to_vec()).await;
            round_trip(MODE, "echo-s32", [i32::MIN, -1, i32::MAX].map(|v| one(Val::S32(v))).to_vec()).await;
            round_trip(MODE, "echo-u64", [0, 1 << 63, u64::MAX].map(|v| one(Val::U64(v))).to_vec()).await;
            round_trip(MODE, "echo-s64", [i64::MIN, -1, i64::MAX].map(|v| one(Val::S64(v))).to_vec()).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn floats_cross_with_nan_infinities_and_signed_zero() {
            let f32s = [0.0, -0.0, 1.5, f32::MIN_POSITIVE, f32::MAX, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
            round_trip(MODE, "echo-f32", f32s.map(|v| one(Val::Float32(v))).to_vec()).await;
            let f64s = [0.0, -0.0, -2.25, f64::MIN_POSITIVE, f64::MAX, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
            round_trip(MODE, "echo-f64", f64s.map(|v| one(Val::Float64(v))).to_vec()).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn chars_and_strings_cross_including_non_ascii() {
            round_trip(MODE, "echo-char", ['a', '\0', 'é', '€', '𝄞', char::MAX].map(|v| one(Val::Char(v))).to_vec())
                .await;
            let strings =
                ["", "plain", "naïve café", "日本語のテキスト", "emoji 🦀🧵", "nul\0inside", &"long ".repeat(10_000)];
            round_trip(MODE, "echo-string", strings.iter().map(|s| one(Val::String(s.to_string()))).collect()).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn lists_cross_empty_and_one_mebibyte() {
            let bytes = |v: Vec<u8>| one(Val::List(v.into_iter().map(Val::U8).collect()));
            let mebibyte: Vec<u8> = (0..1 << 20).map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
            round_trip(MODE, "echo-bytes", vec![bytes(vec![]), bytes(vec![0, 255]), bytes(mebibyte)]).await;
            let strings = |v: &[&str]| one(Val::List(v.iter().map(|s| Val::String(s.to_string())).collect()));
            round_trip(MODE, "echo-strings", vec![strings(&[]), strings(&["", "a", "ünï"])]).await;
        }

        fn point(x: f64, y: f64, label: &str) -> Val {
            Val::Record(vec![
                ("x".into(), Val::Float64(x)),
                ("y".into(), Val::Float64(y)),
                ("label".into(), Val::String(label.into())),
            ])
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn records_cross() {
            round_trip(MODE, "echo-point", vec![one(point(1.5, -0.0, "")), one(point(f64::NAN, f64::INFINITY, "ñ"))])
                .await;
            let everything = |nested: Option<Val>| {
                Val::Record(vec![
                    ("flag".into(), Val::Bool(true)),
                    ("small".into(), Val::U8(200)),
                    ("big".into(), Val::S64(i64::MIN)),
                    ("ratio".into(), Val::Float32(-1.25)),
                    ("letter".into(), Val::Char('ß')),
                    ("name".into(), Val::String("everything".into())),
                    ("bytes".into(), Val::List(vec![Val::U8(1), Val::U8(2)])),
                    ("nested".into(), Val::Option(nested.map(Box::new))),
                    ("pair".into(), Val::Tuple(vec![Val::U16(7), Val::String("seven".into())])),
                ])
            };
            round_trip(
                MODE,
                "echo-everything",
                vec![one(everything(None)), one(everything(Some(point(0.5, 2.0, "in"))))],
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn tuples_cross() {
            let t = |a, b: &str, c| one(Val::Tuple(vec![Val::U8(a), Val::String(b.into()), Val::Float64(c)]));
            round_trip(MODE, "echo-tuple", vec![t(0, "", 0.0), t(255, "tuple", f64::NEG_INFINITY)]).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn every_variant_case_crosses() {
            let v = |case: &str, payload: Option<Val>| one(Val::Variant(case.into(), payload.map(Box::new)));
            let boxed = |r: Option<Result<Val, Val>>| {
                Some(Val::Option(
                    r.map(|r| Box::new(Val::Result(r.map(|v| Some(Box::new(v))).map_err(|e| Some(Box::new(e)))))),
                ))
            };
            round_trip(
                MODE,
                "echo-shape",
                vec![
                    v("empty", None),
                    v("circle", Some(Val::Float64(2.5))),
                    v("polygon", Some(Val::List(vec![]))),
                    v(
                        "polygon",
                        Some(Val::List(vec![point(0.0, 0.0, "a"), point(1.0, 0.0, "b"), point(0.0, 1.0, "c")])),
                    ),
                    v("named", Some(Val::String("héxagon".into()))),
                    v("boxed", boxed(None)),
                    v("boxed", boxed(Some(Ok(Val::U32(42))))),
                    v("boxed", boxed(Some(Err(Val::String("no".into()))))),
                ],
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn every_enum_case_crosses() {
            round_trip(
                MODE,
                "echo-colour",
                ["red", "green", "blue", "ultraviolet"].map(|c| one(Val::Enum(c.into()))).to_vec(),
            )
            .await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn options_and_results_cross() {
            let some = |v: Val| Val::Option(Some(Box::new(v)));
            round_trip(
                MODE,
                "echo-option",
                vec![one(Val::Option(None)), one(some(Val::Option(None))), one(some(some(Val::U32(u32::MAX))))],
            )
            .await;
            round_trip(
                MODE,
                "echo-result",
                vec![
                    one(Val::Result(Ok(Some(Box::new(Val::String("fine".into())))))),
                    one(Val::Result(Err(Some(Box::new(Val::U32(404)))))),
                ],
            )
            .await;
            round_trip(MODE, "echo-unit-result", vec![one(Val::Result(Ok(None))), one(Val::Result(Err(None)))]).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn every_flag_combination_crosses() {
            let names = ["read", "write", "exec", "admin", "audit"];
            let combos = (0..1u32 << names.len())
                .map(|bits| {
                    let set =
                        names.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, n)| n.to_string());
                    one(Val::Flags(set.collect()))
                })
                .collect();
            round_trip(MODE, "echo-perms", combos).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn more_than_sixteen_parameters_cross_through_memory() {
            let params = vec![
                Val::U8(1),
                Val::S16(-2),
                Val::U32(3),
                Val::S64(-4),
                Val::Float32(5.5),
                Val::Float64(-6.5),
                Val::Char('7'),
                Val::Bool(true),
                Val::String("nine".into()),
                Val::List(vec![Val::U8(10), Val::U8(11)]),
                Val::U64(u64::MAX),
                Val::S8(i8::MIN),
                Val::U16(13),
                Val::S32(-14),
                Val::Float64(f64::NAN),
                Val::String("sixteen".into()),
                Val::U32(17),
            ];
            round_trip(MODE, "echo-many", vec![params]).await;
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn a_three_component_chain_returns_the_last_answer() {
            assert_eq!(chain_output(MODE).await, ["Ahoy, chain! [via-b]"]);
        }
    };
}

/// Resources, WASI streams, each side's own environment, volumes and limits:
/// what in-process links carry (remote links refuse resources and streams at
/// validation, and their faults are `remote_links`' tests in `weft-lattice`).
macro_rules! in_process_tests {
    () => {
        #[tokio::test(flavor = "multi_thread")]
        async fn provider_resources_are_created_borrowed_handed_back_and_destroyed_once() {
            let t = suite_host(MODE).await;
            let w = pair(&t, MODE).await;
            let mut caller = w.instantiate("caller").await.unwrap();
            assert_eq!(caller.store().data().linked_resources(), 0);
            let out = caller.call("weft:types/scenarios@0.1.0#counters", &[Val::U32(1000)]).await.unwrap();
            // Counter i held i + 1: the sum over 0..1000.
            assert_eq!(out[0], Val::Tuple(vec![Val::S64(500_500), Val::U32(1000)]));
            assert_eq!(caller.store().data().linked_resources(), 0, "the proxy table is back to empty");
            let merged = caller.call("weft:types/scenarios@0.1.0#merge", &[Val::S64(40), Val::S64(2)]).await.unwrap();
            assert_eq!(merged, [Val::S64(42)]);
            assert_eq!(caller.store().data().linked_resources(), 0);
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn wasi_streams_and_pollables_cross_the_link() {
            let t = suite_host(MODE).await;
            let w = pair(&t, MODE).await;
            let mut caller = w.instantiate("caller").await.unwrap();
            // The caller's stdout, written by the provider.
            caller
                .call("weft:types/scenarios@0.1.0#write-through", &[Val::String("through the link\n".into())])
                .await
                .unwrap();
            assert_eq!(t.stdout("caller"), ["through the link"]);
            assert!(t.stdout("provider").is_empty());
            // A stream of the provider's file, read by the caller.
            let read = caller
                .call("weft:types/scenarios@0.1.0#read-through", &[Val::String("/data/note.txt".into())])
                .await
                .unwrap();
            assert_eq!(
                read,
                [Val::Result(Ok(Some(Box::new(Val::String("written by the host for the provider".into())))))]
            );
            // A pollable of the caller's, waited on by the provider.
            caller.call("weft:types/scenarios@0.1.0#wait-through", &[]).await.unwrap();
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn each_side_sees_only_its_own_environment_and_volumes() {
            let t = suite_host(MODE).await;
            let w = pair(&t, MODE).await;
            let env =
                w.invoke("caller", "weft:types/scenarios@0.1.0#env-both", &[Val::String("WHO".into())]).await.unwrap();
            let some = |s: &str| Val::Option(Some(Box::new(Val::String(s.into()))));
            assert_eq!(env, [Val::Tuple(vec![some("provider"), some("caller")])]);
            let seen = w
                .invoke("caller", "weft:types/scenarios@0.1.0#exists-both", &[Val::String("/data/note.txt".into())])
                .await
                .unwrap();
            assert_eq!(seen, [Val::Tuple(vec![Val::Bool(true), Val::Bool(false)])]);
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn a_provider_trap_fails_the_call_and_names_the_provider() {
            let t = suite_host(MODE).await;
            let w = pair(&t, MODE).await;
            let err = w
                .invoke("caller", "weft:types/scenarios@0.1.0#crash-through", &[Val::String("on purpose".into())])
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, InvokeError::Trap { .. }), "{text}");
            assert!(text.contains("in component `provider`, calling `weft:types/faults@0.1.0#crash`"), "{text}");
            assert!(text.contains("unreachable"), "{text}");
            // Neither side is poisoned: the next invocation works.
            let back = w.invoke("caller", "weft:types/values@0.1.0#echo-u32", &[Val::U32(7)]).await.unwrap();
            assert_eq!(back, [Val::U32(7)]);
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn a_provider_stuck_in_a_loop_is_stopped_by_its_own_cpu_limit() {
            let t = suite_host(MODE).await;
            let w = pair(&t, MODE).await;
            let started = std::time::Instant::now();
            let err = w.invoke("caller", "weft:types/scenarios@0.1.0#spin-through", &[]).await.unwrap_err();
            // Behind a dynamic link the provider's own 200 ms stop it (not the
            // caller's 5 s); in a composite, the call tree's limit: the caller's 300 ms.
            let (who, limit) = if link_mode(MODE) == "dynamic" { ("provider", 200) } else { ("caller", 300) };
            match &err {
                InvokeError::Timeout { component, limit: l } => {
                    assert_eq!(&**component, who);
                    assert_eq!(*l, Duration::from_millis(limit));
                }
                other => panic!("expected a timeout, got {other}"),
            }
            assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
            let back = w
                .invoke("caller", "weft:types/values@0.1.0#echo-string", &[Val::String("still here".into())])
                .await
                .unwrap();
            assert_eq!(back, [Val::String("still here".into())]);
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn a_provider_reads_its_own_config_and_bucket_through_plugins() {
            let t = plugin_host().await;
            let w = t
                .start_ok(&format!(
                    r#"
        name: own
        components:
          - {{ name: caller, source: {OWN_STATE_CALLER}, config: {{ who: caller }} }}
          - {{ name: provider, source: {OWN_STATE_PROVIDER}, config: {{ who: provider }} }}
        {}links:
          - {{ from: caller, import: "weft:fixtures/own-state@0.1.0", to: provider, mode: {m} }}
        hostInterfaces:
          - {{ interface: "wasi:keyvalue/store@0.2.0-draft", component: provider, config: {{ sharedBuckets: [state] }} }}
        "#,
                    engine_extra(MODE).replace('\n', "\n        "),
                    m = link_mode(MODE),
                ))
                .await;
            let link = &w.plan().imports_of("caller").iter().find(|l| l.import.contains("own-state")).unwrap().provider;
            let expected = if link_mode(MODE) == "dynamic" { ", dynamic" } else { ", fused" };
            assert!(link.to_string().contains(expected), "{MODE}: {link}");
            w.run("caller").await.unwrap();
            // Each side counts in its own bucket (the provider's `state` is the
            // namespace's shared one, the caller's the workload's) and reads its own config.
            assert_eq!(
                t.stdout("caller"),
                [
                    "caller: who=caller count=1",
                    "provider: who=provider count=1",
                    "caller: who=caller count=2",
                    "provider: who=provider count=2",
                ]
            );
        }

        #[tokio::test(flavor = "multi_thread")]
        async fn two_callers_share_one_provider() {
            let t = host().await;
            let w = t
                .start_ok(&format!(
                    r#"
        name: shared
        components:
          - {{ name: one, source: {GREETER_CLIENT}, args: [one] }}
          - {{ name: two, source: {GREETER_CLIENT}, args: [two] }}
          - {{ name: greeter, source: {GREETER} }}
        {}links:
          - {{ from: one, import: "weft:fixtures/greeter@0.1.0", to: greeter, mode: {m} }}
          - {{ from: two, import: "weft:fixtures/greeter@0.1.0", to: greeter, mode: {m} }}
        "#,
                    engine_extra(MODE).replace('\n', "\n        "),
                    m = link_mode(MODE),
                ))
                .await;
            let (a, b) = tokio::join!(w.run("one"), w.run("two"));
            a.unwrap();
            b.unwrap();
            assert_eq!(t.stdout("one"), ["Hello, one!"]);
            assert_eq!(t.stdout("two"), ["Hello, two!"]);
        }
    };
}

/// The suite, for one link mode: the tests of each group named.
macro_rules! link_suite {
    ($mode:ident: $($tests:ident),*) => {
        mod $mode {
            use super::*;

            const MODE: &str = stringify!($mode);

            $($tests!();)*
        }
    };
}

link_suite!(dynamic: crossing_tests, in_process_tests);
link_suite!(fused: crossing_tests, in_process_tests);
link_suite!(auto: crossing_tests, in_process_tests);
link_suite!(remote: crossing_tests);
link_suite!(dynamic_on_async_engine: crossing_tests, in_process_tests);
link_suite!(auto_on_async_engine: crossing_tests, in_process_tests);

#[tokio::test(flavor = "multi_thread")]
async fn a_semver_compatible_provider_with_another_signature_is_rejected() {
    let t = host().await;
    let rejection = t
        .rejection(&format!(
            "name: mismatch\ncomponents:\n  - {{ name: client, source: {GREETER_CLIENT} }}\n  - {{ name: next, source: {GREETER_NEXT} }}\n"
        ))
        .await;
    let text = rejection.to_string();
    assert_eq!(rejection.problems.len(), 1, "{text}");
    assert!(
        text.contains(
            "component `client`: imports `weft:fixtures/greeter@0.1.0`, but component `next` exports it \
             (as `weft:fixtures/greeter@0.1.1`) with a different type: function `greet`: expected 1 parameters, found 2"
        ),
        "{text}"
    );
}
