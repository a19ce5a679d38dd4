//! WASI for the members of a composite, each with its own capabilities.
//!
//! Composing two components merges imports of the same name, so the caller and the
//! provider would share one environment, one set of preopened directories, one
//! stdout. A composite therefore renames the WASI imports through which a component
//! receives its capabilities (its environment and arguments, its stdio, its
//! preopened directories, its network, its outgoing HTTP policy) for every member
//! but its entry, to `weft-m<slot>:wasi-<package>/<interface>@<version>` (see
//! [`renamed`]; the renaming happens in the member's binary, see [`super::fuse`]);
//! the host links each slot to a copy of those interfaces whose every call reads
//! the WASI context of the component that holds the slot. Imports served by
//! plugins or other links are renamed the same way, and defined for the member
//! ([`crate::plugin::Whose`]).
//!
//! The other WASI interfaces stay shared: they act only on handles a member
//! already holds (a descriptor, a socket, a stream) or hold no capability at all
//! (clocks, random), and the resource types they define must be one type across
//! the composite for handles to pass between its members. (Socket address checks
//! are read from the entry's context; every component has the same policy today.)

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::cli::{WasiCli, WasiCliCtxView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemCtxView};
use wasmtime_wasi::p2::bindings::{cli, filesystem, sockets};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsCtxView};
use wasmtime_wasi_http::{WasiHttp, WasiHttpCtxView};

use crate::engine::Concurrency;
use crate::interface::ItemName;
use crate::plugin::Whose;
use crate::store::StoreState;
use crate::wasi::http::OutgoingView;
use crate::wasi::{WASI_P3_VERSION, WASI_VERSION};

/// Composite members a workload can have beyond their entries.
pub(crate) const MAX_SLOTS: usize = 32;

/// The WASI interfaces through which a component receives its capabilities.
const PER_MEMBER: &[(&str, &str)] = &[
    ("cli", "environment"),
    ("cli", "exit"),
    ("cli", "stdin"),
    ("cli", "stdout"),
    ("cli", "stderr"),
    ("filesystem", "preopens"),
    ("sockets", "instance-network"),
    ("http", "outgoing-handler"),
    // WASI 0.3's outgoing HTTP (its other capability-bearing interfaces share
    // 0.2's names above).
    ("http", "client"),
];

/// Whether a member of a composite keeps a WASI import the runtime serves to
/// itself (what anything else serves, a plugin or a link, always is).
pub(crate) fn is_per_member(import: &ItemName) -> bool {
    import.as_interface().is_some_and(|i| PER_MEMBER.contains(&(i.package.as_str(), i.interface.as_str())))
}

/// The name a member's import gets in a composite: the interface under a
/// namespace of the member's slot, version kept (`wasi:cli/stdout@0.2.6` in slot
/// 3 is `weft-m3:wasi-cli/stdout@0.2.6`), so that Wasmtime's semver matching
/// still applies; a plain name gets the slot as a prefix.
pub(crate) fn renamed(slot: usize, import: &str) -> String {
    match ItemName::parse(import) {
        ItemName::Interface(i) => {
            let version = i.version.as_ref().map(|v| format!("@{v}")).unwrap_or_default();
            format!("weft-m{slot}:{}-{}/{}{version}", i.namespace, i.package, i.interface)
        }
        ItemName::Plain(p) => format!("weft-m{slot}-{p}"),
    }
}

impl StoreState {
    /// The WASI context and resource table for a slot: the slot's component's own
    /// context, or the executing component's if the slot is not in use here.
    fn slot_wasi(&mut self, slot: usize) -> (&mut WasiCtx, &mut ResourceTable) {
        let index = self.frame_index(Whose::slot(slot));
        let (frames, table) = self.frames_and_table();
        let frame = frames[index].as_mut().expect("a slot's frame exists");
        (&mut frame.wasi, table)
    }
}

fn cli_view<const SLOT: usize>(state: &mut StoreState) -> WasiCliCtxView<'_> {
    let (ctx, table) = state.slot_wasi(SLOT);
    WasiCliCtxView { ctx: ctx.cli(), table }
}

fn filesystem_view<const SLOT: usize>(state: &mut StoreState) -> WasiFilesystemCtxView<'_> {
    let (ctx, table) = state.slot_wasi(SLOT);
    WasiFilesystemCtxView { ctx: ctx.filesystem(), table }
}

fn http_p3_view<const SLOT: usize>(state: &mut StoreState) -> WasiHttpCtxView<'_> {
    let index = state.frame_index(Whose::slot(SLOT));
    let (frames, table) = state.frames_and_table();
    let frame = frames[index].as_mut().expect("a slot's frame exists");
    WasiHttpCtxView { ctx: &mut frame.http, hooks: &mut frame.outgoing, table }
}

fn http_view<const SLOT: usize>(state: &mut StoreState) -> OutgoingView<'_> {
    let index = state.frame_index(Whose::slot(SLOT));
    let (frames, table) = state.frames_and_table();
    let frame = frames[index].as_mut().expect("a slot's frame exists");
    OutgoingView { ctx: &mut frame.http, policy: &mut frame.outgoing, table }
}

fn sockets_view<const SLOT: usize>(state: &mut StoreState) -> WasiSocketsCtxView<'_> {
    let (ctx, table) = state.slot_wasi(SLOT);
    WasiSocketsCtxView { ctx: ctx.sockets(), table }
}

/// Defines the capability-bearing WASI interfaces for `slot`, under their slot
/// names: WASI 0.2's, and 0.3's as well on the engine with concurrency.
pub(crate) fn add_to_linker(
    linker: &mut Linker<StoreState>,
    slot: usize,
    concurrency: Concurrency,
) -> wasmtime::Result<()> {
    macro_rules! dispatch {
        ($($n:literal)*) => {
            match slot {
                $($n => add_slot::<$n>(linker, concurrency),)*
                _ => wasmtime::bail!("slot {slot} is beyond the {MAX_SLOTS} composite members a workload can have"),
            }
        };
    }
    dispatch!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
}

/// Defines, under slot `$slot`'s names, the interfaces of WASI version
/// `$version` that carry a capability and that 0.2 and 0.3 share: cli's
/// environment, exit and stdio, and filesystem preopens, from the bindings
/// modules `$cli` and `$filesystem`.
macro_rules! add_shared_capabilities {
    ($linker:expr, $slot:ident, $version:expr, $cli:ident, $filesystem:ident) => {{
        let name = |package: &str, interface: &str| renamed($slot, &format!("wasi:{package}/{interface}@{}", $version));
        $cli::environment::add_to_linker_instance::<StoreState, WasiCli>(
            &mut $linker.instance(&name("cli", "environment"))?,
            cli_view::<$slot>,
        )?;
        $cli::exit::add_to_linker_instance::<StoreState, WasiCli>(
            &mut $linker.instance(&name("cli", "exit"))?,
            cli_view::<$slot>,
        )?;
        $cli::stdin::add_to_linker_instance::<StoreState, WasiCli>(
            &mut $linker.instance(&name("cli", "stdin"))?,
            cli_view::<$slot>,
        )?;
        $cli::stdout::add_to_linker_instance::<StoreState, WasiCli>(
            &mut $linker.instance(&name("cli", "stdout"))?,
            cli_view::<$slot>,
        )?;
        $cli::stderr::add_to_linker_instance::<StoreState, WasiCli>(
            &mut $linker.instance(&name("cli", "stderr"))?,
            cli_view::<$slot>,
        )?;
        $filesystem::preopens::add_to_linker_instance::<StoreState, WasiFilesystem>(
            &mut $linker.instance(&name("filesystem", "preopens"))?,
            filesystem_view::<$slot>,
        )?;
        name
    }};
}

fn add_slot<const SLOT: usize>(linker: &mut Linker<StoreState>, concurrency: Concurrency) -> wasmtime::Result<()> {
    if concurrency == Concurrency::On {
        add_slot_p3::<SLOT>(linker)?;
    }
    let name = add_shared_capabilities!(linker, SLOT, WASI_VERSION, cli, filesystem);
    sockets::instance_network::add_to_linker_instance::<StoreState, WasiSockets>(
        &mut linker.instance(&name("sockets", "instance-network"))?,
        sockets_view::<SLOT>,
    )?;
    crate::wasi::http::add_to_linker_instance(
        &mut linker.instance(&name("http", "outgoing-handler"))?,
        http_view::<SLOT>,
    )?;
    Ok(())
}

fn add_slot_p3<const SLOT: usize>(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p3::bindings::{cli as cli3, filesystem as filesystem3};
    use wasmtime_wasi_http::p3::bindings::http::client;
    let name = add_shared_capabilities!(linker, SLOT, WASI_P3_VERSION, cli3, filesystem3);
    client::add_to_linker_instance::<StoreState, WasiHttp>(
        &mut linker.instance(&name("http", "client"))?,
        http_p3_view::<SLOT>,
    )?;
    Ok(())
}
