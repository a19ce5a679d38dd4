//! `wasmcloud:messaging` 0.2: components publish and make requests
//! (`consumer`), and receive the messages of the subjects they subscribe to
//! (`handler`), over NATS or, for local runs, an in-process bus.
//!
//! A component reaches only the subjects its manifest grants it (none by default):
//!
//! ```yaml
//! hostInterfaces:
//!   - interface: wasmcloud:messaging/consumer@0.2.0
//!     component: shop
//!     config:
//!       publish: ["orders.>"]          # may publish on these subjects
//!       request: [prices.lookup]       # may send requests on these
//!   - interface: wasmcloud:messaging/handler@0.2.0
//!     component: worker
//!     config:
//!       subscriptions: [orders.created, "audit.>"]   # receiving: the grant itself
//!       queue: workers        # optional: share the messages with other subscribers
//! ```
//!
//! Patterns use NATS wildcards (`*` one token, `>` the rest, whole tokens only)
//! and start with a literal token. Reserved to the host whatever a manifest says
//! (refused when the workload starts): subjects starting with `$` (JetStream and
//! system APIs), `_INBOX` (reply inboxes), `weft.`, `runtime.` and `wasmbus.`
//! (control subjects). A guest's subject is checked on every call and a refusal is
//! an error string for the guest. Replies need no grant: `request` listens on an
//! inbox of its own, and a handler may publish to the `reply-to` of a message it is
//! handling until `handle-message` returns (unless that subject is reserved: an
//! inbox is fine, `$JS.…` is not). A `reply-to` a guest sets on a message it
//! publishes must be a subject it subscribes to, where the replies reach it.
//!
//! Every message is handled in an invocation of its own (a fresh instance unless
//! the component has `reuseInstances`), concurrently up to the component's
//! `maxConcurrent`. Messages waiting for a slot are buffered, [`BACKLOG`] per
//! subscription and no more body bytes than the component's `memory` limit; more
//! are dropped (and counted in a warning), as NATS drops a slow consumer's
//! messages. A body is at most the server's `max_payload` over NATS and
//! [`MEMORY_MAX_BODY`] on the in-process bus; a larger one is refused to the guest.

mod memory;
mod nats;
mod subjects;

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;
use wasmtime::component::{ComponentType, Lift, LinkerInstance, Lower};
use weft_runtime::RunningWorkload;
use weft_runtime::interface::{InterfaceName, ItemName};
use weft_runtime::plugin::{Binding, BindingSettings, BoxFuture, ComponentIdentity, HostPlugin, PluginWorld, Whose};
use weft_runtime::store::StoreState;

pub use memory::MAX_BODY as MEMORY_MAX_BODY;

pub const ID: &str = "messaging";

/// Messages one subscription holds while every delivery slot is busy.
pub const BACKLOG: usize = 256;

/// How long `unbind` lets deliveries in flight finish (and reply) before the
/// component's grants go.
const DRAIN: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "backend", deny_unknown_fields)]
pub enum Settings {
    /// An in-process bus: messages reach subscribers on this host only.
    #[default]
    Memory,
    Nats {
        url: String,
    },
}

/// `wasmcloud:messaging/types.broker-message`.
#[derive(ComponentType, Lift, Lower, Debug, Clone, PartialEq)]
#[component(record)]
pub struct BrokerMessage {
    pub subject: String,
    pub body: Vec<u8>,
    #[component(name = "reply-to")]
    pub reply_to: Option<String>,
}

/// Where messages travel. Subjects reaching a bus are already checked.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// The largest body the bus carries, in bytes.
    fn max_body(&self) -> usize;
    async fn publish(&self, message: BrokerMessage) -> Result<(), String>;
    /// Fails at once when nobody subscribes to `subject`.
    async fn request(&self, subject: String, body: Vec<u8>, timeout: Duration) -> Result<BrokerMessage, String>;
    /// Messages on `subject` (NATS wildcards: `*` one token, `>` the rest); with a
    /// queue group, each message goes to one member of the group.
    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<Box<dyn Subscription>, String>;
}

/// A subscription of a [`Bus`].
#[async_trait]
pub trait Subscription: Send + 'static {
    /// The next message; `None` once the subscription has ended.
    async fn next(&mut self) -> Option<BrokerMessage>;
    /// Ends the subscription at the broker: once this returns, no message is
    /// routed to it (a queue group's messages go to the other members).
    async fn unsubscribe(self: Box<Self>);
}

pub struct MessagingPlugin {
    bus: Arc<dyn Bus>,
    /// What each bound component may reach, for the host functions it calls.
    grants: Mutex<HashMap<ComponentIdentity, Arc<Grants>>>,
    listeners: Mutex<HashMap<ComponentIdentity, Listeners>>,
}

/// The subscriptions of one handler component.
struct Listeners {
    tasks: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
    /// The component's delivery slots, shared by its subscriptions.
    slots: Arc<Semaphore>,
    size: u32,
}

/// The subjects a component may use, from its manifest.
#[derive(Default)]
struct Grants {
    publish: Vec<String>,
    request: Vec<String>,
    /// Where it receives: a `reply-to` it sets must be among these.
    subscriptions: Vec<String>,
    /// Reply-to subjects of the messages it is handling now, with how many
    /// deliveries carry each: at most one entry per delivery in flight.
    replying: Mutex<HashMap<String, usize>>,
}

impl Grants {
    fn may_publish(&self, message: &BrokerMessage) -> Result<(), String> {
        if let Err(why) = subjects::check_use(&message.subject, &self.publish)
            && !self.replying.lock().unwrap().contains_key(&message.subject)
        {
            return Err(format!("not allowed to publish to `{}`: {why}", shown(&message.subject)));
        }
        if let Some(reply) = &message.reply_to {
            subjects::check_use(reply, &self.subscriptions).map_err(|why| {
                format!(
                    "not allowed to ask for replies on `{}`: {why} (a reply-to must be a subject the component subscribes to)",
                    shown(reply)
                )
            })?;
        }
        Ok(())
    }

    fn may_request(&self, subject: &str) -> Result<(), String> {
        subjects::check_use(subject, &self.request)
            .map_err(|why| format!("not allowed to send requests to `{}`: {why}", shown(subject)))
    }

    /// Lets the component publish to `subject` until the guard drops.
    fn replying(self: &Arc<Self>, subject: &str) -> ReplyGuard {
        *self.replying.lock().unwrap().entry(subject.to_string()).or_default() += 1;
        ReplyGuard { grants: self.clone(), subject: subject.to_string() }
    }
}

struct ReplyGuard {
    grants: Arc<Grants>,
    subject: String,
}

impl Drop for ReplyGuard {
    fn drop(&mut self) {
        let mut replying = self.grants.replying.lock().unwrap();
        if let Some(count) = replying.get_mut(&self.subject) {
            *count -= 1;
            if *count == 0 {
                replying.remove(&self.subject);
            }
        }
    }
}

/// A subject as an error message shows it: guests choose its length.
fn shown(subject: &str) -> String {
    const SHOWN: usize = 200;
    match subject.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &subject[..end]),
        None => subject.to_string(),
    }
}

impl MessagingPlugin {
    pub async fn new(settings: &Settings) -> anyhow::Result<MessagingPlugin> {
        let bus: Arc<dyn Bus> = match settings {
            Settings::Memory => Arc::new(memory::Memory::default()),
            Settings::Nats { url } => Arc::new(nats::Nats::connect(url).await?),
        };
        Ok(MessagingPlugin { bus, grants: Mutex::default(), listeners: Mutex::default() })
    }
}

/// What a `hostInterfaces` entry for the handler asks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HandlerConfig {
    subscriptions: Vec<String>,
    #[serde(default)]
    queue: Option<String>,
}

/// What a `hostInterfaces` entry for the consumer grants.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConsumerConfig {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    request: Vec<String>,
}

/// A subject pattern to subscribe to, and its queue group.
type Subscribe = (String, Option<String>);

/// The component's grants and subscriptions, from its `hostInterfaces` entries;
/// every pattern checked.
fn read_config(binding: &BindingSettings) -> Result<(Grants, Vec<Subscribe>), String> {
    let mut grants = Grants::default();
    let mut subscriptions = Vec::new();
    for (interface, config) in &binding.config {
        let what = format!("hostInterfaces `{interface}`");
        let value = serde_json::Value::Object(config.clone().into_iter().collect());
        let name = ItemName::parse(interface);
        let check = |list: &str, patterns: &[String]| {
            patterns.iter().try_for_each(|p| {
                subjects::check_grant(p)
                    .map_err(|why| format!("{what}: `{list}` pattern `{}` is refused: {why}", shown(p)))
            })
        };
        match name.as_interface().map(|i| i.interface.as_str()).unwrap_or_default() {
            "consumer" => {
                let c: ConsumerConfig = serde_json::from_value(value).map_err(|e| format!("{what}: {e}"))?;
                check("publish", &c.publish)?;
                check("request", &c.request)?;
                grants.publish.extend(c.publish);
                grants.request.extend(c.request);
            }
            "handler" => {
                let c: HandlerConfig = serde_json::from_value(value).map_err(|e| format!("{what}: {e}"))?;
                check("subscriptions", &c.subscriptions)?;
                if let Some(queue) = &c.queue {
                    subjects::check_syntax(queue, false)
                        .map_err(|why| format!("{what}: queue group `{}` is refused: {why}", shown(queue)))?;
                }
                for subject in c.subscriptions {
                    grants.subscriptions.push(subject.clone());
                    subscriptions.push((subject, c.queue.clone()));
                }
            }
            _ if config.is_empty() => {}
            _ => return Err(format!("{what}: takes no settings")),
        }
    }
    Ok((grants, subscriptions))
}

impl HostPlugin for MessagingPlugin {
    fn id(&self) -> &str {
        ID
    }

    fn world(&self) -> PluginWorld {
        let name = |i: &str| InterfaceName::parse(&format!("wasmcloud:messaging/{i}@0.2.0")).expect("valid name");
        PluginWorld { imports: vec![name("consumer"), name("types")], exports: vec![name("handler")] }
    }

    fn validate(&self, settings: &BindingSettings) -> Result<(), String> {
        read_config(settings).map(drop)
    }

    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (grants, subscriptions) = read_config(binding)?;
            let grants = Arc::new(grants);
            if subscriptions.is_empty() {
                self.grants.lock().unwrap().insert(binding.identity.clone(), grants);
                return Ok(());
            }
            let handler = ItemName::parse("wasmcloud:messaging/handler@0.2.0");
            let Some(export) = binding.exports.iter().find(|e| ItemName::parse(e).satisfies(&handler)) else {
                return Err(format!("`{handler}` is asked for, but the component does not export it"));
            };
            let limits = binding
                .workload
                .status()
                .components
                .into_iter()
                .find(|c| *c.name == *binding.identity.component)
                .map(|c| c.limits)
                .ok_or_else(|| format!("no component `{}` in the workload", binding.identity.component))?;
            let size = limits.max_concurrent.max(1);
            let slots = Arc::new(Semaphore::new(size as usize));
            let target = Arc::new(Target {
                workload: binding.workload.clone(),
                identity: binding.identity.clone(),
                function: format!("{export}#handle-message"),
                grants: grants.clone(),
                backlog_bytes: usize::try_from(limits.memory.0).unwrap_or(usize::MAX),
            });
            let mut opened = Vec::new();
            for (subject, queue) in &subscriptions {
                match self.bus.subscribe(subject, queue.as_deref()).await {
                    Ok(subscription) => opened.push(subscription),
                    Err(e) => {
                        // Not bound, so never unbound: end what this bind started.
                        for subscription in opened {
                            subscription.unsubscribe().await;
                        }
                        return Err(e);
                    }
                }
            }
            // Granted before the first message can arrive, so its reply is allowed.
            self.grants.lock().unwrap().insert(binding.identity.clone(), grants);
            let tasks = opened
                .into_iter()
                .map(|subscription| {
                    let (stop, stopped) = oneshot::channel();
                    (stop, tokio::spawn(listen(subscription, stopped, target.clone(), slots.clone())))
                })
                .collect();
            self.listeners.lock().unwrap().insert(binding.identity.clone(), Listeners { tasks, slots, size });
            Ok(())
        })
    }

    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let listeners = self.listeners.lock().unwrap().remove(identity);
            if let Some(Listeners { tasks, slots, size }) = listeners {
                // Each task unsubscribes before it ends.
                for (stop, task) in tasks {
                    let _ = stop.send(());
                    let _ = task.await;
                }
                // Deliveries in flight may still reply, for a while.
                let _ = tokio::time::timeout(DRAIN, slots.acquire_many(size)).await;
            }
            self.grants.lock().unwrap().remove(identity);
        })
    }

    fn add_to_linker(
        &self,
        instance: &mut LinkerInstance<StoreState>,
        import: &str,
        whose: Whose,
    ) -> wasmtime::Result<()> {
        let name = ItemName::parse(import);
        let interface = name.as_interface().map(|i| i.interface.as_str()).unwrap_or_default();
        match interface {
            // Types only: the functions' types carry them.
            "types" => Ok(()),
            "consumer" => {
                instance.func_wrap_async(
                    "request",
                    move |store, (subject, body, timeout_ms): (String, Vec<u8>, u32)| {
                        let (bus, grants) = context(store.data(), whose);
                        Box::new(async move {
                            let outcome = async {
                                grants.may_request(&subject)?;
                                fits(&*bus, &body)?;
                                bus.request(subject, body, Duration::from_millis(timeout_ms.into())).await
                            };
                            Ok((outcome.await,))
                        })
                    },
                )?;
                instance.func_wrap_async("publish", move |store, (message,): (BrokerMessage,)| {
                    let (bus, grants) = context(store.data(), whose);
                    Box::new(async move {
                        let outcome = async {
                            grants.may_publish(&message)?;
                            fits(&*bus, &message.body)?;
                            bus.publish(message).await
                        };
                        Ok((outcome.await,))
                    })
                })
            }
            other => wasmtime::bail!("the messaging plugin has no interface `{other}`"),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The bus, and what the calling component may reach (nothing if it was not bound).
fn context(state: &StoreState, whose: Whose) -> (Arc<dyn Bus>, Arc<Grants>) {
    let plugin = state.plugin::<MessagingPlugin>(ID).expect("the messaging plugin is loaded");
    let grants = plugin.grants.lock().unwrap().get(state.caller(whose)).cloned().unwrap_or_default();
    (plugin.bus.clone(), grants)
}

fn fits(bus: &dyn Bus, body: &[u8]) -> Result<(), String> {
    let max = bus.max_body();
    if body.len() > max {
        return Err(format!(
            "the message body has {} bytes, more than the {max} bytes a message may carry",
            body.len()
        ));
    }
    Ok(())
}

/// The component a subscription delivers to.
struct Target {
    workload: Arc<RunningWorkload>,
    identity: ComponentIdentity,
    function: String,
    grants: Arc<Grants>,
    /// The most body bytes one subscription holds waiting: the component's memory limit.
    backlog_bytes: usize,
}

/// Takes a subscription's messages and hands each to a delivery of its own while
/// a slot is free, holding at most [`BACKLOG`] messages (and no more body bytes
/// than the component's memory limit) meanwhile; unsubscribes when told to stop.
async fn listen(
    mut subscription: Box<dyn Subscription>,
    mut stop: oneshot::Receiver<()>,
    target: Arc<Target>,
    slots: Arc<Semaphore>,
) {
    let mut backlog: VecDeque<BrokerMessage> = VecDeque::new();
    let (mut held, mut dropped) = (0usize, 0u64);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            slot = slots.clone().acquire_owned(), if !backlog.is_empty() => {
                let (Ok(slot), Some(message)) = (slot, backlog.pop_front()) else { break };
                held -= message.body.len();
                tokio::spawn(target.clone().deliver(message, slot));
            }
            message = subscription.next() => {
                let Some(message) = message else { break };
                if backlog.is_empty()
                    && let Ok(slot) = slots.clone().try_acquire_owned()
                {
                    tokio::spawn(target.clone().deliver(message, slot));
                } else if backlog.len() < BACKLOG && held + message.body.len() <= target.backlog_bytes {
                    held += message.body.len();
                    backlog.push_back(message);
                } else {
                    dropped += 1;
                    if dropped.is_power_of_two() {
                        let (workload, component) = (&target.identity.workload, &target.identity.component);
                        tracing::warn!(%workload, %component, subject = %message.subject, dropped,
                            "messages dropped: every delivery slot busy and the backlog full");
                    }
                }
            }
        }
    }
    subscription.unsubscribe().await;
}

impl Target {
    /// Hands one message to an instance of the subscribed component.
    async fn deliver(self: Arc<Self>, message: BrokerMessage, _slot: OwnedSemaphorePermit) {
        let subject = message.subject.clone();
        let _replying = message.reply_to.as_deref().filter(|r| subjects::replyable(r)).map(|r| self.grants.replying(r));
        let outcome = async {
            let mut invocation =
                self.workload.instantiate(&self.identity.component).await.map_err(|e| e.to_string())?;
            let handle = invocation
                .typed_func::<(BrokerMessage,), (Result<(), String>,)>(&self.function)
                .map_err(|e| e.to_string())?;
            invocation.call_typed(&handle, (message,)).await.map_err(|e| e.to_string())?.0
        }
        .await;
        if let Err(e) = outcome {
            let (workload, component) = (&self.identity.workload, &self.identity.component);
            tracing::warn!(%workload, %component, %subject, "message not handled: {e}");
        }
    }
}
