//! `weft run`: a manifest's workload until Ctrl-C (or until its service ends), or one
//! component as a command, like `wasmtime run`; `weft serve`: one HTTP component,
//! like `wasmtime serve`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use weft_runtime::limits::{ByteSize, LimitsSpec, duration};
use weft_runtime::manifest::{ComponentSpec, HostInterfaceSpec, HostPathVolume, Source, VolumeMount, VolumeSpec};
use weft_runtime::output::PrefixedStdio;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{Host, HostApi, HostError, RunningWorkload, WorkloadSpec, WorkloadState};

use super::host::HostArgs;
use crate::print::note;

#[derive(Args)]
pub struct RunArgs {
    /// A workload manifest (`.yaml`, `.yml`, `.json`) or a component (`.wasm`).
    target: PathBuf,
    /// Arguments for a component run as a command.
    #[arg(last = true)]
    args: Vec<String>,
    #[command(flatten)]
    component: ComponentArgs,
    #[command(flatten)]
    host: HostArgs,
}

/// `weft serve`: one component that exports an HTTP handler (WASI 0.2 or 0.3), served
/// on every path, like `wasmtime serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// The component (`.wasm`).
    component_file: PathBuf,
    #[command(flatten)]
    component: ComponentArgs,
    #[command(flatten)]
    host: HostArgs,
}

/// How a component given on the command line runs.
#[derive(Args)]
struct ComponentArgs {
    /// An environment variable for the component.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A host directory the component sees at a guest path (`--dir ./data::/data`,
    /// or `--dir ./data` for the same path in the guest).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Memory limit (a command's default: 4GiB; a served component's: the
    /// manifest default, per request).
    #[arg(long, value_name = "SIZE")]
    memory: Option<ByteSize>,
    /// CPU time limit (a command's default: unlimited; a served component's: the
    /// manifest default, per request).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    cpu_time: Option<std::time::Duration>,
}

impl ComponentArgs {
    fn is_empty(&self) -> bool {
        self.env.is_empty() && self.dirs.is_empty() && self.memory.is_none() && self.cpu_time.is_none()
    }

    /// A workload of the one component at `path`, named after the file.
    fn workload(&self, path: &Path, args: Vec<String>, limits: LimitsSpec) -> anyhow::Result<WorkloadSpec> {
        let name = command_name(path);
        let mut spec = WorkloadSpec { name: name.clone(), ..Default::default() };
        let mut mounts = Vec::new();
        for (i, dir) in self.dirs.iter().enumerate() {
            let (host, guest) = dir.split_once("::").unwrap_or((dir, dir));
            let volume = format!("dir{i}");
            spec.volumes.push(VolumeSpec {
                name: volume.clone(),
                host_path: Some(HostPathVolume { path: absolute(Path::new(host))?, read_only: false }),
                empty_dir: None,
            });
            mounts.push(VolumeMount { name: volume, mount_path: guest.to_string(), read_only: false });
        }
        spec.components.push(ComponentSpec {
            name,
            source: Source::Path(absolute(path)?),
            env: self.env.iter().cloned().collect(),
            args,
            volume_mounts: mounts,
            limits: LimitsSpec {
                memory: self.memory.or(limits.memory),
                cpu_time: self.cpu_time.or(limits.cpu_time),
                ..limits
            },
            ..ComponentSpec::default()
        });
        Ok(spec)
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.target.extension().is_some_and(|e| e == "wasm") {
        run_command(args).await
    } else {
        if !args.args.is_empty() || !args.component.is_empty() {
            bail!(
                "arguments, --env, --dir, --memory and --cpu-time apply to a component run as a command; a manifest sets its own"
            );
        }
        let mut signals = Signals::new()?;
        let (path, limit) = (args.target.clone(), args.host.max_manifest_size);
        // Off the runtime's threads, so that a signal is seen while a large manifest parses.
        let read = tokio::task::spawn_blocking(move || WorkloadSpec::from_file_limited(&path, limit));
        let spec = match signals.before(read).await {
            Ok(spec) => spec.context("read the manifest")??,
            Err(signal) => return Ok(stopped_early(&args.target.display().to_string(), signal)),
        };
        run_workload(&args.host, spec, signals).await
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let signals = Signals::new()?;
    let mut spec = args.component.workload(&args.component_file, Vec::new(), LimitsSpec::default())?;
    // Asked of the HTTP server by name, with no routes: the workload's only HTTP
    // component is served on `/*`, and one that exports no handler is refused.
    // A component using component-model async is asked for WASI 0.3's handler;
    // a file that cannot be read is left for validation to report.
    let name = spec.name.clone();
    let (file, limit) = (args.component_file.clone(), args.host.max_component_size);
    let read = tokio::task::spawn_blocking(move || weft_runtime::component::read_regular_file(&file, limit));
    let p3 = matches!(read.await, Ok(Ok(bytes))
        if weft_runtime::component::concurrency_needed(&bytes) == weft_runtime::engine::Concurrency::On);
    let interface = if p3 { "wasi:http/handler@0.3.0" } else { "wasi:http/incoming-handler@0.2.0" };
    spec.host_interfaces.push(HostInterfaceSpec {
        interface: interface.into(),
        component: Some(name),
        config: Default::default(),
    });
    run_workload(&args.host, spec, signals).await
}

/// One component, stdio inherited, exit status passed through.
async fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let limits = LimitsSpec {
        memory: Some(ByteSize(4 << 30)),
        cpu_time: Some(weft_runtime::limits::UNLIMITED),
        ..LimitsSpec::default()
    };
    let spec = args.component.workload(&args.target, args.args.clone(), limits)?;
    let name = spec.name.clone();
    let host = args.host.start(GuestStdio::Inherit).await?;
    let status = start(&host, spec).await?;
    let workload = host.workload(&status.id).expect("just started");
    let code = match workload.run(&name).await {
        Ok(()) => 0,
        Err(e) => {
            if !matches!(e, weft_runtime::InvokeError::Exit { .. }) {
                note!("error: {e}");
            }
            e.exit_code()
        }
    };
    host.shutdown().await;
    Ok(ExitCode::from(code as u8))
}

/// A workload and component name for a command from its file name, whatever that
/// is: `my app.wasm` runs as `my-app`; `runtime` is a reserved component name.
fn command_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    match name.trim_matches('-') {
        "" => "command".to_string(),
        "runtime" => "runtime-command".to_string(),
        name => name.to_string(),
    }
}

/// How `weft run` exits when a signal stops it before its workload runs, or cuts
/// its stopping short.
const INTERRUPTED: u8 = 130;

fn stopped_early(what: &str, signal: &str) -> ExitCode {
    note!("weft: {signal} before `{what}` started");
    ExitCode::from(INTERRUPTED)
}

/// A workload until Ctrl-C or SIGTERM, or until its service completes or fails.
/// Every phase gives way to a signal.
async fn run_workload(host_args: &HostArgs, spec: WorkloadSpec, mut signals: Signals) -> anyhow::Result<ExitCode> {
    let name = spec.name.clone();
    let sink = GuestStdio::Sink(std::sync::Arc::new(PrefixedStdio));
    let host = match signals.before(host_args.start(sink)).await {
        Ok(host) => host?,
        Err(signal) => return Ok(stopped_early(&name, signal)),
    };
    let status = match signals.before(start(&host, spec)).await {
        Ok(status) => status?,
        Err(signal) => {
            host.shutdown().await;
            return Ok(stopped_early(&name, signal));
        }
    };
    // Every workload starts running; its service may have finished already, which
    // `follow` reports next.
    note!("weft: workload `{}` ({}) is {}", status.name, status.id, WorkloadState::Running);
    let workload = host.workload(&status.id).expect("just started");
    let code = tokio::select! {
        code = follow(&workload, WorkloadState::Running) => code,
        signal = signals.next() => {
            note!("weft: stopping `{}` ({signal})", status.name);
            0
        }
    };
    // The plugins stop first, so that the HTTP server drains the requests in flight
    // (for its `drainTimeout`) while the workload still runs; then the workload
    // stops and its emptyDirs go. A second signal does not wait for that.
    if let Err(signal) = signals.before(host.shutdown()).await {
        note!("weft: {signal} again: `{}` stopped without waiting for work in flight", status.name);
        return Ok(ExitCode::from(INTERRUPTED));
    }
    let stopped = host.workload_status(&status.id).await?;
    note!("weft: workload `{}` is {}", stopped.name, stopped.state);
    Ok(ExitCode::from(code))
}

/// Ctrl-C (SIGINT) and SIGTERM from now on. tokio listens for a signal only once
/// asked to, so a signal while the workload starts (its server already answering)
/// would kill the process instead of stopping the workload; and once it listens,
/// the signal no longer ends the process by itself.
pub(crate) struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> anyhow::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's name.
    pub(crate) async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "interrupted",
                _ = self.terminate.recv() => "terminated",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }

    /// `work`'s output, or the signal that came first (then `work` is dropped).
    pub(crate) async fn before<T>(&mut self, work: impl Future<Output = T>) -> Result<T, &'static str> {
        tokio::select! {
            out = work => Ok(out),
            signal = self.next() => Err(signal),
        }
    }
}

/// Prints state changes after `state` until the workload completes (0) or fails (1).
async fn follow(workload: &RunningWorkload, mut state: WorkloadState) -> u8 {
    loop {
        match state {
            WorkloadState::Completed => return 0,
            WorkloadState::Failed => return 1,
            _ => {}
        }
        let from = state;
        state = workload.wait_for(|s| s != from).await;
        let status = workload.status();
        match status.message {
            Some(message) => note!("weft: workload `{}` is {state}: {message}", status.name),
            None => note!("weft: workload `{}` is {state}", status.name),
        }
    }
}

async fn start(host: &Host, spec: WorkloadSpec) -> anyhow::Result<weft_runtime::WorkloadStatus> {
    match host.workload_start(spec).await {
        Ok(status) => Ok(status),
        Err(HostError::Rejected(rejection)) => Err(anyhow::anyhow!("{rejection}")),
        Err(e) => Err(e).context("start the workload"),
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolve {}", path.display()))
}
