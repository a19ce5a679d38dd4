//! Exports `{{name}}:greeting/greeter`. The greeting comes from its environment
//! (`GREETING`, set in weft.yaml).

wit_bindgen::generate!({ path: "../wit", world: "provider" });

struct Provider;

impl exports::{{crate_name}}::greeting::greeter::Guest for Provider {
    fn greet(name: String) -> String {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_string());
        format!("{greeting}, {name}!")
    }
}

export!(Provider);
