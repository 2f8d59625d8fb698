//! `gatehouse`: the gateway and its command-line tools.
//!
//! - `gatehouse serve --config FILE`: run the gateway.
//! - `gatehouse check-config --config FILE`: validate a config and exit.
//! - `gatehouse keygen --out DIR [--name seal]`: make a grant (or seal)
//!   signing key pair.
//! - `gatehouse grant --key FILE …`: mint a grant.
//! - `gatehouse approvals list|approve|deny|watch`: decide held statements
//!   through a running gateway's admin API.
//! - `gatehouse grants revoke JTI --reason …`: revoke a grant through it.
//! - `gatehouse store export …`: a sealed archive of a time range, from a
//!   stopped store or a running gateway; `gatehouse store prune --before
//!   DATE …`: remove old sessions from a stopped store, leaving a signed
//!   prune record that verification accepts.
//! - `gatehouse engines`: which IO engines can run on this host, and why
//!   io_uring cannot where it cannot.
//!
//! Logs go to stderr; `GATEHOUSE_LOG` filters them (`info` by default,
//! `GATEHOUSE_LOG=debug`, `GATEHOUSE_LOG=gatehouse=trace,warn`, …). Errors
//! are printed with their causes, and the exit code is 1.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc, not glibc's malloc: the data path allocates per frame on
/// every worker thread, and under load glibc's arenas spent a tenth of the
/// gateway's CPU in `_int_malloc`, `malloc_consolidate` and friends
/// (`bench/RESULTS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod approvals;
mod checkpoints;
mod cli;
mod config;
mod http;
mod jwks;
mod metrics;
mod revocations;
mod serve;
#[allow(unsafe_code)]
mod uring;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The log filter without `GATEHOUSE_LOG`: our own info, the storage
/// engine's warnings only.
const DEFAULT_LOG: &str = "info,fjall=warn,lsm_tree=warn";

/// tracing to stderr, filtered by `GATEHOUSE_LOG` (default [`DEFAULT_LOG`]).
fn init_logging() {
    use tracing_subscriber::EnvFilter;

    let (filter, bad) = match std::env::var("GATEHOUSE_LOG") {
        Ok(spec) => match EnvFilter::try_new(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (EnvFilter::new(DEFAULT_LOG), Some((spec, e))),
        },
        Err(_) => (EnvFilter::new(DEFAULT_LOG), None),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Some((spec, e)) = bad {
        tracing::warn!("GATEHOUSE_LOG={spec:?} is not a valid filter ({e}); logging at info");
    }
}
