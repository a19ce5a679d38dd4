//! `wasi:config/store`: a component's `config` from the manifest, over defaults from
//! the host configuration. Serves both drafts in use (`0.2.0-draft`, which
//! wasmCloud uses, and `0.2.0-rc.1`, which Wasmtime's own crate uses): their types
//! are the same.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use wasmtime::component::{ComponentType, Lift, LinkerInstance, Lower};
use weft_runtime::interface::InterfaceName;
use weft_runtime::plugin::{Binding, BindingSettings, BoxFuture, ComponentIdentity, HostPlugin, PluginWorld, Whose};
use weft_runtime::store::StoreState;

pub const ID: &str = "config";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// Values every component sees unless its manifest entry sets them.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
}

pub struct ConfigPlugin {
    defaults: BTreeMap<String, String>,
    /// Each bound component's values: defaults overlaid with its manifest config.
    values: Mutex<std::collections::HashMap<ComponentIdentity, Arc<BTreeMap<String, String>>>>,
}

/// `wasi:config/store.error`.
#[derive(ComponentType, Lift, Lower, Debug, Clone)]
#[component(variant)]
pub enum ConfigError {
    #[component(name = "upstream")]
    Upstream(String),
    #[component(name = "io")]
    Io(String),
}

impl ConfigPlugin {
    pub fn new(settings: &Settings) -> ConfigPlugin {
        ConfigPlugin { defaults: settings.defaults.clone(), values: Mutex::default() }
    }

    fn values_for(&self, caller: &ComponentIdentity) -> Arc<BTreeMap<String, String>> {
        let values = self.values.lock().unwrap();
        values.get(caller).cloned().unwrap_or_else(|| Arc::new(self.defaults.clone()))
    }
}

fn plugin(state: &StoreState) -> &ConfigPlugin {
    state.plugin::<ConfigPlugin>(ID).expect("the config plugin is loaded")
}

impl HostPlugin for ConfigPlugin {
    fn id(&self) -> &str {
        ID
    }

    fn world(&self) -> PluginWorld {
        let store = |v: &str| InterfaceName::parse(&format!("wasi:config/store@{v}")).expect("valid name");
        PluginWorld { imports: vec![store("0.2.0-draft"), store("0.2.0-rc.1")], exports: Vec::new() }
    }

    fn validate(&self, settings: &BindingSettings) -> Result<(), String> {
        match settings.config.iter().find(|(_, c)| !c.is_empty()) {
            Some((interface, _)) => Err(format!(
                "`{interface}` takes no settings: a component's values come from its own `config` in the manifest"
            )),
            None => Ok(()),
        }
    }

    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut values = self.defaults.clone();
            values.extend(binding.component_config.iter().map(|(k, v)| (k.clone(), v.clone())));
            self.values.lock().unwrap().insert(binding.identity.clone(), Arc::new(values));
            Ok(())
        })
    }

    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.values.lock().unwrap().remove(identity);
        })
    }

    fn add_to_linker(&self, instance: &mut LinkerInstance<StoreState>, _: &str, whose: Whose) -> wasmtime::Result<()> {
        instance.func_wrap("get", move |cx, (key,): (String,)| {
            let values = plugin(cx.data()).values_for(cx.data().caller(whose));
            Ok((Ok::<_, ConfigError>(values.get(&key).cloned()),))
        })?;
        instance.func_wrap("get-all", move |cx, (): ()| {
            let values = plugin(cx.data()).values_for(cx.data().caller(whose));
            let all: Vec<(String, String)> = values.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok((Ok::<_, ConfigError>(all),))
        })?;
        Ok(())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
