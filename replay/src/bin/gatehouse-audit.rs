//! `gatehouse-audit`: audit checks over a Gatehouse store, offline.

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gatehouse_replay::cli::{
    OpenStore, RangeArgs, SourceArgs, load_pubkey, open_source, parse_time, resolve_session,
};
use gatehouse_replay::list::SessionRow;
use gatehouse_replay::query::{self, Format, SessionFilter, StatementFilter};
use gatehouse_replay::verify::{Report, verify_session, verify_store};

/// Audit a Gatehouse store offline: verify it, and ask it questions.
#[derive(Debug, Parser)]
#[command(name = "gatehouse-audit", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify the hash chain and seal of every recorded session, and the
    /// gateway's signed checkpoints.
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
    /// The gateway also writes signed checkpoints (with a seal key, every
    /// [store] checkpoint_interval and at shutdown): each lists the
    /// sessions active since the one before, with their event counts and
    /// chain heads, and is chained to the previous checkpoint. verify
    /// checks that chain (a gap in the numbers is a deleted checkpoint;
    /// with --pubkey, every checkpoint's signature) and holds every listed
    /// session against its latest listing: a session no longer in the
    /// store is `missing` (deleted session), one with fewer events is
    /// `truncated`, one whose event at the listed count does not hash to
    /// the listed head is `modified`. Sessions started after the last
    /// checkpoint are not covered yet.
    ///
    /// `gatehouse store prune` removes old sessions and first stores a
    /// signed prune record naming each. A listed session that is wholly
    /// absent is accepted when a prune record names it; with --pubkey the
    /// record's signature must verify (an unsigned, altered or undecodable
    /// record is a `prune record` break, and the sessions it names are
    /// `missing` again).
    ///
    /// Exit status: 0 when every chain (and seal) holds, 1 when any break
    /// is found, 2 when the store or the key cannot be read.
    #[command(verbatim_doc_comment)]
    Verify {
        /// Where the sessions are; --pubkey (the seal key's public half)
        /// also verifies every session's seal and checkpoint signature.
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        range: RangeArgs,
        /// Verify only this session (its id or a unique prefix of it).
        #[arg(long, value_name = "ID")]
        session: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sessions, filtered by who, what grant and target, why, from where
    /// and when.
    Sessions {
        #[command(flatten)]
        sessions: SessionArgs,
    },
    /// Statements the plan judged, by relation, kind, verdict and text:
    /// "who updated public.invoices last week", "what was denied",
    /// "what did approvals let through, and who approved it".
    Statements {
        #[command(flatten)]
        sessions: SessionArgs,
        /// A relation the statements read or wrote (`public.customers`; a
        /// bare name is in `public`).
        #[arg(long, value_name = "SCHEMA.NAME")]
        relation: Option<String>,
        /// Their kind (`select`, `update`, `create_table`, …); with
        /// --relation, the operation on that relation.
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// The plan's verdict.
        #[arg(long, value_parser = ["allow", "deny", "hold"])]
        decision: Option<String>,
        /// Text in the SQL (case-insensitive).
        #[arg(long, value_name = "TEXT")]
        text: Option<String>,
    },
    /// Masking hits, per session, rule and column: "which sessions were
    /// returned masked values from customers.email last week".
    Masked {
        #[command(flatten)]
        sessions: SessionArgs,
        /// Text in the column name (as the result named it).
        #[arg(long, value_name = "NAME")]
        column: Option<String>,
        /// Text in the rule (`column:ssn`, `detector:email`).
        #[arg(long, value_name = "RULE")]
        rule: Option<String>,
    },
}

/// The store, which sessions, and how to print.
#[derive(Debug, clap::Args)]
struct SessionArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The agent (grant `sub`).
    #[arg(long, value_name = "SUB")]
    subject: Option<String>,
    /// The grant's `jti`.
    #[arg(long, value_name = "JTI")]
    jti: Option<String>,
    /// The target.
    #[arg(long, value_name = "NAME")]
    target: Option<String>,
    /// Text in the grant's purpose.
    #[arg(long, value_name = "TEXT")]
    purpose: Option<String>,
    /// Text in the grant's ticket.
    #[arg(long, value_name = "TEXT")]
    ticket: Option<String>,
    /// The client's address or host.
    #[arg(long, value_name = "ADDR")]
    client: Option<String>,
    /// Sessions started at or after this: RFC 3339 (`2026-11-18T00:00:00Z`)
    /// or a time ago (`7d`, `12h`). With --gateway, also what is fetched.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<i64>,
    /// Sessions started before this (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<i64>,
    /// How to print: an aligned table, JSON lines, or CSV.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

impl SessionArgs {
    fn filter(&self) -> SessionFilter {
        SessionFilter {
            subject: self.subject.clone(),
            jti: self.jti.clone(),
            target: self.target.clone(),
            purpose: self.purpose.clone(),
            ticket: self.ticket.clone(),
            client: self.client.clone(),
            since_us: self.since,
            until_us: self.until,
        }
    }

    /// Opens the source; from a gateway, only the range the filter asks for.
    fn open(&self) -> Result<OpenStore> {
        open_source(
            &self.source,
            RangeArgs {
                since: self.since,
                until: self.until,
            },
        )
    }
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

/// Returns whether everything verified (queries: whether they ran).
fn run(cli: Cli) -> Result<bool> {
    let (source, range, session, json) = match cli.command {
        Command::Verify {
            source,
            range,
            session,
            json,
        } => (source, range, session, json),
        Command::Sessions { sessions } => {
            let reader = sessions.open()?;
            let rows: Vec<SessionRow> = query::sessions(&reader, &sessions.filter())?
                .iter()
                .map(SessionRow::from_summary)
                .collect();
            return print(
                sessions.format,
                query::SESSION_HEADER,
                &rows,
                query::session_cells,
            );
        }
        Command::Statements {
            sessions,
            relation,
            kind,
            decision,
            text,
        } => {
            let reader = sessions.open()?;
            let filter = StatementFilter {
                relation,
                kind,
                decision,
                text,
            };
            let rows = query::statements(&reader, &sessions.filter(), &filter)?;
            return print(
                sessions.format,
                query::STATEMENT_HEADER,
                &rows,
                query::statement_cells,
            );
        }
        Command::Masked {
            sessions,
            column,
            rule,
        } => {
            let reader = sessions.open()?;
            let rows = query::masked(
                &reader,
                &sessions.filter(),
                column.as_deref(),
                rule.as_deref(),
            )?;
            return print(
                sessions.format,
                query::MASK_HEADER,
                &rows,
                query::mask_cells,
            );
        }
    };
    let seal_key = source.pubkey.as_deref().map(load_pubkey).transpose()?;
    let seal_key = seal_key.as_ref();
    let reader = open_source(&source, range)?;
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
    let clean = report.is_clean();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        for b in &report.checkpoint_breaks {
            writeln!(out, "BREAK {b}")?;
        }
        for b in &report.prune_breaks {
            writeln!(out, "BREAK {b}")?;
        }
        for b in &report.breaks {
            writeln!(out, "BREAK {b}")?;
        }
        for w in &report.warnings {
            writeln!(out, "WARN {w}")?;
        }
        let sessions = plural(report.sessions, "session", "sessions");
        let events = plural(report.events, "event", "events");
        let (read, seals) = match (seal_key, report.checkpoints) {
            (Some(key), 0) => (
                format!("{sessions}, {events}"),
                format!(
                    ", seals checked with key {}; no checkpoints, so a deleted whole \
                     session would go unnoticed",
                    key.kid()
                ),
            ),
            (Some(key), n) => (
                format!(
                    "{sessions}, {events}, {}",
                    plural(n, "checkpoint", "checkpoints")
                ),
                format!(", seals checked with key {}", key.kid()),
            ),
            (None, 0) => (
                format!("{sessions}, {events}"),
                ", seals not checked (no --pubkey)".to_owned(),
            ),
            (None, n) => (
                format!(
                    "{sessions}, {events}, {}",
                    plural(n, "checkpoint", "checkpoints")
                ),
                ", seals and checkpoint signatures not checked (no --pubkey)".to_owned(),
            ),
        };
        let seals = match report.pruned {
            0 => seals,
            n => format!(
                "{seals}; {} removed by signed prune records",
                plural(n, "listed session", "listed sessions")
            ),
        };
        if clean {
            writeln!(out, "{read} verified{seals}")?;
        } else {
            let breaks = (report.breaks.len()
                + report.checkpoint_breaks.len()
                + report.prune_breaks.len()) as u64;
            let (chain, read) = if report.checkpoint_breaks.is_empty() {
                (String::new(), events)
            } else {
                (
                    " and in the checkpoint chain".to_owned(),
                    format!(
                        "{events}, {}",
                        plural(report.checkpoints, "checkpoint", "checkpoints")
                    ),
                )
            };
            writeln!(
                out,
                "{} in {} of {sessions}{chain} ({read} read): the record has been altered",
                plural(breaks, "break", "breaks"),
                report.broken_sessions(),
            )?;
        }
    }
    out.flush()?;
    Ok(clean)
}

fn print<T: serde::Serialize>(
    format: Format,
    header: &[&str],
    rows: &[T],
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<bool> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    query::write_rows(&mut out, format, header, rows, cells)?;
    out.flush()?;
    Ok(true)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    gatehouse_replay::text::plural(n, one, many)
}
