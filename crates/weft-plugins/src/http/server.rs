//! Listening, serving connections, and turning a request into a component call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use weft_runtime::InvokeError;

use super::router::Lookup;
use super::{Settings, Shared, tls};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub struct Server {
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
    graceful: Arc<tokio::sync::Mutex<GracefulShutdown>>,
}

impl Server {
    pub async fn start(settings: &Settings, shared: Arc<Shared>) -> Result<Server, String> {
        let acceptor = settings.tls.as_ref().map(tls::acceptor).transpose()?;
        let scheme = if acceptor.is_some() { Scheme::Https } else { Scheme::Http };
        let header_read = settings.header_read_timeout;
        let (stop, stopped) = watch::channel(false);
        let graceful = Arc::new(tokio::sync::Mutex::new(GracefulShutdown::new()));
        let mut listeners = JoinSet::new();
        let mut addrs = Vec::new();
        for addr in &settings.listen {
            let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(address = %local, tls = acceptor.is_some(), "HTTP server listening");
            addrs.push(local);
            let (shared, acceptor, scheme, mut stopped, graceful) =
                (shared.clone(), acceptor.clone(), scheme.clone(), stopped.clone(), graceful.clone());
            listeners.spawn(async move {
                loop {
                    let (tcp, peer) = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(conn) => conn,
                            Err(e) => {
                                tracing::warn!("accept failed: {e}");
                                continue;
                            }
                        },
                        _ = stopped.changed() => return,
                    };
                    let _ = tcp.set_nodelay(true);
                    let (shared, acceptor, scheme, graceful) =
                        (shared.clone(), acceptor.clone(), scheme.clone(), graceful.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req| {
                            let (shared, scheme) = (shared.clone(), scheme.clone());
                            async move { Ok::<_, Infallible>(handle(&shared, scheme, req).await) }
                        });
                        let mut builder = auto::Builder::new(TokioExecutor::new());
                        // A client that never finishes its request head holds nothing for long.
                        builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read);
                        let result = match acceptor {
                            Some(acceptor) => match tokio::time::timeout(header_read, acceptor.accept(tcp)).await {
                                Ok(Ok(tls)) => {
                                    let conn = builder.serve_connection(TokioIo::new(tls), service).into_owned();
                                    let watched = graceful.lock().await.watch(conn);
                                    watched.await
                                }
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake not finished within {header_read:?}");
                                    return;
                                }
                            },
                            None => {
                                let conn = builder.serve_connection(TokioIo::new(tcp), service).into_owned();
                                let watched = graceful.lock().await.watch(conn);
                                watched.await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!(%peer, "connection ended: {e}");
                        }
                    });
                }
            });
        }
        Ok(Server { addrs, stop, listeners, graceful })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Stops accepting, then waits (at most `drain`) for connections to finish
    /// the requests they are serving.
    pub async fn shutdown(mut self, drain: Duration) {
        let _ = self.stop.send(true);
        while self.listeners.join_next().await.is_some() {}
        let graceful = std::mem::replace(&mut *self.graceful.lock().await, GracefulShutdown::new());
        if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
            tracing::warn!("HTTP server stopped with requests still in flight after {drain:?}");
        }
    }
}

fn text(status: http::StatusCode, message: impl Into<String>) -> http::Response<Body> {
    let body = Full::new(Bytes::from(message.into())).map_err(|never| match never {}).boxed_unsync();
    http::Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .expect("valid response")
}

/// One request: route it, call the component in a fresh instance, answer.
async fn handle(shared: &Shared, scheme: Scheme, mut req: http::Request<Incoming>) -> http::Response<Body> {
    let host = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
        .unwrap_or_default();
    let (target, export, params) = {
        let routes = shared.routes.read().unwrap();
        match routes.lookup(&host, req.uri().path(), req.method()) {
            Lookup::Found(m) => (m.route.target.clone(), m.route.export.clone(), m.params),
            Lookup::NotFound => return text(http::StatusCode::NOT_FOUND, "no route\n"),
            Lookup::MethodNotAllowed(allowed) => {
                let allowed: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
                let mut response = text(http::StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                response.headers_mut().insert(http::header::ALLOW, allowed.join(", ").parse().expect("valid header"));
                return response;
            }
        }
    };
    let Some(workload) = shared.workloads.read().unwrap().get(&target).cloned() else {
        return text(http::StatusCode::NOT_FOUND, "no route\n");
    };
    for (name, value) in params {
        if let (Ok(name), Ok(value)) = (format!("weft-param-{name}").parse::<http::HeaderName>(), value.parse()) {
            req.headers_mut().insert(name, value);
        }
    }
    // HTTP/2 requests carry the authority in the URI; HTTP/1.1 ones in `Host`.
    if req.uri().authority().is_none() && !host.is_empty() {
        let mut parts = req.uri().clone().into_parts();
        parts.scheme =
            Some(if matches!(scheme, Scheme::Https) { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP });
        if let Ok(authority) =
            req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or(&host).parse()
        {
            parts.authority = Some(authority);
            if let Ok(uri) = http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }

    let mut invocation = match workload.instantiate(&target.component).await {
        Ok(invocation) => invocation,
        Err(InvokeError::Busy { busy, .. }) => {
            let mut response = text(http::StatusCode::SERVICE_UNAVAILABLE, format!("{busy}\n"));
            response.headers_mut().insert(http::header::RETRY_AFTER, "1".parse().expect("valid header"));
            return response;
        }
        Err(InvokeError::Stopped) => return text(http::StatusCode::SERVICE_UNAVAILABLE, "the workload is stopping\n"),
        Err(e) => {
            tracing::error!(workload = %target.workload, component = %target.component, "{e}");
            return text(http::StatusCode::INTERNAL_SERVER_ERROR, "the component could not start\n");
        }
    };
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let resources = {
        let mut http = invocation.store().data_mut().http();
        http.new_incoming_request(scheme, req).and_then(|r| Ok((r, http.new_response_outparam(sender)?)))
    };
    let (request, outparam) = match resources {
        Ok(resources) => resources,
        Err(e) => return text(http::StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let handler = match invocation
        .typed_func::<(Resource<HostIncomingRequest>, Resource<HostResponseOutparam>), ()>(&format!("{export}#handle"))
    {
        Ok(handler) => handler,
        Err(e) => return text(http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    // The call runs on its own: after the response head is sent, it goes on
    // writing the body, holding the instance (and its concurrency slot) until done.
    let call = tokio::spawn(async move {
        let outcome = invocation.call_typed(&handler, (request, outparam)).await;
        if let Err(e) = &outcome {
            tracing::error!(workload = %target.workload, component = %target.component, "HTTP handler failed: {e}");
        }
        outcome
    });
    match receiver.await {
        Ok(Ok(response)) => {
            response.map(|body| body.map_err(|e| std::io::Error::other(format!("{e:?}"))).boxed_unsync())
        }
        Ok(Err(code)) => text(http::StatusCode::INTERNAL_SERVER_ERROR, format!("the component failed: {code:?}\n")),
        Err(_) => {
            let why = match call.await {
                Ok(Err(e)) => e.to_string(),
                _ => "the component returned no response".to_string(),
            };
            text(http::StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n"))
        }
    }
}
