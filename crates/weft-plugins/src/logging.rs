//! `wasi:logging/logging`: a component's log records become `tracing` events,
//! with the workload and the component in every event.

use std::any::Any;

use wasmtime::component::{ComponentType, Lift, LinkerInstance, Lower};
use weft_runtime::interface::InterfaceName;
use weft_runtime::plugin::{HostPlugin, PluginWorld, Whose};
use weft_runtime::store::StoreState;

pub const ID: &str = "logging";

pub struct LoggingPlugin;

#[derive(ComponentType, Lift, Lower, Debug, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
pub enum Level {
    #[component(name = "trace")]
    Trace,
    #[component(name = "debug")]
    Debug,
    #[component(name = "info")]
    Info,
    #[component(name = "warn")]
    Warn,
    #[component(name = "error")]
    Error,
    #[component(name = "critical")]
    Critical,
}

impl HostPlugin for LoggingPlugin {
    fn id(&self) -> &str {
        ID
    }

    fn world(&self) -> PluginWorld {
        PluginWorld {
            imports: vec![InterfaceName::parse("wasi:logging/logging@0.1.0-draft").expect("valid name")],
            exports: Vec::new(),
        }
    }

    fn add_to_linker(&self, instance: &mut LinkerInstance<StoreState>, _: &str, whose: Whose) -> wasmtime::Result<()> {
        instance.func_wrap(
            "log",
            move |cx, (level, context, message): (Level, String, String)| {
                let who = cx.data().caller(whose);
                let (workload, component) = (&*who.workload, &*who.component);
                match level {
                    Level::Trace => tracing::trace!(target: "guest", workload, component, context, "{message}"),
                    Level::Debug => tracing::debug!(target: "guest", workload, component, context, "{message}"),
                    Level::Info => tracing::info!(target: "guest", workload, component, context, "{message}"),
                    Level::Warn => tracing::warn!(target: "guest", workload, component, context, "{message}"),
                    Level::Error | Level::Critical => {
                        tracing::error!(target: "guest", workload, component, context, critical = matches!(level, Level::Critical), "{message}")
                    }
                }
                Ok(())
            },
        )
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
