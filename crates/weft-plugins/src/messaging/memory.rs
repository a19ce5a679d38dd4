//! An in-process bus: messages reach the subscribers of this host only.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{BrokerMessage, Bus, Subscription, subjects};

/// The largest message body the in-process bus carries: NATS's default
/// `max_payload`, so a workload that runs here runs over NATS too.
pub const MAX_BODY: usize = 1 << 20;

/// Messages a subscriber has not taken yet; more are dropped, as NATS drops a
/// slow consumer's.
const QUEUED: usize = 256;

#[derive(Default)]
pub struct Memory {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    subscribers: Mutex<Subscribers>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Subscribers {
    all: Vec<Subscriber>,
    /// Round-robin position per queue group with members.
    turns: HashMap<String, usize>,
}

struct Subscriber {
    id: u64,
    pattern: String,
    queue: Option<String>,
    sender: mpsc::Sender<BrokerMessage>,
}

impl Inner {
    /// Hands the message to the subscribers it reaches; returns how many.
    fn publish(&self, message: BrokerMessage) -> usize {
        let targets: Vec<mpsc::Sender<BrokerMessage>> = {
            let mut guard = self.subscribers.lock().unwrap();
            let Subscribers { all, turns } = &mut *guard;
            let matching: Vec<&Subscriber> =
                all.iter().filter(|s| subjects::matches(&s.pattern, &message.subject)).collect();
            let mut targets: Vec<mpsc::Sender<BrokerMessage>> =
                matching.iter().filter(|s| s.queue.is_none()).map(|s| s.sender.clone()).collect();
            let mut groups: Vec<&str> = matching.iter().filter_map(|s| s.queue.as_deref()).collect();
            groups.sort();
            groups.dedup();
            for group in groups {
                let members: Vec<&&Subscriber> =
                    matching.iter().filter(|s| s.queue.as_deref() == Some(group)).collect();
                let turn = turns.entry(group.to_string()).or_default();
                targets.push(members[*turn % members.len()].sender.clone());
                *turn = turn.wrapping_add(1);
            }
            targets
        };
        let reached = targets.len();
        for target in targets {
            // A full queue drops the message for that subscriber, as NATS would
            // for a slow consumer.
            let _ = target.try_send(message.clone());
        }
        reached
    }

    fn subscribe(self: &Arc<Self>, pattern: &str, queue: Option<&str>) -> MemorySubscription {
        let (sender, receiver) = mpsc::channel(QUEUED);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let subscriber = Subscriber { id, pattern: pattern.to_string(), queue: queue.map(String::from), sender };
        self.subscribers.lock().unwrap().all.push(subscriber);
        MemorySubscription { bus: self.clone(), id, receiver }
    }
}

/// Unsubscribes when dropped.
struct MemorySubscription {
    bus: Arc<Inner>,
    id: u64,
    receiver: mpsc::Receiver<BrokerMessage>,
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        let mut guard = self.bus.subscribers.lock().unwrap();
        let Subscribers { all, turns } = &mut *guard;
        all.retain(|s| s.id != self.id);
        // Forget the turns of groups left without members, so they stay bounded.
        turns.retain(|group, _| all.iter().any(|s| s.queue.as_deref() == Some(group)));
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<BrokerMessage> {
        self.receiver.recv().await
    }

    async fn unsubscribe(self: Box<Self>) {}
}

#[async_trait]
impl Bus for Memory {
    fn max_body(&self) -> usize {
        MAX_BODY
    }

    async fn publish(&self, message: BrokerMessage) -> Result<(), String> {
        self.inner.publish(message);
        Ok(())
    }

    async fn request(&self, subject: String, body: Vec<u8>, timeout: Duration) -> Result<BrokerMessage, String> {
        let inbox = format!("_INBOX.memory.{}", self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        let mut replies = self.inner.subscribe(&inbox, None);
        if self.inner.publish(BrokerMessage { subject: subject.clone(), body, reply_to: Some(inbox) }) == 0 {
            return Err(format!("no responders on `{subject}`"));
        }
        match tokio::time::timeout(timeout, replies.receiver.recv()).await {
            Ok(Some(reply)) => Ok(reply),
            _ => Err(format!("no reply on `{subject}` within {timeout:?}")),
        }
    }

    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<Box<dyn Subscription>, String> {
        Ok(Box::new(self.inner.subscribe(subject, queue)))
    }
}
