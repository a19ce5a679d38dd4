//! The host configuration's `oci` section.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OciSettings {
    /// Per registry host (`ghcr.io`, `localhost:5000`): how to reach it.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySettings>,
    /// The Docker configuration file whose `auths` are used for registries
    /// the host configuration gives no credentials for (default:
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrySettings {
    /// Plain HTTP instead of HTTPS. Only for registries on a trusted network:
    /// nothing is encrypted, credentials included.
    #[serde(default)]
    pub insecure: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A bearer token, sent as it is.
    pub token: Option<String>,
}

impl OciSettings {
    pub fn insecure(&self, registry: &str) -> bool {
        self.registries.get(registry).is_some_and(|r| r.insecure)
    }
}
