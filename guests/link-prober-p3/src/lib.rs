//! `weft:shared/probe`: exercises an async link from the caller's side.

wit_bindgen::generate!({ path: "../../wit/shared", world: "prober" });

use exports::weft::shared::probe::Guest;
use futures_util::future::{Either, join, join_all, select};
use weft::shared::counter::{self, Tally};
use weft::shared::streams;

struct Prober;

impl Guest for Prober {
    async fn bump_many(n: u32, wait_ms: u32) -> Vec<Tally> {
        join_all((0..n).map(|_| counter::bump(wait_ms))).await
    }

    async fn upper_through(text: String, chunk: u32) -> String {
        let (mut tx, rx) = wit_stream::new();
        let chunk = chunk.max(1) as usize;
        let send = async move {
            for piece in text.into_bytes().chunks(chunk) {
                let rest = tx.write_all(piece.to_vec()).await;
                assert!(rest.is_empty(), "the provider stopped reading");
            }
        };
        let receive = async {
            let back = streams::upper(rx).await;
            back.collect().await
        };
        let ((), out) = join(send, receive).await;
        String::from_utf8(out).expect("upper-cased UTF-8")
    }

    async fn abandon_work(after_ms: u32) -> u32 {
        {
            let work = std::pin::pin!(streams::work(10_000));
            let timer = std::pin::pin!(wasip3::clocks::monotonic_clock::wait_for(u64::from(after_ms) * 1_000_000));
            if let Either::Left((done, _)) = select(work, timer).await {
                panic!("work finished early ({done} ms)");
            }
        } // The call's future is dropped here, which cancels the call.
        streams::cancelled()
    }

    async fn env_interleaved(name: String, n: u32) -> (Vec<Option<String>>, Vec<Option<String>>) {
        let theirs = join_all((0..n).map(|_| streams::env(name.clone())));
        let mine = async {
            let mut mine = Vec::new();
            for _ in 0..n {
                wasip3::clocks::monotonic_clock::wait_for(200_000).await;
                mine.push(own_env(&name));
            }
            mine
        };
        let (theirs, mine) = join(theirs, mine).await;
        (mine, theirs)
    }
}

fn own_env(name: &str) -> Option<String> {
    wasip3::cli::environment::get_environment().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

export!(Prober);
