//! weft's own framing between weft hosts, beside wRPC: a call whose parameters
//! fit in one NATS message is one NATS request on
//! `<prefix>.call.<interface>.<function>` and its answer one reply: the
//! results, or a `weft-status: error` header and why. The request is, in wRPC's
//! value encoding, a `u64` (the caller's time left, in ms), a `string` (a
//! subject of the caller's for results in parts; see [`Request`]), then the
//! parameters. Results that do not fit in one message go first, in parts, to
//! that subject, and the reply says how many (`weft-parts`). wRPC on NATS takes
//! a handshake with the server and a subscription per call before the first
//! byte of results: this is one message each way, what a plain NATS request
//! costs.
//!
//! Serving hosts subscribe to both framings in the same queue group. A caller
//! tries this one first; NATS answering "no responders" means no weft host
//! serves the function, and the call goes over wRPC (an upstream server, perhaps),
//! as do calls whose parameters do not fit in one message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::codec::{self, CodecError};
use super::{MAX_MESSAGE, MAX_REPORT};

/// Set on a reply that says why the call failed (its payload).
const STATUS_HEADER: &str = "weft-status";
const FAILED: &str = "error";
/// How many parts the results came in.
const PARTS_HEADER: &str = "weft-parts";
/// What of a NATS message's `max_payload` is left for headers.
const HEADROOM: usize = 4096;
/// How long a caller, told that no weft host serves a function, calls it over
/// wRPC without asking again.
pub(super) const FALLBACK_FOR: Duration = Duration::from_secs(5);

pub(super) fn subject(prefix: &str, interface: &str, function: &str) -> String {
    format!("{prefix}.call.{interface}.{function}")
}

/// The most bytes of parameters or results one message carries.
pub(super) fn message_limit(nats: &async_nats::Client) -> usize {
    nats.max_payload().saturating_sub(HEADROOM)
}

/// What a call carries ahead of its parameters. In the payload rather than in
/// NATS headers: a message with headers costs both clients and nats-server
/// more, 2–4 % of a small call's round trip (docs/benchmarks.md); a
/// `traceparent`, when there is one, is still a header.
pub(super) struct Request<'a> {
    /// What is left of the caller's deadline.
    pub left: Duration,
    /// Where results in parts go: one of the caller's inboxes, or nowhere.
    pub parts_to: Option<&'a str>,
    /// Where in the payload the parameters start.
    pub params_at: usize,
}

impl<'a> Request<'a> {
    /// A request's bytes up to its parameters, which the caller appends.
    pub fn start(left: Duration, parts_to: &str) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(parts_to.len() + 16);
        codec::encode_u64_string(u64::try_from(left.as_millis()).unwrap_or(u64::MAX), parts_to, &mut out)?;
        Ok(out)
    }

    pub fn read(payload: &'a [u8]) -> Result<Request<'a>, CodecError> {
        let (ms, parts_to, params_at) = codec::decode_u64_string(payload)?;
        Ok(Request {
            left: Duration::from_millis(ms),
            // Only to an inbox: parts go nowhere else a caller might name.
            parts_to: Some(parts_to).filter(|s| s.starts_with("_INBOX.")),
            params_at,
        })
    }
}

/// How a call in this framing ended.
pub(super) enum Answer {
    Results(Bytes),
    Failed(String),
}

/// Answers the call that `reply` is for with its encoded results, in parts
/// to `parts_to` when they do not fit in one message.
pub(super) async fn reply_results(
    nats: &async_nats::Client,
    reply: async_nats::Subject,
    parts_to: Option<&str>,
    results: Vec<u8>,
) {
    let limit = message_limit(nats).max(1);
    let results = Bytes::from(results);
    let sent = if results.len() <= limit {
        nats.publish(reply, results).await
    } else if let Some(parts_to) = parts_to {
        let mut parts = 0;
        let mut sent = Ok(());
        for start in (0..results.len()).step_by(limit) {
            sent = nats.publish(parts_to.to_string(), results.slice(start..(start + limit).min(results.len()))).await;
            if sent.is_err() {
                break;
            }
            parts += 1;
        }
        if sent.is_ok() {
            let mut headers = HeaderMap::new();
            headers.insert(PARTS_HEADER, parts.to_string().as_str());
            sent = nats.publish_with_headers(reply, headers, Bytes::new()).await;
        }
        sent
    } else {
        let why = format!("the results ({} bytes) do not fit in one NATS message", results.len());
        return reply_failure(nats, reply, why).await;
    };
    if let Err(e) = sent {
        tracing::debug!("results not sent: {e}");
    }
}

/// Answers the call that `reply` is for with why it failed.
pub(super) async fn reply_failure(nats: &async_nats::Client, reply: async_nats::Subject, reason: String) {
    let mut headers = HeaderMap::new();
    headers.insert(STATUS_HEADER, FAILED);
    if let Err(e) = nats.publish_with_headers(reply, headers, reason.into()).await {
        tracing::debug!("a failure not reported: {e}");
    }
}

/// The replies to this host's calls: one subscription, a subject per call,
/// and a task that hands each reply to the call it is for.
pub(super) struct Replies {
    inbox: String,
    next: AtomicU64,
    waiting: Waiting,
    router: tokio::sync::OnceCell<tokio::task::JoinHandle<()>>,
}

type Waiting = Arc<Mutex<HashMap<u64, Arc<Parts>>>>;

/// What has arrived for one call. A queue and a [`Notify`] rather than a
/// channel: a Tokio channel allocates a block of 32 messages when made, and
/// every call makes one, though few calls ever take results in parts.
#[derive(Default)]
struct Parts {
    queue: Mutex<Queue>,
    arrived: Notify,
}

#[derive(Default)]
struct Queue {
    parts: VecDeque<Message>,
    bytes: u64,
    /// More than [`MAX_MESSAGE`] bytes arrived: the rest were dropped.
    overflowed: bool,
}

/// One call's replies, until it is dropped.
pub(super) struct Pending {
    pub subject: String,
    id: u64,
    parts: Arc<Parts>,
    waiting: Waiting,
}

impl Replies {
    pub fn new(inbox: String) -> Replies {
        Replies { inbox, next: AtomicU64::new(0), waiting: Arc::default(), router: tokio::sync::OnceCell::new() }
    }

    pub async fn expect(&self, nats: &async_nats::Client) -> Result<Pending, String> {
        self.router
            .get_or_try_init(|| async {
                let mut replies = nats.subscribe(format!("{}.*", self.inbox)).await.map_err(|e| e.to_string())?;
                let waiting = self.waiting.clone();
                Ok::<_, String>(tokio::spawn(async move {
                    while let Some(reply) = replies.next().await {
                        let id = reply.subject.rsplit('.').next().and_then(|id| id.parse::<u64>().ok());
                        let to = id.and_then(|id| waiting.lock().unwrap().get(&id).cloned());
                        if let Some(to) = to {
                            to.push(reply);
                        }
                    }
                }))
            })
            .await
            .map_err(|e| format!("cannot reach NATS: {e}"))?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let parts = Arc::new(Parts::default());
        self.waiting.lock().unwrap().insert(id, parts.clone());
        Ok(Pending { subject: format!("{}.{id}", self.inbox), id, parts, waiting: self.waiting.clone() })
    }
}

impl Parts {
    /// Queues a part, unless the call's parts already hold as much as a call's
    /// results may: what a serving host sends beyond that is dropped.
    fn push(&self, part: Message) {
        let mut queue = self.queue.lock().unwrap();
        let bytes = queue.bytes + part.payload.len() as u64;
        if bytes > MAX_MESSAGE {
            queue.overflowed = true;
        } else {
            queue.bytes = bytes;
            queue.parts.push_back(part);
        }
        drop(queue);
        self.arrived.notify_one();
    }

    /// The next part once it has arrived, or why it will not.
    async fn next(&self, deadline: Instant, left: Duration) -> Result<Message, String> {
        loop {
            let next = {
                let mut queue = self.queue.lock().unwrap();
                if queue.overflowed {
                    return Err(format!("the results are larger than {MAX_MESSAGE} bytes"));
                }
                queue.parts.pop_front()
            };
            if let Some(part) = next {
                return Ok(part);
            }
            // A part queued after the look above has left a permit: no wake-up is lost.
            if tokio::time::timeout_at(deadline.into(), self.arrived.notified()).await.is_err() {
                return Err(format!("the results did not arrive whole within {left:?}"));
            }
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        if let Some(router) = self.router.get() {
            router.abort();
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.waiting.lock().unwrap().remove(&self.id);
    }
}

impl Pending {
    /// The results a call's reply announces: in the reply, or in parts, which
    /// have arrived before it (one connection keeps the server's order) or are
    /// on their way through the router.
    pub async fn results(&mut self, reply: Message, deadline: Instant, left: Duration) -> Answer {
        let header = |name: &str| reply.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string());
        if header(STATUS_HEADER).as_deref() == Some(FAILED) {
            let why = &reply.payload[..reply.payload.len().min(MAX_REPORT)];
            return Answer::Failed(String::from_utf8_lossy(why).into_owned());
        }
        let Some(parts) = header(PARTS_HEADER) else { return Answer::Results(reply.payload) };
        let Ok(parts) = parts.parse::<u64>() else { return Answer::Failed(format!("a reply of `{parts}` parts")) };
        let mut results = Vec::new();
        for _ in 0..parts {
            match self.parts.next(deadline, left).await {
                Ok(part) => results.extend_from_slice(&part.payload),
                Err(why) => return Answer::Failed(why),
            }
        }
        Answer::Results(results.into())
    }
}

/// Functions no weft host served when last asked, until when to call them
/// over wRPC without asking again.
#[derive(Default)]
pub(super) struct Fallbacks(Mutex<HashMap<String, Instant>>);

impl Fallbacks {
    pub fn over_wrpc(&self, subject: &str) -> bool {
        let mut fallbacks = self.0.lock().unwrap();
        match fallbacks.get(subject) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                fallbacks.remove(subject);
                false
            }
            None => false,
        }
    }

    pub fn remember(&self, subject: String) {
        let mut fallbacks = self.0.lock().unwrap();
        // Bounded: stale entries go first.
        if fallbacks.len() >= 4096 {
            let now = Instant::now();
            fallbacks.retain(|_, until| *until > now);
        }
        if fallbacks.len() < 4096 {
            fallbacks.insert(subject, Instant::now() + FALLBACK_FOR);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: Bytes, headers: Option<HeaderMap>) -> Message {
        Message {
            subject: "_INBOX.test.0".into(),
            reply: None,
            length: payload.len(),
            payload,
            headers,
            status: None,
            description: None,
        }
    }

    #[tokio::test]
    async fn parts_are_taken_in_order_and_no_more_than_a_calls_results_are_kept() {
        let waiting = Waiting::default();
        let pending = |id| {
            let parts = Arc::new(Parts::default());
            waiting.lock().unwrap().insert(id, parts.clone());
            Pending { subject: format!("_INBOX.test.{id}"), id, parts, waiting: waiting.clone() }
        };
        let mut headers = HeaderMap::new();
        headers.insert(PARTS_HEADER, "2");
        let reply = message(Bytes::new(), Some(headers));
        let deadline = Instant::now() + Duration::from_secs(5);

        let mut call = pending(0);
        call.parts.push(message(Bytes::from_static(b"one "), None));
        let second = call.parts.clone();
        // The second part arrives while the call waits for it.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            second.push(message(Bytes::from_static(b"two"), None));
        });
        match call.results(reply.clone(), deadline, Duration::from_secs(5)).await {
            Answer::Results(results) => assert_eq!(&results[..], b"one two"),
            Answer::Failed(why) => panic!("{why}"),
        }
        drop(call);
        assert!(waiting.lock().unwrap().is_empty());

        // A serving host that sends more than a call's results may be: what is
        // past the bound is not kept, and the call fails saying so.
        let mut call = pending(1);
        let big = Bytes::from(vec![0u8; (MAX_MESSAGE / 2 + 1) as usize]);
        for _ in 0..3 {
            call.parts.push(message(big.clone(), None));
        }
        assert_eq!(call.parts.queue.lock().unwrap().parts.len(), 1);
        match call.results(reply, deadline, Duration::from_secs(5)).await {
            Answer::Failed(why) => assert!(why.contains("larger than"), "{why}"),
            Answer::Results(_) => panic!("results past the bound"),
        }
    }

    #[test]
    fn a_request_starts_with_the_time_left_and_where_parts_go() {
        let mut bytes = Request::start(Duration::from_millis(1500), "_INBOX.abc.7").unwrap();
        let start = bytes.len();
        bytes.extend_from_slice(&[0x02, b'h', b'i']);
        // 1500 as LEB128, then the subject as a string.
        assert_eq!(&bytes[..3], &[0xdc, 0x0b, 12]);
        let request = Request::read(&bytes).unwrap();
        assert_eq!(request.left, Duration::from_millis(1500));
        assert_eq!(request.parts_to, Some("_INBOX.abc.7"));
        assert_eq!(request.params_at, start);
        // Parts go to an inbox, not to any subject a caller names.
        let bytes = Request::start(Duration::from_secs(1), "weft.links.default.serving.x").unwrap();
        assert_eq!(Request::read(&bytes).unwrap().parts_to, None);
        // A start cut short, or not UTF-8, is an error.
        for bad in [&[][..], &[0x80][..], &[0x01, 0x05, b'a'][..], &[0x01, 0x01, 0xff][..]] {
            assert!(Request::read(bad).is_err(), "{bad:?}");
        }
    }
}
