//! `weft:bench-async/async-calls`: `add` as an `async func` that never waits.

wit_bindgen::generate!({ path: "../../wit/bench-async", world: "bench-async-provider" });

use exports::weft::bench_async::async_calls::Guest;

struct Provider;

impl Guest for Provider {
    async fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }
}

export!(Provider);
