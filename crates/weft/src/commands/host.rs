//! How the local host is set up: command-line flags over a host configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use indexmap::IndexMap;
use serde::Deserialize;
use weft_runtime::component::{MAX_COMPONENT_SIZE, read_regular_file};
use weft_runtime::engine::{AllocatorChoice, EngineConfig};
use weft_runtime::limits::ByteSize;
use weft_runtime::manifest::MAX_MANIFEST_SIZE;
use weft_runtime::source::DigestStore;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{Host, HostConfig};

#[derive(Args)]
pub struct HostArgs {
    /// A host configuration file (YAML): name, labels, cache directory, plugin
    /// settings (see docs/host.md). Without one, every plugin uses its defaults.
    #[arg(long = "host-config", env = "WEFT_HOST_CONFIG", value_name = "FILE")]
    host_config: Option<PathBuf>,
    /// Where compiled components are cached (default: the user's cache directory).
    #[arg(long, env = "WEFT_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every time, cache nothing on disk.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
    /// Instance allocator.
    #[arg(long, value_enum, default_value = "auto")]
    allocator: Allocator,
    /// The host's name in heartbeats, instead of the host configuration's `name`.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A label in the host's heartbeats (repeatable), beside the host
    /// configuration's `labels`.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// The environment the host says it runs in (a tenant, a Kubernetes
    /// namespace), in its heartbeats; instead of the host configuration's.
    #[arg(long, value_name = "NAME")]
    environment: Option<String>,
    /// Where the HTTP server listens (repeatable), instead of the host
    /// configuration's `plugins.http.listen` (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// The largest manifest or host configuration file weft reads.
    #[arg(long, env = "WEFT_MAX_MANIFEST_SIZE", value_name = "SIZE", default_value_t = MAX_MANIFEST_SIZE)]
    pub max_manifest_size: ByteSize,
    /// The largest component file weft reads.
    #[arg(long, env = "WEFT_MAX_COMPONENT_SIZE", value_name = "SIZE", default_value_t = MAX_COMPONENT_SIZE)]
    pub max_component_size: ByteSize,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Allocator {
    Auto,
    Pooling,
    OnDemand,
}

/// The host configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostFile {
    pub name: Option<String>,
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// Reported in heartbeats (wasmCloud's scheduler keeps tenants apart by it).
    pub environment: Option<String>,
    pub cache_dir: Option<PathBuf>,
    #[serde(default)]
    pub plugins: weft_plugins::Settings,
    /// Registries: credentials, and which speak plain HTTP.
    #[serde(default)]
    pub oci: weft_runtime::source::oci::OciSettings,
    /// OpenTelemetry export (OTLP); off when absent.
    #[serde(default)]
    pub telemetry: Option<weft_runtime::telemetry::TelemetrySettings>,
}

impl HostFile {
    pub fn read(path: &Path, limit: ByteSize) -> anyhow::Result<HostFile> {
        let bytes = read_regular_file(path, limit).with_context(|| format!("read {}", path.display()))?;
        serde_yaml_ng::from_slice(&bytes).with_context(|| format!("host configuration {}", path.display()))
    }
}

impl HostArgs {
    /// Starts a host with the built-in plugins.
    pub async fn start(&self, stdio: GuestStdio) -> anyhow::Result<Host> {
        self.start_with(stdio, None, None).await
    }

    /// [`start`](Self::start), fetching `digest://` sources from `digests` and
    /// carrying remote links through `remote` (a host on a lattice).
    pub async fn start_with(
        &self,
        stdio: GuestStdio,
        digests: Option<Arc<dyn DigestStore>>,
        remote: Option<Arc<dyn weft_runtime::remote::RemoteLinks>>,
    ) -> anyhow::Result<Host> {
        let mut file = match &self.host_config {
            Some(path) => HostFile::read(path, self.max_manifest_size)?,
            None => HostFile::default(),
        };
        if !self.listen.is_empty() {
            file.plugins.http.listen = self.listen.clone();
        }
        file.labels.extend(self.labels.iter().cloned());
        let cache_dir = if self.no_cache {
            None
        } else {
            self.cache_dir.clone().or(file.cache_dir.clone()).or_else(default_cache_dir)
        };
        let plugins = weft_plugins::load(&file.plugins).await?;
        Host::new(HostConfig {
            friendly_name: self.name.clone().or(file.name),
            labels: file.labels,
            environment: self.environment.clone().or(file.environment),
            engine: EngineConfig {
                cache_dir,
                allocator: match self.allocator {
                    Allocator::Auto => AllocatorChoice::Auto,
                    Allocator::Pooling => AllocatorChoice::Pooling,
                    Allocator::OnDemand => AllocatorChoice::OnDemand,
                },
                max_component_size: self.max_component_size,
                ..EngineConfig::default()
            },
            stdio,
            plugins,
            oci: file.oci,
            pull_progress: super::oci::pull_progress(),
            digest_store: digests,
            telemetry: file.telemetry,
            remote,
            ..HostConfig::default()
        })
        .await
        .inspect(|host| weft_runtime::telemetry::logs::connect(host.telemetry()))
    }
}

pub(crate) fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

pub(crate) fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weft"))
}
