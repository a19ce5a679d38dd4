//! Allocates (and touches) 1 MiB after 1 MiB until the allocator fails, which
//! aborts: memory limits must turn this into an error, never a host crash.

fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; 1 << 20]);
        if hoard.len().is_multiple_of(64) {
            println!("holding {} MiB", hoard.len());
        }
    }
}
