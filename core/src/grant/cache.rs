//! The cache of verified grants: agents that reconnect many times with the
//! same token pay for its signature once.
//!
//! A hit means exactly "this same token verified before". Entries are found
//! by a keyed, non-cryptographic hash of the token's signature segment (the
//! part after the last `.`, the token's most distinctive bytes) and a hit is
//! confirmed by comparing the whole token with the one stored: two tokens
//! whose hashes collide never share claims, they only share a slot. The
//! hash therefore needs no collision resistance, only speed and spread; it
//! is SipHash with a per-cache random key (std's `RandomState`), so that
//! slots cannot be predicted from outside either. Only tokens whose
//! signature verified are ever stored, so a client cannot fill the cache
//! with tokens of its own making.
//!
//! On every hit the grant's time window is checked again
//! ([`Verifier::check_time`]) and the key that verified it must still be
//! among the verifier's keys; a grant whose key is gone is refused with
//! [`GrantError::UnknownKey`] (its caller may re-read the keys and try
//! again). What this is not: it counts no uses and knows no revocations;
//! those are checked by the caller on every connection, hit or miss.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Claims, GrantError, PolicySelector, Verifier};

/// Entries above which expired grants are dropped (and, if that is not
/// enough, every entry).
pub const VERIFIED_CACHE_MAX: usize = 10_000;

/// Grants whose signature verified, bounded, with the id of the key that
/// verified each. Shared by every connection of a gateway.
#[derive(Debug)]
pub struct VerifiedCache<S = RandomState> {
    /// By the hash of the token's signature segment; one entry per slot (a
    /// colliding token that verifies takes the slot over).
    entries: Mutex<HashMap<u64, Entry>>,
    /// Hashes signature segments into slots.
    hasher: S,
    /// [`VERIFIED_CACHE_MAX`] unless set otherwise.
    max: usize,
}

/// One verified grant.
#[derive(Debug)]
struct Entry {
    /// The whole token (trimmed), compared on every hit.
    token: Box<str>,
    /// Its claims.
    claims: Arc<Claims>,
    /// The id of the key that verified it.
    kid: Arc<str>,
}

impl Default for VerifiedCache {
    fn default() -> Self {
        VerifiedCache::with_hasher(RandomState::new())
    }
}

impl VerifiedCache {
    /// An empty cache of at most [`VERIFIED_CACHE_MAX`] grants.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S: BuildHasher> VerifiedCache<S> {
    /// An empty cache whose slots are chosen by `hasher` (tests use one
    /// that makes every token collide).
    pub fn with_hasher(hasher: S) -> Self {
        VerifiedCache {
            entries: Mutex::new(HashMap::new()),
            hasher,
            max: VERIFIED_CACHE_MAX,
        }
    }

    /// The same cache holding at most `max` grants (at least one).
    pub fn with_bound(mut self, max: usize) -> Self {
        self.max = max.max(1);
        self
    }

    /// The claims of `token` at `now_s`: from the cache when this same
    /// token verified before (its time window and its key checked again),
    /// otherwise verified by `verifier` (plan-less tokens getting their plan
    /// from `policies`) and cached.
    pub fn verify(
        &self,
        verifier: &Verifier,
        policies: &PolicySelector,
        token: &str,
        now_s: i64,
    ) -> Result<Arc<Claims>, GrantError> {
        let token = token.trim();
        let slot = self.slot(token);
        if let Some(hit) = self.lookup(slot, verifier, token, now_s) {
            return hit;
        }
        let verified = verifier.verify_with(token, now_s, policies)?;
        let claims = Arc::new(verified.claims);
        let mut entries = self.lock();
        if entries.len() >= self.max && !entries.contains_key(&slot) {
            entries.retain(|_, e| verifier.check_time(&e.claims, now_s).is_ok());
            if entries.len() >= self.max {
                entries.clear();
            }
        }
        entries.insert(
            slot,
            Entry {
                token: token.into(),
                claims: Arc::clone(&claims),
                kid: Arc::from(verified.kid),
            },
        );
        Ok(claims)
    }

    /// Drops every entry (new keys: every grant is verified again).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Grants cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no grant is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached answer for `token` in `slot`, if this same token is
    /// cached.
    fn lookup(
        &self,
        slot: u64,
        verifier: &Verifier,
        token: &str,
        now_s: i64,
    ) -> Option<Result<Arc<Claims>, GrantError>> {
        let (claims, kid) = {
            let entries = self.lock();
            let entry = entries.get(&slot).filter(|e| *e.token == *token)?;
            (Arc::clone(&entry.claims), Arc::clone(&entry.kid))
        };
        if !verifier.keys.contains(&kid) {
            return Some(Err(GrantError::UnknownKey {
                kid: Some(kid.to_string()),
            }));
        }
        Some(verifier.check_time(&claims, now_s).map(|()| claims))
    }

    /// The slot of a (trimmed) token.
    fn slot(&self, token: &str) -> u64 {
        let signature = token.rsplit_once('.').map_or(token, |(_, s)| s);
        self.hasher.hash_one(signature.as_bytes())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic elsewhere cannot leave the map half-updated in a way
        // that matters: every entry is complete when inserted.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasherDefault, Hasher};

    use super::*;
    use crate::grant::{KeySet, Plan, SigningKey, TargetScope, sign};

    fn key() -> SigningKey {
        SigningKey::from_secret_bytes(&[9; 32]).unwrap()
    }

    fn verifier() -> Verifier {
        Verifier {
            keys: KeySet::from_keys([key().verifying_key().clone()]).unwrap(),
            issuer: "gatehouse".into(),
            audience: "gatehouse".into(),
            leeway_s: 5,
        }
    }

    /// A verifier with a different key under the same key id: it verifies
    /// nothing, so whatever it accepts came from the cache.
    fn impostor() -> Verifier {
        let kid = key().verifying_key().kid().to_owned();
        let other = SigningKey::from_secret_bytes(&[10; 32])
            .unwrap()
            .with_kid(kid)
            .unwrap();
        Verifier {
            keys: KeySet::from_keys([other.verifying_key().clone()]).unwrap(),
            ..verifier()
        }
    }

    fn token(jti: &str, exp: i64) -> String {
        let claims = Claims {
            iss: "gatehouse".into(),
            sub: "agent".into(),
            aud: "gatehouse".into(),
            exp,
            nbf: 100,
            iat: 100,
            jti: jti.into(),
            purpose: "p".into(),
            ticket: None,
            plan: Plan {
                targets: [("orders".to_owned(), TargetScope::default())].into(),
                uses: None,
            },
        };
        sign(&claims, &key()).unwrap()
    }

    fn check<S: BuildHasher>(
        cache: &VerifiedCache<S>,
        verifier: &Verifier,
        token: &str,
        now_s: i64,
    ) -> Result<Arc<Claims>, GrantError> {
        cache.verify(verifier, &PolicySelector::default(), token, now_s)
    }

    /// Puts every token in the same slot.
    #[derive(Default)]
    struct Collide;

    impl Hasher for Collide {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    #[test]
    fn the_same_token_is_a_hit_and_a_token_one_byte_apart_is_not() {
        let cache = VerifiedCache::new();
        let t = token("a", 1_000);
        assert!(impostor().verify(&t, 500).is_err());
        assert!(
            check(&cache, &impostor(), &t, 500).is_err(),
            "not cached yet"
        );
        let claims = check(&cache, &verifier(), &t, 500).unwrap();
        assert_eq!(claims.jti, "a");
        let hit = check(&cache, &impostor(), &format!("  {t}\n"), 600);
        assert_eq!(hit.unwrap(), claims, "a hit, also with whitespace around");
        // One byte changed in the payload (same signature segment, so the
        // same slot: only the comparison of the whole token tells them
        // apart), then in the signature.
        let payload_at = t.find('.').unwrap() + 5;
        for at in [payload_at, t.len() - 1] {
            let mut other = t.clone().into_bytes();
            other[at] = if other[at] == b'A' { b'B' } else { b'A' };
            let other = String::from_utf8(other).unwrap();
            assert!(check(&cache, &impostor(), &other, 600).is_err());
            assert!(check(&cache, &verifier(), &other, 600).is_err());
        }
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn tokens_whose_hashes_collide_never_share_claims() {
        let cache = VerifiedCache::with_hasher(BuildHasherDefault::<Collide>::default());
        let (a, b) = (token("a", 1_000), token("b", 1_000));
        assert_eq!(check(&cache, &verifier(), &a, 500).unwrap().jti, "a");
        // Same slot, different token: a miss, so the impostor refuses it.
        assert!(check(&cache, &impostor(), &b, 500).is_err());
        assert_eq!(check(&cache, &verifier(), &b, 500).unwrap().jti, "b");
        // b took the slot over: b hits, a is verified again.
        assert_eq!(check(&cache, &impostor(), &b, 500).unwrap().jti, "b");
        assert!(check(&cache, &impostor(), &a, 500).is_err());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn cached_grants_still_expire_and_start_late() {
        let cache = VerifiedCache::new();
        let t = token("a", 1_000);
        assert!(check(&cache, &verifier(), &t, 500).is_ok());
        assert!(check(&cache, &impostor(), &t, 1_004).is_ok(), "leeway");
        assert!(matches!(
            check(&cache, &impostor(), &t, 1_005),
            Err(GrantError::Expired { exp: 1_000 })
        ));
        assert!(matches!(
            check(&cache, &impostor(), &t, 94),
            Err(GrantError::NotYetValid { nbf: 100 })
        ));
    }

    #[test]
    fn a_cached_grant_whose_key_is_gone_is_refused() {
        let cache = VerifiedCache::new();
        let t = token("a", 1_000);
        assert!(check(&cache, &verifier(), &t, 500).is_ok());
        let keyless = Verifier {
            keys: KeySet::new(),
            ..verifier()
        };
        assert!(matches!(
            check(&cache, &keyless, &t, 600),
            Err(GrantError::UnknownKey { kid: Some(_) })
        ));
        assert!(check(&cache, &verifier(), &t, 600).is_ok());
        cache.clear();
        assert!(cache.is_empty());
        assert!(check(&cache, &impostor(), &t, 600).is_err(), "cleared");
    }

    #[test]
    fn the_bound_drops_expired_grants_first_then_everything() {
        let cache = VerifiedCache::new().with_bound(2);
        let (short, long) = (token("short", 1_000), token("long", 5_000));
        assert!(check(&cache, &verifier(), &short, 500).is_ok());
        assert!(check(&cache, &verifier(), &long, 500).is_ok());
        assert_eq!(cache.len(), 2);
        // Full: at 2000 `short` has expired and makes room.
        let third = token("third", 5_000);
        assert!(check(&cache, &verifier(), &third, 2_000).is_ok());
        assert_eq!(cache.len(), 2);
        assert!(check(&cache, &impostor(), &long, 2_000).is_ok());
        assert!(check(&cache, &impostor(), &third, 2_000).is_ok());
        // Full of live grants: everything goes.
        let fourth = token("fourth", 5_000);
        assert!(check(&cache, &verifier(), &fourth, 2_000).is_ok());
        assert_eq!(cache.len(), 1);
        assert!(check(&cache, &impostor(), &fourth, 2_000).is_ok());
        assert!(check(&cache, &impostor(), &long, 2_000).is_err());
        // Below the bound again: `long` is cached beside `fourth`, and a
        // hit changes nothing.
        assert!(check(&cache, &verifier(), &long, 2_000).is_ok());
        assert!(check(&cache, &impostor(), &fourth, 2_000).is_ok());
        assert_eq!(cache.len(), 2);
    }
}
