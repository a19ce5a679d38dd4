//! Paths of weft's guest components, built for `wasm32-wasip2` by this crate's
//! build script. Tests and benchmarks depend on this crate to get real components.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// Reads a guest component's bytes.
pub fn bytes(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read guest component {path}: {e}"))
}
