//! `weft run`: a manifest's workload until Ctrl-C (or until its service ends), or one
//! component as a command, like `wasmtime run`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use weft_runtime::limits::{ByteSize, LimitsSpec, duration};
use weft_runtime::manifest::{ComponentSpec, HostPathVolume, Source, VolumeMount, VolumeSpec};
use weft_runtime::output::PrefixedStdio;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{Host, HostApi, HostError, RunningWorkload, WorkloadSpec, WorkloadState};

use super::host::HostArgs;

#[derive(Args)]
pub struct RunArgs {
    /// A workload manifest (`.yaml`, `.yml`, `.json`) or a component (`.wasm`).
    target: PathBuf,
    /// Arguments for a component run as a command.
    #[arg(last = true)]
    args: Vec<String>,
    /// An environment variable for a component run as a command.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A host directory the command sees at a guest path (`--dir ./data::/data`, or
    /// `--dir ./data` for the same path in the guest).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Memory limit of a command (default: 4GiB).
    #[arg(long, value_name = "SIZE")]
    memory: Option<ByteSize>,
    /// CPU time limit of a command (default: unlimited).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse)]
    cpu_time: Option<std::time::Duration>,
    #[command(flatten)]
    host: HostArgs,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.target.extension().is_some_and(|e| e == "wasm") {
        run_command(args).await
    } else {
        if !args.args.is_empty() || !args.env.is_empty() || !args.dirs.is_empty() {
            bail!("arguments, --env and --dir apply to a component run as a command; a manifest sets its own");
        }
        run_manifest(args).await
    }
}

/// One component, stdio inherited, exit status passed through.
async fn run_command(args: RunArgs) -> anyhow::Result<ExitCode> {
    let name = args.target.file_stem().and_then(|s| s.to_str()).unwrap_or("command").to_string();
    let mut spec = WorkloadSpec { name: name.clone(), ..Default::default() };
    let mut mounts = Vec::new();
    for (i, dir) in args.dirs.iter().enumerate() {
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
        name: name.clone(),
        source: Source::Path(absolute(&args.target)?),
        env: args.env.iter().cloned().collect(),
        args: args.args.clone(),
        volume_mounts: mounts,
        limits: LimitsSpec {
            memory: Some(args.memory.unwrap_or(ByteSize(4 << 30))),
            cpu_time: Some(args.cpu_time.unwrap_or(weft_runtime::limits::UNLIMITED)),
            ..LimitsSpec::default()
        },
        ..ComponentSpec::default()
    });
    let host = args.host.start(GuestStdio::Inherit).await?;
    let status = start(&host, spec).await?;
    let workload = host.workload(&status.id).expect("just started");
    let code = match workload.run(&name).await {
        Ok(()) => 0,
        Err(e) => {
            if !matches!(e, weft_runtime::InvokeError::Exit { .. }) {
                eprintln!("error: {e}");
            }
            e.exit_code()
        }
    };
    host.shutdown().await;
    Ok(ExitCode::from(code as u8))
}

/// A manifest's workload until Ctrl-C, or until its service completes or fails.
async fn run_manifest(args: RunArgs) -> anyhow::Result<ExitCode> {
    let interrupted = interrupts()?;
    let spec = WorkloadSpec::from_file(&args.target)?;
    let host = args.host.start(GuestStdio::Sink(std::sync::Arc::new(PrefixedStdio))).await?;
    let status = start(&host, spec).await?;
    // Every workload starts running; its service may have finished already, which
    // `follow` reports next.
    eprintln!("weft: workload `{}` ({}) is {}", status.name, status.id, WorkloadState::Running);
    let workload = host.workload(&status.id).expect("just started");
    let code = tokio::select! {
        code = follow(&workload, WorkloadState::Running) => code,
        () = interrupted => {
            eprintln!("weft: stopping `{}`", status.name);
            0
        }
    };
    let stopped = host.workload_stop(&status.id).await?;
    eprintln!("weft: workload `{}` is {}", stopped.name, stopped.state);
    Ok(ExitCode::from(code))
}

/// Ctrl-C from now on. tokio's `ctrl_c()` listens only once first polled, so a
/// Ctrl-C while the workload starts (its server already answering) would kill the
/// process instead of stopping the workload.
fn interrupts() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        Ok(async move {
            interrupts.recv().await;
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
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
            Some(message) => eprintln!("weft: workload `{}` is {state}: {message}", status.name),
            None => eprintln!("weft: workload `{}` is {state}", status.name),
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
