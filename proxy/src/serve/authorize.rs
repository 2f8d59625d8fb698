//! The grant check at login: the grant verifies, names the requested
//! target, and has a use left.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use gatehouse_core::event::Refusal;
use gatehouse_core::grant::{self, Claims, GrantError, Verifier};
use gatehouse_core::pg::{Authorized, HoldMode, Policy, Rejection};
use gatehouse_core::policy::ClassifierCache;

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
    /// Claims of grants whose signature already verified, by BLAKE3 of the
    /// token: high-frequency agents reconnect with the same grant, and pay
    /// for the signature once. Time, target and uses are checked on every
    /// connection.
    pub cache: VerifiedCache,
    /// SQL classifications, shared by every session.
    pub classifier: Arc<ClassifierCache>,
}

/// Verified grants, bounded.
#[derive(Debug, Default)]
pub struct VerifiedCache {
    entries: Mutex<HashMap<[u8; 32], Arc<Claims>>>,
}

/// Entries above which expired grants are dropped (and, if that is not
/// enough, everything).
const CACHE_MAX: usize = 10_000;

impl VerifiedCache {
    fn verify(
        &self,
        verifier: &Verifier,
        token: &str,
        now_s: i64,
    ) -> Result<Arc<Claims>, GrantError> {
        let key = *blake3::hash(token.trim().as_bytes()).as_bytes();
        let hit = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(claims) = hit {
            verifier.check_time(&claims, now_s)?;
            return Ok(claims);
        }
        let claims = Arc::new(verifier.verify(token, now_s)?);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, c| verifier.check_time(c, now_s).is_ok());
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(key, Arc::clone(&claims));
        Ok(claims)
    }
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
            .cache
            .verify(&self.verifier, token, now_s)
            .map_err(|e| rejection(&e, None))?;
        let known = Some((claims.sub.clone(), claims.jti.clone()));
        grant::check_target(&claims, target).map_err(|e| rejection(&e, known.clone()))?;
        let use_number = self
            .ledger
            .reserve(&claims.jti, claims.plan.uses, claims.exp, now_s)
            .map_err(|e| rejection(&e, known))?;
        let scope = claims.plan.scope(target).cloned().unwrap_or_default();
        let auth = Authorized {
            subject: claims.sub.clone(),
            jti: claims.jti.clone(),
            issuer: claims.iss.clone(),
            purpose: claims.purpose.clone(),
            ticket: claims.ticket.clone(),
            use_number,
            max_uses: claims.plan.uses,
            expires_at: claims.exp,
            login: t.login.clone(),
            masker: t.masker.clone(),
            policy: Policy {
                scope: Arc::new(scope),
                classifier: Arc::clone(&self.classifier),
                jti: claims.jti.clone(),
                // The driver sets how holds go, from the approvals config.
                hold: HoldMode::Wait,
                approvals: None,
            },
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

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::grant::{KeySet, Plan, SigningKey, TargetScope, sign};

    fn setup() -> (Verifier, String) {
        let key = SigningKey::from_secret_bytes(&[9; 32]).unwrap();
        let verifier = Verifier {
            keys: KeySet::from_keys([key.verifying_key().clone()]).unwrap(),
            issuer: "gatehouse".into(),
            audience: "gatehouse".into(),
            leeway_s: 5,
        };
        let claims = Claims {
            iss: "gatehouse".into(),
            sub: "agent".into(),
            aud: "gatehouse".into(),
            exp: 1_000,
            nbf: 100,
            iat: 100,
            jti: "j".into(),
            purpose: "p".into(),
            ticket: None,
            plan: Plan {
                targets: [("orders".to_owned(), TargetScope::default())].into(),
                uses: None,
            },
        };
        (verifier, sign(&claims, &key).unwrap())
    }

    #[test]
    fn cached_grants_still_expire_and_forgeries_are_not_cached_hits() {
        let (verifier, token) = setup();
        let cache = VerifiedCache::default();
        assert!(cache.verify(&verifier, &token, 500).is_ok());
        // A verifier that knows no key can only accept the grant from the
        // cache: proof that the signature is not checked again.
        let keyless = Verifier {
            keys: KeySet::new(),
            ..verifier.clone()
        };
        assert!(keyless.verify(&token, 600).is_err());
        assert!(cache.verify(&keyless, &token, 600).is_ok(), "a cache hit");
        assert!(matches!(
            cache.verify(&verifier, &token, 2_000),
            Err(GrantError::Expired { .. })
        ));
        assert!(matches!(
            cache.verify(&verifier, &token, 50),
            Err(GrantError::NotYetValid { .. })
        ));
        let mut forged = token.clone();
        forged.pop();
        forged.push('A');
        assert!(cache.verify(&verifier, &forged, 500).is_err());
    }
}
