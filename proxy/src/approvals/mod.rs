//! Statements held for a human's approval: the gateway-wide registry.
//!
//! A session whose plan allows a statement only "with approval" registers
//! it here ([`ApprovalRegistry::request`]) and, in [`ApprovalMode::Wait`],
//! waits on the returned receiver until an approver decides through the
//! admin API ([`ApprovalRegistry::decide`]) or its own timeout passes (it
//! then [`withdraw`](ApprovalRegistry::withdraw)s the request). In
//! [`ApprovalMode::Reject`] the session refuses the statement at once and
//! nobody waits: an approval is kept, keyed by the grant's `jti` and the
//! exact statement text, for at most [`APPROVAL_TTL`], until the identical
//! statement comes again and takes it
//! ([`ApprovedStatements::take_approved`]), once.
//!
//! One registry is shared by every worker thread behind an `Arc`; its state
//! is one mutex, held only for map updates (never across IO). Everything is
//! bounded: at most [`MAX_PENDING`] pending requests (beyond that a request
//! is denied at once), at most [`MAX_APPROVED`] kept approvals and
//! [`MAX_CLOSED`] remembered decisions. Every new request, decision and
//! withdrawal is broadcast ([`ApprovalRegistry::subscribe`]) for
//! `GET /approvals/watch`, and each new request is POSTed to the webhook,
//! if one is configured, from a background thread.
//!
//! What this is not: durable. Pending requests and kept approvals live in
//! memory; a restarted gateway has none (the sessions that waited are gone
//! with it). Decisions are recorded as events by the sessions.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gatehouse_core::pg::ApprovedStatements;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};

mod webhook;

#[cfg(test)]
mod tests;

pub use crate::config::ApprovalSettings;

/// The most requests pending at once; beyond it a request is denied.
pub const MAX_PENDING: usize = 10_000;
/// The most approvals kept for reject-and-retry at once.
pub const MAX_APPROVED: usize = 10_000;
/// How many decided or withdrawn ids are remembered, so that deciding one
/// again says "already decided" rather than "unknown".
const MAX_CLOSED: usize = 10_000;
/// How long an approval granted in reject mode is kept for its retry, and
/// how long a reject-mode request (which no session withdraws) stays
/// pending.
pub const APPROVAL_TTL: Duration = Duration::from_secs(3600);
/// Events buffered per `watch` subscriber before it lags.
const EVENT_BUFFER: usize = 1024;
/// Who decides when the gateway itself refuses a request.
pub const GATEWAY_APPROVER: &str = "gatehouse";

/// A statement held for approval, as approvers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// Chosen by the session, unique in the gateway.
    pub id: String,
    /// The session's id (UUID text).
    pub session: String,
    /// The grant's `jti`.
    pub jti: String,
    /// The grant's subject (the agent).
    pub subject: String,
    /// The target the session is connected to.
    pub target: String,
    /// The grant's purpose.
    pub purpose: String,
    /// The grant's ticket, if any.
    pub ticket: Option<String>,
    /// The SQL.
    pub statement: String,
    /// What needs approval, e.g. `delete on public.invoices`.
    pub needs: Vec<String>,
    /// When the session asked, µs since the Unix epoch.
    pub requested_at_us: i64,
}

/// An approver's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the statement may run.
    pub approved: bool,
    /// Who decided: the admin token's name, or [`GATEWAY_APPROVER`].
    pub approver: String,
    /// Why (may be empty for an approval).
    pub reason: String,
}

/// What a statement that needs approval does to its session
/// (`[approvals] mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalMode {
    /// The statement waits at the gateway until an approver decides or the
    /// timeout passes. The default.
    #[default]
    Wait,
    /// The statement is refused at once with the approval's id; once
    /// approved, the identical statement passes once when retried.
    Reject,
}

/// What `watch` streams: one per new request, decision and withdrawal.
/// As JSON, `{"event": "requested", "approval": {…}}`,
/// `{"event": "decided", "approval": {…}, "decision": {…}}` or
/// `{"event": "withdrawn", "id": "…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ApprovalEvent {
    /// A statement was held.
    Requested {
        /// The request.
        approval: PendingApproval,
    },
    /// An approver decided.
    Decided {
        /// The request decided.
        approval: PendingApproval,
        /// The decision.
        decision: Decision,
    },
    /// The session ended or timed out before anyone decided.
    Withdrawn {
        /// The request's id.
        id: String,
    },
}

/// Why [`ApprovalRegistry::decide`] did not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// No such request is pending or remembered.
    #[error("no approval {0:?} is pending")]
    Unknown(String),
    /// Someone decided it already.
    #[error("approval {id:?} was already {} by {}", if .decision.approved { "approved" } else { "denied" }, .decision.approver)]
    AlreadyDecided {
        /// The request's id.
        id: String,
        /// The earlier decision.
        decision: Decision,
    },
    /// Its session ended or timed out before a decision.
    #[error("approval {0:?} is no longer pending: its session ended or stopped waiting")]
    Withdrawn(String),
}

/// The gateway's pending approvals, shared by all workers.
pub struct ApprovalRegistry {
    settings: ApprovalSettings,
    inner: Mutex<Inner>,
    events: broadcast::Sender<ApprovalEvent>,
    webhook: Option<webhook::Webhook>,
}

impl std::fmt::Debug for ApprovalRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("ApprovalRegistry")
            .field("settings", &self.settings)
            .field("pending", &inner.pending.len())
            .field("approved", &inner.approved_count)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Orders pending requests.
    next_seq: u64,
    pending: HashMap<String, Pending>,
    /// Recently decided or withdrawn ids, oldest first in `closed_order`.
    closed: HashMap<String, Closed>,
    closed_order: VecDeque<String>,
    /// Reject mode: approvals not yet taken, by (jti, statement).
    approved: HashMap<(String, String), VecDeque<Approved>>,
    approved_count: usize,
}

struct Pending {
    seq: u64,
    since: Instant,
    request: PendingApproval,
    reply: oneshot::Sender<Decision>,
}

#[derive(Debug, Clone)]
enum Closed {
    Decided(Decision),
    Withdrawn,
}

struct Approved {
    id: String,
    expires: Instant,
}

fn gateway_denial(reason: &str) -> Decision {
    Decision {
        approved: false,
        approver: GATEWAY_APPROVER.to_owned(),
        reason: reason.to_owned(),
    }
}

impl ApprovalRegistry {
    /// A registry with `settings`. Starts the webhook thread when a webhook
    /// is configured (if it cannot start, the error is logged and requests
    /// are not posted).
    pub fn new(settings: ApprovalSettings) -> Self {
        let webhook =
            settings
                .webhook_url
                .clone()
                .and_then(|url| match webhook::Webhook::start(url) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::error!("approval webhook not started: {e:#}");
                        None
                    }
                });
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        ApprovalRegistry {
            settings,
            inner: Mutex::new(Inner::default()),
            events,
            webhook,
        }
    }

    /// How long a session waits for a decision (`[approvals] timeout`).
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// Whether sessions wait or refuse-and-retry (`[approvals] mode`).
    pub fn mode(&self) -> ApprovalMode {
        self.settings.mode
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves maps that are still
        // consistent (every update is a single insert or remove).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a held statement; the receiver resolves when someone
    /// decides. It resolves at once to a denial by [`GATEWAY_APPROVER`]
    /// when [`MAX_PENDING`] requests are pending already, or when the id is
    /// in use. It is dropped (the receiver sees an error) if the request
    /// expires unanswered.
    pub fn request(&self, req: PendingApproval) -> oneshot::Receiver<Decision> {
        self.request_at(req, Instant::now())
    }

    fn request_at(&self, req: PendingApproval, now: Instant) -> oneshot::Receiver<Decision> {
        let (reply, rx) = oneshot::channel();
        let mut inner = self.lock();
        if inner.pending.len() >= MAX_PENDING {
            self.expire(&mut inner, now);
        }
        let refusal = if inner.pending.len() >= MAX_PENDING {
            Some("too many approvals pending")
        } else if inner.pending.contains_key(&req.id) || inner.closed.contains_key(&req.id) {
            Some("duplicate approval id")
        } else {
            None
        };
        if let Some(reason) = refusal {
            drop(inner);
            tracing::warn!(approval = %req.id, "approval request refused: {reason}");
            let _ = reply.send(gateway_denial(reason));
            return rx;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        // Sent under the lock, so that watchers see events in the order
        // they happened.
        let _ = self.events.send(ApprovalEvent::Requested {
            approval: req.clone(),
        });
        if let Some(webhook) = &self.webhook {
            webhook.post(&req);
        }
        inner.pending.insert(
            req.id.clone(),
            Pending {
                seq,
                since: now,
                request: req,
                reply,
            },
        );
        rx
    }

    /// The session ended or timed out first: forgets the request (no error
    /// if unknown or already decided).
    pub fn withdraw(&self, id: &str) {
        let mut inner = self.lock();
        if inner.pending.remove(id).is_some() {
            remember(&mut inner, id, Closed::Withdrawn);
            let _ = self
                .events
                .send(ApprovalEvent::Withdrawn { id: id.to_owned() });
        }
    }

    /// An approver decides. The waiting session (wait mode) gets the
    /// decision; in reject mode an approval is kept for the retry.
    pub fn decide(&self, id: &str, decision: Decision) -> Result<PendingApproval, DecideError> {
        self.decide_at(id, decision, Instant::now())
    }

    fn decide_at(
        &self,
        id: &str,
        decision: Decision,
        now: Instant,
    ) -> Result<PendingApproval, DecideError> {
        let mut inner = self.lock();
        let Some(pending) = inner.pending.remove(id) else {
            return Err(match inner.closed.get(id) {
                Some(Closed::Decided(earlier)) => DecideError::AlreadyDecided {
                    id: id.to_owned(),
                    decision: earlier.clone(),
                },
                Some(Closed::Withdrawn) => DecideError::Withdrawn(id.to_owned()),
                None => DecideError::Unknown(id.to_owned()),
            });
        };
        let Pending { request, reply, .. } = pending;
        if self.settings.mode == ApprovalMode::Wait && reply.is_closed() {
            // The session is gone without withdrawing (it ended abruptly).
            remember(&mut inner, id, Closed::Withdrawn);
            let _ = self
                .events
                .send(ApprovalEvent::Withdrawn { id: id.to_owned() });
            return Err(DecideError::Withdrawn(id.to_owned()));
        }
        if self.settings.mode == ApprovalMode::Reject && decision.approved {
            keep_approval(&mut inner, &request, now);
        }
        remember(&mut inner, id, Closed::Decided(decision.clone()));
        let _ = self.events.send(ApprovalEvent::Decided {
            approval: request.clone(),
            decision: decision.clone(),
        });
        let _ = reply.send(decision);
        Ok(request)
    }

    /// The pending requests, oldest first.
    pub fn pending(&self) -> Vec<PendingApproval> {
        self.pending_at(Instant::now())
    }

    fn pending_at(&self, now: Instant) -> Vec<PendingApproval> {
        let mut inner = self.lock();
        self.expire(&mut inner, now);
        let mut list: Vec<(u64, PendingApproval)> = inner
            .pending
            .values()
            .map(|p| (p.seq, p.request.clone()))
            .collect();
        list.sort_unstable_by_key(|(seq, _)| *seq);
        list.into_iter().map(|(_, r)| r).collect()
    }

    /// Every new request, decision and withdrawal from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    fn take_approved_at(&self, jti: &str, sql: &str, now: Instant) -> Option<String> {
        let mut inner = self.lock();
        let key = (jti.to_owned(), sql.to_owned());
        let queue = inner.approved.get_mut(&key)?;
        let mut taken = None;
        let mut removed = 0;
        while let Some(a) = queue.pop_front() {
            removed += 1;
            if a.expires > now {
                taken = Some(a.id);
                break;
            }
        }
        if queue.is_empty() {
            inner.approved.remove(&key);
        }
        inner.approved_count -= removed;
        if let Some(id) = &taken {
            tracing::info!(approval = %id, jti, "approved statement retried: approval used");
        }
        taken
    }

    /// Drops what outlived its time: reject-mode requests older than
    /// [`APPROVAL_TTL`] (nobody withdraws them), and in wait mode requests
    /// whose session is gone without withdrawing. Runs when the list is
    /// read and when it is full. Kept approvals expire lazily, in
    /// [`keep_approval`] and when taken.
    fn expire(&self, inner: &mut Inner, now: Instant) {
        let mode = self.settings.mode;
        let stale: Vec<String> = inner
            .pending
            .iter()
            .filter(|(_, p)| match mode {
                ApprovalMode::Reject => now.saturating_duration_since(p.since) >= APPROVAL_TTL,
                ApprovalMode::Wait => p.reply.is_closed(),
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            inner.pending.remove(&id);
            remember(inner, &id, Closed::Withdrawn);
            let _ = self.events.send(ApprovalEvent::Withdrawn { id });
        }
    }
}

/// Remembers that `id` is closed, forgetting the oldest beyond
/// [`MAX_CLOSED`].
fn remember(inner: &mut Inner, id: &str, how: Closed) {
    if inner.closed.insert(id.to_owned(), how).is_none() {
        inner.closed_order.push_back(id.to_owned());
    }
    while inner.closed_order.len() > MAX_CLOSED {
        if let Some(old) = inner.closed_order.pop_front() {
            inner.closed.remove(&old);
        }
    }
}

/// Keeps a reject-mode approval for its retry. When [`MAX_APPROVED`] are
/// kept, expired ones are dropped first; if none has expired, this one is
/// not kept (logged), and the retry will need approving again.
fn keep_approval(inner: &mut Inner, request: &PendingApproval, now: Instant) {
    if inner.approved_count >= MAX_APPROVED {
        let mut count = 0;
        inner.approved.retain(|_, queue| {
            queue.retain(|a| a.expires > now);
            count += queue.len();
            !queue.is_empty()
        });
        inner.approved_count = count;
    }
    if inner.approved_count >= MAX_APPROVED {
        tracing::warn!(
            approval = %request.id,
            "{MAX_APPROVED} approvals are waiting for their retry; this one is not kept"
        );
        return;
    }
    inner
        .approved
        .entry((request.jti.clone(), request.statement.clone()))
        .or_default()
        .push_back(Approved {
            id: request.id.clone(),
            expires: now + APPROVAL_TTL,
        });
    inner.approved_count += 1;
}

impl ApprovedStatements for ApprovalRegistry {
    fn take_approved(&self, jti: &str, sql: &str) -> Option<String> {
        self.take_approved_at(jti, sql, Instant::now())
    }
}
