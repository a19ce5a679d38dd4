//! The caller side of the call benchmark: loops over the imported `calls`.

wit_bindgen::generate!({ path: "../../wit/bench", world: "bench-caller" });

use std::hint::black_box;

use exports::weft::bench::driver::{Guest, Kind};
use weft::bench::calls::{self, Point};

struct Caller;

impl Guest for Caller {
    fn run(n: u32, kind: Kind) -> u64 {
        let text = "sixteen bytes!!!";
        let numbers: Vec<u32> = (0..64).collect();
        let bytes: Vec<u8> = (0..64 * 1024).map(|i| i as u8).collect();
        let point = Point { x: 1.5, y: -2.5, label: "a labelled point".to_string() };
        let mut check: u64 = 0;
        for i in 0..n {
            let answer = match kind {
                Kind::Empty => u64::from(black_box(i)),
                Kind::Add => u64::from(calls::add(black_box(i), 7)),
                Kind::Echo16 => calls::echo(black_box(text)).len() as u64,
                Kind::Sum64 => u64::from(calls::sum(black_box(&numbers))),
                Kind::Record => calls::translate(black_box(&point), 1.0).x as u64,
                Kind::Bytes64k => u64::from(calls::length(black_box(&bytes))),
            };
            check = check.wrapping_add(answer);
        }
        check
    }
}

export!(Caller);
