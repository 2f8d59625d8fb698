//! The session list: one row per session, from the store's summaries
//! (no events are read).

use std::io::{self, Write};

use gatehouse_store::SessionSummary;
use serde::Serialize;

use crate::text::{bytes, ellipsize, grouped, rfc3339_us, sanitize, session_duration_us, width};
use crate::transcript::{SessionStatus, status_of};

/// One session in the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionRow {
    /// The session id.
    pub id: String,
    /// The agent (grant `sub`), if known.
    pub subject: Option<String>,
    /// The target.
    pub target: Option<String>,
    /// The grant's purpose.
    pub purpose: Option<String>,
    /// The grant's ticket.
    pub ticket: Option<String>,
    /// The grant's `jti`.
    pub jti: Option<String>,
    /// The first event, RFC 3339 UTC.
    pub started: String,
    /// The first event, microseconds since the Unix epoch.
    pub started_us: i64,
    /// The `Closed` event's duration, else first to last event.
    pub duration_us: i64,
    /// Statements recorded.
    pub statements: u64,
    /// Events recorded.
    pub events: u64,
    /// Frame bytes forwarded to the target.
    pub bytes_to_upstream: u64,
    /// Frame bytes sent to the client.
    pub bytes_to_client: u64,
    /// How it ended.
    pub status: SessionStatus,
}

impl SessionRow {
    /// The row for a stored summary.
    pub fn from_summary(s: &SessionSummary) -> Self {
        let opened = s.opened.as_ref();
        let refused = s.refused.as_ref();
        let duration_us = match &s.closed {
            Some(c) => i64::try_from(c.duration_us).unwrap_or(i64::MAX),
            None => s.last_event_us.saturating_sub(s.started_us),
        };
        SessionRow {
            id: s.id.to_string(),
            subject: opened
                .map(|o| o.subject.clone())
                .or_else(|| refused.and_then(|r| r.subject.clone())),
            target: opened
                .map(|o| o.target.clone())
                .or_else(|| refused.map(|r| r.target.clone())),
            purpose: opened.map(|o| o.purpose.clone()),
            ticket: opened.and_then(|o| o.ticket.clone()),
            jti: opened
                .map(|o| o.jti.clone())
                .or_else(|| refused.and_then(|r| r.jti.clone())),
            started: rfc3339_us(s.started_us),
            started_us: s.started_us,
            duration_us,
            statements: s.statements,
            events: s.events,
            bytes_to_upstream: s.bytes_to_upstream,
            bytes_to_client: s.bytes_to_client,
            status: status_of(refused, s.closed.as_ref()),
        }
    }
}

/// Widest purpose shown in the table; JSON has all of it.
const PURPOSE_WIDTH: usize = 40;

/// Writes `rows` as an aligned table.
pub fn render(rows: &[SessionRow], out: &mut dyn Write) -> io::Result<()> {
    const HEAD: [&str; 9] = [
        "SESSION",
        "SUBJECT",
        "TARGET",
        "PURPOSE",
        "STARTED",
        "DURATION",
        "STMTS",
        "BYTES UP/DOWN",
        "STATUS",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let purpose = match (&r.purpose, &r.ticket) {
                (Some(p), Some(t)) => format!("{p}, {t}"),
                (Some(p), None) => p.clone(),
                (None, _) => "-".into(),
            };
            [
                r.id.clone(),
                opt(&r.subject),
                opt(&r.target),
                ellipsize(&sanitize(&purpose, false), PURPOSE_WIDTH),
                r.started.clone(),
                session_duration_us(r.duration_us),
                grouped(r.statements),
                format!(
                    "{} / {}",
                    bytes(r.bytes_to_upstream),
                    bytes(r.bytes_to_client)
                ),
                r.status.describe(),
            ]
        })
        .collect();
    let mut widths = HEAD.map(width);
    for row in &cells {
        for (wd, c) in widths.iter_mut().zip(row) {
            *wd = (*wd).max(width(c));
        }
    }
    let line = |row: &[String]| {
        let mut s = String::new();
        for (i, (c, wd)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            // Counts are right-aligned.
            if i == 6 {
                s.push_str(&format!("{c:>wd$}"));
            } else {
                s.push_str(&format!("{c:<wd$}"));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&HEAD.map(str::to_owned)))?;
    for row in &cells {
        writeln!(out, "{}", line(row))?;
    }
    writeln!(
        out,
        "({})",
        crate::text::plural(rows.len() as u64, "session", "sessions")
    )
}

fn opt(s: &Option<String>) -> String {
    s.as_deref()
        .map_or_else(|| "-".into(), |s| sanitize(s, false))
}
