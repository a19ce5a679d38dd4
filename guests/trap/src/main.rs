//! Always traps.

fn main() {
    let reason = std::hint::black_box("the trap fixture always traps");
    panic!("{reason}");
}
