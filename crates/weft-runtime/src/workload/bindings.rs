//! Which plugins each component of a workload is bound to, with what settings:
//! planned and checked by every plugin while the workload is validated, so that
//! a validated workload is one its plugins will accept; bound when it starts.

use std::sync::Arc;

use indexmap::IndexMap;

use super::instance::WorkloadComponent;
use super::{LinkPlan, Provider};
use crate::error::Problem;
use crate::interface::ItemName;
use crate::manifest::WorkloadSpec;
use crate::plugin::{BindingSettings, HostPlugin, PluginRegistry};

/// A plugin to bind to a component when the workload starts.
pub(crate) struct PlannedBinding {
    pub plugin: Arc<dyn HostPlugin>,
    pub settings: BindingSettings,
}

/// Which plugins each component is bound to: those serving its imports, those
/// driving exports a `hostInterfaces` entry asks them to (so a server plugin
/// drives only what it was asked to), and those an entry naming the component
/// addresses. An entry naming no component configures every component bound.
pub(crate) fn plan(
    plugins: &PluginRegistry,
    spec: &WorkloadSpec,
    components: &[Arc<WorkloadComponent>],
    plan: &LinkPlan,
) -> Vec<PlannedBinding> {
    let mut out = Vec::new();
    for c in components {
        let engine = c.component.engine();
        let exports: Vec<String> = c.component.component_type().exports(engine).map(|(n, _)| n.to_string()).collect();
        // Entries for this component, and whether each names it (an entry naming no
        // component applies to every component that uses the plugin anyway).
        let asked: Vec<(String, IndexMap<String, serde_json::Value>, bool)> = spec
            .host_interfaces
            .iter()
            .filter(|hi| hi.component.as_deref().is_none_or(|t| t == &*c.name))
            .map(|hi| (hi.interface.clone(), hi.config.clone(), hi.component.is_some()))
            .collect();
        let component_config =
            spec.all_components().find(|s| *s.name == *c.name).map(|s| s.config.clone()).unwrap_or_default();
        for plugin in plugins.all() {
            let world = plugin.world();
            let in_world = |name: &str| {
                let item = ItemName::parse(name);
                let Some(i) = item.as_interface() else { return false };
                world.imports.iter().chain(&world.exports).any(|w| w.satisfies(i) || i.satisfies(w))
            };
            let imports: Vec<String> = plan
                .imports_of(&c.name)
                .iter()
                .filter(|l| matches!(&l.provider, Provider::Plugin { plugin: p } if p == plugin.id()))
                .map(|l| l.import.clone())
                .collect();
            let entries: Vec<_> = asked.iter().filter(|(i, _, _)| in_world(i)).collect();
            let named = entries.iter().any(|(_, _, named)| *named);
            let config: Vec<_> = entries.into_iter().map(|(i, c, _)| (i.clone(), c.clone())).collect();
            // An export the plugin drives is bound even with no entry for it: the
            // plugin decides what that means (the HTTP server may serve it on `/*`).
            let drives = |name: &str| {
                ItemName::parse(name).as_interface().is_some_and(|i| world.exports.iter().any(|w| i.satisfies(w)))
            };
            let driven: Vec<String> = exports
                .iter()
                .filter(|e| {
                    in_world(e)
                        && (drives(e) || config.iter().any(|(i, _)| ItemName::parse(i).satisfies(&ItemName::parse(e))))
                })
                .cloned()
                .collect();
            if !imports.is_empty() || !driven.is_empty() || named {
                let settings = BindingSettings {
                    identity: c.identity.clone(),
                    imports,
                    exports: driven,
                    config,
                    component_config: component_config.clone(),
                };
                out.push(PlannedBinding { plugin: plugin.clone(), settings });
            }
        }
    }
    out
}

/// Asks every plugin whether it accepts its bindings; every refusal is a problem.
pub(crate) fn check(bindings: &[PlannedBinding], problems: &mut Vec<Problem>) {
    for PlannedBinding { plugin, settings } in bindings {
        if let Err(reason) = plugin.validate(settings) {
            problems.push(Problem::new(
                format!("component `{}`", settings.identity.component),
                format!("plugin `{}` refused it: {reason}", plugin.id()),
            ));
        }
    }
}
