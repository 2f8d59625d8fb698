//! Seals: the gateway's Ed25519 signature on a session's `Closed` event.
//!
//! The hash chain lets each event vouch for the one before it, so the last
//! event of a session has nothing after it to vouch for it. The `Closed`
//! event carries a [`Seal`]: a signature by the gateway's seal key over
//! [`seal_message`] — the session id, the `Closed` event's sequence number,
//! its `prev` (the chain hash of the event before it, so the seal covers the
//! whole chain) and the `Closed` totals. A verifier needs only the public
//! key ([`SealPublicKey`]).
//!
//! Pure: keys are parsed from PEM text the caller has read.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use ed25519_dalek::{Signer as _, Verifier as _};

use super::{CloseReason, Closed, Hash, SessionId};
use crate::grant::{KeyError, key_id};

/// Bytes in an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Domain separation: a seal signature cannot be mistaken for a signature
/// over anything else the same key might sign.
const SEAL_CONTEXT: &[u8] = b"gatehouse seal v1\0";

/// The gateway's signature on a `Closed` event.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug))]
pub struct Seal {
    /// The key id of the seal key ([`key_id`] of its public key).
    pub kid: String,
    /// The Ed25519 signature over [`seal_message`] ([`SIGNATURE_LEN`] bytes).
    pub signature: Vec<u8>,
}

/// The bytes a seal signs: a fixed context string, the session id, the
/// sequence number of the `Closed` event (big-endian), its `prev`, and the
/// `Closed` fields other than the seal itself, each fixed-width big-endian.
pub fn seal_message(session: SessionId, seq: u64, prev: &Hash, closed: &Closed) -> Vec<u8> {
    let mut m = Vec::with_capacity(SEAL_CONTEXT.len() + 16 + 8 + 32 + 1 + 4 * 8);
    m.extend_from_slice(SEAL_CONTEXT);
    m.extend_from_slice(&session.0);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev);
    m.push(reason_code(closed.reason));
    for n in [
        closed.bytes_to_upstream,
        closed.bytes_to_client,
        closed.statements,
        closed.duration_us,
    ] {
        m.extend_from_slice(&n.to_be_bytes());
    }
    m
}

/// A stable number per close reason: the seal must not depend on the
/// declaration order of the enum.
fn reason_code(reason: CloseReason) -> u8 {
    match reason {
        CloseReason::ClientTerminated => 1,
        CloseReason::ClientDisconnected => 2,
        CloseReason::UpstreamClosed => 3,
        CloseReason::ClientProtocolError => 4,
        CloseReason::UpstreamProtocolError => 5,
        CloseReason::IoError => 6,
        CloseReason::Shutdown => 7,
        CloseReason::Refused => 8,
        CloseReason::UpstreamUnavailable => 9,
        CloseReason::StoreFailed => 10,
        CloseReason::LimitReached => 11,
        CloseReason::Revoked => 12,
    }
}

/// The private key that seals sessions, with its key id.
#[derive(Clone)]
pub struct SealKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl SealKey {
    /// Parses an Ed25519 private key in PKCS#8 PEM, as `gatehouse keygen`
    /// writes it.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SealKey, KeyError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        Ok(Self::from_dalek(key))
    }

    /// A raw 32-byte Ed25519 secret key (the seed).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> SealKey {
        Self::from_dalek(ed25519_dalek::SigningKey::from_bytes(secret))
    }

    fn from_dalek(key: ed25519_dalek::SigningKey) -> SealKey {
        SealKey {
            kid: key_id(&key.verifying_key().to_bytes()),
            key,
        }
    }

    /// The key id seals carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The matching public key.
    pub fn public_key(&self) -> SealPublicKey {
        SealPublicKey {
            kid: self.kid.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Seals the `Closed` event `seq` of `session` whose `prev` is `prev`.
    /// `closed.seal` is not signed (and may be anything).
    pub fn seal(&self, session: SessionId, seq: u64, prev: &Hash, closed: &Closed) -> Seal {
        let signature = self.key.sign(&seal_message(session, seq, prev, closed));
        Seal {
            kid: self.kid.clone(),
            signature: signature.to_bytes().to_vec(),
        }
    }
}

impl SealKey {
    /// Signs `message` as it is: for the other structures this key signs
    /// ([`super::checkpoint`]), each with its own context string.
    pub(super) fn sign_raw(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(message).to_bytes()
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The public key that verifies seals.
#[derive(Debug, Clone)]
pub struct SealPublicKey {
    kid: String,
    key: ed25519_dalek::VerifyingKey,
}

impl SealPublicKey {
    /// Parses an Ed25519 public key in SPKI PEM, as `gatehouse keygen`
    /// writes it.
    pub fn from_spki_pem(pem: &str) -> Result<SealPublicKey, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|e| KeyError::BadPublicKey(e.to_string()))?;
        if key.is_weak() {
            return Err(KeyError::WeakKey);
        }
        Ok(SealPublicKey {
            kid: key_id(&key.to_bytes()),
            key,
        })
    }

    /// The key id of seals it verifies.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key in SPKI PEM, as [`from_spki_pem`](Self::from_spki_pem)
    /// reads it.
    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        use ed25519_dalek::pkcs8::spki::EncodePublicKey as _;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::BadPublicKey(e.to_string()))
    }
}

impl SealPublicKey {
    /// Checks `signature` over `message` made by the key named `kid`; the
    /// other half of [`SealKey::sign_raw`].
    pub(super) fn verify_raw(
        &self,
        kid: &str,
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), SealError> {
        if kid != self.kid {
            return Err(SealError::OtherKey {
                found: kid.to_owned(),
                expected: self.kid.clone(),
            });
        }
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.key
            .verify(message, &signature)
            .map_err(|_| SealError::BadSignature)
    }
}

/// Why a `Closed` event's seal does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The `Closed` event carries no seal.
    #[error("the Closed event carries no seal")]
    Unsealed,
    /// The seal names another key than the one given.
    #[error("sealed with key {found:?}, not with the given key {expected:?}")]
    OtherKey {
        /// The kid in the seal.
        found: String,
        /// The kid of the given public key.
        expected: String,
    },
    /// The signature is not [`SIGNATURE_LEN`] bytes.
    #[error("the signature is {0} bytes, not {SIGNATURE_LEN}")]
    BadLength(usize),
    /// The signature does not verify: the event (or its chain) was altered.
    #[error("the signature does not match the Closed event and the chain before it")]
    BadSignature,
}

/// Verifies the seal of `closed`, the `Closed` event `seq` of `session`
/// whose `prev` is `prev`.
pub fn verify_seal(
    key: &SealPublicKey,
    session: SessionId,
    seq: u64,
    prev: &Hash,
    closed: &Closed,
) -> Result<(), SealError> {
    let seal = closed.seal.as_ref().ok_or(SealError::Unsealed)?;
    if seal.kid != key.kid {
        return Err(SealError::OtherKey {
            found: seal.kid.clone(),
            expected: key.kid.clone(),
        });
    }
    let bytes: [u8; SIGNATURE_LEN] = seal
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| SealError::BadLength(seal.signature.len()))?;
    let signature = ed25519_dalek::Signature::from_bytes(&bytes);
    key.key
        .verify(&seal_message(session, seq, prev, closed), &signature)
        .map_err(|_| SealError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed() -> Closed {
        Closed {
            reason: CloseReason::ClientTerminated,
            bytes_to_upstream: 100,
            bytes_to_client: 2000,
            statements: 3,
            duration_us: 5_000,
            seal: None,
        }
    }

    #[test]
    fn seal_round_trip_and_tampering() {
        let key = SealKey::from_secret_bytes(&[7; 32]);
        let public = key.public_key();
        let id = SessionId([1; 16]);
        let prev = [9; 32];
        let mut c = closed();
        assert_eq!(
            verify_seal(&public, id, 4, &prev, &c),
            Err(SealError::Unsealed)
        );
        c.seal = Some(key.seal(id, 4, &prev, &c));
        assert_eq!(verify_seal(&public, id, 4, &prev, &c), Ok(()));
        let pem = public.to_spki_pem().unwrap();
        let reread = SealPublicKey::from_spki_pem(&pem).unwrap();
        assert_eq!(reread.kid(), key.kid());
        assert_eq!(verify_seal(&reread, id, 4, &prev, &c), Ok(()));

        // A changed total, sequence number, chain hash or session fails.
        let mut changed = c.clone();
        changed.bytes_to_client += 1;
        assert_eq!(
            verify_seal(&public, id, 4, &prev, &changed),
            Err(SealError::BadSignature)
        );
        let mut changed = c.clone();
        changed.reason = CloseReason::Shutdown;
        assert_eq!(
            verify_seal(&public, id, 4, &prev, &changed),
            Err(SealError::BadSignature)
        );
        assert_eq!(
            verify_seal(&public, id, 3, &prev, &c),
            Err(SealError::BadSignature)
        );
        assert_eq!(
            verify_seal(&public, id, 4, &[8; 32], &c),
            Err(SealError::BadSignature)
        );
        assert_eq!(
            verify_seal(&public, SessionId([2; 16]), 4, &prev, &c),
            Err(SealError::BadSignature)
        );

        // Another key is named as such; a short signature is rejected.
        let other = SealKey::from_secret_bytes(&[8; 32]).public_key();
        assert!(matches!(
            verify_seal(&other, id, 4, &prev, &c),
            Err(SealError::OtherKey { .. })
        ));
        let mut short = c.clone();
        if let Some(s) = short.seal.as_mut() {
            s.signature.truncate(10);
        }
        assert_eq!(
            verify_seal(&public, id, 4, &prev, &short),
            Err(SealError::BadLength(10))
        );
    }

    #[test]
    fn message_layout_is_stable() {
        let m = seal_message(SessionId([1; 16]), 2, &[3; 32], &closed());
        assert_eq!(m.len(), SEAL_CONTEXT.len() + 16 + 8 + 32 + 1 + 32);
        assert!(m.starts_with(SEAL_CONTEXT));
    }
}
