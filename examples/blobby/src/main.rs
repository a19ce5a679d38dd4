//! blobby: a small client of `wasi:blobstore`. Its arguments are a script of steps,
//! run in order:
//!
//! ```text
//! put <container> <object> <file>   store a file (the container is created if needed)
//! get <container> <object> <file>   write an object to a file
//! read <container> <object>         read an object whole into memory, print its size
//! list <container>                  print the container's object names
//! info <container> <object>         print an object's size
//! delete <container> <object>       delete an object
//! ```
//!
//! Bytes are streamed both ways (wasi:io streams), never held whole in memory,
//! except by `read`, which shows the other way to read a value (`consume-sync`).

wit_bindgen::generate!({
    path: ["../../wit/deps/wasi-io", "../../wit/deps/wasi-blobstore", "wit"],
    world: "weft:blobby/blobby",
    with: {
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:blobstore/types@0.2.0-draft": generate,
        "wasi:blobstore/container@0.2.0-draft": generate,
        "wasi:blobstore/blobstore@0.2.0-draft": generate,
    },
});

use std::io::{Read, Write};

use wasi::blobstore::blobstore;
use wasi::blobstore::container::Container;
use wasi::blobstore::types::{IncomingValue, OutgoingValue};

const CHUNK: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut steps = args.iter().map(String::as_str);
    while let Some(step) = steps.next() {
        let mut arg = |what: &str| steps.next().unwrap_or_else(|| fail(&format!("`{step}` needs a {what}")));
        let outcome = match step {
            "put" => put(arg("container"), arg("object"), arg("file")),
            "get" => get(arg("container"), arg("object"), arg("file")),
            "read" => read(arg("container"), arg("object")),
            "list" => list(arg("container")),
            "info" => info(arg("container"), arg("object")),
            "delete" => delete(arg("container"), arg("object")),
            other => Err(format!("unknown step `{other}` (put, get, read, list, info, delete)")),
        };
        if let Err(e) = outcome {
            fail(&format!("{step}: {e}"));
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("blobby: {message}");
    std::process::exit(1);
}

fn container(name: &str) -> Result<Container, String> {
    if blobstore::container_exists(name)? { blobstore::get_container(name) } else { blobstore::create_container(name) }
}

fn put(container_name: &str, object: &str, file: &str) -> Result<(), String> {
    let mut input = std::fs::File::open(file).map_err(|e| format!("open {file}: {e}"))?;
    let container = container(container_name)?;
    let value = OutgoingValue::new_outgoing_value();
    container.write_data(object, &value)?;
    let mut body = value.outgoing_value_write_body().map_err(|()| "no body stream".to_string())?;
    let mut buf = vec![0; CHUNK];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|e| format!("read {file}: {e}"))?;
        if n == 0 {
            break;
        }
        body.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
        total += n as u64;
    }
    Write::flush(&mut body).map_err(|e| format!("flush: {e}"))?;
    drop(body);
    OutgoingValue::finish(value)?;
    println!("put {container_name}/{object}: {total} bytes");
    Ok(())
}

fn get(container_name: &str, object: &str, file: &str) -> Result<(), String> {
    let container = blobstore::get_container(container_name)?;
    let value = container.get_data(object, 0, u64::MAX)?;
    let size = value.size();
    let mut body = IncomingValue::incoming_value_consume_async(value)?;
    let mut output = std::fs::File::create(file).map_err(|e| format!("create {file}: {e}"))?;
    let copied = std::io::copy(&mut body, &mut output).map_err(|e| format!("copy to {file}: {e}"))?;
    if copied != size {
        return Err(format!("read {copied} bytes of {size}"));
    }
    println!("get {container_name}/{object}: {copied} bytes -> {file}");
    Ok(())
}

fn read(container_name: &str, object: &str) -> Result<(), String> {
    let container = blobstore::get_container(container_name)?;
    let value = container.get_data(object, 0, u64::MAX)?;
    let bytes = IncomingValue::incoming_value_consume_sync(value)?;
    println!("read {container_name}/{object}: {} bytes", bytes.len());
    Ok(())
}

fn list(container_name: &str) -> Result<(), String> {
    let names = blobstore::get_container(container_name)?.list_objects()?;
    let mut all = Vec::new();
    loop {
        let (batch, done) = names.read_stream_object_names(100)?;
        all.extend(batch);
        if done {
            break;
        }
    }
    println!("list {container_name}: {}", all.join(" "));
    Ok(())
}

fn info(container_name: &str, object: &str) -> Result<(), String> {
    let meta = blobstore::get_container(container_name)?.object_info(object)?;
    println!("info {container_name}/{object}: {} bytes", meta.size);
    Ok(())
}

fn delete(container_name: &str, object: &str) -> Result<(), String> {
    blobstore::get_container(container_name)?.delete_object(object)?;
    println!("delete {container_name}/{object}: done");
    Ok(())
}
