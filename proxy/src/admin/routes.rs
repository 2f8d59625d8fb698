//! The admin API's requests: authentication, routing, and one function per
//! endpoint (the table is in the module above).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::Observed;
use crate::approvals::{ApprovalRegistry, DecideError, Decision};
use crate::config::AdminToken;
use crate::metrics;

/// The largest request body read (a decision's reason).
const MAX_BODY: usize = 64 << 10;
/// The longest reason accepted, in characters.
const MAX_REASON: usize = 2000;
/// How often `watch` sends an empty line, so that a client that went away
/// is noticed.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// What every request handler shares.
pub(super) struct State {
    pub(super) registry: Arc<ApprovalRegistry>,
    /// Each token's BLAKE3 hash and name. Comparing hashes
    /// (`blake3::Hash`'s `==` is constant-time) leaks nothing about the
    /// tokens through timing.
    tokens: Vec<(blake3::Hash, String)>,
    /// What `/readyz` and `/metrics` report.
    pub(super) observed: Observed,
}

impl State {
    pub(super) fn new(
        registry: Arc<ApprovalRegistry>,
        tokens: &[AdminToken],
        observed: Observed,
    ) -> State {
        let tokens = tokens
            .iter()
            .map(|t| (blake3::hash(t.token.expose().as_bytes()), t.name.clone()))
            .collect();
        State {
            registry,
            tokens,
            observed,
        }
    }

    /// `Ok` when the gateway accepts sessions and its store writes;
    /// otherwise why not, as `/readyz`'s JSON body.
    fn readiness(&self) -> Result<(), serde_json::Value> {
        if *self.observed.shutdown.borrow() {
            return Err(serde_json::json!({
                "ready": false,
                "reason": "shutting_down",
                "message": "the gateway is shutting down and accepts no new sessions",
            }));
        }
        if let Some(store) = &self.observed.store
            && let Err(e) = store.health()
        {
            let reason = match e {
                gatehouse_store::StoreError::Closed => "store_closed",
                _ => "store_failed",
            };
            return Err(serde_json::json!({
                "ready": false,
                "reason": reason,
                "store": e.to_string(),
                "message": "the store cannot record, so every command is refused; it retries \
                            every second and serves again once its disk takes writes",
            }));
        }
        Ok(())
    }

    /// The Prometheus exposition of the gateway's counters.
    fn scrape(&self) -> String {
        let store = self.observed.store.as_ref();
        let snapshot = metrics::Snapshot {
            store: store.map(gatehouse_store::Store::stats).unwrap_or_default(),
            store_healthy: store.is_none_or(|s| s.health().is_ok()),
            store_disk_bytes: store.and_then(|s| metrics::disk_usage(s.path())),
            approvals_pending: self.registry.pending().len(),
            ready: self.readiness().is_ok(),
        };
        metrics::render(&self.observed.metrics, &snapshot)
    }

    /// The name of the token `presented` is, if any. Looks at every token
    /// whatever matches, so the time taken does not say which one did.
    fn approver(&self, presented: &str) -> Option<&str> {
        let hash = blake3::hash(presented.as_bytes());
        let mut found = None;
        for (expected, name) in &self.tokens {
            if *expected == hash {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// A response body: all at once, or (for `watch`) lines as they come.
pub(super) enum AdminBody {
    Full(Option<Bytes>),
    /// Chunks as they come: `watch`'s lines, an archive's bytes.
    Lines(mpsc::Receiver<Bytes>),
}

impl Body for AdminBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            AdminBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            AdminBody::Lines(rx) => rx
                .poll_recv(cx)
                .map(|line| line.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, AdminBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AdminBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            AdminBody::Full(None) => SizeHint::with_exact(0),
            AdminBody::Lines(_) => SizeHint::default(),
        }
    }
}

pub(super) type Answer = Response<AdminBody>;

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    let mut response = Response::new(AdminBody::Full(Some(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Answer {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            respond(status, "application/json", body.into())
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode the answer: {e}"),
        ),
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> Answer {
    let body = serde_json::json!({ "error": message }).to_string() + "\n";
    respond(status, "application/json", body.into())
}

/// Answers one request.
pub(super) async fn handle(state: &State, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path
        .trim_start_matches('/')
        .trim_end_matches('/')
        .split('/')
        .collect();
    let method = request.method().clone();
    if segments == ["healthz"] {
        return match method {
            Method::GET | Method::HEAD => respond(StatusCode::OK, "text/plain", "ok\n".into()),
            _ => not_allowed("GET"),
        };
    }
    if segments == ["readyz"] {
        return match method {
            Method::GET | Method::HEAD => match state.readiness() {
                Ok(()) => respond(StatusCode::OK, "text/plain", "ready\n".into()),
                Err(why) => json(StatusCode::SERVICE_UNAVAILABLE, &why),
            },
            _ => not_allowed("GET"),
        };
    }
    let approver = match authenticate(state, &request) {
        Ok(name) => name.to_owned(),
        Err(answer) => return *answer,
    };
    match segments.as_slice() {
        ["metrics"] => match method {
            Method::GET => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                state.scrape().into(),
            ),
            _ => not_allowed("GET"),
        },
        ["approvals"] => match method {
            Method::GET => json(StatusCode::OK, &state.registry.pending()),
            _ => not_allowed("GET"),
        },
        ["approvals", "watch"] => match method {
            Method::GET => watch(state),
            _ => not_allowed("GET"),
        },
        ["approvals", id, verb @ ("approve" | "deny")] => match method {
            Method::POST => {
                let id = percent_decode(id);
                decide(state, &id, *verb == "approve", approver, request).await
            }
            _ => not_allowed("POST"),
        },
        ["store", "archive"] => match method {
            Method::GET => super::archive::serve(state, &approver, request.uri().query()),
            _ => not_allowed("GET"),
        },
        ["grants", jti, "revoke"] => match method {
            Method::POST => {
                let jti = percent_decode(jti);
                revoke(state, &jti, approver, request).await
            }
            _ => not_allowed("POST"),
        },
        _ => error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}")),
    }
}

/// `POST /grants/{jti}/revoke` with `{"reason": "..."}`: recorded in the
/// store, then the grant's sessions end and new ones are refused.
async fn revoke(state: &State, jti: &str, by: String, request: Request<Incoming>) -> Answer {
    let Some(revocations) = &state.observed.revocations else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "revocation is not available here",
        );
    };
    let bytes = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
            );
        }
    };
    let reason = serde_json::from_slice::<DecideBody>(&bytes)
        .ok()
        .and_then(|b| b.reason)
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "a revocation needs a reason of at most {MAX_REASON} characters, which the agent is shown: {{\"reason\": \"...\"}}"
            ),
        );
    }
    if jti.is_empty() {
        return error(StatusCode::BAD_REQUEST, "name the grant's jti");
    }
    match revocations.revoke(jti, &by, &reason).await {
        Ok(fresh) => json(
            StatusCode::OK,
            &serde_json::json!({ "jti": jti, "revoked": fresh, "by": by, "reason": reason }),
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the revocation could not be recorded, so it did not take effect: {e}"),
        ),
    }
}

fn not_allowed(allow: &'static str) -> Answer {
    let mut answer = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this endpoint answers {allow} only"),
    );
    answer
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    answer
}

/// The approver's name, or the 401 to answer.
fn authenticate<'s>(state: &'s State, request: &Request<Incoming>) -> Result<&'s str, Box<Answer>> {
    let unauthorized = |message: &str| {
        let mut answer = error(StatusCode::UNAUTHORIZED, message);
        answer
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Box::new(answer)
    };
    let Some(header) = request.headers().get(AUTHORIZATION) else {
        return Err(unauthorized(
            "missing Authorization: Bearer TOKEN (a token from [[admin.tokens]])",
        ));
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let Some(token) = token else {
        return Err(unauthorized(
            "the Authorization header must be Bearer TOKEN",
        ));
    };
    state
        .approver(token)
        .ok_or_else(|| unauthorized("the token is not one of [[admin.tokens]]"))
}

/// `{"reason": "…"}`; an empty body is `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn decide(
    state: &State,
    id: &str,
    approved: bool,
    approver: String,
    request: Request<Incoming>,
) -> Answer {
    let bytes = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("reading the request body: {e}"),
            );
        }
    };
    let body: DecideBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        DecideBody::default()
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(b) => b,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("the body must be JSON like {{\"reason\": \"...\"}}: {e}"),
                );
            }
        }
    };
    let reason = body.reason.unwrap_or_default().trim().to_owned();
    if !approved && reason.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "a denial needs a reason, which the agent is shown: {\"reason\": \"...\"}",
        );
    }
    if reason.chars().count() > MAX_REASON {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("the reason is longer than {MAX_REASON} characters"),
        );
    }
    let decision = Decision {
        approved,
        approver,
        reason,
    };
    match state.registry.decide(id, decision.clone()) {
        Ok(approval) => {
            tracing::info!(
                approval = %approval.id,
                approved,
                approver = %decision.approver,
                subject = %approval.subject,
                "approval decided through the admin API"
            );
            json(
                StatusCode::OK,
                &serde_json::json!({ "approval": approval, "decision": decision }),
            )
        }
        Err(e @ DecideError::Unknown(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ DecideError::AlreadyDecided { .. }) | Err(e @ DecideError::Withdrawn(_)) => {
            error(StatusCode::CONFLICT, &e.to_string())
        }
    }
}

/// Streams events as JSON lines. Subscribes before answering, so that
/// nothing that happens after the client sees the response head is
/// missed. The first line is empty, so the head goes out at once.
fn watch(state: &State) -> Answer {
    let mut events = state.registry.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            let line = tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => match serde_json::to_vec(&event) {
                        Ok(mut line) => {
                            line.push(b'\n');
                            Bytes::from(line)
                        }
                        Err(e) => {
                            tracing::warn!("admin API watch: cannot encode an event: {e}");
                            continue;
                        }
                    },
                    Err(broadcast::error::RecvError::Lagged(missed)) => Bytes::from(
                        serde_json::json!({ "event": "lagged", "missed": missed }).to_string()
                            + "\n",
                    ),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = heartbeat.tick() => Bytes::from_static(b"\n"),
                () = tx.closed() => break,
            };
            if tx.send(line).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(AdminBody::Lines(rx));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Decodes `%XX` escapes in a path segment (invalid ones are kept as
/// written).
pub(crate) fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'%'), Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(value as u8);
                i += 3;
            }
            (Some(&b), _, _) => {
                out.push(b);
                i += 1;
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
