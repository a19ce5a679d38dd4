//! Exports `weft:fixtures/greeter` by asking the greeter it imports, and marks the
//! answer with `RELAY_MARK` from its environment (default `relay`).

wit_bindgen::generate!({ path: "../../wit/fixtures", world: "relay" });

struct Relay;

impl exports::weft::fixtures::greeter::Guest for Relay {
    fn greet(name: String) -> String {
        let mark = std::env::var("RELAY_MARK").unwrap_or_else(|_| "relay".to_string());
        format!("{} [{mark}]", weft::fixtures::greeter::greet(&name))
    }
}

export!(Relay);
