//! A WASI 0.3 HTTP handler. `GET /stream?bytes=<n>` answers `n` bytes (`a`–`z`
//! repeated), written in 64 KiB chunks by a task that goes on after `handle`
//! has returned the response, so the host must stream them; any other request
//! answers `hello from WASI 0.3`, with a trailer `x-done: yes` (announced in a
//! `trailer` header, as HTTP/1.1 asks).

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Handler);

struct Handler;

const CHUNK: usize = 64 * 1024;

impl wasip3::exports::http::handler::Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
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
