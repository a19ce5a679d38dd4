//! How the NATS backends (key-value, blobstore, messaging) connect: the host
//! starts whether or not the server is up, the client reconnects on its own, and
//! while it is not connected every operation fails at once with an error saying
//! so, instead of waiting for a connection that may never come.

use std::time::Duration;

use async_nats::connection::State;

/// How long starting waits for the first connection before going on without it.
const FIRST_CONNECTION: Duration = Duration::from_secs(2);

/// A client of the server at `url`, for the plugin `plugin`.
pub async fn connect(url: &str, plugin: &str) -> anyhow::Result<async_nats::Client> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(FIRST_CONNECTION)
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("{plugin}: cannot connect to NATS at {url}: {e}"))?;
    // A flush completes once the client has connected and the server answered.
    let _ = tokio::time::timeout(FIRST_CONNECTION, client.flush()).await;
    if client.connection_state() != State::Connected {
        tracing::warn!(%url, plugin, "NATS is not reachable; its operations fail until it is (retrying meanwhile)");
    }
    Ok(client)
}

/// Whether operations can go to the server now.
pub fn ready(client: &async_nats::Client) -> Result<(), String> {
    match client.connection_state() {
        State::Connected => Ok(()),
        State::Pending => Err("NATS: not connected yet (the server has not been reachable; retrying)".into()),
        State::Disconnected => Err("NATS: disconnected from the server (reconnecting)".into()),
    }
}

/// Creates the stream behind a JetStream key-value bucket (one value per key;
/// entries older than `max_age` expire, none if zero) with a plain JetStream API
/// request, unless it exists. (async-nats 0.49's `create_key_value` first reads
/// the account's info, in a shape nats-server 2.9, the one Debian ships, does not
/// send.)
pub async fn create_key_value(client: &async_nats::Client, name: &str, max_age: Duration) -> Result<(), String> {
    let config = serde_json::json!({
        "name": format!("KV_{name}"),
        "subjects": [format!("$KV.{name}.>")],
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": u64::try_from(max_age.as_nanos()).unwrap_or(u64::MAX),
        "max_msgs_per_subject": 1,
        "max_msg_size": -1,
        "storage": "file",
        "discard": "new",
        "num_replicas": 1,
        "duplicate_window": 120_000_000_000u64,
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "deny_purge": false,
        "allow_direct": true,
    });
    let nats = |e: &dyn std::fmt::Display| format!("NATS: {e}");
    let reply = client
        .request(format!("$JS.API.STREAM.CREATE.KV_{name}"), config.to_string().into())
        .await
        .map_err(|e| nats(&e))?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(|e| nats(&e))?;
    match answer.get("error") {
        // Another client may have created it first.
        Some(e) if e["err_code"] != 10058 => Err(format!("NATS: cannot create bucket `{name}`: {e}")),
        _ => Ok(()),
    }
}
