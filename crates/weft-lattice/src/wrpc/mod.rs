//! Remote links over wRPC on NATS, as `wrpc-transport-nats` 0.31 speaks it
//! (the transport is upstream's; [`codec`] turns Wasmtime values into wRPC's
//! encoding and back).
//!
//! Subjects: a function `f` of interface `i` (its full name, version included,
//! as wit-bindgen-wrpc names it) in group `g` of lattice `l` is
//! `weft.links.<l>[.<g>].wrpc.0.0.1.<i>.<f>`; the wRPC *prefix* is
//! `weft.links.<l>[.<g>]` (`weft.` subjects are the host's: no guest reaches them).
//! Serving hosts subscribe in one queue group, so hosts serving one export share
//! its calls.
//!
//! wRPC on NATS has no error channel and no deadline; weft adds both as headers
//! an upstream peer ignores: `weft-deadline-ms` (what the caller has left) and
//! `weft-error-to` (a subject of the caller's where a weft server publishes why a
//! call failed, before it ends the results empty, as upstream servers do).
//!
//! Between weft hosts most calls take a shorter path than wRPC's: one NATS
//! request and its reply ([`direct`]), with wRPC as the fallback.

pub mod codec;
mod direct;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::component::types::ComponentFunc;
use weft_runtime::plugin::{Binding, BoxFuture, ComponentIdentity, HostPlugin, PluginWorld};
use weft_runtime::remote::{Arg, PLUGIN_ID, RemoteCall, RemoteLinks, Shape, Value};
use weft_runtime::telemetry::SpanContext;
use weft_runtime::workload::{Invocation, RunningWorkload};
use wrpc_transport::{Invoke, Serve};

use crate::lattice::Lattice;

/// What a caller with no deadline of its own waits for an answer.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest parameters or results weft reads of one call.
pub const MAX_MESSAGE: u64 = 16 << 20;
/// At most how much sooner than the caller's deadline a call stops waiting.
const ANSWER_MARGIN: Duration = Duration::from_millis(100);
/// How long a serving host waits for a call's parameters to arrive whole.
pub const PARAMS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a starting workload waits to learn whether a remote link's
/// interface is served.
const SERVING_PROBE: Duration = Duration::from_millis(500);
/// The queue group of every serving host.
const QUEUE_GROUP: &str = "weft";
const DEADLINE_HEADER: &str = "weft-deadline-ms";
const ERROR_HEADER: &str = "weft-error-to";
const TRACEPARENT: &str = "traceparent";

type Wrpc = wrpc_transport_nats::Client;

/// Remote links of one host on one lattice: calls out, exports served.
pub struct WrpcLinks {
    /// `None` offline: links are planned and checked (`weft inspect`), not made.
    nats: Option<async_nats::Client>,
    lattice: Lattice,
    /// A wRPC client per prefix (group), made on first use.
    clients: tokio::sync::Mutex<HashMap<String, Wrpc>>,
    errors: Arc<ErrorInbox>,
    replies: direct::Replies,
    fallbacks: direct::Fallbacks,
    /// What serves each serving component's exports.
    served: Mutex<HashMap<ComponentIdentity, Serving>>,
}

impl WrpcLinks {
    pub fn new(nats: async_nats::Client, lattice: Lattice) -> Arc<WrpcLinks> {
        WrpcLinks::with(Some(nats), lattice)
    }

    /// Links that are checked and planned, never made: what `weft inspect` shows
    /// of a workload meant for a lattice host, on a machine that is not one.
    pub fn offline(lattice: Lattice) -> Arc<WrpcLinks> {
        WrpcLinks::with(None, lattice)
    }

    fn with(nats: Option<async_nats::Client>, lattice: Lattice) -> Arc<WrpcLinks> {
        let errors = Arc::new(ErrorInbox {
            subject: nats.as_ref().map_or_else(|| "_INBOX.offline".to_string(), |n| n.new_inbox()),
            subscriber: tokio::sync::OnceCell::new(),
            waiting: Mutex::default(),
        });
        let replies =
            direct::Replies::new(nats.as_ref().map_or_else(|| "_INBOX.offline".to_string(), |n| n.new_inbox()));
        Arc::new(WrpcLinks {
            nats,
            lattice,
            clients: tokio::sync::Mutex::default(),
            errors,
            replies,
            fallbacks: direct::Fallbacks::default(),
            served: Mutex::default(),
        })
    }

    /// The wRPC prefix of `group` in this lattice.
    pub fn prefix(&self, group: Option<&str>) -> String {
        let mut prefix = format!("weft.links.{}", self.lattice);
        if let Some(group) = group {
            prefix.push('.');
            prefix.push_str(group);
        }
        prefix
    }

    fn nats(&self) -> Result<&async_nats::Client, String> {
        self.nats.as_ref().ok_or_else(|| "this host is not on a lattice".to_string())
    }

    /// Where the hosts serving `interface` in `group` answer "who serves it?" (a
    /// weft extension: wRPC has no discovery; upstream servers do not answer).
    pub fn serving_subject(&self, group: Option<&str>, interface: &str) -> String {
        format!("{}.serving.{interface}", self.prefix(group))
    }

    async fn client(&self, group: Option<&str>) -> Result<Wrpc, String> {
        let nats = self.nats()?;
        let prefix = self.prefix(group);
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(&prefix) {
            return Ok(client.clone());
        }
        let client = Wrpc::new(nats.clone(), prefix.as_str(), Some(Arc::from(QUEUE_GROUP)))
            .await
            .map_err(|e| format!("cannot reach NATS: {e:#}"))?;
        clients.insert(prefix, client.clone());
        Ok(client)
    }

    async fn call_remote(&self, call: RemoteCall<'_>) -> Result<Vec<Value>, String> {
        let deadline = call.deadline.unwrap_or_else(|| Instant::now() + DEFAULT_CALL_TIMEOUT);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("the caller's deadline has passed".into());
        }
        // The call gives up a little before the caller's invocation would, so that
        // the caller traps with why (no answer from the serving host), not with a
        // bare timeout of its own.
        let left = left - (left / 10).min(ANSWER_MARGIN);
        let deadline = Instant::now() + left;
        let nats = self.nats()?;
        // Disconnected, NATS would hold the request until it reconnects: fail now.
        if nats.connection_state() != async_nats::connection::State::Connected {
            return Err("NATS is not connected".into());
        }
        let prefix = self.prefix(call.group);
        let subject = direct::subject(&prefix, call.interface, call.function);
        let (params, results) = if self.fallbacks.over_wrpc(&subject) {
            (encode_params(&call, Vec::new())?.0, None)
        } else {
            self.call_direct(nats, &call, subject, deadline, left).await?
        };
        let results = match results {
            Some(results) => results,
            None => self.call_wrpc(&call, params, deadline, left).await?.into(),
        };
        codec::decode_call(&results, call.result_types.iter().cloned()).map_err(|e| {
            if results.is_empty() {
                "the serving host ended the call without results (it failed, or is not weft and says no more)".into()
            } else {
                format!("unreadable results: {e}")
            }
        })
    }

    /// A call in weft's own framing ([`direct`]): its encoded parameters, and
    /// its results unless it is to go over wRPC instead (they do not fit in one
    /// message, or no weft host serves the function).
    async fn call_direct(
        &self,
        nats: &async_nats::Client,
        call: &RemoteCall<'_>,
        subject: String,
        deadline: Instant,
        left: Duration,
    ) -> Result<(bytes::Bytes, Option<bytes::Bytes>), String> {
        let mut pending = self.replies.expect(nats).await?;
        let start = direct::Request::start(left, &pending.subject).map_err(|e| e.to_string())?;
        let (request, params_at) = encode_params(call, start)?;
        let params = request.slice(params_at..);
        if request.len() > direct::message_limit(nats) {
            return Ok((params, None));
        }
        let mut request = async_nats::Request::new().payload(request).timeout(Some(left));
        if let Some(trace) = call.trace {
            let mut headers = HeaderMap::new();
            headers.insert(TRACEPARENT, trace.traceparent().as_str());
            request = request.headers(headers);
        }
        match nats.send_request(subject.clone(), request).await {
            Ok(reply) => match pending.results(reply, deadline, left).await {
                direct::Answer::Results(results) => Ok((params, Some(results))),
                direct::Answer::Failed(reason) => Err(reason),
            },
            Err(e) => match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    self.fallbacks.remember(subject);
                    Ok((params, None))
                }
                async_nats::RequestErrorKind::TimedOut => Err(format!("no answer within {left:?}")),
                _ => Err(format!("cannot send the call: {e}")),
            },
        }
    }

    /// A call over wRPC: to an upstream server, or to a weft host when the
    /// parameters do not fit in one message.
    async fn call_wrpc(
        &self,
        call: &RemoteCall<'_>,
        params: bytes::Bytes,
        deadline: Instant,
        left: Duration,
    ) -> Result<Vec<u8>, String> {
        let client = self.client(call.group).await?;
        let (error_to, failure) = self.errors.expect(self.nats()?).await?;
        let mut headers = HeaderMap::new();
        headers.insert(DEADLINE_HEADER, left.as_millis().to_string().as_str());
        headers.insert(ERROR_HEADER, error_to.as_str());
        if let Some(trace) = call.trace {
            headers.insert(TRACEPARENT, trace.traceparent().as_str());
        }
        let exchange = async {
            let no_paths: &[&[Option<usize>]] = &[];
            let (mut tx, rx) = client.invoke(Some(headers), call.interface, call.function, params, no_paths).await?;
            tx.shutdown().await?;
            let mut results = Vec::new();
            rx.take(MAX_MESSAGE + 1).read_to_end(&mut results).await?;
            anyhow::Ok(results)
        };
        let outcome = tokio::time::timeout_at(deadline.into(), exchange).await;
        let reported = self.errors.take(&error_to, failure);
        let results = match outcome {
            Err(_) => return Err(format!("no answer within {left:?}")),
            Ok(Err(e)) => return Err(transport_error(&e)),
            Ok(Ok(results)) => results,
        };
        if let Some(reason) = reported {
            return Err(reason);
        }
        if results.len() as u64 > MAX_MESSAGE {
            return Err(format!("the results are larger than {MAX_MESSAGE} bytes"));
        }
        Ok(results)
    }

    /// Serves the component's exports: the tasks doing so go into `serving`, so
    /// that they end with it, also when serving fails half-way.
    async fn serve_component(&self, binding: &Binding, serving: &mut Serving) -> Result<(), String> {
        let loops = &mut serving.loops;
        let group_of = |export: &str| binding.config_for(export).and_then(|c| c.get("group")).and_then(|g| g.as_str());
        for export in &binding.exports {
            let group = group_of(export);
            let client = self.client(group).await?;
            let nats = self.nats()?.clone();
            let answering = nats.clone();
            let mut asked = nats
                .queue_subscribe(self.serving_subject(group, export), QUEUE_GROUP.into())
                .await
                .map_err(|e| format!("cannot serve `{export}`: {e}"))?;
            loops.push(tokio::spawn(async move {
                while let Some(question) = asked.next().await {
                    if let Some(reply) = question.reply {
                        let _ = answering.publish(reply, bytes::Bytes::new()).await;
                    }
                }
            }));
            let functions = binding
                .workload
                .export_functions(&binding.identity.component, export)
                .ok_or_else(|| format!("the component has no export `{export}`"))?;
            let prefix = self.prefix(group);
            for (name, func) in functions {
                let no_paths: [Box<[Option<usize>]>; 0] = [];
                let invocations = client
                    .serve(export, &name, no_paths)
                    .await
                    .map_err(|e| format!("cannot serve `{export}#{name}`: {e:#}"))?;
                let calls = nats
                    .queue_subscribe(direct::subject(&prefix, export, &name), QUEUE_GROUP.into())
                    .await
                    .map_err(|e| format!("cannot serve `{export}#{name}`: {e}"))?;
                let served = Arc::new(Served {
                    nats: nats.clone(),
                    workload: binding.workload.clone(),
                    component: binding.identity.component.to_string(),
                    function: format!("{export}#{name}"),
                    shape: Shape::of(&func),
                    func,
                });
                tokio::spawn(answer_calls(served.clone(), calls, serving.stop.subscribe()));
                loops.push(tokio::spawn(async move {
                    let mut invocations = std::pin::pin!(invocations);
                    while let Some(accepted) = invocations.next().await {
                        match accepted {
                            Ok((cx, tx, rx)) => {
                                tokio::spawn(served.clone().answer(cx, tx, rx));
                            }
                            Err(e) => tracing::debug!("a wRPC call was not accepted: {e:#}"),
                        }
                    }
                }));
            }
        }
        // Other hosts can call the component once the server has taken these
        // subscriptions, which it has once a request sent after them on the same
        // connection has been through it (a server reads a connection in order).
        if let Some(export) = binding.exports.first() {
            self.is_served(group_of(export), export).await;
        }
        Ok(())
    }
}

/// Answers the calls of one function in weft's framing until told to stop. One
/// call at a time runs in this task itself, and calls that arrive meanwhile run
/// in tasks of their own: a hand-off to another task for every call costs a
/// thread woken on a small machine (Tokio runs a few tasks woken by one another
/// in a row on one thread, and then wakes another thread to share them). A call
/// that arrives while the one here runs Wasm is taken when that yields: at its
/// next host call, or at the latest at the next epoch tick.
async fn answer_calls(
    served: Arc<Served>,
    mut calls: async_nats::Subscriber,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut here: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> = None;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            () = async {
                if let Some(answer) = here.as_mut() {
                    answer.await;
                }
            }, if here.is_some() => here = None,
            call = calls.next() => {
                let Some(call) = call else { break };
                let answer = Box::pin(served.clone().answer_direct(call));
                if here.is_none() {
                    here = Some(answer);
                } else {
                    tokio::spawn(answer);
                }
            }
        }
    }
    // Calls in flight when the component is unbound finish (the workload drains them).
    if let Some(answer) = here {
        tokio::spawn(answer);
    }
}

/// The tasks serving one component's exports.
struct Serving {
    /// Loops that only accept (calls run in tasks of their own): aborted when
    /// the component is unbound.
    loops: Vec<tokio::task::JoinHandle<()>>,
    /// Tells the loops that also run calls ([`answer_calls`]) to stop accepting.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Serving {
    fn new() -> Serving {
        Serving { loops: Vec::new(), stop: tokio::sync::watch::Sender::new(false) }
    }

    fn end(self) {
        let _ = self.stop.send(true);
        for accept in self.loops {
            accept.abort();
        }
    }
}

/// `call`'s parameters appended to `out`, and where in it they start.
fn encode_params(call: &RemoteCall<'_>, mut out: Vec<u8>) -> Result<(bytes::Bytes, usize), String> {
    let start = out.len();
    codec::encode_call(call.params, call.param_types.iter().cloned(), &mut out).map_err(|e| e.to_string())?;
    Ok((bytes::Bytes::from(out), start))
}

fn transport_error(e: &anyhow::Error) -> String {
    let io = e.chain().find_map(|c| c.downcast_ref::<std::io::Error>()).map(|e| e.kind());
    match io {
        Some(std::io::ErrorKind::NotConnected) => "no host of the lattice serves it (no responders)".into(),
        Some(std::io::ErrorKind::TimedOut) => "the request timed out in NATS".into(),
        _ => format!("{e:#}"),
    }
}

/// One served function.
struct Served {
    nats: async_nats::Client,
    workload: Arc<RunningWorkload>,
    component: String,
    /// `interface#function`.
    function: String,
    func: ComponentFunc,
    /// Set when the function is called typed.
    shape: Option<Shape>,
}

/// A call's parameters, as read from the wire.
enum Params {
    Values(Vec<Value>),
    /// The one `list<u8>` parameter of a function of a shape that [takes
    /// bytes](weft_runtime::remote::Shape::takes_bytes), a slice of the message.
    Bytes(Shape, bytes::Bytes),
}

/// What a caller asks of a call: in headers over wRPC; in weft's framing the
/// time left is in the request itself ([`direct::Request`]).
struct Asked {
    /// What is left of the caller's deadline.
    left: Option<Duration>,
    parent: Option<SpanContext>,
}

impl Asked {
    fn read(headers: Option<&HeaderMap>) -> Asked {
        let header = |name: &str| headers?.get(name).map(|v| v.as_str().to_string());
        Asked {
            left: header(DEADLINE_HEADER).and_then(|ms| ms.parse::<u64>().ok()).map(Duration::from_millis),
            parent: header(TRACEPARENT).and_then(|tp| SpanContext::from_headers(&tp, None)),
        }
    }
}

impl Served {
    /// One call, a top-level invocation of the component: admitted, then its
    /// parameters read, then run, within what is left of the caller's deadline.
    /// The encoded results, or why there are none; and the instance, for the
    /// caller to [finish](Invocation::finish) once it has answered (giving an
    /// instance back and making the next need not delay the answer).
    async fn run(
        &self,
        asked: Asked,
        params: impl Future<Output = Result<Params, String>>,
    ) -> Result<(Vec<u8>, Invocation), String> {
        let work = async {
            // Admitted first (the component's concurrency gate and queue), so that
            // no more calls than it may run at once hold their parameters.
            let mut invocation = self.workload.instantiate(&self.component).await.map_err(|e| e.to_string())?;
            let params = params.await?;
            invocation.set_trace_parent(asked.parent);
            let results = match params {
                Params::Bytes(shape, bytes) => invocation.call_with_bytes(&self.function, shape, &bytes).await?,
                Params::Values(params) => invocation.call_values(&self.function, self.shape, params).await?,
            };
            let results: Vec<Arg> = results.iter().map(Value::as_arg).collect();
            let mut out = Vec::new();
            codec::encode_call(&results, self.func.results(), &mut out).map_err(|e| e.to_string())?;
            Ok((out, invocation))
        };
        let outcome = match asked.left {
            Some(left) => tokio::time::timeout(left, work)
                .await
                .unwrap_or_else(|_| Err(format!("the caller's deadline ({left:?}) passed"))),
            None => work.await,
        };
        outcome.map_err(|reason| {
            tracing::debug!(function = %self.function, "remote call failed: {reason}");
            format!("in component `{}` on another host: {reason}", self.component)
        })
    }

    /// A call in weft's own framing: one message, the request's start and then
    /// the parameters.
    async fn answer_direct(self: Arc<Self>, call: async_nats::Message) {
        let Some(reply) = call.reply.clone() else { return };
        let request = match direct::Request::read(&call.payload) {
            Ok(request) => request,
            Err(e) => return direct::reply_failure(&self.nats, reply, format!("an unreadable call: {e}")).await,
        };
        let payload = call.payload.slice(request.params_at..);
        let params = async {
            let unreadable = |e| format!("unreadable parameters: {e}");
            match self.shape {
                // A `list<u8>` goes into the instance straight from the message.
                Some(shape) if shape.takes_bytes() => {
                    let range = codec::decode_bytes_param(&payload).map_err(unreadable)?;
                    Ok(Params::Bytes(shape, payload.slice(range)))
                }
                _ => codec::decode_call(&payload, self.func.params().map(|(_, t)| t))
                    .map(Params::Values)
                    .map_err(unreadable),
            }
        };
        let asked = Asked { left: Some(request.left), ..Asked::read(call.headers.as_ref()) };
        match self.run(asked, params).await {
            Ok((results, invocation)) => {
                direct::reply_results(&self.nats, reply, request.parts_to, results).await;
                // Publishing only queues the answer for the connection's task, and
                // wakes it: yielding once lets it write the answer before this task
                // gives the instance back and makes the next. (A flush would too, but
                // forces a write per answer where the connection's task batches them:
                // 10–20 % fewer calls/s under 64 callers, docs/benchmarks.md.)
                tokio::task::yield_now().await;
                invocation.finish().await;
            }
            Err(reason) => direct::reply_failure(&self.nats, reply, reason).await,
        }
    }

    /// A wRPC call: its parameters stream in after the handshake.
    async fn answer(
        self: Arc<Self>,
        cx: wrpc_transport_nats::NatsContext,
        mut tx: wrpc_transport_nats::SubjectWriter,
        rx: wrpc_transport_nats::Reader,
    ) {
        let error_to = cx
            .headers
            .as_ref()
            .and_then(|h| h.get(ERROR_HEADER))
            .map(|v| v.as_str().to_string())
            .filter(|s| s.starts_with("_INBOX."));
        // A caller that never finishes sending its parameters holds nothing for long.
        let params = async {
            tokio::time::timeout(PARAMS_TIMEOUT, read_params(rx, &self.func))
                .await
                .unwrap_or_else(|_| Err(format!("the parameters did not arrive within {PARAMS_TIMEOUT:?}")))
                .map(Params::Values)
        };
        match self.run(Asked::read(cx.headers.as_ref()), params).await {
            Ok((results, invocation)) => {
                if let Err(e) = async {
                    tx.write_all(&results).await?;
                    tx.shutdown().await
                }
                .await
                {
                    tracing::debug!(function = %self.function, "results not sent: {e}");
                }
                invocation.finish().await;
            }
            Err(reason) => {
                if let Some(to) = error_to {
                    let _ = self.nats.publish(to, reason.into()).await;
                }
                // The results end empty, as upstream servers end them, after the report.
                let _ = tx.shutdown().await;
            }
        }
    }
}

/// A call's parameters, decoded as soon as they are whole: the caller's end of
/// its parameters (one more message, after the handshake) is not waited for.
async fn read_params(mut rx: wrpc_transport_nats::Reader, func: &ComponentFunc) -> Result<Vec<Value>, String> {
    let mut bytes = Vec::new();
    loop {
        match codec::decode_call(&bytes, func.params().map(|(_, t)| t)) {
            Ok(params) => return Ok(params),
            Err(e) if e.is_incomplete() && (bytes.len() as u64) < MAX_MESSAGE => {
                let mut chunk = (&mut rx).take(MAX_MESSAGE - bytes.len() as u64);
                if chunk.read_buf(&mut bytes).await.map_err(|e| format!("reading the call: {e}"))? == 0 {
                    return Err(format!("the call ended inside its parameters ({e})"));
                }
            }
            Err(e) if e.is_incomplete() => return Err(format!("the parameters are larger than {MAX_MESSAGE} bytes")),
            Err(e) => return Err(format!("unreadable parameters: {e}")),
        }
    }
}

/// Where weft servers report why calls failed: one subscription per host, a
/// subject per call. A report is published before the call's results end, on
/// the same connection, so once a caller has seen the end, the report is in the
/// subscription's queue: the caller moves what is queued to whom it is for.
struct ErrorInbox {
    subject: String,
    subscriber: tokio::sync::OnceCell<Mutex<async_nats::Subscriber>>,
    waiting: Mutex<HashMap<String, tokio::sync::oneshot::Sender<String>>>,
}

/// What a call waits on for its failure report.
type Failure = tokio::sync::oneshot::Receiver<String>;

/// The most of a failure report a caller reads.
pub(crate) const MAX_REPORT: usize = 4096;

impl ErrorInbox {
    /// A subject for one call's failure, and where it arrives.
    async fn expect(&self, nats: &async_nats::Client) -> Result<(String, Failure), String> {
        self.subscriber
            .get_or_try_init(|| async {
                let subscriber = nats.subscribe(format!("{}.>", self.subject)).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(Mutex::new(subscriber))
            })
            .await
            .map_err(|e| format!("cannot reach NATS: {e}"))?;
        let subject = format!("{}.{}", self.subject, uuid::Uuid::new_v4().simple());
        let (send, receive) = tokio::sync::oneshot::channel();
        self.waiting.lock().unwrap().insert(subject.clone(), send);
        Ok((subject, receive))
    }

    /// The failure reported for the call, if one was.
    fn take(&self, subject: &str, mut failure: Failure) -> Option<String> {
        use futures_util::FutureExt;
        if let Some(subscriber) = self.subscriber.get() {
            let mut subscriber = subscriber.lock().unwrap();
            while let Some(Some(report)) = subscriber.next().now_or_never() {
                let waiting = self.waiting.lock().unwrap().remove(report.subject.as_str());
                if let Some(waiting) = waiting {
                    let text = &report.payload[..report.payload.len().min(MAX_REPORT)];
                    let _ = waiting.send(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
        self.waiting.lock().unwrap().remove(subject);
        failure.try_recv().ok()
    }
}

impl HostPlugin for WrpcLinks {
    fn id(&self) -> &str {
        PLUGIN_ID
    }

    fn world(&self) -> PluginWorld {
        PluginWorld::default()
    }

    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut serving = Serving::new();
            if let Err(e) = self.serve_component(binding, &mut serving).await {
                serving.end();
                return Err(e);
            }
            let replaced = self.served.lock().unwrap().insert(binding.identity.clone(), serving);
            if let Some(replaced) = replaced {
                replaced.end();
            }
            Ok(())
        })
    }

    /// Stops taking calls; those in flight finish (the workload drains them).
    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let serving = self.served.lock().unwrap().remove(identity);
            if let Some(serving) = serving {
                serving.end();
            }
        })
    }

    fn add_to_linker(
        &self,
        _: &mut wasmtime::component::LinkerInstance<weft_runtime::store::StoreState>,
        import: &str,
        _: weft_runtime::plugin::Whose,
    ) -> wasmtime::Result<()> {
        wasmtime::bail!("the lattice serves imports through remote links, not as a plugin (asked for `{import}`)")
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl RemoteLinks for WrpcLinks {
    fn check(&self, function: &ComponentFunc) -> Result<(), String> {
        function.params().map(|(_, t)| t).chain(function.results()).try_for_each(|t| codec::check(&t))
    }

    fn call<'a>(&'a self, call: RemoteCall<'a>) -> BoxFuture<'a, Result<Vec<Value>, String>> {
        Box::pin(self.call_remote(call))
    }

    fn is_served<'a>(&'a self, group: Option<&'a str>, interface: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let Ok(nats) = self.nats() else { return false };
            let asked = nats.request(self.serving_subject(group, interface), bytes::Bytes::new());
            matches!(tokio::time::timeout(SERVING_PROBE, asked).await, Ok(Ok(_)))
        })
    }
}
