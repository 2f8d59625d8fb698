//! A session transcript: what the client sent and what it received, rebuilt
//! from the recorded protocol frames alone.
//!
//! The store also holds semantic events (statements, command tags, errors);
//! those feed indexes and summaries. A transcript deliberately ignores them
//! and decodes the [`Frame`](gatehouse_core::event::Body::Frame) events
//! again, so it shows what actually crossed the gateway — masked values as
//! masked, injected errors as the client saw them — even if the gateway's
//! own interpretation had a bug. Only the header (who, which grant, why it
//! ended) comes from the `Opened`, `Refused` and `Closed` events, which
//! have no frame form.
//!
//! Masking: the frames hold the masked values already (what is recorded
//! is what left the gateway). A `Masked` event, recorded right before the
//! `Frame` event it describes, names the cells the gateway rewrote; the
//! transcript marks them — [`Value::Masked`] for row cells,
//! [`Copy::masked_lines`] for COPY data, [`Diagnostic::masked`] for error
//! and notice fields — and [`Header::masked`] sums up which rule hit which
//! column how often. None of this says what the original values were: the
//! recording never had them.
//!
//! HTTP sessions have no frames: their `HttpRequest`, `HttpResponse`,
//! `HttpBody` and `WsMessage` events are what crossed the gateway, so
//! those make up one [`Exchange`] item per request.
//!
//! [`TranscriptBuilder`] is fed events in order and returns a
//! [`Transcript`]; [`crate::render`] prints one. Both the model and the
//! builder are pure: no store, no clock.

mod build;
mod header;
mod http;
mod types;
mod values;

use serde::Serialize;

pub use build::{KEEP_BYTES, TranscriptBuilder, TranscriptOptions};
pub(crate) use header::status_of;
pub use header::{Header, MaskTotal, SessionStatus, TlsSummary, close_reason_text, refusal_text};
pub use http::{
    BodyData, Content, Exchange, HeaderField, HttpVerdict, Piece, ResponseHead, WebSocket, WsEntry,
    channel_name, reason_phrase,
};
pub use types::decode_binary;
pub use values::{Param, Value};

/// A session rebuilt from its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    /// Who, what, when, and how it ended.
    pub header: Header,
    /// What happened, in the order the client caused it.
    pub items: Vec<Item>,
    /// The row cap this transcript was built with (`None`: every row kept).
    pub max_rows: Option<usize>,
}

impl Transcript {
    /// The statement entries, in order.
    pub fn statements(&self) -> impl Iterator<Item = &Entry> {
        self.items.iter().filter_map(|item| match &item.kind {
            ItemKind::Statement(entry) => Some(entry),
            _ => None,
        })
    }
}

/// One thing in a session's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// When the gateway saw it (for a statement: its client frame),
    /// microseconds since the Unix epoch.
    pub at_us: i64,
    /// What it is.
    #[serde(flatten)]
    pub kind: ItemKind,
    /// Position in the event stream, for ordering entries created late
    /// (an error answering a Parse) where they belong.
    #[serde(skip)]
    pub(crate) order: u64,
}

/// The kinds of timeline items.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ItemKind {
    /// A statement and its results.
    Statement(Entry),
    /// A NOTIFY delivered while no statement was running.
    Notification(Notification),
    /// A notice sent while no statement was running.
    Notice(Diagnostic),
    /// An error sent while no statement was running (e.g. the gateway's
    /// FATAL before it closed the session, or a refusal).
    Error(Diagnostic),
    /// A run-time parameter the target reported while no statement ran.
    Parameter {
        /// Its name.
        name: String,
        /// Its new value.
        value: String,
    },
    /// Bytes that do not decode as the protocol says they should.
    Malformed {
        /// `to_upstream` or `to_client`.
        direction: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// A statement the plan denied: the target never saw it. The error the
    /// client got follows.
    Denied {
        /// The SQL.
        text: String,
        /// What the plan lacks.
        reason: String,
    },
    /// A statement held for a human's approval, or the decision on one.
    Approval {
        /// The approval's id.
        id: String,
        /// `held`, `approved` or `denied`.
        state: &'static str,
        /// Who decided (empty while held).
        approver: String,
        /// What needs approval, or the approver's reason.
        detail: String,
    },
    /// An HTTP request, the plan's answer and the response (and the
    /// WebSocket stream it upgraded to, if it did).
    Http(Box<Exchange>),
    /// A grant was revoked (the one event of a revocation's own session).
    Revoked {
        /// The grant's `jti`.
        jti: String,
        /// Who revoked it.
        by: String,
        /// Why.
        reason: String,
    },
    /// A stored event that could not be read at all.
    Unreadable {
        /// The store's error.
        detail: String,
    },
}

/// How a statement reached the target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum Request {
    /// A simple Query message: the text as sent, possibly several
    /// statements, each with its own result block.
    Simple {
        /// The query string.
        text: String,
    },
    /// An Execute of a portal: the Parse text and the Bind parameters.
    Extended {
        /// The text given at Parse; `None` when the Parse was not recorded
        /// (e.g. the statement was prepared before recording began).
        text: Option<String>,
        /// The prepared statement's name (empty: unnamed).
        statement: String,
        /// The portal's name (empty: unnamed).
        portal: String,
        /// The Bind parameters, `$1` first.
        params: Vec<Param>,
        /// The Execute's row limit (0: none).
        max_rows: i32,
        /// True when this Execute continues a portal that an earlier
        /// Execute left suspended (fetching in chunks).
        continued: bool,
    },
    /// A Parse (or Bind) that failed before any Execute of it: shown so the
    /// error has its statement.
    Prepare {
        /// The SQL text.
        text: Option<String>,
        /// The prepared statement's name (empty: unnamed).
        statement: String,
    },
    /// The legacy function-call sub-protocol.
    FunctionCall,
}

/// A statement and what the client received for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// What was sent.
    pub request: Request,
    /// One block per statement result, in order.
    pub results: Vec<ResultBlock>,
    /// Microseconds from the request's frame to its last response (the
    /// ReadyForQuery of a simple query; the completion of an Execute).
    /// `None` if no response was recorded.
    pub duration_us: Option<i64>,
    /// True when the target skipped it: an earlier message of the same
    /// pipeline failed, so nothing ran until the next Sync.
    pub skipped: bool,
    /// Run-time parameters the target reported while it ran (after `SET`).
    pub parameters: Vec<(String, String)>,
}

impl Entry {
    /// The entry's last result block, creating one if there is none.
    pub(crate) fn last_block(&mut self) -> &mut ResultBlock {
        if self.results.is_empty() {
            self.results.push(ResultBlock::default());
        }
        let last = self.results.len() - 1;
        match self.results.get_mut(last) {
            Some(block) => block,
            None => unreachable!("a block was just ensured"),
        }
    }
}

/// The outcome of one statement.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResultBlock {
    /// The columns (RowDescription), if the result has rows or the client
    /// asked for them.
    pub columns: Vec<Column>,
    /// The rows the transcript keeps (see [`Transcript::max_rows`]).
    pub rows: Vec<Vec<Value>>,
    /// Every DataRow received, including those not kept.
    pub rows_received: u64,
    /// Cells the gateway masked, in every DataRow received (kept or not);
    /// the kept ones are [`Value::Masked`]. Absent from JSON when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub masked_cells: u64,
    /// The CommandComplete tag, e.g. `SELECT 1`.
    pub tag: Option<String>,
    /// The row count in the tag (`SELECT 5`, `INSERT 0 5`, `COPY 5`).
    pub rows_affected: Option<u64>,
    /// The query string was empty (EmptyQueryResponse).
    pub empty_query: bool,
    /// The Execute's row limit was reached (PortalSuspended).
    pub suspended: bool,
    /// The error that ended the statement.
    pub error: Option<Diagnostic>,
    /// Notices sent while it ran.
    pub notices: Vec<Diagnostic>,
    /// Notifications delivered while it ran or right after it.
    pub notifications: Vec<Notification>,
    /// COPY data, if the statement was a COPY.
    pub copy: Option<Copy>,
    /// When its completion (CommandComplete, ErrorResponse,
    /// EmptyQueryResponse, PortalSuspended) arrived.
    pub done_us: Option<i64>,
    /// Whether more messages may still belong to it.
    #[serde(skip)]
    pub(crate) open: bool,
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// The column name.
    pub name: String,
    /// The data type OID.
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// The fields of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Diagnostic {
    /// `ERROR`, `FATAL`, `NOTICE`, `WARNING`, … (non-localized when sent).
    pub severity: String,
    /// The SQLSTATE.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// `DETAIL`.
    pub detail: Option<String>,
    /// `HINT`.
    pub hint: Option<String>,
    /// The error's character position in the query text (1-based).
    pub position: Option<String>,
    /// `CONTEXT` (where, in a function or trigger).
    pub context: Option<String>,
    /// The fields the gateway masked (`message`, `detail`, `hint`,
    /// `context`), in field order. Absent from JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<&'static str>,
}

/// A NOTIFY delivered to the session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// The channel.
    pub channel: String,
    /// The payload.
    pub payload: String,
    /// The notifying backend's process id.
    pub pid: i32,
}

/// COPY data of one statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Copy {
    /// `in` (client to target), `out` (target to client) or `both`.
    pub direction: &'static str,
    /// `text` (text and CSV) or `binary`.
    pub format: &'static str,
    /// Text format: the data lines without their newline; binary format:
    /// each CopyData message in hex. At most the row cap.
    pub lines: Vec<String>,
    /// Lines (text) or messages (binary) received, including those not kept.
    pub lines_received: u64,
    /// Indexes into [`lines`](Self::lines) of the lines the gateway masked
    /// (a line is masked when a data message it came from was). Absent from
    /// JSON when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked_lines: Vec<usize>,
    /// Masked lines received, including those not kept. Absent from JSON
    /// when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub lines_masked: u64,
    /// Data bytes received.
    pub bytes: u64,
    /// The client's CopyFail message, if it aborted the COPY.
    pub failed: Option<String>,
    /// An incomplete last line, waiting for its newline.
    #[serde(skip)]
    pub(crate) partial: Vec<u8>,
    /// Whether a masked data message contributed to [`partial`](Self::partial).
    #[serde(skip)]
    pub(crate) partial_masked: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
