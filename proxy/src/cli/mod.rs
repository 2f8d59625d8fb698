//! The command line: one module per subcommand.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, IoEngine};

mod approvals;
mod check_config;
mod grant;
mod grants;
mod keygen;
mod plan;
mod prune;
mod store;

/// Gatehouse: a recording gateway between AI agents and PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing `GrantArgs` buys nothing"
)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Load and validate a config file, print a summary, and exit
    /// (status 1 if it has mistakes).
    CheckConfig(check_config::CheckConfigArgs),
    /// Make an Ed25519 key pair: DIR/NAME.key (private, mode 0600) and
    /// DIR/NAME.pub (public). NAME is `grant` (for [[grants.keys]]) unless
    /// --name says otherwise (`seal`, for [store] seal_key).
    Keygen(keygen::KeygenArgs),
    /// Mint a grant and print it (the JWT alone) on stdout.
    Grant(grant::GrantArgs),
    /// List, approve, deny or watch statements held for approval, through
    /// a running gateway's admin API ([admin] in its config).
    Approvals(approvals::ApprovalsArgs),
    /// Revoke a grant through a running gateway's admin API: its sessions
    /// end, new ones are refused, also after a restart.
    Grants(grants::GrantsArgs),
    /// Export a sealed archive of a time range, from a store no gateway
    /// holds or from a running gateway's admin API; prune old sessions
    /// from a store no gateway holds.
    Store(store::StoreArgs),
    /// Say which IO engines can run on this host, and why not (what
    /// `io = "auto"` would pick). Exit status 0 if io_uring can run, 1 if
    /// not.
    Engines,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The config file.
    #[arg(long, value_name = "FILE", env = "GATEHOUSE_CONFIG")]
    config: PathBuf,
    /// The IO engine; overrides `[gateway] io`.
    #[arg(long, value_enum)]
    io: Option<IoEngine>,
}

/// Runs the subcommand `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Grant(args) => grant::run(&args),
        Command::Approvals(args) => approvals::run(&args),
        Command::Grants(args) => grants::run(&args),
        Command::Store(args) => store::run(&args),
        Command::Engines => engines(),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(&args.config)?;
    if let Some(io) = args.io {
        config.gateway.io = io;
    }
    tracing::info!("{}: {}", config.source.display(), config.summary());
    crate::serve::run(config)
}

fn engines() -> anyhow::Result<()> {
    match crate::uring::unavailable() {
        None => {
            println!("uring: available (io = \"auto\" uses it)");
            println!("tokio: available");
            Ok(())
        }
        Some(why) => {
            println!("uring: unavailable: {why}");
            println!("tokio: available (io = \"auto\" uses it)");
            anyhow::bail!("io_uring cannot run here")
        }
    }
}

#[cfg(test)]
mod tests;
