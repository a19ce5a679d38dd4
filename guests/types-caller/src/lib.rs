//! The caller side of the link tests: re-exports `values` by calling the imported
//! one, and runs whole scenarios against the provider in one invocation.

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-io", "../../wit/types"],
    world: "weft:types/types-caller",
    with: {
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
    },
});

use exports::weft::types::{scenarios, values as exported};
use weft::types::counters::{self, Counter};
use weft::types::{faults, pipes, values as imported};

struct Caller;

fn point_in(p: exported::Point) -> imported::Point {
    imported::Point { x: p.x, y: p.y, label: p.label }
}
fn point_out(p: imported::Point) -> exported::Point {
    exported::Point { x: p.x, y: p.y, label: p.label }
}
fn shape_in(s: exported::Shape) -> imported::Shape {
    use exported::Shape as S;
    match s {
        S::Empty => imported::Shape::Empty,
        S::Circle(r) => imported::Shape::Circle(r),
        S::Polygon(ps) => imported::Shape::Polygon(ps.into_iter().map(point_in).collect()),
        S::Named(n) => imported::Shape::Named(n),
        S::Boxed(b) => imported::Shape::Boxed(b),
    }
}
fn shape_out(s: imported::Shape) -> exported::Shape {
    use imported::Shape as S;
    match s {
        S::Empty => exported::Shape::Empty,
        S::Circle(r) => exported::Shape::Circle(r),
        S::Polygon(ps) => exported::Shape::Polygon(ps.into_iter().map(point_out).collect()),
        S::Named(n) => exported::Shape::Named(n),
        S::Boxed(b) => exported::Shape::Boxed(b),
    }
}
fn colour_in(c: exported::Colour) -> imported::Colour {
    match c {
        exported::Colour::Red => imported::Colour::Red,
        exported::Colour::Green => imported::Colour::Green,
        exported::Colour::Blue => imported::Colour::Blue,
        exported::Colour::Ultraviolet => imported::Colour::Ultraviolet,
    }
}
fn colour_out(c: imported::Colour) -> exported::Colour {
    match c {
        imported::Colour::Red => exported::Colour::Red,
        imported::Colour::Green => exported::Colour::Green,
        imported::Colour::Blue => exported::Colour::Blue,
        imported::Colour::Ultraviolet => exported::Colour::Ultraviolet,
    }
}

impl exported::Guest for Caller {
    fn echo_bool(x: bool) -> bool {
        imported::echo_bool(x)
    }
    fn echo_u8(x: u8) -> u8 {
        imported::echo_u8(x)
    }
    fn echo_s8(x: i8) -> i8 {
        imported::echo_s8(x)
    }
    fn echo_u16(x: u16) -> u16 {
        imported::echo_u16(x)
    }
    fn echo_s16(x: i16) -> i16 {
        imported::echo_s16(x)
    }
    fn echo_u32(x: u32) -> u32 {
        imported::echo_u32(x)
    }
    fn echo_s32(x: i32) -> i32 {
        imported::echo_s32(x)
    }
    fn echo_u64(x: u64) -> u64 {
        imported::echo_u64(x)
    }
    fn echo_s64(x: i64) -> i64 {
        imported::echo_s64(x)
    }
    fn echo_f32(x: f32) -> f32 {
        imported::echo_f32(x)
    }
    fn echo_f64(x: f64) -> f64 {
        imported::echo_f64(x)
    }
    fn echo_char(x: char) -> char {
        imported::echo_char(x)
    }
    fn echo_string(x: String) -> String {
        imported::echo_string(&x)
    }
    fn echo_bytes(x: Vec<u8>) -> Vec<u8> {
        imported::echo_bytes(&x)
    }
    fn echo_strings(x: Vec<String>) -> Vec<String> {
        imported::echo_strings(&x)
    }
    fn echo_point(x: exported::Point) -> exported::Point {
        point_out(imported::echo_point(&point_in(x)))
    }
    fn echo_everything(x: exported::Everything) -> exported::Everything {
        let out = imported::echo_everything(&imported::Everything {
            flag: x.flag,
            small: x.small,
            big: x.big,
            ratio: x.ratio,
            letter: x.letter,
            name: x.name,
            bytes: x.bytes,
            nested: x.nested.map(point_in),
            pair: x.pair,
        });
        exported::Everything {
            flag: out.flag,
            small: out.small,
            big: out.big,
            ratio: out.ratio,
            letter: out.letter,
            name: out.name,
            bytes: out.bytes,
            nested: out.nested.map(point_out),
            pair: out.pair,
        }
    }
    fn echo_tuple(x: (u8, String, f64)) -> (u8, String, f64) {
        imported::echo_tuple((x.0, &x.1, x.2))
    }
    fn echo_shape(x: exported::Shape) -> exported::Shape {
        shape_out(imported::echo_shape(&shape_in(x)))
    }
    fn echo_colour(x: exported::Colour) -> exported::Colour {
        colour_out(imported::echo_colour(colour_in(x)))
    }
    fn echo_option(x: Option<Option<u32>>) -> Option<Option<u32>> {
        imported::echo_option(x)
    }
    fn echo_result(x: Result<String, u32>) -> Result<String, u32> {
        imported::echo_result(x.as_deref().map_err(|e| *e))
    }
    fn echo_unit_result(x: Result<(), ()>) -> Result<(), ()> {
        imported::echo_unit_result(x)
    }
    fn echo_perms(x: exported::Perms) -> exported::Perms {
        exported::Perms::from_bits_retain(imported::echo_perms(imported::Perms::from_bits_retain(x.bits())).bits())
    }
    #[allow(clippy::too_many_arguments)]
    fn echo_many(
        a: u8,
        b: i16,
        c: u32,
        d: i64,
        e: f32,
        f: f64,
        g: char,
        h: bool,
        i: String,
        j: Vec<u8>,
        k: u64,
        l: i8,
        m: u16,
        n: i32,
        o: f64,
        p: String,
        q: u32,
    ) -> (u8, i16, u32, i64, f32, f64, char, bool, String, Vec<u8>, u64, i8, u16, i32, f64, String, u32) {
        imported::echo_many(a, b, c, d, e, f, g, h, &i, &j, k, l, m, n, o, &p, q)
    }
}

impl scenarios::Guest for Caller {
    fn counters(n: u32) -> (i64, u32) {
        let all: Vec<Counter> = (0..n).map(|i| Counter::new(i64::from(i))).collect();
        for c in &all {
            c.add(1);
        }
        assert_eq!(counters::live(), n, "every counter is alive in the provider");
        let mut sum = 0;
        for (i, c) in all.into_iter().enumerate() {
            if i % 2 == 0 {
                sum += Counter::consume(c);
            } else {
                sum += c.get();
            }
        }
        assert_eq!(counters::live(), 0, "every counter was dropped");
        (sum, counters::dropped())
    }

    fn merge(a: i64, b: i64) -> i64 {
        let (a, b) = (Counter::new(a), Counter::new(b));
        let merged = Counter::merge(a, &b);
        merged.get()
    }

    fn write_through(text: String) {
        let out = wasip2::cli::stdout::get_stdout();
        pipes::write_to(&out, &text);
    }

    fn read_through(path: String) -> Result<String, String> {
        let stream = pipes::open(&path)?;
        let mut bytes = Vec::new();
        loop {
            match stream.blocking_read(4096) {
                Ok(chunk) => bytes.extend(chunk),
                Err(wasip2::io::streams::StreamError::Closed) => break,
                Err(e) => return Err(format!("read: {e:?}")),
            }
        }
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }

    fn wait_through() {
        let out = wasip2::cli::stdout::get_stdout();
        let ready = out.subscribe();
        pipes::wait(&ready);
    }

    fn crash_through(reason: String) {
        faults::crash(&reason);
    }

    fn spin_through() {
        faults::spin();
    }

    fn env_both(name: String) -> (Option<String>, Option<String>) {
        (faults::env(&name), std::env::var(&name).ok())
    }

    fn exists_both(path: String) -> (bool, bool) {
        (faults::exists(&path), std::fs::metadata(&path).is_ok())
    }
}

export!(Caller);
