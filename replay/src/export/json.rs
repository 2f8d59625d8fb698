//! The JSON export: one document.
//!
//! ```json
//! {
//!   "format": "gatehouse-replay-export",
//!   "version": 1,
//!   "session": {
//!     "id": "…", "subject": "agent:reconciler", "jti": "…", "issuer": "…",
//!     "target": "orders", "purpose": "…", "ticket": "OPS-1234",
//!     "client_addr": "127.0.0.1:51234", "client_user": "agent",
//!     "application_name": "psql", "tls": {"version": "TLSv1.3", …},
//!     "use_number": 1, "max_uses": 1,
//!     "started": "2026-11-25T18:40:01.123Z", "started_us": …,
//!     "ended": "…", "ended_us": …, "duration_us": …,
//!     "status": {"state": "closed", "reason": "client_terminated", …},
//!     "close_reason": "client_terminated",
//!     "denied": 0, "held": 0, "masked": [{"rule": …, "column": …, "count": …}],
//!     "parameters": [["server_version", "17.2"], …]
//!   },
//!   "max_rows": 100,
//!   "items": [
//!     {"offset_us": 3000, "at": "…", "at_us": …, "kind": "statement",
//!      "request": {"protocol": "simple", "text": "SELECT …"},
//!      "results": [{"columns": [{"name": "id", "type_oid": 23, "format": 0}],
//!                   "rows": [["42", {"masked": true, "value": "****1111"}]],
//!                   "rows_received": 1, "masked_cells": 1, "tag": "SELECT 1",
//!                   "error": null, …}],
//!      "duration_us": 1200, …},
//!     {"offset_us": …, "kind": "denied", "decision": "deny", "text": "…", "reason": "…"},
//!     {"offset_us": …, "kind": "error", "severity": "ERROR", "code": "42501", "message": "…"},
//!     {"offset_us": …, "kind": "approval", "decision": "approved", "id": "…",
//!      "state": "approved", "approver": "alice", "detail": "…"},
//!     {"offset_us": …, "kind": "http", "decision": "allow", "exchange": 1,
//!      "method": "GET", "target": "/orders-api/v1/invoices",
//!      "upstream_target": "/v1/invoices", "version": "HTTP/1.1",
//!      "operation": "GET /v1/invoices",
//!      "request_headers": [{"name": "authorization", "value": "[redacted]"}],
//!      "verdict": {"decision": "allow", "held": false, "reason": ""},
//!      "request_body": null,
//!      "response": {"at_us": …, "status": 200, "headers": […], "from_gateway": false},
//!      "response_body": {"size": 40, "text": "{…}", "truncated": false,
//!                        "complete": true, "pieces_received": 1,
//!                        "pieces": [{"at_us": …, "offset": 0, "size": 40}]},
//!      "masked": [{"rule": "key:email", "column": "items[].email", "count": 2}],
//!      "websocket": {"protocol": "v5.channel.k8s.io", "messages_received": 3,
//!                    "bytes_received": 40, "messages": [{"at_us": …,
//!                    "direction": "to_client", "kind": "binary", "channel": 1,
//!                    "stream": "stdout", "size": 9, "text": "bin  etc\n",
//!                    "truncated": false}, …]},
//!      "duration_us": 1500}
//!   ]
//! }
//! ```
//!
//! Field names are stable within a `version`; fields may be added, and a
//! change to an existing one raises the version. Item fields are those of
//! [`ItemKind`](crate::transcript::ItemKind) (the same as `show --json`),
//! after `offset_us` (microseconds since the session's start), `at`
//! (RFC 3339 UTC) and, for verdicts, `decision` (`deny` for a denial; the
//! approval's state — `held`, `approved`, `denied` — for an approval).
//! Values: `null` is SQL NULL, a string a text value, `{"binary": "\\x…",
//! "text": …}` a binary one, `{"masked": true, "value": …}` a value the
//! gateway masked (as the client received it). Errors carry their SQLSTATE
//! in `code`.
//!
//! HTTP exchanges (`kind` `http`): bodies and WebSocket payloads are
//! `"text"` when UTF-8, else `"base64"` (standard, padded); `decision` is
//! the final verdict (`allow`, `deny`, `hold` when no decision was
//! recorded); `masked` and `websocket` are absent when empty. Messages
//! carry a `note` where they mean more than their bytes (`exit: Success`,
//! `resize 80×24`, `close stdin`, `closed (1000)`).

use std::io::{self, Write};

use serde::Serialize;

use super::offset_of;
use crate::text::rfc3339_us;
use crate::transcript::{Item, ItemKind, MaskTotal, SessionStatus, TlsSummary, Transcript};

/// The value of the document's `format` field.
pub const FORMAT: &str = "gatehouse-replay-export";
/// The document's version.
pub const VERSION: u32 = 1;

/// The exported document.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    /// Always [`FORMAT`].
    pub format: &'static str,
    /// Always [`VERSION`].
    pub version: u32,
    /// Who, what, when, how it ended.
    pub session: Session<'a>,
    /// The row cap per result (`null`: every row kept).
    pub max_rows: Option<usize>,
    /// The items, in order.
    pub items: Vec<ExportItem<'a>>,
}

/// The session's metadata.
#[derive(Debug, Serialize)]
pub struct Session<'a> {
    /// The session id.
    pub id: &'a str,
    /// The agent (the grant's `sub`).
    pub subject: Option<&'a str>,
    /// The grant's `jti`.
    pub jti: Option<&'a str>,
    /// The grant's issuer.
    pub issuer: Option<&'a str>,
    /// The target.
    pub target: Option<&'a str>,
    /// The grant's purpose.
    pub purpose: Option<&'a str>,
    /// The grant's ticket.
    pub ticket: Option<&'a str>,
    /// The client's address.
    pub client_addr: Option<&'a str>,
    /// The user name the client sent.
    pub client_user: Option<&'a str>,
    /// The client's `application_name`.
    pub application_name: Option<&'a str>,
    /// TLS on the client connection.
    pub tls: Option<&'a TlsSummary>,
    /// Which use of its grant this session was.
    pub use_number: Option<u32>,
    /// The grant's `uses` limit.
    pub max_uses: Option<u32>,
    /// The first event, RFC 3339 UTC.
    pub started: String,
    /// The first event, microseconds since the Unix epoch.
    pub started_us: i64,
    /// `started` plus the duration, RFC 3339 UTC.
    pub ended: String,
    /// `started_us` plus the duration.
    pub ended_us: i64,
    /// The session's duration in microseconds.
    pub duration_us: i64,
    /// How it ended.
    pub status: &'a SessionStatus,
    /// The close (or refusal) reason, machine-readable; `null` for a cut
    /// session.
    pub close_reason: Option<&'static str>,
    /// Statements the plan denied.
    pub denied: u64,
    /// Statements held for approval.
    pub held: u64,
    /// What the gateway masked: rule, column, count.
    pub masked: &'a [MaskTotal],
    /// The run-time parameters the client was greeted with.
    pub parameters: &'a [(String, String)],
}

/// One item with its time offset.
#[derive(Debug, Serialize)]
pub struct ExportItem<'a> {
    /// Microseconds since the session's start.
    pub offset_us: i64,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// For a denial `deny`; for an approval its state; for an HTTP
    /// exchange its final verdict (`allow`, `deny`, `hold`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    /// `at_us`, `kind` and the kind's fields.
    #[serde(flatten)]
    pub item: &'a Item,
}

/// The verdict an item records, if it is one.
pub(crate) fn decision(kind: &ItemKind) -> Option<&'static str> {
    match kind {
        ItemKind::Denied { .. } => Some("deny"),
        ItemKind::Http(x) => x.verdict.as_ref().map(|v| v.decision),
        ItemKind::Approval { state, .. } => Some(state),
        _ => None,
    }
}

impl<'a> Document<'a> {
    /// The document for `t`.
    pub fn new(t: &'a Transcript) -> Self {
        let h = &t.header;
        let ended_us = h.started_us.saturating_add(h.duration_us);
        let close_reason = match &h.status {
            SessionStatus::Cut => None,
            SessionStatus::Refused { reason, .. } | SessionStatus::Closed { reason, .. } => {
                Some(*reason)
            }
        };
        Document {
            format: FORMAT,
            version: VERSION,
            session: Session {
                id: &h.session,
                subject: h.subject.as_deref(),
                jti: h.jti.as_deref(),
                issuer: h.issuer.as_deref(),
                target: h.target.as_deref(),
                purpose: h.purpose.as_deref(),
                ticket: h.ticket.as_deref(),
                client_addr: h.client_addr.as_deref(),
                client_user: h.client_user.as_deref(),
                application_name: h.application_name.as_deref(),
                tls: h.tls.as_ref(),
                use_number: h.use_number,
                max_uses: h.max_uses,
                started: rfc3339_us(h.started_us),
                started_us: h.started_us,
                ended: rfc3339_us(ended_us),
                ended_us,
                duration_us: h.duration_us,
                status: &h.status,
                close_reason,
                denied: h.denied,
                held: h.held,
                masked: &h.masked,
                parameters: &h.parameters,
            },
            max_rows: t.max_rows,
            items: t
                .items
                .iter()
                .map(|item| ExportItem {
                    offset_us: offset_of(t, item),
                    at: rfc3339_us(item.at_us),
                    decision: decision(&item.kind),
                    item,
                })
                .collect(),
        }
    }
}

/// Writes `t` as one pretty-printed JSON document and a newline.
pub fn write(t: &Transcript, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &Document::new(t))?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;

    #[test]
    fn document_has_metadata_items_and_marks() {
        let t = fixture::transcript();
        let mut buf = Vec::new();
        write(&t, &mut buf).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(doc["format"], FORMAT);
        assert_eq!(doc["version"], 1);
        let s = &doc["session"];
        assert_eq!(s["subject"], "agent:<b>reconciler</b>");
        assert_eq!(s["jti"], "jti-1");
        assert_eq!(s["target"], "orders");
        assert_eq!(s["ticket"], "OPS-1234");
        assert_eq!(s["client_addr"], "127.0.0.1:51234");
        assert_eq!(s["started"], "2026-11-25T18:40:01.123Z");
        assert_eq!(s["ended"], "2026-11-25T18:40:06.123Z");
        assert_eq!(s["close_reason"], "client_terminated");
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 6);
        let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "statement",
                "statement",
                "statement",
                "denied",
                "error",
                "approval"
            ]
        );
        assert_eq!(items[0]["offset_us"], 1_000);
        assert_eq!(
            items[0]["request"]["text"],
            "select id, note, card from invoices"
        );
        let rows = &items[0]["results"][0]["rows"];
        assert_eq!(rows[0][1], "<script>alert(1)</script>");
        assert_eq!(rows[0][2]["masked"], true);
        assert_eq!(rows[0][2]["value"], "****1111");
        assert_eq!(rows[1][2], serde_json::Value::Null);
        assert_eq!(items[1]["request"]["params"][0]["value"], "42");
        assert_eq!(items[2]["results"][0]["error"]["code"], "22012");
        assert_eq!(items[3]["decision"], "deny");
        assert_eq!(items[3]["text"], "TRUNCATE invoices");
        assert_eq!(items[4]["code"], "42501");
        assert_eq!(items[5]["decision"], "approved");
        assert_eq!(items[5]["approver"], "alice");
        assert!(items[0].get("decision").is_none());
    }
}
