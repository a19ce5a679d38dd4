//! Host plugins: capabilities the host chooses to load (HTTP, key-value, …).
//!
//! The runtime itself links only WASI (with outgoing HTTP). Every other interface a
//! component imports comes from another component of its workload or from a plugin
//! registered with the host; validation resolves imports against the plugins'
//! worlds, so a workload asking for something no plugin provides is rejected before
//! it starts.
//!
//! A plugin's life:
//!
//! * [`HostPlugin::start`] when the host starts, [`HostPlugin::stop`] when it shuts
//!   down (a server plugin listens in between);
//! * [`HostPlugin::validate`] while a workload is validated, with the settings
//!   it gives the plugin for each component the plugin would be bound to;
//! * [`HostPlugin::bind`] for every component of a starting workload that imports
//!   one of the plugin's interfaces, exports one it drives, or is named by a
//!   `hostInterfaces` entry for it; a plugin may refuse, which rejects the workload
//!   (nothing of it keeps running); [`HostPlugin::unbind`] when the workload stops;
//!   a workload started in place of another ([`Binding::replacing`]) is bound
//!   before the other one is unbound;
//! * [`HostPlugin::add_to_linker`] while the workload is validated, for each import
//!   it serves, once per component that imports it ([`Whose`]).
//!
//! Host functions find the component they serve with [`StoreState::caller`], and
//! the plugin with [`StoreState::plugin`].

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use indexmap::IndexMap;
use wasmtime::component::LinkerInstance;

use crate::interface::{InterfaceName, ItemName};
use crate::store::StoreState;
use crate::workload::{RunningWorkload, WorkloadId};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The interfaces a plugin provides to components (`imports`, from the component's
/// point of view) and drives in components (`exports`, such as an HTTP handler).
#[derive(Debug, Clone, Default)]
pub struct PluginWorld {
    pub imports: Vec<InterfaceName>,
    pub exports: Vec<InterfaceName>,
}

/// Who a component is: what host functions learn about their caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComponentIdentity {
    pub workload_id: WorkloadId,
    pub workload: Arc<str>,
    pub namespace: Arc<str>,
    pub component: Arc<str>,
}

/// What a workload asks of a plugin for one of its components: checked by
/// [`HostPlugin::validate`] while the workload is validated, then bound.
#[derive(Debug, Clone)]
pub struct BindingSettings {
    pub identity: ComponentIdentity,
    /// The plugin's interfaces the component imports.
    pub imports: Vec<String>,
    /// The plugin's interfaces the component exports.
    pub exports: Vec<String>,
    /// Settings from the manifest's `hostInterfaces` entries that apply to the
    /// component, by interface.
    pub config: Vec<(String, IndexMap<String, serde_json::Value>)>,
    /// The component's own `config` map from the manifest.
    pub component_config: IndexMap<String, String>,
}

impl BindingSettings {
    /// The settings for an interface (semver-compatible), if the manifest gave any.
    pub fn config_for(&self, interface: &str) -> Option<&IndexMap<String, serde_json::Value>> {
        let wanted = ItemName::parse(interface);
        self.config.iter().find(|(i, _)| ItemName::parse(i).satisfies(&wanted)).map(|(_, c)| c)
    }
}

/// A component of a starting workload that uses a plugin: its settings (which
/// the plugin's `validate` accepted) and the workload, to call the component.
pub struct Binding {
    pub settings: BindingSettings,
    /// The running workload, to call the component (an HTTP request, a message).
    pub workload: Arc<RunningWorkload>,
    /// The workload this one replaces (`Host::workload_replace`), still running:
    /// what its bindings hold exclusively (an HTTP route) passes to this one
    /// instead of being a conflict.
    pub replacing: Option<WorkloadId>,
}

impl std::ops::Deref for Binding {
    type Target = BindingSettings;

    fn deref(&self) -> &BindingSettings {
        &self.settings
    }
}

pub trait HostPlugin: Send + Sync + 'static {
    /// Short, unique name (`keyvalue`, `http`); manifests link to `plugin:<id>`.
    fn id(&self) -> &str;

    fn world(&self) -> PluginWorld;

    /// Called once when the host starts.
    fn start(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    /// Called once when the host shuts down.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Whether the plugin accepts what a workload asks of it for one component;
    /// called while the workload is validated (so `weft inspect` and
    /// `Host::validate` refuse what starting would), every refusal listed. Check
    /// everything that can be checked without the running workload here.
    fn validate(&self, settings: &BindingSettings) -> Result<(), String> {
        let _ = settings;
        Ok(())
    }

    /// A component of a starting workload uses the plugin. An error rejects the
    /// workload, with the message as the reason (for what `validate` could not
    /// know, such as a server that is down).
    fn bind<'a>(&'a self, binding: &'a Binding) -> BoxFuture<'a, Result<(), String>> {
        let _ = binding;
        Box::pin(async { Ok(()) })
    }

    /// The component's workload stops (or its start failed after `bind`).
    fn unbind<'a>(&'a self, identity: &'a ComponentIdentity) -> BoxFuture<'a, ()> {
        let _ = identity;
        Box::pin(async {})
    }

    /// Defines the functions of `import` (one of `world().imports`, at the
    /// version the component asks for) in `instance`, the linker's instance for
    /// that import (bindgen's `add_to_linker_instance`, or `func_wrap` on it). Its
    /// host functions serve the `whose` component: pass it to
    /// [`StoreState::caller`] (from a closure, or from a getter chosen with
    /// [`for_whose!`](crate::for_whose)).
    fn add_to_linker(
        &self,
        instance: &mut LinkerInstance<StoreState>,
        import: &str,
        whose: Whose,
    ) -> wasmtime::Result<()>;

    /// The port of the HTTP server this plugin runs, while it listens (the
    /// host's heartbeat reports it).
    fn http_port(&self) -> Option<u16> {
        None
    }

    /// For [`StoreState::plugin`]: the plugin as `Any`.
    fn as_any(&self) -> &dyn Any;
}

/// Whose calls the host functions of one [`HostPlugin::add_to_linker`] serve.
///
/// Usually the component that is running. But a fused link composes a provider
/// into its caller: the provider's code then runs inside the caller's instance,
/// and only the import a call arrives through tells whose call it is. Each
/// member of a composite imports its plugin interfaces under names of its own
/// slot (`weft-m3:wasi-keyvalue/store@…`), and the functions defined under
/// those names serve the member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Whose(usize);

impl Whose {
    /// [`Whose::from_const`]'s value for the component that is running.
    pub const RUNNING: usize = usize::MAX;

    /// The component that is running.
    pub const fn running() -> Whose {
        Whose(Whose::RUNNING)
    }

    /// The member of a composite that holds `slot`.
    pub(crate) fn slot(slot: usize) -> Whose {
        debug_assert!(slot < crate::link::slots::MAX_SLOTS);
        Whose(slot)
    }

    /// From a getter's const parameter (see [`for_whose!`](crate::for_whose)).
    pub const fn from_const(n: usize) -> Whose {
        Whose(n)
    }

    /// The composite slot, if a member's; for [`for_whose!`](crate::for_whose).
    pub const fn number(self) -> usize {
        self.0
    }
}

/// `$getter::<N>` for `$whose`: a bindgen host getter (a plain `fn`, which cannot
/// capture) of a const parameter `N`, which it turns back into a [`Whose`] with
/// [`Whose::from_const`]. One such `fn` per composite slot, no other code copied.
///
/// ```ignore
/// fn view<const WHOSE: usize>(state: &mut StoreState) -> View<'_> {
///     let caller = state.caller(Whose::from_const(WHOSE));
///     ...
/// }
/// store::add_to_linker_instance::<StoreState, Kv>(instance, weft_runtime::for_whose!(whose, view))
/// ```
#[macro_export]
macro_rules! for_whose {
    ($whose:expr, $getter:ident) => {
        $crate::for_whose!(@arms $whose, $getter;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31)
    };
    (@arms $whose:expr, $getter:ident; $($n:literal)*) => {
        match $crate::plugin::Whose::number($whose) {
            $crate::plugin::Whose::RUNNING => $getter::<{ $crate::plugin::Whose::RUNNING }>,
            $($n => $getter::<$n>,)*
            n => unreachable!("composite slot {n}: a workload has at most 32"),
        }
    };
}

/// The plugins a host has loaded.
#[derive(Clone, Default)]
pub struct PluginRegistry {
    plugins: Arc<Vec<Arc<dyn HostPlugin>>>,
}

impl PluginRegistry {
    pub fn new(plugins: Vec<Arc<dyn HostPlugin>>) -> PluginRegistry {
        PluginRegistry { plugins: Arc::new(plugins) }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn HostPlugin>> {
        self.plugins.iter().find(|p| p.id() == id)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn HostPlugin>> {
        self.plugins.iter()
    }

    /// Plugins whose world satisfies `import`.
    pub fn providers_of(&self, import: &ItemName) -> Vec<&Arc<dyn HostPlugin>> {
        let Some(wanted) = import.as_interface() else { return Vec::new() };
        self.plugins.iter().filter(|p| p.world().imports.iter().any(|i| i.satisfies(wanted))).collect()
    }

    /// Plugins that drive an export satisfying `export`.
    pub fn drivers_of(&self, export: &ItemName) -> Vec<&Arc<dyn HostPlugin>> {
        let Some(wanted) = export.as_interface() else { return Vec::new() };
        self.plugins.iter().filter(|p| p.world().exports.iter().any(|i| wanted.satisfies(i))).collect()
    }

    /// Every interface the plugins provide.
    pub fn interfaces(&self) -> impl Iterator<Item = InterfaceName> + '_ {
        self.plugins.iter().flat_map(|p| p.world().imports)
    }

    /// Every interface of components the plugins drive.
    pub fn driven_interfaces(&self) -> impl Iterator<Item = InterfaceName> + '_ {
        self.plugins.iter().flat_map(|p| p.world().exports)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.plugins.iter().map(|p| p.id())
    }
}
