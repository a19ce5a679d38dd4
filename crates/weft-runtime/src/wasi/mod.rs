//! WASI: the only interfaces the runtime links by itself. WASI 0.2, `wasi:http`
//! included (outgoing requests behind a per-component policy, see [`http`]), for
//! every workload; WASI 0.3 (wasmtime-wasi's `p3`) as well for workloads on the
//! engine with component-model concurrency, which its async functions need.

pub mod http;

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::component::Linker;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

use crate::engine::Concurrency;
use crate::interface::{InterfaceName, ItemName};
use crate::output::{GuestOutput, Origin, OutputSink, Stream};
use crate::store::StoreState;

/// The WASI version wasmtime-wasi implements; imports of any 0.2.x match it.
pub const WASI_VERSION: &str = "0.2.12";

/// Every interface `wasmtime_wasi::p2::add_to_linker_async` and
/// `wasmtime_wasi_http::p2::add_only_http_to_linker_async` define.
pub const WASI_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:http/outgoing-handler",
    "wasi:http/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// The WASI 0.3 version wasmtime-wasi 48's `p3` implements. Its WIT is, but for
/// the version, the same as 0.3.2's (what the `wasip3` crate imports), and both
/// Wasmtime's linker and [`InterfaceName::satisfies`] match any 0.3.x to it.
pub const WASI_P3_VERSION: &str = "0.3.0";

/// Every interface `wasmtime_wasi::p3::add_to_linker` and
/// `wasmtime_wasi_http::p3::add_to_linker` define (on the engine with concurrency
/// support only), and `wasi:cli/types`, which holds types only. Outgoing requests
/// (`wasi:http/client`) are held to the component's outgoing-HTTP policy, as 0.2's.
pub const WASI_P3_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stderr",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/types",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/system-clock",
    "wasi:clocks/types",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:http/client",
    "wasi:http/types",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/types",
];

/// `wasi:cli/run` as WASI 0.2 and 0.3 export it (0.3's `run` is async); a
/// command or service exports one of them.
pub const RUN_EXPORTS: [&str; 2] = ["wasi:cli/run@0.2.0", "wasi:cli/run@0.3.0"];

/// Whether an export named `name` is a [`RUN_EXPORTS`] interface.
pub fn is_run_export(name: &str) -> bool {
    let name = ItemName::parse(name);
    RUN_EXPORTS.iter().any(|run| name.satisfies(&ItemName::parse(run)))
}

/// The interfaces the runtime provides, with their versions.
pub fn interfaces() -> impl Iterator<Item = InterfaceName> {
    let versioned = |names: &'static [&'static str], version: &'static str| {
        names
            .iter()
            .map(move |name| InterfaceName::parse(&format!("{name}@{version}")).expect("valid WASI interface name"))
    };
    versioned(WASI_INTERFACES, WASI_VERSION).chain(versioned(WASI_P3_INTERFACES, WASI_P3_VERSION))
}

/// Whether the runtime's WASI satisfies `import`.
pub fn provides(import: &ItemName) -> bool {
    let Some(wanted) = import.as_interface() else { return false };
    interfaces().any(|offered| offered.satisfies(wanted))
}

pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>, concurrency: Concurrency) -> wasmtime::Result<()> {
    use wasmtime_wasi_http::p2::bindings::{LinkOptions, http::types};
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    if concurrency == Concurrency::On {
        wasmtime_wasi::p3::add_to_linker(linker)?;
        wasmtime_wasi_http::p3::add_to_linker(linker)?;
    }
    // `add_only_http_to_linker_async`, with weft's `outgoing-handler.handle`.
    types::add_to_linker::<_, wasmtime_wasi_http::WasiHttp>(linker, &LinkOptions::default().into(), |s| {
        wasmtime_wasi_http::WasiHttpView::http(s)
    })?;
    http::add_to_linker_instance(
        &mut linker.instance(&format!("wasi:http/outgoing-handler@{WASI_VERSION}"))?,
        outgoing_view,
    )
}

/// The active component's outgoing HTTP context and policy.
fn outgoing_view(state: &mut StoreState) -> http::OutgoingView<'_> {
    let index = state.active;
    let (frames, table) = state.frames_and_table();
    let frame = frames[index].as_mut().expect("the active frame exists");
    http::OutgoingView { ctx: &mut frame.http, policy: &mut frame.outgoing, table }
}

/// Where a component's stdio goes.
#[derive(Clone)]
pub enum GuestStdio {
    /// The host process's own stdin, stdout and stderr (`weft run x.wasm`).
    Inherit,
    /// Lines to a sink, stdin empty.
    Sink(Arc<dyn OutputSink>),
}

/// A directory mounted into a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// Everything needed to build a component's `WasiCtx` for a new store.
#[derive(Clone)]
pub(crate) struct WasiTemplate {
    pub origin: Origin,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    pub stdio: GuestStdio,
    pub outgoing: http::OutgoingPolicy,
}

impl WasiTemplate {
    pub fn build(&self) -> wasmtime::Result<WasiCtx> {
        let mut b = WasiCtxBuilder::new();
        b.arg(&*self.origin.component).args(&self.args).envs(&self.env);
        match &self.stdio {
            GuestStdio::Inherit => {
                b.inherit_stdio();
            }
            GuestStdio::Sink(sink) => {
                let out = |stream| GuestOutput { origin: self.origin.clone(), stream, sink: sink.clone() };
                b.stdout(out(Stream::Stdout)).stderr(out(Stream::Stderr));
            }
        }
        for p in &self.preopens {
            let perms = if p.read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
            b.preopened_dir(&p.host, &p.guest, perms)?;
        }
        Ok(b.build())
    }
}
