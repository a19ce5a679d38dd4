//! Exports a workload offers to other hosts of its lattice (`serve:` on a
//! component): checked while the workload is validated (the host is on a
//! lattice, the export exists, every function's values can cross), then a
//! binding to the lattice's plugin, made when the workload starts.

use std::sync::Arc;

use indexmap::IndexMap;
use wasmtime::component::types::ComponentItem;

use super::bindings::PlannedBinding;
use super::instance::WorkloadComponent;
use super::{HostContext, LinkPlan, Provider};
use crate::error::Problem;
use crate::interface::ItemName;
use crate::manifest::WorkloadSpec;
use crate::plugin::{BindingSettings, HostPlugin};

/// A workload that links to the lattice or serves to it needs a host on one:
/// every such link and every serving component is a problem on a host that is not.
pub(crate) fn need_lattice(cx: &HostContext, spec: &WorkloadSpec, plan: &LinkPlan, problems: &mut Vec<Problem>) {
    if cx.remote.is_some() {
        return;
    }
    for c in &plan.components {
        for link in c.imports.iter().filter(|l| matches!(l.provider, Provider::Remote { .. })) {
            problems.push(Problem::new(
                format!("component `{}`", c.component),
                format!(
                    "links `{}` to the lattice, but this host is not on one (`weft host --nats URL` is)",
                    link.import
                ),
            ));
        }
    }
    for c in spec.all_components().filter(|c| !c.serve.is_empty()) {
        problems.push(Problem::new(
            format!("component `{}`", c.name),
            "serves exports to the lattice, but this host is not on one (`weft host --nats URL` is)",
        ));
    }
}

/// The binding of each serving component to the lattice's plugin. Its settings
/// list the exports (as the component names them) and, per export, its
/// `group` when it has one.
pub(crate) fn plan(
    cx: &HostContext,
    spec: &WorkloadSpec,
    components: &[Arc<WorkloadComponent>],
    problems: &mut Vec<Problem>,
) -> Vec<PlannedBinding> {
    let mut out = Vec::new();
    for entry in spec.all_components().filter(|c| !c.serve.is_empty()) {
        let subject = format!("component `{}`", entry.name);
        if spec.service.as_ref().is_some_and(|s| s.name == entry.name) {
            problems.push(Problem::new(subject, "is the service, which is not invoked, so it cannot `serve` exports"));
            continue;
        }
        // Off a lattice, `need_lattice` has said so.
        let Some(remote) = &cx.remote else { continue };
        let Some(c) = components.iter().find(|c| *c.name == *entry.name) else { continue };
        let engine = c.component.engine();
        let mut exports = Vec::new();
        let mut config = Vec::new();
        for served in &entry.serve {
            if let Some(group) = &served.group
                && let Err(e) = super::plan::check_group(group)
            {
                problems.push(Problem::new(&subject, format!("`serve` of `{}`: {e}", served.interface)));
                continue;
            }
            let wanted = ItemName::parse(&served.interface);
            let component_type = c.component.component_type();
            let found = component_type.exports(engine).find(|(name, item)| {
                matches!(item.ty, ComponentItem::ComponentInstance(_)) && ItemName::parse(name).satisfies(&wanted)
            });
            let Some((export, item)) = found else {
                problems.push(Problem::new(
                    &subject,
                    format!("serves `{}` to the lattice, but exports no such interface", served.interface),
                ));
                continue;
            };
            let ComponentItem::ComponentInstance(ty) = item.ty else { continue };
            for (name, item) in ty.exports(engine) {
                let why = match item.ty {
                    ComponentItem::ComponentFunc(func) => remote.check(&func).err(),
                    ComponentItem::Resource(_) => Some("resources cannot cross a remote link".to_string()),
                    _ => None,
                };
                if let Some(why) = why {
                    problems.push(Problem::new(&subject, format!("cannot serve `{export}`: `{name}`: {why}")));
                }
            }
            let mut settings = IndexMap::new();
            if let Some(group) = &served.group {
                settings.insert("group".to_string(), serde_json::Value::String(group.clone()));
            }
            exports.push(export.to_string());
            config.push((export.to_string(), settings));
        }
        if !exports.is_empty() {
            let plugin: Arc<dyn HostPlugin> = remote.clone();
            out.push(PlannedBinding {
                plugin,
                settings: BindingSettings {
                    identity: c.identity.clone(),
                    imports: Vec::new(),
                    exports,
                    config,
                    component_config: entry.config.clone(),
                },
            });
        }
    }
    out
}
