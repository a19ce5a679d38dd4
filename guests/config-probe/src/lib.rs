//! Prints `key=value` (or `key unset`) for each argument, then every value
//! `get-all` returns, sorted; logs one record at each level.

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-config", "../../wit/deps/wasi-logging", "wit"],
    world: "weft:config-probe/probe",
    generate_all,
});

use wasi::config::store;
use wasi::logging::logging::{Level, log};

struct Probe;

impl wasip2::exports::cli::run::Guest for Probe {
    fn run() -> Result<(), ()> {
        for key in std::env::args().skip(1) {
            match store::get(&key) {
                Ok(Some(value)) => println!("{key}={value}"),
                Ok(None) => println!("{key} unset"),
                Err(e) => println!("{key} error {e:?}"),
            }
        }
        let mut all = store::get_all().map_err(|_| ())?;
        all.sort();
        let all: Vec<String> = all.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("all: {}", all.join(" "));
        log(Level::Info, "probe", "config read");
        log(Level::Warn, "probe", "a warning");
        Ok(())
    }
}

wasip2::cli::command::export!(Probe);
