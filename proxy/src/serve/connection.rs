//! The tokio driver of one client connection.
//!
//! Thin by design: it reads, hands bytes to the sans-IO
//! [`Session`](gatehouse_core::pg::Session), writes what the session says,
//! records what it says, and carries out its actions (TLS, grant check,
//! upstream connect, cancel). Protocol logic lives in `core`.
//!
//! Two stages: the *handshake* owns the client's TCP stream until the
//! client has settled on TLS or not; then the stream is split and each
//! direction gets a writer task ([`OutQueue`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use gatehouse_core::event::{SessionId, TlsInfo};
use gatehouse_core::pg::{Action, ApprovalDecision, ApprovalRequest, HoldMode, Session, Transmit};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tracing::Instrument;

use super::cancel::CancelTarget;
use super::limits::SessionSlot;
use super::pool;
use super::queue::{Ended, OutQueue};
use super::stream::{Io, Rewind};
use super::targets::TargetAddr;
use super::{Shared, Socket};
use crate::approvals::{ApprovalMode, Decision, PendingApproval};
use crate::revocations::Revocation;
use gatehouse_core::grant::GrantError;
use gatehouse_core::pg::{Rejection, encode};
use tokio::sync::broadcast::{self, error::RecvError};

/// How long a finished session waits for each side to take what is still
/// queued for it.
const FINISH_LIMIT: Duration = Duration::from_secs(10);
/// Bytes read per call.
const READ_CHUNK: usize = 64 * 1024;
/// While a statement is held for approval, the client is still read (so
/// that a client that gives up is noticed) but not past this much.
const HELD_BUFFER_MAX: usize = 1024 * 1024;
/// How long a response's records may wait for the session's next command
/// ([`Conn::may_defer_records`]), and how many events and archive bytes.
const RECORD_DELAY: Duration = Duration::from_millis(2);
const RECORD_DELAY_EVENTS: usize = 64;
const RECORD_DELAY_BYTES: usize = 256 * 1024;
/// After the session ends, the client may still be sending (the rest of a
/// frame over the size cap, a pipeline behind a FATAL error). Closing a
/// socket with unread input makes the kernel reset the connection, and
/// drivers that are still writing then report "connection closed" instead
/// of the error the gateway sent. So once the last bytes to the client are
/// written, its input is read and dropped until it closes, stays quiet for
/// `LINGER_IDLE`, or `LINGER_MAX` has passed (a lingering close).
const LINGER_IDLE: Duration = Duration::from_millis(250);
/// See [`LINGER_IDLE`].
const LINGER_MAX: Duration = Duration::from_secs(2);

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Serves one accepted connection to its end.
pub async fn serve(shared: Arc<Shared>, tcp: Socket, peer: SocketAddr) {
    // Counts the connection now and its end when dropped, also when the
    // task is aborted (a drain that ran out of time).
    let _counted = shared.metrics.connection();
    let _ = tcp.set_nodelay(true);
    let key = shared.cancels.issue();
    let id = SessionId(*uuid::Uuid::now_v7().as_bytes());
    let mut cfg = shared.session.clone();
    cfg.backend_key = key;
    let mut session = Session::new(id, cfg, peer.to_string(), now_us());
    let open = shared.metrics.open_connections();
    if open > shared.max_connections as u64 {
        tracing::warn!(
            open,
            limit = shared.max_connections,
            "refusing a client: too many connections"
        );
        session = session.at_capacity();
    }
    let span = tracing::info_span!("session", %id, client = %peer);
    let mut conn = Conn {
        shared: shared.clone(),
        session,
        key,
        target: None,
        client_out: None,
        upstream_out: None,
        upstream_in: None,
        upstream_addr: None,
        pending_ack: None,
        record_deadline: None,
        client_in: None,
        login_deadline: None,
        message_started: None,
        grant: None,
        held: None,
        revocations: None,
        upstream_clean: false,
        slot: None,
    };
    // A client that has not finished startup (TLS, StartupMessage, grant
    // check) by then is disconnected: slowloris clients hold nothing long.
    let startup_timeout = shared.startup_timeout;
    async {
        // On the io_uring engine the deadline is a ring timeout.
        let started = tokio::select! {
            started = conn.handshake(tcp) => Some(started),
            () = crate::uring::sleep(startup_timeout) => None,
        };
        match started {
            Some(Some((io, buf))) => conn.relay(io, buf).await,
            Some(None) => {}
            None => tracing::info!("client did not complete startup in time"),
        }
        conn.finish().await;
    }
    .instrument(span)
    .await;
    shared.cancels.release(key);
}

struct Conn {
    shared: Arc<Shared>,
    session: Session,
    key: (i32, i32),
    target: Option<TargetAddr>,
    client_out: Option<OutQueue<WriteHalf<Box<dyn Io>>>>,
    upstream_out: Option<OutQueue<WriteHalf<Socket>>>,
    upstream_in: Option<ReadHalf<Socket>>,
    upstream_addr: Option<SocketAddr>,
    /// The store's acknowledgement that upstream-bound bytes must wait for.
    pending_ack: Option<gatehouse_store::Ack>,
    /// When the records of a response waiting with the session must be
    /// submitted at the latest ([`Conn::may_defer_records`]).
    record_deadline: Option<tokio::time::Instant>,
    /// The client's read side once the relay has ended, for the lingering
    /// close in [`Conn::finish`].
    client_in: Option<ReadHalf<Box<dyn Io>>>,
    /// When opening the target (TCP connect, login, catalog read) must be
    /// done by: the target's `connect_timeout` covers all of it, so a
    /// target that accepts TCP and then never answers cannot hold the
    /// client.
    login_deadline: Option<tokio::time::Instant>,
    /// Since when the client has had a message started and not finished,
    /// while it is read: it must finish it within `message_timeout`.
    message_started: Option<tokio::time::Instant>,
    /// The accepted grant, named in approval requests.
    grant: Option<GrantInfo>,
    /// The approval a held statement waits for.
    held: Option<Held>,
    /// Revocations announced since just before the grant check.
    revocations: Option<broadcast::Receiver<Arc<Revocation>>>,
    /// The relay ended with no partial frame from the target buffered.
    upstream_clean: bool,
    /// This session counted against its grant's `connections_per_grant`;
    /// given back when the connection is dropped (also when its task is
    /// aborted).
    slot: Option<SessionSlot>,
}

/// What approvers are told about the grant behind a request.
struct GrantInfo {
    jti: String,
    subject: String,
    purpose: String,
    ticket: Option<String>,
    target: String,
}

/// A statement held until an approver decides or the timeout passes.
struct Held {
    id: String,
    decision: tokio::sync::oneshot::Receiver<Decision>,
    deadline: tokio::time::Instant,
}

enum Client {
    Plain(Socket),
    Tls(Box<dyn Io>),
}

impl Client {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Client::Plain(s) => s.write_all(b).await,
            Client::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
        }
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        buf.reserve(READ_CHUNK);
        match self {
            Client::Plain(s) => s.read_buf(buf).await,
            Client::Tls(s) => s.read_buf(buf).await,
        }
    }
}

impl Conn {
    /// Startup until the client is settled on (or refused) TLS. Returns the
    /// client stream and any bytes read past startup.
    async fn handshake(&mut self, tcp: Socket) -> Option<(Box<dyn Io>, BytesMut)> {
        let mut client = Client::Plain(tcp);
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            // Startup records nothing but refusals (TLS required, ...).
            self.record_before_telling_the_client().await;
            while let Some(t) = self.session.poll_transmit() {
                if let Transmit::Client(b) = t
                    && client.write_all(&b).await.is_err()
                {
                    self.session.io_failed(now_us());
                }
            }
            self.record_without_waiting().await;
            while let Some(action) = self.session.poll_action() {
                match action {
                    Action::StartTls { direct } => {
                        let Client::Plain(tcp) = client else {
                            return None;
                        };
                        let prefix = if direct {
                            buf.split().freeze()
                        } else {
                            Bytes::new()
                        };
                        client = match self.start_tls(tcp, prefix, direct).await {
                            Ok(tls) => tls,
                            Err(refused) => {
                                close_gracefully(refused).await;
                                return None;
                            }
                        };
                    }
                    Action::ForwardCancel { pid, secret } => {
                        self.shared.cancels.cancel((pid, secret)).await
                    }
                    Action::Authorize { token, target } => {
                        self.authorize(&token, &target).await;
                        let io: Box<dyn Io> = match client {
                            Client::Plain(tcp) => Box::new(Rewind::new(Bytes::new(), tcp)),
                            Client::Tls(io) => io,
                        };
                        return Some((io, buf));
                    }
                    Action::Close => {
                        close_gracefully(client).await;
                        return None;
                    }
                    other => tracing::warn!(?other, "unexpected action during startup"),
                }
            }
            if self.session.is_closed() {
                close_gracefully(client).await;
                return None;
            }
            match client.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    self.session.client_closed(now_us());
                    self.record_without_waiting().await;
                    return None;
                }
                Ok(_) => self.session.handle_client_data(&mut buf, now_us()),
            }
        }
    }

    /// The TLS handshake; on failure, the stream to close (a TLS alert
    /// may still be on its way out).
    async fn start_tls(
        &mut self,
        tcp: Socket,
        prefix: Bytes,
        direct: bool,
    ) -> Result<Client, Box<dyn Io>> {
        let Some(acceptor) = self.shared.tls.clone() else {
            return Err(Box::new(Rewind::new(prefix, tcp)));
        };
        match acceptor
            .accept(Rewind::new(prefix, tcp))
            .into_fallible()
            .await
        {
            Ok(tls) => {
                let (_, conn) = tls.get_ref();
                if direct && conn.alpn_protocol() != Some(b"postgresql") {
                    tracing::info!("direct TLS without ALPN postgresql: closing");
                    return Err(Box::new(tls));
                }
                let info = TlsInfo {
                    version: conn
                        .protocol_version()
                        .map(tls_version_name)
                        .unwrap_or("TLS")
                        .to_owned(),
                    cipher: conn
                        .negotiated_cipher_suite()
                        .and_then(|c| c.suite().as_str())
                        .unwrap_or("")
                        .to_owned(),
                    direct,
                };
                self.session.tls_established(info);
                Ok(Client::Tls(Box::new(tls)))
            }
            Err((e, io)) => {
                tracing::info!("TLS handshake failed: {e}");
                Err(Box::new(io))
            }
        }
    }

    async fn authorize(&mut self, token: &str, target: &str) {
        let now = now_us();
        // Subscribed before the check: a revocation after it is heard.
        self.revocations = Some(self.shared.revocations.subscribe());
        let checked = self
            .shared
            .authorize(token, target, now / 1_000_000)
            .and_then(|(auth, addr, slot)| {
                if self.shared.revocations.is_revoked(&auth.jti) {
                    Err(revoked_rejection(&auth))
                } else {
                    Ok((auth, addr, slot))
                }
            });
        match checked {
            Ok((mut auth, addr, slot)) => {
                tracing::info!(subject = %auth.subject, jti = %auth.jti, target, "grant accepted");
                let approvals = &self.shared.approvals;
                auth.policy.hold = match approvals.mode() {
                    ApprovalMode::Wait => HoldMode::Wait,
                    ApprovalMode::Reject => HoldMode::Reject,
                };
                auth.policy.approvals = Some(approvals.clone());
                if let Some(rate) = self.shared.authorizer.limits.statement_rate() {
                    self.session.set_statement_rate(rate);
                }
                self.slot = Some(slot);
                self.target = Some(addr);
                self.grant = Some(GrantInfo {
                    jti: auth.jti.clone(),
                    subject: auth.subject.clone(),
                    purpose: auth.purpose.clone(),
                    ticket: auth.ticket.clone(),
                    target: target.to_owned(),
                });
                self.session.authorized(auth, now);
            }
            Err(rejection) => {
                tracing::info!(reason = ?rejection.reason, target, "grant refused");
                self.session.refuse(rejection, now);
                self.record_before_telling_the_client().await;
            }
        }
    }

    /// Makes the events taken so far (a refusal) durable before the client
    /// is told anything about them, so that a refusal a client saw is never
    /// missing from the record, also if the gateway crashes right after.
    /// If the store cannot write, the client is refused all the same.
    async fn record_before_telling_the_client(&mut self) {
        if self.session.has_events()
            && let Err(e) = self.shared.writer.append(self.session.take_events()).await
        {
            tracing::error!("store refused events: {e}");
        }
    }

    /// Relays until the session closes.
    async fn relay(&mut self, io: Box<dyn Io>, mut cbuf: BytesMut) {
        let (mut client_in, client_w) = tokio::io::split(io);
        self.client_out = Some(OutQueue::spawn(client_w));
        let mut ubuf = BytesMut::with_capacity(READ_CHUNK);
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            self.process().await;
            if self.session.is_closed() {
                self.client_in = Some(client_in);
                // A partial frame from the target: the connection is not
                // in a state to hand on.
                self.upstream_clean = ubuf.is_empty();
                return;
            }
            let client_room = self.client_out.as_ref().is_none_or(OutQueue::has_room);
            let upstream_room = self.upstream_out.as_ref().is_none_or(OutQueue::has_room);
            let held = self.held.is_some();
            let read_client = (self.session.wants_client_data()
                || (held && cbuf.len() < HELD_BUFFER_MAX))
                && upstream_room;
            let read_upstream = self.upstream_in.is_some() && client_room;
            let login_deadline = self.login_deadline.filter(|_| self.session.is_logging_in());
            // A partial message from a client that is read: the clock runs
            // (slowloris); it starts again with each message finished.
            if cbuf.is_empty() || held || !read_client {
                self.message_started = None;
            } else if self.message_started.is_none() {
                self.message_started = Some(tokio::time::Instant::now());
            }
            let message_deadline = self
                .message_started
                .map(|since| since + self.shared.message_timeout);
            cbuf.reserve(READ_CHUNK);
            ubuf.reserve(READ_CHUNK);
            tokio::select! {
                r = client_in.read_buf(&mut cbuf), if read_client => match r {
                    Ok(0) | Err(_) => self.session.client_closed(now_us()),
                    // Held: kept in the buffer for after the decision.
                    Ok(_) if held => {}
                    Ok(_) => {
                        let before = cbuf.len();
                        self.session.handle_client_data(&mut cbuf, now_us());
                        if cbuf.len() < before {
                            self.message_started = None;
                        }
                    }
                },
                (id, decision) = held_decision(&mut self.held), if held => {
                    self.decided(&id, decision, &mut cbuf);
                }
                r = next_revocation(&mut self.revocations) => self.on_revocation(r),
                r = read_opt(&mut self.upstream_in, &mut ubuf), if read_upstream => match r {
                    Ok(0) | Err(_) => {
                        self.upstream_in = None;
                        self.session.upstream_closed(now_us());
                    }
                    Ok(_) => self.session.handle_upstream_data(&mut ubuf, now_us()),
                },
                _ = changed(&self.client_out) => self.check_writers(),
                _ = changed(&self.upstream_out) => self.check_writers(),
                _ = shutdown.changed() => self.session.shutdown(now_us()),
                _ = sleep_until_opt(self.record_deadline) => self.submit_records().await,
                _ = sleep_until_opt(login_deadline) => self.login_timed_out(),
                _ = sleep_until_opt(message_deadline) => {
                    let limit = self.shared.message_timeout;
                    tracing::info!(?limit, "client did not finish a message in time");
                    self.session.message_timed_out(limit.as_secs_f64(), now_us());
                }
            }
        }
    }

    /// Hands the target connection to the worker's pool when the session
    /// ended cleanly and the target has a pool; resets it first.
    async fn pool_upstream(&mut self) {
        let Some(target) = &self.target else { return };
        let (size, Some(grant)) = (target.pool_size, &self.grant) else {
            return;
        };
        if size == 0 || !self.upstream_clean {
            return;
        }
        let Some(login) = self.session.reusable_upstream().cloned() else {
            // Not reusable: the target gets its Terminate, which the
            // session kept back.
            if let Some(q) = &self.upstream_out {
                q.push(encode::terminate().into_bytes(), None);
            }
            return;
        };
        let (Some(q), Some(r), Some(addr)) = (
            self.upstream_out.take(),
            self.upstream_in.take(),
            self.upstream_addr,
        ) else {
            return;
        };
        let Some(w) = q.release_within(FINISH_LIMIT).await else {
            return;
        };
        let mut stream = r.unsplit(w);
        if let Some(login) = pool::reset(&mut stream, login).await {
            let params = self.session.forwarded_params().to_vec();
            pool::put(&grant.target, &params, stream, login, addr, size);
            tracing::debug!("target connection pooled");
        }
    }

    /// A held statement's approval was decided (or timed out): the session
    /// judges it again and goes on with what the client sent after it.
    fn decided(&mut self, id: &str, decision: ApprovalDecision, cbuf: &mut BytesMut) {
        self.held = None;
        if decision.approver == TIMEOUT_APPROVER {
            self.shared.approvals.withdraw(id);
        }
        tracing::info!(
            approval = id,
            approved = decision.approved,
            approver = %decision.approver,
            "approval decided"
        );
        let now = now_us();
        self.session.approval_decided(id, decision, now);
        self.session.handle_client_data(cbuf, now);
    }

    /// A grant was revoked (or, if this connection fell behind the
    /// announcements, may have been): end the session if it was its own.
    fn on_revocation(&mut self, r: Result<Arc<Revocation>, RecvError>) {
        let Some(grant) = &self.grant else {
            return;
        };
        let (by, reason) = match r {
            Ok(r) if r.jti == grant.jti => (r.by.clone(), r.reason.clone()),
            Ok(_) => return,
            Err(RecvError::Lagged(_)) if self.shared.revocations.is_revoked(&grant.jti) => {
                ("an administrator".to_owned(), "see the record".to_owned())
            }
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => {
                self.revocations = None;
                return;
            }
        };
        tracing::warn!(jti = %grant.jti, %by, "ending the session: its grant was revoked");
        self.session.revoked(&by, &reason, now_us());
    }

    /// Registers a statement for approval; holds it when the session waits.
    fn request_approval(&mut self, request: ApprovalRequest, wait: bool) {
        let Some(grant) = &self.grant else {
            return;
        };
        let pending = PendingApproval {
            id: request.id.clone(),
            session: self.session.id().to_string(),
            jti: grant.jti.clone(),
            subject: grant.subject.clone(),
            target: grant.target.clone(),
            purpose: grant.purpose.clone(),
            ticket: grant.ticket.clone(),
            statement: request.statement,
            needs: request.needs,
            requested_at_us: now_us(),
        };
        tracing::info!(approval = %request.id, wait, "statement needs approval");
        let decision = self.shared.approvals.request(pending);
        if wait {
            self.held = Some(Held {
                id: request.id,
                decision,
                deadline: tokio::time::Instant::now() + self.shared.approvals.timeout(),
            });
        }
    }

    /// The target accepted TCP but did not finish the login in time.
    fn login_timed_out(&mut self) {
        let why = match &self.target {
            Some(t) => format!(
                "logging in to {}:{} timed out after {:?}",
                t.host, t.port, t.connect_timeout
            ),
            None => "logging in timed out".to_owned(),
        };
        tracing::warn!("{why}");
        self.session.upstream_failed(&why, now_us());
    }

    fn check_writers(&mut self) {
        let upstream_failed = self.upstream_out.as_ref().is_some_and(OutQueue::failed);
        let client_failed = self.client_out.as_ref().is_some_and(OutQueue::failed);
        if self
            .upstream_out
            .as_ref()
            .is_some_and(OutQueue::store_failed)
        {
            tracing::error!("the store did not acknowledge a command; ending the session");
            self.session.store_failed(now_us());
        } else if client_failed || upstream_failed {
            // Which one failed, and why, is known once the writers finish.
            self.session.io_failed(now_us());
        }
    }

    /// Carries out everything the session asked for.
    async fn process(&mut self) {
        loop {
            self.queue_transmits().await;
            let Some(action) = self.session.poll_action() else {
                break;
            };
            match action {
                Action::ConnectUpstream => self.connect_upstream().await,
                Action::RegisterCancel { pid, secret } => {
                    if let Some(addr) = self.upstream_addr {
                        let target = CancelTarget { addr, pid, secret };
                        self.shared.cancels.register(self.key, target);
                    }
                }
                Action::ForwardCancel { pid, secret } => {
                    self.shared.cancels.cancel((pid, secret)).await
                }
                Action::Close => {
                    self.queue_transmits().await;
                    break;
                }
                Action::RequestApproval { request, wait } => self.request_approval(request, wait),
                Action::StartTls { .. } | Action::Authorize { .. } => {
                    tracing::warn!(?action, "unexpected action after startup")
                }
            }
        }
    }

    /// Records the session's events and queues its transmits. Bytes for the
    /// target wait for the store's acknowledgement of every event before
    /// them; bytes for the client do not wait, and neither do their
    /// records: see [`Conn::may_defer_records`].
    async fn queue_transmits(&mut self) {
        if self.session.has_events() && !self.may_defer_records() {
            self.submit_records().await;
        }
        while let Some(t) = self.session.poll_transmit() {
            match t {
                Transmit::Client(b) => {
                    if let Some(q) = &self.client_out {
                        q.push(b, None);
                    }
                }
                Transmit::Upstream(b) => {
                    if let Some(q) = &self.upstream_out {
                        q.push(b, self.pending_ack.take());
                    }
                }
            }
        }
    }

    /// Whether the events waiting may stay with the session a little
    /// longer: when all that waits to be written goes to the client (a
    /// response), its records go to the store with the session's next
    /// command — one commit and one stored run for both, instead of two —
    /// or after [`RECORD_DELAY`] if no command comes first. Never past
    /// the delay, [`RECORD_DELAY_EVENTS`] events or [`RECORD_DELAY_BYTES`].
    /// A crash loses at most that delay of response records, which the
    /// store's `os` mode already allows; no command ever reaches a target
    /// before its record is acknowledged.
    fn may_defer_records(&mut self) -> bool {
        let (events, bytes) = self.session.waiting_events();
        let now = tokio::time::Instant::now();
        let defer = !self.session.sends_upstream()
            && !self.session.is_closed()
            && events <= RECORD_DELAY_EVENTS
            && bytes <= RECORD_DELAY_BYTES
            && self.record_deadline.is_none_or(|d| d > now);
        if defer {
            self.record_deadline.get_or_insert(now + RECORD_DELAY);
        }
        defer
    }

    /// Submits the events waiting; their acknowledgement is what the next
    /// bytes for the target wait for.
    async fn submit_records(&mut self) {
        self.record_deadline = None;
        if !self.session.has_events() {
            return;
        }
        let events = self.session.take_events();
        match self.shared.writer.submit(events).await {
            Ok(ack) => self.pending_ack = Some(ack),
            Err(e) => {
                tracing::error!("store refused events: {e}");
                self.session.store_failed(now_us());
                // The failure itself cannot be recorded; drop what the
                // session recorded about it.
                drop(self.session.take_events());
            }
        }
    }

    /// Submits events and lets their acknowledgement go: for refusals and
    /// startup, where nothing is forwarded to a target.
    async fn record_without_waiting(&mut self) {
        self.record_deadline = None;
        if self.session.has_events()
            && let Err(e) = self.shared.writer.submit(self.session.take_events()).await
        {
            tracing::error!("store refused events: {e}");
        }
    }

    async fn connect_upstream(&mut self) {
        // The session's Opened event (and so the grant's use) must be
        // durable before the target is touched.
        self.record_deadline = None;
        let events = self.session.take_events();
        if let Err(e) = self.shared.writer.append(events).await {
            tracing::error!("store refused the session: {e}");
            self.session.store_failed(now_us());
            drop(self.session.take_events());
            return;
        }
        self.pending_ack = None;
        let Some(target) = self.target.clone() else {
            self.session.upstream_failed("no target address", now_us());
            return;
        };
        let deadline = tokio::time::Instant::now() + target.connect_timeout;
        self.login_deadline = Some(deadline);
        if target.pool_size > 0 {
            self.session.set_pooling(true);
            let name = self
                .grant
                .as_ref()
                .map(|g| g.target.clone())
                .unwrap_or_default();
            if let Some(idle) = pool::take(&name, self.session.forwarded_params()) {
                tracing::debug!("reusing a pooled target connection");
                self.upstream_addr = Some(idle.addr);
                let (r, w) = tokio::io::split(idle.stream);
                self.upstream_in = Some(r);
                self.upstream_out = Some(OutQueue::spawn(w));
                self.session.upstream_reused(idle.login, now_us());
                return;
            }
        }
        match Socket::connect(&target.host, target.port, deadline).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                self.upstream_addr = stream.peer_addr().ok();
                let (r, w) = tokio::io::split(stream);
                self.upstream_in = Some(r);
                self.upstream_out = Some(OutQueue::spawn(w));
                self.session.upstream_connected(now_us());
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                let why = format!(
                    "connecting to {}:{} timed out after {:?}",
                    target.host, target.port, target.connect_timeout
                );
                self.session.upstream_failed(&why, now_us());
            }
            Err(e) => {
                tracing::warn!(host = %target.host, port = target.port, "upstream connect failed: {e}");
                let why = format!("connecting to {}:{} failed: {e}", target.host, target.port);
                self.session.upstream_failed(&why, now_us());
            }
        }
    }

    /// Flushes what is queued and closes both sides.
    async fn finish(&mut self) {
        if let Some(held) = self.held.take() {
            self.shared.approvals.withdraw(&held.id);
        }
        self.queue_transmits().await;
        // Whatever is left was recorded by the session on its way out.
        self.record_without_waiting().await;
        self.pool_upstream().await;
        let mut store_failed = false;
        if let Some(q) = self.upstream_out.take() {
            store_failed |= q.finish_within(FINISH_LIMIT).await == Ended::Store;
        }
        if let Some(q) = self.client_out.take() {
            let _ = q.finish_within(FINISH_LIMIT).await;
        }
        if let Some(r) = self.client_in.take() {
            linger(r).await;
        }
        if store_failed {
            tracing::error!("session ended: the store did not acknowledge a command");
        }
    }
}

/// The name PostgreSQL and OpenSSL use for a TLS version (`TLSv1.3`).
fn tls_version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        _ => "TLS",
    }
}

/// Closes a client the session is done with before the relay: sends what
/// is still queued (a refusal, a TLS alert), then closes lingering.
async fn close_gracefully(client: impl Into<Box<dyn Io>>) {
    let mut io = client.into();
    let _ = tokio::time::timeout(FINISH_LIMIT, io.shutdown()).await;
    linger(io).await;
}

impl From<Client> for Box<dyn Io> {
    fn from(client: Client) -> Self {
        match client {
            Client::Plain(s) => Box::new(s),
            Client::Tls(io) => io,
        }
    }
}

/// Reads and drops what the client still sends; see [`LINGER_IDLE`].
async fn linger(mut r: impl tokio::io::AsyncRead + Unpin) {
    let deadline = tokio::time::Instant::now() + LINGER_MAX;
    let mut scratch = vec![0u8; READ_CHUNK];
    loop {
        let until = deadline.min(tokio::time::Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(until, r.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

async fn read_opt(r: &mut Option<ReadHalf<Socket>>, buf: &mut BytesMut) -> std::io::Result<usize> {
    match r {
        Some(r) => r.read_buf(buf).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn changed<W: AsyncWrite + Unpin + Send + 'static>(q: &Option<OutQueue<W>>) {
    match q {
        Some(q) => q.changed().await,
        None => std::future::pending().await,
    }
}

/// The refusal of a grant revoked before this connection.
fn revoked_rejection(auth: &gatehouse_core::pg::Authorized) -> Rejection {
    let e = GrantError::Revoked;
    Rejection {
        reason: e.refusal(),
        sqlstate: e.sqlstate(),
        message: format!("gatehouse refused the grant: {e}; ask the planner for a new grant"),
        subject: Some(auth.subject.clone()),
        jti: Some(auth.jti.clone()),
    }
}

/// The next revocation announced; never, without a subscription.
async fn next_revocation(
    rx: &mut Option<broadcast::Receiver<Arc<Revocation>>>,
) -> Result<Arc<Revocation>, RecvError> {
    match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Who decides a held statement when no approver does in time.
const TIMEOUT_APPROVER: &str = "gatehouse";

/// The decision on the held statement: an approver's, or a denial when the
/// deadline passes (or the registry forgets it).
async fn held_decision(held: &mut Option<Held>) -> (String, ApprovalDecision) {
    let Some(h) = held.as_mut() else {
        return std::future::pending().await;
    };
    let timeout = |why: &str| ApprovalDecision {
        approved: false,
        approver: TIMEOUT_APPROVER.to_owned(),
        reason: why.to_owned(),
    };
    let decision = tokio::select! {
        r = &mut h.decision => match r {
            Ok(d) => ApprovalDecision {
                approved: d.approved,
                approver: d.approver,
                reason: d.reason,
            },
            Err(_) => timeout("the request was withdrawn"),
        },
        _ = tokio::time::sleep_until(h.deadline) => timeout("no approver decided in time"),
    };
    (h.id.clone(), decision)
}
