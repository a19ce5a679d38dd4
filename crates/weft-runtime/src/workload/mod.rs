//! Workloads go through explicit stages, each a type:
//! [`WorkloadSpec`](crate::WorkloadSpec) (the parsed manifest) →
//! [`ValidatedWorkload`] (compiled, every import resolved and linked, or rejected
//! whole) → [`RunningWorkload`] (status, invoke, stop).

mod bindings;
mod build;
pub(crate) mod instance;
pub mod plan;
mod running;
mod served;
mod service;
mod validate;
mod volumes;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use self::plan::{LinkMode, LinkPlan, Provider};
pub use self::running::{Invocation, RunningWorkload};
pub use self::service::{ServiceRun, ServiceStatus};
pub use self::validate::ValidatedWorkload;
pub(crate) use self::validate::validate;
use crate::engine::Engines;
use crate::limits::Limits;
use crate::plugin::PluginRegistry;
use crate::wasi::GuestStdio;

/// What validation and the running workload need from their host.
pub(crate) struct HostContext {
    pub engines: Engines,
    pub plugins: PluginRegistry,
    pub stdio: GuestStdio,
    /// Where emptyDirs are created: `<scratch_dir>/<workload id>/<volume>`.
    pub scratch_dir: PathBuf,
    /// Where components' bytes come from (files, registries).
    pub sources: Arc<crate::source::Sources>,
    pub telemetry: crate::telemetry::Telemetry,
    /// The lattice's remote links, when the host is on one.
    pub remote: Option<Arc<dyn crate::remote::RemoteLinks>>,
}

/// Names a workload on its host: chosen by the host, or by a lattice client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkloadId(pub String);

impl WorkloadId {
    pub fn generate() -> WorkloadId {
        WorkloadId(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for WorkloadId {
    fn from(s: &str) -> Self {
        WorkloadId(s.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadState {
    Starting,
    Running,
    /// The service ran to completion.
    Completed,
    Stopping,
    Stopped,
    /// The service failed beyond its restart policy (see the status message).
    Failed,
}

impl WorkloadState {
    /// Whether the workload still holds resources (it has not been stopped).
    pub fn is_active(self) -> bool {
        !matches!(self, WorkloadState::Stopped)
    }
}

impl fmt::Display for WorkloadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).expect("serializable");
        f.write_str(s.as_str().expect("a string"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub id: WorkloadId,
    pub name: String,
    pub namespace: String,
    pub state: WorkloadState,
    /// Why the workload is in its state, when that needs saying (failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub components: Vec<ComponentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceStatus>,
    /// Whether it runs on the engine with component-model concurrency support
    /// (a component uses component-model async, as WASI 0.3 does) or without;
    /// `None` where the status came from a host that does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<crate::engine::Concurrency>,
    pub uptime_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub name: String,
    pub digest: String,
    pub service: bool,
    pub limits: Limits,
    /// Invocations running now.
    pub in_flight: u32,
}
