//! A command that greets each of its arguments through the imported
//! `{{name}}:greeting/greeter`; weft links the import to the provider in-process.

wit_bindgen::generate!({ path: "../wit", world: "consumer" });

fn main() {
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names.push("world".to_string());
    }
    for name in names {
        println!("{}", {{crate_name}}::greeting::greeter::greet(&name));
    }
}
