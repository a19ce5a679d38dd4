//! As a handler: prints every message it gets and, when the message asks for a
//! reply, publishes the body in upper case to the reply subject. As a command
//! (`wasi:cli/run`): `request <subject> <body>` prints the reply; `publish
//! <subject> <body>` publishes.

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
        println!("got {}: {body}", msg.subject);
        if let Some(reply) = msg.reply_to {
            let answer = BrokerMessage { subject: reply, body: body.to_uppercase().into_bytes(), reply_to: None };
            consumer::publish(&answer)?;
        }
        Ok(())
    }
}

impl wasip2::exports::cli::run::Guest for Probe {
    fn run() -> Result<(), ()> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["request", subject, body] => match consumer::request(subject, body.as_bytes(), 2000) {
                Ok(reply) => println!("reply on {}: {}", reply.subject, String::from_utf8_lossy(&reply.body)),
                Err(e) => {
                    println!("request failed: {e}");
                    return Err(());
                }
            },
            ["publish", subject, body] => {
                let msg =
                    BrokerMessage { subject: subject.to_string(), body: body.as_bytes().to_vec(), reply_to: None };
                consumer::publish(&msg).map_err(|e| println!("publish failed: {e}"))?;
                println!("published {subject}");
            }
            other => {
                println!("usage: request|publish <subject> <body> (got {other:?})");
                return Err(());
            }
        }
        Ok(())
    }
}

export!(Probe);
wasip2::cli::command::export!(Probe);
