//! One HTTP session: a grant's use on one client connection, and its
//! record. Events are numbered and chained as they happen ([`SessionLog::record`])
//! and handed to the store in that order: durably before anything is
//! forwarded upstream ([`SessionLog::flush_durable`]), without waiting for
//! what the client receives ([`SessionLog::flush`]), with a bounded backlog
//! (a response body whose events the store has not taken waits).

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use gatehouse_core::event::{
    Body, CloseReason, Closed, Decision as EventDecision, Direction, Encoded, HttpBody,
    HttpResponse, Recorder, SessionId, StatementProtocol, Verdict,
};
use gatehouse_core::http::rules::HttpVerdict;

use super::now_us;
use gatehouse_store::StoreError;

use crate::metrics::RecordingWriter;

/// Request body pieces recorded per event at most.
const BODY_EVENT_BYTES: usize = 256 << 10;

/// Backlog past which a response body waits for the store.
pub const BACKLOG_BYTES: usize = 4 << 20;

/// A session's record and totals.
#[derive(Debug)]
pub struct SessionLog {
    state: Mutex<State>,
    /// Held while events are handed to the store, so that they arrive in
    /// the order they were recorded.
    submit: tokio::sync::Mutex<()>,
    writer: RecordingWriter,
}

#[derive(Debug)]
struct State {
    recorder: Recorder,
    pending: Vec<Encoded>,
    pending_bytes: usize,
    started_us: i64,
    requests: u64,
    bytes_up: u64,
    bytes_down: u64,
    closed: bool,
}

impl SessionLog {
    /// A new session's log.
    pub fn new(recorder: Recorder, writer: RecordingWriter, now_us: i64) -> Arc<SessionLog> {
        Arc::new(SessionLog {
            state: Mutex::new(State {
                recorder,
                pending: Vec::new(),
                pending_bytes: 0,
                started_us: now_us,
                requests: 0,
                bytes_up: 0,
                bytes_down: 0,
                closed: false,
            }),
            submit: tokio::sync::Mutex::new(()),
            writer,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.state().recorder.session()
    }

    /// Records `body` as happening at `at_us` (not yet handed to the
    /// store). Nothing is recorded after the close.
    pub fn record(&self, at_us: i64, body: Body) {
        let mut s = self.state();
        if s.closed {
            return;
        }
        let encoded = s.recorder.record(at_us, body);
        s.pending_bytes += encoded.bytes.len();
        s.pending.push(encoded);
    }

    /// Counts a request and the body bytes that crossed.
    pub fn count(&self, requests: u64, up: u64, down: u64) {
        let mut s = self.state();
        s.requests += requests;
        s.bytes_up += up;
        s.bytes_down += down;
    }

    /// Requests so far.
    pub fn requests(&self) -> u64 {
        self.state().requests
    }

    /// Whether the backlog is past [`BACKLOG_BYTES`].
    pub fn backlogged(&self) -> bool {
        self.state().pending_bytes > BACKLOG_BYTES
    }

    /// Hands what is recorded to the store without waiting for it to be
    /// durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _order = self.submit.lock().await;
        let events = self.take();
        if events.is_empty() {
            return Ok(());
        }
        let ack = self.writer.submit(events).await?;
        drop(ack);
        Ok(())
    }

    /// Hands what is recorded to the store and waits until it is durable
    /// (per the store's durability mode): before anything is forwarded.
    pub async fn flush_durable(&self) -> Result<(), StoreError> {
        let ack = {
            let _order = self.submit.lock().await;
            let events = self.take();
            if events.is_empty() {
                return Ok(());
            }
            self.writer.submit(events).await?
        };
        ack.await
    }

    fn take(&self) -> Vec<Encoded> {
        let mut s = self.state();
        s.pending_bytes = 0;
        std::mem::take(&mut s.pending)
    }

    /// Records the close (sealed when the recorder has a key) and hands
    /// everything to the store, waiting until it is durable. Later calls
    /// do nothing. The hand-over runs on a task of its own: a caller
    /// dropped while it waits (hyper drops a request's future when its
    /// client leaves) does not lose the Closed event.
    pub async fn close(self: &Arc<Self>, reason: CloseReason, now_us: i64) {
        {
            let mut s = self.state();
            if s.closed {
                return;
            }
            let closed = Closed {
                reason,
                bytes_to_upstream: s.bytes_up,
                bytes_to_client: s.bytes_down,
                statements: s.requests,
                duration_us: u64::try_from(now_us - s.started_us).unwrap_or(0),
                seal: None,
            };
            let encoded = s.recorder.record(now_us, Body::Closed(closed));
            s.pending.push(encoded);
            s.closed = true;
        }
        let log = Arc::clone(self);
        let flushed = tokio::spawn(async move { log.flush_durable().await });
        match flushed.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("store refused the end of an HTTP session: {e}"),
            Err(e) => tracing::error!("the end of an HTTP session was not recorded: {e}"),
        }
    }

    /// Closes the session from a destructor: on a task, when there is a
    /// runtime to run one.
    pub fn close_later(self: &Arc<Self>, reason: CloseReason) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let log = Arc::clone(self);
            runtime.spawn(async move { log.close(reason, now_us()).await });
        }
    }
}

/// Closes a session that is dropped before it is handed on (its opening
/// request's future dropped while the Opened event was being made
/// durable): the record never holds an Opened without its Closed.
pub struct CloseOnDrop(pub Option<Arc<SessionLog>>);

impl CloseOnDrop {
    /// The session is handed on: its new owner closes it.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(log) = self.0.take() {
            log.close_later(CloseReason::ClientDisconnected);
        }
    }
}

/// Records the plan's answer to a request.
pub fn record_verdict(
    log: &SessionLog,
    verdict: &HttpVerdict,
    decision: EventDecision,
    reason: &str,
    approval: &str,
    approver: &str,
) {
    log.record(
        now_us(),
        Body::Verdict(Verdict {
            decision,
            protocol: StatementProtocol::Http,
            statement_name: String::new(),
            text: verdict.operation.clone(),
            kinds: vec![
                verdict
                    .operation
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            ],
            accesses: vec![verdict.operation.clone()],
            reason: reason.to_owned(),
            approval: approval.to_owned(),
            approver: approver.to_owned(),
        }),
    );
}

/// Records a whole body in pieces of at most [`BODY_EVENT_BYTES`].
pub fn record_body(log: &SessionLog, exchange: u32, dir: Direction, body: &Bytes) {
    let mut at = 0;
    loop {
        let end = (at + BODY_EVENT_BYTES).min(body.len());
        log.record(
            now_us(),
            Body::HttpBody(Box::new(HttpBody {
                exchange,
                dir,
                bytes: body.slice(at..end),
                end: end == body.len(),
            })),
        );
        if end == body.len() {
            break;
        }
        at = end;
    }
}

/// Records a response head as sent to the client, credentials redacted
/// (`credential_header`: the target's own, when it is a custom header).
pub fn record_head<B>(
    log: &SessionLog,
    exchange: u32,
    response: &http::Response<B>,
    credential_header: Option<&str>,
    from_gateway: bool,
) {
    log.record(
        now_us(),
        Body::HttpResponse(Box::new(HttpResponse {
            exchange,
            status: response.status().as_u16(),
            headers: super::headers::recorded(response.headers(), credential_header),
            from_gateway,
        })),
    );
}
