//! weft-runtime: a wrapped Wasmtime that runs *workloads* — sets of WebAssembly
//! components described in one manifest — with WASI 0.2, in-process links between
//! components, per-component limits, volumes and a supervised service.
//!
//! ```no_run
//! use weft_runtime::{Host, HostApi, HostConfig, WorkloadSpec};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let host = Host::new(HostConfig::default()).await?;
//! let spec = WorkloadSpec::from_file("app.yaml")?;
//! let status = host.workload_start(spec).await?;
//! println!("{} is {}", status.name, status.state);
//! host.workload_stop(&status.id).await?;
//! # Ok(()) }
//! ```

pub mod component;
pub mod engine;
pub mod error;
pub mod host;
pub mod interface;
pub mod limits;
mod link;
pub mod manifest;
pub mod output;
pub mod plugin;
pub mod remote;
pub mod source;
pub mod store;
pub mod telemetry;
mod tls;
mod transport;
pub mod wasi;
pub mod workload;
pub mod world;

pub use error::{InvokeError, Problem, Rejection};
pub use host::{Heartbeat, Host, HostApi, HostConfig, HostError};
pub use link::shared::SharedStats;
pub use manifest::WorkloadSpec;
pub use workload::{RunningWorkload, WorkloadId, WorkloadState, WorkloadStatus};

pub use wasmtime;
