//! A WASI 0.3 HTTP handler. `GET /stream?bytes=<n>` answers `n` bytes (`a`–`z`
//! repeated), written in 64 KiB chunks by a task that goes on after `handle`
//! has returned the response, so the host must stream them; any other request
//! answers `hello from WASI 0.3`, with a trailer `x-done: yes` (announced in a
//! `trailer` header, as HTTP/1.1 asks). `GET …/fetch?http://<authority><path>`
//! sends a GET there with WASI 0.3's `client.send` and answers `status <n>:
//! <body>`, or `send: <error code>`. `…/trap` traps; `…/trap-mid-body` answers
//! 200 and its task writes `partial`, then traps; `…/sleep?ms=<n>` waits on
//! the async clock before answering; `…/echo` answers the request body, which
//! a task of the guest reads and writes back chunk by chunk as it arrives.

use wasip3::http::types::{ErrorCode, Fields, Request, Response, Scheme};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Handler);

struct Handler;

const CHUNK: usize = 64 * 1024;

impl wasip3::exports::http::handler::Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        if let Some((_, url)) = path.split_once("/fetch?http://") {
            return Ok(text(fetch(url).await));
        }
        if path.ends_with("/echo") {
            return Ok(echo(request));
        }
        if path.ends_with("/trap") {
            panic!("asked to trap");
        }
        if path.ends_with("/trap-mid-body") {
            let (mut body_tx, body_rx) = wit_stream::new();
            let (_trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
            let (response, sent) = Response::new(Fields::new(), Some(body_rx), trailers_rx);
            wit_bindgen::spawn_local(async move {
                let _sent = sent;
                let _ = body_tx.write_all(b"partial".to_vec()).await;
                panic!("asked to trap half-way through the body");
            });
            return Ok(response);
        }
        if let Some(ms) = path.split_once("/sleep?ms=").and_then(|(_, ms)| ms.parse::<u64>().ok()) {
            wasip3::clocks::monotonic_clock::wait_for(ms * 1_000_000).await;
            return Ok(text(format!("slept {ms} ms")));
        }
        let streamed = path.strip_prefix("/stream?bytes=").and_then(|n| n.parse::<usize>().ok());
        let (mut body_tx, body_rx) = wit_stream::new();
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        // HTTP/1.1 carries only the trailers a response announces.
        let headers = match streamed {
            Some(_) => Fields::new(),
            None => Fields::from_list(&[("trailer".to_string(), b"x-done".to_vec())]).expect("valid"),
        };
        let (response, sent) = Response::new(headers, Some(body_rx), trailers_rx);
        wit_bindgen::spawn_local(async move {
            // Held until the body and trailers are written: dropping it early
            // would say nobody cares how the transmission ends.
            let _sent = sent;
            match streamed {
                Some(mut left) => {
                    let chunk: Vec<u8> = (0..CHUNK).map(|i| b'a' + (i % 26) as u8).collect();
                    while left > 0 {
                        let n = left.min(CHUNK);
                        let rest = body_tx.write_all(chunk[..n].to_vec()).await;
                        if !rest.is_empty() {
                            return; // the client went away
                        }
                        left -= n;
                    }
                    drop(body_tx);
                    let _ = trailers_tx.write(Ok(None)).await;
                }
                None => {
                    let _ = body_tx.write_all(b"hello from WASI 0.3\n".to_vec()).await;
                    drop(body_tx);
                    let trailers = Fields::from_list(&[("x-done".to_string(), b"yes".to_vec())]).expect("valid");
                    let _ = trailers_tx.write(Ok(Some(trailers))).await;
                }
            }
        });
        Ok(response)
    }
}

/// `GET http://<url>`, and what came back.
async fn fetch(url: &str) -> String {
    let (authority, path) = url.split_at(url.find('/').unwrap_or(url.len()));
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (request, _sent) = Request::new(Fields::new(), None, no_trailers, None);
    let set = request
        .set_scheme(Some(&Scheme::Http))
        .and(request.set_authority(Some(authority)))
        .and(request.set_path_with_query(Some(if path.is_empty() { "/" } else { path })));
    if set.is_err() {
        return format!("bad url {url}");
    }
    match wasip3::http::client::send(request).await {
        Err(code) => format!("send: {code:?}"),
        Ok(response) => {
            let status = response.get_status_code();
            let (_, done) = wit_future::new(|| Ok(()));
            let (body, _trailers) = Response::consume_body(response, done);
            format!("status {status}: {}", String::from_utf8_lossy(&body.collect().await))
        }
    }
}

/// A response of one line of text.
fn text(line: String) -> Response {
    let (mut body_tx, body_rx) = wit_stream::new();
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(Fields::new(), Some(body_rx), no_trailers);
    wit_bindgen::spawn_local(async move {
        let _ = body_tx.write_all(format!("{line}\n").into_bytes()).await;
    });
    response
}

/// The request body back, copied through the guest's memory a chunk at a time.
fn echo(request: Request) -> Response {
    let (_, done) = wit_future::new(|| Ok(()));
    let (mut incoming, _trailers) = Request::consume_body(request, done);
    let (mut outgoing, body) = wit_stream::new();
    let (_, no_trailers) = wit_future::new(|| Ok(None));
    let (response, _) = Response::new(Fields::new(), Some(body), no_trailers);
    wit_bindgen::spawn_local(async move {
        let mut buf = Vec::with_capacity(CHUNK);
        loop {
            let (status, chunk) = incoming.read(buf).await;
            if !chunk.is_empty() && !outgoing.write_all(chunk).await.is_empty() {
                return; // the client went away
            }
            if matches!(status, wit_bindgen::StreamResult::Dropped) {
                return; // the whole body was read
            }
            buf = Vec::with_capacity(CHUNK);
        }
    });
    response
}
