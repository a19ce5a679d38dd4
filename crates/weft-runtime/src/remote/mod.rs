//! Remote links: the extension point through which a lattice carries calls of an
//! import to a component another host serves, and offers a component's exports
//! to other hosts. The runtime hands over names, types and values; the transport
//! and the encoding are the lattice's (`weft-lattice`, wRPC on NATS).
//!
//! Nothing is remote unless a manifest says so: a link `to: lattice` (or
//! `lattice:<group>`) for an import, `serve:` on a component for its exports.
//! The extension is also a [`HostPlugin`]: serving an export is a binding of the
//! component to it, made when the workload starts and undone when it stops.
//!
//! Values cross as [`Value`]s: Wasmtime's values, except that a parameter or
//! result of type `list<u8>` of a function of a common [`Shape`] is its bytes,
//! moved whole, not a `Val` per byte.

pub(crate) mod shape;

pub use shape::{Arg, Shape, Value};

use std::time::Instant;

use wasmtime::component::types::{ComponentFunc, Type};

use crate::plugin::{BoxFuture, HostPlugin};
use crate::telemetry::SpanContext;

/// The id of the plugin that serves exports to the lattice.
pub const PLUGIN_ID: &str = "lattice";

/// One call of a remotely linked function.
pub struct RemoteCall<'a> {
    /// The lattice group serving it; `None` for the default group.
    pub group: Option<&'a str>,
    /// The interface as the caller imports it (`acme:store/carts@1.0.0`).
    pub interface: &'a str,
    pub function: &'a str,
    pub params: &'a [Arg<'a>],
    pub param_types: &'a [Type],
    pub result_types: &'a [Type],
    /// When the caller's invocation runs out of time: the call must end by then.
    pub deadline: Option<Instant>,
    /// The span the caller is in, to carry on.
    pub trace: Option<&'a SpanContext>,
}

pub trait RemoteLinks: HostPlugin {
    /// Why calls of `function` cannot cross a remote link, if they cannot
    /// (validation: every parameter and result type must have an encoding).
    fn check(&self, function: &ComponentFunc) -> Result<(), String>;

    /// Carries one call to a host serving `call.interface`; its results, or why
    /// there are none (the caller traps with it).
    fn call<'a>(&'a self, call: RemoteCall<'a>) -> BoxFuture<'a, Result<Vec<Value>, String>>;

    /// Whether a host serves `interface` in `group` now. A workload linked to an
    /// interface nobody serves yet starts, with a warning: its calls fail until
    /// a host serves it.
    fn is_served<'a>(&'a self, group: Option<&'a str>, interface: &'a str) -> BoxFuture<'a, bool>;
}
