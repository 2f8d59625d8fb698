//! The grant check at login: the grant verifies, names the requested
//! target, and has a use left.

use std::collections::BTreeMap;

use gatehouse_core::event::Refusal;
use gatehouse_core::grant::{self, GrantError, Verifier};
use gatehouse_core::pg::{Authorized, Rejection};

use super::ledger::GrantLedger;
use super::targets::{Target, TargetAddr};

/// Everything the grant check needs.
#[derive(Debug)]
pub struct Authorizer {
    /// Verifies signatures and claims.
    pub verifier: Verifier,
    /// Configured targets by name.
    pub targets: BTreeMap<String, Target>,
    /// Use counts.
    pub ledger: GrantLedger,
}

impl Authorizer {
    /// Checks `token` for `target` at `now_s`.
    pub fn authorize(
        &self,
        token: &str,
        target: &str,
        now_s: i64,
    ) -> Result<(Authorized, TargetAddr), Rejection> {
        let Some(t) = self.targets.get(target) else {
            return Err(Rejection {
                reason: Refusal::UnknownTarget,
                sqlstate: "28000",
                message: format!(
                    "database \"{target}\" names no target on this gateway; connect with dbname set to a target your grant names"
                ),
                subject: None,
                jti: None,
            });
        };
        let claims = self
            .verifier
            .verify(token, now_s)
            .map_err(|e| rejection(&e, None))?;
        let known = Some((claims.sub.clone(), claims.jti.clone()));
        grant::check_target(&claims, target).map_err(|e| rejection(&e, known.clone()))?;
        let use_number = self
            .ledger
            .reserve(&claims.jti, claims.plan.uses, claims.exp, now_s)
            .map_err(|e| rejection(&e, known))?;
        let auth = Authorized {
            subject: claims.sub,
            jti: claims.jti,
            issuer: claims.iss,
            purpose: claims.purpose,
            ticket: claims.ticket,
            use_number,
            max_uses: claims.plan.uses,
            expires_at: claims.exp,
            login: t.login.clone(),
            masker: t.masker.clone(),
        };
        Ok((auth, t.addr.clone()))
    }
}

fn rejection(e: &GrantError, known: Option<(String, String)>) -> Rejection {
    let (subject, jti) = known.unzip();
    Rejection {
        reason: e.refusal(),
        sqlstate: e.sqlstate(),
        message: format!("gatehouse refused the grant: {e}"),
        subject,
        jti,
    }
}
