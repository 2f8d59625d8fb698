//! One client connection through the gateway, as a sans-IO state machine.
//!
//! The phases, in order:
//!
//! 1. `Startup`: untagged packets. SSLRequest is answered `S` (then the
//!    driver performs the TLS handshake and calls
//!    [`Session::tls_established`]) or `N`; a first byte of `0x16` is
//!    PostgreSQL 17's direct TLS; GSSENCRequest is answered `N`;
//!    CancelRequest becomes [`Action::ForwardCancel`]; the StartupMessage
//!    moves on.
//! 2. `AwaitPassword`: the client was asked for a cleartext password, which
//!    is its grant; the driver validates it ([`Action::Authorize`]) and
//!    answers with [`Session::authorized`] or [`Session::refuse`].
//! 3. `Connecting` → `LoggingIn` (→ `Catalog`): the driver connects to the
//!    target ([`Action::ConnectUpstream`]); the session logs in with the
//!    real credential; when the target has column masking rules it reads
//!    the target's catalog once (see [`super::catalog`]); then it greets the
//!    client with AuthenticationOk, the target's ParameterStatus messages,
//!    the gateway's own BackendKeyData and ReadyForQuery. The driver bounds
//!    this whole step by the target's connect timeout
//!    ([`Session::is_logging_in`]).
//! 4. `Relay`: whole frames pass through in order, in batches, each batch
//!    recorded as one event and forwarded as one `Bytes`; with masking, a
//!    batch holding a rewritten frame is rebuilt, and a `Masked` event
//!    precedes it.
//! 5. `Closed`.
//!
//! # Driving a session
//!
//! Feed input with the `handle_*` methods and the answers to actions; after
//! each call, drain [`Session::poll_transmit`] (in order, before actions),
//! then [`Session::poll_action`], and take the events with
//! [`Session::take_events`]. **Audit before forward:** before writing any
//! bytes to the target, and before acting on
//! [`Action::ConnectUpstream`], the driver must have every event taken so far
//! acknowledged by the store. A refusal ([`Session::refuse`]) must likewise
//! be acknowledged before its error is written to the client, so that no
//! client is ever told of a refusal the record lacks. Bytes for the client
//! otherwise need not wait: responses are recorded with a bounded delay.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::backend;
use super::catalog::{self, ColumnOrigins};
use super::encode;
use super::enforce::{ApprovalDecision, ApprovalRequest, Enforcer, Policy, StatementRate, Step};
use super::frame::{self, FrameError, Startup};
use super::frontend;
use super::mask::FrameMasker;
use super::shape::ShapeTracker;
use super::upstream::{LoggedIn, Login, LoginStep, UpstreamLogin};
use crate::event::{
    Body, CloseReason, Closed, Direction, Encoded, ErrorInfo, Opened, Param, Recorder, Refusal,
    Refused, SealKey, SessionId, Statement, StatementProtocol, TlsInfo,
};
use crate::mask::Masker;

/// Per-session settings, from the gateway's config.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Whether the listener has a certificate (SSLRequest answered `S`).
    pub tls_available: bool,
    /// Whether a client may proceed without TLS.
    pub plaintext_allowed: bool,
    /// Cap on one client frame, bytes.
    pub max_client_frame: usize,
    /// Cap on one target frame, bytes.
    pub max_upstream_frame: usize,
    /// The cancel key the gateway hands this client: `(pid, secret)`.
    pub backend_key: (i32, i32),
    /// The key that seals the session's `Closed` event; `None` records it
    /// unsealed.
    pub seal_key: Option<Arc<SealKey>>,
}

/// Startup parameters passed on to the target. Others are dropped: the
/// grant, not the client, decides the role and database, and options such
/// as `options=-c role=…` must not reach the target.
const FORWARDED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "timezone",
    "extra_float_digits",
    "intervalstyle",
    "bytea_output",
];

/// Where bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// To the client.
    Client(Bytes),
    /// To the target.
    Upstream(Bytes),
}

/// Something the driver must do for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Perform a TLS handshake on the client connection. With `direct`, the
    /// handshake's first bytes are still in the client read buffer and must
    /// be handed to TLS; otherwise the buffer is empty.
    StartTls {
        /// PostgreSQL 17 direct TLS (no SSLRequest).
        direct: bool,
    },
    /// Validate this grant for this target; answer with
    /// [`Session::authorized`] or [`Session::refuse`].
    Authorize {
        /// The password the client sent: its grant.
        token: String,
        /// The database the client asked for: the target's name.
        target: String,
    },
    /// Connect to the target named in [`Session::authorized`]; answer with
    /// [`Session::upstream_connected`] or [`Session::upstream_failed`].
    ConnectUpstream,
    /// Queries on this session can now be cancelled with the gateway's key;
    /// a cancel must be sent to the target with this key.
    RegisterCancel {
        /// The target's backend pid.
        pid: i32,
        /// The target's secret.
        secret: i32,
    },
    /// A client asked to cancel the session that holds this gateway key.
    ForwardCancel {
        /// Gateway-issued pid.
        pid: i32,
        /// Gateway-issued secret.
        secret: i32,
    },
    /// A statement needs a human's approval: register the request with the
    /// gateway's approvers. With `wait`, the session holds the statement
    /// (and reads nothing more from the client) until the driver reports
    /// the decision with [`Session::approval_decided`] — a denial of its
    /// own when none comes in time; otherwise the client has been refused
    /// and may retry once it is approved.
    RequestApproval {
        /// What to approve.
        request: ApprovalRequest,
        /// Whether the session waits for the decision.
        wait: bool,
    },
    /// Close both connections, after writing all transmits.
    Close,
}

/// The grant checks passed: what the driver knows about the grant and
/// where to log in.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The grant's `sub`.
    pub subject: String,
    /// The grant's `jti`.
    pub jti: String,
    /// The grant's `iss`.
    pub issuer: String,
    /// The grant's purpose.
    pub purpose: String,
    /// The grant's ticket.
    pub ticket: Option<String>,
    /// This is use number `use_number` of the grant.
    pub use_number: u32,
    /// The grant's `uses` limit.
    pub max_uses: Option<u32>,
    /// The grant's `exp`.
    pub expires_at: i64,
    /// How to log in to the target.
    pub login: UpstreamLogin,
    /// The target's masking rules, if it has any.
    pub masker: Option<Arc<Masker>>,
    /// The grant's plan for this target, enforced on every statement.
    pub policy: Policy,
}

/// The grant checks failed.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why.
    pub reason: Refusal,
    /// SQLSTATE for the client (`28000` or `28P01` for the grant itself,
    /// `53300` when the grant has as many sessions open as the gateway
    /// allows).
    pub sqlstate: &'static str,
    /// A message that says why and what to do next.
    pub message: String,
    /// The grant's `sub`, if it could be read.
    pub subject: Option<String>,
    /// The grant's `jti`, if it could be read.
    pub jti: Option<String>,
}

#[derive(Debug)]
enum Phase {
    Startup,
    AwaitTls,
    AwaitPassword,
    Authorizing,
    Connecting(Option<UpstreamLogin>),
    LoggingIn(Box<Login>),
    /// Reading the target's catalog for masking (see [`super::catalog`]).
    Catalog(Box<(LoggedIn, ColumnOrigins)>),
    Relay,
    Closed,
}

#[derive(Debug, Default)]
struct Client {
    user: String,
    database: String,
    application_name: Option<String>,
    forwarded: Vec<(String, String)>,
}

/// One client connection. See the module docs for the phases and how to
/// drive it.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    recorder: Recorder,
    client_addr: String,
    tls: Option<TlsInfo>,
    client: Client,
    transmits: VecDeque<Transmit>,
    actions: VecDeque<Action>,
    events: Vec<Encoded>,
    /// Prepared statement texts by name, for recording Bind with its SQL.
    prepared: HashMap<String, String>,
    /// Masking, when the target has rules: the masker and the tracker that
    /// matches rows to their columns.
    masking: Option<(FrameMasker, ShapeTracker)>,
    /// The plan, once the grant is accepted.
    enforcer: Option<Enforcer>,
    /// See [`Session::at_capacity`].
    at_capacity: bool,
    /// See [`Session::set_statement_rate`].
    statement_rate: Option<Arc<dyn StatementRate>>,
    /// The target's greeting, kept for handing the connection to the next
    /// session (a pool).
    logged_in: Option<LoggedIn>,
    /// The transaction status of the target's last ReadyForQuery.
    upstream_status: u8,
    /// Why the session closed.
    closed_by: Option<CloseReason>,
    /// The target connection may go to a pool: the client's Terminate is
    /// not passed on.
    pooling: bool,
    /// The approval a held statement waits for.
    held: Option<String>,
    started_us: i64,
    last_us: i64,
    bytes_to_upstream: u64,
    bytes_to_client: u64,
    statements: u64,
}

impl Session {
    /// A session for a connection accepted at `now_us` from `client_addr`.
    pub fn new(id: SessionId, cfg: SessionConfig, client_addr: String, now_us: i64) -> Self {
        Session {
            recorder: Recorder::sealed_with(id, cfg.seal_key.clone()),
            cfg,
            phase: Phase::Startup,
            client_addr,
            tls: None,
            client: Client::default(),
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            events: Vec::new(),
            prepared: HashMap::new(),
            masking: None,
            enforcer: None,
            at_capacity: false,
            statement_rate: None,
            logged_in: None,
            upstream_status: 0,
            closed_by: None,
            pooling: false,
            held: None,
            started_us: now_us,
            last_us: now_us,
            bytes_to_upstream: 0,
            bytes_to_client: 0,
            statements: 0,
        }
    }

    /// The gateway is at its connection limit: once the client has said
    /// hello (and settled TLS), it is refused with SQLSTATE 53300, as
    /// PostgreSQL refuses clients past `max_connections`. Not recorded: a
    /// flood must not become a flood of writes.
    pub fn at_capacity(mut self) -> Self {
        self.at_capacity = true;
        self
    }

    /// Limits the statements of the session's grant, together with its
    /// other sessions, to `rate` (see [`super::enforce`]). Set before the
    /// grant is accepted ([`Session::authorized`]).
    pub fn set_statement_rate(&mut self, rate: Arc<dyn StatementRate>) {
        self.statement_rate = Some(rate);
    }

    /// This session's id.
    pub fn id(&self) -> SessionId {
        self.recorder.session()
    }

    /// Whether the session has ended (after its last transmits).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether bytes from the client should be read now. While the gateway
    /// waits on the driver (grant check, upstream connect and login), client
    /// bytes stay unread.
    pub fn wants_client_data(&self) -> bool {
        match self.phase {
            Phase::Startup | Phase::AwaitPassword => true,
            Phase::Relay => self.held.is_none(),
            _ => false,
        }
    }

    /// The approval a held statement waits for, if one does.
    pub fn held_approval(&self) -> Option<&str> {
        self.held.as_deref()
    }

    /// The approval `id` was decided (or timed out: the driver's own
    /// denial). Then call [`handle_client_data`](Self::handle_client_data)
    /// with the client buffer as it is: the held statement is judged
    /// again, with the decision, and what follows it goes on.
    pub fn approval_decided(&mut self, id: &str, decision: ApprovalDecision, now_us: i64) {
        if self.held.as_deref() != Some(id) {
            return;
        }
        self.last_us = now_us;
        self.held = None;
        if let Some(e) = &mut self.enforcer {
            e.decide(id.to_owned(), decision);
        }
    }

    /// Whether the session is opening its target: connecting, logging in,
    /// or reading the catalog before the client is greeted. The driver
    /// bounds this with the target's connect timeout and reports
    /// [`upstream_failed`](Self::upstream_failed) when it passes: a target
    /// that accepts TCP and then never answers must not hold the client.
    pub fn is_logging_in(&self) -> bool {
        matches!(
            self.phase,
            Phase::Connecting(_) | Phase::LoggingIn(_) | Phase::Catalog(_)
        )
    }

    /// The next bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Events recorded since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Encoded> {
        std::mem::take(&mut self.events)
    }

    /// Whether events are waiting to be taken.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// How many events are waiting to be taken, and their archives' bytes.
    pub fn waiting_events(&self) -> (usize, usize) {
        let bytes = self.events.iter().map(|e| e.bytes.len()).sum();
        (self.events.len(), bytes)
    }

    /// Whether bytes for the target are waiting to be written: the driver
    /// must have the events before them recorded first (audit before
    /// forward).
    pub fn sends_upstream(&self) -> bool {
        self.transmits
            .iter()
            .any(|t| matches!(t, Transmit::Upstream(_)))
    }

    /// Bytes arrived from the client; whole frames are consumed from `buf`,
    /// a partial one stays.
    pub fn handle_client_data(&mut self, buf: &mut BytesMut, now_us: i64) {
        self.last_us = now_us;
        loop {
            let progressed = match self.phase {
                Phase::Startup => self.on_startup(buf, now_us),
                Phase::AwaitPassword => self.on_password(buf, now_us),
                // A held statement waits in `buf` for its decision.
                Phase::Relay if self.held.is_some() => false,
                Phase::Relay => self.relay_client(buf, now_us),
                _ => false,
            };
            if !progressed || buf.is_empty() {
                break;
            }
        }
    }

    /// Bytes arrived from the target.
    pub fn handle_upstream_data(&mut self, buf: &mut BytesMut, now_us: i64) {
        self.last_us = now_us;
        loop {
            let progressed = match self.phase {
                Phase::LoggingIn(_) => self.on_login(buf, now_us),
                Phase::Catalog(_) => self.on_catalog(buf, now_us),
                Phase::Relay => self.relay_upstream(buf, now_us),
                _ => false,
            };
            if !progressed || buf.is_empty() {
                break;
            }
        }
    }

    /// The TLS handshake asked for by [`Action::StartTls`] completed.
    pub fn tls_established(&mut self, info: TlsInfo) {
        if matches!(self.phase, Phase::AwaitTls) {
            self.tls = Some(info);
            self.phase = Phase::Startup;
        }
    }

    /// The grant is valid for the target: record the session as opened and
    /// ask the driver to connect.
    pub fn authorized(&mut self, auth: Authorized, now_us: i64) {
        if !matches!(self.phase, Phase::Authorizing) {
            return;
        }
        self.last_us = now_us;
        let opened = Opened {
            subject: auth.subject,
            jti: auth.jti,
            issuer: auth.issuer,
            purpose: auth.purpose,
            ticket: auth.ticket,
            target: self.client.database.clone(),
            client_user: self.client.user.clone(),
            application_name: self.client.application_name.clone(),
            client_addr: self.client_addr.clone(),
            tls: self.tls.clone(),
            use_number: auth.use_number,
            max_uses: auth.max_uses,
            expires_at: auth.expires_at,
        };
        self.record(now_us, Body::Opened(opened));
        self.masking = auth
            .masker
            .map(|m| (FrameMasker::new(m), ShapeTracker::default()));
        let id = self.id().to_string();
        let prefix = id
            .get(id.len().saturating_sub(12)..)
            .unwrap_or(&id)
            .to_owned();
        self.enforcer = Some(Enforcer::new(
            auth.policy,
            self.statement_rate.take(),
            prefix,
        ));
        self.phase = Phase::Connecting(Some(auth.login));
        self.actions.push_back(Action::ConnectUpstream);
    }

    /// The grant was refused: tell the client why, record it, close.
    pub fn refuse(&mut self, rejection: Rejection, now_us: i64) {
        if !matches!(self.phase, Phase::Authorizing | Phase::Startup) {
            return;
        }
        self.last_us = now_us;
        self.record(
            now_us,
            Body::Refused(Refused {
                reason: rejection.reason,
                message: rejection.message.clone(),
                target: self.client.database.clone(),
                client_addr: self.client_addr.clone(),
                subject: rejection.subject,
                jti: rejection.jti,
            }),
        );
        self.fatal(rejection.sqlstate, &rejection.message, now_us);
        self.close(CloseReason::Refused, now_us);
    }

    /// A pooled connection to the target, logged in by an earlier session
    /// and reset since, stands in for connecting and logging in: the client
    /// is greeted with `login` (after the catalog read, with column masking
    /// rules).
    pub fn upstream_reused(&mut self, login: LoggedIn, now_us: i64) {
        if !matches!(self.phase, Phase::Connecting(_)) {
            return;
        }
        self.last_us = now_us;
        if self
            .masking
            .as_ref()
            .is_some_and(|(m, _)| m.masker().has_column_rules())
        {
            self.transmits
                .push_back(Transmit::Upstream(catalog::query()));
            self.phase = Phase::Catalog(Box::new((login, ColumnOrigins::default())));
        } else {
            self.greet(login, now_us);
        }
    }

    /// The target's greeting, if this session's target connection can be
    /// handed to another session: the client said goodbye (Terminate), the
    /// target is idle outside a transaction block and owes no answer, and
    /// nothing is held. The connection must still be reset first (`DISCARD
    /// ALL`) by whoever reuses it.
    pub fn reusable_upstream(&self) -> Option<&LoggedIn> {
        let idle = self.upstream_status == b'I'
            && self.held.is_none()
            && self.enforcer.as_ref().is_none_or(Enforcer::idle);
        match self.closed_by {
            Some(CloseReason::ClientTerminated) if idle => self.logged_in.as_ref(),
            _ => None,
        }
    }

    /// The driver may pool the target connection when this session ends:
    /// the client's Terminate then ends only the session, not the target's
    /// backend (the driver closes or resets the connection itself).
    pub fn set_pooling(&mut self, pooling: bool) {
        self.pooling = pooling;
    }

    /// The startup parameters passed on to the target: a pooled connection
    /// serves only clients that asked for the same ones.
    pub fn forwarded_params(&self) -> &[(String, String)] {
        &self.client.forwarded
    }

    /// The connection to the target is open: start logging in.
    pub fn upstream_connected(&mut self, now_us: i64) {
        let Phase::Connecting(login) = &mut self.phase else {
            return;
        };
        let Some(login) = login.take() else { return };
        self.last_us = now_us;
        let (login, startup) = Login::start(login, &self.client.forwarded);
        self.transmits.push_back(Transmit::Upstream(startup));
        self.phase = Phase::LoggingIn(Box::new(login));
    }

    /// The target could not be reached (or the connection broke, or it
    /// stopped answering, during login or the catalog read that follows).
    pub fn upstream_failed(&mut self, why: &str, now_us: i64) {
        if !self.is_logging_in() {
            return;
        }
        self.last_us = now_us;
        let message = format!(
            "gatehouse could not open target \"{}\": {why}",
            self.client.database
        );
        self.fatal("08001", &message, now_us);
        self.close(CloseReason::UpstreamUnavailable, now_us);
    }

    /// The client closed its side.
    pub fn client_closed(&mut self, now_us: i64) {
        self.last_us = now_us;
        self.close(CloseReason::ClientDisconnected, now_us);
    }

    /// The target closed its side.
    pub fn upstream_closed(&mut self, now_us: i64) {
        self.last_us = now_us;
        match self.phase {
            Phase::Relay => {
                self.fatal("08006", "the target closed the connection", now_us);
                self.close(CloseReason::UpstreamClosed, now_us);
            }
            Phase::Connecting(_) | Phase::LoggingIn(_) | Phase::Catalog(_) => {
                self.upstream_failed("the connection closed during login", now_us)
            }
            _ => self.close(CloseReason::UpstreamClosed, now_us),
        }
    }

    /// A read or write failed on either connection.
    pub fn io_failed(&mut self, now_us: i64) {
        self.last_us = now_us;
        self.close(CloseReason::IoError, now_us);
    }

    /// The client started a message and did not finish it within the
    /// gateway's message timeout (`limit_s` seconds): a slowloris holds a
    /// session and its target connection, so it is ended.
    pub fn message_timed_out(&mut self, limit_s: f64, now_us: i64) {
        if !matches!(self.phase, Phase::Relay) {
            return;
        }
        self.last_us = now_us;
        let message = format!(
            "gatehouse: the client did not finish sending a message within {limit_s} s; \
             closing the connection"
        );
        self.fatal("08P01", &message, now_us);
        self.close(CloseReason::ClientProtocolError, now_us);
    }

    /// The store refused to record: end the session rather than forward
    /// unrecorded traffic.
    pub fn store_failed(&mut self, now_us: i64) {
        self.fatal(
            "58030",
            "gatehouse cannot record this session (its store is failing); nothing more is forwarded",
            now_us,
        );
        self.close(CloseReason::StoreFailed, now_us);
    }

    /// The session's grant was revoked: tell the client why and end the
    /// session (a held statement never runs).
    pub fn revoked(&mut self, by: &str, reason: &str, now_us: i64) {
        if !(matches!(self.phase, Phase::Relay) || self.is_logging_in()) {
            return;
        }
        self.last_us = now_us;
        let message = format!("gatehouse: this session's grant was revoked by {by}: {reason}");
        self.fatal(
            crate::grant::SQLSTATE_INVALID_AUTHORIZATION,
            &message,
            now_us,
        );
        self.close(CloseReason::Revoked, now_us);
    }

    /// The gateway is shutting down.
    pub fn shutdown(&mut self, now_us: i64) {
        self.fatal("57P01", "gatehouse is shutting down", now_us);
        self.close(CloseReason::Shutdown, now_us);
    }

    // ---- phases ----

    fn on_startup(&mut self, buf: &mut BytesMut, now_us: i64) -> bool {
        if self.tls.is_none() && buf.first() == Some(&0x16) {
            if self.cfg.tls_available {
                self.phase = Phase::AwaitTls;
                self.actions.push_back(Action::StartTls { direct: true });
            } else {
                self.close(CloseReason::ClientProtocolError, now_us);
            }
            return false;
        }
        let packet = match frame::decode_startup(buf) {
            Ok(Some(p)) => p,
            Ok(None) => return false,
            Err(e) => {
                self.protocol_violation(&e.to_string(), now_us);
                return false;
            }
        };
        match packet {
            Startup::SslRequest if self.tls.is_some() => {
                self.protocol_violation("SSLRequest on an encrypted connection", now_us);
                false
            }
            Startup::SslRequest if self.cfg.tls_available => {
                // Bytes after the SSLRequest would be read as if they came
                // over TLS (CVE-2021-23214): refuse them.
                if !buf.is_empty() {
                    self.protocol_violation("unencrypted data after SSLRequest", now_us);
                    return false;
                }
                self.transmits
                    .push_back(Transmit::Client(Bytes::from_static(b"S")));
                self.phase = Phase::AwaitTls;
                self.actions.push_back(Action::StartTls { direct: false });
                false
            }
            Startup::SslRequest | Startup::GssEncRequest => {
                self.transmits
                    .push_back(Transmit::Client(Bytes::from_static(b"N")));
                true
            }
            Startup::Cancel { pid, secret } => {
                self.actions
                    .push_back(Action::ForwardCancel { pid, secret });
                self.phase = Phase::Closed;
                self.actions.push_back(Action::Close);
                false
            }
            Startup::Message {
                major,
                minor,
                params,
            } => {
                self.on_startup_message(major, minor, params, now_us);
                true
            }
        }
    }

    fn on_startup_message(
        &mut self,
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
        now_us: i64,
    ) {
        let mut client = Client::default();
        let mut unrecognized = Vec::new();
        let mut replication = false;
        for (name, value) in params {
            match name.as_str() {
                "user" => client.user = value,
                "database" => client.database = value,
                "replication" => replication = true,
                n if n.starts_with("_pq_.") => unrecognized.push(name),
                n => {
                    if n == "application_name" {
                        client.application_name = Some(value.clone());
                    }
                    if FORWARDED_PARAMS.contains(&n.to_ascii_lowercase().as_str()) {
                        client.forwarded.push((name, value));
                    }
                }
            }
        }
        if client.database.is_empty() {
            client.database = client.user.clone();
        }
        self.client = client;
        if self.at_capacity {
            self.fatal(
                "53300",
                "gatehouse has too many connections right now; try again shortly",
                now_us,
            );
            return self.close(CloseReason::Refused, now_us);
        }
        if major != 3 {
            let msg =
                format!("unsupported frontend protocol {major}.{minor}: gatehouse supports 3.0");
            self.fatal("0A000", &msg, now_us);
            return self.close(CloseReason::ClientProtocolError, now_us);
        }
        if replication {
            return self.refuse_now(
                Refusal::UnknownTarget,
                "28000",
                "gatehouse does not proxy replication connections".into(),
                now_us,
            );
        }
        if self.tls.is_none() && !self.cfg.plaintext_allowed {
            return self.refuse_now(
                Refusal::TlsRequired,
                "28000",
                "gatehouse requires TLS on this listener: connect with sslmode=require".into(),
                now_us,
            );
        }
        if minor > 0 || !unrecognized.is_empty() {
            let names: Vec<&str> = unrecognized.iter().map(String::as_str).collect();
            self.send_client_unrecorded(encode::negotiate_protocol_version(0, &names).into_bytes());
        }
        self.send_client_unrecorded(encode::authentication(3, &[]).into_bytes());
        self.phase = Phase::AwaitPassword;
    }

    fn refuse_now(
        &mut self,
        reason: Refusal,
        sqlstate: &'static str,
        message: String,
        now_us: i64,
    ) {
        self.phase = Phase::Authorizing;
        self.refuse(
            Rejection {
                reason,
                sqlstate,
                message,
                subject: None,
                jti: None,
            },
            now_us,
        );
    }

    fn on_password(&mut self, buf: &mut BytesMut, now_us: i64) -> bool {
        let frame = match frame::decode(buf, frame::MAX_STARTUP_LEN) {
            Ok(Some(f)) => f,
            Ok(None) => return false,
            Err(FrameError::TooLong { .. }) => {
                self.refuse_now(
                    Refusal::Malformed,
                    "28P01",
                    "the password (grant) is too long to be a Gatehouse grant".into(),
                    now_us,
                );
                return false;
            }
            Err(e) => {
                self.protocol_violation(&e.to_string(), now_us);
                return false;
            }
        };
        if frame.tag() != b'p' {
            self.protocol_violation("expected a password message", now_us);
            return false;
        }
        let body = frame.body();
        let token = body.strip_suffix(&[0]).unwrap_or(body);
        let token = String::from_utf8_lossy(token).trim().to_owned();
        self.phase = Phase::Authorizing;
        self.actions.push_back(Action::Authorize {
            token,
            target: self.client.database.clone(),
        });
        false
    }

    fn on_login(&mut self, buf: &mut BytesMut, now_us: i64) -> bool {
        let Some(frame) = self.next_login_frame(buf, now_us) else {
            return false;
        };
        let Phase::LoggingIn(login) = &mut self.phase else {
            return false;
        };
        match login.handle(frame) {
            Ok(LoginStep::Continue) => true,
            Ok(LoginStep::Send(f)) => {
                self.transmits.push_back(Transmit::Upstream(f.into_bytes()));
                true
            }
            Ok(LoginStep::Done(done)) => {
                let wants_catalog = self
                    .masking
                    .as_ref()
                    .is_some_and(|(m, _)| m.masker().has_column_rules());
                if wants_catalog {
                    self.transmits
                        .push_back(Transmit::Upstream(catalog::query()));
                    self.phase = Phase::Catalog(Box::new((done, ColumnOrigins::default())));
                } else {
                    self.greet(done, now_us);
                }
                true
            }
            Err(e) => {
                self.upstream_failed(&e.to_string(), now_us);
                false
            }
        }
    }

    /// The next whole frame from the target before the client is greeted;
    /// a framing error fails the login.
    fn next_login_frame(&mut self, buf: &mut BytesMut, now_us: i64) -> Option<frame::Frame> {
        match frame::decode(buf, self.cfg.max_upstream_frame) {
            Ok(f) => f,
            Err(e) => {
                self.upstream_failed(&format!("protocol error: {e}"), now_us);
                None
            }
        }
    }

    /// The answer to the catalog query: kept rows, then the greeting.
    fn on_catalog(&mut self, buf: &mut BytesMut, now_us: i64) -> bool {
        let Some(frame) = self.next_login_frame(buf, now_us) else {
            return false;
        };
        let Phase::Catalog(state) = &mut self.phase else {
            return false;
        };
        match frame.tag() {
            b'D' => {
                if let Some((m, _)) = &self.masking {
                    state.1.row(m.masker(), frame.body());
                }
                true
            }
            b'Z' => {
                let Phase::Catalog(state) = std::mem::replace(&mut self.phase, Phase::Relay) else {
                    return false;
                };
                let (done, mut origins) = *state;
                origins.finish();
                if let Some((m, _)) = &mut self.masking {
                    m.set_origins(origins);
                }
                self.greet(done, now_us);
                true
            }
            // An error leaves rules matching by name only; rows still get
            // the detectors. The session goes on.
            _ => true,
        }
    }

    /// Login is complete: AuthenticationOk, the target's parameters, the
    /// gateway's cancel key, ReadyForQuery.
    fn greet(&mut self, done: LoggedIn, now_us: i64) {
        self.phase = Phase::Relay;
        self.upstream_status = b'I';
        self.logged_in = Some(done.clone());
        if let Some((pid, secret)) = done.key {
            self.actions
                .push_back(Action::RegisterCancel { pid, secret });
        }
        let (pid, secret) = self.cfg.backend_key;
        let mut greeting = BytesMut::new();
        greeting.extend_from_slice(encode::authentication(0, &[]).bytes());
        for f in done.parameters.iter().chain(&done.notices) {
            greeting.extend_from_slice(f.bytes());
        }
        greeting.extend_from_slice(encode::backend_key_data(pid, secret).bytes());
        greeting.extend_from_slice(done.ready.bytes());
        self.send_client(greeting.freeze(), now_us);
    }

    /// Forwards the whole client frames in `buf` as one batch; a frame the
    /// plan denies ends the batch and is replaced (see [`super::enforce`]).
    fn relay_client(&mut self, buf: &mut BytesMut, now_us: i64) -> bool {
        if self.past_duration_limit(now_us) {
            return false;
        }
        let mut end = 0;
        let mut terminated = false;
        loop {
            let rest = buf.get(end..).unwrap_or_default();
            let len = match frame::peek(rest, self.cfg.max_client_frame) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    self.flush_client_batch(buf, end, now_us);
                    self.protocol_violation(&e.to_string(), now_us);
                    return false;
                }
            };
            let (tag, body) = split_frame(rest, len);
            let step = match frontend::Message::parse_parts(tag, body) {
                Ok(msg) => self.observe_client(msg, now_us),
                Err(e) => {
                    self.flush_client_batch(buf, end, now_us);
                    self.protocol_violation(&e.to_string(), now_us);
                    return false;
                }
            };
            match step {
                ClientStep::Forward => end += len,
                ClientStep::Terminate => {
                    if !self.pooling {
                        end += len;
                    } else {
                        // Recorded and forwarded up to it; the Terminate
                        // itself stays with the gateway.
                        self.flush_client_batch(buf, end, now_us);
                        let _ = buf.split_to(len);
                        end = 0;
                    }
                    terminated = true;
                    break;
                }
                ClientStep::Hold(request) => {
                    // What came before goes; the held frame stays in `buf`
                    // until the decision.
                    self.flush_client_batch(buf, end, now_us);
                    self.held = Some(request.id.clone());
                    self.actions.push_back(Action::RequestApproval {
                        request,
                        wait: true,
                    });
                    return false;
                }
                ClientStep::Replace(bytes) => {
                    // What came before goes as it is; the client's frame is
                    // dropped (its Statement and Verdict events hold it) and
                    // the replacement is recorded and sent on its own.
                    self.flush_client_batch(buf, end, now_us);
                    let _ = buf.split_to(len);
                    end = 0;
                    self.send_upstream_own(bytes, now_us);
                    if buf.is_empty() {
                        return true;
                    }
                }
            }
        }
        self.flush_client_batch(buf, end, now_us);
        if terminated {
            self.close(CloseReason::ClientTerminated, now_us);
            return false;
        }
        end > 0
    }

    /// Ends the session once the plan's duration limit has passed.
    fn past_duration_limit(&mut self, now_us: i64) -> bool {
        let Some(enforcer) = &self.enforcer else {
            return false;
        };
        let Some(limit) = enforcer.duration_limit_us() else {
            return false;
        };
        if now_us.saturating_sub(self.started_us) <= limit {
            return false;
        }
        let message = format!(
            "gatehouse: the plan of grant {} limits a session to {} s, and this one has lasted longer",
            enforcer.jti(),
            limit / 1_000_000
        );
        self.fatal("54000", &message, now_us);
        self.close(CloseReason::LimitReached, now_us);
        true
    }

    /// Sends bytes of the gateway's own to the target, recorded as one
    /// batch.
    fn send_upstream_own(&mut self, bytes: Bytes, now_us: i64) {
        if let Some((_, tracker)) = &mut self.masking {
            for f in frame::split(&bytes) {
                if let Ok(msg) = frontend::Message::parse(&f) {
                    tracker.client(&msg);
                }
            }
        }
        self.bytes_to_upstream += bytes.len() as u64;
        self.record(
            now_us,
            Body::Frame(crate::event::Frame {
                dir: Direction::ToUpstream,
                bytes: bytes.clone(),
            }),
        );
        self.transmits.push_back(Transmit::Upstream(bytes));
    }

    fn flush_client_batch(&mut self, buf: &mut BytesMut, end: usize, now_us: i64) {
        if end == 0 {
            return;
        }
        let batch = buf.split_to(end).freeze();
        self.bytes_to_upstream += batch.len() as u64;
        self.record(
            now_us,
            Body::Frame(crate::event::Frame {
                dir: Direction::ToUpstream,
                bytes: batch.clone(),
            }),
        );
        self.transmits.push_back(Transmit::Upstream(batch));
    }

    /// Records what a client message means and judges it by the plan.
    fn observe_client(&mut self, msg: frontend::Message<'_>, now_us: i64) -> ClientStep {
        let judged = self.enforcer.as_mut().map(|e| e.client(&msg, now_us));
        let replace = match judged {
            Some(judged) => {
                let replace = match judged.step {
                    Step::Forward => None,
                    Step::Replace(bytes) => Some(bytes),
                    Step::Hold(request) => {
                        if let Some(v) = judged.verdict {
                            self.record(now_us, Body::Verdict(v));
                        }
                        return ClientStep::Hold(request);
                    }
                };
                if let Some(request) = judged.request {
                    self.actions.push_back(Action::RequestApproval {
                        request,
                        wait: false,
                    });
                }
                if let frontend::Message::Query(sql) = msg {
                    self.record_statement(
                        StatementProtocol::Simple,
                        sql.to_owned(),
                        "",
                        "",
                        Vec::new(),
                        now_us,
                    );
                }
                if let Some(v) = judged.verdict {
                    self.record(now_us, Body::Verdict(v));
                }
                replace
            }
            None => None,
        };
        if let Some(bytes) = replace {
            // A denied Parse leaves no statement of the client's under its
            // name (the target's unnamed statement is now the gateway's).
            if let frontend::Message::Parse { name, .. } = msg {
                self.prepared.remove(name);
            }
            return ClientStep::Replace(bytes);
        }
        if let Some((_, tracker)) = &mut self.masking {
            tracker.client(&msg);
        }
        match msg {
            frontend::Message::Query(sql) if self.enforcer.is_none() => {
                self.record_statement(
                    StatementProtocol::Simple,
                    sql.to_owned(),
                    "",
                    "",
                    Vec::new(),
                    now_us,
                );
            }
            frontend::Message::Parse { name, sql, .. } => {
                self.prepared.insert(name.to_owned(), sql.to_owned());
            }
            // After a denial the target skips the rest of the batch: a Bind
            // there runs nothing.
            frontend::Message::Bind(_)
                if self.enforcer.as_ref().is_some_and(Enforcer::batch_denied) => {}
            frontend::Message::Bind(bind) => {
                let text = self
                    .prepared
                    .get(bind.statement)
                    .cloned()
                    .unwrap_or_default();
                let params = bind
                    .params
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Param {
                        format: bind.param_format(i),
                        value: v.map(Bytes::copy_from_slice),
                    })
                    .collect();
                self.record_statement(
                    StatementProtocol::Extended,
                    text,
                    bind.statement,
                    bind.portal,
                    params,
                    now_us,
                );
            }
            frontend::Message::Close { kind: b'S', name } => {
                self.prepared.remove(name);
            }
            frontend::Message::Terminate => return ClientStep::Terminate,
            _ => {}
        }
        ClientStep::Forward
    }

    fn record_statement(
        &mut self,
        protocol: StatementProtocol,
        text: String,
        statement_name: &str,
        portal: &str,
        params: Vec<Param>,
        now_us: i64,
    ) {
        self.statements += 1;
        self.record(
            now_us,
            Body::Statement(Statement {
                protocol,
                text,
                statement_name: statement_name.to_owned(),
                portal: portal.to_owned(),
                params,
            }),
        );
    }

    /// Forwards the whole target frames in `buf` as one batch, masked where
    /// the target has masking rules.
    fn relay_upstream(&mut self, buf: &mut BytesMut, now_us: i64) -> bool {
        let mut end = 0;
        let mut index: u32 = 0;
        // Once a frame is rewritten, the batch is rebuilt here: everything
        // before it copied once, the rest appended frame by frame.
        let mut rebuilt: Option<BytesMut> = None;
        loop {
            let rest = buf.get(end..).unwrap_or_default();
            let len = match frame::peek(rest, self.cfg.max_upstream_frame) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(e) => {
                    self.flush_upstream_batch(buf, end, rebuilt, now_us);
                    self.upstream_violation(&e.to_string(), now_us);
                    return false;
                }
            };
            let (tag, body) = split_frame(rest, len);
            if tag == b'D' && !self.enforcer.as_mut().is_none_or(Enforcer::row) {
                self.flush_upstream_batch(buf, end, rebuilt, now_us);
                self.row_limit_reached(now_us);
                return false;
            }
            let ours = self.enforcer.as_mut().is_some_and(|e| e.server(tag));
            if tag == b'Z' {
                self.upstream_status = body.first().copied().unwrap_or(0);
            }
            let replacement = self.mask_frame(tag, body, index);
            // An answer to the gateway's own request is dropped: rebuilt
            // without it.
            let replacement = if ours {
                Some(Bytes::new())
            } else {
                replacement
            };
            let (tag, body) = match &replacement {
                Some(new) => split_frame(new, new.len()),
                None => (tag, body),
            };
            if let Err(e) = self.observe_upstream(tag, body, now_us) {
                self.flush_upstream_batch(buf, end, rebuilt, now_us);
                self.upstream_violation(&e.to_string(), now_us);
                return false;
            }
            match (replacement, &mut rebuilt) {
                (Some(new), None) => {
                    let mut b = BytesMut::with_capacity(end + new.len() + (rest.len() - len));
                    b.extend_from_slice(buf.get(..end).unwrap_or_default());
                    b.extend_from_slice(&new);
                    rebuilt = Some(b);
                }
                (Some(new), Some(b)) => b.extend_from_slice(&new),
                (None, Some(b)) => b.extend_from_slice(rest.get(..len).unwrap_or_default()),
                (None, None) => {}
            }
            end += len;
            if !ours {
                index = index.saturating_add(1);
            }
        }
        self.flush_upstream_batch(buf, end, rebuilt, now_us);
        end > 0
    }

    /// The plan's row limit is reached: the row past it is not delivered
    /// and the session ends.
    fn row_limit_reached(&mut self, now_us: i64) {
        let Some(enforcer) = &self.enforcer else {
            return;
        };
        let message = format!(
            "gatehouse: the plan of grant {} limits a session to {} rows, and this result goes past it",
            enforcer.jti(),
            enforcer.row_limit()
        );
        self.fatal("54000", &message, now_us);
        self.close(CloseReason::LimitReached, now_us);
    }

    /// The masked form of a target frame, if masking changes it; keeps the
    /// row-shape tracker in step.
    fn mask_frame(&mut self, tag: u8, body: &[u8], index: u32) -> Option<Bytes> {
        let (masker, tracker) = self.masking.as_mut()?;
        match tag {
            b'T' => {
                if let Ok(backend::Message::RowDescription(fields)) =
                    backend::Message::parse_parts(tag, body)
                {
                    tracker.row_description(&fields);
                }
                None
            }
            b'D' => {
                let shape = tracker.data_row();
                masker.frame(tag, body, shape.as_ref(), index)
            }
            b'H' => {
                masker.copy_out(body, tracker.copy_out());
                None
            }
            _ => {
                tracker.server(tag);
                masker.frame(tag, body, None, index)
            }
        }
    }

    /// Records what a target message means (command tags, errors).
    fn observe_upstream(
        &mut self,
        tag: u8,
        body: &[u8],
        now_us: i64,
    ) -> Result<(), frontend::Malformed> {
        // Only the messages the recording names are parsed: rows pass
        // through untouched.
        if !matches!(tag, b'C' | b'E') {
            return Ok(());
        }
        if tag == b'E' {
            // Any client encoding: an error in LATIN1 is still an error.
            let fields = backend::notice_fields_lossy(body);
            let get = |code: u8| {
                fields
                    .iter()
                    .find(|(c, _)| *c == code)
                    .map(|(_, v)| v.clone())
            };
            let info = ErrorInfo {
                severity: get(b'V')
                    .or_else(|| get(b'S'))
                    .unwrap_or_else(|| "ERROR".into()),
                code: get(b'C').unwrap_or_default(),
                message: get(b'M').unwrap_or_default(),
                from_gateway: false,
            };
            self.record(now_us, Body::Error(info));
            return Ok(());
        }
        if let backend::Message::CommandComplete(tag) = backend::Message::parse_parts(tag, body)? {
            let tag = tag.to_owned();
            self.record(now_us, Body::CommandComplete { tag });
        }
        Ok(())
    }

    fn flush_upstream_batch(
        &mut self,
        buf: &mut BytesMut,
        end: usize,
        rebuilt: Option<BytesMut>,
        now_us: i64,
    ) {
        if end == 0 {
            return;
        }
        let batch = buf.split_to(end).freeze();
        if let Some(summary) = self.masking.as_mut().and_then(|(m, _)| m.take_summary()) {
            self.record(now_us, Body::Masked(summary));
        }
        self.send_client(rebuilt.map_or(batch, BytesMut::freeze), now_us);
    }

    // ---- output helpers ----

    fn record(&mut self, now_us: i64, body: Body) {
        let encoded = self.recorder.record(now_us, body);
        self.events.push(encoded);
    }

    /// Sends bytes to the client and records them, once the session is
    /// recorded at all (frames before the grant check are not).
    fn send_client(&mut self, bytes: Bytes, now_us: i64) {
        self.bytes_to_client += bytes.len() as u64;
        if self.recorder.recorded() > 0 {
            self.record(
                now_us,
                Body::Frame(crate::event::Frame {
                    dir: Direction::ToClient,
                    bytes: bytes.clone(),
                }),
            );
        }
        self.transmits.push_back(Transmit::Client(bytes));
    }

    fn send_client_unrecorded(&mut self, bytes: Bytes) {
        self.bytes_to_client += bytes.len() as u64;
        self.transmits.push_back(Transmit::Client(bytes));
    }

    /// Sends a FATAL error of the gateway's own to the client.
    fn fatal(&mut self, sqlstate: &str, message: &str, now_us: i64) {
        if self.is_closed() {
            return;
        }
        if self.recorder.recorded() > 0 {
            self.record(
                now_us,
                Body::Error(ErrorInfo {
                    severity: "FATAL".into(),
                    code: sqlstate.into(),
                    message: message.into(),
                    from_gateway: true,
                }),
            );
        }
        let frame = encode::error_response("FATAL", sqlstate, message, None);
        self.send_client(frame.into_bytes(), now_us);
    }

    fn protocol_violation(&mut self, what: &str, now_us: i64) {
        self.fatal("08P01", &format!("protocol violation: {what}"), now_us);
        self.close(CloseReason::ClientProtocolError, now_us);
    }

    fn upstream_violation(&mut self, what: &str, now_us: i64) {
        self.fatal(
            "08P01",
            &format!("the target sent an invalid message: {what}"),
            now_us,
        );
        self.close(CloseReason::UpstreamProtocolError, now_us);
    }

    fn close(&mut self, reason: CloseReason, now_us: i64) {
        if self.is_closed() {
            return;
        }
        if self.recorder.recorded() > 0 {
            let closed = Closed {
                reason,
                bytes_to_upstream: self.bytes_to_upstream,
                bytes_to_client: self.bytes_to_client,
                statements: self.statements,
                duration_us: now_us.saturating_sub(self.started_us).max(0) as u64,
                seal: None,
            };
            self.record(now_us, Body::Closed(closed));
        }
        self.phase = Phase::Closed;
        self.closed_by = Some(reason);
        self.actions.push_back(Action::Close);
    }
}

/// What to do with one client frame.
enum ClientStep {
    Forward,
    Terminate,
    /// Keep it until the approval is decided.
    Hold(ApprovalRequest),
    /// Send these bytes in its place.
    Replace(Bytes),
}

/// The type byte and body of the whole frame of `len` bytes at the front of
/// `rest` (checked by [`frame::peek`]).
fn split_frame(rest: &[u8], len: usize) -> (u8, &[u8]) {
    let tag = rest.first().copied().unwrap_or(0);
    (tag, rest.get(5..len).unwrap_or_default())
}
