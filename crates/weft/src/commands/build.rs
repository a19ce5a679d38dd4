//! `weft build`: builds every component of a project.
//!
//! A component with a `build.command` is built by that command (any language's
//! tool); any other component with a file source is a Rust crate of the cargo
//! project in its `build.dir` (the manifest's directory unless set), found by the
//! name of the file it builds, and built for `wasm32-wasip2` in release mode. The
//! crates of one cargo workspace are built by one `cargo build`, which orders and
//! parallelises them itself; builds of different units run in parallel unless a
//! component's `build.after` orders them. What a build made is copied to the
//! component's `source` when it is somewhere else (a shared `CARGO_TARGET_DIR`, a
//! tool's output directory).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use weft_runtime::WorkloadSpec;
use weft_runtime::manifest::{BuildSpec, Source};

use crate::plugins::Hook;
use crate::print::{note, out};

const TARGET: &str = "wasm32-wasip2";

#[derive(Args)]
pub struct BuildArgs {
    /// A workload manifest, or a directory holding `weft.yaml` or a cargo project.
    #[arg(default_value = ".", value_name = "MANIFEST|DIR")]
    path: PathBuf,
    /// How many builds run at once (a cargo workspace is one build).
    #[arg(long, short, value_name = "N")]
    jobs: Option<usize>,
}

pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let manifest = if args.path.is_dir() {
        let candidate = args.path.join("weft.yaml");
        if !candidate.exists() {
            if args.path.join("Cargo.toml").exists() {
                return cargo_project(&args.path, started);
            }
            bail!("{} has neither a weft.yaml nor a Cargo.toml: nothing to build", args.path.display());
        }
        candidate
    } else {
        args.path.clone()
    };
    let spec = WorkloadSpec::from_file(&manifest)?;
    hooks(Hook::BeforeBuild, &manifest)?;
    let builds = Builds::plan(&spec)?;
    if builds.units.is_empty() {
        bail!("{}: nothing to build (no component is made by a build)", manifest.display());
    }
    builds.ensure_toolchain()?;
    match builds.run(None, jobs(args.jobs)) {
        Ok(built) => {
            out(&format!("built {built} components in {}\n", seconds(started.elapsed())))?;
            hooks(Hook::AfterBuild, &manifest)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(failed) => {
            crate::print::stderr_line(format!("error: {failed} of {} builds failed", builds.units.len()));
            Ok(ExitCode::from(1))
        }
    }
}

/// The installed plugins' `hook`, from this blocking command.
fn hooks(hook: Hook, manifest: &Path) -> anyhow::Result<()> {
    tokio::runtime::Handle::current().block_on(crate::plugins::run_hooks(hook, manifest))
}

/// How many builds run at once: `asked`, or one per CPU.
pub(crate) fn jobs(asked: Option<usize>) -> usize {
    asked.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1)
}

/// The builds a manifest asks for (what `weft build` runs, and `weft dev` after
/// every change).
pub(crate) struct Builds {
    units: Vec<Arc<Unit>>,
}

impl Builds {
    pub(crate) fn plan(spec: &WorkloadSpec) -> anyhow::Result<Builds> {
        Ok(Builds { units: plan(spec)?.into_iter().map(Arc::new).collect() })
    }

    /// Adds the Rust target when a build needs it and it is missing.
    pub(crate) fn ensure_toolchain(&self) -> anyhow::Result<()> {
        if self.units.iter().any(|u| matches!(u.how, How::Cargo { .. })) {
            ensure_target()?;
        }
        Ok(())
    }

    /// The directories the builds read: a cargo workspace's, a command's `dir`.
    pub(crate) fn inputs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.units.iter().map(|u| u.root().to_path_buf()).collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The files the builds write where they are not a build's own directory
    /// (`target/`): each component's `source` and a command's `output`.
    pub(crate) fn outputs(&self) -> Vec<PathBuf> {
        let made = self.units.iter().flat_map(|u| &u.components);
        made.flat_map(|m| [Some(m.source.clone()), m.output.clone()]).flatten().collect()
    }

    /// Runs the builds, at most `jobs` at once: all of them, or (with `changed`)
    /// those whose directory holds a changed file and those that come after them.
    /// How many components were built, or how many builds failed (each reported).
    pub(crate) fn run(&self, changed: Option<&[PathBuf]>, jobs: usize) -> Result<usize, usize> {
        let mut wanted: Vec<bool> = self
            .units
            .iter()
            .map(|u| changed.is_none_or(|files| files.iter().any(|f| f.starts_with(u.root()))))
            .collect();
        // What comes after a wanted build is wanted too.
        loop {
            let more: Vec<usize> = (0..self.units.len())
                .filter(|&i| !wanted[i] && self.units[i].after.iter().any(|&j| wanted[j]))
                .collect();
            if more.is_empty() {
                break;
            }
            for i in more {
                wanted[i] = true;
            }
        }
        let results = run_units(&self.units, &wanted, jobs);
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 0 { Err(failed) } else { Ok(results.into_iter().flatten().sum()) }
    }
}

/// One build: a cargo invocation for one or more crates, or one command.
struct Unit {
    /// The components it makes, each with the file it must end up at.
    components: Vec<Made>,
    how: How,
    /// Indexes of the units that must finish first.
    after: Vec<usize>,
    /// Names of the components those units make (for the plan only).
    after_names: Vec<String>,
}

struct Made {
    name: String,
    source: PathBuf,
    /// Where the build writes it (cargo: found from its messages).
    output: Option<PathBuf>,
    /// Cargo: the crate's target that makes it.
    package: Option<String>,
}

enum How {
    Cargo { workspace: PathBuf },
    Command { command: String, dir: PathBuf },
}

impl Unit {
    /// The directory it builds from.
    fn root(&self) -> &Path {
        match &self.how {
            How::Cargo { workspace } => workspace,
            How::Command { dir, .. } => dir,
        }
    }
}

/// The builds the manifest asks for, in an order that keeps `after`.
fn plan(spec: &WorkloadSpec) -> anyhow::Result<Vec<Unit>> {
    if let Some(field) = spec.unknown_fields.iter().find(|f| f.contains(".build.")) {
        bail!("the manifest has an unknown build field `{field}` (known: command, output, dir, after)");
    }
    let all: Vec<_> = spec.all_components().collect();
    let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
    let mut units: Vec<Unit> = Vec::new();
    // A cargo workspace with the crates of components that need no ordering is one unit.
    let mut workspaces: HashMap<PathBuf, usize> = HashMap::new();
    let mut metadata: HashMap<PathBuf, Result<CargoMetadata, String>> = HashMap::new();
    for component in &all {
        let Source::Path(source) = &component.source else {
            continue;
        };
        let build = component.build.clone().unwrap_or_default();
        for name in &build.after {
            if !names.contains(&name.as_str()) {
                bail!(
                    "component `{}`: build.after names `{name}`, which is not a component of the workload",
                    component.name
                );
            }
        }
        let source = spec.resolve_path(source);
        let dir = build.dir.as_ref().map_or_else(|| spec.resolve_path(Path::new(".")), |d| spec.resolve_path(d));
        let BuildSpec { command, output, after, .. } = build;
        if let Some(command) = command {
            units.push(Unit {
                components: vec![Made {
                    name: component.name.clone(),
                    source,
                    output: output.map(|o| dir.join(o)),
                    package: None,
                }],
                how: How::Command { command, dir },
                after: Vec::new(),
                after_names: after,
            });
            continue;
        }
        if output.is_some() {
            bail!("component `{}`: build.output is for a build.command (cargo's own output is found)", component.name);
        }
        // Without a build section, a component no crate of the project makes is
        // used as it is, if its file is there (a prebuilt or downloaded component).
        let prebuilt = component.build.is_none() && source.is_file();
        let file = source.file_name().and_then(|f| f.to_str()).unwrap_or_default();
        // One `cargo metadata` per directory, whatever it answered.
        let found =
            match metadata.entry(dir.clone()).or_insert_with(|| cargo_metadata(&dir).map_err(|e| format!("{e:#}"))) {
                Ok(meta) => meta.package_making(file).map(|p| (p, meta.root.clone())).map_err(|e| {
                    let why = format!(
                        "component `{}`: no crate of the cargo workspace at {} builds `{file}`: {e:#}",
                        component.name,
                        meta.root.display()
                    );
                    (format!("no crate builds `{file}`"), why)
                }),
                Err(e) => Err((
                    format!("no cargo project in {}", dir.display()),
                    format!(
                        "component `{}` has no build.command, so it is built with cargo in {}: {e}",
                        component.name,
                        dir.display()
                    ),
                )),
            };
        let (package, workspace) = match found {
            Ok(found) => found,
            Err((reason, _)) if prebuilt => {
                note!("weft: component `{}`: {reason}; {} is used as it is", component.name, source.display());
                continue;
            }
            Err((_, why)) => bail!(why),
        };
        let made = Made { name: component.name.clone(), source, output: None, package: Some(package) };
        if after.is_empty()
            && let Some(&unit) = workspaces.get(&workspace)
        {
            units[unit].components.push(made);
            continue;
        }
        if after.is_empty() {
            workspaces.insert(workspace.clone(), units.len());
        }
        units.push(Unit {
            components: vec![made],
            how: How::Cargo { workspace },
            after: Vec::new(),
            after_names: after,
        });
    }
    let unit_of: HashMap<String, usize> =
        units.iter().enumerate().flat_map(|(i, u)| u.components.iter().map(move |c| (c.name.clone(), i))).collect();
    for (i, unit) in units.iter_mut().enumerate() {
        let mut after: Vec<usize> = unit.after_names.iter().filter_map(|n| unit_of.get(n).copied()).collect();
        after.sort_unstable();
        after.dedup();
        if after.contains(&i) {
            bail!("component `{}`: build.after names a component built in the same build", unit.components[0].name);
        }
        unit.after = after;
    }
    if let Some(cycle) = find_cycle(&units) {
        bail!("build.after goes round in a circle: {}", cycle.join(" → "));
    }
    Ok(units)
}

fn find_cycle(units: &[Unit]) -> Option<Vec<String>> {
    // 0 unvisited, 1 on the path, 2 done.
    fn visit(i: usize, units: &[Unit], state: &mut [u8], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        state[i] = 1;
        path.push(i);
        for &j in &units[i].after {
            if state[j] == 1 {
                let from = path.iter().position(|&k| k == j).unwrap();
                let mut cycle = path[from..].to_vec();
                cycle.push(j);
                return Some(cycle);
            }
            if state[j] == 0
                && let Some(c) = visit(j, units, state, path)
            {
                return Some(c);
            }
        }
        path.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0; units.len()];
    (0..units.len()).find_map(|i| {
        let cycle = if state[i] == 0 { visit(i, units, &mut state, &mut Vec::new()) } else { None };
        cycle.map(|c| c.into_iter().map(|u| units[u].components[0].name.clone()).collect())
    })
}

/// Runs the `wanted` units, at most `jobs` at once, each when the ones it comes
/// after have succeeded (an unwanted one counts as done). Per unit: how many
/// components it made, or that it failed (already reported).
fn run_units(units: &[Arc<Unit>], wanted: &[bool], jobs: usize) -> Vec<Result<usize, ()>> {
    let count = units.len();
    let mut results: Vec<Option<Result<usize, ()>>> =
        wanted.iter().map(|&w| if w { None } else { Some(Ok(0)) }).collect();
    let mut waiting: Vec<Option<Arc<Unit>>> = units.iter().zip(wanted).map(|(u, &w)| w.then(|| u.clone())).collect();
    let (done, finished) = std::sync::mpsc::channel();
    let mut running = 0;
    loop {
        for i in 0..count {
            let Some(unit) = &waiting[i] else { continue };
            if running >= jobs {
                break;
            }
            if unit.after.iter().any(|&j| matches!(results[j], Some(Err(())))) {
                let names = unit.components.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
                crate::print::stderr_line(format!("weft: not building {names}: a build it comes after failed"));
                results[i] = Some(Err(()));
                waiting[i] = None;
                continue;
            }
            if unit.after.iter().all(|&j| matches!(results[j], Some(Ok(_)))) {
                let unit = waiting[i].take().unwrap();
                let done = done.clone();
                running += 1;
                std::thread::spawn(move || {
                    // A panic is this build failing, not a wait for ever for its report.
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build_unit(&unit)))
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("the build of {} panicked", unit.components[0].name)));
                    if let Err(e) = &result {
                        crate::print::stderr_line(format!("error: {e:#}"));
                    }
                    let _ = done.send((i, result.map_err(|_| ())));
                });
            }
        }
        if running == 0 {
            break;
        }
        let (i, result) = finished.recv().expect("a build thread reports");
        running -= 1;
        results[i] = Some(result);
    }
    results.into_iter().map(|r| r.unwrap_or(Err(()))).collect()
}

fn build_unit(unit: &Unit) -> anyhow::Result<usize> {
    let started = Instant::now();
    let names = unit.components.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let artifacts: Vec<PathBuf> = match &unit.how {
        How::Cargo { workspace } => {
            crate::print::stderr_line(format!("weft: building {names} with cargo in {}", workspace.display()));
            let packages: Vec<&str> = unit.components.iter().filter_map(|c| c.package.as_deref()).collect();
            let made = cargo_build(workspace, &packages).with_context(|| format!("building {names} failed"))?;
            unit.components
                .iter()
                .map(|c| {
                    let file = c.source.file_name().and_then(|f| f.to_str()).unwrap_or_default();
                    made.iter()
                        .find(|p| p.file_name().is_some_and(|f| f == file))
                        .cloned()
                        .with_context(|| format!("component `{}`: cargo built no `{file}`", c.name))
                })
                .collect::<anyhow::Result<_>>()?
        }
        How::Command { command, dir } => {
            let made = &unit.components[0];
            crate::print::stderr_line(format!("weft: building {} with `{command}` in {}", made.name, dir.display()));
            let output = Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(dir)
                .env("WEFT_COMPONENT", &made.name)
                .env("WEFT_OUTPUT", made.output.as_ref().unwrap_or(&made.source))
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("component `{}`: cannot run `sh -c {command}`", made.name))?;
            if !output.status.success() {
                let mut report = format!("component `{}`: `{command}` failed ({})", made.name, output.status);
                for stream in [&output.stdout, &output.stderr] {
                    let text = String::from_utf8_lossy(stream);
                    if !text.trim().is_empty() {
                        report.push_str(":\n");
                        report.push_str(text.trim_end());
                    }
                }
                bail!(report);
            }
            vec![made.output.clone().unwrap_or_else(|| made.source.clone())]
        }
    };
    let took = started.elapsed();
    for (made, artifact) in unit.components.iter().zip(artifacts) {
        let size = install(&made.name, &artifact, &made.source)?;
        out(&format!("built {}  {}  {}  ({})\n", made.name, made.source.display(), human_size(size), seconds(took)))?;
    }
    Ok(unit.components.len())
}

/// Checks that `artifact` is a component and puts it at `source` (atomically, so a
/// host reading `source` never sees half a file). Its size.
fn install(name: &str, artifact: &Path, source: &Path) -> anyhow::Result<u64> {
    let mut head = [0u8; 8];
    let read = std::fs::File::open(artifact).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
    read.with_context(|| format!("component `{name}`: the build made no readable {}", artifact.display()))?;
    if head[..4] != *b"\0asm" {
        bail!("component `{name}`: {} is not WebAssembly", artifact.display());
    }
    if head[4..] == [1, 0, 0, 0] {
        bail!(
            "component `{name}`: {} is a core module, not a component (build for {TARGET}, or wrap it with \
             `wasm-tools component new`)",
            artifact.display()
        );
    }
    let same = match (artifact.canonicalize(), source.canonicalize()) {
        (Ok(a), Ok(s)) => a == s,
        _ => false,
    };
    if !same {
        if let Some(parent) = source.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        let partial = source.with_extension("wasm.partial");
        std::fs::copy(artifact, &partial)
            .and_then(|_| std::fs::rename(&partial, source))
            .with_context(|| format!("component `{name}`: copy {} to {}", artifact.display(), source.display()))?;
    }
    Ok(std::fs::metadata(source)?.len())
}

/// The workspace of the cargo project in `dir`, and the `.wasm` file each of its
/// crates' targets builds.
struct CargoMetadata {
    root: PathBuf,
    /// File name (`foo.wasm`) → the packages with a target making it.
    makes: BTreeMap<String, Vec<String>>,
}

impl CargoMetadata {
    fn package_making(&self, file: &str) -> anyhow::Result<String> {
        match self.makes.get(file).map(Vec::as_slice) {
            Some([package]) => Ok(package.clone()),
            Some(packages) => bail!("the crates {} all build it; set the component's build.dir", packages.join(", ")),
            None => {
                let known: Vec<&str> = self.makes.keys().map(String::as_str).collect();
                bail!("its crates build {} (the source's file name must be one of them)", list_or_none(&known))
            }
        }
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() { "no component".to_string() } else { items.join(", ") }
}

fn cargo_metadata(dir: &Path) -> anyhow::Result<CargoMetadata> {
    if !dir.join("Cargo.toml").exists() && !dir.ancestors().any(|d| d.join("Cargo.toml").exists()) {
        bail!("{} is not in a cargo project", dir.display());
    }
    let output = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("cargo metadata failed:\n{}", String::from_utf8_lossy(&output.stderr).trim_end());
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).context("cargo metadata's output")?;
    let root = PathBuf::from(json["workspace_root"].as_str().context("cargo metadata has no workspace_root")?);
    let mut makes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for package in json["packages"].as_array().into_iter().flatten() {
        let Some(name) = package["name"].as_str() else { continue };
        for target in package["targets"].as_array().into_iter().flatten() {
            let Some(target_name) = target["name"].as_str() else { continue };
            let kinds: Vec<&str> = target["kind"].as_array().into_iter().flatten().filter_map(|k| k.as_str()).collect();
            let file = if kinds.contains(&"cdylib") {
                format!("{}.wasm", target_name.replace('-', "_"))
            } else if kinds.contains(&"bin") {
                format!("{target_name}.wasm")
            } else {
                continue;
            };
            makes.entry(file).or_default().push(name.to_string());
        }
    }
    Ok(CargoMetadata { root, makes })
}

/// `cargo build` of `packages` (all of the workspace if none) for wasm32-wasip2:
/// the `.wasm` files it made. Its diagnostics and progress go to the terminal.
fn cargo_build(workspace: &Path, packages: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut command = Command::new(cargo());
    command
        .args(["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics"])
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for package in packages {
        command.args(["-p", package]);
    }
    let mut child = command.spawn().context("cannot run cargo")?;
    let stdout = child.stdout.take().expect("piped");
    let mut made = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let files = message["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str());
        made.extend(files.filter(|f| f.ends_with(".wasm")).map(PathBuf::from));
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("cargo build failed ({status}); its errors are above");
    }
    Ok(made)
}

/// A directory that is a cargo project and has no weft.yaml: every component its
/// crates make.
fn cargo_project(dir: &Path, started: Instant) -> anyhow::Result<ExitCode> {
    ensure_target()?;
    let meta = cargo_metadata(dir)?;
    crate::print::stderr_line(format!("weft: building the cargo project in {}", meta.root.display()));
    let made = cargo_build(dir, &[])?;
    let mut count = 0;
    for artifact in made {
        let mut head = [0u8; 8];
        let read = std::fs::File::open(&artifact).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
        if read.is_err() || head[4..] == [1, 0, 0, 0] {
            continue;
        }
        let size = std::fs::metadata(&artifact)?.len();
        out(&format!("built {}  {}\n", artifact.display(), human_size(size)))?;
        count += 1;
    }
    if count == 0 {
        bail!("cargo built no component in {} (a cdylib or a bin crate makes one)", dir.display());
    }
    out(&format!("built {count} components in {}\n", seconds(started.elapsed())))?;
    Ok(ExitCode::SUCCESS)
}

/// Adds the wasm32-wasip2 target through rustup when the toolchain lacks it.
fn ensure_target() -> anyhow::Result<()> {
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    let installed = sysroot.ok().filter(|o| o.status.success()).is_some_and(|o| {
        let root = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        root.join("lib/rustlib").join(TARGET).is_dir()
    });
    if installed {
        return Ok(());
    }
    crate::print::stderr_line(format!("weft: adding the {TARGET} target (rustup target add {TARGET})"));
    let status = Command::new("rustup").args(["target", "add", TARGET]).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("rustup target add {TARGET} failed ({s})"),
        Err(e) => bail!("the Rust toolchain has no {TARGET} target, and rustup cannot add it: {e}"),
    }
}

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}
