//! blobby over HTTP: the objects of a `wasi:blobstore` behind a small REST API.
//!
//! ```text
//! PUT    /<container>/<object>   store the request body (the container is created if needed)
//! GET    /<container>/<object>   the object's bytes
//! DELETE /<container>/<object>   delete the object
//! GET    /<container>            the container's object names, one per line
//! ```
//!
//! Bodies stream both ways in 64 KiB chunks: an object is never held whole in memory.

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-io", "../../wit/deps/wasi-blobstore", "wit"],
    world: "weft:blobby-http/blobby-http",
    with: {
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:blobstore/types@0.2.0-draft": generate,
        "wasi:blobstore/container@0.2.0-draft": generate,
        "wasi:blobstore/blobstore@0.2.0-draft": generate,
    },
});

use std::io::{Read, Write};

use wasi::blobstore::blobstore;
use wasi::blobstore::container::Container;
use wasi::blobstore::types::{IncomingValue, OutgoingValue};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{InputStream, OutputStream};

const CHUNK: usize = 64 * 1024;

struct BlobbyHttp;

/// What a request asks for, once its path is split.
enum Target {
    Container(String),
    Object(String, String),
}

/// A response not yet sent: status, and a body that is either text or an object.
enum Reply {
    Text(u16, String),
    Object(u64, InputStream),
}

impl wasip2::exports::http::incoming_handler::Guest for BlobbyHttp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let reply = serve(&request).unwrap_or_else(|(status, message)| Reply::Text(status, format!("{message}\n")));
        respond(out, reply);
    }
}

fn target(request: &IncomingRequest) -> Result<Target, (u16, String)> {
    let path = request.path_with_query().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default().trim_start_matches('/');
    let usage = || (400, "paths are /<container> or /<container>/<object>".to_string());
    match path.split_once('/') {
        None | Some((_, "")) => {
            let container = path.trim_end_matches('/');
            if container.is_empty() { Err(usage()) } else { Ok(Target::Container(container.to_string())) }
        }
        Some(("", _)) => Err(usage()),
        Some((container, object)) => Ok(Target::Object(container.to_string(), object.to_string())),
    }
}

fn serve(request: &IncomingRequest) -> Result<Reply, (u16, String)> {
    let internal = |e: String| (500, format!("blobstore: {e}"));
    match (request.method(), target(request)?) {
        (Method::Get, Target::Container(name)) => {
            let names = existing(&name)?.list_objects().map_err(internal)?;
            let mut listing = String::new();
            loop {
                let (batch, done) = names.read_stream_object_names(100).map_err(internal)?;
                for name in batch {
                    listing.push_str(&name);
                    listing.push('\n');
                }
                if done {
                    break;
                }
            }
            Ok(Reply::Text(200, listing))
        }
        (Method::Put, Target::Object(container, object)) => {
            let container = if blobstore::container_exists(&container).map_err(internal)? {
                blobstore::get_container(&container)
            } else {
                blobstore::create_container(&container)
            }
            .map_err(internal)?;
            let body = request.consume().map_err(|()| (500, "the request body was taken".to_string()))?;
            let stored = store(&container, &object, &body)?;
            Ok(Reply::Text(201, format!("stored {stored} bytes\n")))
        }
        (Method::Get, Target::Object(container, object)) => {
            let container = existing(&container)?;
            if !container.has_object(&object).map_err(internal)? {
                return Err((404, format!("no object `{object}`")));
            }
            let value = container.get_data(&object, 0, u64::MAX).map_err(internal)?;
            let size = value.size();
            let stream = IncomingValue::incoming_value_consume_async(value).map_err(internal)?;
            Ok(Reply::Object(size, stream))
        }
        (Method::Delete, Target::Object(container, object)) => {
            let container = existing(&container)?;
            if !container.has_object(&object).map_err(internal)? {
                return Err((404, format!("no object `{object}`")));
            }
            container.delete_object(&object).map_err(internal)?;
            Ok(Reply::Text(200, format!("deleted {object}\n")))
        }
        (method, _) => Err((405, format!("{} is not served here", method_name(&method)))),
    }
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

fn existing(name: &str) -> Result<Container, (u16, String)> {
    let internal = |e: String| (500, format!("blobstore: {e}"));
    if !blobstore::container_exists(name).map_err(internal)? {
        return Err((404, format!("no container `{name}`")));
    }
    blobstore::get_container(name).map_err(internal)
}

/// Streams a request body into an object; returns how many bytes it held.
fn store(container: &Container, object: &str, body: &IncomingBody) -> Result<u64, (u16, String)> {
    let value = OutgoingValue::new_outgoing_value();
    container.write_data(object, &value).map_err(|e| (500, format!("blobstore: {e}")))?;
    let mut sink = value.outgoing_value_write_body().map_err(|()| (500, "no object stream".to_string()))?;
    let mut source = body.stream().map_err(|()| (500, "the request body stream was taken".to_string()))?;
    let total = copy(&mut source, &mut sink).map_err(|e| (500, e))?;
    drop(sink);
    OutgoingValue::finish(value).map_err(|e| (500, format!("blobstore: {e}")))?;
    Ok(total)
}

fn copy(from: &mut InputStream, to: &mut OutputStream) -> Result<u64, String> {
    let mut buf = vec![0; CHUNK];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        to.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
        total += n as u64;
    }
    Write::flush(to).map_err(|e| format!("flush: {e}"))?;
    Ok(total)
}

fn respond(out: ResponseOutparam, reply: Reply) {
    let (status, length, content_type) = match &reply {
        Reply::Text(status, text) => (*status, text.len() as u64, "text/plain; charset=utf-8"),
        Reply::Object(size, _) => (200, *size, "application/octet-stream"),
    };
    let headers = Fields::from_list(&[
        ("content-type".into(), content_type.as_bytes().to_vec()),
        ("content-length".into(), length.to_string().into_bytes()),
    ])
    .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("a fresh response has a body");
    ResponseOutparam::set(out, Ok(response));
    let mut sink = body.write().expect("a fresh body has a stream");
    // Once the response is sent, a failure can only cut the body short; the client
    // sees fewer bytes than the content-length promised.
    let sent = match reply {
        Reply::Text(_, text) => {
            sink.write_all(text.as_bytes()).and_then(|()| Write::flush(&mut sink)).map_err(|e| e.to_string())
        }
        Reply::Object(_, mut stream) => copy(&mut stream, &mut sink).map(drop),
    };
    drop(sink);
    if sent.is_ok() {
        let _ = OutgoingBody::finish(body, None);
    }
}

wasip2::http::proxy::export!(BlobbyHttp);
