//! `weft:bench-async/async-driver`: the loop runs inside the caller, so the figure is
//! the cost of the async link.

wit_bindgen::generate!({ path: "../../wit/bench-async", world: "bench-async-caller" });

use std::hint::black_box;

use exports::weft::bench_async::async_driver::Guest;
use weft::bench_async::async_calls;

struct Caller;

impl Guest for Caller {
    async fn run(n: u32) -> u64 {
        let mut check: u64 = 0;
        for i in 0..n {
            check = check.wrapping_add(u64::from(async_calls::add(black_box(i), 7).await));
        }
        check
    }
}

export!(Caller);
