//! WASI 0.3 HTTP handlers (async `handle`, on the engine with component-model
//! concurrency) served by the same server, on the same listener, as WASI 0.2
//! ones; their response bodies stream (a task of the guest writes them after
//! `handle` has returned), trailers included.

mod common;

use common::*;
use http_body_util::BodyExt;
use weft_runtime::engine::Concurrency;

#[tokio::test(flavor = "multi_thread")]
async fn wasi_0_2_and_0_3_handlers_answer_on_one_listener() {
    let t = host().await;
    let old = t
        .start_ok(&format!(
            "name: v2\ncomponents:\n  - {{ name: old, source: {HTTP_PROBE} }}\nhostInterfaces:\n{}",
            serve("old", r#"[{ path: "/v2/*" }]"#)
        ))
        .await;
    let new = t
        .start_ok(&format!(
            "name: v3\ncomponents:\n  - {{ name: new, source: {HTTP_P3} }}\nhostInterfaces:\n{}",
            serve_p3("new", r#"[{ path: "/v3/*" }]"#)
        ))
        .await;
    assert_eq!(old.status().concurrency, Some(Concurrency::Off));
    assert_eq!(new.status().concurrency, Some(Concurrency::On));
    let base = t.base().await;
    assert_eq!(get(&format!("{base}/v2/x")).await, (200, "old GET /v2/x\n".into()));

    // HTTP/1.1 sends trailers to a client that says it takes them.
    let request = http::Request::get(format!("{base}/v3/hello"))
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("the handler's trailers");
    assert_eq!(trailers.get("x-done").map(|v| v.as_bytes()), Some(&b"yes"[..]));
    assert_eq!(&collected.to_bytes()[..], b"hello from WASI 0.3\n");

    // Many at once, each in a fresh instance, all answered.
    let url = format!("{base}/v3/again");
    let answers = futures_util::future::join_all((0..20).map(|_| get(&url))).await;
    assert!(answers.iter().all(|a| *a == (200, "hello from WASI 0.3\n".to_string())), "{answers:?}");
}

/// WASI 0.3's `client.send` goes through the component's outgoing-HTTP policy,
/// configured as for WASI 0.2 (here under `wasi:http/client`): the name must be
/// allowed, and a loopback address granted.
#[tokio::test(flavor = "multi_thread")]
async fn wasi_0_3_outgoing_requests_are_held_to_the_allow_list() {
    let t = host().await;
    let fetcher = |name: &str, settings: &str| {
        let mut entries = serve_p3(name, &format!(r#"[{{ path: "/{name}/*" }}]"#));
        if !settings.is_empty() {
            entries += &format!(
                "  - {{ interface: \"wasi:http/client@0.3.0\", component: {name}, config: {{ {settings} }} }}\n"
            );
        }
        (format!("  - {{ name: {name}, source: {HTTP_P3} }}\n"), entries)
    };
    let fetchers = [
        fetcher("nothing", ""),
        fetcher("nameonly", r#"allowedHosts: ["localhost"]"#),
        fetcher("granted", r#"allowedHosts: ["localhost"], allowedAddresses: ["127.0.0.1"]"#),
    ];
    let components: String = fetchers.iter().map(|(c, _)| c.as_str()).collect();
    let entries: String = fetchers.iter().map(|(_, e)| e.as_str()).collect();
    t.start_ok(&format!(
        "name: fetch\ncomponents:\n{components}  - {{ name: target, source: {HTTP_PROBE} }}\nhostInterfaces:\n{entries}{}",
        serve("target", r#"[{ path: "/target/*" }]"#)
    ))
    .await;
    let base = t.base().await;
    let port = t.http.local_addrs().await[0].port();
    let fetch = |who: &str| format!("{base}/{who}/fetch?http://localhost:{port}/target/x");
    for denied in ["nothing", "nameonly"] {
        let (status, answer) = get(&fetch(denied)).await;
        assert_eq!(status, 200);
        assert!(answer.starts_with("send: ") && answer.contains("HttpRequestDenied"), "{denied}: {answer}");
    }
    assert_eq!(get(&fetch("granted")).await, (200, "status 200: target GET /target/x\n\n".into()));
}

/// A 0.3 handler is held to its component's limits like a 0.2 one: one that
/// traps, or runs past its `timeout`, is a 500, and the server carries on.
#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_handler_that_traps_or_overruns_is_a_500_and_the_server_carries_on() {
    let t = host().await;
    t.start_ok(&format!(
        "name: limits\ncomponents:\n  - {{ name: h, source: {HTTP_P3}, limits: {{ timeout: 300ms, maxConcurrent: 1 }} }}\nhostInterfaces:\n{}",
        serve_p3("h", r#"[{ path: "/*" }]"#)
    ))
    .await;
    let base = t.base().await;
    assert_eq!(get(&format!("{base}/trap")).await.0, 500);
    let started = std::time::Instant::now();
    assert_eq!(get(&format!("{base}/sleep?ms=5000")).await.0, 500);
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    // The one concurrency slot is free again, and a request within the timeout is answered.
    assert_eq!(get(&format!("{base}/sleep?ms=10")).await, (200, "slept 10 ms\n".into()));
}

/// A 0.3 handler whose task traps half-way through the body it streams: the
/// answer must not reach the client as if whole (the body fails, or the
/// connection closes before the head went out).
#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_handler_trapping_half_way_through_its_body_ends_it_with_an_error() {
    let t = host().await;
    t.start_ok(&format!(
        "name: mid-body\ncomponents:\n  - {{ name: h, source: {HTTP_P3} }}\nhostInterfaces:\n{}",
        serve_p3("h", r#"[{ path: "/*" }]"#)
    ))
    .await;
    let base = t.base().await;
    for _ in 0..3 {
        assert_never_whole(&format!("{base}/trap-mid-body")).await;
    }
    assert_eq!(get(&format!("{base}/after")).await, (200, "hello from WASI 0.3\n".into()));
}

/// A request body streams into a 0.3 guest, which reads it a chunk at a time
/// and writes each back: 4 MiB come back byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_wasi_0_3_handler_reads_a_streamed_request_body() {
    let t = host().await;
    t.start_ok(&format!(
        "name: echo\ncomponents:\n  - {{ name: echo, source: {HTTP_P3} }}\nhostInterfaces:\n{}",
        serve_p3("echo", r#"[{ path: "/*" }]"#)
    ))
    .await;
    const TOTAL: usize = 4 << 20;
    let byte = |i: usize| (i.wrapping_mul(31) >> 3) as u8;
    let chunks = futures_util::stream::iter((0..TOTAL).step_by(100_000).map(move |start| {
        let chunk: Vec<u8> = (start..(start + 100_000).min(TOTAL)).map(byte).collect();
        Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from(chunk)))
    }));
    let request =
        http::Request::post(format!("{}/echo", t.base().await)).body(http_body_util::StreamBody::new(chunks)).unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.len(), TOTAL);
    assert!(body.iter().enumerate().all(|(i, b)| *b == byte(i)), "the echo differs");
}
