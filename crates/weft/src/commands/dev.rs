//! `weft dev`: builds a project, runs its workload on a host of embedded
//! defaults, and on every saved change rebuilds what changed and swaps the new
//! build in, once it has built and the new workload validates
//! ([`Host::workload_replace`]): the HTTP server keeps listening, requests in
//! flight finish on the old version, key-value and blob data stay (they belong
//! to the workload's name). Anything that fails keeps the old version serving.
//!
//! Sources are the files under the manifest's directory and the builds'
//! directories, but for build outputs (`target/`, each component's `source`),
//! hidden directories, `node_modules`, the compile cache and `hostPath` volumes.
//! They are watched by polling their modification times and sizes (no
//! platform notification API to set up, and edits over network mounts or in
//! containers are seen the same way). A change is acted on once the files have
//! been still for one poll interval, so an editor's save of several files is one
//! rebuild.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use clap::Args;
use weft_runtime::limits::{ByteSize, duration};
use weft_runtime::output::PrefixedStdio;
use weft_runtime::wasi::GuestStdio;
use weft_runtime::{Host, HostApi, HostError, WorkloadId, WorkloadSpec, WorkloadState};

use super::build::{Builds, jobs};
use super::host::HostArgs;
use super::run::Signals;
use crate::plugins::{Hook, run_hooks};
use crate::print::note;

#[derive(Args)]
pub struct DevArgs {
    /// A workload manifest, or a directory holding `weft.yaml`.
    #[arg(default_value = ".", value_name = "MANIFEST|DIR")]
    path: PathBuf,
    /// How often the sources are looked at for changes.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = duration::parse)]
    poll: Duration,
    /// How many builds run at once (a cargo workspace is one build).
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    host: HostArgs,
}

/// The most files one watch looks at; past it, the rest are not watched (and
/// weft says so once).
const MAX_WATCHED_FILES: usize = 20_000;

/// How many rounds in a row may be started by files saved during the round
/// before: more, and the files saved during every one of them are taken for
/// ones the build writes.
const MAX_STREAK: usize = 3;

/// Directories never watched: build outputs, version control, package caches.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules", "__pycache__"];

pub async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let manifest = if args.path.is_dir() { args.path.join("weft.yaml") } else { args.path.clone() };
    if !manifest.is_file() {
        bail!("{} is not a workload manifest (weft dev needs a weft.yaml)", manifest.display());
    }
    let manifest = std::path::absolute(&manifest)?;
    let mut signals = Signals::new()?;
    let host = match signals.before(args.host.start(GuestStdio::Sink(Arc::new(PrefixedStdio)))).await {
        Ok(host) => host?,
        Err(_) => return Ok(ExitCode::from(130)),
    };
    let mut dev = Dev {
        host: host.clone(),
        manifest: manifest.clone(),
        limit: args.host.max_manifest_size,
        jobs: jobs(args.jobs),
        running: None,
        builds: None,
        cache_dir: host.engine().cache().dir().map(Path::to_path_buf),
        volumes: Vec::new(),
    };
    match signals.before(run_hooks(Hook::BeforeDev, &manifest)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            host.shutdown().await;
            return Err(e);
        }
        Err(_) => {
            host.shutdown().await;
            return Ok(ExitCode::from(130));
        }
    }
    let mut changed: Option<Vec<PathBuf>> = None;
    // Rounds in a row started by files saved while the previous round ran, and
    // the files saved during every one of them.
    let mut streak = 0;
    let mut every_round: Vec<PathBuf> = Vec::new();
    let stopped_by = loop {
        let before = dev.snapshot();
        if let Err(signal) = signals.before(dev.round(changed.as_deref())).await {
            break signal;
        }
        let after = dev.snapshot();
        // Saved while the round ran: the next round starts at once. Unless that
        // keeps happening, as it would for a file the build itself rewrites.
        // (What the first round learnt is output, such as a `source` outside
        // `target/`, is not a change.)
        let skipped = dev.skipped();
        let mut since = before.changes(&after);
        since.retain(|f| !skipped.iter().any(|s| f.starts_with(s)));
        every_round = if streak == 0 {
            since.clone()
        } else {
            since.iter().filter(|f| every_round.contains(f)).cloned().collect()
        };
        // Only a file changed during each of the rounds is taken for one the build
        // writes: edits to other files, saved while slow builds run, go on.
        let rewritten = streak >= MAX_STREAK && !every_round.is_empty();
        let next = if !since.is_empty() && !rewritten {
            streak += 1;
            since
        } else {
            if rewritten {
                note!(
                    "weft: {} at every build (does the build write it?); waiting for the next change",
                    dev.describe(&every_round)
                );
            }
            streak = 0;
            match signals.before(dev.next_change(after, args.poll)).await {
                Ok(files) => files,
                Err(signal) => break signal,
            }
        };
        changed = if next.contains(&manifest) { None } else { Some(next) };
    };
    note!("weft: stopping ({stopped_by})");
    host.shutdown().await;
    if let Some(id) = &dev.running
        && let Ok(status) = host.workload_status(id).await
    {
        note!("weft: workload `{}` is {}", status.name, status.state);
    }
    Ok(ExitCode::SUCCESS)
}

struct Dev {
    host: Host,
    manifest: PathBuf,
    limit: ByteSize,
    jobs: usize,
    /// The workload serving now.
    running: Option<WorkloadId>,
    /// The builds of the manifest last read.
    builds: Option<Arc<Builds>>,
    /// Where the host keeps compiled code, and the workload's `hostPath`
    /// volumes: written while it runs, not sources, even inside the project.
    cache_dir: Option<PathBuf>,
    volumes: Vec<PathBuf>,
}

impl Dev {
    /// Reads the manifest, rebuilds (everything, or what `changed` touches),
    /// then starts the workload or swaps it in. Whatever fails is printed, and
    /// what ran before keeps running.
    async fn round(&mut self, changed: Option<&[PathBuf]>) {
        if let Err(why) = self.try_round(changed).await {
            let keeping = if self.running.is_some() { "the previous version still serves" } else { "nothing runs yet" };
            note!("weft: {why}; {keeping}");
        }
    }

    async fn try_round(&mut self, changed: Option<&[PathBuf]>) -> Result<(), String> {
        let (path, limit) = (self.manifest.clone(), self.limit);
        let spec = blocking(move || WorkloadSpec::from_file_limited(&path, limit))
            .await
            .map_err(|e| format!("reading the manifest failed: {e}"))?
            .map_err(|e| format!("{}: {e}", self.manifest.display()))?;
        self.volumes =
            spec.volumes.iter().filter_map(|v| v.host_path.as_ref()).map(|v| spec.resolve_path(&v.path)).collect();
        if changed.is_none() || self.builds.is_none() {
            let spec = spec.clone();
            let plan = move || Builds::plan(&spec).and_then(|b| b.ensure_toolchain().map(|()| b));
            let builds =
                blocking(plan).await.and_then(|planned| planned).map_err(|e| format!("cannot build: {e:#}"))?;
            self.builds = Some(Arc::new(builds));
        }
        let builds = self.builds.clone().expect("planned above");
        let build_started = Instant::now();
        run_hooks(Hook::BeforeBuild, &self.manifest).await.map_err(|e| format!("{e:#}"))?;
        let (owned, jobs) = (changed.map(<[PathBuf]>::to_vec), self.jobs);
        blocking(move || builds.run(owned.as_deref(), jobs))
            .await
            .map_err(|e| format!("the build stopped: {e}"))?
            .map_err(|failed| format!("{failed} build(s) failed"))?;
        let build_time = build_started.elapsed();
        run_hooks(Hook::AfterBuild, &self.manifest).await.map_err(|e| format!("{e:#}"))?;
        let swap_started = Instant::now();
        let name = spec.name.clone();
        let result = match &self.running {
            None => self.host.workload_start(spec).await,
            Some(old) => self.host.workload_replace(old, spec).await,
        };
        let status = match result {
            Ok(status) => status,
            Err(HostError::Rejected(rejection)) => {
                return Err(format!("{rejection}\nweft: `{name}` was not swapped in"));
            }
            Err(e) => return Err(format!("`{name}` was not started: {e}")),
        };
        let swap_time = swap_started.elapsed();
        if self.running.is_none() {
            note!("weft: workload `{}` ({}) is {}", status.name, status.id, WorkloadState::Running);
        } else {
            let what = match changed {
                None => "the manifest changed".to_string(),
                Some(files) => self.describe(files),
            };
            note!(
                "weft: swapped in `{}` ({}): {what}; build {:.1} s, swap {} ms",
                status.name,
                status.id,
                build_time.as_secs_f64(),
                swap_time.as_millis()
            );
        }
        self.running = Some(status.id);
        Ok(())
    }

    /// What changed, briefly: up to three paths relative to the project.
    fn describe(&self, files: &[PathBuf]) -> String {
        let mut shown: Vec<String> = files.iter().take(3).map(|f| self.shown(f)).collect();
        if files.len() > 3 {
            shown.push(format!("and {} more", files.len() - 3));
        }
        format!("{} changed", shown.join(", "))
    }

    fn shown(&self, file: &Path) -> String {
        let base = self.manifest.parent().unwrap_or(Path::new("/"));
        file.strip_prefix(base).unwrap_or(file).display().to_string()
    }

    /// The files watched now: the manifest, and every file under the builds'
    /// directories but build outputs, hidden directories and [`SKIPPED_DIRS`].
    fn snapshot(&self) -> Snapshot {
        let mut roots = vec![self.manifest.parent().unwrap_or(Path::new("/")).to_path_buf()];
        if let Some(builds) = &self.builds {
            roots.extend(builds.inputs());
        }
        Snapshot::take(&roots, &self.skipped())
    }

    /// Build outputs, and where the host and the workload write.
    fn skipped(&self) -> Vec<PathBuf> {
        let mut skipped: Vec<PathBuf> = self.builds.iter().flat_map(|b| b.outputs()).collect();
        skipped.extend(self.cache_dir.iter().chain(&self.volumes).cloned());
        skipped
    }

    /// Waits until a file differs from `from` and then the files are still for one
    /// poll: those that changed.
    async fn next_change(&self, from: Snapshot, poll: Duration) -> Vec<PathBuf> {
        let mut seen = from.clone();
        let mut moving = false;
        loop {
            tokio::time::sleep(poll).await;
            let now = tokio::task::block_in_place(|| self.snapshot());
            if now == seen {
                if moving {
                    return from.changes(&now);
                }
                continue;
            }
            moving = !from.changes(&now).is_empty();
            seen = now;
        }
    }
}

/// Every watched file's modification time and size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Snapshot {
    files: BTreeMap<PathBuf, (SystemTime, u64)>,
}

impl Snapshot {
    fn take(roots: &[PathBuf], skipped: &[PathBuf]) -> Snapshot {
        let mut files = BTreeMap::new();
        let mut dirs: Vec<PathBuf> = roots.to_vec();
        let mut seen_dirs = std::collections::HashSet::new();
        while let Some(dir) = dirs.pop() {
            if !seen_dirs.insert(dir.clone()) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let Ok(kind) = entry.file_type() else { continue };
                if skipped.iter().any(|s| path.starts_with(s)) {
                    continue;
                }
                if kind.is_dir() {
                    if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                        dirs.push(path);
                    }
                    continue;
                }
                // Cargo rewrites its lock file while building; weft's partial copies come and go.
                if name == "Cargo.lock" || name.ends_with(".partial") {
                    continue;
                }
                if files.len() == MAX_WATCHED_FILES {
                    warn_too_many();
                    return Snapshot { files };
                }
                if let Ok(meta) = entry.metadata() {
                    files.insert(path, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
                }
            }
        }
        Snapshot { files }
    }

    /// The files added, removed or changed in `later`.
    fn changes(&self, later: &Snapshot) -> Vec<PathBuf> {
        let mut changed: Vec<PathBuf> =
            later.files.iter().filter(|(p, m)| self.files.get(*p) != Some(m)).map(|(p, _)| p.clone()).collect();
        changed.extend(self.files.keys().filter(|p| !later.files.contains_key(*p)).cloned());
        changed.sort();
        changed
    }
}

/// `work` on a thread that may block; a panic there is an error here.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(anyhow::Error::from)
}

fn warn_too_many() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| note!("weft: watching only the first {MAX_WATCHED_FILES} files of the project"));
}
