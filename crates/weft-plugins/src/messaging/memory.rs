//! An in-process bus: messages reach the subscribers of this host only.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{BrokerMessage, Bus, subject_matches};

#[derive(Default)]
pub struct Memory {
    subscribers: Mutex<Vec<Subscriber>>,
    /// Round-robin position per queue group.
    turns: Mutex<std::collections::HashMap<String, usize>>,
}

struct Subscriber {
    pattern: String,
    queue: Option<String>,
    sender: mpsc::Sender<BrokerMessage>,
}

const BACKLOG: usize = 1024;

#[async_trait]
impl Bus for Memory {
    async fn publish(&self, message: BrokerMessage) -> Result<(), String> {
        let targets: Vec<mpsc::Sender<BrokerMessage>> = {
            let mut subscribers = self.subscribers.lock().unwrap();
            subscribers.retain(|s| !s.sender.is_closed());
            let matching: Vec<&Subscriber> =
                subscribers.iter().filter(|s| subject_matches(&s.pattern, &message.subject)).collect();
            let mut targets: Vec<mpsc::Sender<BrokerMessage>> =
                matching.iter().filter(|s| s.queue.is_none()).map(|s| s.sender.clone()).collect();
            let mut groups: Vec<&str> = matching.iter().filter_map(|s| s.queue.as_deref()).collect();
            groups.sort();
            groups.dedup();
            let mut turns = self.turns.lock().unwrap();
            for group in groups {
                let members: Vec<&&Subscriber> =
                    matching.iter().filter(|s| s.queue.as_deref() == Some(group)).collect();
                let turn = turns.entry(group.to_string()).or_default();
                targets.push(members[*turn % members.len()].sender.clone());
                *turn += 1;
            }
            targets
        };
        for target in targets {
            // A full backlog drops the message for that subscriber, as NATS would
            // for a slow consumer.
            let _ = target.try_send(message.clone());
        }
        Ok(())
    }

    async fn request(&self, subject: String, body: Vec<u8>, timeout: Duration) -> Result<BrokerMessage, String> {
        let inbox = format!("_INBOX.{}", uuid());
        let mut replies = self.subscribe(&inbox, None).await?;
        self.publish(BrokerMessage { subject: subject.clone(), body, reply_to: Some(inbox) }).await?;
        match tokio::time::timeout(timeout, replies.recv()).await {
            Ok(Some(reply)) => Ok(reply),
            _ => Err(format!("no reply on `{subject}` within {timeout:?}")),
        }
    }

    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<mpsc::Receiver<BrokerMessage>, String> {
        let (sender, receiver) = mpsc::channel(BACKLOG);
        let subscriber = Subscriber { pattern: subject.to_string(), queue: queue.map(String::from), sender };
        self.subscribers.lock().unwrap().push(subscriber);
        Ok(receiver)
    }
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
