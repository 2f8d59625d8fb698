//! `gatehouse-audit`: audit checks over a Gatehouse store, offline.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
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
    /// Verify the hash chain of every recorded session.
    ///
    /// Each event records the BLAKE3 hash of the event before it. verify
    /// walks every session's stored events and reports each break: an
    /// event modified, missing, reordered (stored under another sequence
    /// number), misplaced (from another session), undecodable, or appended
    /// (beyond what the session recorded, or after its close).
    ///
    /// Not yet checked: signatures. Closing events will be sealed with the
    /// gateway's signing key and verified here with only its public key;
    /// until then the last event of a session has nothing after it to
    /// vouch for it.
    ///
    /// Exit status: 0 when every chain holds, 1 when any break is found,
    /// 2 when the store cannot be read.
    #[command(verbatim_doc_comment)]
    Verify {
        /// The store directory (a stopped gateway's, or an exported copy).
        #[arg(long, env = "GATEHOUSE_STORE", value_name = "DIR")]
        store: PathBuf,
        /// Verify only this session (its id or a unique prefix of it).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
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
        json,
    } = cli.command;
    let reader = open_store(&store)?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let report = match session {
        Some(prefix) => {
            let id = resolve_session(&reader, &prefix)?;
            let check =
                verify_session(&reader, id).with_context(|| format!("cannot read session {id}"))?;
            let mut report = Report::default();
            report.add(check);
            report
        }
        None => verify_store(&reader, |_| {}).context("cannot read the store")?,
    };
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for b in &report.breaks {
            writeln!(out, "BREAK {b}")?;
        }
        let sessions = plural(report.sessions, "session", "sessions");
        let events = plural(report.events, "event", "events");
        if report.breaks.is_empty() {
            writeln!(out, "{sessions}, {events} verified")?;
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
