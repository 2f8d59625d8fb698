//! `gatehouse-replay`: list recorded sessions, show, export and play
//! their transcripts.
//!
//! Reads a store directory that no gateway holds (fjall allows one process
//! per store), a sealed archive (`gatehouse store export`), or a running
//! gateway through its admin API (`--gateway URL`); see
//! [`gatehouse_replay::cli`].

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use gatehouse_replay::cli::{RangeArgs, SourceArgs, open_source, resolve_session};
use gatehouse_replay::export::{self, Format};
use gatehouse_replay::list::SessionRow;
use gatehouse_replay::play::{Pace, play};
use gatehouse_replay::{Transcript, TranscriptOptions, load_transcript, render};

/// Rebuild recorded Gatehouse sessions from a store: list them, show,
/// export or play one.
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
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        range: RangeArgs,
        /// Print JSON (one array of sessions) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one session's transcript.
    Show {
        /// The session id, or any unique prefix of it (hyphens optional).
        session: String,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        range: RangeArgs,
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
    /// Export one session's transcript for other tools and people.
    ///
    /// Writes the transcript `show` rebuilds (masked values as masked and
    /// marked) as one JSON document, CSV, a self-contained HTML page, or
    /// an asciicast v2 recording; see --format.
    Export {
        /// The session id, or any unique prefix of it (hyphens optional).
        session: String,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        range: RangeArgs,
        /// The format to write.
        ///
        /// json: the session's metadata, then every item with its time
        /// offset (`offset_us`), statements with parameters and results,
        /// masked values as {"masked": true, "value": …}, errors with
        /// their SQLSTATE, verdicts with their decision. csv: a header
        /// row, then one row per item (offset_s, at, kind, text,
        /// parameters, columns, rows_returned, masked_cells, tags,
        /// duration_ms, error_code, error_message, decision, reason,
        /// approver). html: one page for a browser, inline CSS, no
        /// scripts, no external resources. asciicast: the `show` text
        /// timed as the session happened, for `asciinema play FILE`.
        #[arg(long, value_enum)]
        format: Format,
        /// Write to FILE (replaced if it exists) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Keep every row; by default each result keeps its first 100
        /// rows and counts the rest.
        #[arg(long)]
        all_rows: bool,
    },
    /// Replay one session on the terminal as it happened.
    ///
    /// Writes the `show` text item by item, pausing between items as long
    /// as the session did, divided by --speed, each pause at most
    /// --max-wait. Writes everything at once with --speed 0 or when stdout
    /// is not a terminal.
    Play {
        /// The session id, or any unique prefix of it (hyphens optional).
        session: String,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        range: RangeArgs,
        /// How many times faster than real time (0: no pauses).
        #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
        speed: f64,
        /// The longest pause between two items (humantime: 2s, 500ms).
        #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = humantime::parse_duration)]
        max_wait: Duration,
        /// Keep every row; by default each result shows its first 100
        /// rows and counts the rest.
        #[arg(long)]
        all_rows: bool,
    },
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a speed: a number ≥ 0 (1 real time, 4 four times faster, 0 no pauses)"
        )),
    }
}

/// Opens the source and rebuilds the transcript of the session `prefix`
/// names.
fn transcript(
    source: &SourceArgs,
    range: RangeArgs,
    prefix: &str,
    all_rows: bool,
) -> Result<Transcript> {
    let reader = open_source(source, range)?;
    let id = resolve_session(&reader, prefix)?;
    let opts = if all_rows {
        TranscriptOptions::all_rows()
    } else {
        TranscriptOptions::default()
    };
    match load_transcript(&reader, id, opts).with_context(|| format!("cannot read session {id}"))? {
        Some(t) => Ok(t),
        None => bail!("session {id} has no recorded events"),
    }
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
        Command::List {
            source,
            range,
            json,
        } => {
            let reader = open_source(&source, range)?;
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
            source,
            range,
            all_rows,
            json,
        } => {
            let transcript = transcript(&source, range, &session, all_rows)?;
            if json {
                serde_json::to_writer_pretty(&mut out, &transcript)?;
                writeln!(out)?;
            } else {
                render::render(&transcript, &mut out)?;
            }
        }
        Command::Export {
            session,
            source,
            range,
            format,
            out: file,
            all_rows,
        } => {
            let transcript = transcript(&source, range, &session, all_rows)?;
            match file {
                Some(path) => {
                    let f = File::create(&path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let mut w = BufWriter::new(f);
                    export::write(&transcript, format, &mut w)
                        .and_then(|()| w.flush())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                None => export::write(&transcript, format, &mut out)?,
            }
        }
        Command::Play {
            session,
            source,
            range,
            speed,
            max_wait,
            all_rows,
        } => {
            let transcript = transcript(&source, range, &session, all_rows)?;
            let pace = if io::stdout().is_terminal() {
                Pace { speed, max_wait }
            } else {
                Pace::INSTANT
            };
            play(&transcript, &mut out, pace, &mut std::thread::sleep)?;
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
