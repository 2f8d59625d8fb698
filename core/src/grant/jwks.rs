//! JWK sets (RFC 7517): the public keys an identity provider publishes.
//!
//! [`KeySet::from_jwks_json`] keeps the keys this gateway can use (EdDSA on
//! Ed25519, ES256 on P-256, RS256 with 2048 bits or more, each with a `kid`
//! and, when it says, `use: sig`) and skips the others with a reason, so
//! that a provider publishing an encryption key or an RS512 key next to its
//! signing keys does not stop the gateway. Symmetric keys (`kty: oct`) are
//! always skipped: a grant is never verified with a shared secret.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;

use super::key::{ED25519_KEY_LEN, KeyAlgorithm, KeyError, KeySet, VerifyingKey, check_kid};

/// The most keys a JWKS may hold; more is refused as not a JWKS.
pub const MAX_JWKS_KEYS: usize = 256;

/// A key of a JWKS that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, if it has one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

impl std::fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kid {
            Some(kid) => write!(f, "key {kid:?}: {}", self.reason),
            None => write!(f, "a key without kid: {}", self.reason),
        }
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

/// The JWK members this gateway reads; the others are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

impl KeySet {
    /// Parses a JWK set (`{"keys": [...]}`): the usable keys, and those
    /// skipped with the reason. Refused when the text is not a JWK set,
    /// when two usable keys share a `kid`, and when no key is usable.
    pub fn from_jwks_json(text: &str) -> Result<(KeySet, Vec<SkippedKey>), KeyError> {
        let raw: RawSet =
            serde_json::from_str(text).map_err(|e| KeyError::BadJwks(e.to_string()))?;
        if raw.keys.len() > MAX_JWKS_KEYS {
            return Err(KeyError::BadJwks(format!(
                "{} keys, more than the {MAX_JWKS_KEYS} accepted",
                raw.keys.len()
            )));
        }
        let mut set = KeySet::new();
        let mut skipped = Vec::new();
        for value in raw.keys {
            let kid = value.get("kid").and_then(Value::as_str).map(bounded);
            match jwk(value) {
                Ok(key) => set.insert(key)?,
                Err(e) => skipped.push(SkippedKey {
                    kid,
                    reason: e.to_string(),
                }),
            }
        }
        if set.is_empty() {
            return Err(KeyError::NoUsableKeys(
                skipped.iter().map(ToString::to_string).collect(),
            ));
        }
        Ok((set, skipped))
    }
}

impl VerifyingKey {
    /// One JWK (a JSON object) as a key, if this gateway can use it: see
    /// [`KeySet::from_jwks_json`].
    pub fn from_jwk_json(value: Value) -> Result<VerifyingKey, KeyError> {
        jwk(value)
    }
}

fn jwk(value: Value) -> Result<VerifyingKey, KeyError> {
    let raw: RawJwk = serde_json::from_value(value)
        .map_err(|e| unsupported(format!("not a JWK this gateway can read: {e}")))?;
    let kid = raw
        .kid
        .as_deref()
        .ok_or_else(|| unsupported("it has no kid; every key of a JWK set needs one".into()))?;
    check_kid(kid)?;
    if let Some(use_) = raw.use_.as_deref()
        && use_ != "sig"
    {
        return Err(unsupported(format!(
            "its use is {:?}, not \"sig\"",
            bounded(use_)
        )));
    }
    let (alg, key) = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("OKP", Some("Ed25519")) => {
            let x = member(&raw.x, "x")?;
            let x: [u8; ED25519_KEY_LEN] = x.try_into().map_err(|x: Vec<u8>| {
                unsupported(format!("an Ed25519 key's x is 32 bytes, not {}", x.len()))
            })?;
            let key = VerifyingKey::from_public_bytes(&x)?.with_kid(kid)?;
            (KeyAlgorithm::EdDsa, key)
        }
        ("EC", Some("P-256")) => {
            let x = member(&raw.x, "x")?;
            let y = member(&raw.y, "y")?;
            (
                KeyAlgorithm::Es256,
                VerifyingKey::from_p256_coordinates(&x, &y, kid)?,
            )
        }
        ("RSA", _) => {
            let n = member(&raw.n, "n")?;
            let e = member(&raw.e, "e")?;
            (
                KeyAlgorithm::Rs256,
                VerifyingKey::from_rsa_components(&n, &e, kid)?,
            )
        }
        ("oct", _) => {
            return Err(unsupported(
                "it is a symmetric key (kty \"oct\"); grants are never verified with a shared \
                 secret"
                    .into(),
            ));
        }
        (kty, crv) => {
            return Err(unsupported(format!(
                "key type {:?}{} is not accepted (OKP/Ed25519, EC/P-256 and RSA are)",
                bounded(kty),
                crv.map(|c| format!(" on curve {:?}", bounded(c)))
                    .unwrap_or_default()
            )));
        }
    };
    if let Some(named) = raw.alg.as_deref()
        && named != alg.as_str()
    {
        return Err(unsupported(format!(
            "its alg is {:?}; only {alg} is accepted for this kind of key",
            bounded(named)
        )));
    }
    Ok(key)
}

fn member(value: &Option<String>, name: &str) -> Result<Vec<u8>, KeyError> {
    let text = value
        .as_deref()
        .ok_or_else(|| unsupported(format!("it has no {name:?}")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| unsupported(format!("its {name:?} is not base64url")))
}

fn unsupported(reason: String) -> KeyError {
    KeyError::Unsupported(reason)
}

/// At most 64 characters of an untrusted string.
fn bounded(s: &str) -> String {
    s.chars().take(64).collect()
}
