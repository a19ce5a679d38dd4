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
