//! Interop with upstream wRPC: a peer whose bindings `wit-bindgen-wrpc` 0.11
//! generates, over `wrpc-transport-nats` 0.31, on a real nats-server. It serves
//! weft's value fixtures to a weft caller, and calls a weft host that serves them.

use std::sync::Arc;
use std::time::Duration;

use weft_lattice::Lattice;
use weft_lattice::wrpc::WrpcLinks;
use weft_runtime::wasmtime::component::Val;
use weft_runtime::{Host, HostApi, HostConfig, RunningWorkload, WorkloadSpec};
use weft_testkit::Server;
use wit_bindgen_wrpc::bytes::Bytes;
use wrpc_transport_nats::NatsContext;

mod upstream_server {
    wit_bindgen_wrpc::generate!({
        world: "weft:interop/server",
        path: "tests/wrpc",
        generate_all,
    });
}

mod upstream_client {
    wit_bindgen_wrpc::generate!({
        world: "weft:interop/client",
        path: "tests/wrpc",
        generate_all,
    });
}

use upstream_server::exports::weft::types::values as served;

/// The upstream server: every function echoes.
#[derive(Clone, Copy)]
struct Echo;

impl served::Handler<NatsContext> for Echo {
    async fn echo_bool(&self, _: NatsContext, x: bool) -> anyhow::Result<bool> {
        Ok(x)
    }
    async fn echo_u8(&self, _: NatsContext, x: u8) -> anyhow::Result<u8> {
        Ok(x)
    }
    async fn echo_s8(&self, _: NatsContext, x: i8) -> anyhow::Result<i8> {
        Ok(x)
    }
    async fn echo_u16(&self, _: NatsContext, x: u16) -> anyhow::Result<u16> {
        Ok(x)
    }
    async fn echo_s16(&self, _: NatsContext, x: i16) -> anyhow::Result<i16> {
        Ok(x)
    }
    async fn echo_u32(&self, _: NatsContext, x: u32) -> anyhow::Result<u32> {
        Ok(x)
    }
    async fn echo_s32(&self, _: NatsContext, x: i32) -> anyhow::Result<i32> {
        Ok(x)
    }
    async fn echo_u64(&self, _: NatsContext, x: u64) -> anyhow::Result<u64> {
        Ok(x)
    }
    async fn echo_s64(&self, _: NatsContext, x: i64) -> anyhow::Result<i64> {
        Ok(x)
    }
    async fn echo_f32(&self, _: NatsContext, x: f32) -> anyhow::Result<f32> {
        Ok(x)
    }
    async fn echo_f64(&self, _: NatsContext, x: f64) -> anyhow::Result<f64> {
        Ok(x)
    }
    async fn echo_char(&self, _: NatsContext, x: char) -> anyhow::Result<char> {
        Ok(x)
    }
    async fn echo_string(&self, _: NatsContext, x: String) -> anyhow::Result<String> {
        Ok(x)
    }
    async fn echo_bytes(&self, _: NatsContext, x: Bytes) -> anyhow::Result<Bytes> {
        Ok(x)
    }
    async fn echo_strings(&self, _: NatsContext, x: Vec<String>) -> anyhow::Result<Vec<String>> {
        Ok(x)
    }
    async fn echo_point(&self, _: NatsContext, x: served::Point) -> anyhow::Result<served::Point> {
        Ok(x)
    }
    async fn echo_everything(&self, _: NatsContext, x: served::Everything) -> anyhow::Result<served::Everything> {
        Ok(x)
    }
    async fn echo_tuple(&self, _: NatsContext, x: (u8, String, f64)) -> anyhow::Result<(u8, String, f64)> {
        Ok(x)
    }
    async fn echo_shape(&self, _: NatsContext, x: served::Shape) -> anyhow::Result<served::Shape> {
        Ok(x)
    }
    async fn echo_colour(&self, _: NatsContext, x: served::Colour) -> anyhow::Result<served::Colour> {
        Ok(x)
    }
    async fn echo_option(&self, _: NatsContext, x: Option<Option<u32>>) -> anyhow::Result<Option<Option<u32>>> {
        Ok(x)
    }
    async fn echo_result(&self, _: NatsContext, x: Result<String, u32>) -> anyhow::Result<Result<String, u32>> {
        Ok(x)
    }
    async fn echo_unit_result(&self, _: NatsContext, x: Result<(), ()>) -> anyhow::Result<Result<(), ()>> {
        Ok(x)
    }
    async fn echo_perms(&self, _: NatsContext, x: served::Perms) -> anyhow::Result<served::Perms> {
        Ok(x)
    }
}

async fn weft_host(nats: &Server) -> Host {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let output = Arc::new(weft_runtime::output::CapturedOutput::default());
    Host::new(HostConfig {
        stdio: weft_runtime::wasi::GuestStdio::Sink(output),
        remote: Some(WrpcLinks::new(client, Lattice::default())),
        ..HostConfig::default()
    })
    .await
    .unwrap()
}

async fn start(host: &Host, yaml: &str) -> Arc<RunningWorkload> {
    let spec = WorkloadSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let status = host.workload_start(spec).await.unwrap_or_else(|e| panic!("{e}"));
    host.workload(&status.id).unwrap()
}

/// The wRPC prefix a weft host uses for the default group of the default lattice.
async fn upstream_client(nats: &Server) -> wrpc_transport_nats::Client {
    let prefix = WrpcLinks::offline(Lattice::default()).prefix(None);
    let nats = async_nats::connect(nats.url()).await.unwrap();
    wrpc_transport_nats::Client::new(nats, prefix, None).await.unwrap()
}

fn point(x: f64, y: f64, label: &str) -> Val {
    Val::Record(vec![
        ("x".into(), Val::Float64(x)),
        ("y".into(), Val::Float64(y)),
        ("label".into(), Val::String(label.into())),
    ])
}

/// Runs `test` on a runtime whose threads have room for the generated bindings'
/// futures, which are large in debug builds.
fn on_big_stacks<F: std::future::Future<Output = ()> + Send + 'static>(test: F) {
    const STACK: usize = 32 << 20;
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .thread_stack_size(STACK)
                .enable_all()
                .build()
                .unwrap()
                .block_on(test)
        })
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}

#[test]
fn a_weft_caller_is_answered_by_an_upstream_server() {
    on_big_stacks(weft_caller_upstream_server());
}

#[test]
fn an_upstream_client_calls_an_export_a_weft_host_serves() {
    on_big_stacks(upstream_client_weft_server());
}

async fn weft_caller_upstream_server() {
    let nats = Server::nats();
    let wrpc = upstream_client(&nats).await;
    let invocations = upstream_server::serve(&wrpc, Echo).await.unwrap();
    let mut all = futures_util::stream::select_all(invocations.into_iter().map(|(_, _, s)| s));
    tokio::spawn(async move {
        while let Some(call) = futures_util::StreamExt::next(&mut all).await {
            if let Ok(call) = call {
                tokio::spawn(call);
            }
        }
    });
    let host = weft_host(&nats).await;
    let caller = start(
        &host,
        &format!(
            r#"
name: calling
components:
  - {{ name: caller, source: {caller} }}
  - {{ name: local, source: {provider} }}
links:
  - {{ from: caller, import: "weft:types/values@0.1.0", to: lattice }}
  - {{ from: caller, import: "weft:types/faults@0.1.0", to: local }}
  - {{ from: caller, import: "weft:types/counters@0.1.0", to: local }}
  - {{ from: caller, import: "weft:types/pipes@0.1.0", to: local }}
"#,
            caller = weft_guests::TYPES_CALLER,
            provider = weft_guests::TYPES_PROVIDER
        ),
    )
    .await;
    let mut invocation = caller.instantiate("caller").await.unwrap();
    let everything = Val::Record(vec![
        ("flag".into(), Val::Bool(true)),
        ("small".into(), Val::U8(200)),
        ("big".into(), Val::S64(i64::MIN)),
        ("ratio".into(), Val::Float32(-1.25)),
        ("letter".into(), Val::Char('ß')),
        ("name".into(), Val::String("everything".into())),
        ("bytes".into(), Val::List(vec![Val::U8(1), Val::U8(2)])),
        ("nested".into(), Val::Option(Some(Box::new(point(0.5, 2.0, "in"))))),
        ("pair".into(), Val::Tuple(vec![Val::U16(7), Val::String("seven".into())])),
    ]);
    let cases = vec![
        ("echo-s64", Val::S64(-300)),
        ("echo-char", Val::Char('𝄞')),
        ("echo-string", Val::String("naïve 🦀".into())),
        ("echo-bytes", Val::List((0..70_000u32).map(|i| Val::U8(i as u8)).collect())),
        ("echo-strings", Val::List(vec![Val::String("a".into()), Val::String("".into())])),
        ("echo-everything", everything),
        (
            "echo-shape",
            Val::Variant("polygon".into(), Some(Box::new(Val::List(vec![point(1.0, 2.0, "p"), point(3.0, 4.0, "q")])))),
        ),
        ("echo-colour", Val::Enum("ultraviolet".into())),
        ("echo-option", Val::Option(Some(Box::new(Val::Option(None))))),
        ("echo-result", Val::Result(Err(Some(Box::new(Val::U32(9)))))),
        ("echo-unit-result", Val::Result(Err(None))),
        ("echo-perms", Val::Flags(vec!["write".into(), "audit".into()])),
        ("echo-tuple", Val::Tuple(vec![Val::U8(1), Val::String("t".into()), Val::Float64(-0.5)])),
    ];
    for (function, value) in cases {
        let path = format!("weft:types/values@0.1.0#{function}");
        let back = tokio::time::timeout(Duration::from_secs(10), invocation.call(&path, std::slice::from_ref(&value)))
            .await
            .unwrap_or_else(|_| panic!("{function}: no answer"))
            .unwrap_or_else(|e| panic!("{function}: {e}"));
        assert_eq!(back, [value], "{function}");
    }
}

async fn upstream_client_weft_server() {
    use upstream_client::weft::types::values as remote;
    let nats = Server::nats();
    let host = weft_host(&nats).await;
    start(
        &host,
        &format!(
            "name: served\ncomponents:\n  - {{ name: provider, source: {}, serve: [\"weft:types/values@0.1.0\"] }}\n",
            weft_guests::TYPES_PROVIDER
        ),
    )
    .await;
    let wrpc = upstream_client(&nats).await;
    assert_eq!(remote::echo_u64(&wrpc, None, u64::MAX).await.unwrap(), u64::MAX);
    assert_eq!(remote::echo_string(&wrpc, None, "über 🧵").await.unwrap(), "über 🧵");
    let bytes = Bytes::from((0..100_000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>());
    assert_eq!(remote::echo_bytes(&wrpc, None, &bytes).await.unwrap(), bytes);
    let point = remote::Point { x: 1.5, y: -2.0, label: "p".into() };
    let back = remote::echo_point(&wrpc, None, &point).await.unwrap();
    assert_eq!((back.x, back.y, back.label.as_str()), (1.5, -2.0, "p"));
    let shape = remote::Shape::Boxed(Some(Ok(42)));
    assert!(matches!(remote::echo_shape(&wrpc, None, &shape).await.unwrap(), remote::Shape::Boxed(Some(Ok(42)))));
    let perms = remote::Perms::READ | remote::Perms::AUDIT;
    assert_eq!(remote::echo_perms(&wrpc, None, &perms).await.unwrap(), perms);
    assert_eq!(remote::echo_option(&wrpc, None, Some(Some(3))).await.unwrap(), Some(Some(3)));
    assert_eq!(remote::echo_result(&wrpc, None, &Err(5)).await.unwrap(), Err(5));
    let tuple = remote::echo_tuple(&wrpc, None, (9, "nine", 9.5)).await.unwrap();
    assert_eq!(tuple, (9, "nine".to_string(), 9.5));
    assert!(matches!(remote::echo_colour(&wrpc, None, remote::Colour::Blue).await.unwrap(), remote::Colour::Blue));
}
