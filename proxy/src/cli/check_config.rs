//! `gatehouse check-config`: load, validate, summarize, exit.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The config file.
    #[arg(long, value_name = "FILE", env = "GATEHOUSE_CONFIG")]
    config: PathBuf,
}

/// Prints `config OK: …` and the key ids on stdout, warnings on stderr.
/// Any mistake is an error (exit status 1).
pub fn run(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let config = Config::load_with_env(&args.config, &|name| std::env::var_os(name))?;
    // Validation has parsed every key; this lists their ids, which is what
    // a grant's `kid` header must name.
    let keys = config.grants.key_set().context("reading the grant keys")?;
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    println!("config OK: {}", config.summary());
    for key in keys.iter() {
        println!("grant key {}", key.kid());
    }
    Ok(())
}
