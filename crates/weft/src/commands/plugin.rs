//! `weft plugin install|list|uninstall`: CLI plugins (see `crate::plugins`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use weft_runtime::component::{MAX_COMPONENT_SIZE, read_source};
use weft_runtime::manifest::MAX_MANIFEST_SIZE;
use weft_runtime::source::oci::{OciClient, OciSettings, PullPolicy, Reference, RegistrySettings};

use super::host::HostFile;
use crate::plugins::{self, Access};
use crate::print::{note, out};

#[derive(Args)]
pub struct PluginCommand {
    #[command(subcommand)]
    command: Plugin,
}

#[derive(Subcommand)]
enum Plugin {
    /// Install a plugin from a component file or a registry (`oci://REF`).
    Install {
        #[arg(value_name = "PATH|oci://REF")]
        source: String,
        /// Let it see the working directory, if it asks to.
        #[arg(long)]
        allow_dir: bool,
        /// Let it open sockets and resolve names, if it asks to.
        #[arg(long)]
        allow_network: bool,
        /// A host configuration file whose `oci` section has the registry's credentials.
        #[arg(long = "host-config", env = "WEFT_HOST_CONFIG", value_name = "FILE")]
        host_config: Option<PathBuf>,
        /// Speak plain HTTP to the registry (a local registry).
        #[arg(long)]
        insecure: bool,
    },
    /// List the installed plugins.
    List,
    /// Remove an installed plugin.
    Uninstall {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

pub async fn plugin(args: PluginCommand, builtins: Vec<String>) -> anyhow::Result<ExitCode> {
    match args.command {
        Plugin::Install { source, allow_dir, allow_network, host_config, insecure } => {
            let bytes = match source.strip_prefix("oci://") {
                Some(reference) => {
                    let reference = Reference::parse(reference).map_err(anyhow::Error::msg)?;
                    let mut settings = match &host_config {
                        Some(path) => HostFile::read(path, MAX_MANIFEST_SIZE)?.oci,
                        None => OciSettings::default(),
                    };
                    if insecure {
                        settings
                            .registries
                            .entry(reference.registry.clone())
                            .or_insert_with(RegistrySettings::default)
                            .insecure = true;
                    }
                    let client = OciClient::new(settings, None, MAX_COMPONENT_SIZE.0);
                    client.pull(&reference, PullPolicy::Always, super::oci::pull_progress().as_ref()).await?.bytes
                }
                None => read_source(&PathBuf::from(&source), MAX_COMPONENT_SIZE).map_err(anyhow::Error::msg)?,
            };
            let granted = Access { working_dir: allow_dir, network: allow_network };
            let plugin = plugins::describe(&bytes, source, granted).await?;
            plugins::install(&plugin, &bytes, &builtins)?;
            let commands: Vec<&str> = plugin.commands.iter().map(|c| c.name.as_str()).collect();
            note!("installed plugin `{}` {}: weft {}", plugin.name, plugin.version, commands.join(", weft "));
            for (wanted, given, what, flag) in [
                (plugin.wants.working_dir, plugin.granted.working_dir, "the working directory", "--allow-dir"),
                (plugin.wants.network, plugin.granted.network, "the network", "--allow-network"),
            ] {
                if wanted && !given {
                    note!("weft: it asks for {what}, which it does not get (install it with {flag} to grant it)");
                }
            }
        }
        Plugin::List => {
            let installed = plugins::installed();
            if installed.is_empty() {
                note!("no plugins installed (in {})", plugins::dir().display());
            }
            for p in installed {
                let commands: Vec<&str> = p.commands.iter().map(|c| c.name.as_str()).collect();
                let mut grants = Vec::new();
                if p.granted.working_dir {
                    grants.push("working directory");
                }
                if p.granted.network {
                    grants.push("network");
                }
                let grants = if grants.is_empty() { "nothing".to_string() } else { grants.join(", ") };
                out(&format!(
                    "{}\t{}\tcommands: {}\tgranted: {grants}\t{}\n",
                    p.name,
                    p.version,
                    commands.join(", "),
                    p.about
                ))?;
            }
        }
        Plugin::Uninstall { name } => {
            let removed = plugins::uninstall(&name)?;
            note!("uninstalled plugin `{}` {}", removed.name, removed.version);
        }
    }
    Ok(ExitCode::SUCCESS)
}
