//! The transcript header: the session's grant, target, client and outcome,
//! from its `Opened`, `Refused` and `Closed` events.

use gatehouse_core::event::{
    CloseReason, Closed, Decision, Masked, Opened, Refusal, Refused, SessionId,
};
use serde::Serialize;

/// Who, what, when, and how a session ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    /// The session id.
    pub session: String,
    /// The agent: the grant's `sub` (for a refusal, if it could be read).
    pub subject: Option<String>,
    /// The grant's `jti`.
    pub jti: Option<String>,
    /// The grant's `iss`.
    pub issuer: Option<String>,
    /// The grant's purpose.
    pub purpose: Option<String>,
    /// The grant's ticket reference.
    pub ticket: Option<String>,
    /// The target (the database name the client asked for).
    pub target: Option<String>,
    /// The user name the client sent (informational).
    pub client_user: Option<String>,
    /// The client's `application_name`.
    pub application_name: Option<String>,
    /// The client's address.
    pub client_addr: Option<String>,
    /// TLS on the client connection (`None`: plaintext, or unknown for a
    /// refused session).
    pub tls: Option<TlsSummary>,
    /// This session was use number `use_number` of its grant.
    pub use_number: Option<u32>,
    /// The grant's `uses` limit (`None`: unlimited or unknown).
    pub max_uses: Option<u32>,
    /// The session's first event, microseconds since the Unix epoch.
    pub started_us: i64,
    /// From the first to the last event (the `Closed` event's own figure
    /// when there is one).
    pub duration_us: i64,
    /// How it ended.
    pub status: SessionStatus,
    /// The run-time parameters the client was greeted with
    /// (`server_version`, `TimeZone`, …).
    pub parameters: Vec<(String, String)>,
    /// Events read.
    pub events: u64,
    /// What the gateway masked in this session, summed over its `Masked`
    /// events: which rule hit which column how often (never a value), in
    /// rule then column order. Absent from JSON when nothing was masked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<MaskTotal>,
    /// Statements (simple queries or Parses) the plan denied.
    #[serde(skip_serializing_if = "is_zero")]
    pub denied: u64,
    /// Statements the plan held for approval.
    #[serde(skip_serializing_if = "is_zero")]
    pub held: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How often one masking rule hit one column in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskTotal {
    /// The rule, e.g. `detector:card_number`, `column:ssn`, `dictionary:0`.
    pub rule: String,
    /// The column name; `copy` for COPY data, `error:detail` and the like
    /// for error and notice fields.
    pub column: String,
    /// Values (or matches inside values) masked.
    pub count: u64,
}

impl Header {
    /// Counts a verdict.
    pub(crate) fn verdict(&mut self, decision: Decision) {
        match decision {
            Decision::Allow => {}
            Decision::Deny => self.denied += 1,
            Decision::Hold => self.held += 1,
        }
    }

    pub(crate) fn new(session: SessionId) -> Self {
        Header {
            session: session.to_string(),
            subject: None,
            jti: None,
            issuer: None,
            purpose: None,
            ticket: None,
            target: None,
            client_user: None,
            application_name: None,
            client_addr: None,
            tls: None,
            use_number: None,
            max_uses: None,
            started_us: 0,
            duration_us: 0,
            status: SessionStatus::Cut,
            parameters: Vec::new(),
            events: 0,
            masked: Vec::new(),
            denied: 0,
            held: 0,
        }
    }

    /// Adds a `Masked` event's hits to the session's totals.
    pub(crate) fn masked(&mut self, m: &Masked) {
        for hit in &m.hits {
            let at = self.masked.binary_search_by(|t| {
                (t.rule.as_str(), t.column.as_str()).cmp(&(&hit.rule, &hit.column))
            });
            match at {
                Ok(i) => {
                    if let Some(t) = self.masked.get_mut(i) {
                        t.count = t.count.saturating_add(u64::from(hit.count));
                    }
                }
                Err(i) => self.masked.insert(
                    i,
                    MaskTotal {
                        rule: hit.rule.clone(),
                        column: hit.column.clone(),
                        count: u64::from(hit.count),
                    },
                ),
            }
        }
    }

    pub(crate) fn opened(&mut self, o: &Opened) {
        self.subject = Some(o.subject.clone());
        self.jti = Some(o.jti.clone());
        self.issuer = Some(o.issuer.clone());
        self.purpose = Some(o.purpose.clone());
        self.ticket = o.ticket.clone();
        self.target = Some(o.target.clone());
        self.client_user = Some(o.client_user.clone());
        self.application_name = o.application_name.clone();
        self.client_addr = Some(o.client_addr.clone());
        self.tls = o.tls.as_ref().map(|t| TlsSummary {
            version: t.version.clone(),
            cipher: t.cipher.clone(),
            direct: t.direct,
        });
        self.use_number = Some(o.use_number);
        self.max_uses = o.max_uses;
    }

    pub(crate) fn refused(&mut self, r: &Refused) {
        self.subject = r.subject.clone().or(self.subject.take());
        self.jti = r.jti.clone().or(self.jti.take());
        self.target = Some(r.target.clone());
        self.client_addr = Some(r.client_addr.clone());
        self.status = SessionStatus::Refused {
            reason: refusal_code(r.reason),
            text: refusal_text(r.reason),
            message: r.message.clone(),
        };
    }

    pub(crate) fn closed(&mut self, c: &Closed) {
        self.duration_us = i64::try_from(c.duration_us).unwrap_or(i64::MAX);
        if !matches!(self.status, SessionStatus::Refused { .. }) {
            self.status = SessionStatus::Closed {
                reason: close_reason_code(c.reason),
                text: close_reason_text(c.reason),
                bytes_to_upstream: c.bytes_to_upstream,
                bytes_to_client: c.bytes_to_client,
                statements: c.statements,
            };
        }
    }
}

/// TLS on the client connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsSummary {
    /// E.g. `TLSv1.3`.
    pub version: String,
    /// The cipher suite.
    pub cipher: String,
    /// PostgreSQL 17 direct TLS.
    pub direct: bool,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionStatus {
    /// It has no `Closed` event: the gateway stopped (crash, power cut)
    /// while it ran, or the store was copied while it ran. A store this
    /// tool can open is held by no gateway, so nothing can still add to it.
    Cut,
    /// It was refused before reaching a target.
    Refused {
        /// Machine-readable reason, e.g. `expired`.
        reason: &'static str,
        /// For people, e.g. `grant expired`.
        text: &'static str,
        /// What the client was told.
        message: String,
    },
    /// It ended.
    Closed {
        /// Machine-readable reason, e.g. `client_terminated`.
        reason: &'static str,
        /// For people, e.g. `client terminated`.
        text: &'static str,
        /// Bytes forwarded to the target, as the gateway counted them.
        bytes_to_upstream: u64,
        /// Bytes sent to the client, as the gateway counted them.
        bytes_to_client: u64,
        /// Statements, as the gateway counted them.
        statements: u64,
    },
}

impl SessionStatus {
    /// A short description: `closed: client terminated`,
    /// `refused: grant expired`, `cut (no close recorded)`.
    pub fn describe(&self) -> String {
        match self {
            SessionStatus::Cut => "cut (no close recorded)".into(),
            SessionStatus::Refused { text, .. } => format!("refused: {text}"),
            SessionStatus::Closed { text, .. } => format!("closed: {text}"),
        }
    }
}

/// A close reason for people.
pub fn close_reason_text(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::ClientTerminated => "client terminated",
        CloseReason::ClientDisconnected => "client disconnected",
        CloseReason::UpstreamClosed => "target closed the connection",
        CloseReason::ClientProtocolError => "client protocol error",
        CloseReason::UpstreamProtocolError => "target protocol error",
        CloseReason::IoError => "I/O error",
        CloseReason::Shutdown => "gateway shut down",
        CloseReason::Refused => "refused",
        CloseReason::UpstreamUnavailable => "target unavailable",
        CloseReason::StoreFailed => "store failed",
        CloseReason::LimitReached => "a limit of the plan was reached",
        CloseReason::Revoked => "the grant was revoked",
    }
}

fn close_reason_code(reason: CloseReason) -> &'static str {
    match reason {
        CloseReason::ClientTerminated => "client_terminated",
        CloseReason::ClientDisconnected => "client_disconnected",
        CloseReason::UpstreamClosed => "upstream_closed",
        CloseReason::ClientProtocolError => "client_protocol_error",
        CloseReason::UpstreamProtocolError => "upstream_protocol_error",
        CloseReason::IoError => "io_error",
        CloseReason::Shutdown => "shutdown",
        CloseReason::Refused => "refused",
        CloseReason::UpstreamUnavailable => "upstream_unavailable",
        CloseReason::StoreFailed => "store_failed",
        CloseReason::LimitReached => "limit_reached",
        CloseReason::Revoked => "revoked",
    }
}

/// A refusal reason for people.
pub fn refusal_text(reason: Refusal) -> &'static str {
    match reason {
        Refusal::Malformed => "malformed grant",
        Refusal::BadSignature => "bad grant signature",
        Refusal::UnknownKey => "unknown signing key",
        Refusal::Expired => "grant expired",
        Refusal::NotYetValid => "grant not yet valid",
        Refusal::WrongAudience => "grant for another audience",
        Refusal::WrongIssuer => "grant from an unknown issuer",
        Refusal::WrongTarget => "target not in the grant",
        Refusal::UsedUp => "grant used up",
        Refusal::Revoked => "grant revoked",
        Refusal::MissingClaim => "grant missing a claim",
        Refusal::UnknownTarget => "unknown target",
        Refusal::TlsRequired => "TLS required",
        Refusal::UpstreamUnavailable => "target unavailable",
        Refusal::StoreUnavailable => "store unavailable",
    }
}

fn refusal_code(reason: Refusal) -> &'static str {
    match reason {
        Refusal::Malformed => "malformed",
        Refusal::BadSignature => "bad_signature",
        Refusal::UnknownKey => "unknown_key",
        Refusal::Expired => "expired",
        Refusal::NotYetValid => "not_yet_valid",
        Refusal::WrongAudience => "wrong_audience",
        Refusal::WrongIssuer => "wrong_issuer",
        Refusal::WrongTarget => "wrong_target",
        Refusal::UsedUp => "used_up",
        Refusal::Revoked => "revoked",
        Refusal::MissingClaim => "missing_claim",
        Refusal::UnknownTarget => "unknown_target",
        Refusal::TlsRequired => "tls_required",
        Refusal::UpstreamUnavailable => "upstream_unavailable",
        Refusal::StoreUnavailable => "store_unavailable",
    }
}

/// A session summary's status, as [`SessionStatus`].
pub(crate) fn status_of(refused: Option<&Refused>, closed: Option<&Closed>) -> SessionStatus {
    let mut h = Header::new(SessionId([0; 16]));
    if let Some(r) = refused {
        h.refused(r);
    }
    if let Some(c) = closed {
        h.closed(c);
    }
    h.status
}
