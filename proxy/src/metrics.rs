//! The gateway's counters, and their Prometheus text exposition.
//!
//! [`Metrics`] is a struct of atomics shared by every connection task
//! (through [`Shared`](crate::serve::Shared)) and read by the admin API's
//! `GET /metrics`. Nothing here locks or allocates on the data path:
//!
//! - connections are counted by the task that serves one
//!   ([`Metrics::connection`] returns a guard that counts the end, also
//!   when the task is aborted);
//! - what happened in sessions (opened, refused and why, closed and why,
//!   verdicts) is counted from the events the sessions hand to the store,
//!   by [`Metrics::observe`], which [`RecordingWriter`] calls on every
//!   append and submit. Events are counted by their
//!   [`EventKind`](gatehouse_core::event::EventKind); only `Verdict`,
//!   `Refused` and `Closed` events (one per statement or session, not per
//!   frame) are looked into, with a validated zero-copy
//!   [`rkyv::access`] of the archive, no deserialization. They are counted
//!   when handed to the store, whether or not the store then managed to
//!   write them: a session that ended because the store failed is still
//!   counted as closed with `store_failed`.
//! - the store's own counters (events written, batches, fsyncs) and health
//!   come from [`gatehouse_store::Store`] at scrape time.
//!
//! What it is not: a general registry. The exposition is written by hand
//! ([`render`]); every series is listed there.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_core::event::{
    ArchivedEvent, Body, CloseReason, Decision, Encoded, EventKind, Refusal,
};
use gatehouse_store::{Ack, StoreError, StoreStats, Writer};

use crate::checkpoints::SessionRegistry;
use rkyv::rancor;

/// The archived [`Body`] (core exports only the archived event).
type ArchivedBody = <Body as rkyv::Archive>::Archived;

/// `gatehouse_sessions_refused_total`'s `reason` labels, in [`refusal_index`] order.
const REFUSALS: [&str; 15] = [
    "malformed",
    "bad_signature",
    "unknown_key",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "wrong_target",
    "used_up",
    "revoked",
    "missing_claim",
    "unknown_target",
    "tls_required",
    "upstream_unavailable",
    "store_unavailable",
];

/// `gatehouse_sessions_closed_total`'s `reason` labels, in [`close_index`] order.
const CLOSE_REASONS: [&str; 12] = [
    "client_terminated",
    "client_disconnected",
    "upstream_closed",
    "client_protocol_error",
    "upstream_protocol_error",
    "io_error",
    "shutdown",
    "refused",
    "upstream_unavailable",
    "store_failed",
    "limit_reached",
    "revoked",
];

/// `gatehouse_verdicts_total`'s `decision` labels, in [`decision_index`] order.
const DECISIONS: [&str; 3] = ["allow", "deny", "hold"];

fn refusal_index(r: Refusal) -> usize {
    match r {
        Refusal::Malformed => 0,
        Refusal::BadSignature => 1,
        Refusal::UnknownKey => 2,
        Refusal::Expired => 3,
        Refusal::NotYetValid => 4,
        Refusal::WrongAudience => 5,
        Refusal::WrongIssuer => 6,
        Refusal::WrongTarget => 7,
        Refusal::UsedUp => 8,
        Refusal::Revoked => 9,
        Refusal::MissingClaim => 10,
        Refusal::UnknownTarget => 11,
        Refusal::TlsRequired => 12,
        Refusal::UpstreamUnavailable => 13,
        Refusal::StoreUnavailable => 14,
    }
}

fn close_index(r: CloseReason) -> usize {
    match r {
        CloseReason::ClientTerminated => 0,
        CloseReason::ClientDisconnected => 1,
        CloseReason::UpstreamClosed => 2,
        CloseReason::ClientProtocolError => 3,
        CloseReason::UpstreamProtocolError => 4,
        CloseReason::IoError => 5,
        CloseReason::Shutdown => 6,
        CloseReason::Refused => 7,
        CloseReason::UpstreamUnavailable => 8,
        CloseReason::StoreFailed => 9,
        CloseReason::LimitReached => 10,
        CloseReason::Revoked => 11,
    }
}

fn decision_index(d: Decision) -> usize {
    match d {
        Decision::Allow => 0,
        Decision::Deny => 1,
        Decision::Hold => 2,
    }
}

/// The gateway's counters. All `Relaxed`: each is read on its own.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: AtomicU64,
    connections_closed: AtomicU64,
    sessions_opened: AtomicU64,
    refused: [AtomicU64; REFUSALS.len()],
    closed: [AtomicU64; CLOSE_REASONS.len()],
    verdicts: [AtomicU64; DECISIONS.len()],
    statements: AtomicU64,
    events_submitted: AtomicU64,
    event_bytes_submitted: AtomicU64,
    store_errors: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    /// Connections accepted and not yet ended.
    pub fn open_connections(&self) -> u64 {
        get(&self.connections).saturating_sub(get(&self.connections_closed))
    }

    /// Counts an accepted connection; dropping the guard counts its end.
    pub fn connection(self: &Arc<Self>) -> ConnectionGuard {
        bump(&self.connections, 1);
        ConnectionGuard(self.clone())
    }

    /// Counts what `events`, about to be handed to the store, say: sessions
    /// opened, refused and closed (by reason), statements, verdicts (by
    /// decision), and the events and archived bytes submitted.
    pub fn observe(&self, events: &[Encoded]) {
        let mut bytes = 0u64;
        for enc in events {
            bytes += enc.bytes.len() as u64;
            match enc.kind {
                EventKind::Opened => bump(&self.sessions_opened, 1),
                // An HTTP request is an HTTP session's statement.
                EventKind::Statement | EventKind::HttpRequest => bump(&self.statements, 1),
                EventKind::Refused | EventKind::Closed | EventKind::Verdict => self.look_into(enc),
                EventKind::Frame
                | EventKind::CommandComplete
                | EventKind::Error
                | EventKind::Masked
                | EventKind::Revoked
                | EventKind::HttpResponse
                | EventKind::HttpBody
                | EventKind::WsMessage => {}
            }
        }
        bump(&self.events_submitted, events.len() as u64);
        bump(&self.event_bytes_submitted, bytes);
    }

    /// Counts a refused session's reason, a close reason or a decision.
    fn look_into(&self, enc: &Encoded) {
        let Ok(event) = rkyv::access::<ArchivedEvent, rancor::Error>(&enc.bytes) else {
            // The store refuses it too, and counts that.
            return;
        };
        // Unit enums: deserializing them reads one tag, nothing more.
        match &event.body {
            ArchivedBody::Refused(r) => {
                if let Ok(reason) = rkyv::deserialize::<Refusal, rancor::Error>(&r.reason) {
                    self.count(&self.refused, refusal_index(reason));
                }
            }
            ArchivedBody::Closed(c) => {
                if let Ok(reason) = rkyv::deserialize::<CloseReason, rancor::Error>(&c.reason) {
                    self.count(&self.closed, close_index(reason));
                }
            }
            ArchivedBody::Verdict(v) => {
                if let Ok(decision) = rkyv::deserialize::<Decision, rancor::Error>(&v.decision) {
                    self.count(&self.verdicts, decision_index(decision));
                }
            }
            _ => {}
        }
    }

    fn count<const N: usize>(&self, counters: &[AtomicU64; N], index: usize) {
        if let Some(c) = counters.get(index) {
            bump(c, 1);
        }
    }

    /// Counts a call to the store that failed.
    pub fn store_error(&self) {
        bump(&self.store_errors, 1);
    }
}

/// Counts the end of a connection when dropped.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        bump(&self.0.connections_closed, 1);
    }
}

/// The store's [`Writer`] with every append and submit counted by
/// [`Metrics::observe`] (and failures by [`Metrics::store_error`]), and
/// sessions starting and closing noted for the next checkpoint
/// ([`SessionRegistry::observe`]) when the gateway writes checkpoints.
/// Every other [`Writer`] method is reached through `Deref`.
#[derive(Clone, Debug)]
pub struct RecordingWriter {
    writer: Writer,
    metrics: Arc<Metrics>,
    sessions: Option<Arc<SessionRegistry>>,
}

impl RecordingWriter {
    /// Wraps `writer`.
    pub fn new(writer: Writer, metrics: Arc<Metrics>) -> RecordingWriter {
        RecordingWriter {
            writer,
            metrics,
            sessions: None,
        }
    }

    /// Also notes sessions starting and closing in `sessions`.
    pub fn with_sessions(mut self, sessions: Option<Arc<SessionRegistry>>) -> RecordingWriter {
        self.sessions = sessions;
        self
    }

    fn observe(&self, events: &[Encoded]) {
        self.metrics.observe(events);
        if let Some(sessions) = &self.sessions {
            sessions.observe(events);
        }
    }

    /// [`Writer::append`], counted.
    pub async fn append(&self, events: Vec<Encoded>) -> Result<(), StoreError> {
        self.observe(&events);
        let result = self.writer.append(events).await;
        if result.is_err() {
            self.metrics.store_error();
        }
        result
    }

    /// [`Writer::submit`], counted. A failure reported later through the
    /// [`Ack`] is not counted here (the store's health says it).
    pub async fn submit(&self, events: Vec<Encoded>) -> Result<Ack, StoreError> {
        self.observe(&events);
        let result = self.writer.submit(events).await;
        if result.is_err() {
            self.metrics.store_error();
        }
        result
    }
}

impl std::ops::Deref for RecordingWriter {
    type Target = Writer;

    fn deref(&self) -> &Writer {
        &self.writer
    }
}

/// What a scrape reads besides [`Metrics`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The store's writer-thread counters.
    pub store: StoreStats,
    /// Whether the store accepts appends.
    pub store_healthy: bool,
    /// Bytes the store's directory takes on disk, if it could be read.
    pub store_disk_bytes: Option<u64>,
    /// Statements waiting for an approver.
    pub approvals_pending: usize,
    /// Whether the gateway accepts sessions (not shutting down, store
    /// healthy).
    pub ready: bool,
}

/// One metric's `# HELP` and `# TYPE` lines.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn single(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    names: &[&str],
    counters: &[AtomicU64],
) {
    head(out, name, "counter", help);
    for (value, counter) in names.iter().zip(counters) {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {}", get(counter));
    }
}

/// The Prometheus text exposition (format 0.0.4) of `m` and `s`.
pub fn render(m: &Metrics, s: &Snapshot) -> String {
    let mut out = String::with_capacity(8 << 10);
    head(
        &mut out,
        "gatehouse_build_info",
        "gauge",
        "The gateway's version; always 1.",
    );
    let _ = writeln!(
        out,
        "gatehouse_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    single(
        &mut out,
        "gatehouse_ready",
        "gauge",
        "1 when the gateway accepts sessions and its store writes (what /readyz says).",
        u64::from(s.ready),
    );
    let opened = get(&m.connections);
    let ended = get(&m.connections_closed);
    single(
        &mut out,
        "gatehouse_connections_total",
        "counter",
        "Client connections accepted.",
        opened,
    );
    single(
        &mut out,
        "gatehouse_connections_closed_total",
        "counter",
        "Client connections that ended.",
        ended,
    );
    single(
        &mut out,
        "gatehouse_connections_open",
        "gauge",
        "Client connections open now.",
        opened.saturating_sub(ended),
    );
    single(
        &mut out,
        "gatehouse_sessions_opened_total",
        "counter",
        "Sessions opened: a grant was accepted and the target reached.",
        get(&m.sessions_opened),
    );
    labelled(
        &mut out,
        "gatehouse_sessions_refused_total",
        "Connections refused before reaching a target, by reason.",
        "reason",
        &REFUSALS,
        &m.refused,
    );
    labelled(
        &mut out,
        "gatehouse_sessions_closed_total",
        "Sessions closed, by reason (refused ones included, as reason \"refused\").",
        "reason",
        &CLOSE_REASONS,
        &m.closed,
    );
    single(
        &mut out,
        "gatehouse_statements_total",
        "counter",
        "Statements recorded (simple queries, and each execution of a prepared one).",
        get(&m.statements),
    );
    labelled(
        &mut out,
        "gatehouse_verdicts_total",
        "Plan verdicts, by decision; a held statement that is then decided counts a hold and \
         the decision.",
        "decision",
        &DECISIONS,
        &m.verdicts,
    );
    single(
        &mut out,
        "gatehouse_approvals_pending",
        "gauge",
        "Statements waiting for an approver.",
        s.approvals_pending as u64,
    );
    single(
        &mut out,
        "gatehouse_store_healthy",
        "gauge",
        "1 while the store accepts appends; 0 after a write or fsync failed (until the store \
         recovers in place, once the disk takes writes again) or once it is shut down.",
        u64::from(s.store_healthy),
    );
    single(
        &mut out,
        "gatehouse_store_submitted_events_total",
        "counter",
        "Events handed to the store.",
        get(&m.events_submitted),
    );
    single(
        &mut out,
        "gatehouse_store_submitted_bytes_total",
        "counter",
        "Archived bytes of the events handed to the store.",
        get(&m.event_bytes_submitted),
    );
    single(
        &mut out,
        "gatehouse_store_write_errors_total",
        "counter",
        "Appends and submits the store refused (poisoned, closed, invalid).",
        get(&m.store_errors),
    );
    single(
        &mut out,
        "gatehouse_store_events_total",
        "counter",
        "Events the store wrote.",
        s.store.events,
    );
    single(
        &mut out,
        "gatehouse_store_submissions_total",
        "counter",
        "Submissions the store wrote and acknowledged.",
        s.store.submissions,
    );
    single(
        &mut out,
        "gatehouse_store_batches_total",
        "counter",
        "Atomic batches (group commits) the store wrote.",
        s.store.batches,
    );
    single(
        &mut out,
        "gatehouse_store_fsyncs_total",
        "counter",
        "fsyncs of the store's journal.",
        s.store.syncs,
    );
    single(
        &mut out,
        "gatehouse_store_refused_submissions_total",
        "counter",
        "Submissions the store refused as invalid or out of sequence.",
        s.store.refused,
    );
    single(
        &mut out,
        "gatehouse_store_recoveries_total",
        "counter",
        "Times the store recovered in place after a failed write or fsync.",
        s.store.recoveries,
    );
    if let Some(bytes) = s.store_disk_bytes {
        single(
            &mut out,
            "gatehouse_store_disk_bytes",
            "gauge",
            "Bytes of the files in the store's directory.",
            bytes,
        );
    }
    out
}

/// The total size of the files under `dir` (not following symlinks);
/// `None` when `dir` cannot be read.
pub fn disk_usage(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    let mut first = true;
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(_) if !first => continue,
            Err(_) => return None,
        };
        first = false;
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::event::{Body, Closed, Recorder, SessionId, StatementProtocol, Verdict};

    fn verdict(decision: Decision) -> Body {
        Body::Verdict(Verdict {
            decision,
            protocol: StatementProtocol::Simple,
            statement_name: String::new(),
            text: String::new(),
            kinds: vec!["select".into()],
            accesses: Vec::new(),
            reason: String::new(),
            approval: String::new(),
            approver: String::new(),
        })
    }

    #[test]
    fn observe_counts_verdicts_and_close_reasons() {
        let metrics = Arc::new(Metrics::default());
        let mut rec = Recorder::new(SessionId([1; 16]));
        let events = vec![
            rec.record(1, verdict(Decision::Allow)),
            rec.record(2, verdict(Decision::Deny)),
            rec.record(3, verdict(Decision::Deny)),
            rec.record(
                4,
                Body::Closed(Closed {
                    reason: CloseReason::StoreFailed,
                    bytes_to_upstream: 0,
                    bytes_to_client: 0,
                    statements: 0,
                    duration_us: 0,
                    seal: None,
                }),
            ),
        ];
        metrics.observe(&events);
        {
            let _guard = metrics.connection();
        }
        let text = render(&metrics, &Snapshot::default());
        assert!(text.contains("gatehouse_verdicts_total{decision=\"allow\"} 1\n"));
        assert!(text.contains("gatehouse_verdicts_total{decision=\"deny\"} 2\n"));
        assert!(text.contains("gatehouse_sessions_closed_total{reason=\"store_failed\"} 1\n"));
        assert!(text.contains("gatehouse_connections_total 1\n"));
        assert!(text.contains("gatehouse_connections_open 0\n"));
        assert!(text.contains("gatehouse_store_submitted_events_total 4\n"));
        // Every sample line belongs to a declared metric.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(text.contains(&format!("# TYPE {name} ")), "{line}");
        }
    }
}
