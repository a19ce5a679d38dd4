//! An HTTP handler for the server's tests. By path:
//!
//! * `/echo`: streams the request body back;
//! * `/slow?ms=N`: answers after N milliseconds;
//! * `/drip?ms=N`: answers `first`, then N milliseconds later `second`;
//! * `/trap`: panics;
//! * `/trap-mid-body`: answers 200, writes `partial`, then panics;
//! * `/served`: how many requests this instance has served, this one included;
//! * `/silent`: returns without answering;
//! * `/error-code`: answers with an `error-code` instead of a response;
//! * `/fetch?url=U`: fetches U (GET) and answers with its status and body, or
//!   with the error the host gave;
//! * anything else: `<component> <method> <path>` and the `weft-param-*` headers.

use std::io::{Read, Write};

use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};
use wasip2::io::streams::OutputStream;

struct Probe;

/// Requests this instance has served: 1 on every request unless instances are reused.
static SERVED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Sets a response of `status` and returns its body and the body's stream.
fn begin(out: ResponseOutparam, status: u16) -> (OutgoingBody, OutputStream) {
    let response = OutgoingResponse::new(Fields::new());
    response.set_status_code(status).unwrap();
    let outgoing = response.body().unwrap();
    ResponseOutparam::set(out, Ok(response));
    let stream = outgoing.write().unwrap();
    (outgoing, stream)
}

/// Ends a body: its stream first, as `finish` requires.
fn finish(outgoing: OutgoingBody, stream: OutputStream) {
    stream.flush().unwrap();
    drop(stream);
    OutgoingBody::finish(outgoing, None).unwrap();
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let (outgoing, mut stream) = begin(out, status);
    stream.write_all(body).unwrap();
    finish(outgoing, stream);
}

fn query(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_string))
}

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let route = path.split('?').next().unwrap_or_default().to_string();
        match route.as_str() {
            route if route.ends_with("/echo") => {
                let body = request.consume().unwrap();
                let mut input = body.stream().unwrap();
                let (outgoing, mut output) = begin(out, 200);
                std::io::copy(&mut input, &mut output).unwrap();
                drop(input);
                finish(outgoing, output);
            }
            route if route.ends_with("/slow") => {
                let ms: u64 = query(&path, "ms").and_then(|m| m.parse().ok()).unwrap_or(100);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                respond(out, 200, b"slept\n");
            }
            route if route.ends_with("/drip") => {
                let ms: u64 = query(&path, "ms").and_then(|m| m.parse().ok()).unwrap_or(100);
                let (outgoing, mut stream) = begin(out, 200);
                stream.write_all(b"first\n").unwrap();
                stream.flush().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(ms));
                stream.write_all(b"second\n").unwrap();
                finish(outgoing, stream);
            }
            route if route.ends_with("/trap-mid-body") => {
                let (_outgoing, mut stream) = begin(out, 200);
                stream.write_all(b"partial").unwrap();
                stream.flush().unwrap();
                panic!("the probe traps half-way through its body");
            }
            route if route.ends_with("/trap") => panic!("the probe traps on request"),
            route if route.ends_with("/served") => {
                let served = SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                respond(out, 200, format!("served {served}").as_bytes());
            }
            "/silent" => drop(out),
            "/error-code" => ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some("probe secret 42".into())))),
            route if route.ends_with("/fetch") => {
                let url = query(&path, "url").unwrap_or_default();
                let answer = fetch(&url);
                match answer {
                    Ok((status, body)) => respond(out, 200, format!("fetched {status}: {body}").as_bytes()),
                    Err(e) => respond(out, 502, format!("fetch failed: {e}").as_bytes()),
                }
            }
            _ => {
                let mut text =
                    format!("{} {} {}", std::env::args().next().unwrap_or_default(), method(&request.method()), route);
                let mut params: Vec<(String, String)> = request
                    .headers()
                    .entries()
                    .into_iter()
                    .filter(|(k, _)| k.starts_with("weft-param-"))
                    .map(|(k, v)| (k["weft-param-".len()..].to_string(), String::from_utf8_lossy(&v).into_owned()))
                    .collect();
                params.sort();
                for (k, v) in params {
                    text.push_str(&format!(" {k}={v}"));
                }
                text.push('\n');
                respond(out, 200, text.as_bytes());
            }
        }
    }
}

fn method(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Patch => "PATCH".into(),
        Method::Head => "HEAD".into(),
        Method::Options => "OPTIONS".into(),
        Method::Connect => "CONNECT".into(),
        Method::Trace => "TRACE".into(),
        Method::Other(o) => o.clone(),
    }
}

fn fetch(url: &str) -> Result<(u16, String), String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|()| "scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "path")?;
    let pending = wasip2::http::outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending.get().ok_or("no response")?.map_err(|()| "taken")?.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "body")?;
    let mut text = String::new();
    body.stream().map_err(|()| "stream")?.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok((status, text))
}

wasip2::http::proxy::export!(Probe);
