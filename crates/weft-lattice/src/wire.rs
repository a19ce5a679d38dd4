//! wasmCloud v2's host API messages (`wasmcloud.runtime.v2`, the `host_heartbeat`,
//! `wit_interface`, `workload` and `workload_service` protos) in their proto3 JSON
//! form, which is what travels over NATS: lowerCamelCase names, default values
//! left out, enums by name, 64-bit integers as strings, a oneof inlined.
//!
//! Written from the protos' field lists (see docs/lattice.md). On input every
//! field may be missing, and snake_case names are accepted too; unknown fields are
//! refused, as wasmCloud's own decoders refuse them. On output nothing but the
//! protos' fields is written, so wasmCloud's operator can read every reply.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HostHeartbeat {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(alias = "friendly_name", skip_serializing_if = "String::is_empty")]
    pub friendly_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub labels: IndexMap<String, String>,
    /// RFC 3339, UTC.
    #[serde(alias = "started_at", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(alias = "os_arch", skip_serializing_if = "String::is_empty")]
    pub os_arch: String,
    #[serde(alias = "os_name", skip_serializing_if = "String::is_empty")]
    pub os_name: String,
    #[serde(alias = "os_kernel", skip_serializing_if = "String::is_empty")]
    pub os_kernel: String,
    #[serde(alias = "system_cpu_usage", skip_serializing_if = "is_zero_f32")]
    pub system_cpu_usage: f32,
    #[serde(alias = "system_memory_total", with = "u64_text", skip_serializing_if = "is_zero")]
    pub system_memory_total: u64,
    #[serde(alias = "system_memory_free", with = "u64_text", skip_serializing_if = "is_zero")]
    pub system_memory_free: u64,
    #[serde(alias = "component_count", with = "u64_text", skip_serializing_if = "is_zero")]
    pub component_count: u64,
    #[serde(alias = "workload_count", with = "u64_text", skip_serializing_if = "is_zero")]
    pub workload_count: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<WitInterface>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<WitInterface>,
    #[serde(alias = "http_port", skip_serializing_if = "is_zero_u32")]
    pub http_port: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub environment: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WitInterface {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub package: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub config: IndexMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Workload {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub annotations: IndexMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Service>,
    #[serde(alias = "wit_world", skip_serializing_if = "Option::is_none")]
    pub wit_world: Option<WitWorld>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Service {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(alias = "local_resources", skip_serializing_if = "Option::is_none")]
    pub local_resources: Option<LocalResources>,
    #[serde(alias = "max_restarts", with = "u64_text", skip_serializing_if = "is_zero")]
    pub max_restarts: u64,
    #[serde(alias = "image_pull_secret", skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<ImagePullSecret>,
    #[serde(alias = "image_pull_policy", skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WitWorld {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Component>,
    #[serde(alias = "host_interfaces", skip_serializing_if = "Vec::is_empty")]
    pub host_interfaces: Vec<WitInterface>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Component {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(alias = "local_resources", skip_serializing_if = "Option::is_none")]
    pub local_resources: Option<LocalResources>,
    #[serde(alias = "pool_size", skip_serializing_if = "is_zero_i32")]
    pub pool_size: i32,
    #[serde(alias = "max_invocations", skip_serializing_if = "is_zero_i32")]
    pub max_invocations: i32,
    #[serde(alias = "image_pull_secret", skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<ImagePullSecret>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(alias = "image_pull_policy", skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    #[serde(alias = "max_concurrency", skip_serializing_if = "is_zero_i32")]
    pub max_concurrency: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LocalResources {
    #[serde(alias = "memory_limit_mb", skip_serializing_if = "is_zero_i32")]
    pub memory_limit_mb: i32,
    #[serde(alias = "cpu_limit", skip_serializing_if = "is_zero_i32")]
    pub cpu_limit: i32,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub config: IndexMap<String, String>,
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub environment: IndexMap<String, String>,
    #[serde(alias = "volume_mounts", skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(alias = "allowed_hosts", skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    #[serde(alias = "allowed_ip_name_lookups", skip_serializing_if = "Vec::is_empty")]
    pub allowed_ip_name_lookups: Vec<String>,
    #[serde(alias = "allowed_host_loopback_ports", skip_serializing_if = "Vec::is_empty")]
    pub allowed_host_loopback_ports: Vec<String>,
}

/// A volume: `hostPath` or `emptyDir` (the proto's oneof, inlined); neither is an
/// emptyDir, as wasmCloud's host reads it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Volume {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(alias = "host_path", skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolume>,
    #[serde(alias = "empty_dir", skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolume>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HostPathVolume {
    #[serde(alias = "local_path", skip_serializing_if = "String::is_empty")]
    pub local_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyDirVolume {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VolumeMount {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(alias = "mount_path", skip_serializing_if = "String::is_empty")]
    pub mount_path: String,
    #[serde(alias = "read_only", skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ImagePullSecret {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImagePullPolicy {
    #[serde(rename = "IMAGE_PULL_POLICY_UNSPECIFIED", alias = "0")]
    Unspecified,
    #[serde(rename = "IMAGE_PULL_POLICY_ALWAYS")]
    Always,
    #[serde(rename = "IMAGE_PULL_POLICY_IF_NOT_PRESENT")]
    IfNotPresent,
    #[serde(rename = "IMAGE_PULL_POLICY_NEVER")]
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadState {
    #[serde(rename = "WORKLOAD_STATE_UNSPECIFIED")]
    Unspecified,
    #[serde(rename = "WORKLOAD_STATE_STARTING")]
    Starting,
    #[serde(rename = "WORKLOAD_STATE_RUNNING")]
    Running,
    #[serde(rename = "WORKLOAD_STATE_COMPLETED")]
    Completed,
    #[serde(rename = "WORKLOAD_STATE_STOPPING")]
    Stopping,
    #[serde(rename = "WORKLOAD_STATE_ERROR")]
    Error,
    #[serde(rename = "WORKLOAD_STATE_NOT_FOUND")]
    NotFound,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadStartRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    #[serde(alias = "workload_id", skip_serializing_if = "String::is_empty")]
    pub workload_id: String,
}

/// The request of `workload.status` and of `workload.stop`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadIdRequest {
    #[serde(alias = "workload_id", skip_serializing_if = "String::is_empty")]
    pub workload_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadStatus {
    #[serde(alias = "workload_id", default, skip_serializing_if = "String::is_empty")]
    pub workload_id: String,
    #[serde(alias = "workload_state", default = "unspecified")]
    pub workload_state: WorkloadState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

fn unspecified() -> WorkloadState {
    WorkloadState::Unspecified
}

/// The reply of `workload.start`, `.status` and `.stop`: always with a status
/// (wasmCloud's operator reads it unchecked).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadResponse {
    #[serde(alias = "workload_status")]
    pub workload_status: WorkloadStatus,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn is_zero_f32(n: &f32) -> bool {
    *n == 0.0
}

/// proto3 JSON's 64-bit integers: written as strings, read from strings or numbers.
mod u64_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Number(u64),
            Text(String),
        }
        match Text::deserialize(d)? {
            Text::Number(n) => Ok(n),
            Text::Text(t) => t.parse().map_err(|_| serde::de::Error::custom(format!("`{t}` is not a 64-bit integer"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proto3_json_forms() {
        let request: WorkloadStartRequest = serde_json::from_str(
            r#"{"workload":{"namespace":"default","name":"hello","witWorld":{"components":[{"image":"ghcr.io/x/y:1",
                "localResources":{"environment":{"A":"b"}},"name":"hello","imagePullPolicy":"IMAGE_PULL_POLICY_IF_NOT_PRESENT"}]},
                "service":{"image":"s","localResources":{},"maxRestarts":"3"},"volumes":[{"name":"d","emptyDir":{}}]},
                "workload_id":"w1"}"#,
        )
        .unwrap();
        let workload = request.workload.unwrap();
        assert_eq!(request.workload_id, "w1");
        assert_eq!(workload.service.unwrap().max_restarts, 3);
        assert_eq!(workload.volumes[0].empty_dir, Some(EmptyDirVolume {}));
        let reply = WorkloadResponse {
            workload_status: WorkloadStatus {
                workload_id: "w1".into(),
                workload_state: WorkloadState::NotFound,
                message: String::new(),
            },
        };
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"workloadStatus":{"workloadId":"w1","workloadState":"WORKLOAD_STATE_NOT_FOUND"}}"#
        );
        let beat = HostHeartbeat { id: "h".into(), workload_count: 2, ..Default::default() };
        assert_eq!(serde_json::to_string(&beat).unwrap(), r#"{"id":"h","workloadCount":"2"}"#);
        assert!(serde_json::from_str::<WorkloadIdRequest>(r#"{"workloadId":"x","extra":1}"#).is_err());
    }
}
