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
use weft_runtime::component::MAX_COMPONENT_SIZE;
use weft_runtime::limits::duration;
use weft_runtime::output::PrefixedStdio;
use weft_runtime::telemetry::SpanContext;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{HostApi, HostError, WorkloadId, WorkloadSpec, WorkloadStatus};

use super::host::{HostArgs, parse_label};
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
    /// The lattice, when several share one NATS server: its name prefixes every
    /// subject and suffixes every bucket (`default`: wasmCloud's subjects as they are).
    #[arg(long, global = true, env = "WEFT_LATTICE", value_name = "NAME", default_value = "default",
          value_parser = |s: &str| weft_lattice::Lattice::named(s))]
    lattice: weft_lattice::Lattice,
    /// A NATS credentials file (`.creds`: JWT and nkey seed).
    #[arg(long, global = true, env = "WEFT_NATS_CREDS", value_name = "FILE")]
    nats_creds: Option<PathBuf>,
    /// An nkey seed (`SU…`).
    #[arg(long, global = true, env = "WEFT_NATS_NKEY", value_name = "SEED", hide_env_values = true)]
    nats_nkey: Option<String>,
    /// A token the server expects.
    #[arg(long, global = true, env = "WEFT_NATS_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    nats_token: Option<String>,
    /// A user name (with `--nats-password`).
    #[arg(long, global = true, env = "WEFT_NATS_USER", value_name = "USER", requires = "nats_password")]
    nats_user: Option<String>,
    #[arg(long, global = true, env = "WEFT_NATS_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// CA certificates (PEM) to verify the server with; implies TLS.
    #[arg(long, global = true, value_name = "FILE")]
    nats_tls_ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients.
    #[arg(long, global = true, value_name = "FILE", requires = "nats_tls_key")]
    nats_tls_cert: Option<PathBuf>,
    #[arg(long, global = true, value_name = "FILE")]
    nats_tls_key: Option<PathBuf>,
}

impl NatsArgs {
    async fn options(&self) -> anyhow::Result<async_nats::ConnectOptions> {
        let mut options = match &self.nats_creds {
            Some(file) => async_nats::ConnectOptions::with_credentials_file(file)
                .await
                .with_context(|| format!("read NATS credentials {}", file.display()))?,
            None => async_nats::ConnectOptions::new(),
        };
        if let Some(seed) = &self.nats_nkey {
            options = options.nkey(seed.clone());
        }
        if let Some(token) = &self.nats_token {
            options = options.token(token.clone());
        }
        if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(ca) = &self.nats_tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.nats_tls_cert, &self.nats_tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
        }
        Ok(options.connection_timeout(Duration::from_secs(2)))
    }

    /// A client for one request: the server must be there now.
    async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        let options = self.options().await?;
        options.connect(&self.url).await.with_context(|| format!("connect to NATS at {}", self.url))
    }

    /// A host's client: it starts whether the server is up or not, and keeps
    /// reconnecting (with backoff) whenever the server is away.
    async fn connect_and_keep_trying(&self) -> anyhow::Result<async_nats::Client> {
        let options = self.options().await?.retry_on_initial_connect();
        options.connect(&self.url).await.with_context(|| format!("connect to NATS at {}", self.url))
    }
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HostCommand {
    #[command(subcommand)]
    action: Option<HostAction>,
    #[command(flatten)]
    nats: NatsArgs,
    /// How often the host publishes its heartbeat.
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "15s")]
    heartbeat_interval: Duration,
    #[command(flatten)]
    host: HostArgs,
}

#[derive(Subcommand)]
enum HostAction {
    /// The hosts of the lattice that answer now: id, name, labels, uptime, workloads.
    List {
        /// How long to wait for answers.
        #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "1s")]
        wait: Duration,
        /// `json` prints the heartbeats (wasmCloud's `HostHeartbeat` JSON).
        #[arg(short = 'o', long = "output", value_name = "FORMAT", default_value = "text")]
        output: Output,
    },
}

/// Without a subcommand: runs a host until SIGINT or SIGTERM, then stops serving
/// the API, drains and stops every workload, and publishes a last heartbeat.
pub async fn host(args: HostCommand) -> anyhow::Result<ExitCode> {
    if let Some(HostAction::List { wait, output }) = args.action {
        return list_hosts(&args.nats, wait, output).await;
    }
    let mut signals = Signals::new()?;
    let client = args.nats.connect_and_keep_trying().await?;
    let components = Arc::new(weft_lattice::components::ComponentStore::new(client.clone(), &args.nats.lattice));
    let links = weft_lattice::wrpc::WrpcLinks::new(client.clone(), args.nats.lattice.clone());
    let host = args.host.start_with(GuestStdio::Sink(Arc::new(PrefixedStdio)), Some(components), Some(links)).await?;
    let config = AgentConfig { heartbeat_interval: args.heartbeat_interval, lattice: args.nats.lattice.clone() };
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

async fn list_hosts(nats: &NatsArgs, wait: Duration, output: Output) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let client = nats.connect().await?;
    let hosts = weft_lattice::client::known_hosts(&client, &nats.lattice, wait).await?;
    let mut out = std::io::stdout().lock();
    if let Output::Json = output {
        writeln!(out, "{}", serde_json::to_string_pretty(&hosts)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<34} {:<16} {:<5} {:>9} {:>10} {:>9}  LABELS",
        "ID", "NAME", "STATE", "UPTIME", "LAST SEEN", "WORKLOADS"
    )?;
    for h in &hosts {
        let beat = &h.heartbeat;
        let labels: Vec<String> = beat.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let uptime = beat
            .started_at
            .as_deref()
            .and_then(weft_lattice::time::seconds_since)
            .map_or("?".into(), |s| format!("{s}s"));
        writeln!(
            out,
            "{:<34} {:<16} {:<5} {:>9} {:>9}s {:>9}  {}",
            beat.id,
            beat.friendly_name,
            h.state,
            uptime,
            h.last_seen_secs,
            beat.workload_count,
            labels.join(",")
        )?;
    }
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
    /// Start a workload manifest on a host; its file sources are uploaded to the
    /// lattice (JetStream) for the host to fetch by digest.
    Start {
        manifest: PathBuf,
        /// The workload's id (default: a new one).
        #[arg(long)]
        id: Option<String>,
        /// Without `--host`: place it on a live host with this label (repeatable),
        /// the one running the fewest workloads.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// A workload's state.
    Status { id: String },
    /// Stop a workload.
    Stop { id: String },
    /// The workloads of every live host (or of `--host`).
    List,
}

pub async fn workload(args: WorkloadCommand) -> anyhow::Result<ExitCode> {
    let client = args.nats.connect().await?;
    if let WorkloadAction::List = args.action {
        return list_workloads(client, &args).await;
    }
    let host_id = match (&args.host_id, &args.action) {
        (Some(id), _) => id.clone(),
        (None, WorkloadAction::Start { labels, .. }) => {
            let hosts = weft_lattice::client::discover(&client, &args.nats.lattice, Duration::from_secs(1)).await?;
            let chosen = weft_lattice::client::place(&hosts, labels).with_context(|| {
                let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("no live host has the labels [{}] ({} hosts answered)", wanted.join(", "), hosts.len())
            })?;
            note!("weft: placed on host {} ({})", chosen.id, chosen.friendly_name);
            chosen.id.clone()
        }
        (None, _) => anyhow::bail!("which host? give `--host <HOST_ID>` (`weft host list` shows them)"),
    };
    // A `TRACEPARENT` in the environment (as CI systems and `otel-cli` set it)
    // puts the request in that trace: the host's span becomes its child.
    let trace_parent = std::env::var("TRACEPARENT")
        .ok()
        .and_then(|tp| SpanContext::from_headers(&tp, std::env::var("TRACESTATE").ok().as_deref()));
    let remote = RemoteHost::new(client.clone(), host_id, args.timeout)
        .in_lattice(args.nats.lattice.clone())
        .with_trace_parent(trace_parent);
    let result = match &args.action {
        WorkloadAction::Start { manifest, id, .. } => {
            let spec = WorkloadSpec::from_file(manifest).with_context(|| format!("read {}", manifest.display()))?;
            // The host cannot read this machine's files: they travel by digest.
            let store = weft_lattice::components::ComponentStore::new(client.clone(), &args.nats.lattice);
            let (spec, uploaded) =
                store.upload_local_sources(&spec, MAX_COMPONENT_SIZE).await.map_err(anyhow::Error::msg)?;
            for u in &uploaded {
                let how = if u.sent { "uploaded" } else { "already in the lattice" };
                note!("weft: component `{}`: {how} as digest://{} ({} bytes)", u.component, u.digest, u.size);
            }
            let id = id.clone().map(WorkloadId).unwrap_or_else(WorkloadId::generate);
            remote.workload_start_as(id, spec).await
        }
        WorkloadAction::Status { id } => remote.workload_status(&WorkloadId(id.clone())).await,
        WorkloadAction::Stop { id } => remote.workload_stop(&WorkloadId(id.clone())).await,
        WorkloadAction::List => unreachable!("answered above"),
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

/// Asks every live host (or the one `--host` names) for its workloads, at once.
async fn list_workloads(client: async_nats::Client, args: &WorkloadCommand) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let hosts: Vec<(String, String)> = match &args.host_id {
        Some(id) => vec![(id.clone(), String::new())],
        None => weft_lattice::client::discover(&client, &args.nats.lattice, Duration::from_secs(1))
            .await?
            .into_iter()
            .map(|beat| (beat.id, beat.friendly_name))
            .collect(),
    };
    let asks = hosts.iter().map(|(id, _)| {
        let remote = RemoteHost::new(client.clone(), id.clone(), args.timeout).in_lattice(args.nats.lattice.clone());
        async move { remote.workload_list().await }
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut rows = Vec::new();
    for ((host, name), answer) in hosts.iter().zip(answers) {
        match answer {
            Ok(workloads) => rows.extend(workloads.into_iter().map(|w| (host.clone(), name.clone(), w))),
            Err(e) => note!("weft: {e}"),
        }
    }
    let mut out = std::io::stdout().lock();
    if let Output::Json = args.output {
        let listed: Vec<serde_json::Value> =
            rows.iter().map(|(host, _, status)| serde_json::json!({ "host": host, "status": status })).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&listed)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "{:<34} {:<20} {:<24} {:<10} HOST", "ID", "NAMESPACE", "NAME", "STATE")?;
    for (host, name, s) in &rows {
        let host = if name.is_empty() { host.clone() } else { format!("{host} ({name})") };
        writeln!(out, "{:<34} {:<20} {:<24} {:<10} {host}", s.id, s.namespace, s.name, s.state.to_string())?;
    }
    Ok(ExitCode::SUCCESS)
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
