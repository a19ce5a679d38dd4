//! A WASI 0.3 HTTP handler: `handle` is async and returns the response at once;
//! a task of the component then writes one line every 100 ms (`?ticks=<n>`,
//! default 5, at most 50), waiting on WASI 0.3's async clock, while the host
//! streams each line to the client as it is written.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

wasip3::http::service::export!(Ticks);

struct Ticks;

impl wasip3::exports::http::handler::Guest for Ticks {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let ticks = request
            .get_path_with_query()
            .and_then(|p| p.split_once("ticks=").and_then(|(_, n)| n.parse::<u32>().ok()))
            .unwrap_or(5)
            .min(50);
        let (mut lines, body) = wit_stream::new();
        let (_, trailers) = wit_future::new(|| Ok(None));
        let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())]).expect("valid header");
        let (response, _) = Response::new(headers, Some(body), trailers);
        wit_bindgen::spawn_local(async move {
            for tick in 1..=ticks {
                if tick > 1 {
                    wasip3::clocks::monotonic_clock::wait_for(100_000_000).await;
                }
                if !lines.write_all(format!("tick {tick} of {ticks}\n").into_bytes()).await.is_empty() {
                    return; // the client went away
                }
            }
        });
        Ok(response)
    }
}
