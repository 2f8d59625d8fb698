//! Rebuilding a transcript from a session's events.
//!
//! The builder follows the protocol the way the target does: every client
//! message that the target answers is queued as an [`Op`], and each server
//! message answers the op at the front of the queue. That is what matches
//! results to statements under pipelining (several Parse/Bind/Execute before
//! one Sync), and it follows the protocol's error rule: after an error in an
//! extended-protocol batch the target skips everything up to the Sync, so
//! the Executes in between are marked as skipped.
//!
//! Data the protocol does not expect is never fatal: it becomes a
//! [`ItemKind::Malformed`] item or is attached to the nearest statement.
//!
//! A `Masked` event describes the `Frame` event recorded right after it:
//! its cells (frame index within that event, field index within the frame)
//! are held until that event arrives and mark the row cells, COPY lines and
//! error fields its frames decode into. Cells that point at nothing (a
//! frame or field that does not exist, a frame of another kind) mark
//! nothing.

mod client;
mod copy;
mod flow;
mod http;
mod server;

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use gatehouse_core::event::{
    Body, Decision, Direction, Event, MaskedCell, SessionId, StatementProtocol, Verdict,
};
use gatehouse_core::pg::frame::{self, Frame};

use super::header::Header;
use super::values::Param;
pub use http::KEEP_BYTES;

use super::{Column, Entry, Item, ItemKind, Request, ResultBlock, Transcript};

/// How much a transcript keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TranscriptOptions {
    /// Rows (and COPY lines) kept per result; the rest are counted only.
    /// `None` keeps everything. With a cap, an HTTP body (and the messages
    /// of a WebSocket connection) also keeps only its first
    /// [`KEEP_BYTES`] bytes.
    pub max_rows: Option<usize>,
}

impl TranscriptOptions {
    /// The default cap of `gatehouse-replay show`.
    pub const DEFAULT_MAX_ROWS: usize = 100;

    /// Keep every row.
    pub fn all_rows() -> Self {
        TranscriptOptions { max_rows: None }
    }
}

impl Default for TranscriptOptions {
    /// Keep [`Self::DEFAULT_MAX_ROWS`] rows per result.
    fn default() -> Self {
        TranscriptOptions {
            max_rows: Some(Self::DEFAULT_MAX_ROWS),
        }
    }
}

/// A client message the target still owes an answer to.
#[derive(Debug)]
enum Op {
    /// A simple query, answered up to its ReadyForQuery.
    Query { item: usize },
    /// Answered by ParseComplete.
    Parse {
        order: u64,
        at_us: i64,
        name: String,
        text: String,
    },
    /// Answered by BindComplete.
    Bind {
        order: u64,
        at_us: i64,
        statement: String,
        text: Option<String>,
        portal: String,
        result_formats: Vec<i16>,
    },
    /// Answered by RowDescription or NoData (after ParameterDescription).
    Describe { kind: u8, name: String },
    /// Answered by CommandComplete, EmptyQueryResponse, PortalSuspended or
    /// an error.
    Execute { item: usize, portal: String },
    /// Answered by CloseComplete.
    Close,
    /// Answered by ReadyForQuery.
    Sync,
    /// Answered by FunctionCallResponse, then ReadyForQuery.
    FunctionCall { item: usize },
}

impl Op {
    /// An op answered on its own, before whatever statement follows it.
    fn is_preparatory(&self) -> bool {
        matches!(
            self,
            Op::Parse { .. } | Op::Bind { .. } | Op::Describe { .. } | Op::Close
        )
    }

    fn statement_item(&self) -> Option<usize> {
        match self {
            Op::Query { item } | Op::Execute { item, .. } | Op::FunctionCall { item } => {
                Some(*item)
            }
            _ => None,
        }
    }
}

/// A portal created by Bind, as the client's later messages refer to it.
#[derive(Debug, Clone)]
struct Portal {
    statement: String,
    text: Option<String>,
    params: Vec<Param>,
    suspended: bool,
}

/// A portal as the target has it: a Bind takes effect when the target
/// answers it, so that pipelined Binds of one portal name (drivers reuse
/// the unnamed portal) each describe the rows of their own Execute.
#[derive(Debug, Clone)]
struct Bound {
    statement: String,
    result_formats: Vec<i16>,
    /// From a Describe of the portal.
    columns: Option<Vec<Column>>,
}

/// Builds a [`Transcript`] from a session's events, fed in order.
#[derive(Debug)]
pub struct TranscriptBuilder {
    opts: TranscriptOptions,
    header: Header,
    first_us: Option<i64>,
    last_us: i64,
    closed: bool,
    items: Vec<Item>,
    /// Incremented per message; orders items.
    order: u64,
    pending: VecDeque<Op>,
    /// Prepared statement texts by name.
    statements: HashMap<String, String>,
    /// Columns of prepared statements, from Describe.
    statement_columns: HashMap<String, Vec<Column>>,
    /// Parameter types of prepared statements, from Parse or Describe.
    statement_params: HashMap<String, Vec<u32>>,
    portals: HashMap<String, Portal>,
    /// Portals the target has bound, by name.
    bound: HashMap<String, Bound>,
    /// The client has been greeted (first ReadyForQuery) or sent something.
    greeted: bool,
    /// The cells of a `Masked` event, for the next `Frame` event.
    masked: Option<Vec<MaskedCell>>,
    /// Target-bound `Frame` events still to come that the gateway wrote in
    /// place of a denied statement: not the client's, so not shown.
    injected: u32,
    /// Exchanges of an HTTP session.
    http: http::HttpState,
}

impl TranscriptBuilder {
    /// A builder for session `id`.
    pub fn new(id: SessionId, opts: TranscriptOptions) -> Self {
        TranscriptBuilder {
            opts,
            header: Header::new(id),
            first_us: None,
            last_us: 0,
            closed: false,
            items: Vec::new(),
            order: 0,
            pending: VecDeque::new(),
            statements: HashMap::new(),
            statement_columns: HashMap::new(),
            statement_params: HashMap::new(),
            portals: HashMap::new(),
            bound: HashMap::new(),
            greeted: false,
            masked: None,
            injected: 0,
            http: http::HttpState::default(),
        }
    }

    /// Builds the transcript of `events` in one go.
    pub fn build<'a>(
        id: SessionId,
        opts: TranscriptOptions,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Transcript {
        let mut b = TranscriptBuilder::new(id, opts);
        for e in events {
            b.push(e);
        }
        b.finish()
    }

    /// Takes the next event of the session.
    pub fn push(&mut self, event: &Event) {
        let at = event.at_us;
        self.header.events += 1;
        self.first_us.get_or_insert(at);
        self.last_us = at;
        match &event.body {
            Body::Opened(o) => self.header.opened(o),
            Body::Refused(r) => self.header.refused(r),
            Body::Closed(c) => {
                self.header.closed(c);
                self.closed = true;
            }
            Body::Frame(f) if f.dir == Direction::ToUpstream && self.injected > 0 => {
                self.injected -= 1;
            }
            Body::Frame(f) => {
                let masked = self.masked.take().unwrap_or_default();
                self.frames(f.dir, &f.bytes, at, masked);
            }
            // Semantic events restate what the frames say; the transcript
            // is rebuilt from the frames alone.
            Body::Statement(_) | Body::CommandComplete { .. } | Body::Error(_) => {}
            Body::Verdict(v) if v.protocol == StatementProtocol::Http && self.http_verdict(v) => {
                self.header.verdict(v.decision);
            }
            Body::Verdict(v) => self.verdict(v),
            Body::Revoked(r) => {
                self.order += 1;
                let kind = ItemKind::Revoked {
                    jti: r.jti.clone(),
                    by: r.by.clone(),
                    reason: r.reason.clone(),
                };
                self.push_item(at, kind);
            }
            Body::Masked(m) => {
                self.header.masked(m);
                self.masked = Some(m.cells.clone());
                self.http.masked(&m.hits);
            }
            Body::HttpRequest(r) => self.http_request(r, at),
            Body::HttpResponse(r) => self.http_response(r, at),
            Body::HttpBody(b) => self.http_body(b, at),
            Body::WsMessage(m) => self.ws_message(m, at),
        }
    }

    /// A verdict: a denial becomes an item, and the frame the gateway sent
    /// in the statement's place is not shown as the client's.
    fn verdict(&mut self, v: &Verdict) {
        self.header.verdict(v.decision);
        if !v.approval.is_empty() {
            let state = match v.decision {
                Decision::Hold => "held",
                Decision::Allow => "approved",
                Decision::Deny => "denied",
            };
            self.order += 1;
            let at = self.last_us;
            self.push_item(
                at,
                ItemKind::Approval {
                    id: v.approval.clone(),
                    state,
                    approver: v.approver.clone(),
                    detail: v.reason.clone(),
                },
            );
        }
        if v.decision == Decision::Deny {
            self.order += 1;
            let at = self.last_us;
            self.push_item(
                at,
                ItemKind::Denied {
                    text: v.text.clone(),
                    reason: v.reason.clone(),
                },
            );
            self.injected += 1;
        }
    }

    /// Notes an event that could not be read (`detail` says why); the
    /// transcript goes on without it.
    pub fn unreadable(&mut self, detail: String) {
        self.order += 1;
        let at = self.last_us;
        self.push_item(at, ItemKind::Unreadable { detail });
    }

    /// Fills the header from the store's summary of a session none of
    /// whose events could be read.
    pub fn summary_only(&mut self, s: &gatehouse_store::SessionSummary) {
        if let Some(o) = &s.opened {
            self.header.opened(o);
        }
        if let Some(r) = &s.refused {
            self.header.refused(r);
        }
        if let Some(c) = &s.closed {
            self.header.closed(c);
            self.closed = true;
        }
        self.first_us.get_or_insert(s.started_us);
        self.last_us = self.last_us.max(s.last_event_us);
    }

    /// The transcript.
    pub fn finish(mut self) -> Transcript {
        let first = self.first_us.unwrap_or(0);
        self.header.started_us = first;
        if !self.closed {
            self.header.duration_us = self.last_us.saturating_sub(first);
        }
        // Entries created when an answer arrived (a failed Parse) go where
        // their request was.
        self.items.sort_by_key(|item| item.order);
        Transcript {
            header: self.header,
            items: self.items,
            max_rows: self.opts.max_rows,
        }
    }

    // ---- frames ----

    /// The frames of one `Frame` event; `masked` are the cells its
    /// `Masked` event named (only the gateway's frames to the client are
    /// ever masked).
    fn frames(&mut self, dir: Direction, bytes: &Bytes, at: i64, mut masked: Vec<MaskedCell>) {
        masked.sort_unstable_by_key(|c| (c.frame, c.column));
        masked.dedup();
        let mut cells = masked.iter().peekable();
        let mut columns: Vec<u16> = Vec::new();
        let mut used = 0;
        for (index, f) in frame::split(bytes).enumerate() {
            used += f.bytes().len();
            self.order += 1;
            columns.clear();
            while let Some(c) = cells.next_if(|c| c.frame as usize <= index) {
                if c.frame as usize == index {
                    columns.push(c.column);
                }
            }
            match dir {
                Direction::ToUpstream => self.client(&f, at),
                Direction::ToClient => self.server(&f, at, &columns),
            }
        }
        if used < bytes.len() {
            self.order += 1;
            let detail = format!(
                "{} trailing byte(s) are not a whole frame",
                bytes.len() - used
            );
            self.malformed(dir, detail, at);
        }
    }

    fn malformed(&mut self, dir: Direction, detail: String, at: i64) {
        let direction = match dir {
            Direction::ToUpstream => "to_upstream",
            Direction::ToClient => "to_client",
        };
        self.push_item(at, ItemKind::Malformed { direction, detail });
    }

    fn push_item(&mut self, at_us: i64, kind: ItemKind) -> usize {
        self.items.push(Item {
            at_us,
            kind,
            order: self.order,
        });
        self.items.len() - 1
    }

    fn new_entry(&mut self, request: Request, at: i64) -> usize {
        self.push_item(
            at,
            ItemKind::Statement(Entry {
                request,
                results: Vec::new(),
                duration_us: None,
                skipped: false,
                parameters: Vec::new(),
            }),
        )
    }

    fn entry(&mut self, item: usize) -> Option<(i64, &mut Entry)> {
        let item = self.items.get_mut(item)?;
        match &mut item.kind {
            ItemKind::Statement(entry) => Some((item.at_us, entry)),
            _ => None,
        }
    }
}

/// The entry's open block, or a new one.
fn open_block(entry: &mut Entry) -> &mut ResultBlock {
    if !entry.results.last().is_some_and(|b| b.open) {
        entry.results.push(ResultBlock {
            open: true,
            ..ResultBlock::default()
        });
    }
    entry.last_block()
}

fn close_open_block(entry: &mut Entry) {
    if let Some(block) = entry.results.last_mut() {
        block.open = false;
    }
}

fn describe_tag(tag: u8) -> String {
    if tag.is_ascii_graphic() {
        format!("type '{}'", tag as char)
    } else {
        format!("type 0x{tag:02x}")
    }
}

fn describe_frame(f: &Frame) -> String {
    format!("{}, {} bytes", describe_tag(f.tag()), f.bytes().len())
}
