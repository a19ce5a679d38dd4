//! Greets each argument (or "weft") through the imported greeter.

wit_bindgen::generate!({ path: "../../wit/fixtures", world: "greeter-client" });

fn main() {
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names.push("weft".to_string());
    }
    for name in names {
        println!("{}", weft::fixtures::greeter::greet(&name));
    }
}
