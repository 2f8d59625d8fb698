//! The grant check at login: the grant verifies, names the requested
//! target, and has a use left.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use gatehouse_core::event::Refusal;
use gatehouse_core::grant::{self, Claims, GrantError, MaskScope, VerifiedCache};
use gatehouse_core::mask::Masker;
use gatehouse_core::pg::{Authorized, HoldMode, Policy, Rejection};
use gatehouse_core::policy::ClassifierCache;

use super::ledger::GrantLedger;
use super::limits::{GrantLimits, SessionSlot};
use super::targets::{Target, TargetAddr};
use crate::jwks::LiveVerifier;

/// Everything the grant check needs.
#[derive(Debug)]
pub struct Authorizer {
    /// Verifies signatures and claims, with keys that may change at
    /// runtime (a JWK set), and gives plan-less grants their policies.
    /// Swapped whole by a reload.
    verifier: RwLock<Arc<LiveVerifier>>,
    /// Configured targets by name; swapped whole by a reload (sessions
    /// keep what they started with).
    targets: RwLock<Arc<BTreeMap<String, Target>>>,
    /// Use counts.
    pub ledger: GrantLedger,
    /// Claims of grants whose signature already verified (a hit is the
    /// same token, compared whole): high-frequency agents reconnect with
    /// the same grant, and pay for the signature once. Time and key are
    /// checked on every hit; target, limits and uses on every connection.
    pub cache: VerifiedCache,
    /// SQL classifications, shared by every session.
    pub classifier: Arc<ClassifierCache>,
    /// Sessions and statement rates per grant (`[limits]`).
    pub limits: Arc<GrantLimits>,
    /// Maskers for grants that mask more than their target, by target and
    /// the grant's rules (as JSON): compiled once for all the sessions of
    /// such a grant (and of grants with the same rules).
    narrowed: Mutex<HashMap<(String, String), Arc<Masker>>>,
}

/// Narrowed maskers kept at most; the cache starts over when full.
const NARROWED_MAX: usize = 256;

impl Authorizer {
    /// An authorizer over `verifier` and `targets`, enforcing `limits`.
    pub fn new(
        verifier: LiveVerifier,
        targets: BTreeMap<String, Target>,
        ledger: GrantLedger,
        limits: Arc<GrantLimits>,
    ) -> Authorizer {
        Authorizer {
            verifier: RwLock::new(Arc::new(verifier)),
            targets: RwLock::new(Arc::new(targets)),
            ledger,
            cache: VerifiedCache::default(),
            classifier: Arc::default(),
            limits,
            narrowed: Mutex::default(),
        }
    }

    /// Takes new keys and targets (a config reload). Open sessions keep
    /// the targets they connected with; grants verified under the old keys
    /// are verified again.
    pub fn reload(&self, verifier: LiveVerifier, targets: BTreeMap<String, Target>) {
        *self.verifier.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(verifier);
        *self.targets.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(targets);
        self.cache.clear();
        self.narrowed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The masker for a session of a grant on `name` (target `t`): the
    /// target's, or, when the grant masks more, the target's rules
    /// narrowed by the grant's. `Err` says why the grant's rules cannot be
    /// used.
    fn masker(
        &self,
        name: &str,
        t: &Target,
        mask: &MaskScope,
    ) -> Result<Option<Arc<Masker>>, String> {
        if mask.is_empty() {
            return Ok(t.masker.clone());
        }
        let key = (
            name.to_owned(),
            serde_json::to_string(mask).map_err(|e| e.to_string())?,
        );
        let cached = self
            .narrowed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        if let Some(m) = cached {
            return Ok(Some(m));
        }
        // Compiled outside the lock: other logins go on meanwhile.
        let more = mask.rules()?;
        let (base, secret) = match &t.masking {
            Some(m) => (m.rules.clone(), m.token_secret.as_ref().map(|s| s.expose())),
            None => (Default::default(), None),
        };
        let masker = Masker::new(base.narrowed(&more), secret.unwrap_or("").as_bytes())
            .map_err(|e| e.to_string())?;
        let masker = Arc::new(masker);
        let mut cache = self.narrowed.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= NARROWED_MAX {
            cache.clear();
        }
        cache.insert(key, Arc::clone(&masker));
        Ok(Some(masker))
    }

    fn live_verifier(&self) -> Arc<LiveVerifier> {
        Arc::clone(&self.verifier.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Verifies `token` (from the cache when it can) with the current keys;
    /// a grant naming a key id no current key has makes the keys be
    /// re-read (rate-limited) and is tried once more.
    fn verify(&self, token: &str, now_s: i64) -> Result<Arc<Claims>, GrantError> {
        let live = self.live_verifier();
        let policies = live.policies();
        let first = self.cache.verify(&live.current(), policies, token, now_s);
        match first {
            Err(GrantError::UnknownKey { kid: Some(_) }) if live.refresh_for_unknown_kid() => {
                self.cache.verify(&live.current(), policies, token, now_s)
            }
            other => other,
        }
    }

    /// Checks `token` for `target` at `now_s`. The slot counts the session
    /// against its grant's `connections_per_grant` until it is dropped.
    pub fn authorize(
        &self,
        token: &str,
        target: &str,
        now_s: i64,
    ) -> Result<(Authorized, TargetAddr, SessionSlot), Rejection> {
        self.authorize_for(token, target, now_s, false)
            .map(|(auth, t, slot)| (auth, t.addr.clone(), slot))
    }

    /// [`authorize`](Self::authorize) for the HTTP listener: the target
    /// must be an HTTP or Kubernetes one.
    pub fn authorize_http(
        &self,
        token: &str,
        target: &str,
        now_s: i64,
    ) -> Result<(Authorized, Arc<crate::http::HttpUpstream>, SessionSlot), Rejection> {
        let (auth, t, slot) = self.authorize_for(token, target, now_s, true)?;
        match &t.http {
            Some(h) => Ok((auth, Arc::clone(h), slot)),
            None => Err(unknown_target(target, true)),
        }
    }

    /// The HTTP or Kubernetes target a request for `host` (lower case,
    /// without port) and `path` goes to, and the length of the path
    /// prefix that chose it (0 when the host did): a target naming the
    /// host wins, then the longest path prefix ending at a segment
    /// boundary.
    pub fn http_route(&self, host: Option<&str>, path: &str) -> Option<(String, usize)> {
        let targets = Arc::clone(&self.targets.read().unwrap_or_else(|e| e.into_inner()));
        let http = || {
            targets
                .iter()
                .filter_map(|(n, t)| Some((n, t.http.as_ref()?)))
        };
        if let Some(host) = host
            && let Some((name, _)) = http().find(|(_, h)| h.target.hosts.iter().any(|x| x == host))
        {
            return Some((name.clone(), 0));
        }
        http()
            .filter(|(_, h)| {
                let prefix = &h.target.path_prefix;
                path.strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
            })
            .max_by_key(|(_, h)| h.target.path_prefix.len())
            .map(|(name, h)| (name.clone(), h.target.path_prefix.len()))
    }

    /// The upstream of HTTP target `name`, if it is one.
    pub fn http_upstream(&self, name: &str) -> Option<Arc<crate::http::HttpUpstream>> {
        let targets = self.targets.read().unwrap_or_else(|e| e.into_inner());
        targets.get(name)?.http.clone()
    }

    fn authorize_for(
        &self,
        token: &str,
        target: &str,
        now_s: i64,
        http: bool,
    ) -> Result<(Authorized, Target, SessionSlot), Rejection> {
        let targets = Arc::clone(&self.targets.read().unwrap_or_else(|e| e.into_inner()));
        let t = targets.get(target).filter(|t| t.http.is_some() == http);
        let Some(t) = t else {
            return Err(unknown_target(target, http));
        };

        let claims = self.verify(token, now_s).map_err(|e| rejection(&e, None))?;
        let known = Some((claims.sub.clone(), claims.jti.clone()));
        grant::check_target(&claims, target).map_err(|e| rejection(&e, known.clone()))?;
        let scope = claims.plan.scope(target).cloned().unwrap_or_default();
        let masker = self
            .masker(target, t, &scope.mask)
            .map_err(|why| Rejection {
                reason: Refusal::Malformed,
                sqlstate: "28000",
                message: format!(
                    "gatehouse refused the grant: its masking rules for target {target} \
                     cannot be used: {why}"
                ),
                subject: Some(claims.sub.clone()),
                jti: Some(claims.jti.clone()),
            })?;
        // Before the use is reserved: a refused session spends none.
        let slot = self
            .limits
            .open_session(&claims.jti)
            .map_err(|limit| too_many_sessions(&claims, limit))?;
        let use_number = self
            .ledger
            .reserve(&claims.jti, claims.plan.uses, claims.exp, now_s)
            .map_err(|e| rejection(&e, known))?;
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
            masker,
            policy: Policy {
                scope: Arc::new(scope),
                classifier: Arc::clone(&self.classifier),
                jti: claims.jti.clone(),
                // The driver sets how holds go, from the approvals config.
                hold: HoldMode::Wait,
                approvals: None,
            },
        };
        Ok((auth, t.clone(), slot))
    }
}

fn unknown_target(target: &str, http: bool) -> Rejection {
    Rejection {
        reason: Refusal::UnknownTarget,
        sqlstate: "28000",
        message: if http {
            format!("\"{target}\" names no HTTP or Kubernetes target on this gateway")
        } else {
            format!(
                "database \"{target}\" names no target on this gateway; connect with dbname set \
                 to a target your grant names"
            )
        },
        subject: None,
        jti: None,
    }
}

/// The refusal of a session past `connections_per_grant`.
fn too_many_sessions(claims: &Claims, limit: usize) -> Rejection {
    Rejection {
        // The grant's allowance of sessions is used up for now; the message
        // and SQLSTATE say which allowance.
        reason: Refusal::UsedUp,
        sqlstate: "53300",
        message: format!(
            "gatehouse refused the session: grant {} already has {limit} session{} open, the \
             most this gateway allows per grant (connections_per_grant); close one of them or \
             wait for one to end, then connect again",
            claims.jti,
            if limit == 1 { "" } else { "s" }
        ),
        subject: Some(claims.sub.clone()),
        jti: Some(claims.jti.clone()),
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
    use gatehouse_core::grant::{
        KeySet, Plan, PolicySelector, SigningKey, TargetScope, Verifier, sign,
    };

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
        let p = PolicySelector::default();
        let cache = VerifiedCache::default();
        assert!(cache.verify(&verifier, &p, &token, 500).is_ok());
        // A verifier whose key of that kid is another key can only accept
        // the grant from the cache: proof that the signature is not checked
        // again.
        let kid = verifier.keys.iter().next().unwrap().kid().to_owned();
        let other = SigningKey::from_secret_bytes(&[10; 32])
            .unwrap()
            .with_kid(kid)
            .unwrap();
        let impostor = Verifier {
            keys: KeySet::from_keys([other.verifying_key().clone()]).unwrap(),
            ..verifier.clone()
        };
        assert!(impostor.verify(&token, 600).is_err());
        assert!(
            cache.verify(&impostor, &p, &token, 600).is_ok(),
            "a cache hit"
        );
        assert!(matches!(
            cache.verify(&verifier, &p, &token, 2_000),
            Err(GrantError::Expired { .. })
        ));
        assert!(matches!(
            cache.verify(&verifier, &p, &token, 50),
            Err(GrantError::NotYetValid { .. })
        ));
        let mut forged = token.clone();
        forged.pop();
        forged.push('A');
        assert!(cache.verify(&verifier, &p, &forged, 500).is_err());
    }

    #[test]
    fn a_cached_grant_whose_key_was_removed_is_refused() {
        let (verifier, token) = setup();
        let p = PolicySelector::default();
        let cache = VerifiedCache::default();
        assert!(cache.verify(&verifier, &p, &token, 500).is_ok());
        let keyless = Verifier {
            keys: KeySet::new(),
            ..verifier.clone()
        };
        assert!(matches!(
            cache.verify(&keyless, &p, &token, 600),
            Err(GrantError::UnknownKey { kid: Some(_) })
        ));
        assert!(cache.verify(&verifier, &p, &token, 600).is_ok());
    }
}
