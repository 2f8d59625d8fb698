//! Auditors' questions over a store: which sessions, which statements
//! (by relation, kind, verdict, text), which masked values.
//!
//! Sessions are filtered on their stored summaries (no events read);
//! statements and masking hits are read from the events of the sessions
//! that pass.
//!
//! Where a filter has a secondary index in the store
//! ([`Reader::sessions_by`], [`Reader::statements_by`]), the candidates
//! come from the index and only they are read: sessions by `jti`, subject
//! or target (with the time range), statements by relation or kind. Every
//! candidate is re-checked with the same filters as the scan, so answers
//! are identical (same rows, same order); [`sessions_scan`] and
//! [`statements_scan`] are the scans, kept for the other filters and to
//! prove it. Text filters (purpose, ticket, client, SQL), the verdict and
//! masking hits have no index: they are checked on what the index (or the
//! scan) selected.

use std::io::{self, Write};

use anyhow::{Context as _, Result};
use gatehouse_core::event::{Body, Decision, SessionId, StatementProtocol, Verdict};
use gatehouse_store::{Reader, SessionIndex, SessionSummary, StatementIndex};
use serde::Serialize;

use crate::list::SessionRow;
use crate::text::{ellipsize, rfc3339_us, sanitize, width};

/// Which sessions a question is about. Empty fields match everything; text
/// fields match a substring, case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    /// The agent (grant `sub`), exactly.
    pub subject: Option<String>,
    /// The grant's `jti`, exactly.
    pub jti: Option<String>,
    /// The target, exactly.
    pub target: Option<String>,
    /// Text in the grant's purpose.
    pub purpose: Option<String>,
    /// Text in the grant's ticket.
    pub ticket: Option<String>,
    /// The client address, or its host part (`10.0.0.7`).
    pub client: Option<String>,
    /// Sessions that started at or after this (µs since the Unix epoch).
    pub since_us: Option<i64>,
    /// Sessions that started before this.
    pub until_us: Option<i64>,
}

fn contains(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

impl SessionFilter {
    /// Whether the session `s` is one the question is about.
    pub fn matches(&self, s: &SessionSummary) -> bool {
        let opened = s.opened.as_ref();
        let refused = s.refused.as_ref();
        let subject = opened
            .map(|o| o.subject.as_str())
            .or_else(|| refused.and_then(|r| r.subject.as_deref()));
        let jti = opened
            .map(|o| o.jti.as_str())
            .or_else(|| refused.and_then(|r| r.jti.as_deref()));
        let target = opened
            .map(|o| o.target.as_str())
            .or_else(|| refused.map(|r| r.target.as_str()));
        let client = opened
            .map(|o| o.client_addr.as_str())
            .or_else(|| refused.map(|r| r.client_addr.as_str()));
        let exact = |want: &Option<String>, have: Option<&str>| {
            want.as_ref().is_none_or(|w| have == Some(w.as_str()))
        };
        exact(&self.subject, subject)
            && exact(&self.jti, jti)
            && exact(&self.target, target)
            && self
                .purpose
                .as_ref()
                .is_none_or(|p| opened.is_some_and(|o| contains(&o.purpose, p)))
            && self.ticket.as_ref().is_none_or(|t| {
                opened.is_some_and(|o| o.ticket.as_deref().is_some_and(|have| contains(have, t)))
            })
            && self.client.as_ref().is_none_or(|c| {
                client.is_some_and(|have| {
                    have == c || have.rsplit_once(':').is_some_and(|(host, _)| host == c)
                })
            })
            && self.since_us.is_none_or(|t| s.started_us >= t)
            && self.until_us.is_none_or(|t| s.started_us < t)
    }
}

/// Which statements: by what they touched, their kind, the plan's verdict
/// and their text. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct StatementFilter {
    /// A relation they read or wrote (`public.customers`; a bare name is
    /// in `public`).
    pub relation: Option<String>,
    /// Their kind (`select`, `update`, `delete`, `create_table`, …) or an
    /// operation on the relation (`--kind update --relation
    /// public.invoices`: updates of that relation).
    pub kind: Option<String>,
    /// The verdict: `allow`, `deny` or `hold`.
    pub decision: Option<String>,
    /// Text in the SQL, case-insensitively.
    pub text: Option<String>,
}

/// One statement the plan judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatementRow {
    /// The session.
    pub session: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The agent.
    pub subject: String,
    /// The target.
    pub target: String,
    /// The grant's `jti`.
    pub jti: String,
    /// `allow`, `deny` or `hold`.
    pub decision: &'static str,
    /// `simple`, `extended`, or `http` (an HTTP or Kubernetes request).
    pub protocol: &'static str,
    /// The statements' kinds.
    pub kinds: Vec<String>,
    /// What they touched (`update on public.invoices`).
    pub accesses: Vec<String>,
    /// The SQL; for an HTTP request, the operation the plan saw
    /// (`GET /v1/invoices`, `list pods in billing`).
    pub text: String,
    /// Why, for a denial or hold; the approver's reason for a decision.
    pub reason: String,
    /// The approval, if any.
    pub approval: String,
    /// Who decided it.
    pub approver: String,
}

/// How often one masking rule hit one column in one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskRow {
    /// The session.
    pub session: String,
    /// Its start, RFC 3339 UTC.
    pub started: String,
    /// The agent.
    pub subject: String,
    /// The target.
    pub target: String,
    /// The rule (`column:ssn`, `detector:email`).
    pub rule: String,
    /// The column, as the result named it.
    pub column: String,
    /// Values masked.
    pub count: u64,
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
        Decision::Hold => "hold",
    }
}

/// `schema.name` for a relation as an auditor types it.
fn qualified(relation: &str) -> String {
    if relation.contains('.') {
        relation.to_owned()
    } else {
        format!("public.{relation}")
    }
}

impl StatementFilter {
    fn matches(&self, row: &StatementRow) -> bool {
        let relation = self.relation.as_deref().map(qualified);
        let touches = |op: Option<&str>| -> bool {
            row.accesses.iter().any(|a| {
                let (what, on) = a.split_once(" on ").unwrap_or((a.as_str(), ""));
                relation.as_deref().is_none_or(|r| on == r) && op.is_none_or(|op| what == op)
            })
        };
        let kind_ok = match (&self.kind, &relation) {
            (None, None) => true,
            (None, Some(_)) => touches(None),
            // With a relation, the kind is the operation on it.
            (Some(k), Some(_)) => touches(Some(k)),
            (Some(k), None) => row.kinds.iter().any(|have| have == k) || touches(Some(k)),
        };
        kind_ok
            && self.decision.as_ref().is_none_or(|d| row.decision == d)
            && self.text.as_ref().is_none_or(|t| contains(&row.text, t))
    }
}

/// The sessions `filter` selects, in start order: through an index when
/// the filter names a `jti`, subject or target, otherwise a scan.
pub fn sessions(reader: &Reader, filter: &SessionFilter) -> Result<Vec<SessionSummary>> {
    let (index, value) = match (&filter.jti, &filter.subject, &filter.target) {
        (Some(j), ..) => (SessionIndex::Jti, j),
        (None, Some(s), _) => (SessionIndex::Subject, s),
        (None, None, Some(t)) => (SessionIndex::Target, t),
        (None, None, None) => return sessions_scan(reader, filter),
    };
    let mut ids = reader
        .sessions_by(index, value, filter.since_us, filter.until_us)
        .context("cannot read the session index")?;
    // Session id order is the scan's order (and start order).
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let Some(s) = reader
            .session(id)
            .with_context(|| format!("cannot read session {id}"))?
        else {
            continue;
        };
        if filter.matches(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// [`sessions`] without an index: every summary is read.
pub fn sessions_scan(reader: &Reader, filter: &SessionFilter) -> Result<Vec<SessionSummary>> {
    let mut out = Vec::new();
    for s in reader.sessions() {
        let s = s.context("cannot read a session summary")?;
        if filter.matches(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The judged statements of the sessions `sessions` selects that
/// `statements` matches, in session then time order: through the relation
/// or kind index when `statements` names one (reading only the candidate
/// verdicts, and for an allowed simple query the `Statement` before it),
/// otherwise by reading the selected sessions' events.
pub fn statements(
    reader: &Reader,
    sessions: &SessionFilter,
    statements: &StatementFilter,
) -> Result<Vec<StatementRow>> {
    let (index, value) = match (&statements.relation, &statements.kind) {
        (Some(r), _) => (StatementIndex::Relation, qualified(r)),
        (None, Some(k)) => (StatementIndex::Kind, k.clone()),
        (None, None) => {
            return statements_of(reader, self::sessions(reader, sessions)?, statements);
        }
    };
    let mut found = reader
        .statements_by(index, &value, sessions.since_us, sessions.until_us)
        .context("cannot read the statement index")?;
    found.sort_unstable();
    found.dedup();
    let mut rows = Vec::new();
    let mut current: Option<(SessionId, Option<SessionSummary>)> = None;
    for (id, seq) in found {
        if !matches!(&current, Some((have, _)) if *have == id) {
            let s = reader
                .session(id)
                .with_context(|| format!("cannot read session {id}"))?
                .filter(|s| sessions.matches(s));
            current = Some((id, s));
        }
        let Some((_, Some(s))) = &current else {
            continue;
        };
        let context = || format!("cannot read session {id}");
        let Some(event) = reader.event(id, seq).with_context(context)? else {
            continue;
        };
        let Body::Verdict(v) = event.body else {
            continue;
        };
        let text = if v.text.is_empty() && v.protocol == StatementProtocol::Simple {
            text_before(reader, id, seq).with_context(context)?
        } else {
            String::new()
        };
        let row = statement_row(s, event.at_us, v, text);
        if statements.matches(&row) {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The text an allowed simple query's verdict at `seq` takes from the
/// events before it, as the scan reads it: the latest `Statement`, unless
/// another such verdict took it first.
fn text_before(reader: &Reader, id: SessionId, seq: u64) -> Result<String> {
    for event in reader.events_in(id, 0..seq).rev() {
        match event?.body {
            Body::Statement(st) => return Ok(st.text),
            Body::Verdict(v) if v.text.is_empty() && v.protocol == StatementProtocol::Simple => {
                return Ok(String::new());
            }
            _ => {}
        }
    }
    Ok(String::new())
}

/// A statement row of session `s`; `taken` is the text an empty verdict
/// text stands for.
fn statement_row(s: &SessionSummary, at_us: i64, v: Verdict, taken: String) -> StatementRow {
    let opened = s.opened.as_ref();
    let text = if v.text.is_empty() && v.protocol == StatementProtocol::Simple {
        taken
    } else {
        v.text
    };
    StatementRow {
        session: s.id.to_string(),
        at: rfc3339_us(at_us),
        subject: opened.map(|o| o.subject.clone()).unwrap_or_default(),
        target: opened.map(|o| o.target.clone()).unwrap_or_default(),
        jti: opened.map(|o| o.jti.clone()).unwrap_or_default(),
        decision: decision_name(v.decision),
        protocol: match v.protocol {
            StatementProtocol::Simple => "simple",
            StatementProtocol::Extended => "extended",
            StatementProtocol::Http => "http",
        },
        kinds: v.kinds,
        accesses: v.accesses,
        text,
        reason: v.reason,
        approval: v.approval,
        approver: v.approver,
    }
}

/// [`statements`] without any index: every session's summary is read,
/// and every selected session's events.
pub fn statements_scan(
    reader: &Reader,
    sessions: &SessionFilter,
    statements: &StatementFilter,
) -> Result<Vec<StatementRow>> {
    statements_of(reader, sessions_scan(reader, sessions)?, statements)
}

/// The statements of `selected` that `statements` matches, from their
/// events.
fn statements_of(
    reader: &Reader,
    selected: Vec<SessionSummary>,
    statements: &StatementFilter,
) -> Result<Vec<StatementRow>> {
    let mut rows = Vec::new();
    for s in selected {
        let mut last_text = String::new();
        for event in reader.events(s.id) {
            let event = event.with_context(|| format!("cannot read session {}", s.id))?;
            match event.body {
                Body::Statement(st) => last_text = st.text,
                Body::Verdict(v) => {
                    // An allowed simple query's text is in the Statement
                    // event just before its verdict.
                    let taken = if v.text.is_empty() && v.protocol == StatementProtocol::Simple {
                        std::mem::take(&mut last_text)
                    } else {
                        String::new()
                    };
                    let row = statement_row(&s, event.at_us, v, taken);
                    if statements.matches(&row) {
                        rows.push(row);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(rows)
}

/// Masking hits of the sessions `sessions` selects, summed per session,
/// rule and column; `column` and `rule` match substrings.
pub fn masked(
    reader: &Reader,
    sessions: &SessionFilter,
    column: Option<&str>,
    rule: Option<&str>,
) -> Result<Vec<MaskRow>> {
    let mut rows: Vec<MaskRow> = Vec::new();
    for s in self::sessions(reader, sessions)? {
        let opened = s.opened.as_ref();
        let first = rows.len();
        for event in reader.events(s.id) {
            let event = event.with_context(|| format!("cannot read session {}", s.id))?;
            let Body::Masked(m) = event.body else {
                continue;
            };
            for hit in m.hits {
                if column.is_some_and(|c| !contains(&hit.column, c))
                    || rule.is_some_and(|r| !contains(&hit.rule, r))
                {
                    continue;
                }
                let existing = rows.get_mut(first..).and_then(|mine| {
                    mine.iter_mut()
                        .find(|r| r.rule == hit.rule && r.column == hit.column)
                });
                match existing {
                    Some(r) => r.count += u64::from(hit.count),
                    None => rows.push(MaskRow {
                        session: s.id.to_string(),
                        started: rfc3339_us(s.started_us),
                        subject: opened.map(|o| o.subject.clone()).unwrap_or_default(),
                        target: opened.map(|o| o.target.clone()).unwrap_or_default(),
                        rule: hit.rule,
                        column: hit.column,
                        count: u64::from(hit.count),
                    }),
                }
            }
        }
    }
    Ok(rows)
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table for people.
    Table,
    /// One JSON object per line.
    Json,
    /// CSV with a header row.
    Csv,
}

/// Writes `rows` (each as its column values, and as JSON) in `format`.
pub fn write_rows<T: Serialize>(
    out: &mut dyn Write,
    format: Format,
    header: &[&str],
    rows: &[T],
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<()> {
    match format {
        Format::Json => {
            for row in rows {
                serde_json::to_writer(&mut *out, row)?;
                writeln!(out)?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record(header)?;
            for row in rows {
                w.write_record(cells(row))?;
            }
            w.flush()?;
        }
        Format::Table => table(out, header, rows.iter().map(cells).collect())?,
    }
    Ok(())
}

/// Cells wider than this are cut in tables.
const CELL_MAX: usize = 60;

fn table(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| {
            r.iter()
                .map(|c| ellipsize(&sanitize(c, false), CELL_MAX))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(width(c));
        }
    }
    let line = |out: &mut dyn Write, cells: &[String]| -> io::Result<()> {
        let mut first = true;
        for (c, w) in cells.iter().zip(&widths) {
            if !first {
                write!(out, "  ")?;
            }
            first = false;
            write!(out, "{c}{:pad$}", "", pad = w.saturating_sub(width(c)))?;
        }
        writeln!(out)
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    line(out, &header)?;
    for r in &rows {
        line(out, r)?;
    }
    if rows.is_empty() {
        writeln!(out, "(none)")?;
    }
    Ok(())
}

/// The cells of a session row, for tables and CSV.
pub fn session_cells(r: &SessionRow) -> Vec<String> {
    vec![
        r.id.clone(),
        r.started.clone(),
        r.subject.clone().unwrap_or_default(),
        r.target.clone().unwrap_or_default(),
        r.jti.clone().unwrap_or_default(),
        r.purpose.clone().unwrap_or_default(),
        r.ticket.clone().unwrap_or_default(),
        r.statements.to_string(),
        r.status.describe(),
    ]
}

/// The header of [`session_cells`].
pub const SESSION_HEADER: &[&str] = &[
    "session",
    "started",
    "subject",
    "target",
    "jti",
    "purpose",
    "ticket",
    "statements",
    "status",
];

/// The cells of a statement row.
pub fn statement_cells(r: &StatementRow) -> Vec<String> {
    vec![
        r.at.clone(),
        r.session.clone(),
        r.subject.clone(),
        r.decision.to_owned(),
        r.kinds.join(","),
        r.accesses.join("; "),
        r.text.clone(),
        r.reason.clone(),
        r.approver.clone(),
    ]
}

/// The header of [`statement_cells`].
pub const STATEMENT_HEADER: &[&str] = &[
    "at", "session", "subject", "verdict", "kind", "touches", "sql", "reason", "approver",
];

/// The cells of a masking row.
pub fn mask_cells(r: &MaskRow) -> Vec<String> {
    vec![
        r.session.clone(),
        r.started.clone(),
        r.subject.clone(),
        r.target.clone(),
        r.rule.clone(),
        r.column.clone(),
        r.count.to_string(),
    ]
}

/// The header of [`mask_cells`].
pub const MASK_HEADER: &[&str] = &[
    "session", "started", "subject", "target", "rule", "column", "count",
];
