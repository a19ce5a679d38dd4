//! The provider side of the call benchmark: small, honest implementations.

wit_bindgen::generate!({ path: "../../wit/bench", world: "bench-provider" });

use exports::weft::bench::calls::{Guest, Point};

struct Provider;

impl Guest for Provider {
    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    fn echo(s: String) -> String {
        s
    }

    fn sum(xs: Vec<u32>) -> u32 {
        xs.iter().fold(0u32, |acc, x| acc.wrapping_add(*x))
    }

    fn translate(p: Point, dx: f64) -> Point {
        Point { x: p.x + dx, ..p }
    }

    fn length(bytes: Vec<u8>) -> u32 {
        bytes.len() as u32
    }
}

export!(Provider);
