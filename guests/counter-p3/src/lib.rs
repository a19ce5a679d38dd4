//! `weft:shared/counter` and `weft:shared/streams` as async exports: one
//! instance's calls share its counters, and each call waits on the WASI 0.3
//! clock, so calls into one instance overlap when the host lets them.

use std::cell::Cell;

wit_bindgen::generate!({ path: "../../wit/shared", world: "provider" });

use exports::weft::shared::counter::{self, Tally};
use exports::weft::shared::streams;
use wit_bindgen::{StreamReader, StreamResult};

struct Provider;

thread_local! {
    static INSTANCE: Cell<u64> = const { Cell::new(0) };
    static COUNT: Cell<u32> = const { Cell::new(0) };
    static IN_PROGRESS: Cell<u32> = const { Cell::new(0) };
    static MOST_AT_ONCE: Cell<u32> = const { Cell::new(0) };
    static CANCELLED: Cell<u32> = const { Cell::new(0) };
}

fn wait_ms(ms: u32) -> impl Future<Output = ()> {
    wasip3::clocks::monotonic_clock::wait_for(u64::from(ms) * 1_000_000)
}

impl counter::Guest for Provider {
    async fn bump(wait: u32) -> Tally {
        if INSTANCE.get() == 0 {
            INSTANCE.set(wasip3::random::random::get_random_u64() | 1);
        }
        let count = COUNT.get() + 1;
        COUNT.set(count);
        let now = IN_PROGRESS.get() + 1;
        IN_PROGRESS.set(now);
        MOST_AT_ONCE.set(MOST_AT_ONCE.get().max(now));
        wait_ms(wait).await;
        IN_PROGRESS.set(IN_PROGRESS.get() - 1);
        Tally { instance: INSTANCE.get(), count, most_at_once: MOST_AT_ONCE.get() }
    }
}

/// Counts a `work` call as cancelled if it is dropped before it finishes: the
/// runtime drops an export's future when its caller cancels the call.
struct Unfinished(bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if self.0 {
            CANCELLED.set(CANCELLED.get() + 1);
        }
    }
}

impl streams::Guest for Provider {
    async fn upper(mut input: StreamReader<u8>) -> StreamReader<u8> {
        let (mut tx, rx) = wit_stream::new();
        wit_bindgen::spawn_local(async move {
            loop {
                let (read, mut chunk) = input.read(Vec::with_capacity(4096)).await;
                if !matches!(read, StreamResult::Complete(_)) {
                    break;
                }
                chunk.make_ascii_uppercase();
                if !tx.write_all(chunk).await.is_empty() {
                    break;
                }
            }
        });
        rx
    }

    async fn work(ms: u32) -> u32 {
        let mut unfinished = Unfinished(true);
        for _ in 0..ms {
            wait_ms(1).await;
        }
        unfinished.0 = false;
        ms
    }

    fn cancelled() -> u32 {
        CANCELLED.get()
    }

    async fn env(name: String) -> Option<String> {
        wait_ms(1).await;
        wasip3::cli::environment::get_environment().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

export!(Provider);
