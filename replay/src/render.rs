//! A transcript as psql-like text.
//!
//! ```text
//! session 0193a5e2-…  agent:reconciler → orders   purpose: reconcile invoices, OPS-1234
//!   grant jti=…  client 127.0.0.1:51234  TLSv1.3  started 2026-11-25T18:40:01.123Z  duration 1.204s  closed: client terminated
//!
//! [+0.003s] SELECT id, total FROM invoices WHERE id = $1
//!           $1 = '42'
//!            id | total
//!           ----+-------
//!            42 | 10.00
//!           (1 row)   SELECT 1   1.2 ms
//! ```
//!
//! Every recorded string passes through [`sanitize`] first: a transcript
//! shows what an agent and a target sent, and that must not be able to
//! drive the auditor's terminal. NULL shows as an empty cell, as in psql;
//! the JSON form tells NULL from an empty string.
//!
//! Masked values: what the gateway masked is shown as the client received
//! it (masked), followed by [`MASKED_MARK`] — a row cell, a COPY line, an
//! error or notice field. A cell that a column rule turned into NULL shows
//! the mark alone. Each result's summary line counts its masked cells (or
//! lines), and the header sums up which rule hit which column how often:
//!
//! ```text
//! session 0193a5e2-…  agent:reconciler → orders   purpose: support ticket
//!   …
//!   masked: column:ssn in ssn ×1, detector:card_number in card ×1
//!
//! [+0.003s] select id, card, ssn, order_no from customers where id = 1
//!            id |       card        |      ssn      |     order_no
//!           ----+-------------------+---------------+------------------
//!             1 | ****1111 ⟨masked⟩ | **** ⟨masked⟩ | 4111111111111112
//!           (1 row; 2 cells masked)   SELECT 1   1.2 ms
//! ```
//!
//! The marks come from the recording's `Masked` events, not from the text:
//! a value that merely contains `⟨masked⟩` is not counted in the summary
//! lines, which are the authority.

mod http;

pub(crate) use http::exchange as exchange_lines;

use std::io::{self, Write};

use crate::text::{
    duration_us, ellipsize, grouped, offset_us, plural, rfc3339_us, sanitize, sanitize_copy_line,
    session_duration_us, width,
};
use crate::transcript::{
    Diagnostic, Entry, Header, Item, ItemKind, Request, ResultBlock, SessionStatus, Transcript,
    Value,
};

/// Columns before a statement's text: `[+0.003s] `.
const INDENT: usize = 10;

/// Follows (after a space) every value, COPY line and error field the
/// gateway masked; stands alone for a cell masked to NULL.
pub const MASKED_MARK: &str = "⟨masked⟩";

/// `text` with the masked mark when `masked`.
fn marked(text: String, masked: bool) -> String {
    match (masked, text.is_empty()) {
        (false, _) => text,
        (true, true) => MASKED_MARK.to_owned(),
        (true, false) => format!("{text} {MASKED_MARK}"),
    }
}

/// Writes `t` as text: [`render_header`], then [`render_item`] for each
/// item.
pub fn render(t: &Transcript, out: &mut dyn Write) -> io::Result<()> {
    render_header(&t.header, out)?;
    for item in &t.items {
        item_text(item, t.header.started_us, t.max_rows, out)?;
    }
    Ok(())
}

/// One item's text as [`render`] writes it, cut into the parts that
/// happened at different times — for an HTTP exchange: its request, its
/// response head, each body line when the piece completing it arrived,
/// each WebSocket message; any other item is one part — with the time of
/// each (microseconds since the Unix epoch, never earlier than the part
/// before). Joined, the parts are the item's text.
pub fn render_item_parts(t: &Transcript, item: &Item) -> Vec<(i64, Vec<u8>)> {
    let started = t.header.started_us;
    let ItemKind::Http(x) = &item.kind else {
        let mut buf = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = item_text(item, started, t.max_rows, &mut buf);
        return vec![(item.at_us, buf)];
    };
    let mut parts: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut at = item.at_us;
    let lines = http::exchange(x, item.at_us, started, t.max_rows);
    for (i, (when, line)) in lines.iter().enumerate() {
        at = at.max(*when);
        let mut buf = Vec::new();
        if i == 0 {
            let _ = writeln!(buf);
        }
        let mut w = Lines {
            out: &mut buf,
            first: (i == 0).then(|| offset_us(item.at_us.saturating_sub(started))),
            indent: item_indent(),
        };
        let _ = w.line(line);
        match parts.last_mut() {
            Some((last, text)) if *last == at => text.extend_from_slice(&buf),
            _ => parts.push((at, buf)),
        }
    }
    parts
}

fn item_indent() -> usize {
    INDENT.max(width(&offset_us(0)) + 1)
}

/// Writes the transcript header: who, what, when, how it ended.
pub fn render_header(h: &Header, out: &mut dyn Write) -> io::Result<()> {
    header(h, out)
}

/// Writes one item as [`render`] does — a blank line, then its lines, the
/// first after its offset from `started_us` (the session's start) — for
/// callers that show items one at a time (`play`, asciicast).
///
/// HTTP bodies show at most [`TranscriptOptions::DEFAULT_MAX_ROWS`] lines
/// here; [`render`] and [`render_item_parts`] follow the transcript's cap.
///
/// [`TranscriptOptions::DEFAULT_MAX_ROWS`]: crate::TranscriptOptions::DEFAULT_MAX_ROWS
pub fn render_item(item: &Item, started_us: i64, out: &mut dyn Write) -> io::Result<()> {
    let cap = Some(crate::TranscriptOptions::DEFAULT_MAX_ROWS);
    item_text(item, started_us, cap, out)
}

fn item_text(
    item: &Item,
    started_us: i64,
    max_rows: Option<usize>,
    out: &mut dyn Write,
) -> io::Result<()> {
    {
        writeln!(out)?;
        let at = offset_us(item.at_us.saturating_sub(started_us));
        let mut w = Lines {
            out: &mut *out,
            first: Some(at),
            indent: item_indent(),
        };
        match &item.kind {
            ItemKind::Http(x) => {
                for (_, line) in http::exchange(x, item.at_us, started_us, max_rows) {
                    w.line(&line)?;
                }
            }
            ItemKind::Statement(entry) => statement(&mut w, entry, item.at_us)?,
            ItemKind::Notification(n) => w.line(&format!(
                "notification on \"{}\": \"{}\" (from backend pid {})",
                sanitize(&n.channel, false),
                sanitize(&n.payload, false),
                n.pid
            ))?,
            ItemKind::Notice(d) | ItemKind::Error(d) => diagnostic(&mut w, d, None)?,
            ItemKind::Parameter { name, value } => w.line(&format!(
                "parameter {} = '{}'",
                sanitize(name, false),
                sanitize(value, false)
            ))?,
            ItemKind::Malformed { direction, detail } => w.line(&format!(
                "<malformed frame> {}: {}",
                direction.replace('_', " "),
                sanitize(detail, false)
            ))?,
            ItemKind::Denied { text, reason } => {
                w.line(&format!("denied by the plan: {}", sanitize(text, false)))?;
                w.line(&format!("  because {}", sanitize(reason, false)))?
            }
            ItemKind::Approval {
                id,
                state,
                approver,
                detail,
            } => {
                let by = if approver.is_empty() {
                    String::new()
                } else {
                    format!(" by {}", sanitize(approver, false))
                };
                w.line(&format!(
                    "approval {}: {state}{by}: {}",
                    sanitize(id, false),
                    sanitize(detail, false)
                ))?
            }
            ItemKind::Revoked { jti, by, reason } => w.line(&format!(
                "grant {} revoked by {}: {}",
                sanitize(jti, false),
                sanitize(by, false),
                sanitize(reason, false)
            ))?,
            ItemKind::Unreadable { detail } => {
                w.line(&format!("<unreadable event> {}", sanitize(detail, false)))?
            }
        }
    }
    Ok(())
}

/// [`render`] into a string.
pub fn render_to_string(t: &Transcript) -> String {
    let mut buf = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = render(t, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Writes the lines of one item: the first after its time offset, the
/// rest indented under it.
struct Lines<'a> {
    out: &'a mut dyn Write,
    first: Option<String>,
    indent: usize,
}

impl Lines<'_> {
    fn line(&mut self, text: &str) -> io::Result<()> {
        match self.first.take() {
            Some(prefix) => {
                // At least one space, even after a long offset (`[+3600.003s]`).
                let pad = self.indent.saturating_sub(width(&prefix)).max(1);
                write!(self.out, "{prefix}{:pad$}", "")?;
            }
            None => write!(self.out, "{:1$}", "", self.indent)?,
        }
        writeln!(self.out, "{}", text.trim_end())
    }

    /// Several lines of (already sanitized) text.
    fn text(&mut self, text: &str) -> io::Result<()> {
        for line in text.split('\n') {
            self.line(line)?;
        }
        Ok(())
    }
}

fn header(h: &Header, out: &mut dyn Write) -> io::Result<()> {
    let mut first = format!("session {}", h.session);
    let who = h.subject.as_deref().map(|s| sanitize(s, false));
    let target = h.target.as_deref().map(|s| sanitize(s, false));
    match (who, target) {
        (Some(who), Some(target)) => first.push_str(&format!("  {who} → {target}")),
        (Some(who), None) => first.push_str(&format!("  {who}")),
        (None, Some(target)) => first.push_str(&format!("  ? → {target}")),
        (None, None) => {}
    }
    if let Some(purpose) = &h.purpose {
        first.push_str(&format!("   purpose: {}", sanitize(purpose, false)));
        if let Some(ticket) = &h.ticket {
            first.push_str(&format!(", {}", sanitize(ticket, false)));
        }
    }
    writeln!(out, "{first}")?;

    let mut parts = Vec::new();
    if let Some(jti) = &h.jti {
        parts.push(format!("grant jti={}", sanitize(jti, false)));
    }
    if let Some(n) = h.use_number {
        parts.push(match h.max_uses {
            Some(max) => format!("use {n}/{max}"),
            None => format!("use {n}"),
        });
    }
    if let Some(addr) = &h.client_addr {
        parts.push(format!("client {}", sanitize(addr, false)));
    }
    match &h.tls {
        Some(tls) if tls.direct => {
            parts.push(format!("{} (direct)", sanitize(&tls.version, false)))
        }
        Some(tls) => parts.push(sanitize(&tls.version, false)),
        // Only an opened session records its TLS state.
        None if h.use_number.is_some() => parts.push("no TLS".into()),
        None => {}
    }
    parts.push(format!("started {}", rfc3339_us(h.started_us)));
    parts.push(format!("duration {}", session_duration_us(h.duration_us)));
    parts.push(h.status.describe());
    writeln!(out, "  {}", parts.join("  "))?;

    let mut client = Vec::new();
    if let Some(user) = &h.client_user {
        client.push(format!("user {}", sanitize(user, false)));
    }
    if let Some(app) = &h.application_name {
        client.push(format!("application {}", sanitize(app, false)));
    }
    if !client.is_empty() {
        writeln!(out, "  {}", client.join("  "))?;
    }
    if let SessionStatus::Refused { message, .. } = &h.status {
        writeln!(out, "  the client was told: {}", sanitize(message, false))?;
    }
    if !h.masked.is_empty() {
        let totals: Vec<String> = h
            .masked
            .iter()
            .map(|t| {
                format!(
                    "{} in {} ×{}",
                    sanitize(&t.rule, false),
                    sanitize(&t.column, false),
                    grouped(t.count)
                )
            })
            .collect();
        writeln!(out, "  masked: {}", totals.join(", "))?;
    }
    if h.denied > 0 || h.held > 0 {
        writeln!(
            out,
            "  plan: {} denied, {} held for approval",
            grouped(h.denied),
            grouped(h.held)
        )?;
    }
    Ok(())
}

fn statement(w: &mut Lines<'_>, e: &Entry, at_us: i64) -> io::Result<()> {
    match &e.request {
        Request::Simple { text } => w.text(&sanitize(text, true))?,
        Request::Extended {
            text,
            statement,
            portal,
            params,
            max_rows,
            continued,
        } => {
            match text {
                Some(text) => w.text(&sanitize(text, true))?,
                None => w.line(&format!(
                    "<statement {} not recorded>",
                    name_or_unnamed(statement)
                ))?,
            }
            let mut notes = Vec::new();
            if !statement.is_empty() {
                notes.push(format!("statement \"{}\"", sanitize(statement, false)));
            }
            if !portal.is_empty() {
                notes.push(format!("portal \"{}\"", sanitize(portal, false)));
            }
            if *max_rows > 0 {
                notes.push(format!("fetch {max_rows}"));
            }
            if *continued {
                notes.push("continued".into());
            }
            if !notes.is_empty() {
                w.line(&format!("({})", notes.join(", ")))?;
            }
            for (i, p) in params.iter().enumerate() {
                w.line(&format!("${} = {}", i + 1, sanitize(&p.literal(), false)))?;
            }
        }
        Request::Prepare { text, statement } => {
            match text {
                Some(text) => w.text(&sanitize(text, true))?,
                None => w.line(&format!(
                    "<statement {} not recorded>",
                    name_or_unnamed(statement)
                ))?,
            }
            w.line(&format!("(prepare {})", name_or_unnamed(statement)))?;
        }
        Request::FunctionCall => w.line("<function call>")?,
    }
    if e.skipped {
        w.line("(skipped: an earlier message in its pipeline failed)")?;
    }
    let mut since = at_us;
    for block in &e.results {
        result(w, block, since)?;
        if let Some(done) = block.done_us {
            since = done;
        }
    }
    for (name, value) in &e.parameters {
        w.line(&format!(
            "parameter {} = '{}'",
            sanitize(name, false),
            sanitize(value, false)
        ))?;
    }
    if e.results.is_empty() && !e.skipped {
        match e.duration_us {
            Some(d) => w.line(&format!("(no result)   {}", duration_us(d)))?,
            None => w.line("(no response recorded)")?,
        }
    }
    Ok(())
}

fn name_or_unnamed(name: &str) -> String {
    if name.is_empty() {
        "(unnamed)".into()
    } else {
        format!("\"{}\"", sanitize(name, false))
    }
}

fn result(w: &mut Lines<'_>, b: &ResultBlock, since: i64) -> io::Result<()> {
    for notice in &b.notices {
        diagnostic(w, notice, None)?;
    }
    if !b.columns.is_empty() || !b.rows.is_empty() {
        table(w, b)?;
    }
    let mut parts = Vec::new();
    if let Some(copy) = &b.copy {
        w.line(&format!("COPY {}, {} format", copy.direction, copy.format))?;
        for (i, line) in copy.lines.iter().enumerate() {
            let masked = copy.masked_lines.contains(&i);
            w.line(&marked(sanitize_copy_line(line), masked))?;
        }
        let more = copy.lines_received.saturating_sub(copy.lines.len() as u64);
        if more > 0 {
            w.line(&format!(
                "… {} more (--all-rows shows them)",
                plural(more, "line", "lines")
            ))?;
        }
        let unit = if copy.format == "binary" {
            ("message", "messages")
        } else {
            ("line", "lines")
        };
        let masked = if copy.lines_masked > 0 {
            format!("; {} masked", grouped(copy.lines_masked))
        } else {
            String::new()
        };
        parts.push(format!(
            "({}, {}{masked})",
            plural(copy.lines_received, unit.0, unit.1),
            crate::text::bytes(copy.bytes)
        ));
        if let Some(msg) = &copy.failed {
            parts.push(format!("client aborted the COPY: {}", sanitize(msg, false)));
        }
    }
    let time = b.done_us.map(|done| duration_us(done - since));
    if let Some(err) = &b.error {
        if !parts.is_empty() {
            w.line(&parts.join("   "))?;
        }
        diagnostic(w, err, time.as_deref())?;
    } else {
        parts.extend(summary_notes(b).into_iter().map(|note| match note {
            SummaryNote::Note(text) => format!("({text})"),
            SummaryNote::Tag(tag) => sanitize(tag, false),
        }));
        parts.extend(time);
        w.line(&parts.join("   "))?;
    }
    for n in &b.notifications {
        w.line(&format!(
            "notification on \"{}\": \"{}\" (from backend pid {})",
            sanitize(&n.channel, false),
            sanitize(&n.payload, false),
            n.pid
        ))?;
    }
    Ok(())
}

/// One part of a result's summary line, before its timing; each view
/// (text, HTML) decorates it its own way.
pub(crate) enum SummaryNote<'a> {
    /// Plain words: rows (and masked cells), empty query, suspended portal,
    /// no completion recorded.
    Note(String),
    /// The command tag, as the target sent it (not sanitized yet).
    Tag(&'a str),
}

/// What a result's summary line says, in order.
pub(crate) fn summary_notes(b: &ResultBlock) -> Vec<SummaryNote<'_>> {
    let mut notes = Vec::new();
    if !b.columns.is_empty() || b.rows_received > 0 {
        let masked = if b.masked_cells > 0 {
            format!("; {} masked", plural(b.masked_cells, "cell", "cells"))
        } else {
            String::new()
        };
        notes.push(SummaryNote::Note(format!(
            "{}{masked}",
            plural(b.rows_received, "row", "rows")
        )));
    }
    if b.empty_query {
        notes.push(SummaryNote::Note("empty query".into()));
    }
    if b.suspended {
        notes.push(SummaryNote::Note(
            "portal suspended: more rows to fetch".into(),
        ));
    }
    if let Some(tag) = &b.tag {
        notes.push(SummaryNote::Tag(tag));
    }
    if b.done_us.is_none() {
        notes.push(SummaryNote::Note("no completion recorded".into()));
    }
    notes
}

fn diagnostic(w: &mut Lines<'_>, d: &Diagnostic, time: Option<&str>) -> io::Result<()> {
    let is_masked = |field: &str| d.masked.contains(&field);
    let mut first = format!(
        "{} {}: {}",
        sanitize(&d.severity, false),
        sanitize(&d.code, false),
        marked(sanitize(&d.message, false), is_masked("message"))
    );
    if let Some(time) = time {
        first.push_str("   ");
        first.push_str(time);
    }
    w.line(&first)?;
    for (label, field, value) in [
        ("DETAIL", "detail", &d.detail),
        ("HINT", "hint", &d.hint),
        ("CONTEXT", "context", &d.context),
    ] {
        if let Some(value) = value {
            let value = marked(sanitize(value, true), is_masked(field));
            w.text(&format!("{label}:  {value}"))?;
        }
    }
    if let Some(pos) = &d.position {
        w.line(&format!("(at character {})", sanitize(pos, false)))?;
    }
    Ok(())
}

/// Type OIDs psql right-aligns.
fn is_numeric(type_oid: u32) -> bool {
    matches!(type_oid, 20 | 21 | 23 | 26 | 700 | 701 | 790 | 1700)
}

fn table(w: &mut Lines<'_>, b: &ResultBlock) -> io::Result<()> {
    let ncols = b
        .columns
        .len()
        .max(b.rows.iter().map(Vec::len).max().unwrap_or(0));
    let names: Vec<String> = (0..ncols)
        .map(|i| {
            b.columns.get(i).map_or_else(
                || format!("?column{}?", i + 1),
                |c| sanitize(&c.name, false),
            )
        })
        .collect();
    let right: Vec<bool> = (0..ncols)
        .map(|i| {
            b.columns
                .get(i)
                .is_some_and(|c| c.format == 0 && is_numeric(c.type_oid))
        })
        .collect();
    let cells: Vec<Vec<String>> = b
        .rows
        .iter()
        .map(|row| {
            (0..ncols)
                .map(|i| row.get(i).map_or(String::new(), cell))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = names.iter().map(|n| width(n)).collect();
    for row in &cells {
        for (wd, c) in widths.iter_mut().zip(row) {
            *wd = (*wd).max(width(c));
        }
    }
    let header: Vec<String> = names
        .iter()
        .zip(&widths)
        .map(|(n, wd)| {
            let space = wd - width(n);
            let left = space / 2;
            format!("{:left$}{n}{:right$}", "", "", right = space - left)
        })
        .collect();
    w.line(&format!(" {} ", header.join(" | ")))?;
    let rule: Vec<String> = widths.iter().map(|wd| "-".repeat(wd + 2)).collect();
    w.line(&rule.join("+"))?;
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(&right)
            .map(|((c, wd), right)| {
                let pad = wd - width(c);
                if *right {
                    format!("{:pad$}{c}", "")
                } else {
                    format!("{c}{:pad$}", "")
                }
            })
            .collect();
        w.line(&format!(" {} ", line.join(" | ")))?;
    }
    let more = b.rows_received.saturating_sub(b.rows.len() as u64);
    if more > 0 {
        w.line(&format!(
            "… {} more {} (--all-rows shows them)",
            grouped(more),
            if more == 1 { "row" } else { "rows" }
        ))?;
    }
    Ok(())
}

fn cell(v: &Value) -> String {
    marked(ellipsize(&sanitize(v.cell(), false), 10_000), v.is_masked())
}
