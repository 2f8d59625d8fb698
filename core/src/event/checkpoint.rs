//! Checkpoints: the gateway's signed statement of which sessions the store
//! held, how many events each, and each one's chain head.
//!
//! A session's chain and seal prove that what is there was not altered;
//! they cannot show that a whole session is gone, or that a session cut
//! before its `Closed` event lost its tail. A checkpoint can. At a regular
//! interval (and at shutdown) the gateway signs, with the seal key, a list
//! of the sessions that had events since the previous checkpoint or are
//! still open: for each its id, the number of events stored, and the chain
//! head — [`hash_of`] the last of those events' stored bytes, i.e. the
//! `prev` its next event would carry. A verifier holding only the public
//! key then knows, for every listed session, that the store must hold at
//! least that many events and that event `events - 1` must hash to the
//! head (the chain vouches for every event before it).
//!
//! Checkpoints are numbered from 0 without gaps, and each carries
//! [`hash_of`] the previous checkpoint's stored bytes (zeros for #0): a
//! deleted checkpoint shows as a gap in the numbers and a broken link.
//! Only the newest checkpoint has nothing after it to vouch for it.
//!
//! # Encoding
//!
//! Fixed-width, big-endian, no padding, one canonical form (the decoder
//! refuses anything else, so decoding and encoding again gives the same
//! bytes):
//!
//! | field | bytes |
//! |---|---|
//! | magic `GHCK` | 4 |
//! | format version ([`CHECKPOINT_VERSION`]) | 1 |
//! | number | u64 |
//! | time, µs since the Unix epoch | i64 |
//! | prev: [`hash_of`] the previous checkpoint's stored bytes | 32 |
//! | key id length, then the key id (UTF-8, 1–255 bytes) | 1 + n |
//! | session count | u32 |
//! | per session, ascending by id, no duplicates: id, events (≥ 1), head | 16 + 8 + 32 |
//! | Ed25519 signature over [`CHECKPOINT_CONTEXT`] ‖ everything above | 64 |
//!
//! Pure: no IO, no clock; the caller says when.

use super::fields::{Cursor, signed_message};
use super::{HASH_LEN, Hash, SIGNATURE_LEN, SealError, SealKey, SealPublicKey, SessionId};

/// The checkpoint encoding's version, the byte after the magic.
pub const CHECKPOINT_VERSION: u8 = 1;

/// Domain separation: a checkpoint signature cannot be taken for a seal
/// or anything else the same key signs.
pub const CHECKPOINT_CONTEXT: &[u8] = b"gatehouse checkpoint v1\0";

const MAGIC: &[u8; 4] = b"GHCK";

/// Bytes per listed session.
const ENTRY_LEN: usize = 16 + 8 + HASH_LEN;

/// Bytes before the key id: magic, version, number, time, prev, kid length.
const HEAD_LEN: usize = 4 + 1 + 8 + 8 + HASH_LEN + 1;

/// One session as a checkpoint lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covered {
    /// The session.
    pub session: SessionId,
    /// Events the store held for it (at least 1).
    pub events: u64,
    /// [`hash_of`](super::hash_of) the stored bytes of event `events - 1`.
    pub head: Hash,
}

/// A decoded checkpoint. Its signature is checked by [`verify_checkpoint`].
///
/// What it is and how it is encoded: see the source of this module
/// (`core/src/event/checkpoint.rs`); in short, a checkpoint lists every
/// session that had events since the previous checkpoint or is still
/// open, each with its event count and chain head, is chained to the
/// previous checkpoint by hash and numbered without gaps, and is signed
/// with the seal key over [`CHECKPOINT_CONTEXT`] and a canonical,
/// fixed-width big-endian encoding ([`Checkpoint::encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Its number, from 0, without gaps.
    pub number: u64,
    /// When it was taken, µs since the Unix epoch.
    pub at_us: i64,
    /// [`hash_of`](super::hash_of) the previous checkpoint's stored bytes;
    /// zeros for checkpoint 0.
    pub prev: Hash,
    /// The key id of the key that signed it.
    pub kid: String,
    /// The sessions it covers, ascending by id.
    pub sessions: Vec<Covered>,
    /// The Ed25519 signature.
    pub signature: [u8; SIGNATURE_LEN],
}

/// Stored bytes that are not a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The bytes end before the checkpoint does, or go on after it.
    #[error("{0} bytes do not hold a whole checkpoint and nothing more")]
    Length(usize),
    /// The first four bytes are not `GHCK`.
    #[error("not a checkpoint (no GHCK magic)")]
    Magic,
    /// A format version this build does not know.
    #[error("checkpoint format version {0} is not {CHECKPOINT_VERSION}")]
    Version(u8),
    /// The key id is empty or not UTF-8.
    #[error("the key id is empty or not UTF-8")]
    Kid,
    /// Sessions are not in ascending order, or one is listed twice.
    #[error("session {0} is out of order or listed twice")]
    Order(SessionId),
    /// A session is listed with no events.
    #[error("session {0} is listed with 0 events")]
    Empty(SessionId),
}

/// Signs a checkpoint with `key` and returns its stored bytes.
///
/// `sessions` may come in any order; a session listed more than once is
/// kept with the most events. Sessions with 0 events are left out (there
/// is nothing of them to vouch for).
pub fn sign_checkpoint(
    key: &SealKey,
    number: u64,
    at_us: i64,
    prev: &Hash,
    mut sessions: Vec<Covered>,
) -> Vec<u8> {
    sessions.retain(|c| c.events > 0);
    sessions.sort_by(|a, b| a.session.cmp(&b.session).then(b.events.cmp(&a.events)));
    sessions.dedup_by_key(|c| c.session);
    let mut out = Vec::with_capacity(
        HEAD_LEN + key.kid().len() + 4 + sessions.len() * ENTRY_LEN + SIGNATURE_LEN,
    );
    write_body(&mut out, number, at_us, prev, key.kid(), &sessions);
    let signature = key.sign_raw(&signed_message(CHECKPOINT_CONTEXT, &out));
    out.extend_from_slice(&signature);
    out
}

impl Checkpoint {
    /// The stored bytes: the exact input [`decode_checkpoint`] read.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_body(
            &mut out,
            self.number,
            self.at_us,
            &self.prev,
            &self.kid,
            &self.sessions,
        );
        out.extend_from_slice(&self.signature);
        out
    }
}

/// The body: everything but the signature.
fn write_body(
    out: &mut Vec<u8>,
    number: u64,
    at_us: i64,
    prev: &Hash,
    kid: &str,
    sessions: &[Covered],
) {
    out.extend_from_slice(MAGIC);
    out.push(CHECKPOINT_VERSION);
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(&at_us.to_be_bytes());
    out.extend_from_slice(prev);
    // Key ids are 16 hex digits; a longer one is cut at a character
    // boundary within 255 bytes (never produced by this crate's keys).
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
    for c in sessions {
        out.extend_from_slice(&c.session.0);
        out.extend_from_slice(&c.events.to_be_bytes());
        out.extend_from_slice(&c.head);
    }
}

/// Decodes stored checkpoint bytes. Untrusted input: any bytes give a
/// value or an error, never a panic, and the session count is checked
/// against the length before anything is allocated for it. The signature
/// is not checked here ([`verify_checkpoint`]).
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let mut c = Cursor::new(bytes, CheckpointError::Length(bytes.len()));
    if &c.array::<4>()? != MAGIC {
        return Err(CheckpointError::Magic);
    }
    let [version] = c.array::<1>()?;
    if version != CHECKPOINT_VERSION {
        return Err(CheckpointError::Version(version));
    }
    let number = u64::from_be_bytes(c.array()?);
    let at_us = i64::from_be_bytes(c.array()?);
    let prev: Hash = c.array()?;
    let [kid_len] = c.array::<1>()?;
    let kid = std::str::from_utf8(c.take(usize::from(kid_len))?)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or(CheckpointError::Kid)?
        .to_owned();
    let count = u32::from_be_bytes(c.array()?);
    let entries = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(ENTRY_LEN))
        .ok_or(CheckpointError::Length(bytes.len()))?;
    if c.rest().len() != entries.saturating_add(SIGNATURE_LEN) {
        return Err(CheckpointError::Length(bytes.len()));
    }
    let mut sessions: Vec<Covered> = Vec::with_capacity(entries / ENTRY_LEN);
    for _ in 0..count {
        let session = SessionId(c.array()?);
        let events = u64::from_be_bytes(c.array()?);
        let head: Hash = c.array()?;
        if sessions.last().is_some_and(|last| last.session >= session) {
            return Err(CheckpointError::Order(session));
        }
        if events == 0 {
            return Err(CheckpointError::Empty(session));
        }
        sessions.push(Covered {
            session,
            events,
            head,
        });
    }
    let signature = c.array()?;
    Ok(Checkpoint {
        number,
        at_us,
        prev,
        kid,
        sessions,
        signature,
    })
}

/// Verifies a decoded checkpoint's signature with the gateway's seal
/// public key.
pub fn verify_checkpoint(key: &SealPublicKey, checkpoint: &Checkpoint) -> Result<(), SealError> {
    let mut body = checkpoint.encode();
    body.truncate(body.len().saturating_sub(SIGNATURE_LEN));
    key.verify_raw(
        &checkpoint.kid,
        &signed_message(CHECKPOINT_CONTEXT, &body),
        &checkpoint.signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::hash_of;

    fn covered(id: u8, events: u64) -> Covered {
        Covered {
            session: SessionId([id; 16]),
            events,
            head: [id ^ 0x55; 32],
        }
    }

    fn key() -> SealKey {
        SealKey::from_secret_bytes(&[4; 32])
    }

    #[test]
    fn sign_decode_verify_round_trip() {
        let key = key();
        let bytes = sign_checkpoint(
            &key,
            7,
            1_700_000_000_000_000,
            &[9; 32],
            // Unordered, one twice (the larger count wins), one empty.
            vec![covered(3, 5), covered(1, 2), covered(3, 4), covered(2, 0)],
        );
        let cp = decode_checkpoint(&bytes).unwrap();
        assert_eq!(
            (cp.number, cp.at_us, cp.prev, cp.kid.as_str()),
            (7, 1_700_000_000_000_000, [9; 32], key.kid())
        );
        assert_eq!(cp.sessions, [covered(1, 2), covered(3, 5)]);
        assert_eq!(cp.encode(), bytes, "one canonical encoding");
        assert_eq!(verify_checkpoint(&key.public_key(), &cp), Ok(()));
        // Signing is deterministic (Ed25519): the same input, the same bytes.
        let again = sign_checkpoint(
            &key,
            7,
            1_700_000_000_000_000,
            &[9; 32],
            vec![covered(1, 2), covered(3, 5)],
        );
        assert_eq!(again, bytes);
        assert_ne!(hash_of(&again), [0; 32]);
    }

    #[test]
    fn layout_is_stable() {
        let key = key();
        let empty = sign_checkpoint(&key, 0, 0, &[0; 32], vec![]);
        assert_eq!(empty.len(), HEAD_LEN + 16 + 4 + SIGNATURE_LEN);
        assert!(empty.starts_with(b"GHCK\x01"));
        let two = sign_checkpoint(&key, 0, 0, &[0; 32], vec![covered(1, 1), covered(2, 1)]);
        assert_eq!(two.len(), empty.len() + 2 * ENTRY_LEN);
        let cp = decode_checkpoint(&two).unwrap();
        assert!(cp.sessions.iter().all(|c| c.events == 1));
    }

    #[test]
    fn any_change_breaks_the_signature_or_the_decoding() {
        let key = key();
        let public = key.public_key();
        let bytes = sign_checkpoint(&key, 3, 10, &[1; 32], vec![covered(1, 9), covered(2, 4)]);
        for i in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            match decode_checkpoint(&changed) {
                Err(_) => {}
                Ok(cp) => assert!(
                    verify_checkpoint(&public, &cp).is_err(),
                    "a flip of byte {i} still verifies"
                ),
            }
        }
        // Another key is named as such.
        let other = SealKey::from_secret_bytes(&[5; 32]).public_key();
        let cp = decode_checkpoint(&bytes).unwrap();
        assert!(matches!(
            verify_checkpoint(&other, &cp),
            Err(SealError::OtherKey { .. })
        ));
    }

    #[test]
    fn malformed_bytes_are_refused() {
        let key = key();
        let bytes = sign_checkpoint(&key, 3, 10, &[1; 32], vec![covered(1, 9), covered(2, 4)]);
        for len in 0..bytes.len() {
            assert!(decode_checkpoint(&bytes[..len]).is_err(), "cut at {len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            decode_checkpoint(&long),
            Err(CheckpointError::Length(long.len()))
        );
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert_eq!(decode_checkpoint(&magic), Err(CheckpointError::Magic));
        let mut version = bytes.clone();
        version[4] = 2;
        assert_eq!(
            decode_checkpoint(&version),
            Err(CheckpointError::Version(2))
        );
        // A huge session count does not allocate: it fails the length check.
        let count_at = HEAD_LEN + key.kid().len();
        let mut huge = bytes.clone();
        huge[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_checkpoint(&huge),
            Err(CheckpointError::Length(_))
        ));
        // Out of order, duplicate, empty.
        let first = count_at + 4;
        let second = first + ENTRY_LEN;
        let mut swapped = bytes.clone();
        swapped[first..first + 16].copy_from_slice(&[2; 16]);
        swapped[second..second + 16].copy_from_slice(&[1; 16]);
        assert_eq!(
            decode_checkpoint(&swapped),
            Err(CheckpointError::Order(SessionId([1; 16])))
        );
        let mut twice = bytes.clone();
        twice[second..second + 16].copy_from_slice(&[1; 16]);
        assert!(matches!(
            decode_checkpoint(&twice),
            Err(CheckpointError::Order(_))
        ));
        let mut empty = bytes.clone();
        empty[first + 16..first + 24].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(
            decode_checkpoint(&empty),
            Err(CheckpointError::Empty(SessionId([1; 16])))
        );
        let mut kid = bytes.clone();
        kid[HEAD_LEN] = 0xff;
        assert_eq!(decode_checkpoint(&kid), Err(CheckpointError::Kid));
    }
}
