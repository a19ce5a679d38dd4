//! A service: weft starts it with the workload and restarts it if it fails. This
//! one reports on stdout at a fixed interval (`INTERVAL_MS`, from weft.yaml)
//! until the workload stops.

use std::time::Duration;

fn main() {
    let interval: u64 = std::env::var("INTERVAL_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    println!("{{name}} started, reporting every {interval} ms");
    for tick in 1.. {
        std::thread::sleep(Duration::from_millis(interval));
        println!("{{name}}: tick {tick}");
    }
}
