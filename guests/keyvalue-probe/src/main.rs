//! Goes through every function of `wasi:keyvalue` 0.2.0-draft (store, atomics,
//! batch) on the bucket named by its first argument, and prints one line per step:
//! `<step>: <what it saw>`. It judges nothing itself; the test holds the
//! expectations, so that every backend is held to the same transcript.
//!
//! `batch <n> <bucket>` (for the benchmark): sets, gets and deletes `n` keys with
//! one call of `batch` each, and prints `batch <n>: ok` if every value came back.
//!
//! `hold <n> <bucket>` sets the key `big` to `n` bytes; `fetch <bucket>` reads it
//! with `get` and `get-many` and prints the sizes or the errors' messages whole.

wit_bindgen::generate!({ path: "../../wit/deps/wasi-keyvalue", world: "wasi:keyvalue/imports" });

use wasi::keyvalue::store::{self, Bucket, Error};
use wasi::keyvalue::{atomics, batch};

fn error(e: &Error) -> String {
    match e {
        Error::NoSuchStore => "error no-such-store".into(),
        Error::AccessDenied => "error access-denied".into(),
        // Messages name the backend; the transcript keeps only the kind.
        Error::Other(_) => "error other".into(),
    }
}

fn show<T>(result: Result<T, Error>, ok: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        Err(e) => error(&e),
    }
}

fn value(v: Option<Vec<u8>>) -> String {
    match v {
        None => "none".into(),
        Some(bytes) => format!("{:?}", String::from_utf8_lossy(&bytes)),
    }
}

fn unit(_: ()) -> String {
    "ok".into()
}

/// Every key of the bucket, page by page; also prints the page sizes.
fn all_keys(bucket: &Bucket, step: &str) -> Vec<String> {
    let (mut keys, mut pages, mut cursor) = (Vec::new(), Vec::new(), None);
    loop {
        match bucket.list_keys(cursor) {
            Ok(page) => {
                pages.push(page.keys.len().to_string());
                keys.extend(page.keys);
                cursor = page.cursor;
                if cursor.is_none() {
                    break;
                }
            }
            Err(e) => {
                println!("{step}: {}", error(&e));
                return keys;
            }
        }
    }
    println!("{step}: {} keys in pages of {}", keys.len(), pages.join("+"));
    keys
}

fn batch(n: usize, bucket: &str) -> Result<(), Error> {
    let bucket = store::open(bucket)?;
    let entries: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("key-{i}"), vec![i as u8; 64])).collect();
    let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
    batch::set_many(&bucket, &entries)?;
    let values = batch::get_many(&bucket, &keys)?;
    batch::delete_many(&bucket, &keys)?;
    let all_back = values.into_iter().zip(&entries).all(|(got, (k, v))| got.as_ref() == Some(&(k.clone(), v.clone())));
    match all_back {
        true => Ok(()),
        false => Err(Error::Other("values differ".into())),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, n, bucket] = &args[..]
        && mode == "batch"
    {
        let n: usize = n.parse().expect("batch <n> <bucket>");
        return println!("batch {n}: {}", show(batch(n, bucket), unit));
    }
    if let [_, mode, n, bucket] = &args[..]
        && mode == "hold"
    {
        let big = vec![7u8; n.parse().expect("hold <n> <bucket>")];
        let set = store::open(bucket).and_then(|b| b.set("big", &big));
        return println!("hold {n}: {}", show(set, unit));
    }
    if let [_, mode, bucket] = &args[..]
        && mode == "fetch"
    {
        let message = |e: Error| match e {
            Error::Other(message) => message,
            other => error(&other),
        };
        let bucket = store::open(bucket).expect("open");
        let size = |v: Option<Vec<u8>>| v.map_or("none".into(), |v| format!("{} bytes", v.len()));
        match bucket.get("big") {
            Ok(v) => println!("get big: {}", size(v)),
            Err(e) => println!("get big: {}", message(e)),
        }
        match batch::get_many(&bucket, &["big".to_string()]) {
            Ok(mut v) => println!("get-many big: {}", size(v.pop().flatten().map(|(_, v)| v))),
            Err(e) => println!("get-many big: {}", message(e)),
        }
        return;
    }
    let name = args.get(1).cloned().unwrap_or_else(|| "probe".into());
    println!("open empty name: {}", show(store::open(""), |_| "opened".into()));
    let bucket = match store::open(&name) {
        Ok(bucket) => bucket,
        Err(e) => return println!("open: {}", error(&e)),
    };

    // store: one key through its life.
    println!("get absent: {}", show(bucket.get("a"), value));
    println!("exists absent: {}", show(bucket.exists("a"), |b| b.to_string()));
    println!("set: {}", show(bucket.set("a", b"one"), unit));
    println!("get: {}", show(bucket.get("a"), value));
    println!("exists: {}", show(bucket.exists("a"), |b| b.to_string()));
    println!("overwrite: {}", show(bucket.set("a", b"two"), unit));
    println!("get overwritten: {}", show(bucket.get("a"), value));
    println!("set empty value: {}", show(bucket.set("a", b""), unit));
    println!("get empty value: {}", show(bucket.get("a"), value));
    println!("delete: {}", show(bucket.delete("a"), unit));
    println!("get deleted: {}", show(bucket.get("a"), value));
    println!("exists deleted: {}", show(bucket.exists("a"), |b| b.to_string()));
    println!("delete again: {}", show(bucket.delete("a"), unit));
    println!("empty key: {}", show(bucket.set("", b"x"), unit));

    // Keys are any non-empty strings; values any bytes.
    let long = "k".repeat(300) + "/é";
    let odd = ["with space", "ключ", "a/b", "a.b", ".hidden", "%41", "_41", "*", ">", long.as_str()];
    for key in odd {
        let label: String = key.chars().take(12).collect();
        let round_trip = bucket.set(key, key.as_bytes()).and_then(|()| bucket.get(key));
        println!("key {label:?}: {}", show(round_trip, |v| (v.as_deref() == Some(key.as_bytes())).to_string()));
    }
    let binary: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let round_trip = bucket.set("binary", &binary).and_then(|()| bucket.get("binary"));
    println!("64 KiB binary value: {}", show(round_trip, |v| (v == Some(binary)).to_string()));
    let mut expected: Vec<String> = odd.iter().map(|k| k.to_string()).chain(["binary".to_string()]).collect();
    expected.sort();
    println!("odd keys listed sorted: {}", all_keys(&bucket, "list odd keys") == expected);
    println!("delete odd keys: {}", show(batch::delete_many(&bucket, &expected), unit));

    // batch, and listing past one page.
    let many: Vec<(String, Vec<u8>)> = (0..2500).map(|i| (format!("k{i:04}"), i.to_string().into_bytes())).collect();
    println!("set-many 2500: {}", show(batch::set_many(&bucket, &many), unit));
    let listed = all_keys(&bucket, "list 2500");
    let names: Vec<String> = many.iter().map(|(k, _)| k.clone()).collect();
    println!("listed in order: {}", listed == names);
    let some = ["k0000".to_string(), "missing".to_string(), "k2499".to_string()];
    let got = batch::get_many(&bucket, &some);
    println!(
        "get-many: {}",
        show(got, |values| {
            let shown: Vec<String> = values
                .into_iter()
                .map(|v| v.map_or("none".into(), |(k, v)| format!("{k}={}", String::from_utf8_lossy(&v))))
                .collect();
            shown.join(" ")
        })
    );
    println!("delete-many: {}", show(batch::delete_many(&bucket, &names[..2000]), unit));
    let left = all_keys(&bucket, "list after delete-many");
    println!("left: {}..{}", left.first().map_or("", String::as_str), left.last().map_or("", String::as_str));
    println!("delete-many rest: {}", show(batch::delete_many(&bucket, &names[2000..]), unit));
    let twice = [("dup".to_string(), b"first".to_vec()), ("dup".to_string(), b"last".to_vec())];
    let got = batch::set_many(&bucket, &twice).and_then(|()| bucket.get("dup"));
    println!("set-many with a key twice: {}", show(got, value));
    println!("delete dup: {}", show(bucket.delete("dup"), unit));
    all_keys(&bucket, "list emptied");

    // atomics
    println!("increment absent: {}", show(atomics::increment(&bucket, "n", 5), |n| n.to_string()));
    println!("increment: {}", show(atomics::increment(&bucket, "n", 1 << 40), |n| n.to_string()));
    println!("counter reads as: {}", show(bucket.get("n"), value));
    println!("set counter: {}", show(bucket.set("n", b"41"), unit));
    println!("increment set counter: {}", show(atomics::increment(&bucket, "n", 1), |n| n.to_string()));
    println!("set text: {}", show(bucket.set("t", b"text"), unit));
    println!("increment text: {}", show(atomics::increment(&bucket, "t", 1), |n| n.to_string()));
    println!("text unchanged: {}", show(bucket.get("t"), value));
    // What Redis can hold is what every backend holds: no sign, no leading zero,
    // nothing past i64::MAX.
    println!("set negative: {}", show(bucket.set("m", b"-5"), unit));
    println!("increment negative: {}", show(atomics::increment(&bucket, "m", 1), |n| n.to_string()));
    println!("set leading zero: {}", show(bucket.set("m", b"007"), unit));
    println!("increment leading zero: {}", show(atomics::increment(&bucket, "m", 1), |n| n.to_string()));
    println!("set largest: {}", show(bucket.set("m", i64::MAX.to_string().as_bytes()), unit));
    println!("increment past largest: {}", show(atomics::increment(&bucket, "m", 1), |n| n.to_string()));
    println!("largest unchanged: {}", show(bucket.get("m"), value));
    println!("increment by more than largest: {}", show(atomics::increment(&bucket, "z", u64::MAX), |n| n.to_string()));
    println!("delete counters: {}", show(batch::delete_many(&bucket, &["m".into(), "z".into()]), unit));
}
