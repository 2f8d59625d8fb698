//! A transcript exported for people and tools outside Gatehouse: one JSON
//! document, CSV (a row per item), one self-contained HTML page, or an
//! asciicast v2 recording of the psql-like view.
//!
//! Every format is written from the same [`Transcript`] that `show`
//! prints, so an export shows what the client received — masked values
//! as masked and marked. The writers are pure: a transcript in, bytes out.
//!
//! What this module is not: a template engine. The HTML page is written
//! with plain, escaped writes ([`html::escape`]).

pub mod asciicast;
pub mod csv;
pub mod html;
pub mod json;

use std::io::{self, Write};

use crate::transcript::{Item, ItemKind, Request, Transcript};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON document: the session's metadata, then its items.
    Json,
    /// One row per item, with a header row.
    Csv,
    /// One self-contained HTML page for a browser.
    Html,
    /// An asciicast v2 recording of the psql-like view (`asciinema play`).
    Asciicast,
}

/// Writes `t` in `format`.
pub fn write(t: &Transcript, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json => json::write(t, out),
        Format::Csv => csv::write(t, out),
        Format::Html => html::write(t, out),
        Format::Asciicast => asciicast::write(t, out),
    }
}

/// The item's offset from the session's start, in microseconds.
pub(crate) fn offset_of(t: &Transcript, item: &Item) -> i64 {
    item.at_us.saturating_sub(t.header.started_us)
}

/// The statement text of a request, if it has one.
pub(crate) fn request_text(r: &Request) -> Option<&str> {
    match r {
        Request::Simple { text } => Some(text),
        Request::Extended { text, .. } | Request::Prepare { text, .. } => text.as_deref(),
        Request::FunctionCall => None,
    }
}

/// The item's kind as JSON and CSV name it.
pub(crate) fn kind_name(kind: &ItemKind) -> &'static str {
    match kind {
        ItemKind::Statement(_) => "statement",
        ItemKind::Http(_) => "http",
        ItemKind::Notification(_) => "notification",
        ItemKind::Notice(_) => "notice",
        ItemKind::Error(_) => "error",
        ItemKind::Parameter { .. } => "parameter",
        ItemKind::Malformed { .. } => "malformed",
        ItemKind::Denied { .. } => "denied",
        ItemKind::Approval { .. } => "approval",
        ItemKind::Revoked { .. } => "revoked",
        ItemKind::Unreadable { .. } => "unreadable",
    }
}

#[cfg(test)]
pub(crate) mod fixture {
    //! A hand-built transcript with one of everything the writers show.

    use gatehouse_core::event::SessionId;

    use crate::transcript::{
        Column, Diagnostic, Entry, Header, Item, ItemKind, Param, Request, ResultBlock,
        SessionStatus, Transcript, Value,
    };

    pub const T0: i64 = 1_795_632_001_123_000;

    fn item(at_us: i64, order: u64, kind: ItemKind) -> Item {
        Item { at_us, kind, order }
    }

    /// Session metadata, a SELECT with a hostile cell and a masked cell,
    /// an extended query with a parameter, an error, a denial and an
    /// approval.
    pub fn transcript() -> Transcript {
        let mut header = Header::new(SessionId([7; 16]));
        header.subject = Some("agent:<b>reconciler</b>".into());
        header.jti = Some("jti-1".into());
        header.purpose = Some("reconcile \"invoices\", OPS-1234".into());
        header.ticket = Some("OPS-1234".into());
        header.target = Some("orders".into());
        header.client_addr = Some("127.0.0.1:51234".into());
        header.started_us = T0;
        header.duration_us = 5_000_000;
        header.denied = 1;
        header.status = SessionStatus::Closed {
            reason: "client_terminated",
            text: "client terminated",
            bytes_to_upstream: 10,
            bytes_to_client: 20,
            statements: 4,
        };
        let select = Entry {
            request: Request::Simple {
                text: "select id, note, card from invoices".into(),
            },
            results: vec![ResultBlock {
                columns: vec![
                    Column {
                        name: "id".into(),
                        type_oid: 23,
                        format: 0,
                    },
                    Column {
                        name: "note".into(),
                        type_oid: 25,
                        format: 0,
                    },
                    Column {
                        name: "card".into(),
                        type_oid: 25,
                        format: 0,
                    },
                ],
                rows: vec![
                    vec![
                        Value::Text("1".into()),
                        Value::Text("<script>alert(1)</script>".into()),
                        Value::Text("****1111".into()).into_masked(),
                    ],
                    vec![
                        Value::Text("2".into()),
                        Value::Text("a,\"quoted\"\nline".into()),
                        Value::Null,
                    ],
                ],
                rows_received: 2,
                masked_cells: 1,
                tag: Some("SELECT 2".into()),
                rows_affected: Some(2),
                done_us: Some(T0 + 1_500),
                ..ResultBlock::default()
            }],
            duration_us: Some(1_700),
            skipped: false,
            parameters: Vec::new(),
        };
        let extended = Entry {
            request: Request::Extended {
                text: Some("select total from invoices where id = $1".into()),
                statement: String::new(),
                portal: String::new(),
                params: vec![Param::decode(Some(b"42"), 0, 23)],
                max_rows: 0,
                continued: false,
            },
            results: vec![ResultBlock {
                columns: vec![Column {
                    name: "total".into(),
                    type_oid: 1700,
                    format: 0,
                }],
                rows: vec![vec![Value::Text("10.00".into())]],
                rows_received: 1,
                tag: Some("SELECT 1".into()),
                rows_affected: Some(1),
                done_us: Some(T0 + 2_001_000),
                ..ResultBlock::default()
            }],
            duration_us: Some(1_000),
            skipped: false,
            parameters: Vec::new(),
        };
        let failing = Entry {
            request: Request::Simple {
                text: "select 1/0".into(),
            },
            results: vec![ResultBlock {
                error: Some(Diagnostic {
                    severity: "ERROR".into(),
                    code: "22012".into(),
                    message: "division by zero".into(),
                    ..Diagnostic::default()
                }),
                done_us: Some(T0 + 3_000_500),
                ..ResultBlock::default()
            }],
            duration_us: Some(500),
            skipped: false,
            parameters: Vec::new(),
        };
        Transcript {
            header,
            items: vec![
                item(T0 + 1_000, 1, ItemKind::Statement(select)),
                item(T0 + 2_000_000, 2, ItemKind::Statement(extended)),
                item(T0 + 3_000_000, 3, ItemKind::Statement(failing)),
                item(
                    T0 + 4_000_000,
                    4,
                    ItemKind::Denied {
                        text: "TRUNCATE invoices".into(),
                        reason: "the plan does not allow truncate on public.invoices".into(),
                    },
                ),
                item(
                    T0 + 4_000_100,
                    5,
                    ItemKind::Error(Diagnostic {
                        severity: "ERROR".into(),
                        code: "42501".into(),
                        message: "gatehouse: denied".into(),
                        ..Diagnostic::default()
                    }),
                ),
                item(
                    T0 + 4_500_000,
                    6,
                    ItemKind::Approval {
                        id: "ap-1".into(),
                        state: "approved",
                        approver: "alice".into(),
                        detail: "checked with finance".into(),
                    },
                ),
            ],
            max_rows: Some(100),
        }
    }
}
