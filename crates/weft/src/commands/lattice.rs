//! `weft host`: a long-lived host on a NATS lattice, serving the host API
//! (docs/lattice.md); `weft workload start|status|stop`: that API, called on a
//! host of the lattice.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use weft_lattice::{AgentConfig, HostAgent, RemoteHost};
use weft_runtime::limits::duration;
use weft_runtime::output::PrefixedStdio;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{HostApi, HostError, WorkloadId, WorkloadSpec, WorkloadStatus};

use super::host::HostArgs;
use super::run::Signals;
use crate::print::note;

#[derive(Args)]
pub struct NatsArgs {
    /// The lattice's NATS server.
    #[arg(
        long = "nats",
        global = true,
        env = "WEFT_NATS_URL",
        value_name = "URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    url: String,
}

impl NatsArgs {
    /// A client that keeps reconnecting (with backoff) whenever the server is away,
    /// from the first connection on.
    async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(&self.url)
            .await
            .with_context(|| format!("connect to NATS at {}", self.url))
    }
}

#[derive(Args)]
pub struct HostCommand {
    #[command(flatten)]
    nats: NatsArgs,
    /// How often the host publishes its heartbeat.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "15s")]
    heartbeat_interval: Duration,
    #[command(flatten)]
    host: HostArgs,
}

/// Runs until SIGINT or SIGTERM: then stops serving the API, drains and stops every
/// workload, and publishes a last heartbeat.
pub async fn host(args: HostCommand) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::new()?;
    let host = args.host.start(GuestStdio::Sink(Arc::new(PrefixedStdio))).await?;
    let client = args.nats.connect().await?;
    let config = AgentConfig { heartbeat_interval: args.heartbeat_interval };
    let agent = HostAgent::start(host.clone(), client, config).await?;
    let beat = host.heartbeat().await?;
    note!("weft: host {} ({}) serving on NATS {}", host.id(), beat.friendly_name, args.nats.url);
    let signal = signals.next().await;
    note!("weft: stopping host {} ({signal})", host.id());
    if let Err(signal) = signals.before(agent.shutdown()).await {
        note!("weft: {signal} again: stopped without waiting for work in flight");
        return Ok(ExitCode::from(130));
    }
    note!("weft: host {} stopped", host.id());
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct WorkloadCommand {
    #[command(subcommand)]
    action: WorkloadAction,
    #[command(flatten)]
    nats: NatsArgs,
    /// The host to ask (its id, as `weft host` prints it).
    #[arg(long = "host", global = true, value_name = "HOST_ID")]
    host_id: Option<String>,
    /// How long to wait for the host's answer (a start validates and compiles first).
    #[arg(long, global = true, value_name = "DURATION", value_parser = duration::parse, default_value = "60s")]
    timeout: Duration,
    /// `json` prints the status as JSON.
    #[arg(short = 'o', long = "output", global = true, value_name = "FORMAT", default_value = "text")]
    output: Output,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum WorkloadAction {
    /// Start a workload manifest on a host; its file sources must exist on that host.
    Start {
        manifest: PathBuf,
        /// The workload's id (default: a new one).
        #[arg(long)]
        id: Option<String>,
    },
    /// A workload's state.
    Status { id: String },
    /// Stop a workload.
    Stop { id: String },
}

pub async fn workload(args: WorkloadCommand) -> anyhow::Result<ExitCode> {
    let host_id = args.host_id.clone().context("which host? give `--host <HOST_ID>` (as `weft host` prints it)")?;
    let client = args.nats.connect().await?;
    let remote = RemoteHost::new(client, host_id, args.timeout);
    let result = match &args.action {
        WorkloadAction::Start { manifest, id } => {
            let spec = WorkloadSpec::from_file(manifest).with_context(|| format!("read {}", manifest.display()))?;
            let id = id.clone().map(WorkloadId).unwrap_or_else(WorkloadId::generate);
            remote.workload_start_as(id, spec).await
        }
        WorkloadAction::Status { id } => remote.workload_status(&WorkloadId(id.clone())).await,
        WorkloadAction::Stop { id } => remote.workload_stop(&WorkloadId(id.clone())).await,
    };
    match result {
        Ok(status) => {
            print_status(&status, remote.host_id(), args.output)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(HostError::Rejected(rejection)) => Err(anyhow::anyhow!("{rejection}")),
        Err(e) => Err(e.into()),
    }
}

fn print_status(status: &WorkloadStatus, host: &str, output: Output) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(status)?)?,
        Output::Text => {
            write!(out, "workload {} is {} on host {host}", status.id, status.state)?;
            match &status.message {
                Some(message) => writeln!(out, ": {message}")?,
                None => writeln!(out)?,
            }
        }
    }
    Ok(())
}
