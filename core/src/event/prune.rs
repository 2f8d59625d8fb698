//! Prune records: the signed statement that sessions missing from a store
//! were removed by `gatehouse store prune`, and when.
//!
//! Checkpoints make a deleted whole session detectable
//! ([`Checkpoint`](super::Checkpoint)). Retention deletes whole sessions on
//! purpose; an auditor then needs proof that a session a checkpoint lists
//! but the store lacks was removed by a prune at a given time, under a
//! given cut-off — not by an attacker. A prune record is that proof: it
//! names the cut-off, when the prune ran, and every removed session by id,
//! and is signed with the gateway's seal key (the same key that signs
//! checkpoints and seals sessions). A verifier accepts a missing session
//! only when a prune record whose signature verifies lists its id; anything
//! else missing is still a deleted session. Deleting a prune record makes
//! the sessions it covered show as deleted again, so records need no chain
//! of their own: tampering with them can only raise alarms.
//!
//! The ids are listed, not hashed: a hash over ids and a count proves
//! nothing about one particular id without the list. At 16 bytes a
//! session, one record holds up to [`MAX_PRUNED`] ids (8 MiB); a larger
//! prune writes several records, each signed on its own.
//!
//! Checkpoints are never pruned: they are small, and their chain of
//! `prev` hashes stays intact, so checkpoints listing only pruned
//! sessions still verify.
//!
//! # Encoding
//!
//! Fixed-width, big-endian, one canonical form:
//!
//! | field | bytes |
//! |---|---|
//! | magic `GHPR` | 4 |
//! | format version ([`PRUNE_VERSION`]) | 1 |
//! | number (the store's `prunes` key) | u64 |
//! | when the prune ran, µs since the Unix epoch | i64 |
//! | the cut-off: sessions whose last event is before it, µs | i64 |
//! | key id length (0: unsigned), then the key id (UTF-8) | 1 + n |
//! | session count (≤ [`MAX_PRUNED`]) | u32 |
//! | session ids, ascending, no duplicates | 16 each |
//! | Ed25519 signature over [`PRUNE_CONTEXT`] ‖ everything above (only when signed) | 64 |
//!
//! Pure: no IO, no clock; the caller says when.

use super::fields::{Cursor, signed_message};
use super::{SIGNATURE_LEN, SealError, SealKey, SealPublicKey, SessionId};

/// The prune record encoding's version, the byte after the magic.
pub const PRUNE_VERSION: u8 = 1;

/// Domain separation: a prune record's signature cannot be taken for a
/// seal, a checkpoint or an archive.
pub const PRUNE_CONTEXT: &[u8] = b"gatehouse prune v1\0";

/// The most sessions one record lists.
pub const MAX_PRUNED: usize = 1 << 19;

const MAGIC: &[u8; 4] = b"GHPR";

/// Bytes before the key id: magic, version, number, at, before, kid length.
const HEAD_LEN: usize = 4 + 1 + 8 + 8 + 8 + 1;

/// A decoded prune record. Its signature is checked by [`verify_prune`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRecord {
    /// Its number in the store's `prunes` keyspace.
    pub number: u64,
    /// When the prune ran, µs since the Unix epoch.
    pub at_us: i64,
    /// The cut-off: every listed session's last event was before it.
    pub before_us: i64,
    /// The key id of the key that signed it; empty when unsigned.
    pub kid: String,
    /// The removed sessions, ascending.
    pub sessions: Vec<SessionId>,
    /// The Ed25519 signature; `None` when unsigned.
    pub signature: Option<[u8; SIGNATURE_LEN]>,
}

/// Stored bytes that are not a prune record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PruneError {
    /// The bytes end before the record does, or go on after it.
    #[error("{0} bytes do not hold a whole prune record and nothing more")]
    Length(usize),
    /// The first four bytes are not `GHPR`.
    #[error("not a prune record (no GHPR magic)")]
    Magic,
    /// A format version this build does not know.
    #[error("prune record format version {0} is not {PRUNE_VERSION}")]
    Version(u8),
    /// The key id is not UTF-8.
    #[error("the key id is not UTF-8")]
    Kid,
    /// More sessions than [`MAX_PRUNED`].
    #[error("{0} sessions is more than one prune record holds")]
    TooMany(u32),
    /// Sessions are not in ascending order, or one is listed twice.
    #[error("session {0} is out of order or listed twice")]
    Order(SessionId),
}

/// Encodes a prune record, signed with `key` if given, and returns its
/// stored bytes. `sessions` may come in any order and with duplicates;
/// the caller keeps to [`MAX_PRUNED`] (more are refused by the decoder).
pub fn sign_prune(
    key: Option<&SealKey>,
    number: u64,
    at_us: i64,
    before_us: i64,
    mut sessions: Vec<SessionId>,
) -> Vec<u8> {
    sessions.sort();
    sessions.dedup();
    let kid = key.map_or("", |k| k.kid());
    let mut out = Vec::with_capacity(HEAD_LEN + kid.len() + 4 + sessions.len() * 16 + 64);
    write_body(&mut out, number, at_us, before_us, kid, &sessions);
    if let Some(key) = key {
        let signature = key.sign_raw(&signed_message(PRUNE_CONTEXT, &out));
        out.extend_from_slice(&signature);
    }
    out
}

impl PruneRecord {
    /// The stored bytes: the exact input [`decode_prune`] read.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_body(
            &mut out,
            self.number,
            self.at_us,
            self.before_us,
            &self.kid,
            &self.sessions,
        );
        if let Some(signature) = &self.signature {
            out.extend_from_slice(signature);
        }
        out
    }
}

fn write_body(
    out: &mut Vec<u8>,
    number: u64,
    at_us: i64,
    before_us: i64,
    kid: &str,
    sessions: &[SessionId],
) {
    out.extend_from_slice(MAGIC);
    out.push(PRUNE_VERSION);
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(&at_us.to_be_bytes());
    out.extend_from_slice(&before_us.to_be_bytes());
    let mut kid_len = kid.len().min(255);
    while !kid.is_char_boundary(kid_len) {
        kid_len -= 1;
    }
    let kid = kid.get(..kid_len).unwrap_or_default();
    out.push(u8::try_from(kid.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(kid.as_bytes());
    out.extend_from_slice(
        &u32::try_from(sessions.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for s in sessions {
        out.extend_from_slice(&s.0);
    }
}

/// Decodes stored prune record bytes. Untrusted input: any bytes give a
/// value or an error, never a panic; the session count is checked against
/// [`MAX_PRUNED`] and the length before anything is allocated for it. The
/// signature is not checked here ([`verify_prune`]).
pub fn decode_prune(bytes: &[u8]) -> Result<PruneRecord, PruneError> {
    let mut c = Cursor::new(bytes, PruneError::Length(bytes.len()));
    if &c.array::<4>()? != MAGIC {
        return Err(PruneError::Magic);
    }
    let [version] = c.array::<1>()?;
    if version != PRUNE_VERSION {
        return Err(PruneError::Version(version));
    }
    let number = u64::from_be_bytes(c.array()?);
    let at_us = i64::from_be_bytes(c.array()?);
    let before_us = i64::from_be_bytes(c.array()?);
    let [kid_len] = c.array::<1>()?;
    let kid = std::str::from_utf8(c.take(usize::from(kid_len))?)
        .map_err(|_| PruneError::Kid)?
        .to_owned();
    let count = u32::from_be_bytes(c.array()?);
    let n = usize::try_from(count).map_err(|_| PruneError::TooMany(count))?;
    if n > MAX_PRUNED {
        return Err(PruneError::TooMany(count));
    }
    let signature_len = if kid.is_empty() { 0 } else { SIGNATURE_LEN };
    if c.rest().len() != n * 16 + signature_len {
        return Err(PruneError::Length(bytes.len()));
    }
    let mut sessions: Vec<SessionId> = Vec::with_capacity(n);
    for _ in 0..n {
        let id = SessionId(c.array()?);
        if sessions.last().is_some_and(|last| *last >= id) {
            return Err(PruneError::Order(id));
        }
        sessions.push(id);
    }
    let signature = if kid.is_empty() {
        None
    } else {
        Some(c.array()?)
    };
    Ok(PruneRecord {
        number,
        at_us,
        before_us,
        kid,
        sessions,
        signature,
    })
}

/// Verifies a decoded prune record's signature with the gateway's seal
/// public key. An unsigned record is [`SealError::Unsealed`].
pub fn verify_prune(key: &SealPublicKey, record: &PruneRecord) -> Result<(), SealError> {
    let Some(signature) = &record.signature else {
        return Err(SealError::Unsealed);
    };
    let mut body = record.encode();
    body.truncate(body.len().saturating_sub(SIGNATURE_LEN));
    key.verify_raw(
        &record.kid,
        &signed_message(PRUNE_CONTEXT, &body),
        signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SealKey {
        SealKey::from_secret_bytes(&[4; 32])
    }

    fn ids(ns: &[u8]) -> Vec<SessionId> {
        ns.iter().map(|n| SessionId([*n; 16])).collect()
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        let key = key();
        let bytes = sign_prune(Some(&key), 2, 1_000, 900, ids(&[3, 1, 3, 2]));
        let record = decode_prune(&bytes).unwrap();
        assert_eq!(
            (
                record.number,
                record.at_us,
                record.before_us,
                record.kid.as_str()
            ),
            (2, 1_000, 900, key.kid())
        );
        assert_eq!(record.sessions, ids(&[1, 2, 3]));
        assert_eq!(record.encode(), bytes, "one canonical encoding");
        assert_eq!(verify_prune(&key.public_key(), &record), Ok(()));
        let other = SealKey::from_secret_bytes(&[5; 32]).public_key();
        assert!(matches!(
            verify_prune(&other, &record),
            Err(SealError::OtherKey { .. })
        ));
    }

    #[test]
    fn unsigned_records_decode_and_do_not_verify() {
        let bytes = sign_prune(None, 0, 1, 1, ids(&[1]));
        assert_eq!(bytes.len(), HEAD_LEN + 4 + 16);
        let record = decode_prune(&bytes).unwrap();
        assert_eq!((record.kid.as_str(), record.signature), ("", None));
        assert_eq!(record.encode(), bytes);
        assert_eq!(
            verify_prune(&key().public_key(), &record),
            Err(SealError::Unsealed)
        );
    }

    #[test]
    fn any_change_breaks_the_signature_or_the_decoding() {
        let key = key();
        let public = key.public_key();
        let bytes = sign_prune(Some(&key), 3, 10, 5, ids(&[1, 2]));
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            if let Ok(record) = decode_prune(&changed) {
                assert!(
                    verify_prune(&public, &record).is_err(),
                    "a flip of byte {i} still verifies"
                );
            }
        }
    }

    #[test]
    fn malformed_bytes_are_refused() {
        let key = key();
        let bytes = sign_prune(Some(&key), 3, 10, 5, ids(&[1, 2]));
        for len in 0..bytes.len() {
            assert!(decode_prune(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode_prune(&long), Err(PruneError::Length(long.len())));
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(decode_prune(&magic), Err(PruneError::Magic));
        let mut version = bytes.clone();
        version[4] = 9;
        assert_eq!(decode_prune(&version), Err(PruneError::Version(9)));
        let count_at = HEAD_LEN + key.kid().len();
        let mut huge = bytes.clone();
        huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_prune(&huge), Err(PruneError::TooMany(u32::MAX)));
        let mut twice = bytes.clone();
        twice[count_at + 4 + 16..count_at + 4 + 32].copy_from_slice(&[1; 16]);
        assert_eq!(
            decode_prune(&twice),
            Err(PruneError::Order(SessionId([1; 16])))
        );
        let mut kid = bytes.clone();
        kid[HEAD_LEN] = 0xff;
        assert_eq!(decode_prune(&kid), Err(PruneError::Kid));
    }
}
