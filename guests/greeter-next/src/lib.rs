//! Exports `weft:fixtures/greeter@0.1.1`: `greet` takes a second parameter.

wit_bindgen::generate!({ path: "../../wit/fixtures-next", world: "greeter-provider" });

struct Greeter;

impl exports::weft::fixtures::greeter::Guest for Greeter {
    fn greet(name: String, times: u32) -> String {
        format!("Hello, {name}! ").repeat(times as usize)
    }
}

export!(Greeter);
