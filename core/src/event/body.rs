//! What an event says. Every type here is part of the on-disk format
//! ([`super::FORMAT_VERSION`]).

use bytes::Bytes;

use super::Seal;

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
pub enum Direction {
    /// From the client (the agent) towards the target.
    ToUpstream,
    /// From the gateway to the client: what the client received.
    ToClient,
}

/// The payload of one event.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub enum Body {
    /// A grant was accepted and the session is bound to a target.
    Opened(Opened),
    /// The connection was refused before it reached a target.
    Refused(Refused),
    /// One or more consecutive protocol frames of one direction, byte for
    /// byte as forwarded.
    Frame(Frame),
    /// A statement the client sent (simple query, or Parse text with the
    /// parameters of the Bind that executes it).
    Statement(Statement),
    /// The target finished a command; `tag` is its CommandComplete tag.
    CommandComplete {
        /// E.g. `SELECT 100000`, `INSERT 0 1`.
        tag: String,
    },
    /// An ErrorResponse reached the client, from the target or the gateway.
    Error(ErrorInfo),
    /// The session ended.
    Closed(Closed),
    /// The gateway masked values in the frames of the next `Frame` event:
    /// which rule hit which column how often, and where. Never the values.
    Masked(Masked),
    /// The plan's answer to a statement, given before anything of it was
    /// forwarded.
    Verdict(Verdict),
    /// A grant was revoked: its open sessions end and new ones are refused,
    /// also after a restart. The only event of a session of its own.
    Revoked(Revoked),
    /// An HTTP request head, as forwarded upstream (or refused), secrets
    /// redacted. Boxed, like the other HTTP bodies, so that the archived
    /// [`Body`] keeps the size format 3 gave it.
    HttpRequest(Box<HttpRequest>),
    /// An HTTP response head, as sent to the client.
    HttpResponse(Box<HttpResponse>),
    /// A piece of an HTTP message body, byte for byte as forwarded (a
    /// response body as the client received it: masked).
    HttpBody(Box<HttpBody>),
    /// A message on an upgraded (WebSocket) connection, as relayed.
    WsMessage(Box<WsMessage>),
}

/// One HTTP header. Values that carry a credential (`Authorization`,
/// `Proxy-Authorization`, `Cookie`, `Set-Cookie`, the injected credential's
/// header) are recorded as `[redacted]`.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct HttpHeader {
    /// The name, lower case.
    pub name: String,
    /// The value; bytes that are not UTF-8 replaced by U+FFFD.
    pub value: String,
}

/// An HTTP request head.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct HttpRequest {
    /// The request's number on its connection, from 1: pairs it with its
    /// response and bodies.
    pub exchange: u32,
    /// `GET`, `POST`, ….
    pub method: String,
    /// The path and query the client sent, prefix included.
    pub target: String,
    /// The path and query as forwarded to the upstream.
    pub upstream_target: String,
    /// `HTTP/1.1`.
    pub version: String,
    /// The headers as forwarded upstream (a refused request: as received),
    /// credentials redacted.
    pub headers: Vec<HttpHeader>,
    /// What the plan saw: `GET /v1/invoices`, `list pods in billing`.
    pub operation: String,
}

/// An HTTP response head.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct HttpResponse {
    /// The request it answers ([`HttpRequest::exchange`]).
    pub exchange: u32,
    /// The status code.
    pub status: u16,
    /// The headers as sent to the client, credentials redacted.
    pub headers: Vec<HttpHeader>,
    /// True when the gateway answered (a denial, a malformed request, an
    /// unreachable upstream), false when the upstream did.
    pub from_gateway: bool,
}

/// A piece of an HTTP body.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct HttpBody {
    /// The exchange it belongs to.
    pub exchange: u32,
    /// A request body goes [`Direction::ToUpstream`], a response body
    /// [`Direction::ToClient`].
    pub dir: Direction,
    /// The bytes, decoded from chunked transfer coding (not from any
    /// content coding).
    pub bytes: Bytes,
    /// Whether this is the body's last piece.
    pub end: bool,
}

/// A WebSocket message on an upgraded connection.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct WsMessage {
    /// The exchange whose upgrade opened the connection.
    pub exchange: u32,
    /// Which way it went.
    pub dir: Direction,
    /// `text`, `binary`, `close`, `ping`, `pong`; `error` when the stream
    /// could no longer be decoded (the bytes then say why, and the
    /// connection is still relayed, no longer recorded per message).
    pub kind: String,
    /// For a Kubernetes stream protocol (`v5.channel.k8s.io`): the channel
    /// (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, 255 close).
    pub channel: Option<u8>,
    /// The payload (without the channel byte), unmasked from the wire.
    pub bytes: Bytes,
    /// The message was larger than the gateway records: `bytes` is its
    /// beginning.
    pub truncated: bool,
}

/// A grant's revocation.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Revoked {
    /// The grant's `jti`.
    pub jti: String,
    /// Who revoked it (the admin token's name).
    pub by: String,
    /// Why.
    pub reason: String,
}

/// What the plan decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
pub enum Decision {
    /// Forwarded.
    Allow,
    /// Refused: the client got an error, the target never ran it.
    Deny,
    /// Waits for a human's approval (or, in reject-and-retry mode, was
    /// refused until one approves it).
    Hold,
}

/// The plan's answer to one simple query or one Parse.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Verdict {
    /// What was decided.
    pub decision: Decision,
    /// A simple query, or a Parse.
    pub protocol: StatementProtocol,
    /// The prepared statement's name, for a Parse.
    pub statement_name: String,
    /// The SQL. Left empty for an allowed simple query: the `Statement`
    /// event just before it holds the text.
    pub text: String,
    /// The kind of each statement (`select`, `update`, `begin`, …).
    pub kinds: Vec<String>,
    /// What the statements do, as the plan sees it
    /// (`update on public.invoices`, `calling function nextval`).
    pub accesses: Vec<String>,
    /// For a denial or a hold: what the plan lacks, why the SQL could not
    /// be classified, or the approver's reason.
    pub reason: String,
    /// The approval request this verdict belongs to (a hold, and the
    /// decision that ends it), or empty.
    pub approval: String,
    /// Who decided the approval (the admin token's name; `gatehouse` for a
    /// timeout), or empty.
    pub approver: String,
}

/// A masking summary for one batch of frames.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Masked {
    /// Hits by rule and column.
    pub hits: Vec<MaskHit>,
    /// The masked cells: the index of the frame within the next `Frame`
    /// event, and the column (field) index within that frame.
    pub cells: Vec<MaskedCell>,
}

/// How often one rule hit one column.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct MaskHit {
    /// The rule's name, e.g. `detector:card_number`, `column:ssn`.
    pub rule: String,
    /// The column's name; for COPY data and error fields, a description
    /// such as `copy` or `error:detail`.
    pub column: String,
    /// Values (or matches inside values) masked.
    pub count: u32,
}

/// One masked cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct MaskedCell {
    /// Index of the frame within the batch.
    pub frame: u32,
    /// Field index within the frame.
    pub column: u16,
}

/// Consecutive protocol frames as they crossed the gateway in one direction
/// (typically what one read delivered).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Frame {
    /// Which way it went.
    pub dir: Direction,
    /// One or more whole frames: type byte, length and body each. Frames
    /// that carry a credential (the client's password message, the upstream
    /// login) are never recorded.
    pub bytes: Bytes,
}

/// TLS parameters of the client connection.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct TlsInfo {
    /// E.g. `TLSv1.3`.
    pub version: String,
    /// The negotiated cipher suite.
    pub cipher: String,
    /// Whether the client used PostgreSQL 17's direct TLS negotiation.
    pub direct: bool,
}

/// A session that a valid grant opened.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Opened {
    /// The grant's `sub`: the agent.
    pub subject: String,
    /// The grant's `jti`.
    pub jti: String,
    /// The grant's `iss`.
    pub issuer: String,
    /// The grant's free-text purpose.
    pub purpose: String,
    /// The grant's ticket reference, if any.
    pub ticket: Option<String>,
    /// The target name (the database name the client asked for).
    pub target: String,
    /// The user name the client sent (informational; the grant decides).
    pub client_user: String,
    /// The client's `application_name`, if it sent one.
    pub application_name: Option<String>,
    /// The client's address, `ip:port`.
    pub client_addr: String,
    /// TLS on the client connection, if any.
    pub tls: Option<TlsInfo>,
    /// This is use number `use_number` of the grant (1-based).
    pub use_number: u32,
    /// The grant's `uses` limit, if it has one.
    pub max_uses: Option<u32>,
    /// The grant's `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
}

/// Why a connection was refused before reaching a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
pub enum Refusal {
    /// The grant could not be parsed as a JWT.
    Malformed,
    /// The signature did not verify.
    BadSignature,
    /// The grant names a key id the gateway does not know.
    UnknownKey,
    /// `exp` has passed.
    Expired,
    /// `nbf` is in the future.
    NotYetValid,
    /// `aud` does not name this gateway.
    WrongAudience,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// The plan does not name the requested target.
    WrongTarget,
    /// The grant's uses are spent.
    UsedUp,
    /// The grant was revoked.
    Revoked,
    /// A claim the gateway requires is missing or has the wrong type.
    MissingClaim,
    /// The requested database names no configured target.
    UnknownTarget,
    /// The client did not use TLS where TLS is required.
    TlsRequired,
    /// The target could not be reached or refused the gateway's login.
    UpstreamUnavailable,
    /// The store could not record the session, so it was not opened.
    StoreUnavailable,
}

/// A refused connection.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Refused {
    /// The kind of refusal.
    pub reason: Refusal,
    /// The message the client was sent.
    pub message: String,
    /// The database (target) the client asked for.
    pub target: String,
    /// The client's address.
    pub client_addr: String,
    /// The grant's `sub`, when it could be read.
    pub subject: Option<String>,
    /// The grant's `jti`, when it could be read.
    pub jti: Option<String>,
}

/// How a statement reached the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
pub enum StatementProtocol {
    /// A simple Query message (possibly several statements).
    Simple,
    /// Parse/Bind/Execute.
    Extended,
    /// An HTTP request (`text` is its method and path; for Kubernetes,
    /// what it does, e.g. `list pods in billing`).
    Http,
}

/// One bind parameter.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Param {
    /// 0 = text, 1 = binary.
    pub format: i16,
    /// The value; `None` is SQL NULL.
    pub value: Option<Bytes>,
}

/// A statement the client sent.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Statement {
    /// Simple or extended protocol.
    pub protocol: StatementProtocol,
    /// The SQL text (for the extended protocol: the text given at Parse).
    pub text: String,
    /// The prepared statement's name (empty: unnamed). Extended only.
    pub statement_name: String,
    /// The portal's name (empty: unnamed). Extended only.
    pub portal: String,
    /// The Bind parameters. Extended only.
    pub params: Vec<Param>,
}

/// The fields of an ErrorResponse that an auditor looks for.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct ErrorInfo {
    /// `ERROR`, `FATAL` or `PANIC`.
    pub severity: String,
    /// The SQLSTATE.
    pub code: String,
    /// The primary message.
    pub message: String,
    /// True when the gateway produced the error, false when the target did.
    pub from_gateway: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq, Clone, Copy))]
pub enum CloseReason {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed the connection without Terminate.
    ClientDisconnected,
    /// The target closed the connection.
    UpstreamClosed,
    /// A protocol violation by the client.
    ClientProtocolError,
    /// A protocol violation by the target.
    UpstreamProtocolError,
    /// An IO error on either connection.
    IoError,
    /// The gateway is shutting down.
    Shutdown,
    /// The session was refused during startup.
    Refused,
    /// The target could not be reached or refused the gateway's login.
    UpstreamUnavailable,
    /// The store failed, so the session could not go on being recorded.
    StoreFailed,
    /// A limit of the grant's plan (rows, duration) was reached.
    LimitReached,
    /// The session's grant was revoked.
    Revoked,
}

/// The end of a session, with its totals.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Closed {
    /// Why it ended.
    pub reason: CloseReason,
    /// Bytes forwarded from the client to the target.
    pub bytes_to_upstream: u64,
    /// Bytes sent to the client.
    pub bytes_to_client: u64,
    /// Statements recorded.
    pub statements: u64,
    /// Microseconds from the first to the last event.
    pub duration_us: u64,
    /// The gateway's signature over this event, its place and the chain
    /// before it ([`super::seal_message`]); `None` when the gateway has no
    /// seal key.
    pub seal: Option<Seal>,
}
