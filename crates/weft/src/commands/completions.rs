//! `weft completions SHELL`: a completion script for the shell, from the CLI's own
//! definition, so it covers every subcommand and flag there is.

use std::process::ExitCode;

use clap::Args;
use clap_complete::Shell;

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    shell: Shell,
}

pub fn completions(args: CompletionsArgs, mut cli: clap::Command) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, "weft", &mut script);
    crate::print::out(&String::from_utf8(script)?)?;
    Ok(ExitCode::SUCCESS)
}
