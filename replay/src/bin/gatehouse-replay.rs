//! `gatehouse-replay`: list recorded sessions and show their transcripts.
//!
//! Reads a store directory that no gateway holds (fjall allows one process
//! per store): a stopped gateway's store, or an exported copy.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use gatehouse_replay::cli::{open_store, resolve_session};
use gatehouse_replay::list::SessionRow;
use gatehouse_replay::{TranscriptOptions, load_transcript, render};

/// Rebuild recorded Gatehouse sessions from a store.
///
/// Transcripts are decoded from the recorded protocol frames, so they show
/// what the client actually received (masked values as masked, marked
/// ⟨masked⟩).
#[derive(Debug, Parser)]
#[command(name = "gatehouse-replay", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the recorded sessions, oldest first.
    List {
        /// The store directory (a stopped gateway's, or an exported copy).
        #[arg(long, env = "GATEHOUSE_STORE", value_name = "DIR")]
        store: PathBuf,
        /// Print JSON (one array of sessions) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one session's transcript.
    Show {
        /// The session id, or any unique prefix of it (hyphens optional).
        session: String,
        /// The store directory (a stopped gateway's, or an exported copy).
        #[arg(long, env = "GATEHOUSE_STORE", value_name = "DIR")]
        store: PathBuf,
        /// Print every row; by default each result shows its first
        /// 100 rows and counts the rest.
        #[arg(long)]
        all_rows: bool,
        /// Print the transcript model as JSON instead of text (rows are
        /// capped the same way; NULL is null, binary values are
        /// {"binary": "\\x…"}, values the gateway masked are
        /// {"masked": true, "value": …}).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse-replay: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match cli.command {
        Command::List { store, json } => {
            let reader = open_store(&store)?;
            let rows = reader
                .sessions()
                .map(|s| s.map(|s| SessionRow::from_summary(&s)))
                .collect::<Result<Vec<_>, _>>()
                .context("cannot read the session list")?;
            if json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else {
                gatehouse_replay::list::render(&rows, &mut out)?;
            }
        }
        Command::Show {
            session,
            store,
            all_rows,
            json,
        } => {
            let reader = open_store(&store)?;
            let id = resolve_session(&reader, &session)?;
            let opts = if all_rows {
                TranscriptOptions::all_rows()
            } else {
                TranscriptOptions::default()
            };
            let Some(transcript) = load_transcript(&reader, id, opts)
                .with_context(|| format!("cannot read session {id}"))?
            else {
                bail!("session {id} has no recorded events");
            };
            if json {
                serde_json::to_writer_pretty(&mut out, &transcript)?;
                writeln!(out)?;
            } else {
                render::render(&transcript, &mut out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == Some(io::ErrorKind::BrokenPipe)
    })
}
