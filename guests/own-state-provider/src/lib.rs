//! Exports `weft:fixtures/own-state`: its own config value `who` and a counter in
//! its own key-value bucket, so a test can tell whose plugin state a call saw.

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-config", "../../wit/deps/wasi-keyvalue", "../../wit/fixtures", "wit"],
    world: "weft:own-state-provider/provider",
    generate_all,
});

use wasi::config::store as config;
use wasi::keyvalue::{atomics, store};

struct Provider;

impl exports::weft::fixtures::own_state::Guest for Provider {
    fn describe() -> String {
        let who = config::get("who").ok().flatten().unwrap_or_else(|| "nobody".into());
        let count = store::open("state")
            .and_then(|bucket| atomics::increment(&bucket, "count", 1))
            .map_or_else(|e| format!("{e:?}"), |n| n.to_string());
        format!("who={who} count={count}")
    }
}

export!(Provider);
