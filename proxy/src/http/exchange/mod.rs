//! One client connection's requests: route, grant, verdict, approval,
//! record, forward. The steps live in the submodules: `open` (the grant
//! check and the session's start), `hold` (approvals), `forward` (the
//! request as the target gets it, and the gateway's own answers).

mod forward;
mod hold;
mod open;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_core::event::{
    Body as EventBody, CloseReason, Decision as EventDecision, Direction, HttpRequest, Opened,
    Recorder, Refused, SessionId, TlsInfo,
};
use gatehouse_core::http::rules::{Decision, HttpPolicy, HttpVerdict, TargetKind};
use gatehouse_core::pg::{Authorized, Rejection};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::headers::bearer;
use super::respond::{Problem, denial, full};
use super::session::{SessionLog, record_body, record_head, record_verdict};
use super::{HttpShared, HttpUpstream, ProxyBody, headers, now_us, route};
use crate::approvals::{ApprovalMode, PendingApproval};
use crate::serve::Shared;
use gatehouse_core::pg::ApprovedStatements as _;

/// The approver named when nobody decided in time.
const TIMEOUT_APPROVER: &str = "gatehouse";

/// One client connection.
pub struct Conn {
    shared: Arc<Shared>,
    http: Arc<HttpShared>,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    sni: Option<String>,
    /// The open session; requests are answered one at a time.
    state: tokio::sync::Mutex<State>,
    /// When the last request arrived or was answered.
    last_active: Mutex<Instant>,
    /// The gateway serves as many connections as it may: every request
    /// gets 503 and the connection closes.
    at_capacity: bool,
    /// A second handle on the client's socket, to notice it leaving while
    /// a request is held ([`crate::serve::peer_gone`]).
    watcher: Option<tokio::net::TcpStream>,
}

#[derive(Default)]
struct State {
    session: Option<Active>,
    exchanges: u32,
}

/// A session open on the connection.
struct Active {
    token: String,
    target: String,
    log: Arc<SessionLog>,
    upstream: Arc<HttpUpstream>,
    policy: HttpPolicy,
    auth: Authorized,
    sender: Option<SendRequest<ProxyBody>>,
    _slot: crate::serve::SessionSlot,
    opened: Instant,
    approvals: u32,
    /// An upgraded connection now owns the session's end.
    upgraded: bool,
}

impl Conn {
    /// A connection from `peer`.
    pub fn new(
        shared: Arc<Shared>,
        http: Arc<HttpShared>,
        peer: SocketAddr,
        tls: Option<TlsInfo>,
        sni: Option<String>,
        at_capacity: bool,
        watcher: Option<tokio::net::TcpStream>,
    ) -> Conn {
        Conn {
            shared,
            http,
            peer,
            tls,
            sni,
            state: tokio::sync::Mutex::default(),
            last_active: Mutex::new(Instant::now()),
            at_capacity,
            watcher,
        }
    }

    fn touch(&self) {
        *self.last_active.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// How long since the last request came or was answered.
    pub fn idle_for(&self) -> Duration {
        self.last_active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// The connection ended: closes its session.
    pub async fn finished(&self) {
        let mut state = self.state.lock().await;
        if let Some(active) = state.session.take()
            && !active.upgraded
        {
            active
                .log
                .close(CloseReason::ClientDisconnected, now_us())
                .await;
        }
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        if self.at_capacity {
            let mut response = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "gatehouse: the gateway serves as many connections as it may; retry shortly",
            )
            .response(false);
            let h = response.headers_mut();
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        self.touch();
        let pending_body = !hyper::body::Body::is_end_stream(req.body());
        let mut body_read = false;
        let mut state = self.state.lock().await;
        let mut response = self.exchange(&mut state, req, &mut body_read).await;
        if pending_body && !body_read {
            // Answered before its body was read (a denial, a 413): the
            // connection closes, and says so (RFC 9110 §10.1.1), so that a
            // client waiting on `Expect: 100-continue` sends no body.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.touch();
        response
    }

    async fn exchange(
        &self,
        state: &mut State,
        mut req: Request<Incoming>,
        body_read: &mut bool,
    ) -> Response<ProxyBody> {
        if let Some(problem) = unforwardable(&req) {
            return problem.response(false);
        }
        let host = route::host_of(&req, self.sni.as_deref());
        let authorizer = &self.shared.authorizer;
        let Some((target, prefix_len)) = authorizer.http_route(host.as_deref(), req.uri().path())
        else {
            let message = format!(
                "gatehouse: no target is configured for {} {}; ask for a path under a target's \
                 prefix (e.g. /TARGET/…) or its host name",
                req.method(),
                req.uri().path()
            );
            // An agent that presented a grant is recorded as refused (one
            // without is not: anyone could fill the store so).
            if bearer(&req).is_some() {
                let now = now_us();
                let id = SessionId(*uuid::Uuid::now_v7().as_bytes());
                let seal = self.shared.session.seal_key.clone();
                let log = SessionLog::new(
                    Recorder::sealed_with(id, seal),
                    self.shared.writer.clone(),
                    now,
                );
                let r = Rejection {
                    reason: gatehouse_core::event::Refusal::UnknownTarget,
                    sqlstate: "28000",
                    message: message.clone(),
                    subject: None,
                    jti: None,
                };
                let asked = format!("{}{}", host.as_deref().unwrap_or(""), req.uri().path());
                self.record_refusal(&log, &asked, &r, now).await;
            }
            return Problem::new(StatusCode::NOT_FOUND, "NotFound", message).response(false);
        };
        let token = match bearer(&req) {
            Some(t) => t,
            None => {
                return Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "gatehouse: send your grant as a bearer token (Authorization: Bearer <grant>)",
                )
                .response(self.is_kubernetes(&target));
            }
        };
        let same = state
            .session
            .as_ref()
            .is_some_and(|a| a.token == token && a.target == target);
        if !same {
            if let Some(old) = state.session.take()
                && !old.upgraded
            {
                old.log.close(CloseReason::ClientTerminated, now_us()).await;
            }
            match self.open(&token, &target, &req).await {
                Ok(active) => state.session = Some(active),
                Err(response) => return *response,
            }
        }
        let Some(active) = state.session.as_mut() else {
            return no_session();
        };
        if let Some(ended) = self.still_valid(active).await {
            state.session = None;
            return ended;
        }
        state.exchanges += 1;
        let exchange = state.exchanges;
        let rest = route::rest_of(&req, prefix_len);
        let upgrade = headers::upgrade_of(req.headers());
        let head = req.method() == http::Method::HEAD;
        let Some(active) = state.session.as_mut() else {
            return no_session();
        };
        let verdict = active.policy.check(req.method().as_str(), &rest);
        let kube = active.upstream.is_kubernetes();
        let log = Arc::clone(&active.log);
        log.count(1, 0, 0);
        log.record(
            now_us(),
            EventBody::HttpRequest(Box::new(HttpRequest {
                exchange,
                method: req.method().as_str().to_owned(),
                target: req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default(),
                upstream_target: format!("{}{rest}", active.upstream.target.base_path),
                version: format!("{:?}", req.version()),
                headers: headers::recorded(
                    req.headers(),
                    active.upstream.target.credential.header_name(),
                ),
                operation: verdict.operation.clone(),
            })),
        );
        if let Some(limit) = active.auth.policy.scope.limits.statements
            && log.requests() > limit
        {
            let problem = Problem {
                rule: Some("limits.statements".into()),
                jti: Some(active.auth.jti.clone()),
                ..Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    format!(
                        "gatehouse: the grant allows {limit} requests per session and this \
                         session has used them; ask the planner for a new grant"
                    ),
                )
            };
            record_verdict(
                &log,
                &verdict,
                EventDecision::Deny,
                &problem.message,
                "",
                "",
            );
            return self.refuse(&log, exchange, problem, kube).await;
        }
        let rate = self.shared.authorizer.limits.statement_rate();
        if let Some(rate) = rate
            && let Err(per_second) = rate.take(&active.auth.jti, 1, now_us())
        {
            let problem = Problem {
                rule: Some("limits.statements_per_second_per_grant".into()),
                jti: Some(active.auth.jti.clone()),
                ..Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    format!(
                        "gatehouse: grant {} is over this gateway's {per_second} requests per \
                         second; slow down and retry",
                        active.auth.jti
                    ),
                )
            };
            record_verdict(
                &log,
                &verdict,
                EventDecision::Deny,
                &problem.message,
                "",
                "",
            );
            let mut response = self.refuse(&log, exchange, problem, kube).await;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        match verdict.decision {
            Decision::Allow => {
                record_verdict(&log, &verdict, EventDecision::Allow, "", "", "");
            }
            Decision::Deny => {
                let problem = denial(&verdict, &active.auth.jti, kube);
                record_verdict(&log, &verdict, EventDecision::Deny, &verdict.reason, "", "");
                return self.refuse(&log, exchange, problem, kube).await;
            }
            Decision::Hold => {
                active.approvals += 1;
                let id = format!("{}-h{}", log.id(), active.approvals);
                let request = format!("{} {rest}", req.method());
                if let Some(problem) = self.hold(active, &log, &verdict, &id, &request).await {
                    return self.refuse(&log, exchange, problem, kube).await;
                }
            }
        }
        if let Some(proto) = &upgrade
            && !proto.eq_ignore_ascii_case("websocket")
            && !active.upstream.target.allow_spdy
        {
            let problem = Problem {
                jti: Some(active.auth.jti.clone()),
                ..Problem::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "gatehouse: the {proto} upgrade is refused; use WebSocket (kubectl 1.30 \
                         and later do for exec, attach and port-forward), or ask the operator \
                         to set allow_spdy on this target"
                    ),
                )
            };
            return self.refuse(&log, exchange, problem, kube).await;
        }
        // The client's upgrade, taken before its request is consumed.
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let limit = usize::try_from(self.http.settings.max_body_bytes).unwrap_or(usize::MAX);
        let body = match Limited::new(body, limit).collect().await {
            Ok(b) => {
                *body_read = true;
                b.to_bytes()
            }
            Err(e) => {
                let too_large = e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                let problem = if too_large {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLarge",
                        format!("gatehouse: request bodies are limited to {limit} bytes"),
                    )
                } else {
                    Problem::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("gatehouse: the request body could not be read: {e}"),
                    )
                };
                return self.refuse(&log, exchange, problem, kube).await;
            }
        };
        record_body(&log, exchange, Direction::ToUpstream, &body);
        log.count(0, body.len() as u64, 0);
        // Audit before forward.
        if let Err(e) = log.flush_durable().await {
            tracing::error!("store refused an HTTP request: {e}");
            let problem = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "gatehouse: the request could not be recorded, so it was not forwarded; try again \
                 later",
            );
            let response = problem.response(kube);
            if let Some(a) = state.session.take() {
                a.log.close(CloseReason::StoreFailed, now_us()).await;
            }
            return response;
        }
        let Some(active) = state.session.as_mut() else {
            return no_session();
        };
        let masking = super::mask::for_response(&active.auth, &active.upstream);
        let upstream_req = match self.upstream_request(
            active,
            parts,
            &rest,
            body,
            masking.is_some(),
            upgrade.is_some(),
        ) {
            Ok(r) => r,
            Err(problem) => return self.refuse(&log, exchange, *problem, kube).await,
        };
        let waited = active.upstream.target.response_timeout;
        let response = match tokio::time::timeout(waited, self.send(active, upstream_req)).await {
            Ok(Ok(r)) => r,
            Err(_) => {
                active.sender = None;
                let problem = Problem::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "Timeout",
                    format!(
                        "gatehouse: the target {} did not answer within {waited:?} \
                         (response_timeout)",
                        active.target
                    ),
                );
                return self.refuse(&log, exchange, problem, kube).await;
            }
            Ok(Err(why)) => {
                active.sender = None;
                let problem = Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "BadGateway",
                    format!(
                        "gatehouse: the target {} could not be reached: {why}",
                        active.target
                    ),
                );
                return self.refuse(&log, exchange, problem, kube).await;
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                return self
                    .refuse(
                        &log,
                        exchange,
                        Problem::new(
                            StatusCode::BAD_GATEWAY,
                            "BadGateway",
                            "gatehouse: the target switched protocols unasked",
                        ),
                        kube,
                    )
                    .await;
            };
            active.upgraded = true;
            active.sender = None;
            let protocol = upgrade.unwrap_or_default();
            return super::upgrade::relay(
                Arc::clone(&log),
                exchange,
                protocol,
                client_upgrade,
                response,
            );
        }
        super::mask::respond(
            &log,
            exchange,
            response,
            head,
            masking,
            active.upstream.target.credential.header_name(),
            kube,
        )
        .await
    }

    fn is_kubernetes(&self, target: &str) -> bool {
        self.shared
            .authorizer
            .http_upstream(target)
            .is_some_and(|u| u.is_kubernetes())
    }
}

/// Why the gateway answers a request itself without routing it:
/// `CONNECT` (a tunnel to anywhere, RFC 9110 §9.3.6) and `TRACE` (the
/// target would echo the credential the gateway put in, which RFC 9110
/// §9.3.8 forbids sending in one) are not forwarded; nor is a request
/// whose target is no path (`OPTIONS *`, or CONNECT's authority form),
/// which no path rule can cover; nor a body in a transfer coding other
/// than chunked (RFC 9112 §6.1: 501).
fn unforwardable<B>(req: &Request<B>) -> Option<Problem> {
    let method = req.method();
    if *method == http::Method::CONNECT || *method == http::Method::TRACE {
        return Some(Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("gatehouse: {method} is not forwarded to targets"),
        ));
    }
    // hyper undoes `chunked` only: a body with another transfer coding
    // (`gzip, chunked`) would go upstream still coded, as if it were not.
    let codings = req
        .headers()
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
        .find(|c| !c.is_empty() && c != "chunked");
    if let Some(coding) = codings {
        return Some(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!(
                "gatehouse: the transfer coding {coding:?} is not supported; send the body \
                 chunked or with a Content-Length"
            ),
        ));
    }
    if !req.uri().path().starts_with('/') {
        return Some(Problem::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "gatehouse: {method} {} names no path; the gateway forwards requests for a \
                 target's paths only",
                req.uri()
            ),
        ));
    }
    None
}

/// The answer where a session was just put in place and is not there: a
/// bug, said as a 500 rather than a panic.
fn no_session() -> Response<ProxyBody> {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "gatehouse: the session disappeared (a gateway bug); retry",
    )
    .response(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    #[test]
    fn connect_trace_and_pathless_targets_are_answered_by_the_gateway() {
        let status = |m, u| unforwardable(&req(m, u)).map(|p| p.status);
        assert_eq!(
            status("CONNECT", "db.internal:5432"),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            status("TRACE", "/orders-api/x"),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(status("OPTIONS", "*"), Some(StatusCode::BAD_REQUEST));
        assert_eq!(status("OPTIONS", "/orders-api/x"), None);
        assert_eq!(status("GET", "https://orders.example/v1"), None);
        assert_eq!(status("GET", "/"), None);
        let coded = |te: &'static str| {
            let mut r = req("POST", "/orders-api/x");
            r.headers_mut()
                .insert(header::TRANSFER_ENCODING, HeaderValue::from_static(te));
            unforwardable(&r).map(|p| p.status)
        };
        assert_eq!(coded("gzip, chunked"), Some(StatusCode::NOT_IMPLEMENTED));
        assert_eq!(coded("Chunked"), None);
    }
}
