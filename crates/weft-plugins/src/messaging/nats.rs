//! Messages over NATS core subjects.

use std::time::Duration;

use async_nats::RequestErrorKind;
use async_trait::async_trait;
use futures_util::StreamExt;

use super::{BrokerMessage, Bus, Subscription};
use crate::nats_client;

/// The body limit before the server has told its own (NATS's default `max_payload`).
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// How long a subscription waits for the server to confirm it (or its end).
const CONFIRM: Duration = Duration::from_secs(5);

pub struct Nats {
    client: async_nats::Client,
}

impl Nats {
    pub async fn connect(url: &str) -> anyhow::Result<Nats> {
        Ok(Nats { client: nats_client::connect(url, "messaging").await? })
    }
}

fn nats(e: impl std::fmt::Display) -> String {
    format!("NATS: {e}")
}

/// Waits (a bounded time) until the server has seen what the client sent.
async fn confirm(client: &async_nats::Client) -> bool {
    nats_client::ready(client).is_ok() && matches!(tokio::time::timeout(CONFIRM, client.flush()).await, Ok(Ok(())))
}

#[async_trait]
impl Bus for Nats {
    /// The connected server's `max_payload`.
    fn max_body(&self) -> usize {
        match self.client.server_info().max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            max => max,
        }
    }

    async fn publish(&self, message: BrokerMessage) -> Result<(), String> {
        nats_client::ready(&self.client)?;
        let published = match message.reply_to {
            Some(reply) => self.client.publish_with_reply(message.subject, reply, message.body.into()).await,
            None => self.client.publish(message.subject, message.body.into()).await,
        };
        published.map_err(nats)?;
        self.client.flush().await.map_err(nats)
    }

    /// The server answers "no responders" at once when nobody subscribes.
    async fn request(&self, subject: String, body: Vec<u8>, timeout: Duration) -> Result<BrokerMessage, String> {
        nats_client::ready(&self.client)?;
        let request = async_nats::Request::new().payload(body.into()).timeout(Some(timeout));
        // The client's own timeout covers the wait; this one, a stalled send too.
        let no_reply = || format!("no reply on `{subject}` within {timeout:?}");
        let reply = match tokio::time::timeout(timeout, self.client.send_request(subject.clone(), request)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => match e.kind() {
                RequestErrorKind::NoResponders => return Err(format!("no responders on `{subject}`")),
                RequestErrorKind::TimedOut => return Err(no_reply()),
                _ => return Err(nats(e)),
            },
            Err(_) => return Err(no_reply()),
        };
        Ok(BrokerMessage { subject: reply.subject.to_string(), body: reply.payload.to_vec(), reply_to: None })
    }

    /// Made while NATS is away, a subscription takes effect once it is back (the
    /// client subscribes again on every reconnect).
    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<Box<dyn Subscription>, String> {
        let subscriber = match queue {
            Some(queue) => self.client.queue_subscribe(subject.to_string(), queue.to_string()).await,
            None => self.client.subscribe(subject.to_string()).await,
        }
        .map_err(nats)?;
        // Connected: make sure the server has the subscription before going on.
        if nats_client::ready(&self.client).is_ok() && !confirm(&self.client).await {
            tracing::warn!(subject, "NATS did not confirm the subscription; it is made again on reconnect");
        }
        Ok(Box::new(NatsSubscription { subscriber, client: self.client.clone() }))
    }
}

struct NatsSubscription {
    subscriber: async_nats::Subscriber,
    client: async_nats::Client,
}

#[async_trait]
impl Subscription for NatsSubscription {
    async fn next(&mut self) -> Option<BrokerMessage> {
        let msg = self.subscriber.next().await?;
        Some(BrokerMessage {
            subject: msg.subject.to_string(),
            body: msg.payload.to_vec(),
            reply_to: msg.reply.map(|r| r.to_string()),
        })
    }

    /// Unsubscribes and waits until the server has processed it, so the next
    /// message on the subject (a queue group's too) goes elsewhere.
    async fn unsubscribe(mut self: Box<Self>) {
        let sent = tokio::time::timeout(CONFIRM, self.subscriber.unsubscribe()).await;
        if !matches!(sent, Ok(Ok(()))) || !confirm(&self.client).await {
            // Dropping the subscriber tries again; a new connection never has it.
            tracing::debug!("NATS did not confirm an unsubscription");
        }
    }
}
