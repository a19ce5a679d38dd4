//! The provider side of the link tests.

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-io", "../../wit/types"],
    world: "weft:types/types-provider",
    with: {
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
    },
});

use std::cell::{Cell, RefCell};

use exports::weft::types::{counters, faults, pipes, values};
use values::{Colour, Everything, Perms, Point, Shape};
use wasip2::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use wasip2::io::poll::Pollable;
use wasip2::io::streams::{InputStream, OutputStream};

struct Provider;

impl values::Guest for Provider {
    fn echo_bool(x: bool) -> bool {
        x
    }
    fn echo_u8(x: u8) -> u8 {
        x
    }
    fn echo_s8(x: i8) -> i8 {
        x
    }
    fn echo_u16(x: u16) -> u16 {
        x
    }
    fn echo_s16(x: i16) -> i16 {
        x
    }
    fn echo_u32(x: u32) -> u32 {
        x
    }
    fn echo_s32(x: i32) -> i32 {
        x
    }
    fn echo_u64(x: u64) -> u64 {
        x
    }
    fn echo_s64(x: i64) -> i64 {
        x
    }
    fn echo_f32(x: f32) -> f32 {
        x
    }
    fn echo_f64(x: f64) -> f64 {
        x
    }
    fn echo_char(x: char) -> char {
        x
    }
    fn echo_string(x: String) -> String {
        x
    }
    fn echo_bytes(x: Vec<u8>) -> Vec<u8> {
        x
    }
    fn echo_strings(x: Vec<String>) -> Vec<String> {
        x
    }
    fn echo_point(x: Point) -> Point {
        x
    }
    fn echo_everything(x: Everything) -> Everything {
        x
    }
    fn echo_tuple(x: (u8, String, f64)) -> (u8, String, f64) {
        x
    }
    fn echo_shape(x: Shape) -> Shape {
        x
    }
    fn echo_colour(x: Colour) -> Colour {
        x
    }
    fn echo_option(x: Option<Option<u32>>) -> Option<Option<u32>> {
        x
    }
    fn echo_result(x: Result<String, u32>) -> Result<String, u32> {
        x
    }
    fn echo_unit_result(x: Result<(), ()>) -> Result<(), ()> {
        x
    }
    fn echo_perms(x: Perms) -> Perms {
        x
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
        (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q)
    }
}

thread_local! {
    static LIVE: Cell<u32> = const { Cell::new(0) };
    static DROPPED: Cell<u32> = const { Cell::new(0) };
    /// Files opened for streams handed out: a stream must not outlive its file.
    static OPEN_FILES: RefCell<Vec<Descriptor>> = const { RefCell::new(Vec::new()) };
}

pub struct Counter {
    value: Cell<i64>,
}

impl counters::GuestCounter for Counter {
    fn new(start: i64) -> Counter {
        LIVE.set(LIVE.get() + 1);
        Counter { value: Cell::new(start) }
    }
    fn add(&self, delta: i64) {
        self.value.set(self.value.get() + delta);
    }
    fn get(&self) -> i64 {
        self.value.get()
    }
    fn merge(a: counters::Counter, b: counters::CounterBorrow<'_>) -> counters::Counter {
        let sum = a.get::<Counter>().get() + b.get::<Counter>().get();
        drop(a);
        counters::Counter::new(<Counter as counters::GuestCounter>::new(sum))
    }
    fn consume(c: counters::Counter) -> i64 {
        c.get::<Counter>().get()
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        LIVE.set(LIVE.get() - 1);
        DROPPED.set(DROPPED.get() + 1);
    }
}

impl counters::Guest for Provider {
    type Counter = Counter;
    fn live() -> u32 {
        LIVE.get()
    }
    fn dropped() -> u32 {
        DROPPED.get()
    }
}

impl pipes::Guest for Provider {
    fn write_to(out: &OutputStream, text: String) {
        out.blocking_write_and_flush(text.as_bytes()).expect("write to the caller's stream");
    }

    fn open(path: String) -> Result<InputStream, String> {
        let (root, prefix) = wasip2::filesystem::preopens::get_directories()
            .into_iter()
            .find(|(_, mount)| path.starts_with(mount.as_str()))
            .ok_or_else(|| format!("no volume holds {path}"))?;
        let relative = path[prefix.len()..].trim_start_matches('/');
        let file = root
            .open_at(PathFlags::empty(), relative, OpenFlags::empty(), DescriptorFlags::READ)
            .map_err(|e| format!("open {path}: {e:?}"))?;
        let stream = file.read_via_stream(0).map_err(|e| format!("read {path}: {e:?}"))?;
        OPEN_FILES.with_borrow_mut(|files| files.push(file));
        Ok(stream)
    }

    fn wait(p: &Pollable) {
        p.block();
    }
}

impl faults::Guest for Provider {
    fn crash(reason: String) {
        panic!("provider crashed: {reason}");
    }
    fn spin() {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    fn env(name: String) -> Option<String> {
        std::env::var(name).ok()
    }
    fn exists(path: String) -> bool {
        std::fs::metadata(path).is_ok()
    }
}

export!(Provider);
