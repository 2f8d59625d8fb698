//! The HTML export: one self-contained page an auditor opens in a browser.
//!
//! Inline CSS, no scripts, no external resources (a Content-Security-Policy
//! meta tag forbids them, should anything slip through). The header holds
//! the session's metadata; then each item in order with its offset:
//! statements with their parameters and results as tables, masked cells
//! marked (class `masked`, `⟨masked⟩`), errors, denials, approvals and
//! revocations highlighted, and each statement's timing.
//!
//! Everything recorded came from an agent or a database, so every string
//! passes [`sanitize`](crate::text::sanitize) (control and bidi characters
//! made visible) and then [`escape`] before it is written.

use std::io::{self, Write};

use super::offset_of;
use crate::render::{MASKED_MARK, SummaryNote, summary_notes};
use crate::text::{
    duration_us, grouped, offset_us, plural, rfc3339_us, sanitize, sanitize_copy_line,
    session_duration_us,
};
use crate::transcript::{
    Diagnostic, Entry, Header, ItemKind, Request, ResultBlock, SessionStatus, Transcript, Value,
};

/// Escapes `s` for HTML text and attribute values: `&`, `<`, `>`, `"`, `'`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Recorded text, one line: sanitized, then escaped.
fn esc(s: &str) -> String {
    escape(&sanitize(s, false))
}

/// Recorded text that may span lines (SQL, DETAIL): sanitized, then escaped.
fn esc_lines(s: &str) -> String {
    escape(&sanitize(s, true))
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:1em 2em}
header h1{margin:0 0 .5em 0;font-size:1.3em}
header dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em;margin:0}
header dt{color:#aab3c5}
header dd{margin:0}
main{padding:1em 2em}
section.item{background:#fff;border:1px solid #d8dce3;border-left:6px solid #8a94a6;border-radius:4px;margin:0 0 1em 0;padding:.6em 1em}
section.denied,section.error,section.revoked,section.unreadable,section.malformed{border-left-color:#c62828;background:#fff5f5}
section.approval{border-left-color:#ef8f00;background:#fffaf0}
section.approval.approved{border-left-color:#2e7d32;background:#f4fbf4}
section.statement.failed,section.http.failed{border-left-color:#c62828}
section.statement.failed .badge,section.http.failed .badge{background:#c62828}
.when{color:#5b6475;font-size:.85em;margin-bottom:.3em}
.badge{display:inline-block;font-weight:bold;font-size:.8em;padding:.1em .5em;border-radius:3px;background:#8a94a6;color:#fff;margin-right:.5em}
.denied .badge,.error .badge,.revoked .badge,.unreadable .badge,.malformed .badge{background:#c62828}
.approval .badge{background:#ef8f00}
.approval.approved .badge{background:#2e7d32}
pre{background:#f0f2f5;padding:.5em .8em;border-radius:3px;white-space:pre-wrap;word-break:break-word;margin:.3em 0}
table{border-collapse:collapse;margin:.5em 0;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em}
th,td{border:1px solid #c9ced8;padding:.15em .6em;text-align:left;vertical-align:top;white-space:pre-wrap}
th{background:#e8ebf0}
td.num{text-align:right}
td.null{color:#9aa1ad;font-style:italic}
td.masked,li.masked,span.masked{background:#fff3c4;outline:1px dashed #b08800}
.mark{color:#8a6d00;font-weight:bold;font-size:.85em}
.summary{color:#5b6475;font-size:.9em;margin:.2em 0}
.diag{border-radius:3px;padding:.4em .8em;margin:.3em 0}
.diag.err{background:#fde8e8;color:#8e1b1b}
.diag.note{background:#eef3fb;color:#234}
.params{font-family:ui-monospace,Menlo,Consolas,monospace;margin:.3em 0;padding-left:0;list-style:none}
footer{color:#5b6475;font-size:.8em;padding:0 2em 2em 2em}
";

/// Writes `t` as one HTML page.
pub fn write(t: &Transcript, out: &mut dyn Write) -> io::Result<()> {
    let h = &t.header;
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(out, "<html lang=\"en\">")?;
    writeln!(out, "<head>")?;
    writeln!(out, "<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
    )?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(out, "<title>Gatehouse session {}</title>", esc(&h.session))?;
    writeln!(out, "<style>\n{STYLE}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    header(h, out)?;
    writeln!(out, "<main>")?;
    if t.items.is_empty() {
        writeln!(out, "<p>No statements were recorded.</p>")?;
    }
    for (n, item) in t.items.iter().enumerate() {
        let (class, badge) = classes(&item.kind);
        writeln!(
            out,
            "<section class=\"item {class}\" id=\"item-{}\">",
            n + 1
        )?;
        writeln!(
            out,
            "<div class=\"when\"><span class=\"badge\">{badge}</span>{} <time datetime=\"{at}\">{at}</time></div>",
            escape(&offset_us(offset_of(t, item))),
            at = escape(&rfc3339_us(item.at_us)),
        )?;
        match &item.kind {
            ItemKind::Statement(e) => statement(e, item.at_us, out)?,
            ItemKind::Http(x) => {
                // The text view's lines, already sanitized: one block.
                let lines = crate::render::exchange_lines(x, item.at_us, h.started_us, t.max_rows);
                let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
                writeln!(
                    out,
                    "<pre class=\"http\">{}</pre>",
                    escape(&text.join("\n"))
                )?;
            }
            ItemKind::Notification(n) => writeln!(
                out,
                "<p>notification on <code>{}</code>: <code>{}</code> (from backend pid {})</p>",
                esc(&n.channel),
                esc(&n.payload),
                n.pid
            )?,
            ItemKind::Notice(d) | ItemKind::Error(d) => diagnostic(d, None, out)?,
            ItemKind::Parameter { name, value } => writeln!(
                out,
                "<p>parameter <code>{}</code> = <code>{}</code></p>",
                esc(name),
                esc(value)
            )?,
            ItemKind::Malformed { direction, detail } => writeln!(
                out,
                "<p>malformed frame ({}): {}</p>",
                escape(&direction.replace('_', " ")),
                esc(detail)
            )?,
            ItemKind::Denied { text, reason } => {
                writeln!(out, "<pre class=\"sql\">{}</pre>", esc_lines(text))?;
                writeln!(
                    out,
                    "<p>The target never saw this statement. Reason: {}</p>",
                    esc(reason)
                )?;
            }
            ItemKind::Approval {
                id,
                state,
                approver,
                detail,
            } => {
                writeln!(
                    out,
                    "<p>approval <code>{}</code>: <strong>{}</strong>{}</p>",
                    esc(id),
                    escape(state),
                    if approver.is_empty() {
                        String::new()
                    } else {
                        format!(" by <strong>{}</strong>", esc(approver))
                    }
                )?;
                if !detail.is_empty() {
                    writeln!(out, "<pre>{}</pre>", esc_lines(detail))?;
                }
            }
            ItemKind::Revoked { jti, by, reason } => writeln!(
                out,
                "<p>grant <code>{}</code> revoked by <strong>{}</strong>: {}</p>",
                esc(jti),
                esc(by),
                esc(reason)
            )?,
            ItemKind::Unreadable { detail } => {
                writeln!(out, "<p>unreadable event: {}</p>", esc(detail))?
            }
        }
        writeln!(out, "</section>")?;
    }
    writeln!(out, "</main>")?;
    writeln!(
        out,
        "<footer>Rebuilt from the recorded protocol frames by gatehouse-replay {}: what the client received, masked values as masked.{}</footer>",
        escape(env!("CARGO_PKG_VERSION")),
        match t.max_rows {
            Some(max) => format!(
                " Each result shows at most {max} rows (export with --all-rows for every row)."
            ),
            None => String::new(),
        }
    )?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

/// The section's classes and its badge.
fn classes(kind: &ItemKind) -> (String, &'static str) {
    match kind {
        ItemKind::Statement(e) => {
            if e.results.iter().any(|b| b.error.is_some()) {
                ("statement failed".into(), "statement · error")
            } else {
                ("statement".into(), "statement")
            }
        }
        ItemKind::Http(x) => {
            let denied = x.verdict.as_ref().is_some_and(|v| v.decision == "deny");
            let failed = x.response.as_ref().is_some_and(|r| r.status >= 400);
            match (denied, failed) {
                (true, _) => ("http denied".into(), "HTTP · denied by the plan"),
                (false, true) => ("http failed".into(), "HTTP · error status"),
                _ => ("http".into(), "HTTP"),
            }
        }
        ItemKind::Notification(_) => ("notification".into(), "notification"),
        ItemKind::Notice(_) => ("notice".into(), "notice"),
        ItemKind::Error(_) => ("error".into(), "error"),
        ItemKind::Parameter { .. } => ("parameter".into(), "parameter"),
        ItemKind::Malformed { .. } => ("malformed".into(), "malformed"),
        ItemKind::Denied { .. } => ("denied".into(), "denied by the plan"),
        ItemKind::Approval { state, .. } => (
            format!("approval {state}"),
            match *state {
                "approved" => "approval: approved",
                "denied" => "approval: denied",
                _ => "held for approval",
            },
        ),
        ItemKind::Revoked { .. } => ("revoked".into(), "grant revoked"),
        ItemKind::Unreadable { .. } => ("unreadable".into(), "unreadable"),
    }
}

fn header(h: &Header, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "<header>")?;
    writeln!(
        out,
        "<h1>Gatehouse session <code>{}</code></h1>",
        esc(&h.session)
    )?;
    writeln!(out, "<dl>")?;
    let opt = |v: &Option<String>| v.as_deref().map(esc).unwrap_or_else(|| "—".into());
    let mut field = |name: &str, value: String| writeln!(out, "<dt>{name}</dt><dd>{value}</dd>");
    field("Subject", opt(&h.subject))?;
    field("Target", opt(&h.target))?;
    field("Purpose", opt(&h.purpose))?;
    field("Ticket", opt(&h.ticket))?;
    field("Grant jti", opt(&h.jti))?;
    if let Some(issuer) = &h.issuer {
        field("Issuer", esc(issuer))?;
    }
    if let Some(n) = h.use_number {
        field(
            "Use",
            match h.max_uses {
                Some(max) => format!("{n} of {max}"),
                None => n.to_string(),
            },
        )?;
    }
    field("Client", opt(&h.client_addr))?;
    if let Some(user) = &h.client_user {
        field("Client user", esc(user))?;
    }
    if let Some(app) = &h.application_name {
        field("Application", esc(app))?;
    }
    match &h.tls {
        Some(tls) => field(
            "TLS",
            format!(
                "{} {}{}",
                esc(&tls.version),
                esc(&tls.cipher),
                if tls.direct { " (direct)" } else { "" }
            ),
        )?,
        None if h.use_number.is_some() => field("TLS", "none".into())?,
        None => {}
    }
    let end = h.started_us.saturating_add(h.duration_us);
    field("Started", escape(&rfc3339_us(h.started_us)))?;
    field("Ended", escape(&rfc3339_us(end)))?;
    field("Duration", escape(&session_duration_us(h.duration_us)))?;
    field("Status", esc(&h.status.describe()))?;
    if let SessionStatus::Refused { message, .. } = &h.status {
        field("Client was told", esc(message))?;
    }
    if h.denied > 0 || h.held > 0 {
        field(
            "Plan",
            format!(
                "{} denied, {} held for approval",
                grouped(h.denied),
                grouped(h.held)
            ),
        )?;
    }
    if !h.masked.is_empty() {
        let totals: Vec<String> = h
            .masked
            .iter()
            .map(|t| {
                format!(
                    "{} in {} ×{}",
                    esc(&t.rule),
                    esc(&t.column),
                    grouped(t.count)
                )
            })
            .collect();
        field("Masked", totals.join(", "))?;
    }
    writeln!(out, "</dl>")?;
    writeln!(out, "</header>")
}

fn statement(e: &Entry, at_us: i64, out: &mut dyn Write) -> io::Result<()> {
    let sql = |text: &Option<String>, statement: &str| match text {
        Some(text) => format!("<pre class=\"sql\">{}</pre>", esc_lines(text)),
        None => format!(
            "<p>statement {} was not recorded</p>",
            if statement.is_empty() {
                "(unnamed)".to_owned()
            } else {
                format!("<code>{}</code>", esc(statement))
            }
        ),
    };
    match &e.request {
        Request::Simple { text } => writeln!(out, "<pre class=\"sql\">{}</pre>", esc_lines(text))?,
        Request::Extended {
            text,
            statement,
            portal,
            params,
            max_rows,
            continued,
        } => {
            writeln!(out, "{}", sql(text, statement))?;
            let mut notes = Vec::new();
            if !statement.is_empty() {
                notes.push(format!("statement <code>{}</code>", esc(statement)));
            }
            if !portal.is_empty() {
                notes.push(format!("portal <code>{}</code>", esc(portal)));
            }
            if *max_rows > 0 {
                notes.push(format!("fetch {max_rows}"));
            }
            if *continued {
                notes.push("continued".into());
            }
            if !notes.is_empty() {
                writeln!(out, "<p class=\"summary\">{}</p>", notes.join(", "))?;
            }
            if !params.is_empty() {
                writeln!(out, "<ul class=\"params\">")?;
                for (i, p) in params.iter().enumerate() {
                    writeln!(out, "<li>${} = {}</li>", i + 1, esc(&p.literal()))?;
                }
                writeln!(out, "</ul>")?;
            }
        }
        Request::Prepare { text, statement } => {
            writeln!(out, "{}", sql(text, statement))?;
            writeln!(out, "<p class=\"summary\">(prepare only)</p>")?;
        }
        Request::FunctionCall => writeln!(out, "<p>function call</p>")?,
    }
    if e.skipped {
        writeln!(
            out,
            "<p class=\"summary\">skipped: an earlier message in its pipeline failed</p>"
        )?;
    }
    let mut since = at_us;
    for block in &e.results {
        result(block, since, out)?;
        if let Some(done) = block.done_us {
            since = done;
        }
    }
    for (name, value) in &e.parameters {
        writeln!(
            out,
            "<p class=\"summary\">parameter <code>{}</code> = <code>{}</code></p>",
            esc(name),
            esc(value)
        )?;
    }
    if e.results.is_empty() && !e.skipped {
        match e.duration_us {
            Some(d) => writeln!(
                out,
                "<p class=\"summary\">no result · {}</p>",
                escape(&duration_us(d))
            )?,
            None => writeln!(out, "<p class=\"summary\">no response recorded</p>")?,
        }
    }
    Ok(())
}

/// Type OIDs shown right-aligned.
fn is_numeric(type_oid: u32) -> bool {
    matches!(type_oid, 20 | 21 | 23 | 26 | 700 | 701 | 790 | 1700)
}

fn result(b: &ResultBlock, since: i64, out: &mut dyn Write) -> io::Result<()> {
    for notice in &b.notices {
        diagnostic(notice, None, out)?;
    }
    if !b.columns.is_empty() || !b.rows.is_empty() {
        table(b, out)?;
    }
    if let Some(copy) = &b.copy {
        writeln!(
            out,
            "<p class=\"summary\">COPY {}, {} format</p>",
            escape(copy.direction),
            escape(copy.format)
        )?;
        writeln!(out, "<ul class=\"params\">")?;
        for (i, line) in copy.lines.iter().enumerate() {
            if copy.masked_lines.contains(&i) {
                writeln!(
                    out,
                    "<li class=\"masked\">{} <span class=\"mark\">{MASKED_MARK}</span></li>",
                    escape(&sanitize_copy_line(line))
                )?;
            } else {
                writeln!(out, "<li>{}</li>", escape(&sanitize_copy_line(line)))?;
            }
        }
        writeln!(out, "</ul>")?;
        let more = copy.lines_received.saturating_sub(copy.lines.len() as u64);
        writeln!(
            out,
            "<p class=\"summary\">{}{}{}, {}</p>",
            plural(copy.lines_received, "line", "lines"),
            if more > 0 {
                format!(" ({} not shown)", grouped(more))
            } else {
                String::new()
            },
            if copy.lines_masked > 0 {
                format!("; {} masked", grouped(copy.lines_masked))
            } else {
                String::new()
            },
            escape(&crate::text::bytes(copy.bytes))
        )?;
        if let Some(msg) = &copy.failed {
            writeln!(
                out,
                "<div class=\"diag err\">client aborted the COPY: {}</div>",
                esc(msg)
            )?;
        }
    }
    let time = b.done_us.map(|done| duration_us(done - since));
    if let Some(err) = &b.error {
        return diagnostic(err, time.as_deref(), out);
    }
    let mut parts: Vec<String> = summary_notes(b)
        .into_iter()
        .map(|note| match note {
            SummaryNote::Note(text) => escape(&text),
            SummaryNote::Tag(tag) => format!("<strong>{}</strong>", esc(tag)),
        })
        .collect();
    if let Some(time) = time {
        parts.push(escape(&time));
    }
    writeln!(out, "<p class=\"summary\">{}</p>", parts.join(" · "))?;
    for n in &b.notifications {
        writeln!(
            out,
            "<p>notification on <code>{}</code>: <code>{}</code> (from backend pid {})</p>",
            esc(&n.channel),
            esc(&n.payload),
            n.pid
        )?;
    }
    Ok(())
}

fn table(b: &ResultBlock, out: &mut dyn Write) -> io::Result<()> {
    let ncols = b
        .columns
        .len()
        .max(b.rows.iter().map(Vec::len).max().unwrap_or(0));
    writeln!(out, "<table>")?;
    write!(out, "<thead><tr>")?;
    for i in 0..ncols {
        match b.columns.get(i) {
            Some(c) => write!(out, "<th>{}</th>", esc(&c.name))?,
            None => write!(out, "<th>?column{}?</th>", i + 1)?,
        }
    }
    writeln!(out, "</tr></thead>")?;
    writeln!(out, "<tbody>")?;
    for row in &b.rows {
        write!(out, "<tr>")?;
        for i in 0..ncols {
            let numeric = b
                .columns
                .get(i)
                .is_some_and(|c| c.format == 0 && is_numeric(c.type_oid));
            match row.get(i) {
                Some(v) => cell(v, numeric, out)?,
                None => write!(out, "<td></td>")?,
            }
        }
        writeln!(out, "</tr>")?;
    }
    writeln!(out, "</tbody>")?;
    writeln!(out, "</table>")?;
    let more = b.rows_received.saturating_sub(b.rows.len() as u64);
    if more > 0 {
        writeln!(
            out,
            "<p class=\"summary\">… {} more {} not shown</p>",
            grouped(more),
            if more == 1 { "row" } else { "rows" }
        )?;
    }
    Ok(())
}

fn cell(v: &Value, numeric: bool, out: &mut dyn Write) -> io::Result<()> {
    let mut classes = Vec::new();
    if numeric {
        classes.push("num");
    }
    if v.is_masked() {
        classes.push("masked");
    }
    let null = matches!(v.unmarked(), Value::Null);
    if null {
        classes.push("null");
    }
    let class = if classes.is_empty() {
        String::new()
    } else {
        format!(" class=\"{}\"", classes.join(" "))
    };
    let text = if null {
        "NULL".to_owned()
    } else {
        escape(&sanitize(v.cell(), true))
    };
    if v.is_masked() {
        let title = " title=\"masked by the gateway: this is what the client received\"";
        write!(
            out,
            "<td{class}{title}>{text} <span class=\"mark\">{MASKED_MARK}</span></td>"
        )
    } else {
        write!(out, "<td{class}>{text}</td>")
    }
}

fn diagnostic(d: &Diagnostic, time: Option<&str>, out: &mut dyn Write) -> io::Result<()> {
    let class = match d.severity.as_str() {
        "ERROR" | "FATAL" | "PANIC" => "err",
        _ => "note",
    };
    let masked = |field: &str, text: String| {
        if d.masked.contains(&field) {
            format!(
                "<span class=\"masked\">{text} <span class=\"mark\">{MASKED_MARK}</span></span>"
            )
        } else {
            text
        }
    };
    write!(
        out,
        "<div class=\"diag {class}\"><strong>{} {}</strong>: {}",
        esc(&d.severity),
        esc(&d.code),
        masked("message", esc(&d.message))
    )?;
    if let Some(time) = time {
        write!(out, " · {}", escape(time))?;
    }
    for (label, field, value) in [
        ("DETAIL", "detail", &d.detail),
        ("HINT", "hint", &d.hint),
        ("CONTEXT", "context", &d.context),
    ] {
        if let Some(value) = value {
            write!(
                out,
                "<br>{label}: {}",
                masked(field, esc_lines(value).replace('\n', "<br>"))
            )?;
        }
    }
    if let Some(pos) = &d.position {
        write!(out, "<br>(at character {})", esc(pos))?;
    }
    writeln!(out, "</div>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;

    fn page() -> String {
        let mut buf = Vec::new();
        write(&fixture::transcript(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(
            escape("<a href=\"x\">O'Hara & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Hara &amp; co&lt;/a&gt;"
        );
        assert_eq!(esc("a\x1b[2Jb<"), "a\\u{1b}[2Jb&lt;");
    }

    #[test]
    fn hostile_values_are_escaped() {
        let page = page();
        assert!(
            page.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"),
            "{page}"
        );
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<b>reconciler"), "{page}");
        assert!(
            page.contains("agent:&lt;b&gt;reconciler&lt;/b&gt;"),
            "{page}"
        );
        assert!(page.contains("reconcile &quot;invoices&quot;"), "{page}");
    }

    #[test]
    fn page_is_self_contained_and_shows_everything() {
        let page = page();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.trim_end().ends_with("</html>"));
        for external in ["src=", "href=", "http://", "https://", "@import", "url("] {
            assert!(!page.contains(external), "{external} in:\n{page}");
        }
        for needle in [
            "select id, note, card from invoices",
            "<td class=\"masked\" title=\"masked by the gateway: this is what the client received\">****1111 <span class=\"mark\">⟨masked⟩</span></td>",
            "<td class=\"null\">NULL</td>",
            "2 rows; 1 cell masked",
            "<strong>SELECT 2</strong>",
            "$1 = &#39;42&#39;",
            "<strong>ERROR 22012</strong>: division by zero",
            "<section class=\"item denied\"",
            "TRUNCATE invoices",
            "the plan does not allow truncate on public.invoices",
            "<section class=\"item approval approved\"",
            "by <strong>alice</strong>",
            "[+2.000s]",
            "2026-11-25T18:40:01.123Z",
            "closed: client terminated",
            "OPS-1234",
            "jti-1",
        ] {
            assert!(page.contains(needle), "{needle:?} missing from:\n{page}");
        }
    }
}
