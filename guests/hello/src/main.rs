//! Prints its arguments on one line. Environment variables ask for more:
//! `HELLO_PRINT_ENV=1` prints every variable as `KEY=VALUE`; `HELLO_READ=<path>`
//! prints a file; `HELLO_WRITE=<path>` writes `written by hello` to a file and says
//! whether that worked; `HELLO_EXIT=<n>` exits with status n.

use std::env;

fn main() {
    // Through the WASI 0.2.12 bindings; the rest goes through `std`.
    let args: Vec<String> = wasip2::cli::environment::get_arguments().into_iter().skip(1).collect();
    println!("{}", args.join(" "));
    if env::var_os("HELLO_PRINT_ENV").is_some() {
        let mut vars: Vec<(String, String)> = env::vars().collect();
        vars.sort();
        for (k, v) in vars {
            println!("{k}={v}");
        }
    }
    if let Ok(path) = env::var("HELLO_READ") {
        match std::fs::read_to_string(&path) {
            Ok(text) => println!("read {path}: {text}"),
            Err(e) => println!("read {path} failed: {e}"),
        }
    }
    if let Ok(path) = env::var("HELLO_WRITE") {
        match std::fs::write(&path, "written by hello") {
            Ok(()) => println!("write {path}: ok"),
            Err(e) => {
                println!("write {path} failed: {e}");
                std::process::exit(3);
            }
        }
    }
    if let Some(code) = env::var("HELLO_EXIT").ok().and_then(|c| c.parse().ok()) {
        std::process::exit(code);
    }
}
