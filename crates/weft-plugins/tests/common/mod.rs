//! A host with the built-in plugins, and an HTTP client for its server.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use weft_plugins::{Settings, http::HttpPlugin};
use weft_runtime::output::{CapturedOutput, Stream};
use weft_runtime::plugin::HostPlugin;
use weft_runtime::telemetry::TelemetrySettings;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{Host, HostApi, HostConfig, HostError, RunningWorkload, WorkloadSpec};

pub struct TestHost {
    pub host: Host,
    pub http: Arc<HttpPlugin>,
    pub output: Arc<CapturedOutput>,
    pub dir: tempfile::TempDir,
}

/// A host whose HTTP server listens on a free port of 127.0.0.1.
pub async fn host_with(settings: Settings) -> TestHost {
    host_configured(settings, None).await
}

/// [`host_with`], exporting telemetry as `telemetry` says.
pub async fn host_configured(mut settings: Settings, telemetry: Option<TelemetrySettings>) -> TestHost {
    settings.http.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    let dir = tempfile::tempdir().unwrap();
    let output = Arc::new(CapturedOutput::default());
    let mut plugins = weft_plugins::load(&settings).await.unwrap();
    let http = Arc::new(HttpPlugin::new(&settings.http));
    plugins.retain(|p| p.id() != weft_plugins::http::ID);
    plugins.push(http.clone() as Arc<dyn HostPlugin>);
    let host = Host::new(HostConfig {
        engine: weft_runtime::engine::EngineConfig { max_instances: 200, ..Default::default() },
        scratch_dir: Some(dir.path().join("scratch")),
        stdio: GuestStdio::Sink(output.clone()),
        plugins,
        telemetry,
        ..HostConfig::default()
    })
    .await
    .unwrap();
    TestHost { host, http, output, dir }
}

pub async fn host() -> TestHost {
    host_with(Settings::default()).await
}

impl TestHost {
    pub async fn start(&self, yaml: &str) -> Result<Arc<RunningWorkload>, HostError> {
        let mut spec = WorkloadSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        spec.base_dir = Some(self.dir.path().to_path_buf());
        let status = self.host.workload_start(spec).await?;
        Ok(self.host.workload(&status.id).unwrap())
    }

    pub async fn start_ok(&self, yaml: &str) -> Arc<RunningWorkload> {
        self.start(yaml).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// `http://127.0.0.1:<port>` of the server.
    pub async fn base(&self) -> String {
        format!("http://{}", self.http.local_addrs().await[0])
    }

    pub fn stdout(&self, component: &str) -> Vec<String> {
        self.output.lines_of(component, Stream::Stdout)
    }
}

/// An HTTP/1.1 client.
pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A request with a `Host` header, and its status and body.
pub async fn request(method: &str, url: &str, host: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut builder = http::Request::builder().method(method).uri(url);
    if let Some(host) = host {
        builder = builder.header(http::header::HOST, host);
    }
    let req = builder.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
    let response = client().request(req).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A request with extra headers: status, headers and body.
pub async fn request_with(url: &str, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, String) {
    use http_body_util::BodyExt;
    let mut builder = http::Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
    let response = client().request(req).await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A GET whose response comes back as it is, its body still to be read.
pub async fn get_response(url: &str) -> http::Response<hyper::body::Incoming> {
    client().request(http::Request::get(url).body(Full::new(Bytes::new())).unwrap()).await.unwrap()
}

/// The end of a response body: its bytes, or the error it ended with instead
/// (within 10 s).
pub async fn body_end(response: http::Response<hyper::body::Incoming>) -> Result<Bytes, hyper::Error> {
    let collected = tokio::time::timeout(std::time::Duration::from_secs(10), response.into_body().collect()).await;
    collected.expect("the body ends within 10 s").map(|b| b.to_bytes())
}

/// Asserts that a GET of `url`, whose handler fails after it began its
/// response, never reaches the client as a whole answer: the body ends with
/// an error, or (when the server had not sent the head yet) the connection
/// closes with no answer at all, or (when the failure came before the server
/// had the head) the answer is the server's own 500.
pub async fn assert_never_whole(url: &str) {
    let req = http::Request::get(url).body(Full::new(Bytes::new())).unwrap();
    match client().request(req).await {
        Ok(response) if response.status() == 500 => {}
        Ok(response) => {
            assert_eq!(response.status(), 200, "{url}");
            let body = body_end(response).await;
            assert!(body.is_err(), "{url}: a clean end after {body:?}");
        }
        Err(e) => {
            let hyper = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<hyper::Error>());
            assert!(hyper.is_some_and(hyper::Error::is_incomplete_message), "{url}: {e:?}");
        }
    }
}

pub async fn get(url: &str) -> (u16, String) {
    request("GET", url, None, b"").await
}

/// Routes for a handler component, as a manifest `hostInterfaces` entry.
pub fn serve(component: &str, routes: &str) -> String {
    format!(
        "  - {{ interface: \"wasi:http/incoming-handler@0.2.0\", component: {component}, config: {{ routes: {routes} }} }}\n"
    )
}

/// Routes for a WASI 0.3 handler component, as a manifest `hostInterfaces` entry.
pub fn serve_p3(component: &str, routes: &str) -> String {
    format!(
        "  - {{ interface: \"wasi:http/handler@0.3.0\", component: {component}, config: {{ routes: {routes} }} }}\n"
    )
}

/// The resident set of this process, from /proc.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    kib * 1024
}

pub use weft_guests::*;
