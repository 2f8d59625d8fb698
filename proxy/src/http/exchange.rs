//! One client connection's requests: route, grant, verdict, approval,
//! record, forward.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_core::event::{
    Body as EventBody, CloseReason, Decision as EventDecision, Direction, HttpBody, HttpRequest,
    HttpResponse, Opened, Recorder, Refused, SessionId, StatementProtocol, TlsInfo, Verdict,
};
use gatehouse_core::http::rules::{Decision, HttpPolicy, HttpVerdict, TargetKind};
use gatehouse_core::pg::{Authorized, Rejection};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use super::respond::{Problem, full};
use super::session::SessionLog;
use super::{HttpShared, HttpUpstream, ProxyBody, headers, now_us, route};
use crate::approvals::{ApprovalMode, PendingApproval};
use crate::serve::Shared;
use gatehouse_core::pg::ApprovedStatements as _;

/// Request body pieces recorded per event at most.
const BODY_EVENT_BYTES: usize = 256 << 10;

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
        let mut state = self.state.lock().await;
        let response = self.exchange(&mut state, req).await;
        self.touch();
        response
    }

    async fn exchange(&self, state: &mut State, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let host = route::host_of(&req, self.sni.as_deref());
        let authorizer = &self.shared.authorizer;
        let Some((target, prefix_len)) = authorizer.http_route(host.as_deref(), req.uri().path())
        else {
            return Problem::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!(
                    "gatehouse: no target is configured for {} {}; ask for a path under a \
                     target's prefix (e.g. /TARGET/…) or its host name",
                    req.method(),
                    req.uri().path()
                ),
            )
            .response(false);
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
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "no session",
            )
            .response(false);
        };
        if let Some(ended) = self.still_valid(active).await {
            state.session = None;
            return ended;
        }
        state.exchanges += 1;
        let exchange = state.exchanges;
        let rest = route::rest_of(&req, prefix_len);
        let upgrade = headers::upgrade_of(req.headers());
        let Some(active) = state.session.as_mut() else {
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "no session",
            )
            .response(false);
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
                headers: headers::recorded(req.headers(), None),
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
            Ok(b) => b.to_bytes(),
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
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "no session",
            )
            .response(false);
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
        let response = match self.send(active, upstream_req).await {
            Ok(r) => r,
            Err(why) => {
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

    /// Opens a session for `token` on `target`: the grant check, the
    /// Opened (or Refused) event made durable, the plan compiled.
    async fn open(
        &self,
        token: &str,
        target: &str,
        req: &Request<Incoming>,
    ) -> Result<Active, Box<Response<ProxyBody>>> {
        let now = now_us();
        let id = SessionId(*uuid::Uuid::now_v7().as_bytes());
        let seal = self.shared.session.seal_key.clone();
        let log = SessionLog::new(
            Recorder::sealed_with(id, seal),
            self.shared.writer.clone(),
            now,
        );
        let kube = self.is_kubernetes(target);
        let checked = self
            .shared
            .authorizer
            .authorize_http(token, target, now / 1_000_000)
            .and_then(|(auth, upstream, slot)| {
                if self.shared.revocations.is_revoked(&auth.jti) {
                    return Err(Rejection {
                        reason: gatehouse_core::event::Refusal::Revoked,
                        sqlstate: "28000",
                        message: format!(
                            "gatehouse refused the grant: grant {} was revoked",
                            auth.jti
                        ),
                        subject: Some(auth.subject.clone()),
                        jti: Some(auth.jti.clone()),
                    });
                }
                let kind = if upstream.is_kubernetes() {
                    TargetKind::Kubernetes
                } else {
                    TargetKind::Http
                };
                match HttpPolicy::compile(&auth.policy.scope, kind) {
                    Ok(policy) => Ok((auth, upstream, slot, policy)),
                    Err(why) => Err(Rejection {
                        reason: gatehouse_core::event::Refusal::Malformed,
                        sqlstate: "28000",
                        message: format!(
                            "gatehouse refused the grant: its plan for target {target} cannot be \
                             used: {why}"
                        ),
                        subject: Some(auth.subject.clone()),
                        jti: Some(auth.jti.clone()),
                    }),
                }
            });
        let (auth, upstream, slot, policy) = match checked {
            Ok(ok) => ok,
            Err(r) => {
                tracing::info!(reason = ?r.reason, target, "HTTP grant refused");
                log.record(
                    now,
                    EventBody::Refused(Refused {
                        reason: r.reason,
                        message: r.message.clone(),
                        target: target.to_owned(),
                        client_addr: self.peer.to_string(),
                        subject: r.subject.clone(),
                        jti: r.jti.clone(),
                    }),
                );
                // A refusal the client saw is never missing from the record:
                // the close makes it durable.
                log.close(CloseReason::Refused, now).await;
                let status = match r.sqlstate {
                    "53300" => StatusCode::TOO_MANY_REQUESTS,
                    _ if r.reason == gatehouse_core::event::Refusal::UnknownTarget => {
                        StatusCode::NOT_FOUND
                    }
                    _ => StatusCode::UNAUTHORIZED,
                };
                let problem = Problem {
                    jti: r.jti,
                    ..Problem::new(status, "Unauthorized", r.message)
                };
                return Err(Box::new(problem.response(kube)));
            }
        };
        tracing::info!(subject = %auth.subject, jti = %auth.jti, target, "HTTP grant accepted");
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        log.record(
            now,
            EventBody::Opened(Opened {
                subject: auth.subject.clone(),
                jti: auth.jti.clone(),
                issuer: auth.issuer.clone(),
                purpose: auth.purpose.clone(),
                ticket: auth.ticket.clone(),
                target: target.to_owned(),
                client_user: String::new(),
                application_name: user_agent,
                client_addr: self.peer.to_string(),
                tls: self.tls.clone(),
                use_number: auth.use_number,
                max_uses: auth.max_uses,
                expires_at: auth.expires_at,
            }),
        );
        // The grant's use is durable before the target is touched.
        if let Err(e) = log.flush_durable().await {
            tracing::error!("store refused an HTTP session: {e}");
            return Err(Box::new(
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "gatehouse: the session could not be recorded, so it was not opened; try again \
                     later",
                )
                .response(kube),
            ));
        }
        Ok(Active {
            token: token.to_owned(),
            target: target.to_owned(),
            log,
            upstream,
            policy,
            auth,
            sender: None,
            _slot: slot,
            opened: Instant::now(),
            approvals: 0,
            upgraded: false,
        })
    }

    /// Ends the session when its grant expired, was revoked, or its
    /// duration limit passed: the response says so.
    async fn still_valid(&self, active: &Active) -> Option<Response<ProxyBody>> {
        let now = now_us();
        let kube = active.upstream.is_kubernetes();
        let (reason, message) = if now / 1_000_000 >= active.auth.expires_at {
            (
                CloseReason::LimitReached,
                format!(
                    "gatehouse: grant {} has expired; ask for a new one",
                    active.auth.jti
                ),
            )
        } else if self.shared.revocations.is_revoked(&active.auth.jti) {
            (
                CloseReason::Revoked,
                format!("gatehouse: grant {} was revoked", active.auth.jti),
            )
        } else if let Some(limit) = active.auth.policy.scope.limits.duration_s
            && active.opened.elapsed() >= Duration::from_secs(limit)
        {
            (
                CloseReason::LimitReached,
                format!(
                    "gatehouse: the grant allows sessions of {limit} s and this one has lasted \
                     that long; open a new connection"
                ),
            )
        } else {
            return None;
        };
        active.log.close(reason, now).await;
        let problem = Problem {
            jti: Some(active.auth.jti.clone()),
            ..Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
        };
        let mut response = problem.response(kube);
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Some(response)
    }

    /// Holds a request for approval; `Some` is the refusal when it was not
    /// approved. `request` (method, path and query: what an approver reads,
    /// e.g. the command of an exec) is what reject-and-retry matches a
    /// retry by; the body is not part of it.
    async fn hold(
        &self,
        active: &Active,
        log: &SessionLog,
        verdict: &HttpVerdict,
        id: &str,
        request: &str,
    ) -> Option<Problem> {
        let approvals = &self.shared.approvals;
        let reject = approvals.mode() == ApprovalMode::Reject;
        if reject && let Some(earlier) = approvals.take_approved(&active.auth.jti, request) {
            let reason = "approved earlier (reject-and-retry)";
            record_verdict(log, verdict, EventDecision::Allow, reason, &earlier, "");
            return None;
        }
        record_verdict(log, verdict, EventDecision::Hold, &verdict.reason, id, "");
        let pending = PendingApproval {
            id: id.to_owned(),
            session: log.id().to_string(),
            jti: active.auth.jti.clone(),
            subject: active.auth.subject.clone(),
            target: active.target.clone(),
            purpose: active.auth.purpose.clone(),
            ticket: active.auth.ticket.clone(),
            statement: request.to_owned(),
            needs: vec![verdict.operation.clone()],
            requested_at_us: now_us(),
        };
        // The hold is in the record before anyone can decide it.
        if let Err(e) = log.flush_durable().await {
            tracing::error!("store refused a hold: {e}");
            return Some(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "gatehouse: the request could not be recorded; try again later",
            ));
        }
        tracing::info!(approval = id, operation = %verdict.operation, "HTTP request held for approval");
        let decision = approvals.request(pending);
        if reject {
            drop(decision);
            return Some(Problem {
                rule: verdict.rule.clone(),
                jti: Some(active.auth.jti.clone()),
                ..Problem::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    format!(
                        "gatehouse: {} needs approval; requested as {id}. Once an approver \
                         approves it, send the identical request again",
                        verdict.operation
                    ),
                )
            });
        }
        let timeout = approvals.timeout();
        // A client that goes away while its request waits withdraws it
        // (this future is dropped with the connection).
        let pending = Withdraw {
            approvals,
            id,
            armed: true,
        };
        let gone = async {
            match &self.watcher {
                Some(w) => crate::serve::peer_gone(w).await,
                None => std::future::pending().await,
            }
        };
        let waited = tokio::select! {
            waited = tokio::time::timeout(timeout, decision) => waited,
            () = gone => {
                // The guard withdraws the request; the session closes with
                // the connection.
                record_verdict(log, verdict, EventDecision::Deny, "the client left while the request waited", id, "");
                return Some(Problem::new(StatusCode::REQUEST_TIMEOUT, "ClientClosedRequest", "gatehouse: the client left"));
            }
        };
        let mut pending = pending;
        pending.armed = false;
        let decided = match waited {
            Ok(Ok(d)) => d,
            _ => {
                approvals.withdraw(id);
                crate::approvals::Decision {
                    approved: false,
                    approver: TIMEOUT_APPROVER.to_owned(),
                    reason: format!("nobody decided within {timeout:?}"),
                }
            }
        };
        let decision = if decided.approved {
            EventDecision::Allow
        } else {
            EventDecision::Deny
        };
        record_verdict(
            log,
            verdict,
            decision,
            &decided.reason,
            id,
            &decided.approver,
        );
        if decided.approved {
            return None;
        }
        Some(Problem {
            rule: verdict.rule.clone(),
            jti: Some(active.auth.jti.clone()),
            ..Problem::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "gatehouse: {} needed approval {id}, which {} did not give ({}); ask the \
                     approver, or ask the planner for a grant that allows it",
                    verdict.operation, decided.approver, decided.reason
                ),
            )
        })
    }

    /// The request as the target gets it.
    fn upstream_request(
        &self,
        active: &Active,
        mut parts: http::request::Parts,
        rest: &str,
        body: Bytes,
        masking: bool,
        upgrade: bool,
    ) -> Result<Request<ProxyBody>, Box<Problem>> {
        let t = &active.upstream.target;
        let uri: Uri = format!("{}{rest}", t.base_path).parse().map_err(|e| {
            Box::new(Problem::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("gatehouse: the request path cannot be forwarded: {e}"),
            ))
        })?;
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h, upgrade);
        if upgrade {
            headers::strip_websocket_credentials(h);
        }
        h.remove(header::AUTHORIZATION);
        h.remove(header::EXPECT);
        h.remove(header::CONTENT_LENGTH);
        let default_port = if t.tls { 443 } else { 80 };
        let authority = if t.port == default_port {
            t.host.clone()
        } else if t.host.contains(':') {
            format!("[{}]:{}", t.host, t.port)
        } else {
            format!("{}:{}", t.host, t.port)
        };
        if let Ok(v) = HeaderValue::from_str(&authority) {
            h.insert(header::HOST, v);
        }
        if masking {
            // Masking reads bodies as they are: no compression, and no
            // Kubernetes protobuf (which it cannot read) where JSON will do.
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            if let Some(accept) = without_protobuf(h.get(header::ACCEPT)) {
                h.insert(header::ACCEPT, accept);
            }
        }
        if !body.is_empty() || !matches!(parts.method, http::Method::GET | http::Method::HEAD) {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        active.upstream.inject(h, &active.auth.subject);
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        Ok(Request::from_parts(parts, full(body)))
    }

    /// Sends on the session's upstream connection, opening one when there
    /// is none or it closed.
    async fn send(
        &self,
        active: &mut Active,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, String> {
        let reusable = match active.sender.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => active.upstream.connect().await.map_err(|e| causes(&e))?,
        };
        let response = sender.send_request(req).await.map_err(|e| causes(&e))?;
        active.sender = Some(sender);
        Ok(response)
    }

    /// Answers with the gateway's own response, recorded (and durable)
    /// before the client sees it.
    async fn refuse(
        &self,
        log: &SessionLog,
        exchange: u32,
        problem: Problem,
        kube: bool,
    ) -> Response<ProxyBody> {
        let body = problem.body(kube);
        let mut response = problem.response(kube);
        *response.body_mut() = full(body.clone());
        log.record(
            now_us(),
            EventBody::HttpResponse(Box::new(HttpResponse {
                exchange,
                status: response.status().as_u16(),
                headers: headers::recorded(response.headers(), None),
                from_gateway: true,
            })),
        );
        record_body(log, exchange, Direction::ToClient, &body);
        log.count(0, 0, body.len() as u64);
        if let Err(e) = log.flush_durable().await {
            tracing::error!("store refused events: {e}");
        }
        response
    }
}

/// An `Accept` value without its protobuf media ranges (JSON when nothing
/// else is left), or `None` when it names no protobuf.
fn without_protobuf(accept: Option<&HeaderValue>) -> Option<HeaderValue> {
    let text = accept?.to_str().ok()?;
    if !text.contains("protobuf") {
        return None;
    }
    let kept: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty() && !r.contains("protobuf"))
        .collect();
    let value = if kept.is_empty() {
        "application/json".to_owned()
    } else {
        kept.join(", ")
    };
    HeaderValue::from_str(&value).ok()
}

/// `e` and its causes, outermost first: hyper's own message alone ("connection
/// error") hides why (a TLS alert, a refused connection).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Withdraws a pending approval when dropped armed.
struct Withdraw<'a> {
    approvals: &'a crate::approvals::ApprovalRegistry,
    id: &'a str,
    armed: bool,
}

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        if self.armed {
            tracing::info!(
                approval = self.id,
                "the client left; its held request is withdrawn"
            );
            self.approvals.withdraw(self.id);
        }
    }
}

/// The grant from `Authorization: Bearer <grant>`.
/// Or, for a WebSocket upgrade from a client that cannot set headers, from
/// its `base64url.bearer.authorization.k8s.io.` subprotocol, as the
/// Kubernetes API server accepts it.
fn bearer<B>(req: &Request<B>) -> Option<String> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return headers::websocket_bearer(req.headers());
    };
    let value = value.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// A denial the agent can act on.
fn denial(verdict: &HttpVerdict, jti: &str, kube: bool) -> Problem {
    let next = if kube {
        "ask the planner for a grant whose plan allows it (e.g. --allow 'kube:VERBS RESOURCES in NAMESPACE')"
    } else {
        "ask the planner for a grant whose plan allows it (e.g. --allow 'http:METHOD /path/**')"
    };
    Problem {
        rule: verdict.rule.clone(),
        jti: Some(jti.to_owned()),
        ..Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "gatehouse denied {} under grant {jti}: {}; {next}",
                verdict.operation, verdict.reason
            ),
        )
    }
}

fn record_verdict(
    log: &SessionLog,
    verdict: &HttpVerdict,
    decision: EventDecision,
    reason: &str,
    approval: &str,
    approver: &str,
) {
    log.record(
        now_us(),
        EventBody::Verdict(Verdict {
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
pub(super) fn record_body(log: &SessionLog, exchange: u32, dir: Direction, body: &Bytes) {
    let mut at = 0;
    loop {
        let end = (at + BODY_EVENT_BYTES).min(body.len());
        log.record(
            now_us(),
            EventBody::HttpBody(Box::new(HttpBody {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_is_not_asked_for_when_masking() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert_eq!(
            without_protobuf(v("application/vnd.kubernetes.protobuf, application/json").as_ref()),
            v("application/json")
        );
        assert_eq!(
            without_protobuf(
                v("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io").as_ref()
            ),
            v("application/json")
        );
        assert_eq!(without_protobuf(v("application/json").as_ref()), None);
        assert_eq!(without_protobuf(None), None);
    }

    #[test]
    fn bearer_tokens() {
        let req = |v: &'static str| {
            Request::builder()
                .header("authorization", v)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer(&req("bearer  abc ")).as_deref(), Some("abc"));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bearer ")), None);
    }
}
