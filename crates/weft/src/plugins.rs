//! CLI plugins: components exporting `weft:cli/plugin` (wit/cli/plugin.wit).
//! Installed into a directory of their own (a `.wasm` and what its metadata
//! said, as JSON), their commands become `weft` commands and their hooks run in
//! `weft build` and `weft dev`. Each run is a fresh instance with stdio inherited,
//! no environment, the working directory mounted at `.` only when the plugin
//! asked for it and the user granted it at install, and sockets only likewise.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit/cli",
        world: "weft:cli/cli-plugin",
        exports: { default: async },
    });
}

use bindings::exports::weft::cli::plugin as api;

/// The memory a plugin's instance may grow to.
const MAX_MEMORY: usize = 1 << 30;

/// An installed plugin: what its metadata said, and what the user granted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    pub name: String,
    pub about: String,
    pub version: String,
    pub commands: Vec<CommandInfo>,
    pub hooks: Vec<Hook>,
    pub wants: Access,
    pub granted: Access,
    /// Where it was installed from (a path, or `oci://…`).
    pub source: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Access {
    pub working_dir: bool,
    pub network: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandInfo {
    pub name: String,
    pub about: String,
    pub arguments: Vec<ArgumentInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArgumentInfo {
    pub name: String,
    pub about: String,
    pub kind: ArgumentKind,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgumentKind {
    Flag,
    Option,
    Positional,
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    BeforeBuild,
    AfterBuild,
    BeforeDev,
}

impl From<api::Hook> for Hook {
    fn from(hook: api::Hook) -> Hook {
        match hook {
            api::Hook::BeforeBuild => Hook::BeforeBuild,
            api::Hook::AfterBuild => Hook::AfterBuild,
            api::Hook::BeforeDev => Hook::BeforeDev,
        }
    }
}

impl From<Hook> for api::Hook {
    fn from(hook: Hook) -> api::Hook {
        match hook {
            Hook::BeforeBuild => api::Hook::BeforeBuild,
            Hook::AfterBuild => api::Hook::AfterBuild,
            Hook::BeforeDev => api::Hook::BeforeDev,
        }
    }
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::BeforeBuild => "before-build",
            Hook::AfterBuild => "after-build",
            Hook::BeforeDev => "before-dev",
        }
    }
}

impl Installed {
    /// Where its component is kept.
    fn wasm(&self) -> PathBuf {
        dir().join(format!("{}.wasm", self.name))
    }

    /// What is wrong with it as a set of `weft` commands, if anything: names,
    /// arguments (a clap command is built from them on every run of weft).
    fn check(&self) -> Result<(), String> {
        check_name("plugin", &self.name)?;
        let mut seen = Vec::new();
        for command in &self.commands {
            check_name("command", &command.name)?;
            if seen.contains(&&command.name) {
                return Err(format!("it has two commands named `{}`", command.name));
            }
            seen.push(&command.name);
            let mut names = Vec::new();
            let mut optional_positional = false;
            for (i, arg) in command.arguments.iter().enumerate() {
                check_name("argument", &arg.name)?;
                if ["help", "version"].contains(&arg.name.as_str()) || names.contains(&&arg.name) {
                    return Err(format!("command `{}`: argument `{}` is taken", command.name, arg.name));
                }
                names.push(&arg.name);
                match arg.kind {
                    ArgumentKind::Rest if i + 1 != command.arguments.len() => {
                        return Err(format!("command `{}`: the `rest` argument must be last", command.name));
                    }
                    ArgumentKind::Positional | ArgumentKind::Rest => {
                        if arg.required && optional_positional {
                            return Err(format!(
                                "command `{}`: required argument `{}` comes after an optional one",
                                command.name, arg.name
                            ));
                        }
                        optional_positional |= !arg.required;
                    }
                    ArgumentKind::Flag | ArgumentKind::Option => {}
                }
            }
        }
        Ok(())
    }
}

/// Lower-case letters, digits and inner `-`, at most 64: a name that is a
/// command, a file name and a JSON key without escaping.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok { Ok(()) } else { Err(format!("{what} name `{name}` is not lower-case letters, digits and `-`")) }
}

/// Where plugins are installed: `$WEFT_PLUGIN_DIR`, or `weft/plugins` in the
/// user's data directory.
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WEFT_PLUGIN_DIR") {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("weft/plugins")
}

/// Every installed plugin, by name. One that cannot be read or is not valid is
/// left out, with a warning (a broken file must not break every `weft` command).
pub fn installed() -> Vec<Installed> {
    let Ok(entries) = std::fs::read_dir(dir()) else { return Vec::new() };
    let mut plugins: Vec<Installed> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let read = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| serde_json::from_slice::<Installed>(&bytes).map_err(|e| e.to_string()))
            .and_then(|p| p.check().map(|()| p));
        match read {
            Ok(p) if path.file_stem().is_some_and(|s| *s == *p.name) => plugins.push(p),
            Ok(p) => tracing::warn!("{}: names plugin `{}`; skipped", path.display(), p.name),
            Err(e) => tracing::warn!("{}: not a weft plugin record ({e}); skipped", path.display()),
        }
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    plugins
}

struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// One engine and compile cache for every plugin run of the process (`weft dev`
/// runs hooks at every rebuild).
fn compiled() -> anyhow::Result<&'static weft_runtime::component::ComponentCache> {
    static CACHE: std::sync::OnceLock<weft_runtime::component::ComponentCache> = std::sync::OnceLock::new();
    if let Some(cache) = CACHE.get() {
        return Ok(cache);
    }
    let mut config = wasmtime::Config::new();
    // CLI plugins are WASI 0.2 commands: no component-model concurrency (on by
    // default once Wasmtime is built with it).
    config.wasm_component_model(true).concurrency_support(false);
    let engine = wasmtime::Engine::new(&config)?;
    let cache = weft_runtime::component::ComponentCache::new(
        engine,
        weft_runtime::engine::Concurrency::Off,
        crate::commands::host::default_cache_dir(),
    );
    Ok(CACHE.get_or_init(|| cache))
}

/// A fresh instance of the plugin component `bytes`, with `access`.
async fn instantiate(
    bytes: &[u8],
    access: Access,
    argv: &[String],
) -> anyhow::Result<(Store<PluginState>, bindings::CliPlugin)> {
    let cache = compiled()?;
    let engine = cache.engine().clone();
    let (_, component) = tokio::task::block_in_place(|| cache.load(bytes)).map_err(anyhow::Error::msg)?;
    let mut wasi = WasiCtxBuilder::new();
    wasi.inherit_stdio().args(argv);
    if access.working_dir {
        let cwd = std::env::current_dir().context("the working directory")?;
        wasi.preopened_dir(&cwd, ".", FsPerms::ReadWrite)?;
    }
    if access.network {
        wasi.inherit_network().allow_ip_name_lookup(true);
    } else {
        wasi.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    }
    let state = PluginState {
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new().memory_size(MAX_MEMORY).build(),
    };
    let mut store = Store::new(&engine, state);
    store.limiter(|s| &mut s.limits);
    let mut linker: Linker<PluginState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let plugin = bindings::CliPlugin::instantiate_async(&mut store, &component, &linker)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))
        .context("not a weft CLI plugin (a component exporting weft:cli/plugin@0.1.0, with WASI 0.2 imports only)")?;
    Ok((store, plugin))
}

/// What the component `bytes` says it is, checked as `weft` commands.
pub async fn describe(bytes: &[u8], source: String, granted: Access) -> anyhow::Result<Installed> {
    let (mut store, plugin) = instantiate(bytes, Access::default(), &["metadata".to_string()]).await?;
    let meta = plugin
        .weft_cli_plugin()
        .call_describe(&mut store)
        .await
        .map_err(|e| anyhow::anyhow!("its describe function failed: {e:#}"))?;
    let wants = Access { working_dir: meta.wants_working_dir, network: meta.wants_network };
    let installed = Installed {
        name: meta.name,
        about: meta.about,
        version: meta.version,
        commands: meta
            .commands
            .into_iter()
            .map(|c| CommandInfo {
                name: c.name,
                about: c.about,
                arguments: c
                    .arguments
                    .into_iter()
                    .map(|a| ArgumentInfo {
                        name: a.name,
                        about: a.about,
                        kind: match a.kind {
                            api::ArgumentKind::Flag => ArgumentKind::Flag,
                            api::ArgumentKind::Option => ArgumentKind::Option,
                            api::ArgumentKind::Positional => ArgumentKind::Positional,
                            api::ArgumentKind::Rest => ArgumentKind::Rest,
                        },
                        required: a.required,
                    })
                    .collect(),
            })
            .collect(),
        hooks: meta.hooks.into_iter().map(Hook::from).collect(),
        // Only what it asks for, of what the user granted.
        granted: Access {
            working_dir: wants.working_dir && granted.working_dir,
            network: wants.network && granted.network,
        },
        wants,
        source,
    };
    installed.check().map_err(anyhow::Error::msg)?;
    Ok(installed)
}

/// Installs `plugin` (its component `bytes`) unless one of its commands is a
/// built-in's or another plugin's; replaces an installed plugin of its name.
pub fn install(plugin: &Installed, bytes: &[u8], builtins: &[String]) -> anyhow::Result<()> {
    for command in &plugin.commands {
        if builtins.contains(&command.name) {
            bail!(
                "plugin `{}`: its command `{}` collides with weft's built-in command `{}`",
                plugin.name,
                command.name,
                command.name
            );
        }
        for other in installed().iter().filter(|o| o.name != plugin.name) {
            if other.commands.iter().any(|c| c.name == command.name) {
                bail!(
                    "plugin `{}`: its command `{}` collides with command `{}` of the installed plugin `{}`",
                    plugin.name,
                    command.name,
                    command.name,
                    other.name
                );
            }
        }
    }
    let dir = dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let wasm = plugin.wasm();
    let json = dir.join(format!("{}.json", plugin.name));
    // The component first, the record that makes it installed last, each whole.
    write_atomically(&wasm, bytes)?;
    write_atomically(&json, &serde_json::to_vec_pretty(plugin)?)?;
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("write {}", path.display()))
}

/// Removes the installed plugin `name`: its record first, so that it is never
/// half there.
pub fn uninstall(name: &str) -> anyhow::Result<Installed> {
    let Some(plugin) = installed().into_iter().find(|p| p.name == name) else {
        bail!("no plugin `{name}` is installed (in {})", dir().display());
    };
    std::fs::remove_file(dir().join(format!("{name}.json")))?;
    let _ = std::fs::remove_file(plugin.wasm());
    Ok(plugin)
}

fn read_component(plugin: &Installed) -> anyhow::Result<Vec<u8>> {
    weft_runtime::component::read_source(&plugin.wasm(), weft_runtime::component::MAX_COMPONENT_SIZE)
        .map_err(|e| anyhow::anyhow!("plugin `{}`: {e} (reinstall it)", plugin.name))
}

/// Runs `command` of `plugin` with `args`: its exit status.
pub async fn run(plugin: &Installed, command: &str, args: Vec<String>) -> anyhow::Result<u8> {
    let bytes = read_component(plugin)?;
    let mut argv = vec![command.to_string()];
    argv.extend(args.iter().cloned());
    let (mut store, instance) = instantiate(&bytes, plugin.granted, &argv).await?;
    match instance.weft_cli_plugin().call_run(&mut store, command, &args).await {
        Ok(code) => Ok(code),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => Ok(u8::try_from(exit.0).unwrap_or(1)),
            None => Err(anyhow::anyhow!("plugin `{}` failed: {e:#}", plugin.name)),
        },
    }
}

/// Runs `hook` of every installed plugin that has it, in name order; the first
/// failure stops there.
pub async fn run_hooks(hook: Hook, manifest: &Path) -> anyhow::Result<()> {
    let manifest = manifest.display().to_string();
    for plugin in installed().into_iter().filter(|p| p.hooks.contains(&hook)) {
        let bytes = read_component(&plugin)?;
        let (mut store, instance) = instantiate(&bytes, plugin.granted, &[hook.as_str().to_string()]).await?;
        let outcome = instance.weft_cli_plugin().call_on_hook(&mut store, hook.into(), &manifest).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(message)) => bail!("plugin `{}` stopped {}: {message}", plugin.name, hook.as_str()),
            Err(e) => bail!("plugin `{}` failed in {}: {e:#}", plugin.name, hook.as_str()),
        }
    }
    Ok(())
}

/// `cli` with a subcommand for every installed plugin's command, arguments
/// included (so help and completions know them). Install refuses collisions; a
/// record edited by hand may still bring one, which is left out (clap would
/// refuse the whole CLI).
pub fn with_plugin_commands(mut cli: clap::Command, plugins: &[Installed], builtins: &[String]) -> clap::Command {
    use clap::{Arg, ArgAction};
    // clap keeps names as `&'static str` here; a process builds its CLI once.
    fn leak(s: &str) -> &'static str {
        Box::leak(s.to_owned().into_boxed_str())
    }
    let mut taken: Vec<&str> = builtins.iter().map(String::as_str).collect();
    for plugin in plugins {
        for command in &plugin.commands {
            if taken.contains(&command.name.as_str()) {
                tracing::warn!("plugin `{}`: command `{}` is taken; left out", plugin.name, command.name);
                continue;
            }
            taken.push(&command.name);
            let mut sub =
                clap::Command::new(leak(&command.name)).about(format!("{} (plugin `{}`)", command.about, plugin.name));
            for arg in &command.arguments {
                let mut a = Arg::new(leak(&arg.name)).help(leak(&arg.about)).required(arg.required);
                a = match arg.kind {
                    ArgumentKind::Flag => a.long(leak(&arg.name)).action(ArgAction::SetTrue),
                    ArgumentKind::Option => {
                        a.long(leak(&arg.name)).value_name(leak(&arg.name.to_uppercase())).action(ArgAction::Set)
                    }
                    ArgumentKind::Positional => a.value_name(leak(&arg.name.to_uppercase())),
                    ArgumentKind::Rest => a
                        .value_name(leak(&arg.name.to_uppercase()))
                        .num_args(0..)
                        .action(ArgAction::Append)
                        .trailing_var_arg(true)
                        .allow_hyphen_values(true),
                };
                sub = sub.arg(a);
            }
            cli = cli.subcommand(sub);
        }
    }
    cli
}
