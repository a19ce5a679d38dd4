//! wasmcloud:messaging: a component handles messages on its subscriptions, another
//! requests and publishes, over the in-process bus and over NATS.

mod common;

use std::time::Duration;

use common::*;
use weft_plugins::messaging::Settings as Messaging;
use weft_testkit::Server;

fn workload() -> String {
    format!(
        r#"name: chat
components:
  - {{ name: responder, source: {MESSAGING_PROBE} }}
  - {{ name: asker, source: {MESSAGING_PROBE}, args: [request, "greet.upper", "hello there"] }}
  - {{ name: teller, source: {MESSAGING_PROBE}, args: [publish, "news.today", "sunny"] }}
hostInterfaces:
  - interface: wasmcloud:messaging/handler@0.2.0
    component: responder
    config: {{ subscriptions: ["greet.*", "news.>"] }}
"#
    )
}

async fn exchange(t: &TestHost) {
    let w = t.start_ok(&workload()).await;
    w.run("asker").await.unwrap();
    let asked = t.stdout("asker");
    assert!(
        asked.len() == 1 && asked[0].starts_with("reply on _INBOX.") && asked[0].ends_with(": HELLO THERE"),
        "{asked:?}"
    );
    w.run("teller").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !t.stdout("responder").contains(&"got news.today: sunny".to_string()) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", t.stdout("responder"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(t.stdout("responder")[0], "got greet.upper: hello there");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_in_process_bus() {
    exchange(&host_with(weft_plugins::Settings { messaging: Messaging::Memory, ..Default::default() }).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_nats() {
    let nats = Server::nats();
    exchange(
        &host_with(weft_plugins::Settings { messaging: Messaging::Nats { url: nats.url() }, ..Default::default() })
            .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_nobody_answers_times_out_in_the_guest() {
    let t = host().await;
    let w = t
        .start_ok(&format!("name: alone\ncomponents:\n  - {{ name: asker, source: {MESSAGING_PROBE}, args: [request, nobody.home, hi] }}\n"))
        .await;
    assert!(w.run("asker").await.is_err());
    assert_eq!(t.stdout("asker"), ["request failed: no reply on `nobody.home` within 2s"]);
}
