//! The last stage of validation: decide how every link is made, compose fused
//! providers into their callers, and link every component (or composite) into an
//! `InstancePre`.

use std::sync::Arc;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};

use super::instance::{Member, WorkloadComponent};
use super::plan::{ImportLink, LinkMode, LinkPlan, Provider};
use super::{HostContext, WorkloadId};
use crate::component::Digest;
use crate::engine::Engine;
use crate::error::Problem;
use crate::interface::ItemName;
use crate::limits::{ByteSize, ConcurrencyGate, Limits};
use crate::link::fuse::{Composite, Part, Wire};
use crate::link::resources::{ProvidedResources, resource_types};
use crate::link::shared::SharedInstance;
use crate::link::{self, slots};
use crate::manifest::{ComponentSpec, LinkModeSpec, WorkloadSpec};
use crate::output::Origin;
use crate::plugin::{ComponentIdentity, Whose};
use crate::store::StoreState;
use crate::telemetry::model::KeyValue;
use crate::wasi::http::OutgoingPolicy;
use crate::wasi::{self, Preopen, WasiTemplate};

/// A component whose bytes compiled.
pub(super) struct Loaded {
    pub digest: Digest,
    pub bytes: Arc<[u8]>,
    pub component: Component,
    pub imports: Vec<(String, ComponentItem)>,
    pub exports: Vec<String>,
}

pub(super) struct Builder<'a> {
    pub cx: &'a HostContext,
    /// The engine the workload runs on.
    pub engine: &'a Arc<Engine>,
    pub id: &'a WorkloadId,
    pub spec: &'a WorkloadSpec,
    pub entries: &'a [(&'a ComponentSpec, bool)],
    pub loaded: &'a [Result<Loaded, String>],
    pub preopens: &'a [Vec<Preopen>],
    pub outgoing: &'a [OutgoingPolicy],
    pub plan: &'a mut LinkPlan,
    pub problems: &'a mut Vec<Problem>,
    pub built: Vec<Option<Arc<WorkloadComponent>>>,
    next_slot: usize,
}

/// What validation prepared for each component, index for index.
pub(super) struct Prepared<'a> {
    pub engine: &'a Arc<Engine>,
    pub entries: &'a [(&'a ComponentSpec, bool)],
    pub loaded: &'a [Result<Loaded, String>],
    pub preopens: &'a [Vec<Preopen>],
    pub outgoing: &'a [OutgoingPolicy],
}

impl<'a> Builder<'a> {
    pub fn new(
        cx: &'a HostContext,
        id: &'a WorkloadId,
        spec: &'a WorkloadSpec,
        prepared: Prepared<'a>,
        plan: &'a mut LinkPlan,
        problems: &'a mut Vec<Problem>,
    ) -> Builder<'a> {
        let Prepared { engine, entries, loaded, preopens, outgoing } = prepared;
        Builder {
            cx,
            engine,
            id,
            spec,
            entries,
            loaded,
            preopens,
            outgoing,
            plan,
            problems,
            built: entries.iter().map(|_| None).collect(),
            next_slot: 0,
        }
    }

    fn index(&self, name: &str) -> usize {
        self.entries.iter().position(|(c, _)| c.name == name).expect("planned components exist")
    }

    fn loaded(&self, index: usize) -> &'a Loaded {
        self.loaded[index].as_ref().expect("planned components loaded")
    }

    /// Whether the manifest pins the link of `caller`'s `import` to `fused`.
    fn pinned_fused(&self, caller: &str, import: &str) -> bool {
        let wanted = ItemName::parse(import);
        self.spec
            .links
            .iter()
            .any(|l| l.from == caller && l.mode == LinkModeSpec::Fused && ItemName::parse(&l.import).satisfies(&wanted))
    }

    /// Makes `caller`'s fused links of `which` dynamic, for `reason` — or, for a link
    /// the manifest pins to `fused`, reports that it cannot be.
    fn unfuse(&mut self, caller: &str, which: impl Fn(&ImportLink) -> bool, reason: &str) {
        let targets: Vec<String> = self
            .plan
            .imports_of(caller)
            .iter()
            .filter(|l| which(l) && matches!(l.provider, Provider::Component { mode: LinkMode::Fused, .. }))
            .map(|l| l.import.clone())
            .collect();
        for import in &targets {
            if self.pinned_fused(caller, import) {
                self.problems.push(Problem::new(
                    format!("component `{caller}`"),
                    format!("the link of `{import}` is pinned to `fused`, but it cannot be fused: {reason}"),
                ));
            }
        }
        for link in self.plan.imports_of_mut(caller) {
            if targets.contains(&link.import)
                && let Provider::Component { mode, reason: why, .. } = &mut link.provider
            {
                *mode = LinkMode::Dynamic;
                *why = Some(reason.to_string());
            }
        }
    }

    /// Decides which links can be fused: a provider whose own limits must hold
    /// stays behind a dynamic link, since a composite runs under one set of
    /// limits, and so does a shared provider. (A provider that imports from
    /// plugins is fused: its plugin imports are its slot's, served as its own.)
    pub fn decide_modes(&mut self) {
        let callers: Vec<String> = self.plan.components.iter().map(|c| c.component.clone()).collect();
        for caller in callers {
            for (provider, _) in self.entries.iter().filter(|(c, _)| c.shared.is_some()) {
                let reason = format!("component `{}` is shared: its one instance serves every caller", provider.name);
                self.unfuse(&caller, |l| is_link_to(l, &provider.name), &reason);
            }
            let providers: Vec<String> = self
                .plan
                .imports_of(&caller)
                .iter()
                .filter_map(|l| match &l.provider {
                    Provider::Component { component, mode: LinkMode::Fused, .. } => Some(component.clone()),
                    _ => None,
                })
                .collect();
            for provider in providers {
                let spec = &self.entries[self.index(&provider)].0.limits;
                let own: Vec<&str> = [("cpuTime", spec.cpu_time.is_some()), ("memory", spec.memory.is_some())]
                    .into_iter()
                    .filter_map(|(name, set)| set.then_some(name))
                    .collect();
                if !own.is_empty() {
                    let reason = format!(
                        "component `{provider}` sets its own {}, which only a dynamic link enforces",
                        own.join(" and ")
                    );
                    self.unfuse(&caller, |l| is_link_to(l, &provider), &reason);
                }
            }
        }
    }

    /// Links every component, providers first.
    pub async fn build_all(&mut self) {
        for name in super::plan::provider_order(self.plan) {
            let index = self.index(&name);
            let members = self.plan.fused_closure(&name);
            if !members.is_empty() {
                match self.build_composite(index, &members).await {
                    Ok(component) => {
                        self.built[index] = Some(Arc::new(component));
                        continue;
                    }
                    Err(Failure::Problem(problem)) => {
                        self.problems.push(problem);
                        continue;
                    }
                    Err(Failure::ProviderFailed) => continue,
                    Err(Failure::Unfusable(reason)) => {
                        self.unfuse(&name, |_| true, &format!("cannot compose: {reason}"));
                    }
                }
            }
            match self.build_plain(index) {
                Ok(component) => self.built[index] = Some(Arc::new(component)),
                Err(Failure::Problem(problem)) => self.problems.push(problem),
                Err(Failure::ProviderFailed) => {}
                Err(Failure::Unfusable(_)) => unreachable!("a plain component is not composed"),
            }
        }
    }

    fn build_plain(&mut self, index: usize) -> Result<WorkloadComponent, Failure> {
        let name = self.entries[index].0.name.clone();
        let loaded = self.loaded(index);
        let mut linker = self.base_linker(&name)?;
        let eager = self.link_open_imports(&mut linker, &name, None)?;
        let pre = linker.instantiate_pre(&loaded.component).map_err(|e| self.cannot_link(&name, &e))?;
        Ok(self.component(index, loaded.component.clone(), pre, Vec::new(), eager))
    }

    async fn build_composite(&mut self, index: usize, members: &[String]) -> Result<WorkloadComponent, Failure> {
        let name = self.entries[index].0.name.clone();
        if self.next_slot + members.len() > slots::MAX_SLOTS {
            return Err(Failure::Unfusable(format!(
                "the workload already has the {} fused members it can have",
                slots::MAX_SLOTS
            )));
        }
        let slotted: Vec<(usize, String)> =
            members.iter().enumerate().map(|(i, m)| (self.next_slot + i, m.clone())).collect();
        // Parts: the members (providers first), then the entry.
        let order: Vec<(Option<usize>, String)> =
            slotted.iter().map(|(s, m)| (Some(*s), m.clone())).chain([(None, name.clone())]).collect();
        let position =
            |component: &str| order.iter().position(|(_, n)| n == component).expect("fused providers are parts");
        let parts = order
            .iter()
            .map(|(slot, part)| {
                let loaded = self.loaded(self.index(part));
                let wiring = self
                    .plan
                    .imports_of(part)
                    .iter()
                    .filter_map(|l| match (&l.provider, slot) {
                        (Provider::Component { component, export, mode: LinkMode::Fused, .. }, _) => {
                            Some((l.import.clone(), Wire::Part { part: position(component), export: export.clone() }))
                        }
                        (_, None) => None,
                        (Provider::Runtime, Some(_)) if !slots::is_per_member(&ItemName::parse(&l.import)) => None,
                        (_, Some(slot)) => Some((l.import.clone(), Wire::Renamed(slots::renamed(*slot, &l.import)))),
                    })
                    .collect();
                Part { name: part.clone(), digest: loaded.digest, bytes: loaded.bytes.clone(), wiring }
            })
            .collect();
        let composite = Composite { parts, entry: order.len() - 1 };
        let engine = self.engine.clone();
        let component = tokio::task::spawn_blocking(move || {
            let key = composite.key();
            engine.cache().load_keyed(key, || composite.encode())
        })
        .await
        .unwrap_or_else(|e| Err(format!("composing failed: {e}")))
        .map_err(Failure::Unfusable)?;

        let mut linker = self.base_linker(&name)?;
        let mut eager = self.link_open_imports(&mut linker, &name, None)?;
        for (slot, member) in &slotted {
            slots::add_to_linker(&mut linker, *slot, self.engine.concurrency())
                .map_err(|e| self.cannot_link(&name, &e))?;
            eager.extend(self.link_open_imports(&mut linker, member, Some(*slot))?);
        }
        let pre = linker.instantiate_pre(&component).map_err(|e| Failure::Unfusable(super::instance::describe(&e)))?;
        self.next_slot += slotted.len();
        let members = slotted
            .into_iter()
            .map(|(slot, m)| Member {
                slot,
                component: self.built[self.index(&m)].clone().expect("members are built first"),
            })
            .collect();
        Ok(self.component(index, component, pre, members, eager))
    }

    fn base_linker(&self, name: &str) -> Result<Linker<StoreState>, Failure> {
        let mut linker = Linker::new(self.engine.wasmtime());
        // A component of the workload may serve a WASI interface in place of the runtime.
        linker.allow_shadowing(true);
        wasi::add_to_linker(&mut linker, self.engine.concurrency()).map_err(|e| self.cannot_link(name, &e))?;
        Ok(linker)
    }

    /// Defines `part`'s imports that neither WASI nor a fused link satisfies:
    /// plugins and dynamic links, under their slot names for composite members.
    /// Returns the providers that async dynamic links reach, which are
    /// instantiated with `part`.
    fn link_open_imports(
        &self,
        linker: &mut Linker<StoreState>,
        part: &str,
        slot: Option<usize>,
    ) -> Result<Vec<Arc<WorkloadComponent>>, Failure> {
        let mut eager: Vec<Arc<WorkloadComponent>> = Vec::new();
        let loaded = self.loaded(self.index(part));
        let engine = self.engine.wasmtime();
        for import in self.plan.imports_of(part) {
            let name = match slot {
                Some(slot) => slots::renamed(slot, &import.import),
                None => import.import.clone(),
            };
            match &import.provider {
                Provider::Runtime => {}
                Provider::Component { mode: LinkMode::Fused, .. } => {}
                Provider::Plugin { plugin } => {
                    let plugin = self.cx.plugins.get(plugin).expect("planned plugins are loaded");
                    let whose = slot.map_or(Whose::running(), Whose::slot);
                    let defined =
                        linker.instance(&name).and_then(|mut i| plugin.add_to_linker(&mut i, &import.import, whose));
                    defined.map_err(|e| {
                        self.problem(part, format!("plugin `{}` cannot provide `{}`: {e}", plugin.id(), import.import))
                    })?;
                }
                Provider::Remote { group } => {
                    let remote = self.cx.remote.as_ref().ok_or_else(|| {
                        self.problem(
                            part,
                            format!(
                                "links `{}` to the lattice, but this host is not on one (`weft host --nats URL` is)",
                                import.import
                            ),
                        )
                    })?;
                    let item = &loaded.imports.iter().find(|(n, _)| *n == import.import).expect("import exists").1;
                    link::remote::forward_import(linker, &name, &import.import, item, remote, group.as_deref())
                        .map_err(|e| {
                            self.problem(
                                part,
                                format!(
                                    "cannot link `{}` to the lattice: {}",
                                    import.import,
                                    super::instance::describe(&e)
                                ),
                            )
                        })?;
                }
                Provider::Component { component, export, mode: LinkMode::Dynamic, .. } => {
                    let provider = self.built[self.index(component)].as_ref().ok_or(Failure::ProviderFailed)?;
                    let position = loaded.imports.iter().position(|(n, _)| *n == import.import).expect("import exists");
                    let earlier: Vec<_> =
                        loaded.imports[..position].iter().flat_map(|(_, item)| resource_types(engine, item)).collect();
                    let item = &loaded.imports[position].1;
                    let concurrency = self.engine.concurrency();
                    let linked = match &provider.shared {
                        Some(shared) => {
                            link::shared::forward_import(linker, &name, item, provider, shared, export).map(|()| false)
                        }
                        None => link::forward_import(linker, &name, item, &earlier, provider, export, concurrency),
                    };
                    let linked_async = linked.map_err(|e| {
                        self.problem(
                            part,
                            format!(
                                "cannot link `{}` to component `{component}`: {}",
                                import.import,
                                super::instance::describe(&e)
                            ),
                        )
                    })?;
                    if linked_async {
                        // Its own eager providers first: they live in the same store.
                        for p in provider.eager.iter().chain([provider]) {
                            if !eager.iter().any(|e| e.index == p.index) {
                                eager.push(p.clone());
                            }
                        }
                    }
                }
            }
        }
        Ok(eager)
    }

    fn component(
        &self,
        index: usize,
        component: Component,
        pre: wasmtime::component::InstancePre<StoreState>,
        members: Vec<Member>,
        eager: Vec<Arc<WorkloadComponent>>,
    ) -> WorkloadComponent {
        let (c, is_service) = self.entries[index];
        let mut limits = Limits::resolve(&c.limits, is_service);
        if c.shared.is_some() {
            // A CPU budget is per invocation; a shared instance's calls interleave
            // (validation refuses `cpuTime` for it).
            limits.cpu_time = None;
        }
        // A composite's memories grow under one account: its members' limits add up.
        limits.memory = ByteSize(limits.memory.0 + members.iter().map(|m| m.component.limits.memory.0).sum::<u64>());
        WorkloadComponent {
            index,
            name: c.name.as_str().into(),
            identity: ComponentIdentity {
                workload_id: self.id.clone(),
                workload: self.spec.name.as_str().into(),
                namespace: self.spec.namespace.as_str().into(),
                component: c.name.as_str().into(),
            },
            plugins: self.cx.plugins.clone(),
            digest: self.loaded(index).digest,
            resources: ProvidedResources::of(&component),
            modules: crate::component::module_names(&self.loaded(index).bytes),
            component,
            pre,
            members,
            eager,
            wasi: WasiTemplate {
                origin: Origin { workload: self.spec.name.as_str().into(), component: c.name.as_str().into() },
                args: c.args.clone(),
                env: c.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                preopens: self.preopens[index].clone(),
                stdio: self.cx.stdio.clone(),
                outgoing: self.outgoing[index].clone(),
            },
            cpu_budget: limits.cpu_time.map(|t| self.engine.ticks(t)),
            gate: ConcurrencyGate::new(&limits),
            idle: c.reuse_instances.then(Default::default),
            spare: Default::default(),
            shared: c.shared.as_ref().map(|s| Arc::new(SharedInstance::new(self.engine.clone(), s.idle_timeout))),
            exports: Default::default(),
            limits,
            telemetry: self.cx.telemetry.clone(),
            metrics: self.cx.telemetry.component_metrics(vec![
                KeyValue::new("weft.workload", self.spec.name.as_str()),
                KeyValue::new("weft.namespace", self.spec.namespace.as_str()),
                KeyValue::new("weft.workload.id", self.id.to_string()),
                KeyValue::new("weft.component", c.name.as_str()),
            ]),
        }
    }

    fn problem(&self, component: &str, message: String) -> Failure {
        Failure::Problem(Problem::new(format!("component `{component}`"), message))
    }

    fn cannot_link(&self, component: &str, e: &wasmtime::Error) -> Failure {
        self.problem(component, format!("cannot be linked: {}", super::instance::describe(e)))
    }
}

enum Failure {
    /// A problem to report; the component is not built.
    Problem(Problem),
    /// A provider this component needs failed to build; that is reported already.
    ProviderFailed,
    /// The composite cannot be made; its links fall back to dynamic.
    Unfusable(String),
}

fn is_link_to(link: &ImportLink, provider: &str) -> bool {
    matches!(&link.provider, Provider::Component { component, .. } if component == provider)
}
