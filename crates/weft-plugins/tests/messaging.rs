//! wasmcloud:messaging: a component handles messages on its subscriptions, another
//! requests and publishes, over the in-process bus and over NATS; guests reach only
//! the subjects their manifest grants.

mod common;

use std::time::{Duration, Instant};

use common::*;
use weft_plugins::messaging::Settings as Messaging;
use weft_runtime::HostApi;
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
  - interface: wasmcloud:messaging/consumer@0.2.0
    component: asker
    config: {{ request: ["greet.*"] }}
  - interface: wasmcloud:messaging/consumer@0.2.0
    component: teller
    config: {{ publish: ["news.>"] }}
"#
    )
}

/// A request and its reply (the responder publishes to the request's inbox, which
/// no grant names), and a publish to a subscriber.
async fn exchange(t: &TestHost) {
    let w = t.start_ok(&workload()).await;
    w.run("asker").await.unwrap();
    let asked = t.stdout("asker");
    assert!(
        asked.len() == 1 && asked[0].starts_with("reply on _INBOX.") && asked[0].ends_with(": HELLO THERE"),
        "{asked:?}"
    );
    w.run("teller").await.unwrap();
    wait_for(t, "responder", "got news.today: sunny").await;
    assert_eq!(t.stdout("responder")[0], "got greet.upper: hello there");
}

fn memory() -> weft_plugins::Settings {
    weft_plugins::Settings { messaging: Messaging::Memory, ..Default::default() }
}

fn over(nats: &Server) -> weft_plugins::Settings {
    weft_plugins::Settings { messaging: Messaging::Nats { url: nats.url() }, ..Default::default() }
}

async fn wait_for(t: &TestHost, component: &str, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.stdout(component).iter().any(|l| l == line) {
        assert!(Instant::now() < deadline, "no `{line}` from {component}: {:?}", t.stdout(component));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_in_process_bus() {
    exchange(&host_with(memory()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_nats() {
    let nats = Server::nats();
    exchange(&host_with(over(&nats)).await).await;
}

/// Components named `<name>` each running the probe with `args`, granted `grants`
/// (a consumer `config`), in workload `name`.
fn commands(name: &str, grants: &str, runs: &[(&str, &str)]) -> String {
    let mut yaml = format!("name: {name}\ncomponents:\n");
    for (component, args) in runs {
        yaml.push_str(&format!("  - {{ name: {component}, source: {MESSAGING_PROBE}, args: {args} }}\n"));
    }
    yaml.push_str(&format!(
        "hostInterfaces:\n  - {{ interface: wasmcloud:messaging/consumer@0.2.0, config: {grants} }}\n"
    ));
    yaml
}

/// Runs a component expected to fail and returns what it printed.
async fn refused(t: &TestHost, w: &weft_runtime::RunningWorkload, component: &str) -> String {
    assert!(w.run(component).await.is_err(), "{component} succeeded: {:?}", t.stdout(component));
    t.stdout(component).join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn guests_reach_only_the_subjects_granted() {
    let nats = Server::nats();
    let t = host_with(over(&nats)).await;
    // JetStream answers this request when it reaches the server: it lists the streams.
    let w = t
        .start_ok(&commands(
            "prober",
            r#"{ publish: ["news.>"], request: ["greet.*"] }"#,
            &[
                ("js-request", r#"[request, "$JS.API.STREAM.LIST", "{}"]"#),
                ("js-publish", r#"[publish, "$JS.API.STREAM.LIST", "{}"]"#),
                ("kv-purge", r#"[publish, "$JS.API.STREAM.PURGE.KV_prod_shop_carts", ""]"#),
                ("other", r#"[publish, "weather.today", "rain"]"#),
                ("not-requestable", r#"[request, "news.today", "hi"]"#),
                ("control", r#"[publish, "runtime.host.ping", "hi"]"#),
                ("inbox", r#"[publish, "_INBOX.abc.1", "forged reply"]"#),
                ("wildcard", r#"[publish, "news.*", "hi"]"#),
                ("empty-token", r#"[publish, "news..today", "hi"]"#),
                ("spaces", r#"[request, "greet. upper", "hi"]"#),
                ("reply-elsewhere", r#"[publish, "news.today", "hi", "orders.all"]"#),
                ("granted", r#"[publish, "news.today", "sunny"]"#),
            ],
        ))
        .await;
    let js = refused(&t, &w, "js-request").await;
    assert_eq!(
        js,
        "request failed: not allowed to send requests to `$JS.API.STREAM.LIST`: subjects starting with `$` are \
         reserved (JetStream, system and account APIs)"
    );
    assert!(refused(&t, &w, "js-publish").await.starts_with("publish failed: not allowed to publish to `$JS.API"));
    assert!(refused(&t, &w, "kv-purge").await.starts_with("publish failed: not allowed to publish to `$JS.API"));
    assert_eq!(
        refused(&t, &w, "other").await,
        r#"publish failed: not allowed to publish to `weather.today`: it matches none of the granted patterns ["news.>"]"#
    );
    assert!(refused(&t, &w, "not-requestable").await.contains("none of the granted patterns [\"greet.*\"]"));
    assert!(refused(&t, &w, "control").await.contains("the host's control subjects"));
    assert!(refused(&t, &w, "inbox").await.contains("`_INBOX` subjects are reply inboxes"));
    assert!(refused(&t, &w, "wildcard").await.contains("wildcards (`*`, `>`) are for subscriptions and grants only"));
    assert!(refused(&t, &w, "empty-token").await.contains("empty token"));
    assert!(refused(&t, &w, "spaces").await.contains("cannot contain spaces"));
    assert!(
        refused(&t, &w, "reply-elsewhere").await.contains("a reply-to must be a subject the component subscribes to")
    );
    w.run("granted").await.unwrap();
    assert_eq!(t.stdout("granted"), ["published news.today"]);

    // Without a grant, nothing: the default.
    let w = t.start_ok(&commands("ungranted", "{}", &[("plain", r#"[publish, "news.today", "sunny"]"#)])).await;
    assert!(refused(&t, &w, "plain").await.contains("the manifest grants no subjects for this"));
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_cannot_grant_the_hosts_subjects() {
    let t = host().await;
    let cases = [
        (r#"{ publish: [">"] }"#, "`publish` pattern `>` is refused: a pattern must start with a literal token"),
        (r#"{ request: ["*.x"] }"#, "`request` pattern `*.x` is refused: a pattern must start with a literal token"),
        (r#"{ publish: ["$JS.>"] }"#, "`publish` pattern `$JS.>` is refused: subjects starting with `$` are reserved"),
        (r#"{ request: ["$SYS.REQ.>"] }"#, "subjects starting with `$` are reserved"),
        (
            r#"{ publish: ["_INBOX.>"] }"#,
            "`publish` pattern `_INBOX.>` is refused: `_INBOX` subjects are reply inboxes",
        ),
        (r#"{ publish: ["_INBOX.*"] }"#, "`_INBOX` subjects are reply inboxes"),
        (r#"{ publish: ["weft.>"] }"#, "the host's control subjects"),
        (r#"{ request: ["runtime.host.*"] }"#, "the host's control subjects"),
        (r#"{ publish: ["wasmbus.ctl.>"] }"#, "the host's control subjects"),
        (r#"{ publish: ["a..b"] }"#, "empty token"),
        (r#"{ publish: ["a.>.b"] }"#, "`>` can only be the last token"),
        (r#"{ publish: ["a.b*"] }"#, "wildcards only as whole tokens"),
        (r#"{ publish: ["a b"] }"#, "cannot contain spaces"),
        (r#"{ publish: "a" }"#, "invalid type"),
        (r#"{ subscribe: ["a"] }"#, "unknown field `subscribe`"),
    ];
    for (i, (grants, expected)) in cases.iter().enumerate() {
        let yaml = commands(&format!("w{i}"), grants, &[("c", "[publish, a, b]")]);
        let error = t.start(&yaml).await.err().unwrap_or_else(|| panic!("{grants} accepted")).to_string();
        assert!(error.contains(expected), "{grants}: {error}");
    }
    // Subscriptions are checked the same way.
    for (subscription, expected) in [
        (">", "a pattern must start with a literal token"),
        ("$JS.API.>", "subjects starting with `$` are reserved"),
        ("_INBOX.>", "`_INBOX` subjects are reply inboxes"),
        (
            "runtime.operator.*",
            "subjects starting with `weft.`, `runtime.` or `wasmbus.` are the host's control subjects",
        ),
    ] {
        let yaml = format!(
            "name: listener\ncomponents:\n  - {{ name: h, source: {MESSAGING_PROBE} }}\nhostInterfaces:\n  - {{ interface: wasmcloud:messaging/handler@0.2.0, config: {{ subscriptions: [\"{subscription}\"] }} }}\n"
        );
        let error = t.start(&yaml).await.err().unwrap_or_else(|| panic!("{subscription} accepted")).to_string();
        assert!(error.contains(&format!("`subscriptions` pattern `{subscription}` is refused: {expected}")), "{error}");
    }
    let yaml = format!(
        "name: listener\ncomponents:\n  - {{ name: h, source: {MESSAGING_PROBE} }}\nhostInterfaces:\n  - {{ interface: wasmcloud:messaging/handler@0.2.0, config: {{ subscriptions: [a], queue: \"a b\" }} }}\n"
    );
    let error = t.start(&yaml).await.err().expect("a queue group with a space is refused").to_string();
    assert!(error.contains("queue group `a b` is refused: a subject cannot contain spaces"), "{error}");
}

/// A handler answers the reply-to of the message it handles, whatever inbox that
/// is, but never a reserved subject someone put there.
#[tokio::test(flavor = "multi_thread")]
async fn handlers_reply_to_inboxes_but_not_to_reserved_subjects() {
    let nats = Server::nats();
    let t = host_with(over(&nats)).await;
    let _w = t
        .start_ok(&format!(
            "name: answering\ncomponents:\n  - {{ name: responder, source: {MESSAGING_PROBE} }}\nhostInterfaces:\n  - {{ interface: wasmcloud:messaging/handler@0.2.0, config: {{ subscriptions: [\"greet.*\"] }} }}\n"
        ))
        .await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let reply = client.request("greet.outside", "from afar".into()).await.unwrap();
    assert_eq!(&reply.payload[..], b"FROM AFAR");
    // An outside client asks for the reply on a JetStream API subject.
    client.publish_with_reply("greet.deputy", "$JS.API.STREAM.LIST", "{}".into()).await.unwrap();
    client.flush().await.unwrap();
    wait_for(&t, "responder", "got greet.deputy: {}").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.stdout("responder").iter().any(|l| l.starts_with("reply failed:")) {
        assert!(Instant::now() < deadline, "{:?}", t.stdout("responder"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = t.stdout("responder").into_iter().find(|l| l.starts_with("reply failed:")).unwrap();
    assert!(failed.contains("not allowed to publish to `$JS.API.STREAM.LIST`"), "{failed}");
}

/// Two workloads share a queue group; once one stops, every message goes to the other.
async fn queue_group_after_unbind(t: &TestHost) {
    let member = |name: &str| {
        format!(
            "name: {name}\ncomponents:\n  - {{ name: {name}, source: {MESSAGING_PROBE} }}\nhostInterfaces:\n  - {{ interface: wasmcloud:messaging/handler@0.2.0, config: {{ subscriptions: [\"jobs.*\"], queue: workers }} }}\n"
        )
    };
    let a = t.start_ok(&member("worker-a")).await;
    let _b = t.start_ok(&member("worker-b")).await;
    t.host.workload_stop(a.id()).await.unwrap();
    let sender = t
        .start_ok(&commands("sender", r#"{ publish: ["jobs.>"] }"#, &[("sender", "[publish-many, jobs.run, 20, job]")]))
        .await;
    sender.run("sender").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.stdout("worker-b").len() < 20 {
        assert!(
            Instant::now() < deadline,
            "worker-b got {} of 20: {:?}",
            t.stdout("worker-b").len(),
            t.stdout("worker-a")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(t.stdout("worker-a").is_empty(), "{:?}", t.stdout("worker-a"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_queue_member_gets_nothing_more_over_nats() {
    let nats = Server::nats();
    queue_group_after_unbind(&host_with(over(&nats)).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_queue_member_gets_nothing_more_in_process() {
    queue_group_after_unbind(&host_with(memory()).await).await;
}

/// A request nobody subscribes to fails at once, not after its timeout (20 s here).
async fn no_responders(t: &TestHost) {
    let w = t
        .start_ok(&commands("alone", r#"{ request: ["nobody.>"] }"#, &[("asker", "[request, nobody.home, hi, 20000]")]))
        .await;
    let started = Instant::now();
    assert!(w.run("asker").await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(t.stdout("asker"), ["request failed: no responders on `nobody.home`"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_nobody_serves_fails_at_once_over_nats() {
    let nats = Server::nats();
    no_responders(&host_with(over(&nats)).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_nobody_serves_fails_at_once_in_process() {
    no_responders(&host_with(memory()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_nobody_answers_times_out_in_the_guest() {
    let t = host().await;
    let w = t
        .start_ok(&format!(
            "name: slow\ncomponents:\n  - {{ name: sleeper, source: {MESSAGING_PROBE} }}\n  - {{ name: asker, source: {MESSAGING_PROBE}, args: [request, slow.home, \"sleep 2000\", 300] }}\nhostInterfaces:\n  - {{ interface: wasmcloud:messaging/handler@0.2.0, component: sleeper, config: {{ subscriptions: [slow.home] }} }}\n  - {{ interface: wasmcloud:messaging/consumer@0.2.0, component: asker, config: {{ request: [slow.home] }} }}\n"
        ))
        .await;
    assert!(w.run("asker").await.is_err());
    assert_eq!(t.stdout("asker"), ["request failed: no reply on `slow.home` within 300ms"]);
}

/// Messages of one subscription are handled concurrently, at most `maxConcurrent`
/// at a time: four 1.5 s messages with two slots take two rounds, not four.
async fn concurrent_deliveries(t: &TestHost) {
    let w = t
        .start_ok(&format!(
            "name: busy\ncomponents:\n  - {{ name: worker, source: {MESSAGING_PROBE}, limits: {{ maxConcurrent: 2 }} }}\n  - {{ name: sender, source: {MESSAGING_PROBE}, args: [publish-many, work.x, 4, sleep 1500] }}\nhostInterfaces:\n  - {{ interface: wasmcloud:messaging/handler@0.2.0, component: worker, config: {{ subscriptions: [work.x] }} }}\n  - {{ interface: wasmcloud:messaging/consumer@0.2.0, component: sender, config: {{ publish: [work.x] }} }}\n"
        ))
        .await;
    let started = Instant::now();
    w.run("sender").await.unwrap();
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while t.stdout("worker").iter().filter(|l| l.starts_with("slept")).count() < 4 {
        assert!(Instant::now() < deadline, "{:?}", t.stdout("worker"));
        most = most.max(w.status().components[0].in_flight);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "more than two at once: {took:?}");
    assert!(took < Duration::from_secs(5), "one at a time: {took:?}");
    assert_eq!(most, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_handled_concurrently_within_max_concurrent_in_process() {
    concurrent_deliveries(&host_with(memory()).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_handled_concurrently_within_max_concurrent_over_nats() {
    let nats = Server::nats();
    concurrent_deliveries(&host_with(over(&nats)).await).await;
}

/// A body larger than the bus carries is refused to the guest.
async fn oversized(t: &TestHost, limit: usize) {
    let w = t
        .start_ok(&commands(
            "big",
            r#"{ publish: ["big.>"] }"#,
            &[
                ("fits", &format!("[publish-size, big.one, {limit}]")),
                ("too-big", &format!("[publish-size, big.one, {}]", limit + 1)),
            ],
        ))
        .await;
    w.run("fits").await.unwrap();
    assert_eq!(
        refused(t, &w, "too-big").await,
        format!(
            "publish failed: the message body has {} bytes, more than the {limit} bytes a message may carry",
            limit + 1
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_bounded_in_process() {
    oversized(&host_with(memory()).await, weft_plugins::messaging::MEMORY_MAX_BODY).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_bounded_by_the_servers_max_payload() {
    let nats = Server::nats();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let max_payload = client.server_info().max_payload;
    assert!(max_payload > 0);
    oversized(&host_with(over(&nats)).await, max_payload).await;
}

/// While its only slot is busy, a subscription holds no more body bytes than the
/// component's memory limit (8 MiB: eight 1 MB messages), and drops the rest.
#[tokio::test(flavor = "multi_thread")]
async fn waiting_messages_are_bounded_by_the_components_memory() {
    let t = host_with(memory()).await;
    let w = t
        .start_ok(&format!(
            "name: flooded\ncomponents:\n  - {{ name: worker, source: {MESSAGING_PROBE}, limits: {{ maxConcurrent: 1, memory: 8MiB }} }}\n  - {{ name: slow, source: {MESSAGING_PROBE}, args: [publish, flood.x, sleep 3000] }}\n  - {{ name: flood, source: {MESSAGING_PROBE}, args: [publish-size, flood.x, 1000000, 20] }}\nhostInterfaces:\n  - {{ interface: wasmcloud:messaging/handler@0.2.0, component: worker, config: {{ subscriptions: [flood.x] }} }}\n  - {{ interface: wasmcloud:messaging/consumer@0.2.0, config: {{ publish: [flood.x] }} }}\n"
        ))
        .await;
    w.run("slow").await.unwrap();
    wait_for(&t, "worker", "got flood.x: sleep 3000").await;
    w.run("flood").await.unwrap();
    wait_for(&t, "worker", "slept flood.x").await;
    let big = || t.stdout("worker").iter().filter(|l| *l == "got flood.x: 1000000 bytes").count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while big() < 8 {
        assert!(Instant::now() < deadline, "{:?}", t.stdout("worker"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(big(), 8);
}
