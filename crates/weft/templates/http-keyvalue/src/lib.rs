//! Counts the requests it serves in the key `hits` of the bucket `counter`: every
//! request adds one (atomically, so concurrent requests are all counted) and is
//! answered with the new count; `GET /count` reads it without adding.

wit_bindgen::generate!({ path: "wit", world: "app", generate_all });

use std::io::Write;

use wasi::keyvalue::{atomics, store};
use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Handler;

fn count(adding: bool) -> Result<u64, String> {
    let bucket = store::open("counter").map_err(|e| format!("{e:?}"))?;
    if adding {
        return atomics::increment(&bucket, "hits", 1).map_err(|e| format!("{e:?}"));
    }
    let value = bucket.get("hits").map_err(|e| format!("{e:?}"))?;
    Ok(value.and_then(|v| String::from_utf8(v).ok()).and_then(|s| s.parse().ok()).unwrap_or(0))
}

impl wasip2::exports::http::incoming_handler::Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let reading = request.path_with_query().is_some_and(|p| p.ends_with("/count"));
        let (status, text) = match count(!reading) {
            Ok(n) => (200, format!("{n}\n")),
            Err(e) => (500, format!("key-value error: {e}\n")),
        };
        let response = OutgoingResponse::new(Fields::new());
        response.set_status_code(status).unwrap();
        let body = response.body().unwrap();
        ResponseOutparam::set(out, Ok(response));
        let mut stream = body.write().unwrap();
        stream.write_all(text.as_bytes()).unwrap();
        stream.flush().unwrap();
        drop(stream);
        OutgoingBody::finish(body, None).unwrap();
    }
}

wasip2::http::proxy::export!(Handler);
