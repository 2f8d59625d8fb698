//! Opening a session: the grant check, and the Opened or Refused event
//! made durable before anything else happens; and the checks that end it
//! (expiry, revocation, duration).

use super::*;

impl Conn {
    /// Opens a session for `token` on `target`: the grant check, the
    /// Opened (or Refused) event made durable, the plan compiled.
    pub(super) async fn open(
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
                self.record_refusal(&log, target, &r, now).await;
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
        // Until the session is handed on, dropping this future closes it.
        let guard = super::super::session::CloseOnDrop(Some(Arc::clone(&log)));
        // The grant's use is durable before the target is touched.
        if let Err(e) = log.flush_durable().await {
            tracing::error!("store refused an HTTP session: {e}");
            guard.disarm();
            log.close(CloseReason::StoreFailed, now_us()).await;
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
        guard.disarm();
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
    pub(super) async fn still_valid(&self, active: &Active) -> Option<Response<ProxyBody>> {
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

    /// Records a refusal as a session of its own (Refused, then Closed),
    /// durable before the client is told: a refusal the client saw is never
    /// missing from the record.
    pub(super) async fn record_refusal(
        &self,
        log: &Arc<SessionLog>,
        target: &str,
        r: &Rejection,
        now: i64,
    ) {
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
        log.close(CloseReason::Refused, now).await;
    }
}
