//! Listening, serving connections, and turning a request into a component call.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use wasmtime::component::Resource;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use weft_runtime::InvokeError;
use weft_runtime::telemetry::model::SpanKind;
use weft_runtime::telemetry::{ActiveSpan, SpanContext};

use super::router::Lookup;
use super::{Settings, Shared, tls};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The response header naming the request id of an answer the server gives itself.
pub const REQUEST_ID: &str = "x-weft-request-id";

/// Request headers under this prefix are the host's (`weft-param-*`): a client's are removed.
const RESERVED_PREFIX: &str = "weft-";

/// How long a connection closed for idleness gets to say goodbye (an h2 GOAWAY).
const CLOSE_GRACE: Duration = Duration::from_millis(500);

pub struct Server {
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    listeners: JoinSet<()>,
    /// One per listener: every open connection holds a permit.
    slots: Vec<Arc<Semaphore>>,
    max_connections: u32,
}

/// What every connection of a server shares.
#[derive(Clone)]
struct Conn {
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    scheme: Scheme,
    header_read: Duration,
    idle: Duration,
    stopped: watch::Receiver<bool>,
}

impl Server {
    pub async fn start(settings: &Settings, shared: Arc<Shared>) -> Result<Server, String> {
        if settings.max_connections == 0 {
            return Err("`maxConnections` must be at least 1".into());
        }
        let acceptor = settings.tls.as_ref().map(tls::acceptor).transpose()?;
        let scheme = if acceptor.is_some() { Scheme::Https } else { Scheme::Http };
        let (stop, stopped) = watch::channel(false);
        let conn = Conn {
            shared,
            acceptor,
            scheme,
            header_read: settings.header_read_timeout,
            idle: settings.idle_timeout,
            stopped,
        };
        let mut listeners = JoinSet::new();
        let mut addrs = Vec::new();
        let mut slots = Vec::new();
        for addr in &settings.listen {
            let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            tracing::info!(address = %local, tls = conn.acceptor.is_some(), "HTTP server listening");
            addrs.push(local);
            let free = Arc::new(Semaphore::new(settings.max_connections as usize));
            slots.push(free.clone());
            listeners.spawn(accept_loop(listener, local, free, conn.clone()));
        }
        Ok(Server { addrs, stop, listeners, slots, max_connections: settings.max_connections })
    }

    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Stops accepting, then waits (at most `drain`) for connections to finish
    /// the requests they are serving.
    pub async fn shutdown(mut self, drain: Duration) {
        let _ = self.stop.send(true);
        while self.listeners.join_next().await.is_some() {}
        let deadline = Instant::now() + drain;
        for free in &self.slots {
            // Every permit back: every connection of the listener has ended.
            if tokio::time::timeout_at(deadline, free.acquire_many(self.max_connections)).await.is_err() {
                tracing::warn!("HTTP server stopped with requests still in flight after {drain:?}");
                return;
            }
        }
    }
}

/// Accepts connections while the listener has free slots: at the cap, new
/// connections wait in the kernel's backlog until one ends.
async fn accept_loop(listener: TcpListener, local: SocketAddr, free: Arc<Semaphore>, conn: Conn) {
    let mut stopped = conn.stopped.clone();
    let mut backoff = AcceptBackoff::default();
    loop {
        let permit = tokio::select! {
            permit = free.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stop_asked(&mut stopped) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop_asked(&mut stopped) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            // The connection went away before it was accepted: only it is lost.
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) =>
            {
                tracing::debug!(address = %local, "accept: {e}");
                continue;
            }
            // Out of file descriptors (or memory): retrying at once would spin
            // and flood the log, so wait, longer each time, and report now and then.
            Err(e) => {
                let (delay, report) = backoff.failed(Instant::now());
                if let Some(failures) = report {
                    tracing::warn!(address = %local, failures, "accept failed: {e}; retrying in {delay:?}");
                }
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = stop_asked(&mut stopped) => return,
                }
            }
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(tcp, peer, permit, conn.clone()));
    }
}

/// Resolves once the server is asked to stop (at once if it already was).
async fn stop_asked(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _ = stopped.wait_for(|s| *s).await.is_ok();
}

/// Delays between failed accepts: from 5 ms, doubling, up to 1 s; a success
/// starts over. A warning at most every 10 s, counting the failures since.
#[derive(Debug)]
struct AcceptBackoff {
    delay: Duration,
    failures: u64,
    reported: Option<Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);
    const REPORT_EVERY: Duration = Duration::from_secs(10);

    fn succeeded(&mut self) {
        self.delay = Self::FIRST;
    }

    /// How long to wait, and the failures to report now, if it is time to.
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        self.failures += 1;
        let report = match self.reported {
            Some(at) if now.duration_since(at) < Self::REPORT_EVERY => None,
            _ => {
                self.reported = Some(now);
                Some(std::mem::take(&mut self.failures))
            }
        };
        let delay = self.delay;
        self.delay = (delay * 2).min(Self::MAX);
        (delay, report)
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { delay: Self::FIRST, failures: 0, reported: None }
    }
}

/// Whether a connection is serving, and since when it has been idle.
#[derive(Debug, Clone, Copy)]
struct Activity {
    in_flight: usize,
    idle_since: Instant,
    served: bool,
}

/// Held from a request's arrival until its response body is sent (or dropped).
struct Busy(Arc<watch::Sender<Activity>>);

impl Busy {
    fn new(activity: &Arc<watch::Sender<Activity>>) -> Busy {
        activity.send_modify(|a| {
            a.in_flight += 1;
            a.served = true;
        });
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|a| {
            a.in_flight -= 1;
            if a.in_flight == 0 {
                a.idle_since = Instant::now();
            }
        });
    }
}

/// A response body that keeps its connection marked busy until it is done.
struct Tracked {
    body: Body,
    _busy: Busy,
    /// The request's span ends with its body.
    _span: ActiveSpan,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

async fn serve_connection(tcp: tokio::net::TcpStream, peer: SocketAddr, _slot: OwnedSemaphorePermit, conn: Conn) {
    let accepted = Instant::now();
    match conn.acceptor.clone() {
        Some(acceptor) => match tokio::time::timeout(conn.header_read, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => drive(tls, peer, accepted, conn).await,
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "TLS handshake not finished within {:?}", conn.header_read),
        },
        None => drive(tcp, peer, accepted, conn).await,
    }
}

/// Serves one connection until it ends, closing it when it sits with no request
/// in progress: `headerReadTimeout` after it was accepted if it never sent one
/// (silent clients, an h2 preface and nothing more), `idleTimeout` after its last
/// response otherwise.
async fn drive<I>(io: I, peer: SocketAddr, accepted: Instant, conn: Conn)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(watch::Sender::new(Activity { in_flight: 0, idle_since: accepted, served: false }));
    let (shared, scheme) = (conn.shared.clone(), conn.scheme.clone());
    let tracker = activity.clone();
    let service = service_fn(move |req| {
        let (shared, scheme, busy) = (shared.clone(), scheme.clone(), Busy::new(&tracker));
        async move {
            let mut span = request_span(&shared, &req, &scheme);
            let response = handle(&shared, scheme, req, &mut span).await;
            if span.is_recording() {
                span.set("http.response.status_code", response.status().as_u16());
                if response.status().is_server_error() {
                    span.fail(response.status().to_string());
                }
            }
            Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy, _span: span }))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that never finishes its request head holds nothing for long.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(conn.header_read);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut watched = activity.subscribe();
    let mut stopped = conn.stopped.clone();
    let mut stopping = false;
    let result = loop {
        let now = *watched.borrow_and_update();
        let limit = if now.served { conn.idle } else { conn.header_read };
        let idle_deadline = (now.in_flight == 0).then(|| now.idle_since + limit);
        tokio::select! {
            result = connection.as_mut() => break result,
            _ = watched.changed() => {}
            _ = tokio::time::sleep_until(idle_deadline.unwrap_or(accepted)), if idle_deadline.is_some() => {
                tracing::debug!(%peer, "closing a connection idle for {limit:?}");
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await;
                return;
            }
            // Finish what is in flight, take nothing new (the host bounds the wait).
            _ = stop_asked(&mut stopped), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection ended: {e}");
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

/// A request id, unique in this process and unlikely to repeat across restarts:
/// a random prefix chosen at start, then a counter.
fn request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| std::collections::hash_map::RandomState::new().build_hasher().finish() as u32);
    format!("{prefix:08x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// An error answer that tells the client only the request id; the detail is
/// logged under that id.
fn failure(status: http::StatusCode, id: &str, what: &str) -> http::Response<Body> {
    let mut response = text(status, format!("{what} (request {id})\n"));
    response.headers_mut().insert(REQUEST_ID, id.parse().expect("a request id is a valid header value"));
    response
}

/// A server span for a request, a child of the client's `traceparent`, when
/// the host traces.
fn request_span(shared: &Shared, req: &http::Request<Incoming>, scheme: &Scheme) -> ActiveSpan {
    let Some(telemetry) = shared.telemetry.get().filter(|t| t.traces()) else { return ActiveSpan::none() };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let parent = header("traceparent").and_then(|tp| SpanContext::from_headers(tp, header("tracestate")));
    let mut span = telemetry.span(req.method().as_str(), SpanKind::Server, parent.as_ref());
    span.set("http.request.method", req.method().as_str());
    span.set("url.path", req.uri().path());
    span.set("url.scheme", if matches!(scheme, Scheme::Https) { "https" } else { "http" });
    span.set("network.protocol.version", format!("{:?}", req.version()).trim_start_matches("HTTP/").to_string());
    if let Some(agent) = header("user-agent") {
        span.set("user_agent.original", agent);
    }
    span
}

/// A WASI 0.3 handler's request: `handle` is async and returns the response,
/// whose body (a `stream<u8>`, then trailers) the guest may go on writing after
/// it returns. The store's event loop runs in a task of its own until the body
/// is dropped (sent whole, or the client gone), holding the instance and its
/// concurrency slot until then; the response head is answered as soon as
/// `handle` returns. Bodies stream both ways: nothing is collected in memory.
async fn handle_p3(
    mut invocation: weft_runtime::workload::Invocation,
    req: http::Request<Incoming>,
    id: String,
    target: weft_runtime::plugin::ComponentIdentity,
) -> http::Response<Body> {
    use wasmtime_wasi_http::p3;
    let (request, request_io) = {
        let view = invocation.store().data_mut().http();
        p3::Request::from_http(view.hooks, req)
    };
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<Result<http::Response<Body>, String>>();
    let call_id = id.clone();
    let (ended, call_ended) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let outcome = invocation
            .run_concurrent(async move |accessor, instance| {
                let service = accessor.with(|mut store| p3::bindings::Service::new(&mut store, &instance))?;
                let response = match service.handle(accessor, request).await? {
                    Ok(response) => response,
                    Err(code) => {
                        let _ = head_tx.send(Err(format!("the handler answered with the error code {code:?}")));
                        return Ok(());
                    }
                };
                let response = accessor.with(|store| response.into_http(store, async { Ok(()) }))?;
                let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
                let response = response.map(|body| {
                    let body = body.map_err(|e| std::io::Error::other(format!("{e:?}")));
                    UnlessFailed::body(UntilDropped { body, _sent: sent_tx }.boxed_unsync(), call_ended)
                });
                if head_tx.send(Ok(response)).is_ok() {
                    // The guest's tasks write the body while this loop runs.
                    let _ = sent_rx.await;
                }
                // A request body the guest did not read is of no further use.
                drop(request_io);
                Ok(())
            })
            .await;
        if let Err(e) = &outcome {
            tracing::warn!(request_id = %call_id, workload = %target.workload, component = %target.component,
                "HTTP handler failed: {e}");
        }
        // Before the store goes: a body cut by a trap ends (its trailers never
        // come) only when the store is dropped.
        let _ = ended.send(outcome.is_ok());
        invocation.finish().await;
    });
    match head_rx.await {
        Ok(Ok(response)) => response,
        Ok(Err(why)) => {
            tracing::warn!(request_id = %id, "the component failed: {why}");
            failure(http::StatusCode::INTERNAL_SERVER_ERROR, &id, "the component failed")
        }
        // Logged by the task, with the id.
        Err(_) => failure(http::StatusCode::INTERNAL_SERVER_ERROR, &id, "the component failed"),
    }
}

/// A response body that tells, by being dropped, that it was sent whole or
/// abandoned.
struct UntilDropped<B> {
    body: B,
    _sent: tokio::sync::oneshot::Sender<()>,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for UntilDropped<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// One request: route it, call the component in a fresh instance, answer.
async fn handle(
    shared: &Shared,
    scheme: Scheme,
    mut req: http::Request<Incoming>,
    span: &mut ActiveSpan,
) -> http::Response<Body> {
    let host = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
        .unwrap_or_default();
    let (target, export, params) = {
        let routes = shared.routes.read().unwrap();
        match routes.lookup(&host, req.uri().path(), req.method()) {
            Lookup::Found(m) => {
                if span.is_recording() {
                    let route = m.route.path_pattern();
                    span.rename(format!("{} {route}", req.method()));
                    span.set("http.route", route);
                    span.set("weft.workload", &*m.route.target.workload);
                    span.set("weft.component", &*m.route.target.component);
                }
                (m.route.target.clone(), m.route.export.clone(), m.params)
            }
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
    // The host's headers are the host's: a client cannot forge a path parameter.
    let forged: Vec<http::HeaderName> =
        req.headers().keys().filter(|name| name.as_str().starts_with(RESERVED_PREFIX)).cloned().collect();
    for name in forged {
        req.headers_mut().remove(name);
    }
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

    let id = request_id();
    span.set("weft.request_id", id.as_str());
    let (workload_name, component) = (target.workload.clone(), target.component.clone());
    let log_failure = |status: http::StatusCode, what: &str, detail: &dyn std::fmt::Display| {
        tracing::warn!(request_id = %id, workload = %workload_name, component = %component, "{what}: {detail}");
        failure(status, &id, what)
    };
    let mut invocation = match workload.instantiate(&target.component).await {
        Ok(invocation) => invocation,
        Err(InvokeError::Busy { busy, .. }) => {
            let mut response = text(http::StatusCode::SERVICE_UNAVAILABLE, format!("{busy}\n"));
            response.headers_mut().insert(http::header::RETRY_AFTER, "1".parse().expect("valid header"));
            return response;
        }
        Err(InvokeError::Stopped) => return text(http::StatusCode::SERVICE_UNAVAILABLE, "the workload is stopping\n"),
        Err(InvokeError::NotStarted) => {
            return text(http::StatusCode::SERVICE_UNAVAILABLE, "the workload is not running yet\n");
        }
        Err(e) => return log_failure(http::StatusCode::INTERNAL_SERVER_ERROR, "the component could not start", &e),
    };
    invocation.set_trace_parent(span.context().cloned());
    if super::is_p3_handler(&export) {
        return handle_p3(invocation, req, id, target).await;
    }
    let (sender, mut receiver) = tokio::sync::oneshot::channel();
    let resources = {
        let mut http = invocation.store().data_mut().http();
        http.new_incoming_request(scheme, req).and_then(|r| Ok((r, http.new_response_outparam(sender)?)))
    };
    let (request, outparam) = match resources {
        Ok(resources) => resources,
        Err(e) => {
            // The client's doing (a request with no host, say): worth a line, not a warning.
            tracing::info!(request_id = %id, workload = %target.workload, component = %target.component,
                "bad request: {e:#}");
            return failure(http::StatusCode::BAD_REQUEST, &id, "bad request");
        }
    };
    let handler = match invocation
        .typed_func::<(Resource<HostIncomingRequest>, Resource<HostResponseOutparam>), ()>(&format!("{export}#handle"))
    {
        Ok(handler) => handler,
        Err(e) => return log_failure(http::StatusCode::INTERNAL_SERVER_ERROR, "the component failed", &e),
    };
    let call_id = id.clone();
    let (ended, call_ended) = tokio::sync::oneshot::channel();
    let mut call = Box::pin(async move {
        let outcome = invocation.call_typed(&handler, (request, outparam)).await;
        if let Err(e) = &outcome {
            tracing::warn!(request_id = %call_id, workload = %target.workload, component = %target.component,
                "HTTP handler failed: {e}");
        }
        // Told before the instance goes: its store holds the response body's
        // writer, so a body the handler did not finish ends after this is known.
        let _ = ended.send(outcome.is_ok());
        drop(invocation);
        outcome
    });
    // Most handlers set the response, write its body and finish it without
    // waiting on anything: run the call here first, and such a response goes
    // out whole, with its length, in one write. A call that waits (on a
    // backend, a timer, a slow body) goes on in a task of its own, and a
    // response it sets streams: its body may follow long after the head.
    // An epoch tick makes a running call yield (it wakes itself and pends):
    // that is not waiting, so such a call is polled here again, a few times.
    let mut polled = poll_once(call.as_mut()).await;
    for _ in 0..YIELDS_POLLED_INLINE {
        match polled {
            (Poll::Pending, true) => {
                tokio::task::yield_now().await;
                polled = poll_once(call.as_mut()).await;
            }
            _ => break,
        }
    }
    let code = match polled.0 {
        Poll::Ready(outcome) => match receiver.try_recv() {
            Ok(Ok(response)) if outcome.is_ok() => return response.map(gathered),
            Ok(Ok(response)) => return response.map(|body| UnlessFailed::body(streamed(body), call_ended)),
            Ok(Err(code)) => code,
            Err(_) => return without_response(Ok(outcome), &id, &log_failure),
        },
        Poll::Pending => {
            let call = tokio::spawn(call);
            match receiver.await {
                Ok(Ok(response)) => return response.map(|body| UnlessFailed::body(streamed(body), call_ended)),
                Ok(Err(code)) => code,
                Err(_) => return without_response(call.await, &id, &log_failure),
            }
        }
    };
    log_failure(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "the component failed",
        &format_args!("the handler answered with the error code {code:?}"),
    )
}

/// How many epoch-tick yields of a handler's call are polled in the request's
/// task before the call goes on in a task of its own.
const YIELDS_POLLED_INLINE: usize = 3;

/// Polls `future` once: what it gave, and whether it woke itself while polled
/// (asked to be polled again at once, as a yield does) rather than waiting.
async fn poll_once<F: Future + ?Sized>(mut future: Pin<&mut F>) -> (Poll<F::Output>, bool) {
    std::future::poll_fn(|cx| {
        let flag = Arc::new(SelfWake { woken: std::sync::atomic::AtomicBool::new(false), waker: cx.waker().clone() });
        let waker = std::task::Waker::from(flag.clone());
        let polled = future.as_mut().poll(&mut Context::from_waker(&waker));
        Poll::Ready((polled, flag.woken.load(Ordering::Relaxed)))
    })
    .await
}

/// A waker that notes being woken, then wakes the task's.
struct SelfWake {
    woken: std::sync::atomic::AtomicBool,
    waker: std::task::Waker,
}

impl std::task::Wake for SelfWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Relaxed);
        self.waker.wake_by_ref();
    }
}

/// The answer when a handler's call ended without setting a response.
fn without_response(
    call: Result<Result<(), InvokeError>, tokio::task::JoinError>,
    id: &str,
    log_failure: &dyn Fn(http::StatusCode, &str, &dyn std::fmt::Display) -> http::Response<Body>,
) -> http::Response<Body> {
    match call {
        // Logged by the call, with the id.
        Ok(Err(_)) => failure(http::StatusCode::INTERNAL_SERVER_ERROR, id, "the component failed"),
        Err(e) => log_failure(http::StatusCode::INTERNAL_SERVER_ERROR, "the component failed", &e),
        Ok(Ok(())) => log_failure(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "the component failed",
            &"the handler returned without a response",
        ),
    }
}

/// A response body the handler may still be writing, as hyper takes it.
fn streamed(body: HyperOutgoingBody) -> Body {
    body.map_err(|e| std::io::Error::other(format!("{e:?}"))).boxed_unsync()
}

/// The body of a handler whose call has ended. When the handler finished it
/// (the usual case), its bytes are all buffered already: one `Full` body has a
/// known length, so hyper writes head and body at once rather than a chunked
/// head and then the chunks. Otherwise (trailers, an unfinished or failed
/// body) the frames taken so far go first and the rest streams. Gathering
/// copies at most what the body's channel already holds (16 writes of at most
/// 64 KiB, see `OUTGOING_BODY_BUFFER_CHUNKS` in weft-runtime).
fn gathered(mut body: HyperOutgoingBody) -> Body {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut data: Vec<Bytes> = Vec::new();
    loop {
        match hyper::body::Body::poll_frame(Pin::new(&mut body), &mut cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(bytes) => data.push(bytes),
                Err(frame) => return Prefixed::body(data, Some(Ok(frame)), body),
            },
            Poll::Ready(None) => {
                let whole = match data.len() {
                    1 => data.pop().unwrap_or_default(),
                    _ => data.concat().into(),
                };
                return Full::new(whole).map_err(|never| match never {}).boxed_unsync();
            }
            Poll::Ready(Some(Err(e))) => return Prefixed::body(data, Some(Err(e)), body),
            Poll::Pending => return Prefixed::body(data, None, body),
        }
    }
}

/// A response body that fails, rather than ends, when it ends because its
/// handler's call failed (trapped, ran out of time) before finishing it: the
/// status has gone out, but the client must not take a cut body for a whole
/// one (HTTP/1.1 closes without the final chunk, h2 resets the stream). A body
/// the handler finished ends cleanly whatever the handler does afterwards.
struct UnlessFailed {
    body: Body,
    /// Whether the call succeeded, sent when it ends (before its store, which
    /// holds the body's writer, is dropped).
    call_ended: Option<tokio::sync::oneshot::Receiver<bool>>,
}

impl UnlessFailed {
    fn body(body: Body, call_ended: tokio::sync::oneshot::Receiver<bool>) -> Body {
        UnlessFailed { body, call_ended: Some(call_ended) }.boxed_unsync()
    }
}

impl hyper::body::Body for UnlessFailed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) => match self.call_ended.take().map(|mut ended| ended.try_recv()) {
                // Failed, or dropped half-way (the call was cancelled).
                Some(Ok(false) | Err(tokio::sync::oneshot::error::TryRecvError::Closed)) => {
                    Poll::Ready(Some(Err(std::io::Error::other("the handler failed before finishing the body"))))
                }
                // Succeeded, or still running: the handler finished the body.
                _ => Poll::Ready(None),
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Polled to its end, so that a failed call is seen.
        self.call_ended.is_none() && self.body.is_end_stream()
    }
}

/// A body whose first frames were already taken from it.
struct Prefixed {
    taken: std::collections::VecDeque<Result<Frame<Bytes>, std::io::Error>>,
    rest: Body,
}

impl Prefixed {
    /// The body: `data`, then `then`, then what `rest` still has.
    fn body(
        data: Vec<Bytes>,
        then: Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>,
        rest: HyperOutgoingBody,
    ) -> Body {
        let then = then.map(|frame| frame.map_err(|e| std::io::Error::other(format!("{e:?}"))));
        let taken = data.into_iter().map(|bytes| Ok(Frame::data(bytes))).chain(then).collect();
        Prefixed { taken, rest: streamed(rest) }.boxed_unsync()
    }
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.taken.pop_front() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.taken.is_empty() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sent = Result<Frame<Bytes>, wasmtime_wasi_http::Error>;

    /// A handler's body: these frames, then either its end or (`more`) frames
    /// still to come from the returned sender.
    fn body_of(frames: Vec<Sent>, more: bool) -> (HyperOutgoingBody, tokio::sync::mpsc::UnboundedSender<Sent>) {
        let (send, mut rest) = tokio::sync::mpsc::unbounded_channel();
        for frame in frames {
            send.send(frame).unwrap();
        }
        let stream = futures_util::stream::poll_fn(move |cx| rest.poll_recv(cx));
        let body = http_body_util::StreamBody::new(stream).boxed_unsync();
        if more { (body, send) } else { (body, tokio::sync::mpsc::unbounded_channel().0) }
    }

    /// The length hyper would send as `content-length`, if the body has one.
    fn length(body: &Body) -> Option<u64> {
        hyper::body::Body::size_hint(body).exact()
    }

    fn data(text: &str) -> Sent {
        Ok(Frame::data(Bytes::copy_from_slice(text.as_bytes())))
    }

    /// What a body yields when polled now: its frames, and whether it ended.
    fn poll_all(body: &mut Body) -> (Vec<Result<Frame<Bytes>, String>>, bool) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut frames = Vec::new();
        loop {
            match hyper::body::Body::poll_frame(Pin::new(&mut *body), &mut cx) {
                Poll::Ready(Some(frame)) => frames.push(frame.map_err(|e| e.to_string())),
                Poll::Ready(None) => return (frames, true),
                Poll::Pending => return (frames, false),
            }
        }
    }

    fn texts(frames: &[Result<Frame<Bytes>, String>]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Ok(frame) => match frame.data_ref() {
                    Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    None => format!("trailers {:?}", frame.trailers_ref().unwrap()),
                },
                Err(e) => format!("error {e}"),
            })
            .collect()
    }

    #[test]
    fn a_finished_body_is_one_buffer_of_known_length() {
        let (body, _) = body_of(vec![data("Hello "), data("from "), data("weft\n")], false);
        let mut whole = gathered(body);
        assert_eq!(length(&whole), Some(16));
        let (frames, ended) = poll_all(&mut whole);
        assert_eq!((texts(&frames), ended), (vec!["Hello from weft\n".to_string()], true));
    }

    #[test]
    fn an_empty_finished_body_has_length_zero() {
        let (body, _) = body_of(Vec::new(), false);
        let mut whole = gathered(body);
        assert_eq!(length(&whole), Some(0));
        let (frames, ended) = poll_all(&mut whole);
        assert!(frames.is_empty() && ended);
    }

    #[test]
    fn trailers_and_what_comes_after_them_keep_their_order() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", "42".parse().unwrap());
        let (body, _) = body_of(vec![data("a"), data("b"), Ok(Frame::trailers(trailers))], false);
        let mut body = gathered(body);
        assert_eq!(length(&body), None);
        let (frames, ended) = poll_all(&mut body);
        assert_eq!(texts(&frames), ["a", "b", r#"trailers {"x-sum": "42"}"#]);
        assert!(ended);
    }

    #[test]
    fn a_failed_body_still_fails_after_the_bytes_before_it() {
        let (body, _) = body_of(vec![data("partial"), Err(wasmtime_wasi_http::Error::HttpProtocolError)], false);
        let mut body = gathered(body);
        let (frames, _) = poll_all(&mut body);
        let frames = texts(&frames);
        assert_eq!(frames[0], "partial");
        assert!(frames[1].starts_with("error") && frames[1].contains("HttpProtocolError"), "{frames:?}");
    }

    /// A body whose handler's call ended `outcome` (`None`: still running,
    /// `Some(None)`: dropped without a word) when the body's writer went away.
    fn ended_after(outcome: Option<Option<bool>>) -> (Vec<String>, bool) {
        let (body, _) = body_of(vec![data("partial")], false);
        let (ended, call_ended) = tokio::sync::oneshot::channel();
        let _running = match outcome {
            Some(Some(ok)) => {
                ended.send(ok).unwrap();
                None
            }
            Some(None) => {
                drop(ended);
                None
            }
            None => Some(ended),
        };
        let mut body = UnlessFailed::body(streamed(body), call_ended);
        let (frames, ended) = poll_all(&mut body);
        (texts(&frames), ended)
    }

    #[test]
    fn a_body_cut_by_a_failed_or_cancelled_call_fails() {
        for outcome in [Some(false), None] {
            let (frames, ended) = ended_after(Some(outcome));
            assert_eq!(frames[0], "partial");
            assert!(frames[1].contains("the handler failed before finishing the body"), "{outcome:?}: {frames:?}");
            assert!(ended);
        }
    }

    #[test]
    fn a_body_ends_cleanly_when_its_call_succeeded_or_goes_on() {
        for outcome in [Some(Some(true)), None] {
            assert_eq!(ended_after(outcome), (vec!["partial".to_string()], true), "{outcome:?}");
        }
    }

    #[test]
    fn an_unfinished_body_streams_on_after_what_was_taken() {
        let (body, more) = body_of(vec![data("first\n")], true);
        let mut body = gathered(body);
        assert_eq!(length(&body), None);
        let (frames, ended) = poll_all(&mut body);
        assert_eq!((texts(&frames), ended), (vec!["first\n".to_string()], false));
        more.send(data("second\n")).unwrap();
        drop(more);
        let (frames, ended) = poll_all(&mut body);
        assert_eq!((texts(&frames), ended), (vec!["second\n".to_string()], true));
    }
}
