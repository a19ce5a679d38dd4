//! One HTTP exchange on a new connection, over TLS for `https` URLs: weft's own
//! requests (OCI registries and their token services, OTLP collectors), never
//! guests'.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::body::Incoming;
use tokio::time::timeout;

/// Connecting, the TLS handshake, and the response head each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest pause between two parts of a body.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an exchange failed before any response: worth retrying.
#[derive(Debug)]
pub struct TransportError(pub String);

/// Sends `request` (its URI absolute) on a new HTTP/1.1 connection.
pub async fn send(request: http::Request<Full<Bytes>>) -> Result<http::Response<Incoming>, TransportError> {
    exchange(request, false).await
}

/// Sends `request` on a new HTTP/2 connection: prior knowledge for `http`, ALPN
/// `h2` for `https` (gRPC).
pub async fn send_h2(request: http::Request<Full<Bytes>>) -> Result<http::Response<Incoming>, TransportError> {
    exchange(request, true).await
}

async fn exchange(
    mut request: http::Request<Full<Bytes>>,
    h2: bool,
) -> Result<http::Response<Incoming>, TransportError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| TransportError(format!("{what}: {e}"));
    let uri = request.uri().clone();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(TransportError(format!("`{uri}` is not an http or https URL"))),
    };
    let host = uri.host().ok_or_else(|| TransportError(format!("`{uri}` names no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| TransportError(format!("connecting to {host}:{port} timed out after {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| fail(&format!("cannot connect to {host}:{port}"), &e))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if https {
        let name = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| fail("bad host name", &e))?,
        };
        let config = if h2 { crate::tls::client_config_h2() } else { crate::tls::client_config() };
        let config = config.ok_or_else(|| TransportError("no TLS configuration".into()))?;
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
        Box::new(
            timeout(CONNECT_TIMEOUT, tls)
                .await
                .map_err(|_| TransportError(format!("the TLS handshake with {host} timed out")))?
                .map_err(|e| {
                    // A plain-HTTP server answers the ClientHello with HTTP.
                    let hint = if e.to_string().contains("corrupt message") {
                        " (the server speaks plain HTTP: a registry must be marked `insecure` in the host configuration, an OTLP endpoint written http://)"
                    } else {
                        ""
                    };
                    TransportError(format!("TLS with {host}: {e}{hint}"))
                })?,
        )
    } else {
        Box::new(tcp)
    };
    let io = wasmtime_wasi_http::io::TokioIo::new(io);
    let mut sender = if h2 {
        let (sender, conn) =
            hyper::client::conn::http2::handshake(Spawn, io).await.map_err(|e| fail("HTTP/2 handshake", &e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Sender::H2(sender)
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| fail("HTTP handshake", &e))?;
        // The connection ends with the response body (or when both are dropped).
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Sender::H1(sender)
    };
    request.headers_mut().entry(http::header::USER_AGENT).or_insert(http::HeaderValue::from_static(USER_AGENT));
    if !h2 {
        // HTTP/2 carries the authority in the URI; HTTP/1.1 in `Host`, with only the path on the request line.
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        request.headers_mut().insert(http::header::HOST, authority.parse().map_err(|e| fail("host header", &e))?);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = path.parse().map_err(|e| fail("request path", &e))?;
    }
    let response = match &mut sender {
        Sender::H1(s) => timeout(HEAD_TIMEOUT, s.send_request(request)).await,
        Sender::H2(s) => timeout(HEAD_TIMEOUT, s.send_request(request)).await,
    };
    response
        .map_err(|_| TransportError(format!("{host} sent no response within {HEAD_TIMEOUT:?}")))?
        .map_err(|e| fail(&format!("request to {host}"), &e))
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// Runs hyper's HTTP/2 background work on Tokio.
#[derive(Clone, Copy)]
struct Spawn;

impl<F> hyper::rt::Executor<F> for Spawn
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

const USER_AGENT: &str = concat!("weft/", env!("CARGO_PKG_VERSION"));

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

/// Reads a body of at most `limit` bytes, calling `progress` with the bytes so
/// far. A pause longer than [`IDLE_TIMEOUT`] fails it.
pub async fn read_body(mut body: Incoming, limit: u64, mut progress: impl FnMut(u64)) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    loop {
        let frame = match timeout(IDLE_TIMEOUT, body.frame()).await {
            Err(_) => return Err(format!("the transfer stalled for {IDLE_TIMEOUT:?}")),
            Ok(None) => return Ok(bytes),
            Ok(Some(frame)) => frame.map_err(|e| format!("the transfer broke off: {e}"))?,
        };
        if let Ok(data) = frame.into_data() {
            if bytes.len() as u64 + data.len() as u64 > limit {
                return Err(format!("larger than the limit of {}", crate::limits::ByteSize(limit)));
            }
            bytes.extend_from_slice(&data);
            progress(bytes.len() as u64);
        }
    }
}
