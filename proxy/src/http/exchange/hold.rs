//! A request only an `approve` rule covers: held until a human decides
//! (wait mode), or refused at once with the approval's id and let through
//! once when retried after approval (reject mode).

use super::*;

impl Conn {
    /// Holds a request for approval; `Some` is the refusal when it was not
    /// approved. `request` (method, path and query: what an approver reads,
    /// e.g. the command of an exec) is what reject-and-retry matches a
    /// retry by; the body is not part of it.
    pub(super) async fn hold(
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
