//! `/send?url=U&body=N`: sends one request to U the way `wstd` does (take the
//! body, call `handle`, write N bytes, finish, then wait for the response) and
//! answers 200 with the step that failed and how, or with the response:
//!
//! * `handle: <error-code>`, `body: <stream error>`, `finish: <error-code>`,
//!   `response: <error-code>`;
//! * `status <code>: <body>`.

use std::io::{Read, Write};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme,
};

struct Probe;

fn query(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    query.split('&').find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_string))
}

impl wasip2::exports::http::incoming_handler::Guest for Probe {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let url = query(&path, "url").unwrap_or_default();
        let size = query(&path, "body").and_then(|n| n.parse().ok()).unwrap_or(0);
        let answer = send(&url, size).unwrap_or_else(|failure| failure);
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let mut stream = body.write().unwrap();
        stream.write_all(answer.as_bytes()).unwrap();
        stream.flush().unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}

fn send(url: &str, size: usize) -> Result<String, String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(if size > 0 { &Method::Post } else { &Method::Get }).map_err(|()| "method")?;
    request.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|()| "scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "path")?;
    let body = request.body().map_err(|()| "body taken")?;
    let pending = wasip2::http::outgoing_handler::handle(request, None).map_err(|e| format!("handle: {e:?}"))?;
    {
        let mut stream = body.write().map_err(|()| "body stream taken")?;
        let chunk = [b'x'; 4096];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            stream.write_all(&chunk[..n]).map_err(|e| format!("body: {e}"))?;
            left -= n;
        }
        stream.flush().map_err(|e| format!("body: {e}"))?;
    }
    OutgoingBody::finish(body, None).map_err(|e| format!("finish: {e:?}"))?;
    pending.subscribe().block();
    let response =
        pending.get().ok_or("no response")?.map_err(|()| "taken")?.map_err(|e| format!("response: {e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "body")?;
    let mut text = String::new();
    body.stream().map_err(|()| "stream")?.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(format!("status {status}: {text}"))
}

wasip2::http::proxy::export!(Probe);
