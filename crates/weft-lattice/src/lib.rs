//! weft hosts on NATS. [`agent::HostAgent`] serves an in-process host's
//! [`HostApi`](weft_runtime::HostApi) over NATS request/reply, in wasmCloud v2's
//! host API format ([`wire`], mapped onto weft's types by [`mapping`]), and
//! publishes its heartbeat; [`client::RemoteHost`] implements the same trait
//! against a remote host, so what works in-process works over NATS unchanged.
//! `weft-runtime` knows nothing of this crate.

pub mod agent;
pub mod client;
pub mod components;
pub mod lattice;
pub mod mapping;
pub mod registry;
pub mod time;
pub mod wire;
pub mod wrpc;

pub use agent::{AgentConfig, HostAgent};
pub use client::RemoteHost;
pub use lattice::Lattice;
