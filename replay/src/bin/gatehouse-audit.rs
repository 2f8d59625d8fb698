//! `gatehouse-audit`: audit checks over a Gatehouse store, offline.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gatehouse_core::event::SealPublicKey;
use gatehouse_replay::cli::{open_store, resolve_session};
use gatehouse_replay::verify::{Report, verify_session, verify_store};

/// Audit a Gatehouse store offline.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-audit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify the hash chain and seal of every recorded session.
    ///
    /// Each event records the BLAKE3 hash of the event before it. verify
    /// walks every session's stored events and reports each break: an
    /// event modified, missing, reordered (stored under another sequence
    /// number), misplaced (from another session), undecodable, or appended
    /// (beyond what the session recorded, or after its close).
    ///
    /// The Closed event of a session is sealed with the gateway's seal key
    /// ([store] seal_key) over the chain before it. With --pubkey (the
    /// seal key's public half), every seal is verified: a Closed event
    /// without one is `unsealed`, one that does not verify is `bad seal`.
    /// A session with no Closed event was cut (a gateway crash or kill):
    /// reported as a warning, not a break.
    ///
    /// Exit status: 0 when every chain (and seal) holds, 1 when any break
    /// is found, 2 when the store or the key cannot be read.
    #[command(verbatim_doc_comment)]
    Verify {
        /// The store directory (a stopped gateway's, or an exported copy).
        #[arg(long, env = "GATEHOUSE_STORE", value_name = "DIR")]
        store: PathBuf,
        /// Verify only this session (its id or a unique prefix of it).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// The gateway's seal public key (SPKI PEM, `gatehouse keygen
        /// --name seal` writes seal.pub): verify every session's seal.
        #[arg(long, value_name = "FILE")]
        pubkey: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("gatehouse-audit: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether everything verified.
fn run(cli: Cli) -> Result<bool> {
    let Command::Verify {
        store,
        session,
        pubkey,
        json,
    } = cli.command;
    let seal_key = match &pubkey {
        Some(path) => {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the public key {}", path.display()))?;
            Some(
                SealPublicKey::from_spki_pem(&pem)
                    .with_context(|| format!("--pubkey {}", path.display()))?,
            )
        }
        None => None,
    };
    let seal_key = seal_key.as_ref();
    let reader = open_store(&store)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let report = match session {
        Some(prefix) => {
            let id = resolve_session(&reader, &prefix)?;
            let check = verify_session(&reader, id, seal_key)
                .with_context(|| format!("cannot read session {id}"))?;
            let mut report = Report::default();
            report.add(check);
            report
        }
        None => verify_store(&reader, seal_key, |_| {}).context("cannot read the store")?,
    };
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for b in &report.breaks {
            writeln!(out, "BREAK {b}")?;
        }
        for w in &report.warnings {
            writeln!(out, "WARN {w}")?;
        }
        let sessions = plural(report.sessions, "session", "sessions");
        let events = plural(report.events, "event", "events");
        let seals = match seal_key {
            Some(key) => format!(", seals checked with key {}", key.kid()),
            None => ", seals not checked (no --pubkey)".to_owned(),
        };
        if report.breaks.is_empty() {
            writeln!(out, "{sessions}, {events} verified{seals}")?;
        } else {
            writeln!(
                out,
                "{} in {} of {sessions} ({events} read): the record has been altered",
                plural(report.breaks.len() as u64, "break", "breaks"),
                report.broken_sessions(),
            )?;
        }
    }
    out.flush()?;
    Ok(report.breaks.is_empty())
}

fn plural(n: u64, one: &str, many: &str) -> String {
    gatehouse_replay::text::plural(n, one, many)
}
