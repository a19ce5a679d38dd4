//! Validation on receipt: a [`WorkloadSpec`] becomes a [`ValidatedWorkload`] (every
//! component compiled, every import resolved to exactly one provider and linked) or
//! is rejected with every problem found. Validation allocates nothing that outlives
//! it: emptyDirs are created only when the workload starts.

use std::sync::Arc;

use super::bindings::{self, PlannedBinding};
use super::build::{Builder, Loaded, Prepared};
use super::instance::WorkloadComponent;
use super::plan::{self, LinkPlan, Provider, Surface};
use super::volumes::{self, Volume};
use super::{HostContext, WorkloadId};
use crate::engine::{Concurrency, Engine};
use crate::error::{Problem, Rejection};
use crate::interface::ItemName;
use crate::link::compat;
use crate::manifest::{ComponentSpec, RestartPolicy, Source, WorkloadSpec};
use crate::source::Origin;
use crate::source::oci::Reference;
use crate::wasi::http::OutgoingPolicy;
use crate::wasi::{self, Preopen};

/// A workload that passed validation and can start.
pub struct ValidatedWorkload {
    pub(crate) id: WorkloadId,
    pub(crate) spec: WorkloadSpec,
    /// In manifest order, the service last.
    pub(crate) components: Vec<Arc<WorkloadComponent>>,
    pub(crate) service: Option<(usize, RestartPolicy)>,
    pub(crate) volumes: Vec<Volume>,
    /// The engine it runs on: with concurrency support when any component
    /// uses component-model async.
    pub(crate) engine: Arc<Engine>,
    pub plan: LinkPlan,
    /// The plugins to bind when it starts, each of which accepted its settings.
    pub(crate) bindings: Vec<PlannedBinding>,
}

pub(crate) async fn validate(
    cx: &HostContext,
    id: WorkloadId,
    spec: WorkloadSpec,
) -> Result<ValidatedWorkload, Rejection> {
    let mut problems: Vec<Problem> = spec
        .unknown_fields
        .iter()
        .map(|f| Problem::new("manifest", format!("unknown field `{f}`{}", field_owner(&spec, f))))
        .collect();
    if spec.name.trim().is_empty() {
        problems.push(Problem::new("manifest", "`name` is missing or empty"));
    } else if !is_identifier(&spec.name) {
        problems.push(Problem::new("manifest", format!("`name`: {IDENTIFIER_RULE}")));
    }
    if !is_identifier(&spec.namespace) {
        problems.push(Problem::new("manifest", format!("`namespace`: {IDENTIFIER_RULE}")));
    }
    let entries: Vec<(&ComponentSpec, bool)> =
        spec.components.iter().map(|c| (c, false)).chain(spec.service.iter().map(|s| (s, true))).collect();
    if entries.is_empty() {
        problems.push(Problem::new("manifest", "declares no components and no service"));
    }
    check_names(&entries, &mut problems);

    let scratch = cx.scratch_dir.join(&id.0);
    let volumes = volumes::plan(&spec, &scratch, &mut problems);
    let declared: Vec<String> = spec.volumes.iter().map(|v| v.name.clone()).collect();
    let preopens: Vec<Vec<Preopen>> =
        entries.iter().map(|(c, _)| volumes::preopens(c, &volumes, &declared, &mut problems)).collect();
    let outgoing: Vec<OutgoingPolicy> = entries.iter().map(|(c, _)| outgoing_policy(&spec, c, &mut problems)).collect();

    let origins: Vec<Result<Origin, String>> = entries.iter().map(|(c, _)| source_origin(&spec, c)).collect();
    let fetched = fetch_all(cx, origins).await;
    let engine = match choose_engine(cx, &entries, &fetched) {
        Ok(engine) => engine,
        Err(problem) => return Err(Rejection { workload: spec.name.clone(), problems: vec![problem] }),
    };
    let loaded: Vec<Result<Loaded, String>> = {
        let engine = engine.clone();
        match tokio::task::spawn_blocking(move || fetched.into_iter().map(|f| load(&engine, f?)).collect()).await {
            Ok(loaded) => loaded,
            // A panic in the parser or compiler (a bug) rejects the workload, not the host.
            Err(e) => (0..entries.len()).map(|_| Err(format!("loading the components failed: {e}"))).collect(),
        }
    };
    for ((c, is_service), loaded) in entries.iter().zip(&loaded) {
        match loaded {
            Err(message) => problems.push(Problem::new(format!("component `{}`", c.name), message.clone())),
            Ok(l) if *is_service && !l.exports.iter().any(|e| wasi::is_run_export(e)) => {
                problems.push(Problem::new(
                    format!("component `{}`", c.name),
                    format!("is the service, so it must export `wasi:cli/run` (it exports: {})", list(&l.exports)),
                ));
            }
            Ok(_) => {}
        }
    }

    // Links name components: a name declared twice (already a problem) takes
    // part in linking by its first declaration only, as every lookup by name does.
    let surfaces: Vec<Surface<'_>> = entries
        .iter()
        .zip(&loaded)
        .enumerate()
        .filter(|(i, ((c, _), _))| entries[..*i].iter().all(|(o, _)| o.name != c.name))
        .filter_map(|(_, ((c, _), l))| {
            let l = l.as_ref().ok()?;
            Some(Surface {
                name: &c.name,
                imports: l.imports.iter().map(|(n, _)| n.as_str()).collect(),
                exports: l.exports.iter().map(|n| n.as_str()).collect(),
            })
        })
        .collect();
    let plan = plan::resolve(&surfaces, &spec.links, &cx.plugins, &mut problems);
    check_link_types(&engine, &plan, &entries, &loaded, &mut problems);
    check_shared(&entries, &plan, &mut problems);
    check_host_interfaces(cx, &spec, &mut problems);
    super::served::need_lattice(cx, &spec, &plan, &mut problems);

    let reject = |problems| Rejection { workload: spec.name.clone(), problems };
    if !problems.is_empty() {
        return Err(reject(problems));
    }

    let mut plan = plan;
    let prepared =
        Prepared { engine: &engine, entries: &entries, loaded: &loaded, preopens: &preopens, outgoing: &outgoing };
    let mut builder = Builder::new(cx, &id, &spec, prepared, &mut plan, &mut problems);
    builder.decide_modes();
    builder.build_all().await;
    let built = std::mem::take(&mut builder.built);
    if !problems.is_empty() {
        return Err(reject(problems));
    }

    let components: Vec<_> = built.into_iter().map(|c| c.expect("every component was linked")).collect();
    let mut bindings = bindings::plan(&cx.plugins, &spec, &components, &plan);
    bindings.extend(super::served::plan(cx, &spec, &components, &mut problems));
    bindings::check(&bindings, &mut problems);
    if !problems.is_empty() {
        return Err(reject(problems));
    }

    let service = spec.service.as_ref().map(|s| (entries.len() - 1, s.restart.clone().unwrap_or_default()));
    Ok(ValidatedWorkload { id, components, service, volumes, engine, plan, spec, bindings })
}

/// The engine every component of the workload can run on (they share stores):
/// the one with concurrency support when any uses component-model async or is
/// shared. The
/// decision reads the bytes, so it is made before anything is compiled.
fn choose_engine(
    cx: &HostContext,
    entries: &[(&ComponentSpec, bool)],
    fetched: &[Result<(String, Vec<u8>), String>],
) -> Result<Arc<Engine>, Problem> {
    // A shared provider's instance takes its calls concurrently.
    let any_async = entries.iter().any(|(c, _)| c.shared.is_some())
        || fetched.iter().flatten().any(|(_, bytes)| crate::component::concurrency_needed(bytes) == Concurrency::On);
    let needed = if any_async { Concurrency::On } else { Concurrency::Off };
    cx.engines.get(needed).map_err(|e| {
        Problem::new("host", format!("cannot start the engine with component-model concurrency support: {e:#}"))
    })
}

/// Every component link joins an import and an export of matching types.
fn check_link_types(
    engine: &Engine,
    plan: &LinkPlan,
    entries: &[(&ComponentSpec, bool)],
    loaded: &[Result<Loaded, String>],
    problems: &mut Vec<Problem>,
) {
    let engine = engine.wasmtime();
    let find = |name: &str| {
        let index = entries.iter().position(|(c, _)| c.name == name)?;
        loaded[index].as_ref().ok()
    };
    for links in &plan.components {
        let Some(caller) = find(&links.component) else { continue };
        for link in &links.imports {
            let Provider::Component { component, export, .. } = &link.provider else { continue };
            let Some(provider) = find(component) else { continue };
            let expected = &caller.imports.iter().find(|(n, _)| *n == link.import).expect("planned imports exist").1;
            let (caller_ty, provider_ty) = (caller.component.component_type(), provider.component.component_type());
            let Some(provided) = provider_ty.exports(engine).find(|(n, _)| n == export).map(|(_, i)| i.ty) else {
                continue;
            };
            let sides = compat::Sides { engine, caller: &caller_ty, provider: &provider_ty };
            if let Err(mismatch) = sides.check(expected, &provided) {
                problems.push(Problem::new(
                    format!("component `{}`", links.component),
                    format!(
                        "imports `{}`, but component `{component}` exports it (as `{export}`) with a different type: {mismatch}",
                        link.import
                    ),
                ));
            }
        }
    }
}

fn check_names(entries: &[(&ComponentSpec, bool)], problems: &mut Vec<Problem>) {
    for (i, (c, _)) in entries.iter().enumerate() {
        let subject = format!("component `{}`", c.name);
        if !is_identifier(&c.name) {
            problems.push(Problem::new(&subject, format!("the name: {IDENTIFIER_RULE}")));
        } else if c.name == "runtime" {
            problems.push(Problem::new(&subject, "`runtime` is reserved (links use it to name the built-in WASI)"));
        }
        if entries[..i].iter().any(|(o, _)| o.name == c.name) {
            problems.push(Problem::new(&subject, "the name is used by more than one component"));
        }
    }
    for (c, is_service) in entries {
        if !is_service && c.restart.is_some() {
            problems.push(Problem::new(format!("component `{}`", c.name), "`restart` applies only to the service"));
        }
        for problem in c.restart.iter().flat_map(|r| r.backoff.problems()) {
            problems.push(Problem::new(format!("component `{}`", c.name), format!("`restart.backoff`: {problem}")));
        }
        if *is_service && c.reuse_instances {
            problems.push(Problem::new(
                format!("component `{}`", c.name),
                "`reuseInstances` does not apply to the service, which runs in one instance for its whole life",
            ));
        }
    }
}

/// What a shared provider cannot be or have (docs/links.md).
fn check_shared(entries: &[(&ComponentSpec, bool)], plan: &LinkPlan, problems: &mut Vec<Problem>) {
    for (c, is_service) in entries.iter().filter(|(c, _)| c.shared.is_some()) {
        let subject = format!("component `{}`", c.name);
        if *is_service {
            problems
                .push(Problem::new(&subject, "`shared` applies to providers; the service runs in one instance anyway"));
        }
        if c.reuse_instances {
            problems.push(Problem::new(&subject, "`shared` and `reuseInstances` exclude each other"));
        }
        if c.limits.cpu_time.is_some() {
            problems.push(Problem::new(
                &subject,
                "`limits.cpuTime` budgets one invocation, and a shared instance runs many at once; \
                 `timeout` bounds each call",
            ));
        }
        // Its store holds it alone: the WASI context of whatever runs there is its own.
        for link in plan.imports_of(&c.name) {
            if let Provider::Component { component, .. } = &link.provider {
                problems.push(Problem::new(
                    &subject,
                    format!(
                        "is shared, so its imports come from WASI, host plugins or the lattice; `{}` is linked to \
                         component `{component}`",
                        link.import
                    ),
                ));
            }
        }
    }
}

fn check_host_interfaces(cx: &HostContext, spec: &WorkloadSpec, problems: &mut Vec<Problem>) {
    for hi in &spec.host_interfaces {
        let subject = format!("host interface `{}`", hi.interface);
        let name = ItemName::parse(&hi.interface);
        if name.as_interface().is_none() {
            problems.push(Problem::new(&subject, "expected `namespace:package/interface@version`"));
        } else if cx.plugins.providers_of(&name).is_empty()
            && cx.plugins.drivers_of(&name).is_empty()
            && !wasi::provides(&name)
        {
            let loaded: Vec<&str> = cx.plugins.ids().collect();
            problems.push(Problem::new(
                &subject,
                format!(
                    "no host plugin provides it (plugins loaded: {})",
                    if loaded.is_empty() { "none".into() } else { loaded.join(", ") }
                ),
            ));
        }
        if let Some(target) = &hi.component
            && !spec.all_components().any(|c| &c.name == target)
        {
            problems.push(Problem::new(&subject, format!("`component: {target}` is not a component of this workload")));
        }
    }
}

/// A component's outgoing-HTTP policy, from the settings of its
/// `wasi:http/outgoing-handler` (WASI 0.2) and `wasi:http/client` (0.3) host
/// interfaces: one policy, whichever interface its requests go through.
fn outgoing_policy(spec: &WorkloadSpec, c: &ComponentSpec, problems: &mut Vec<Problem>) -> OutgoingPolicy {
    let outgoing = [ItemName::parse("wasi:http/outgoing-handler@0.2.0"), ItemName::parse("wasi:http/client@0.3.0")];
    let mut policy = OutgoingPolicy::default();
    for hi in &spec.host_interfaces {
        let name = ItemName::parse(&hi.interface);
        if !outgoing.iter().any(|o| name.satisfies(o)) || hi.component.as_ref().is_some_and(|t| *t != c.name) {
            continue;
        }
        let subject = format!("host interface `{}`", hi.interface);
        for (key, value) in &hi.config {
            problems.extend(policy.configure(key, value).into_iter().map(|e| Problem::new(&subject, e)));
        }
    }
    let subject = format!("outgoing HTTP of component `{}`", c.name);
    problems.extend(policy.unreachable_hosts().into_iter().map(|e| Problem::new(&subject, e)));
    policy
}

fn source_origin(spec: &WorkloadSpec, c: &ComponentSpec) -> Result<Origin, String> {
    match &c.source {
        Source::Path(p) if p.as_os_str().is_empty() => Err("`source` is missing".into()),
        Source::Path(p) => Ok(Origin::File(spec.resolve_path(p))),
        Source::Oci(reference) => Ok(Origin::Oci(Reference::parse(reference)?)),
        Source::Digest(digest) => {
            crate::source::oci::reference::check_digest(digest)?;
            Ok(Origin::Digest(digest.clone()))
        }
    }
}

/// Every component's bytes, fetched at once (pulls from registries run in
/// parallel); each with what names it in an error.
async fn fetch_all(cx: &HostContext, origins: Vec<Result<Origin, String>>) -> Vec<Result<(String, Vec<u8>), String>> {
    let limit = cx.engines.default_engine().max_component_size();
    let mut results: Vec<Result<(String, Vec<u8>), String>> = Vec::with_capacity(origins.len());
    let mut fetches = tokio::task::JoinSet::new();
    for (index, origin) in origins.into_iter().enumerate() {
        match origin {
            Err(e) => results.push(Err(e)),
            Ok(origin) => {
                results.push(Err("the fetch did not finish".into()));
                let sources = cx.sources.clone();
                fetches.spawn(async move {
                    (index, sources.fetch(&origin, limit).await.map(|bytes| (origin.to_string(), bytes)))
                });
            }
        }
    }
    while let Some(done) = fetches.join_next().await {
        // A panicking fetch leaves its slot's error in place.
        if let Ok((index, result)) = done {
            results[index] = result;
        }
    }
    results
}

fn load(engine: &crate::engine::Engine, (label, bytes): (String, Vec<u8>)) -> Result<Loaded, String> {
    let (digest, component) = engine.cache().load(&bytes).map_err(|e| format!("{label}: {e}"))?;
    let ty = component.component_type();
    let wasmtime = engine.wasmtime();
    let imports = ty.imports(wasmtime).map(|(n, item)| (n.to_string(), item.ty)).collect();
    let exports = ty.exports(wasmtime).map(|(n, _)| n.to_string()).collect();
    Ok(Loaded { digest, bytes: bytes.into(), component, imports, exports })
}

/// Workload, namespace and component names: they name data scopes, log records
/// and directories, so they stay short and plain.
fn is_identifier(name: &str) -> bool {
    (1..=MAX_IDENTIFIER).contains(&name.len())
        && name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

const MAX_IDENTIFIER: usize = 128;
const IDENTIFIER_RULE: &str = "must be 1 to 128 ASCII letters, digits, `-`, `_` or `.`";

/// ` (component `api`)` for a field path inside a component, to name it.
fn field_owner(spec: &WorkloadSpec, path: &str) -> String {
    let index = path
        .strip_prefix("components[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(i, _)| i.parse::<usize>().ok());
    match index.and_then(|i| spec.components.get(i)) {
        Some(c) if !c.name.is_empty() => format!(" (component `{}`)", c.name),
        _ => String::new(),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "nothing".into() } else { items.join(", ") }
}
