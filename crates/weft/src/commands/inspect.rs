//! `weft inspect`: a component's world, or a workload's link plan.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use weft_runtime::output::PrefixedStdio;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::workload::LinkPlan;
use weft_runtime::world::World;
use weft_runtime::{Host, WorkloadSpec};

use super::host::HostArgs;
use crate::print::out;

#[derive(Args)]
pub struct InspectArgs {
    /// A component (`.wasm`) or a workload manifest (`.yaml`, `.yml`, `.json`).
    target: PathBuf,
    #[arg(long, short, value_enum, default_value = "text")]
    output: Output,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

pub async fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    // Remote links are planned and checked as on a lattice host; none is made.
    let offline = weft_lattice::wrpc::WrpcLinks::offline(weft_lattice::Lattice::default());
    let host = args.host.start_with(GuestStdio::Sink(std::sync::Arc::new(PrefixedStdio)), None, Some(offline)).await?;
    if args.target.extension().is_some_and(|e| e == "wasm") {
        component(&host, &args).await
    } else {
        manifest(&host, &args).await
    }
}

async fn component(host: &Host, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = weft_runtime::component::read_regular_file(&args.target, args.host.max_component_size)
        .with_context(|| format!("read {}", args.target.display()))?;
    // Compiled on the engine it would run on: a component using component-model
    // async only compiles where concurrency support is on.
    let engine = host.engine_for(weft_runtime::component::concurrency_needed(&bytes))?;
    let compiling = engine.clone();
    let (digest, component) = tokio::task::spawn_blocking(move || compiling.cache().load(&bytes))
        .await?
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.target.display()))?;
    let wasmtime = engine.wasmtime();
    let world = World::of(wasmtime, &component.component_type());
    match args.output {
        Output::Json => {
            let json = serde_json::json!({ "digest": digest.to_string(), "world": world });
            out(&format!("{}\n", serde_json::to_string_pretty(&json)?))?;
        }
        Output::Text => {
            let name = args.target.file_stem().and_then(|s| s.to_str()).unwrap_or("component");
            out(&format!("// {}\n// {digest}\n{}", args.target.display(), world.to_wit(name)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn manifest(host: &Host, args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let spec = WorkloadSpec::from_file_limited(&args.target, args.host.max_manifest_size)?;
    let (name, namespace) = (spec.name.clone(), spec.namespace.clone());
    let service = spec.service.as_ref().map(|s| s.name.clone());
    let served: Vec<(String, Vec<weft_runtime::manifest::ServeSpec>)> =
        spec.all_components().filter(|c| !c.serve.is_empty()).map(|c| (c.name.clone(), c.serve.clone())).collect();
    let validated = host.validate(spec).await.map_err(|rejection| anyhow::anyhow!("{rejection}"))?;
    match args.output {
        Output::Json => {
            let serves: serde_json::Map<String, serde_json::Value> =
                served.iter().map(|(c, s)| (c.clone(), serde_json::to_value(s).unwrap_or_default())).collect();
            let json = serde_json::json!({
                "workload": name, "namespace": namespace, "service": service, "links": validated.plan, "serves": serves,
            });
            out(&format!("{}\n", serde_json::to_string_pretty(&json)?))?;
        }
        Output::Text => out(&plan_text(&name, &namespace, service.as_deref(), &validated.plan, &served))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn plan_text(
    name: &str,
    namespace: &str,
    service: Option<&str>,
    plan: &LinkPlan,
    served: &[(String, Vec<weft_runtime::manifest::ServeSpec>)],
) -> String {
    let mut out = format!("workload `{name}` (namespace {namespace})\n");
    let width = plan.components.iter().flat_map(|c| &c.imports).map(|i| i.import.len()).max().unwrap_or(0);
    for c in &plan.components {
        let role = if Some(c.component.as_str()) == service { " (service)" } else { "" };
        out.push_str(&format!("\ncomponent `{}`{role}\n", c.component));
        if c.imports.is_empty() {
            out.push_str("  imports nothing\n");
        }
        for import in &c.imports {
            out.push_str(&format!("  {:width$}  ← {}\n", import.import, import.provider));
        }
        for (_, serves) in served.iter().filter(|(name, _)| *name == c.component) {
            for s in serves {
                let group = s.group.as_deref().map(|g| format!(", group `{g}`")).unwrap_or_default();
                out.push_str(&format!("  {:width$}  → the lattice (served over wRPC{group})\n", s.interface));
            }
        }
    }
    out
}
