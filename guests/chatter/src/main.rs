//! A service that floods stdout: numbered lines, as fast as the host takes them,
//! forever. The host must keep serving everything else however slowly its own
//! stdout is read.

use std::io::Write;

fn main() {
    let mut stdout = std::io::stdout().lock();
    for n in 0u64.. {
        if writeln!(stdout, "chatter line {n} with some padding to make it longer").is_err() {
            return;
        }
    }
}
