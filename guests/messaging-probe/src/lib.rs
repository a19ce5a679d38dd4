//! As a handler: prints every message it gets and, when the message asks for a
//! reply, publishes the body in upper case to the reply subject; a body `sleep
//! <ms>` makes it wait that long first (and print `slept <subject>`). As a command
//! (`wasi:cli/run`): `request <subject> <body> [timeout-ms]` prints the reply;
//! `publish <subject> <body> [reply-to]` publishes; `publish-many <subject> <n>
//! <body>` publishes n times; `publish-size <subject> <bytes> [n]` publishes a
//! body of that many bytes (n times). Bodies over 64 bytes print as their size.

wit_bindgen::generate!({
    path: "../../wit/deps/wasmcloud-messaging",
    world: "wasmcloud:messaging/messaging",
    generate_all,
});

use exports::wasmcloud::messaging::handler::Guest;
use wasmcloud::messaging::consumer;
use wasmcloud::messaging::types::BrokerMessage;

struct Probe;

impl Guest for Probe {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        let body = String::from_utf8_lossy(&msg.body).into_owned();
        if body.len() > 64 {
            println!("got {}: {} bytes", msg.subject, body.len());
        } else {
            println!("got {}: {body}", msg.subject);
        }
        if let Some(ms) = body.strip_prefix("sleep ").and_then(|ms| ms.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            println!("slept {}", msg.subject);
        }
        if let Some(reply) = msg.reply_to {
            let answer = BrokerMessage { subject: reply, body: body.to_uppercase().into_bytes(), reply_to: None };
            consumer::publish(&answer).inspect_err(|e| println!("reply failed: {e}"))?;
        }
        Ok(())
    }
}

impl wasip2::exports::cli::run::Guest for Probe {
    fn run() -> Result<(), ()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["request", subject, body, rest @ ..] => {
                let timeout = rest.first().and_then(|t| t.parse().ok()).unwrap_or(2000);
                match consumer::request(subject, body.as_bytes(), timeout) {
                    Ok(reply) => println!("reply on {}: {}", reply.subject, String::from_utf8_lossy(&reply.body)),
                    Err(e) => {
                        println!("request failed: {e}");
                        return Err(());
                    }
                }
            }
            ["publish", subject, body, rest @ ..] => {
                let reply_to = rest.first().map(|r| r.to_string());
                publish(subject, body.as_bytes().to_vec(), reply_to)?;
                println!("published {subject}");
            }
            ["publish-many", subject, n, body] => {
                for _ in 0..n.parse::<u32>().map_err(|_| println!("not a count: {n}"))? {
                    publish(subject, body.as_bytes().to_vec(), None)?;
                }
                println!("published {n} on {subject}");
            }
            ["publish-size", subject, size, rest @ ..] => {
                let size = size.parse::<usize>().map_err(|_| println!("not a size: {size}"))?;
                let times = rest.first().and_then(|n| n.parse().ok()).unwrap_or(1);
                for _ in 0..times {
                    publish(subject, vec![b'x'; size], None)?;
                }
                println!("published {size} bytes on {subject}");
            }
            other => {
                println!("usage: request|publish|publish-many|publish-size <subject> … (got {other:?})");
                return Err(());
            }
        }
        Ok(())
    }
}

fn publish(subject: &str, body: Vec<u8>, reply_to: Option<String>) -> Result<(), ()> {
    let msg = BrokerMessage { subject: subject.to_string(), body, reply_to };
    consumer::publish(&msg).map_err(|e| println!("publish failed: {e}"))
}

export!(Probe);
wasip2::cli::command::export!(Probe);
