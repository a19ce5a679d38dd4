//! Prints, twice, `caller: <its own state>` then `provider: <what the imported
//! own-state describes>`, each state being `who=<config "who"> count=<n>` with
//! `count` a counter in the component's key-value bucket `state` (the provider
//! reads the same key names): whose config and bucket each side reached.

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-config", "../../wit/deps/wasi-keyvalue", "../../wit/fixtures", "wit"],
    world: "weft:own-state-caller/caller",
    generate_all,
});

use wasi::config::store as config;
use wasi::keyvalue::{atomics, store};
use weft::fixtures::own_state;

fn own() -> String {
    let who = config::get("who").ok().flatten().unwrap_or_else(|| "nobody".into());
    let count = store::open("state")
        .and_then(|bucket| atomics::increment(&bucket, "count", 1))
        .map_or_else(|e| format!("{e:?}"), |n| n.to_string());
    format!("who={who} count={count}")
}

fn main() {
    for _ in 0..2 {
        println!("caller: {}", own());
        println!("provider: {}", own_state::describe());
    }
}
