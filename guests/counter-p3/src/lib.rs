//! `weft:shared/counter` as an async export: one instance's calls share its
//! counters, and each call waits on the WASI 0.3 clock, so calls into one
//! instance overlap when the host lets them.

use std::cell::Cell;

wit_bindgen::generate!({ path: "../../wit/shared", world: "provider" });

use exports::weft::shared::counter::{Guest, Tally};

struct Counter;

thread_local! {
    static INSTANCE: Cell<u64> = const { Cell::new(0) };
    static COUNT: Cell<u32> = const { Cell::new(0) };
    static IN_PROGRESS: Cell<u32> = const { Cell::new(0) };
    static MOST_AT_ONCE: Cell<u32> = const { Cell::new(0) };
}

impl Guest for Counter {
    async fn bump(wait_ms: u32) -> Tally {
        if INSTANCE.get() == 0 {
            INSTANCE.set(wasip3::random::random::get_random_u64() | 1);
        }
        let count = COUNT.get() + 1;
        COUNT.set(count);
        let now = IN_PROGRESS.get() + 1;
        IN_PROGRESS.set(now);
        MOST_AT_ONCE.set(MOST_AT_ONCE.get().max(now));
        wasip3::clocks::monotonic_clock::wait_for(u64::from(wait_ms) * 1_000_000).await;
        IN_PROGRESS.set(IN_PROGRESS.get() - 1);
        Tally { instance: INSTANCE.get(), count, most_at_once: MOST_AT_ONCE.get() }
    }
}

export!(Counter);
