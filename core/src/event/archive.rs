//! The sealed archive format: a store's entries for a time range, as one
//! self-verifying file an auditor can take away.
//!
//! Pure framing: encoders that append to the caller's buffer and an
//! incremental [`Decoder`] (bytes in, [`Item`]s out, `Ok(None)` for "need
//! more bytes"). Which entries go in, and putting them into a store again,
//! is `gatehouse-store`'s (`gatehouse_store::archive`); signing is the
//! gateway's, with its seal key ([`sign`], [`verify`]).
//!
//! # Format, version 1
//!
//! All integers big-endian. Offsets in errors count from the file's first
//! byte.
//!
//! | part | bytes |
//! |---|---|
//! | header | [`MAGIC`] (8) ‖ archive version u32 ([`ARCHIVE_VERSION`]) ‖ event format u32 ‖ store format u32 ‖ since µs i64 ‖ until µs i64 |
//! | entry, repeated | keyspace tag u8 (1..=6, [`Keyspace`]) ‖ key length u16 ‖ key ‖ value length u32 ‖ value |
//! | end of entries | tag 0 |
//! | trailer | BLAKE3 hash (32) of every byte before it |
//! | signature block | 0 (unsigned), or 1 ‖ kid length u8 ‖ kid (UTF-8) ‖ Ed25519 signature (64) over [`SIGNATURE_CONTEXT`] ‖ hash |
//!
//! Then the file ends. Keys and values are exactly as the store holds
//! them. A key is at most [`MAX_KEY`] bytes, a value at most
//! [`MAX_VALUE`]; `events` keys are 24 bytes (session id ‖ seq) or, from
//! store format 3 on, 32 (a run of events: session id ‖ first ‖ last), `sessions`
//! keys 16 (a session id), `checkpoints` keys 8 (the checkpoint's number),
//! and no key is empty.
//!
//! A changed byte anywhere is caught: in the header as [`ArchiveError::BadMagic`]
//! or [`ArchiveError::UnsupportedVersion`], in a length or tag as
//! [`ArchiveError::Malformed`] (with its offset) or
//! [`ArchiveError::Truncated`], in a key or value as
//! [`ArchiveError::BadHash`], in the signature as [`ArchiveError::BadSignature`]
//! (when a public key is given).

use bytes::{Buf as _, Bytes, BytesMut};

use super::{HASH_LEN, Hash, SIGNATURE_LEN, SealError, SealKey, SealPublicKey};

/// The first bytes of every archive.
pub const MAGIC: &[u8; 8] = b"GHARCHV\x01";

/// The version of this format, after [`MAGIC`].
pub const ARCHIVE_VERSION: u32 = 1;

/// The longest key accepted.
pub const MAX_KEY: usize = 4096;

/// The largest value accepted (one event holds one protocol frame).
pub const MAX_VALUE: usize = 256 << 20;

/// Domain separation: an archive signature cannot be mistaken for a seal
/// or anything else the seal key signs.
pub const SIGNATURE_CONTEXT: &[u8] = b"gatehouse archive v1\0";

/// Bytes in the header.
pub const HEADER_LEN: usize = 8 + 4 + 4 + 4 + 8 + 8;

/// The store keyspace an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Keyspace {
    /// `events`: session id ‖ seq → an event's archive.
    Events,
    /// `sessions`: session id → its summary.
    Sessions,
    /// `grant_uses`: jti → highest use number.
    GrantUses,
    /// `revocations`: jti → when.
    Revocations,
    /// `checkpoints`: number (u64) → a signed checkpoint.
    Checkpoints,
    /// `prunes`: number (u64) → a signed prune record.
    Prunes,
}

impl Keyspace {
    /// The tag written before an entry.
    pub fn tag(self) -> u8 {
        match self {
            Keyspace::Events => 1,
            Keyspace::Sessions => 2,
            Keyspace::GrantUses => 3,
            Keyspace::Revocations => 4,
            Keyspace::Checkpoints => 5,
            Keyspace::Prunes => 6,
        }
    }

    /// The keyspace of `tag`, if any (0 ends the entries; it is none).
    pub fn from_tag(tag: u8) -> Option<Keyspace> {
        Some(match tag {
            1 => Keyspace::Events,
            2 => Keyspace::Sessions,
            3 => Keyspace::GrantUses,
            4 => Keyspace::Revocations,
            5 => Keyspace::Checkpoints,
            6 => Keyspace::Prunes,
            _ => return None,
        })
    }

    /// The store's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Keyspace::Events => "events",
            Keyspace::Sessions => "sessions",
            Keyspace::GrantUses => "grant_uses",
            Keyspace::Revocations => "revocations",
            Keyspace::Checkpoints => "checkpoints",
            Keyspace::Prunes => "prunes",
        }
    }

    /// The key lengths this keyspace allows, if fixed.
    fn key_lens(self) -> Option<&'static [usize]> {
        match self {
            // An event, or a run of events (store format 3).
            Keyspace::Events => Some(&[24, 32]),
            Keyspace::Sessions => Some(&[16]),
            Keyspace::Checkpoints | Keyspace::Prunes => Some(&[8]),
            _ => None,
        }
    }
}

/// What the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The event archive format of the values (`event::FORMAT_VERSION`).
    pub event_format: u32,
    /// The store layout of keys and summaries.
    pub store_format: u32,
    /// The range's start, µs since the Unix epoch (inclusive).
    pub since_us: i64,
    /// The range's end (exclusive).
    pub until_us: i64,
}

/// One stored key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where the entry starts in the file.
    pub offset: u64,
    /// Its keyspace.
    pub keyspace: Keyspace,
    /// The key, as stored.
    pub key: Bytes,
    /// The value, as stored.
    pub value: Bytes,
}

/// The signature over an archive's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSignature {
    /// The seal key's id.
    pub kid: String,
    /// Ed25519 over [`SIGNATURE_CONTEXT`] ‖ hash.
    pub signature: [u8; SIGNATURE_LEN],
}

/// What the [`Decoder`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The header (always first).
    Header(Header),
    /// An entry.
    Entry(Entry),
    /// The trailer, whose hash matched the bytes before it.
    Verified(Hash),
    /// The signature block (always last): `None` when the archive is unsigned.
    Signature(Option<ArchiveSignature>),
}

/// Why an archive cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The input does not start with [`MAGIC`].
    #[error("not a Gatehouse archive (it does not start with the archive magic)")]
    BadMagic,
    /// A version of the format this build does not read.
    #[error("archive format version {found}; this build reads version {expected}")]
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
        /// [`ARCHIVE_VERSION`].
        expected: u32,
    },
    /// A tag, length or key that the format does not allow.
    #[error("malformed archive at offset {offset}: {reason}")]
    Malformed {
        /// Where the bad part starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The input ended inside a part.
    #[error("the archive is truncated: it ends at offset {offset}, inside the {part}")]
    Truncated {
        /// Where the input ended.
        offset: u64,
        /// Which part was cut.
        part: &'static str,
    },
    /// The trailer's hash does not match the bytes before it.
    #[error(
        "bad hash: the archive's content does not match its BLAKE3 hash \
         (trailer at offset {offset}); it was altered or damaged"
    )]
    BadHash {
        /// Where the trailer starts.
        offset: u64,
    },
    /// Bytes follow the signature block.
    #[error("unexpected bytes after the end of the archive at offset {offset}")]
    TrailingBytes {
        /// Where the archive should have ended.
        offset: u64,
    },
    /// A public key was given but the archive is not signed.
    #[error("the archive is not signed (its gateway has no seal key)")]
    Unsigned,
    /// Signed with another key than the one given.
    #[error("the archive is signed with key {found:?}, not with the given key {expected:?}")]
    OtherKey {
        /// The kid in the signature block.
        found: String,
        /// The given key's kid.
        expected: String,
    },
    /// The signature does not verify.
    #[error("bad signature: the archive's signature does not match its hash and the given key")]
    BadSignature,
}

/// Appends the header.
pub fn encode_header(out: &mut Vec<u8>, header: &Header) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&ARCHIVE_VERSION.to_be_bytes());
    out.extend_from_slice(&header.event_format.to_be_bytes());
    out.extend_from_slice(&header.store_format.to_be_bytes());
    out.extend_from_slice(&header.since_us.to_be_bytes());
    out.extend_from_slice(&header.until_us.to_be_bytes());
}

/// Appends one entry. Fails (appending nothing) if the key or value is
/// longer than the format allows.
pub fn encode_entry(
    out: &mut Vec<u8>,
    keyspace: Keyspace,
    key: &[u8],
    value: &[u8],
) -> Result<(), ArchiveError> {
    let too_long = |what: &str, len: usize, max: usize| ArchiveError::Malformed {
        offset: 0,
        reason: format!("a {what} of {len} bytes is longer than the format's {max}"),
    };
    let key_len = u16::try_from(key.len())
        .ok()
        .filter(|_| key.len() <= MAX_KEY)
        .ok_or_else(|| too_long("key", key.len(), MAX_KEY))?;
    let value_len = u32::try_from(value.len())
        .ok()
        .filter(|_| value.len() <= MAX_VALUE)
        .ok_or_else(|| too_long("value", value.len(), MAX_VALUE))?;
    out.push(keyspace.tag());
    out.extend_from_slice(&key_len.to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&value_len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// The end-of-entries tag; the trailer follows.
pub const END: u8 = 0;

/// Appends the signature block.
pub fn encode_signature(out: &mut Vec<u8>, signature: Option<&ArchiveSignature>) {
    match signature {
        None => out.push(0),
        Some(s) => {
            // Key ids are short (base64url of a hash); a longer one is cut
            // to what the format holds and then fails verification.
            let kid = s.kid.as_bytes();
            let len = u8::try_from(kid.len()).unwrap_or(u8::MAX);
            out.push(1);
            out.push(len);
            out.extend_from_slice(kid.get(..usize::from(len)).unwrap_or(kid));
            out.extend_from_slice(&s.signature);
        }
    }
}

/// The message an archive signature signs.
fn signed_message(hash: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + HASH_LEN);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(hash);
    m
}

/// Signs an archive's hash with the gateway's seal key.
pub fn sign(key: &SealKey, hash: &Hash) -> ArchiveSignature {
    ArchiveSignature {
        kid: key.kid().to_owned(),
        signature: key.sign_raw(&signed_message(hash)),
    }
}

/// Verifies the signature block of an archive whose trailer held `hash`.
pub fn verify(
    key: &SealPublicKey,
    hash: &Hash,
    signature: Option<&ArchiveSignature>,
) -> Result<(), ArchiveError> {
    let s = signature.ok_or(ArchiveError::Unsigned)?;
    key.verify_raw(&s.kid, &signed_message(hash), &s.signature)
        .map_err(|e| match e {
            SealError::OtherKey { found, expected } => ArchiveError::OtherKey { found, expected },
            _ => ArchiveError::BadSignature,
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Entries,
    Trailer,
    Signature,
    Done,
}

/// Reads an archive incrementally: feed it the input in any pieces.
///
/// Call [`decode`](Decoder::decode) with a buffer holding the bytes not
/// yet consumed; it consumes one item's bytes and returns it, or `Ok(None)`
/// when it needs more. At the end of the input call
/// [`finish`](Decoder::finish) with what is left. The trailer's hash is
/// checked when it is read ([`Item::Verified`]): entries returned before
/// it are not trusted until then. After an error the decoder is not to be
/// used again.
#[derive(Debug, Clone)]
pub struct Decoder {
    phase: Phase,
    offset: u64,
    hasher: blake3::Hasher,
    hash: Option<Hash>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder at the start of an archive.
    pub fn new() -> Decoder {
        Decoder {
            phase: Phase::Header,
            offset: 0,
            hasher: blake3::Hasher::new(),
            hash: None,
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether the signature block has been read.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Consumes `n` bytes of `buf` (which holds at least `n`), hashing them
    /// unless they are the trailer or the signature.
    fn take(&mut self, buf: &mut BytesMut, n: usize) -> Bytes {
        let bytes = buf.split_to(n.min(buf.len())).freeze();
        if matches!(self.phase, Phase::Header | Phase::Entries) {
            self.hasher.update(&bytes);
        }
        self.offset += bytes.len() as u64;
        bytes
    }

    fn malformed(&self, at: u64, reason: impl Into<String>) -> ArchiveError {
        ArchiveError::Malformed {
            offset: at,
            reason: reason.into(),
        }
    }

    /// The next item, `Ok(None)` if `buf` does not hold all of it yet (or
    /// the archive is done).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, ArchiveError> {
        match self.phase {
            Phase::Header => self.header(buf),
            Phase::Entries => self.entry(buf),
            Phase::Trailer => self.trailer(buf),
            Phase::Signature => self.signature(buf),
            Phase::Done if buf.is_empty() => Ok(None),
            Phase::Done => Err(ArchiveError::TrailingBytes {
                offset: self.offset,
            }),
        }
    }

    /// The input ended with `rest` unconsumed: an error unless the archive
    /// is complete.
    pub fn finish(&self, rest: &[u8]) -> Result<(), ArchiveError> {
        let part = match self.phase {
            Phase::Done if rest.is_empty() => return Ok(()),
            Phase::Done => {
                return Err(ArchiveError::TrailingBytes {
                    offset: self.offset,
                });
            }
            Phase::Header if rest.len() < MAGIC.len() && MAGIC.starts_with(rest) => {
                // An empty or cut file: say "truncated" only if what is
                // there could be the start of an archive.
                if rest.is_empty() {
                    return Err(ArchiveError::BadMagic);
                }
                "header"
            }
            Phase::Header => "header",
            Phase::Entries => "entries",
            Phase::Trailer => "trailer",
            Phase::Signature => "signature block",
        };
        Err(ArchiveError::Truncated {
            offset: self.offset + rest.len() as u64,
            part,
        })
    }

    fn header(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, ArchiveError> {
        let magic_seen = buf.len().min(MAGIC.len());
        if buf.get(..magic_seen) != MAGIC.get(..magic_seen) {
            return Err(ArchiveError::BadMagic);
        }
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut h = self.take(buf, HEADER_LEN);
        h.advance(MAGIC.len());
        let version = h.get_u32();
        if version != ARCHIVE_VERSION {
            return Err(ArchiveError::UnsupportedVersion {
                found: version,
                expected: ARCHIVE_VERSION,
            });
        }
        let header = Header {
            event_format: h.get_u32(),
            store_format: h.get_u32(),
            since_us: h.get_i64(),
            until_us: h.get_i64(),
        };
        self.phase = Phase::Entries;
        Ok(Some(Item::Header(header)))
    }

    fn entry(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, ArchiveError> {
        let start = self.offset;
        let Some(&tag) = buf.first() else {
            return Ok(None);
        };
        if tag == END {
            self.take(buf, 1);
            self.phase = Phase::Trailer;
            return self.trailer(buf);
        }
        let keyspace = Keyspace::from_tag(tag)
            .ok_or_else(|| self.malformed(start, format!("unknown keyspace tag {tag}")))?;
        let Some(key_len) = read_u16(buf, 1) else {
            return Ok(None);
        };
        let key_len = usize::from(key_len);
        if key_len == 0 || key_len > MAX_KEY {
            return Err(self.malformed(
                start,
                format!(
                    "a {} key of {key_len} bytes (1 to {MAX_KEY} allowed)",
                    keyspace.name()
                ),
            ));
        }
        if let Some(want) = keyspace.key_lens()
            && !want.contains(&key_len)
        {
            let want = want.iter().map(usize::to_string).collect::<Vec<_>>();
            return Err(self.malformed(
                start,
                format!(
                    "a {} key is {} bytes, not {key_len}",
                    keyspace.name(),
                    want.join(" or ")
                ),
            ));
        }
        let value_at = 3 + key_len;
        let Some(value_len) = read_u32(buf, value_at) else {
            return Ok(None);
        };
        let value_len = usize::try_from(value_len).unwrap_or(usize::MAX);
        if value_len > MAX_VALUE {
            return Err(self.malformed(
                start,
                format!("a value of {value_len} bytes (at most {MAX_VALUE} allowed)"),
            ));
        }
        let total = value_at + 4 + value_len;
        if buf.len() < total {
            return Ok(None);
        }
        let mut raw = self.take(buf, total);
        raw.advance(3);
        let key = raw.split_to(key_len);
        raw.advance(4);
        Ok(Some(Item::Entry(Entry {
            offset: start,
            keyspace,
            key,
            value: raw,
        })))
    }

    fn trailer(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, ArchiveError> {
        if buf.len() < HASH_LEN {
            return Ok(None);
        }
        let start = self.offset;
        let computed = *self.hasher.finalize().as_bytes();
        let stored = self.take(buf, HASH_LEN);
        if stored.as_ref() != computed {
            return Err(ArchiveError::BadHash { offset: start });
        }
        self.hash = Some(computed);
        self.phase = Phase::Signature;
        Ok(Some(Item::Verified(computed)))
    }

    fn signature(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, ArchiveError> {
        let start = self.offset;
        let Some(&kind) = buf.first() else {
            return Ok(None);
        };
        let signature = match kind {
            0 => {
                self.take(buf, 1);
                None
            }
            1 => {
                let Some(&kid_len) = buf.get(1) else {
                    return Ok(None);
                };
                let total = 2 + usize::from(kid_len) + SIGNATURE_LEN;
                if buf.len() < total {
                    return Ok(None);
                }
                let mut raw = self.take(buf, total);
                raw.advance(2);
                let kid = raw.split_to(usize::from(kid_len));
                let kid = String::from_utf8(kid.to_vec()).map_err(|_| {
                    self.malformed(start + 2, "the signature's key id is not UTF-8")
                })?;
                let signature: [u8; SIGNATURE_LEN] = raw
                    .as_ref()
                    .try_into()
                    .map_err(|_| self.malformed(start, "a cut signature"))?;
                Some(ArchiveSignature { kid, signature })
            }
            other => {
                return Err(self.malformed(start, format!("unknown signature kind {other}")));
            }
        };
        self.phase = Phase::Done;
        Ok(Some(Item::Signature(signature)))
    }
}

fn read_u16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes(bytes.try_into().ok()?))
}

fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Reads a whole archive held in memory: every item, in order. For tests
/// and the fuzz target; files are read piece by piece.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Item>, ArchiveError> {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(bytes);
    let mut items = Vec::new();
    while let Some(item) = decoder.decode(&mut buf)? {
        items.push(item);
    }
    decoder.finish(&buf)?;
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(signed: Option<&SealKey>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_header(
            &mut out,
            &Header {
                event_format: 3,
                store_format: 2,
                since_us: 10,
                until_us: 20,
            },
        );
        encode_entry(&mut out, Keyspace::Sessions, &[1; 16], b"summary").unwrap();
        encode_entry(&mut out, Keyspace::Events, &[1; 24], b"event one").unwrap();
        encode_entry(&mut out, Keyspace::GrantUses, b"jti-1", &1u32.to_be_bytes()).unwrap();
        out.push(END);
        let hash = *blake3::hash(&out).as_bytes();
        out.extend_from_slice(&hash);
        encode_signature(&mut out, signed.map(|k| sign(k, &hash)).as_ref());
        out
    }

    #[test]
    fn round_trip_in_any_pieces() {
        let key = SealKey::from_secret_bytes(&[5; 32]);
        let bytes = sample(Some(&key));
        let items = decode_all(&bytes).unwrap();
        assert_eq!(items.len(), 6);
        let Item::Verified(hash) = &items[4] else {
            panic!("{items:?}")
        };
        let Item::Signature(sig) = &items[5] else {
            panic!()
        };
        verify(&key.public_key(), hash, sig.as_ref()).unwrap();
        // Byte by byte gives the same items.
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        let mut again = Vec::new();
        for b in &bytes {
            buf.extend_from_slice(&[*b]);
            while let Some(item) = d.decode(&mut buf).unwrap() {
                again.push(item);
            }
        }
        d.finish(&buf).unwrap();
        assert_eq!(items, again);
    }

    #[test]
    fn every_damage_is_named() {
        let key = SealKey::from_secret_bytes(&[5; 32]);
        let good = sample(Some(&key));
        // A value byte: the hash.
        let mut b = sample(None);
        b[HEADER_LEN + 1 + 2 + 16 + 4] ^= 1;
        assert_eq!(
            decode_all(&b),
            Err(ArchiveError::BadHash {
                offset: (b.len() - 1 - 32) as u64
            })
        );
        // A tag: malformed at the entry's offset.
        let mut b = good.clone();
        b[HEADER_LEN] = 9;
        assert_eq!(
            decode_all(&b),
            Err(ArchiveError::Malformed {
                offset: HEADER_LEN as u64,
                reason: "unknown keyspace tag 9".into()
            })
        );
        // A key length.
        let mut b = good.clone();
        b[HEADER_LEN + 2] = 15;
        assert!(matches!(
            decode_all(&b),
            Err(ArchiveError::Malformed { offset, .. }) if offset == HEADER_LEN as u64
        ));
        // The magic, the version, a cut file, extra bytes.
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(decode_all(&b), Err(ArchiveError::BadMagic));
        assert_eq!(decode_all(b""), Err(ArchiveError::BadMagic));
        let mut b = good.clone();
        b[11] = 9;
        assert!(matches!(
            decode_all(&b),
            Err(ArchiveError::UnsupportedVersion { found: 9, .. })
        ));
        assert_eq!(
            decode_all(&good[..good.len() - 10]),
            Err(ArchiveError::Truncated {
                offset: good.len() as u64 - 10,
                part: "signature block"
            })
        );
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(
            decode_all(&b),
            Err(ArchiveError::TrailingBytes { .. })
        ));
        // The signature: only a public key tells.
        let mut b = good.clone();
        let last = b.len() - 1;
        b[last] ^= 1;
        let items = decode_all(&b).unwrap();
        let (Item::Verified(hash), Item::Signature(sig)) = (&items[4], &items[5]) else {
            panic!()
        };
        assert_eq!(
            verify(&key.public_key(), hash, sig.as_ref()),
            Err(ArchiveError::BadSignature)
        );
        let other = SealKey::from_secret_bytes(&[6; 32]).public_key();
        assert!(matches!(
            verify(&other, hash, sig.as_ref()),
            Err(ArchiveError::OtherKey { .. })
        ));
        let unsigned = decode_all(&sample(None)).unwrap();
        let (Item::Verified(hash), Item::Signature(sig)) = (&unsigned[4], &unsigned[5]) else {
            panic!()
        };
        assert_eq!(
            verify(&key.public_key(), hash, sig.as_ref()),
            Err(ArchiveError::Unsigned)
        );
    }
}
