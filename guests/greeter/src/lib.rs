//! Exports `weft:fixtures/greeter`. The greeting comes from `GREETING` in its own
//! environment, so tests can tell whose environment a call saw.

wit_bindgen::generate!({ path: "../../wit/fixtures", world: "greeter-provider" });

struct Greeter;

impl exports::weft::fixtures::greeter::Guest for Greeter {
    fn greet(name: String) -> String {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_string());
        format!("{greeting}, {name}!")
    }
}

export!(Greeter);
