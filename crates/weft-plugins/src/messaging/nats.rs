//! Messages over NATS core subjects.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{BrokerMessage, Bus};
use crate::nats_client;

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

#[async_trait]
impl Bus for Nats {
    async fn publish(&self, message: BrokerMessage) -> Result<(), String> {
        nats_client::ready(&self.client)?;
        let published = match message.reply_to {
            Some(reply) => self.client.publish_with_reply(message.subject, reply, message.body.into()).await,
            None => self.client.publish(message.subject, message.body.into()).await,
        };
        published.map_err(nats)?;
        self.client.flush().await.map_err(nats)
    }

    async fn request(&self, subject: String, body: Vec<u8>, timeout: Duration) -> Result<BrokerMessage, String> {
        nats_client::ready(&self.client)?;
        let reply = tokio::time::timeout(timeout, self.client.request(subject.clone(), body.into()))
            .await
            .map_err(|_| format!("no reply on `{subject}` within {timeout:?}"))?
            .map_err(nats)?;
        Ok(BrokerMessage { subject: reply.subject.to_string(), body: reply.payload.to_vec(), reply_to: None })
    }

    /// Made while NATS is away, a subscription takes effect once it is back (the
    /// client subscribes again on every reconnect).
    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<mpsc::Receiver<BrokerMessage>, String> {
        let mut subscription = match queue {
            Some(queue) => self.client.queue_subscribe(subject.to_string(), queue.to_string()).await,
            None => self.client.subscribe(subject.to_string()).await,
        }
        .map_err(nats)?;
        // Connected: make sure the server has the subscription before going on.
        if nats_client::ready(&self.client).is_ok() {
            let flushed = tokio::time::timeout(Duration::from_secs(5), self.client.flush()).await;
            if !matches!(flushed, Ok(Ok(()))) {
                tracing::warn!(subject, "NATS did not confirm the subscription; it is made again on reconnect");
            }
        }
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(async move {
            while let Some(msg) = subscription.next().await {
                let message = BrokerMessage {
                    subject: msg.subject.to_string(),
                    body: msg.payload.to_vec(),
                    reply_to: msg.reply.map(|r| r.to_string()),
                };
                if sender.send(message).await.is_err() {
                    return;
                }
            }
        });
        Ok(receiver)
    }
}
