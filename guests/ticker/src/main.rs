//! A long-running service: prints `tick N` every 50 ms. `TICKS=<n>` makes it stop
//! after n ticks (run to completion); `FAIL_AFTER=<n>` makes it exit with status 1
//! after n ticks.

use std::time::Duration;

fn main() {
    let limit = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let (ticks, fail_after) = (limit("TICKS"), limit("FAIL_AFTER"));
    for n in 1.. {
        println!("tick {n}");
        if fail_after == Some(n) {
            eprintln!("failing after {n} ticks");
            std::process::exit(1);
        }
        if ticks == Some(n) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
