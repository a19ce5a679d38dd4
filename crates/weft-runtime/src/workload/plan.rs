//! The link plan: for every import of every component, which provider serves it.
//!
//! Providers are considered in this order, and the first tier with a candidate wins:
//! an explicit `links` entry › a component of the same workload that exports the
//! interface › the runtime's WASI › a host plugin. More than one candidate in a tier
//! is an error naming them, unless a link chooses. Nothing is remote unless a link
//! says so: `to: lattice` (or `lattice:<group>`) is served over wRPC by whichever
//! host of the lattice serves the interface.

use std::fmt;

use serde::Serialize;

use crate::error::Problem;
use crate::interface::ItemName;
use crate::manifest::{LinkModeSpec, LinkSpec};
use crate::plugin::PluginRegistry;
use crate::wasi;

/// The plan of a whole workload, printable (`weft inspect`) and part of its status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkPlan {
    pub components: Vec<ComponentLinks>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentLinks {
    pub component: String,
    pub imports: Vec<ImportLink>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportLink {
    pub import: String,
    pub provider: Provider,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Provider {
    /// The runtime's own WASI 0.2.
    Runtime,
    /// Another component of the workload, called in-process.
    Component {
        component: String,
        export: String,
        mode: LinkMode,
        /// Why the link is not fused, when it is not.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A host plugin.
    Plugin { plugin: String },
    /// A component on another host of the lattice, over wRPC.
    Remote {
        /// The lattice group that serves it; `None` for the default group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkMode {
    /// The provider is composed into the caller: calls stay in compiled Wasm.
    Fused,
    /// Host-mediated: each call goes through the host into the provider's instance
    /// in the caller's store.
    Dynamic,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Runtime => f.write_str("runtime (WASI)"),
            Provider::Component { component, export, mode: LinkMode::Fused, .. } => {
                write!(f, "component `{component}` ({export}, fused)")
            }
            Provider::Component { component, export, mode: LinkMode::Dynamic, reason } => match reason {
                Some(reason) => write!(f, "component `{component}` ({export}, dynamic: {reason})"),
                None => write!(f, "component `{component}` ({export}, dynamic)"),
            },
            Provider::Plugin { plugin } => write!(f, "plugin `{plugin}`"),
            Provider::Remote { group: None } => f.write_str("the lattice (remote, wRPC)"),
            Provider::Remote { group: Some(group) } => write!(f, "the lattice, group `{group}` (remote, wRPC)"),
        }
    }
}

impl LinkPlan {
    pub fn imports_of(&self, component: &str) -> &[ImportLink] {
        self.components.iter().find(|c| c.component == component).map_or(&[], |c| &c.imports)
    }

    pub(crate) fn imports_of_mut(&mut self, component: &str) -> &mut [ImportLink] {
        self.components.iter_mut().find(|c| c.component == component).map_or(&mut [], |c| &mut c.imports)
    }

    /// The providers `component` reaches through fused links, directly or not,
    /// each once, every provider before the components that import from it.
    pub(crate) fn fused_closure(&self, component: &str) -> Vec<String> {
        fn visit(plan: &LinkPlan, name: &str, out: &mut Vec<String>) {
            for link in plan.imports_of(name) {
                if let Provider::Component { component, mode: LinkMode::Fused, .. } = &link.provider
                    && !out.contains(component)
                {
                    visit(plan, component, out);
                    out.push(component.clone());
                }
            }
        }
        let mut out = Vec::new();
        visit(self, component, &mut out);
        out
    }

    /// (caller, provider) pairs of in-process component links.
    pub fn component_edges(&self) -> impl Iterator<Item = (&str, &str)> {
        self.components.iter().flat_map(|c| {
            c.imports.iter().filter_map(move |i| match &i.provider {
                Provider::Component { component, .. } => Some((c.component.as_str(), component.as_str())),
                _ => None,
            })
        })
    }
}

/// What the planner knows of one component: its name and its import/export names.
pub(crate) struct Surface<'a> {
    pub name: &'a str,
    pub imports: Vec<&'a str>,
    pub exports: Vec<&'a str>,
}

/// Resolves every import of every component; problems for what cannot be resolved.
pub(crate) fn resolve(
    surfaces: &[Surface<'_>],
    links: &[LinkSpec],
    plugins: &PluginRegistry,
    problems: &mut Vec<Problem>,
) -> LinkPlan {
    check_links(surfaces, links, problems);
    let components = surfaces
        .iter()
        .map(|s| ComponentLinks {
            component: s.name.to_string(),
            imports: s
                .imports
                .iter()
                .filter_map(|import| {
                    let provider = resolve_import(s, import, surfaces, links, plugins);
                    provider
                        .map_err(|message| problems.push(Problem::new(format!("component `{}`", s.name), message)))
                        .ok()
                        .map(|provider| ImportLink { import: import.to_string(), provider })
                })
                .collect(),
        })
        .collect();
    let plan = LinkPlan { components };
    check_cycles(&plan, problems);
    plan
}

fn resolve_import(
    caller: &Surface<'_>,
    import: &str,
    surfaces: &[Surface<'_>],
    links: &[LinkSpec],
    plugins: &PluginRegistry,
) -> Result<Provider, String> {
    let wanted = ItemName::parse(import);
    let exporter = |s: &Surface<'_>| -> Option<String> {
        s.exports.iter().find(|e| ItemName::parse(e).satisfies(&wanted)).map(|e| e.to_string())
    };
    if let Some(link) = links.iter().find(|l| l.from == caller.name && ItemName::parse(&l.import).satisfies(&wanted)) {
        return resolve_link(link, import, &wanted, surfaces, plugins, exporter);
    }
    let exporters: Vec<(&str, String)> =
        surfaces.iter().filter(|s| s.name != caller.name).filter_map(|s| Some((s.name, exporter(s)?))).collect();
    match exporters.as_slice() {
        [(component, export)] => {
            return Ok(Provider::Component {
                component: component.to_string(),
                export: export.clone(),
                mode: LinkMode::Fused,
                reason: None,
            });
        }
        [] => {}
        many => {
            let names: Vec<String> = many.iter().map(|(n, _)| format!("`{n}`")).collect();
            return Err(format!(
                "imports `{import}`, which {} components export ({}); add a `links` entry choosing one, \
                 e.g. {{ from: {}, import: {import}, to: {} }}",
                many.len(),
                names.join(", "),
                caller.name,
                many[0].0,
            ));
        }
    }
    if wasi::provides(&wanted) {
        return Ok(Provider::Runtime);
    }
    match plugins.providers_of(&wanted).as_slice() {
        [plugin] => Ok(Provider::Plugin { plugin: plugin.id().to_string() }),
        [] => {
            let loaded: Vec<&str> = plugins.ids().collect();
            let loaded = if loaded.is_empty() { "none".to_string() } else { loaded.join(", ") };
            Err(format!(
                "imports `{import}`, which nothing provides: no other component of this workload exports it, \
                 the runtime's WASI (0.2; 0.3 for async components) does not include it, and no host plugin provides it (plugins loaded: \
                 {loaded}). Add a component that exports it, or run on a host with a plugin that provides it"
            ))
        }
        many => {
            let names: Vec<String> = many.iter().map(|p| format!("`plugin:{}`", p.id())).collect();
            Err(format!(
                "imports `{import}`, which {} plugins provide ({}); add a `links` entry choosing one",
                many.len(),
                names.join(", ")
            ))
        }
    }
}

fn resolve_link(
    link: &LinkSpec,
    import: &str,
    wanted: &ItemName,
    surfaces: &[Surface<'_>],
    plugins: &PluginRegistry,
    exporter: impl Fn(&Surface<'_>) -> Option<String>,
) -> Result<Provider, String> {
    if link.to == "runtime" {
        return if wasi::provides(wanted) {
            Ok(Provider::Runtime)
        } else {
            Err(format!("links `{import}` to the runtime, whose WASI 0.2 does not include it"))
        };
    }
    if let Some(group) = remote_group(&link.to) {
        let group = group?;
        if link.mode != LinkModeSpec::Auto {
            return Err(format!("links `{import}` to the lattice, where `mode` has no meaning (calls go over wRPC)"));
        }
        if wanted.as_interface().is_none() {
            return Err(format!("links `{import}` to the lattice, which serves interfaces, not bare functions"));
        }
        return Ok(Provider::Remote { group });
    }
    if let Some(id) = link.to.strip_prefix("plugin:") {
        return match plugins.get(id) {
            None => Err(format!("links `{import}` to plugin `{id}`, which this host has not loaded")),
            Some(p) if !plugins.providers_of(wanted).iter().any(|q| q.id() == p.id()) => {
                Err(format!("links `{import}` to plugin `{id}`, which does not provide it"))
            }
            Some(p) => Ok(Provider::Plugin { plugin: p.id().to_string() }),
        };
    }
    match surfaces.iter().find(|s| s.name == link.to) {
        None => Err(format!("links `{import}` to `{}`, which is not a component of this workload", link.to)),
        Some(s) => match exporter(s) {
            Some(export) => {
                let (mode, reason) = match link.mode {
                    LinkModeSpec::Auto | LinkModeSpec::Fused => (LinkMode::Fused, None),
                    LinkModeSpec::Dynamic => (LinkMode::Dynamic, Some("the manifest pins it".to_string())),
                };
                Ok(Provider::Component { component: s.name.to_string(), export, mode, reason })
            }
            None => Err(format!("links `{import}` to component `{}`, which does not export it", s.name)),
        },
    }
}

/// For a link target of the lattice (`lattice`, `lattice:<group>`), its group.
fn remote_group(to: &str) -> Option<Result<Option<String>, String>> {
    if to == "lattice" {
        return Some(Ok(None));
    }
    let group = to.strip_prefix("lattice:")?;
    Some(check_group(group).map(|()| Some(group.to_string())))
}

/// A group is one NATS subject token: it becomes part of the wRPC prefix.
pub(crate) fn check_group(group: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if group.is_empty() || group.len() > 64 || !group.chars().all(fine) {
        return Err(format!(
            "`{group}` is not a lattice group: 1 to 64 letters, digits, `-` or `_` (it becomes a NATS subject token)"
        ));
    }
    Ok(())
}

/// Links must name a component that exists and an import it has.
fn check_links(surfaces: &[Surface<'_>], links: &[LinkSpec], problems: &mut Vec<Problem>) {
    for link in links {
        let subject = format!("link from `{}`", link.from);
        match surfaces.iter().find(|s| s.name == link.from) {
            None => problems.push(Problem::new(subject, "`from` is not a component of this workload")),
            Some(s) => {
                let wanted = ItemName::parse(&link.import);
                if !s.imports.iter().any(|i| wanted.satisfies(&ItemName::parse(i))) {
                    problems.push(Problem::new(
                        subject,
                        format!("component `{}` does not import `{}`", link.from, link.import),
                    ));
                }
            }
        }
    }
}

/// Rejects cycles among component links: a component cannot, directly or through
/// others, provide to itself.
fn check_cycles(plan: &LinkPlan, problems: &mut Vec<Problem>) {
    let names: Vec<&str> = plan.components.iter().map(|c| c.component.as_str()).collect();
    let edges: Vec<(&str, &str)> = plan.component_edges().collect();
    let mut reported: Vec<Vec<&str>> = Vec::new();
    for start in &names {
        let mut path = vec![*start];
        if let Some(cycle) = find_cycle(start, &edges, &mut path) {
            let mut key = cycle[..cycle.len() - 1].to_vec();
            key.sort();
            if !reported.contains(&key) {
                let shown: Vec<String> = cycle.iter().map(|c| format!("`{c}`")).collect();
                problems.push(Problem::new("links", format!("link cycle: {}", shown.join(" → "))));
                reported.push(key);
            }
        }
    }
}

fn find_cycle<'a>(node: &'a str, edges: &[(&'a str, &'a str)], path: &mut Vec<&'a str>) -> Option<Vec<&'a str>> {
    for (_, next) in edges.iter().filter(|(from, _)| *from == node) {
        if *next == path[0] {
            let mut cycle = path.clone();
            cycle.push(next);
            return Some(cycle);
        }
        if !path.contains(next) {
            path.push(next);
            if let Some(c) = find_cycle(next, edges, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

/// Components ordered so that every provider comes before its callers.
pub(crate) fn provider_order(plan: &LinkPlan) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    fn visit(name: &str, plan: &LinkPlan, order: &mut Vec<String>) {
        if order.iter().any(|o| o == name) {
            return;
        }
        for (_, provider) in plan.component_edges().filter(|(from, _)| *from == name) {
            visit(provider, plan, order);
        }
        order.push(name.to_string());
    }
    for c in &plan.components {
        visit(&c.component, plan, &mut order);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn surface<'a>(name: &'a str, imports: &[&'a str], exports: &[&'a str]) -> Surface<'a> {
        Surface { name, imports: imports.to_vec(), exports: exports.to_vec() }
    }

    fn link(from: &str, import: &str, to: &str) -> LinkSpec {
        LinkSpec { from: from.into(), import: import.into(), to: to.into(), mode: LinkModeSpec::Auto }
    }

    #[test]
    fn components_come_before_wasi_and_ambiguity_is_named() {
        let s = [
            surface("app", &["a:b/c@1.0.0", "wasi:io/streams@0.2.3"], &[]),
            surface("p1", &[], &["a:b/c@1.2.0"]),
            surface("p2", &[], &["a:b/c@1.1.0"]),
        ];
        let mut problems = Vec::new();
        let plan = resolve(&s, &[], &PluginRegistry::default(), &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("`p1`, `p2`"), "{}", problems[0]);
        assert_eq!(plan.imports_of("app")[0].provider, Provider::Runtime);

        let mut problems = Vec::new();
        let plan = resolve(&s, &[link("app", "a:b/c@1.0.0", "p2")], &PluginRegistry::default(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            plan.imports_of("app")[0].provider,
            Provider::Component {
                component: "p2".into(),
                export: "a:b/c@1.1.0".into(),
                mode: LinkMode::Fused,
                reason: None
            }
        );
    }

    #[test]
    fn cycles_are_reported_once_and_order_puts_providers_first() {
        let s = [surface("a", &["x:y/b@1.0.0"], &["x:y/a@1.0.0"]), surface("b", &["x:y/a@1.0.0"], &["x:y/b@1.0.0"])];
        let mut problems = Vec::new();
        resolve(&s, &[], &PluginRegistry::default(), &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.starts_with("link cycle: `a` → `b` → `a`"), "{}", problems[0]);

        let chain = [
            surface("top", &["x:y/mid@1.0.0"], &[]),
            surface("mid", &["x:y/low@1.0.0"], &["x:y/mid@1.0.0"]),
            surface("low", &[], &["x:y/low@1.0.0"]),
        ];
        let mut problems = Vec::new();
        let plan = resolve(&chain, &[], &PluginRegistry::default(), &mut problems);
        assert!(problems.is_empty());
        assert_eq!(provider_order(&plan), ["low", "mid", "top"]);
    }

    #[test]
    fn bad_links_are_problems() {
        let s = [surface("app", &["a:b/c@1.0.0"], &[]), surface("p", &[], &["a:b/d@1.0.0"])];
        let mut problems = Vec::new();
        resolve(
            &s,
            &[link("app", "a:b/c@1.0.0", "p"), link("ghost", "a:b/c@1.0.0", "p"), link("app", "a:b/zzz@1.0.0", "p")],
            &PluginRegistry::default(),
            &mut problems,
        );
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{text:#?}");
        assert!(text.iter().any(|t| t.contains("`from` is not a component")));
        assert!(text.iter().any(|t| t.contains("does not import `a:b/zzz@1.0.0`")));
        assert!(text.iter().any(|t| t.contains("which does not export it")));
    }

    #[test]
    fn links_to_the_lattice_are_remote_and_checked() {
        let s = [surface("app", &["a:b/c@1.0.0", "a:b/d@1.0.0", "a:b/e@1.0.0", "bare"], &[])];
        let mut problems = Vec::new();
        let mut pinned = link("app", "a:b/e@1.0.0", "lattice");
        pinned.mode = LinkModeSpec::Dynamic;
        let plan = resolve(
            &s,
            &[link("app", "a:b/c@1.0.0", "lattice"), link("app", "a:b/d@1.0.0", "lattice:eu-1"), pinned],
            &PluginRegistry::default(),
            &mut problems,
        );
        assert_eq!(plan.imports_of("app")[0].provider, Provider::Remote { group: None });
        assert_eq!(plan.imports_of("app")[1].provider, Provider::Remote { group: Some("eu-1".into()) });
        assert_eq!(plan.imports_of("app")[1].provider.to_string(), "the lattice, group `eu-1` (remote, wRPC)");
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert!(text.iter().any(|t| t.contains("where `mode` has no meaning")), "{text:#?}");

        for bad in ["lattice:", "lattice:a.b", "lattice:*", "lattice:a b"] {
            let mut problems = Vec::new();
            resolve(&s, &[link("app", "a:b/c@1.0.0", bad)], &PluginRegistry::default(), &mut problems);
            assert!(problems.iter().any(|p| p.message.contains("is not a lattice group")), "{bad}: {problems:?}");
        }
        let mut problems = Vec::new();
        resolve(&s, &[link("app", "bare", "lattice")], &PluginRegistry::default(), &mut problems);
        assert!(problems.iter().any(|p| p.message.contains("serves interfaces, not bare functions")), "{problems:?}");
    }
}
