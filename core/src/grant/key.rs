//! Keys for grants, their key ids and algorithms, and the set a verifier
//! chooses from.
//!
//! Gatehouse's own keys are Ed25519 (`EdDSA`); keys from an external
//! identity provider's JWKS may also be P-256 (`ES256`) or RSA of at least
//! 2048 bits (`RS256`). Every key has exactly one algorithm, and verifies
//! only tokens whose header names it.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use jsonwebtoken::{DecodingKey, EncodingKey};

use super::GrantError;

/// Length of a raw Ed25519 public or secret key.
pub const ED25519_KEY_LEN: usize = 32;

/// The key id of an Ed25519 public key: the first 16 hex digits (8 bytes)
/// of the BLAKE3 hash of the raw 32-byte key.
///
/// Derived rather than configured, so that `gatehouse keygen`,
/// `gatehouse grant` and `gatehouse serve` agree on it without being told;
/// a configuration may still override it (see [`VerifyingKey::with_kid`]).
pub fn key_id(public_key: &[u8; ED25519_KEY_LEN]) -> String {
    use fmt::Write as _;
    let hash = blake3::hash(public_key);
    let mut kid = String::with_capacity(16);
    for b in hash.as_bytes().iter().take(8) {
        // Writing to a String cannot fail.
        let _ = write!(kid, "{b:02x}");
    }
    kid
}

/// A key file or key that cannot be used for grants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text is not an Ed25519 private key in PKCS#8 PEM
    /// (`-----BEGIN PRIVATE KEY-----`).
    #[error(
        "not an Ed25519 private key in PKCS#8 PEM (\"-----BEGIN PRIVATE KEY-----\"; \
         `gatehouse keygen` or `openssl genpkey -algorithm ed25519` make one): {0}"
    )]
    BadPrivateKey(String),
    /// The text is not an Ed25519 public key in SPKI PEM
    /// (`-----BEGIN PUBLIC KEY-----`).
    #[error(
        "not an Ed25519 public key in SPKI PEM (\"-----BEGIN PUBLIC KEY-----\"; \
         `gatehouse keygen` or `openssl pkey -pubout` make one): {0}"
    )]
    BadPublicKey(String),
    /// The public key is a point of small order, which would let anyone
    /// forge signatures.
    #[error("the public key is weak (a point of small order); generate a new key pair")]
    WeakKey,
    /// A key id that is empty or not printable ASCII.
    #[error("key id {0:?} must be 1 to 64 printable ASCII characters")]
    BadKid(String),
    /// Two keys of a [`KeySet`] have the same key id.
    #[error("two keys have the key id {0:?}; give one of them another kid")]
    DuplicateKid(String),
    /// A key of an algorithm or shape this gateway does not accept (in a
    /// JWKS: the reason the key was skipped).
    #[error("{0}")]
    Unsupported(String),
    /// The text is not a JWKS (`{"keys": [...]}`).
    #[error("not a JWK set (a JSON object with a \"keys\" array): {0}")]
    BadJwks(String),
    /// A JWKS none of whose keys this gateway can use.
    #[error("{}", no_usable_keys(.0))]
    NoUsableKeys(Vec<String>),
}

fn no_usable_keys(skipped: &[String]) -> String {
    if skipped.is_empty() {
        "the JWK set has no keys".to_owned()
    } else {
        format!(
            "the JWK set has no key this gateway can use (EdDSA/Ed25519, ES256/P-256, \
             RS256 of 2048 bits or more, each with a kid): {}",
            skipped.join("; ")
        )
    }
}

/// The signature algorithms grants may use, each tied to one kind of key.
/// Every other `alg` (`none`, `HS256`, `RS384`, …) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// Ed25519 (`EdDSA`): Gatehouse's own keys.
    EdDsa,
    /// ECDSA with P-256 and SHA-256 (`ES256`).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (`RS256`), keys of 2048 bits or more.
    Rs256,
}

impl KeyAlgorithm {
    /// The JOSE name (`EdDSA`, `ES256`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EdDsa => "EdDSA",
            KeyAlgorithm::Es256 => "ES256",
            KeyAlgorithm::Rs256 => "RS256",
        }
    }

    /// The algorithm a JOSE `alg` names, if it is one of the accepted ones.
    /// Exact, case-sensitive match.
    pub fn from_jose(alg: &str) -> Option<KeyAlgorithm> {
        match alg {
            "EdDSA" => Some(KeyAlgorithm::EdDsa),
            "ES256" => Some(KeyAlgorithm::Es256),
            "RS256" => Some(KeyAlgorithm::Rs256),
            _ => None,
        }
    }

    pub(super) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            KeyAlgorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            KeyAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            KeyAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fewest bits an RSA key may have.
pub const MIN_RSA_BITS: usize = 2048;
/// The most bits an RSA key may have (bounds the work one token costs).
pub const MAX_RSA_BITS: usize = 8192;

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

pub(super) fn check_kid(kid: &str) -> Result<(), KeyError> {
    let ok = !kid.is_empty() && kid.len() <= 64 && kid.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadKid(kid.to_owned()))
    }
}

/// A public key that verifies grants, with its key id.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    alg: KeyAlgorithm,
    /// The raw key, for Ed25519 keys only.
    raw: Option<[u8; ED25519_KEY_LEN]>,
    decoding: DecodingKey,
}

impl VerifyingKey {
    /// Parses an Ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`),
    /// as written by `gatehouse keygen` or `openssl pkey -pubout`. The key id
    /// is [`key_id`] of the key.
    pub fn from_spki_pem(pem: &str) -> Result<VerifyingKey, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
        Self::from_dalek(&key)
    }

    /// A raw 32-byte Ed25519 public key (as in a JWK's `x`).
    pub fn from_public_bytes(raw: &[u8; ED25519_KEY_LEN]) -> Result<VerifyingKey, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(raw)
            .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
        Self::from_dalek(&key)
    }

    fn from_dalek(key: &ed25519_dalek::VerifyingKey) -> Result<VerifyingKey, KeyError> {
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        let raw = key.to_bytes();
        Ok(VerifyingKey {
            kid: key_id(&raw),
            alg: KeyAlgorithm::EdDsa,
            raw: Some(raw),
            // jsonwebtoken's EdDSA verifier takes the raw 32 bytes.
            decoding: DecodingKey::from_ed_der(&raw),
        })
    }

    /// Replaces the derived key id, e.g. with one from the configuration.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<VerifyingKey, KeyError> {
        let kid = kid.into();
        check_kid(&kid)?;
        self.kid = kid;
        Ok(self)
    }

    /// The key id grants name in their `kid` header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A P-256 public key (`ES256`) from its affine coordinates, 32
    /// big-endian bytes each (a JWK's `x` and `y`, decoded), with key id
    /// `kid`. Whether the point is on the curve is checked when a
    /// signature is verified (a point that is not verifies nothing).
    pub fn from_p256_coordinates(x: &[u8], y: &[u8], kid: &str) -> Result<VerifyingKey, KeyError> {
        check_kid(kid)?;
        if x.len() != 32 || y.len() != 32 {
            return Err(KeyError::Unsupported(format!(
                "a P-256 key's x and y are 32 bytes each, not {} and {}",
                x.len(),
                y.len()
            )));
        }
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x);
        let y = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(y);
        let decoding = DecodingKey::from_ec_components(&x, &y)
            .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
        Ok(VerifyingKey {
            kid: kid.to_owned(),
            alg: KeyAlgorithm::Es256,
            raw: None,
            decoding,
        })
    }

    /// An RSA public key (`RS256`) from its modulus and exponent,
    /// big-endian bytes (a JWK's `n` and `e`, decoded), with key id `kid`.
    /// Refused under [`MIN_RSA_BITS`] or over [`MAX_RSA_BITS`] bits, and
    /// with an even or tiny exponent.
    pub fn from_rsa_components(n: &[u8], e: &[u8], kid: &str) -> Result<VerifyingKey, KeyError> {
        check_kid(kid)?;
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        let bits = match n.first() {
            Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
            None => 0,
        };
        if bits < MIN_RSA_BITS {
            return Err(KeyError::Unsupported(format!(
                "the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
            )));
        }
        if bits > MAX_RSA_BITS {
            return Err(KeyError::Unsupported(format!(
                "the RSA key has {bits} bits; at most {MAX_RSA_BITS} are accepted"
            )));
        }
        let odd = e.last().is_some_and(|b| b & 1 == 1);
        if e.len() > 8 || !odd || e == [1] {
            return Err(KeyError::Unsupported(
                "the RSA key's exponent is not a usable public exponent (e.g. 65537)".to_owned(),
            ));
        }
        Ok(VerifyingKey {
            kid: kid.to_owned(),
            alg: KeyAlgorithm::Rs256,
            raw: None,
            decoding: DecodingKey::from_rsa_raw_components(n, e),
        })
    }

    /// The algorithm this key verifies, and the only one.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The raw 32-byte public key of an Ed25519 key; `None` for other keys.
    pub fn to_bytes(&self) -> Option<[u8; ED25519_KEY_LEN]> {
        self.raw
    }

    pub(super) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A private key that signs grants, with its key id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public: VerifyingKey,
}

impl SigningKey {
    /// Parses an Ed25519 private key in PKCS#8 PEM
    /// (`-----BEGIN PRIVATE KEY-----`), as written by `gatehouse keygen` or
    /// `openssl genpkey -algorithm ed25519`. The key id is [`key_id`] of its
    /// public key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, KeyError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        Self::from_dalek(&key)
    }

    /// A raw 32-byte Ed25519 secret key (the seed).
    pub fn from_secret_bytes(secret: &[u8; ED25519_KEY_LEN]) -> Result<SigningKey, KeyError> {
        Self::from_dalek(&ed25519_dalek::SigningKey::from_bytes(secret))
    }

    fn from_dalek(key: &ed25519_dalek::SigningKey) -> Result<SigningKey, KeyError> {
        // jsonwebtoken's EdDSA signer takes PKCS#8 DER.
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        let public = VerifyingKey::from_dalek(&key.verifying_key())?;
        Ok(SigningKey {
            kid: public.kid.clone(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public,
        })
    }

    /// Replaces the derived key id; the [`verifying_key`](Self::verifying_key)
    /// gets the same one.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<SigningKey, KeyError> {
        self.public = self.public.with_kid(kid)?;
        self.kid = self.public.kid.clone();
        Ok(self)
    }

    /// The key id written into the `kid` header of grants it signs.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    pub(super) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The public keys a [`Verifier`](super::Verifier) accepts, by key id.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: BTreeMap<String, VerifyingKey>,
}

impl KeySet {
    /// An empty set, which refuses every grant.
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// A set of `keys`; their key ids must differ.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifyingKey>) -> Result<KeySet, KeyError> {
        let mut set = KeySet::new();
        for key in keys {
            set.insert(key)?;
        }
        Ok(set)
    }

    /// Adds `key`; refused if another key has its key id.
    pub fn insert(&mut self, key: VerifyingKey) -> Result<(), KeyError> {
        match self.keys.entry(key.kid.clone()) {
            std::collections::btree_map::Entry::Occupied(_) => Err(KeyError::DuplicateKid(key.kid)),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(key);
                Ok(())
            }
        }
    }

    /// The key for a grant whose header names `kid`. A grant without a
    /// `kid` is tried against the only key when there is exactly one, and
    /// refused as [`GrantError::UnknownKey`] otherwise.
    pub fn select(&self, kid: Option<&str>) -> Result<&VerifyingKey, GrantError> {
        let found = match kid {
            Some(kid) => self.keys.get(kid),
            None if self.keys.len() == 1 => self.keys.values().next(),
            None => None,
        };
        // The kid comes from an untrusted token: keep at most 64 characters
        // of it for the error message.
        found.ok_or_else(|| GrantError::UnknownKey {
            kid: kid.map(|k| k.chars().take(64).collect()),
        })
    }

    /// Whether a key has key id `kid`.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Adds every key of `other`; refused, and `self` left partly merged,
    /// at the first key id both have.
    pub fn merge(&mut self, other: KeySet) -> Result<(), KeyError> {
        for key in other.keys.into_values() {
            self.insert(key)?;
        }
        Ok(())
    }

    /// The keys, ordered by key id.
    pub fn iter(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.values()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
