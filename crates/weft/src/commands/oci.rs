//! `weft oci push|pull`: components as OCI artifacts in a registry.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Args, Subcommand};
use weft_runtime::component::{MAX_COMPONENT_SIZE, read_source};
use weft_runtime::manifest::MAX_MANIFEST_SIZE;
use weft_runtime::source::oci::{OciClient, OciSettings, Progress, PullPolicy, Reference, RegistrySettings};

use super::host::{HostFile, parse_label};
use crate::print::note;

#[derive(Args)]
pub struct OciCommand {
    #[command(subcommand)]
    command: Oci,
    /// A host configuration file: its `oci` section gives registries'
    /// credentials and which are plain HTTP (see docs/oci.md).
    #[arg(long = "host-config", env = "WEFT_HOST_CONFIG", value_name = "FILE", global = true)]
    host_config: Option<PathBuf>,
    /// Speak plain HTTP to the reference's registry (a local registry).
    #[arg(long, global = true)]
    insecure: bool,
}

#[derive(Subcommand)]
enum Oci {
    /// Push a component as a Wasm OCI artifact; prints the manifest digest.
    Push {
        file: PathBuf,
        /// `registry/repository:tag` (`oci://` optional).
        reference: String,
        /// A manifest annotation (repeatable), beside those read from the
        /// component's metadata.
        #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = parse_label)]
        annotations: Vec<(String, String)>,
    },
    /// Pull a component (its tag resolved at the registry), verified by digest.
    Pull {
        reference: String,
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

pub async fn oci(args: OciCommand) -> anyhow::Result<ExitCode> {
    let reference_text = match &args.command {
        Oci::Push { reference, .. } | Oci::Pull { reference, .. } => reference.clone(),
    };
    let reference = Reference::parse(&reference_text).map_err(anyhow::Error::msg)?;
    let mut settings = match &args.host_config {
        Some(path) => HostFile::read(path, MAX_MANIFEST_SIZE)?.oci,
        None => OciSettings::default(),
    };
    if args.insecure {
        settings.registries.entry(reference.registry.clone()).or_insert_with(RegistrySettings::default).insecure = true;
    }
    let client = OciClient::new(settings, None, MAX_COMPONENT_SIZE.0);
    match args.command {
        Oci::Push { file, annotations, .. } => {
            let wasm = read_source(&file, MAX_COMPONENT_SIZE).map_err(anyhow::Error::msg)?;
            let mut extra = BTreeMap::new();
            if let Some(name) = file.file_name() {
                extra.insert("org.opencontainers.image.title".to_string(), name.to_string_lossy().into_owned());
            }
            extra.extend(annotations);
            let size = wasm.len();
            let digest = client.push(&reference, wasm, extra).await?;
            note!("pushed {} ({size} bytes) to oci://{reference}", file.display());
            crate::print::out(&format!("{digest}\n"))?;
        }
        Oci::Pull { output, .. } => {
            let pulled = client.pull(&reference, PullPolicy::Always, pull_progress().as_ref()).await?;
            std::fs::write(&output, &pulled.bytes).with_context(|| format!("write {}", output.display()))?;
            note!(
                "pulled oci://{reference}@{} ({} bytes) to {}",
                pulled.manifest_digest,
                pulled.bytes.len(),
                output.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A one-line progress bar on stderr for pulls, when stderr is a terminal: every
/// transfer under way, summed.
pub fn pull_progress() -> Option<Progress> {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let transfers: Mutex<BTreeMap<String, (u64, u64)>> = Mutex::default();
    Some(Arc::new(move |label: &str, done: u64, total: u64| {
        let mut transfers = transfers.lock().unwrap();
        transfers.insert(label.to_string(), (done, total));
        let (done, total) = transfers.values().fold((0, 0), |(d, t), (dd, tt)| (d + dd, t + tt));
        let width = 30;
        let filled = (done * width as u64).checked_div(total).map_or(width, |f| (f as usize).min(width));
        let line = format!(
            "\rpulling {} component{} [{}{}] {:.1}/{:.1} MiB",
            transfers.len(),
            if transfers.len() == 1 { "" } else { "s" },
            "#".repeat(filled),
            " ".repeat(width - filled),
            done as f64 / 1048576.0,
            total as f64 / 1048576.0
        );
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(line.as_bytes());
        if done >= total {
            // All done: clear the line for what follows.
            let _ = write!(stderr, "\r{}\r", " ".repeat(line.len()));
            transfers.clear();
        }
        let _ = stderr.flush();
    }))
}
