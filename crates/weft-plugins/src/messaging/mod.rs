//! `wasmcloud:messaging` 0.2: components publish and make requests
//! (`consumer`), and receive the messages of the subjects they subscribe to
//! (`handler`), over NATS or, for local runs, an in-process bus.
//!
//! ```yaml
//! hostInterfaces:
//!   - interface: wasmcloud:messaging/handler@0.2.0
//!     component: worker
//!     config:
//!       subscriptions: [orders.created, "audit.>"]
//!       queue: workers        # optional: share the messages with other subscribers
//! ```
//!
//! Every message is handled in an invocation of its own (a fresh instance unless
//! the component has `reuseInstances`), within the component's limits.

mod memory;
mod nats;

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use wasmtime::component::{ComponentType, Lift, Linker, Lower};
use weft_runtime::RunningWorkload;
use weft_runtime::interface::{InterfaceName, ItemName};
use weft_runtime::plugin::{Binding, BoxFuture, ComponentIdentity, HostPlugin, PluginWorld};
use weft_runtime::store::StoreState;

pub const ID: &str = "messaging";
const HANDLER: &str = "wasmcloud:messaging/handler@0.2.0";

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

/// Where messages travel.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn publish(&self, message: BrokerMessage) -> Result<(), String>;
    async fn request(&self, subject: String, body: Vec<u8>, timeout: Duration) -> Result<BrokerMessage, String>;
    /// Messages on `subject` (NATS wildcards: `*` one token, `>` the rest); with a
    /// queue group, each message goes to one member of the group.
    async fn subscribe(&self, subject: &str, queue: Option<&str>) -> Result<mpsc::Receiver<BrokerMessage>, String>;
}

pub struct MessagingPlugin {
    bus: Arc<dyn Bus>,
    subscriptions: Mutex<HashMap<ComponentIdentity, Vec<JoinHandle<()>>>>,
}

impl MessagingPlugin {
    pub async fn new(settings: &Settings) -> anyhow::Result<MessagingPlugin> {
        let bus: Arc<dyn Bus> = match settings {
            Settings::Memory => Arc::new(memory::Memory::default()),
            Settings::Nats { url } => Arc::new(nats::Nats::connect(url).await?),
        };
        Ok(MessagingPlugin { bus, subscriptions: Mutex::default() })
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

impl HostPlugin for MessagingPlugin {
    fn id(&self) -> &str {
        ID
    }

    fn world(&self) -> PluginWorld {
        let name = |i: &str| InterfaceName::parse(&format!("wasmcloud:messaging/{i}@0.2.0")).expect("valid name");
        PluginWorld { imports: vec![name("consumer"), name("types")], exports: vec![name("handler")] }
    }

    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some(config) = binding.config_for(HANDLER) else { return Ok(()) };
            let config: HandlerConfig =
                serde_json::from_value(serde_json::Value::Object(config.clone().into_iter().collect()))
                    .map_err(|e| format!("`{HANDLER}`: {e}"))?;
            let Some(export) = binding.exports.iter().find(|e| ItemName::parse(e).satisfies(&ItemName::parse(HANDLER)))
            else {
                return Err(format!("`{HANDLER}` is asked for, but the component does not export it"));
            };
            let function = format!("{export}#handle-message");
            let mut tasks = Vec::new();
            for subject in &config.subscriptions {
                let mut messages = match self.bus.subscribe(subject, config.queue.as_deref()).await {
                    Ok(messages) => messages,
                    Err(e) => {
                        // Not bound, so never unbound: stop what this bind started.
                        tasks.iter().for_each(JoinHandle::abort);
                        return Err(e);
                    }
                };
                let (workload, identity, function) =
                    (binding.workload.clone(), binding.identity.clone(), function.clone());
                tasks.push(tokio::spawn(async move {
                    while let Some(message) = messages.recv().await {
                        deliver(&workload, &identity, &function, message).await;
                    }
                }));
            }
            self.subscriptions.lock().unwrap().insert(binding.identity.clone(), tasks);
            Ok(())
        })
    }

    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for task in self.subscriptions.lock().unwrap().remove(identity).unwrap_or_default() {
                task.abort();
            }
        })
    }

    fn add_to_linker(&self, linker: &mut Linker<StoreState>, import: &str) -> wasmtime::Result<()> {
        let name = ItemName::parse(import);
        let interface = name.as_interface().map(|i| i.interface.as_str()).unwrap_or_default();
        let mut instance = linker.instance(import)?;
        match interface {
            // Types only: the functions' types carry them.
            "types" => Ok(()),
            "consumer" => {
                instance.func_wrap_async("request", |store, (subject, body, timeout_ms): (String, Vec<u8>, u32)| {
                    let bus = bus(store.data());
                    Box::new(async move {
                        Ok((bus.request(subject, body, Duration::from_millis(timeout_ms.into())).await,))
                    })
                })?;
                instance.func_wrap_async("publish", |store, (message,): (BrokerMessage,)| {
                    let bus = bus(store.data());
                    Box::new(async move { Ok((bus.publish(message).await,)) })
                })
            }
            other => wasmtime::bail!("the messaging plugin has no interface `{other}`"),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn bus(state: &StoreState) -> Arc<dyn Bus> {
    state.plugin::<MessagingPlugin>(ID).expect("the messaging plugin is loaded").bus.clone()
}

/// Hands one message to a fresh instance of the subscribed component.
async fn deliver(workload: &RunningWorkload, identity: &ComponentIdentity, function: &str, message: BrokerMessage) {
    let subject = message.subject.clone();
    let outcome = async {
        let mut invocation = workload.instantiate(&identity.component).await.map_err(|e| e.to_string())?;
        let handle =
            invocation.typed_func::<(BrokerMessage,), (Result<(), String>,)>(function).map_err(|e| e.to_string())?;
        invocation.call_typed(&handle, (message,)).await.map_err(|e| e.to_string())?.0
    }
    .await;
    if let Err(e) = outcome {
        tracing::warn!(workload = %identity.workload, component = %identity.component, %subject, "message not handled: {e}");
    }
}

/// NATS subject matching: `*` matches one token, `>` the remaining ones.
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let (mut p, mut s) = (pattern.split('.'), subject.split('.'));
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subjects() {
        use super::subject_matches as m;
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.c"));
        assert!(m("a.*", "a.c"));
        assert!(!m("a.*", "a.c.d"));
        assert!(m("a.>", "a.c.d"));
        assert!(!m("a.>", "a"));
        assert!(!m("a.b.c", "a.b"));
    }
}
