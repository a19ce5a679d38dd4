//! Shared set-up for the runtime's integration tests: a host whose guest output is
//! captured, and manifests that refer to the real guest components.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use weft_runtime::engine::EngineConfig;
use weft_runtime::output::{CapturedOutput, Stream};
use weft_runtime::plugin::HostPlugin;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{Host, HostApi, HostConfig, HostError, Rejection, RunningWorkload, WorkloadSpec, WorkloadStatus};

pub struct TestHost {
    pub host: Host,
    pub output: Arc<CapturedOutput>,
    pub dir: tempfile::TempDir,
}

/// A host with a small instance pool (tests run many hosts at once) and, unless
/// given one, no disk cache.
pub async fn host_with(cache_dir: Option<PathBuf>) -> TestHost {
    host_with_plugins(cache_dir, Vec::new()).await
}

/// A host like [`host_with`] that loads `plugins`.
pub async fn host_with_plugins(cache_dir: Option<PathBuf>, plugins: Vec<Arc<dyn HostPlugin>>) -> TestHost {
    host_configured(HostConfig {
        engine: EngineConfig { cache_dir, ..EngineConfig::default() },
        plugins,
        ..HostConfig::default()
    })
    .await
}

/// A host of `config`, with the test hosts' small pool, scratch directory and
/// captured output.
pub async fn host_configured(config: HostConfig) -> TestHost {
    let dir = tempfile::tempdir().unwrap();
    let output = Arc::new(CapturedOutput::default());
    let host = Host::new(HostConfig {
        engine: EngineConfig { max_instances: 32, ..config.engine },
        scratch_dir: Some(dir.path().join("scratch")),
        stdio: GuestStdio::Sink(output.clone()),
        ..config
    })
    .await
    .unwrap();
    TestHost { host, output, dir }
}

/// A host sharing one disk cache with every other test of this process, so that
/// each component is compiled once per test run.
pub async fn host() -> TestHost {
    host_with(Some(shared_cache())).await
}

pub fn shared_cache() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path().to_path_buf()
}

/// Parses a YAML manifest whose relative paths resolve against `base`.
pub fn spec(yaml: &str, base: &Path) -> WorkloadSpec {
    let mut spec = WorkloadSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    spec.base_dir = Some(base.to_path_buf());
    spec
}

impl TestHost {
    pub async fn start(&self, yaml: &str) -> Result<WorkloadStatus, HostError> {
        self.host.workload_start(spec(yaml, self.dir.path())).await
    }

    pub async fn start_ok(&self, yaml: &str) -> Arc<RunningWorkload> {
        match self.start(yaml).await {
            Ok(status) => self.host.workload(&status.id).unwrap(),
            Err(e) => panic!("workload rejected: {e}"),
        }
    }

    pub async fn rejection(&self, yaml: &str) -> Rejection {
        match self.start(yaml).await {
            Err(HostError::Rejected(r)) => r,
            Ok(s) => panic!("workload `{}` was accepted, expected a rejection", s.name),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    pub fn stdout(&self, component: &str) -> Vec<String> {
        self.output.lines_of(component, Stream::Stdout)
    }

    /// Waits (up to 10 s) until `component` has printed a line satisfying `pred`.
    pub async fn wait_for_line(&self, component: &str, pred: impl Fn(&str) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.stdout(component).iter().any(|l| pred(l)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no such line from `{component}`: {:?}",
                self.stdout(component)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Writes a file into the test directory and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// The guests, by the names manifests use.
#[allow(unused_imports)]
pub use weft_guests::*;
