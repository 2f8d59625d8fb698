//! The CSV export: a header row, then one row per item.
//!
//! Columns, in order ([`COLUMNS`]):
//!
//! - `offset_s`: seconds since the session's start (`1.234567`);
//! - `at`: RFC 3339 UTC;
//! - `kind`: as in the JSON export (`statement`, `denied`, `approval`,
//!   `error`, `notice`, `notification`, `parameter`, `malformed`,
//!   `revoked`, `unreadable`);
//! - `text`: the statement's SQL (a denied one's too); for other kinds
//!   what they are about (`channel: payload`, `name = value`, `approval ID`,
//!   the revoked `jti`);
//! - `parameters`: a statement's bind parameters, `$1 = '42'; $2 = NULL`;
//! - `columns`: the result columns, `;`-separated (of each result);
//! - `rows_returned`: DataRows the client received (all results);
//! - `masked_cells`: cells of them the gateway masked;
//! - `tags`: the command tags, `;`-separated (`SELECT 2`);
//! - `duration_ms`: from request to last response;
//! - `error_code`, `error_message`: the SQLSTATE and message of the error
//!   (for a `notice`, the notice's);
//! - `decision`: `deny` for a denial, the state (`held`, `approved`,
//!   `denied`) for an approval;
//! - `reason`: why (the plan's reason, the approver's, the revoker's);
//! - `approver`: who decided (or revoked);
//! - `status`: an HTTP exchange's response status (`200`);
//! - `operation`: what the plan saw of an HTTP request
//!   (`list pods in billing`).
//!
//! An HTTP exchange (kind `http`) fills `text` with its method and target
//! (`GET /orders-api/v1/invoices`), `masked_cells` with the values masked
//! in its response body, `duration_ms`, `decision` (`allow`, `deny`,
//! `hold`), `reason` and `approver`, and `tags` with its body sizes
//! (`request 12 B; response 1.2 KiB`) and, after an upgrade, its
//! WebSocket message count.
//!
//! Empty cells mean "not applicable". Values are quoted as RFC 4180 says
//! (the `csv` crate); they are not altered otherwise, so a spreadsheet
//! may treat a cell an agent wrote as `=…` as a formula: import as text.

use std::io::{self, Write};

use super::{kind_name, offset_of, request_text};
use crate::text::rfc3339_us;
use crate::transcript::{Diagnostic, Entry, Exchange, Item, ItemKind, Request, Transcript};

/// The header row.
pub const COLUMNS: [&str; 17] = [
    "offset_s",
    "at",
    "kind",
    "text",
    "parameters",
    "columns",
    "rows_returned",
    "masked_cells",
    "tags",
    "duration_ms",
    "error_code",
    "error_message",
    "decision",
    "reason",
    "approver",
    "status",
    "operation",
];

/// One row, by column.
#[derive(Debug, Default)]
struct Row {
    text: String,
    parameters: String,
    columns: String,
    rows_returned: String,
    masked_cells: String,
    tags: String,
    duration_ms: String,
    error_code: String,
    error_message: String,
    decision: String,
    reason: String,
    approver: String,
    status: String,
    operation: String,
}

/// Writes `t` as CSV.
pub fn write(t: &Transcript, out: &mut dyn Write) -> io::Result<()> {
    let mut w = ::csv::Writer::from_writer(out);
    w.write_record(COLUMNS).map_err(io::Error::other)?;
    for item in &t.items {
        let r = row(item);
        let offset = offset_of(t, item);
        let sign = if offset < 0 { "-" } else { "" };
        let abs = offset.unsigned_abs();
        let record = [
            format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000),
            rfc3339_us(item.at_us),
            kind_name(&item.kind).to_owned(),
            r.text,
            r.parameters,
            r.columns,
            r.rows_returned,
            r.masked_cells,
            r.tags,
            r.duration_ms,
            r.error_code,
            r.error_message,
            r.decision,
            r.reason,
            r.approver,
            r.status,
            r.operation,
        ];
        w.write_record(&record).map_err(io::Error::other)?;
    }
    w.flush()
}

fn row(item: &Item) -> Row {
    match &item.kind {
        ItemKind::Statement(e) => statement(e),
        ItemKind::Http(x) => exchange(x),
        ItemKind::Notice(d) | ItemKind::Error(d) => Row {
            error_code: d.code.clone(),
            error_message: message(d),
            ..Row::default()
        },
        ItemKind::Notification(n) => Row {
            text: format!("{}: {}", n.channel, n.payload),
            ..Row::default()
        },
        ItemKind::Parameter { name, value } => Row {
            text: format!("{name} = {value}"),
            ..Row::default()
        },
        ItemKind::Malformed { direction, detail } => Row {
            text: (*direction).to_owned(),
            reason: detail.clone(),
            ..Row::default()
        },
        ItemKind::Denied { text, reason } => Row {
            text: text.clone(),
            decision: "deny".into(),
            reason: reason.clone(),
            ..Row::default()
        },
        ItemKind::Approval {
            id,
            state,
            approver,
            detail,
        } => Row {
            text: format!("approval {id}"),
            decision: (*state).to_owned(),
            reason: detail.clone(),
            approver: approver.clone(),
            ..Row::default()
        },
        ItemKind::Revoked { jti, by, reason } => Row {
            text: jti.clone(),
            reason: reason.clone(),
            approver: by.clone(),
            ..Row::default()
        },
        ItemKind::Unreadable { detail } => Row {
            reason: detail.clone(),
            ..Row::default()
        },
    }
}

fn exchange(x: &Exchange) -> Row {
    let mut tags = Vec::new();
    for (name, body) in [("request", &x.request_body), ("response", &x.response_body)] {
        if let Some(b) = body {
            tags.push(format!("{name} {}", crate::text::bytes(b.size)));
        }
    }
    if let Some(ws) = &x.websocket {
        tags.push(format!("websocket {} messages", ws.messages_received));
    }
    let masked = x.masked_values();
    let v = x.verdict.as_ref();
    Row {
        text: format!("{} {}", x.method, x.target),
        masked_cells: if masked > 0 {
            masked.to_string()
        } else {
            String::new()
        },
        tags: tags.join("; "),
        duration_ms: x
            .duration_us
            .map(|us| format!("{:.3}", us as f64 / 1000.0))
            .unwrap_or_default(),
        decision: v.map(|v| v.decision.to_owned()).unwrap_or_default(),
        reason: v.map(|v| v.reason.clone()).unwrap_or_default(),
        approver: v.map(|v| v.approver.clone()).unwrap_or_default(),
        status: x
            .response
            .as_ref()
            .map(|r| r.status.to_string())
            .unwrap_or_default(),
        operation: x.operation.clone(),
        ..Row::default()
    }
}

fn message(d: &Diagnostic) -> String {
    match &d.detail {
        Some(detail) => format!("{} (DETAIL: {detail})", d.message),
        None => d.message.clone(),
    }
}

fn statement(e: &Entry) -> Row {
    let text = match &e.request {
        Request::FunctionCall => "<function call>".to_owned(),
        r => request_text(r)
            .unwrap_or("<statement not recorded>")
            .to_owned(),
    };
    let parameters = match &e.request {
        Request::Extended { params, .. } => params
            .iter()
            .enumerate()
            .map(|(i, p)| format!("${} = {}", i + 1, p.literal()))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    };
    let columns = e
        .results
        .iter()
        .filter(|b| !b.columns.is_empty())
        .map(|b| {
            b.columns
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect::<Vec<_>>()
        .join("; ");
    let rows: u64 = e.results.iter().map(|b| b.rows_received).sum();
    let masked: u64 = e.results.iter().map(|b| b.masked_cells).sum();
    let has_rows = e
        .results
        .iter()
        .any(|b| !b.columns.is_empty() || b.rows_received > 0);
    let tags = e
        .results
        .iter()
        .filter_map(|b| b.tag.as_deref())
        .collect::<Vec<_>>()
        .join("; ");
    let error = e.results.iter().find_map(|b| b.error.as_ref());
    Row {
        text,
        parameters,
        columns,
        rows_returned: if has_rows {
            rows.to_string()
        } else {
            String::new()
        },
        masked_cells: if masked > 0 {
            masked.to_string()
        } else {
            String::new()
        },
        tags,
        duration_ms: e
            .duration_us
            .map(|us| format!("{:.3}", us as f64 / 1000.0))
            .unwrap_or_default(),
        error_code: error.map(|d| d.code.clone()).unwrap_or_default(),
        error_message: error.map(message).unwrap_or_default(),
        ..Row::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;

    #[test]
    fn one_row_per_item_quoted() {
        let t = fixture::transcript();
        let mut buf = Vec::new();
        write(&t, &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        // A value with a comma, quotes and a newline is quoted, quotes doubled.
        let mut t2 = t.clone();
        if let ItemKind::Denied { text, .. } = &mut t2.items[3].kind {
            *text = "say \"hi\", then\nleave".into();
        }
        let mut buf2 = Vec::new();
        write(&t2, &mut buf2).unwrap();
        let text2 = String::from_utf8(buf2.clone()).unwrap();
        assert!(text2.contains("\"say \"\"hi\"\", then\nleave\""), "{text2}");

        let mut r = ::csv::Reader::from_reader(buf.as_slice());
        assert_eq!(r.headers().unwrap(), COLUMNS.as_slice());
        let rows: Vec<::csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), t.items.len(), "{text}");
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).unwrap();
        assert_eq!(&rows[0][col("offset_s")], "0.001000");
        assert_eq!(&rows[0][col("kind")], "statement");
        assert_eq!(&rows[0][col("text")], "select id, note, card from invoices");
        assert_eq!(&rows[0][col("columns")], "id, note, card");
        assert_eq!(&rows[0][col("rows_returned")], "2");
        assert_eq!(&rows[0][col("masked_cells")], "1");
        assert_eq!(&rows[0][col("tags")], "SELECT 2");
        assert_eq!(&rows[0][col("duration_ms")], "1.700");
        assert_eq!(&rows[1][col("parameters")], "$1 = '42'");
        assert_eq!(&rows[2][col("error_code")], "22012");
        assert_eq!(&rows[2][col("error_message")], "division by zero");
        assert_eq!(&rows[3][col("kind")], "denied");
        assert_eq!(&rows[3][col("decision")], "deny");
        assert_eq!(&rows[3][col("text")], "TRUNCATE invoices");
        assert_eq!(&rows[4][col("error_code")], "42501");
        assert_eq!(&rows[5][col("decision")], "approved");
        assert_eq!(&rows[5][col("approver")], "alice");
        assert_eq!(&rows[5][col("reason")], "checked with finance");

        // The quoted value reads back as it was.
        let mut r = ::csv::Reader::from_reader(buf2.as_slice());
        let rows: Vec<::csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(&rows[3][col("text")], "say \"hi\", then\nleave");
    }
}
