//! `weft`: run WebAssembly components as workloads.

mod commands;
mod plugins;
mod print;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use weft_runtime::output::PrefixedStdio;

#[derive(Parser)]
#[command(name = "weft", version, about = "Run WebAssembly components as workloads", max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload manifest, or one component as a command.
    Run(commands::run::RunArgs),
    /// Serve one component that exports `wasi:http/incoming-handler` (WASI 0.2) or
    /// `wasi:http/handler` (WASI 0.3) on every path.
    Serve(commands::run::ServeArgs),
    /// Run a long-lived host on a NATS lattice, serving the host API.
    Host(commands::lattice::HostCommand),
    /// Start, inspect or stop a workload on a host of the lattice.
    Workload(commands::lattice::WorkloadCommand),
    /// Show a component's imports and exports, or a workload's link plan.
    Inspect(commands::inspect::InspectArgs),
    /// Push or pull a component as an OCI artifact.
    Oci(commands::oci::OciCommand),
    /// Create a project from a template.
    New(commands::new::NewArgs),
    /// Build every component of a project for WebAssembly.
    Build(commands::build::BuildArgs),
    /// Build and run a project, and swap each saved change in while it serves.
    Dev(commands::dev::DevArgs),
    /// Print a shell's completion script for weft.
    Completions(commands::completions::CompletionsArgs),
    /// Install, list or remove CLI plugins (components whose commands become weft's).
    Plugin(commands::plugin::PluginCommand),
}

fn main() -> ExitCode {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let terminal = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(print::QueuedStderr)
        .with_filter(
            // Guests' own log records and where the HTTP server listens are for the
            // user; the rest of the host speaks up only when something is wrong.
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| "warn,guest=info,weft_plugins::http=info".into()),
        );
    // The OTLP log export has its own level (`telemetry.logLevel`), apart from the terminal's.
    tracing_subscriber::registry().with(terminal).with(weft_runtime::telemetry::logs::layer()).init();
    let installed = plugins::installed();
    let base = Cli::command();
    let builtins: Vec<String> = base
        .get_subcommands()
        .flat_map(|c| std::iter::once(c.get_name().to_string()).chain(c.get_all_aliases().map(str::to_string)))
        .chain(["help".to_string()])
        .collect();
    let command = cli_command(base, &installed, &builtins);
    let matches = command.clone().get_matches();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("start the Tokio runtime");
    // A plugin's command: the words after it go to the plugin as the user typed them.
    let plugin_command = matches.subcommand_name().and_then(|name| {
        installed.iter().find(|p| p.commands.iter().any(|c| c.name == name)).map(|p| (p.clone(), name.to_string()))
    });
    let result = runtime.block_on(async {
        if let Some((plugin, name)) = plugin_command {
            // weft has no global options: the command is the first word.
            let args: Vec<String> = std::env::args().skip(2).collect();
            return plugins::run(&plugin, &name, args).await.map(ExitCode::from);
        }
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        match cli.command {
            Command::Run(args) => commands::run::run(args).await,
            Command::Serve(args) => commands::run::serve(args).await,
            Command::Host(args) => commands::lattice::host(args).await,
            Command::Workload(args) => commands::lattice::workload(args).await,
            Command::Inspect(args) => commands::inspect::inspect(args).await,
            Command::Oci(args) => commands::oci::oci(args).await,
            Command::New(args) => commands::new::new(args),
            Command::Build(args) => tokio::task::block_in_place(|| commands::build::build(args)),
            Command::Dev(args) => commands::dev::dev(args).await,
            Command::Completions(args) => commands::completions::completions(args, command),
            Command::Plugin(args) => commands::plugin::plugin(args, builtins).await,
        }
    });
    let code = match result {
        Ok(code) => code,
        Err(e) if print::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            print::stderr_line(format!("error: {e:#}"));
            ExitCode::from(2)
        }
    };
    // What is queued for the terminal gets there, unless nobody reads it.
    if !PrefixedStdio::flush(Duration::from_secs(2)) {
        report_lost_output();
    }
    // A compilation that Ctrl-C left running is not waited for.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// weft's commands, those of the installed plugins, and the installed plugins'
/// names where a command takes one.
fn cli_command(base: clap::Command, installed: &[plugins::Installed], builtins: &[String]) -> clap::Command {
    let mut cli = plugins::with_plugin_commands(base, installed, builtins);
    if !installed.is_empty() {
        let names: Vec<&'static str> = installed.iter().map(|p| &*Box::leak(p.name.clone().into_boxed_str())).collect();
        cli = cli.mut_subcommand("plugin", |p| {
            p.mut_subcommand("uninstall", |u| {
                u.mut_arg("name", |a| a.value_parser(clap::builder::PossibleValuesParser::new(names)))
            })
        });
    }
    cli
}

/// The output writer is stuck on a stdout or stderr nobody reads: says so on
/// stderr if that can be written at all, without waiting long for it.
fn report_lost_output() {
    let dropped = PrefixedStdio::dropped();
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = writeln!(
            std::io::stderr(),
            "weft: {dropped} lines of output dropped, and what was still queued is lost (stdout or stderr was not read)"
        );
        let _ = done.send(());
    });
    let _ = wait.recv_timeout(Duration::from_millis(500));
}
