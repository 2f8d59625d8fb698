//! Sealed archives: a time range of a store written to one file, and an
//! archive put back into a fresh store directory so that a [`Reader`] —
//! and every replay and audit command with it — reads it unchanged.
//!
//! The framing (header, entries, trailer hash, signature block) is
//! [`gatehouse_core::event::archive`]'s, pure and fuzzed there; this module
//! decides what goes in and moves it between fjall and a byte stream.
//! It does not sign: [`Reader::export_archive`] returns the archive's hash
//! and the caller (the gateway, `gatehouse store export`) appends the
//! signature block; [`import_archive`] returns the block for the caller
//! to verify with the seal key's public half.
//!
//! # What an archive of `[since, until)` holds
//!
//! - Every session that started before `until` and whose last recorded
//!   event is at or after `since` (it started, or had events, in the
//!   range; times from its summary): its summary and *all* its events,
//!   also those outside the range, so that its hash chain and seal verify.
//!   Session ids are UUIDv7, so the scan over `sessions` stops at ids
//!   whose timestamp is a minute past `until` (slack for a first event
//!   recorded after the id was made).
//! - Every grant use count and every revocation (small tables, and what a
//!   single-use or revoked grant was is needed to audit any range), and
//!   every prune record (so that sessions a prune removed, which the
//!   checkpoints still list, verify as pruned, not deleted).
//! - Every checkpoint (`checkpoints`), when the archive holds every
//!   session of the store (no `since`/`until`, or a range that excludes
//!   none). A checkpoint lists sessions of any time and verification
//!   reports a listed session that is absent as deleted, so an archive
//!   that leaves sessions out leaves the checkpoints out too; its
//!   sessions' chains and seals still verify.
//!
//! Everything comes from one fjall snapshot, so a summary never disagrees
//! with its events even while a gateway appends.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use fjall::Readable as _;
use gatehouse_core::event::archive::{
    ArchiveSignature, Decoder, END, Header, Item, Keyspace, encode_entry, encode_header,
};
use gatehouse_core::event::{FORMAT_COMPATIBLE, FORMAT_VERSION, Hash};

use crate::keys::{Db, STORE_FORMAT_COMPATIBLE, STORE_FORMAT_VERSION};
use crate::{Reader, SessionSummary, StoreError};

/// How many bytes of entries are written to the store in one batch on
/// import.
const IMPORT_BATCH: usize = 8 << 20;

/// The read size when importing.
const READ_CHUNK: usize = 256 << 10;

/// What [`Reader::export_archive`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// The BLAKE3 hash in the trailer, to be signed.
    pub hash: Hash,
    /// Sessions written.
    pub sessions: u64,
    /// Events written.
    pub events: u64,
    /// Bytes written, trailer included.
    pub bytes: u64,
}

/// An archive put into a store directory by [`import_archive`].
#[derive(Debug)]
pub struct Imported {
    /// A reader of the imported store.
    pub reader: Reader,
    /// The archive's header (its time range, its formats).
    pub header: Header,
    /// The archive's hash, which matched its content.
    pub hash: Hash,
    /// The signature block: `None` if the archive is unsigned. Not
    /// verified here.
    pub signature: Option<ArchiveSignature>,
    /// Entries imported.
    pub entries: u64,
}

/// A writer that hashes and counts what passes through it.
struct Hashing<'w, W: Write> {
    out: &'w mut W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> Result<(), StoreError> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        self.out.write_all(buf).map_err(StoreError::ArchiveIo)
    }
}

/// The smallest session id whose UUIDv7 timestamp is after `us`, plus a
/// minute of slack.
fn session_bound(until_us: i64) -> [u8; 16] {
    let ms = until_us.div_euclid(1000).saturating_add(60_000).max(0);
    let ms = u64::try_from(ms).unwrap_or(0).min((1 << 48) - 1);
    let mut key = [0u8; 16];
    for (slot, byte) in key.iter_mut().zip(ms.to_be_bytes().iter().skip(2)) {
        *slot = *byte;
    }
    key
}

impl Reader {
    /// Writes an archive of the sessions in `[since_us, until_us)`, every
    /// grant use count and revocation, and (when no session is left out)
    /// every checkpoint to `out`: header,
    /// entries and trailer, streaming (one entry in memory at a time). The
    /// caller appends the signature block
    /// ([`encode_signature`](gatehouse_core::event::archive::encode_signature))
    /// over [`Exported::hash`]. See the [module docs](self) for which
    /// sessions are included.
    pub fn export_archive<W: Write>(
        &self,
        since_us: i64,
        until_us: i64,
        out: &mut W,
    ) -> Result<Exported, StoreError> {
        let db = self.db();
        let snapshot = db.db.snapshot();
        let mut w = Hashing {
            out,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        };
        let mut buf = Vec::with_capacity(64 << 10);
        encode_header(
            &mut buf,
            &Header {
                event_format: FORMAT_VERSION,
                store_format: STORE_FORMAT_VERSION,
                since_us,
                until_us,
            },
        );
        w.write(&buf)?;
        let entry =
            |w: &mut Hashing<'_, W>, buf: &mut Vec<u8>, ks: Keyspace, key: &[u8], value: &[u8]| {
                buf.clear();
                encode_entry(buf, ks, key, value)
                    .map_err(|e| StoreError::corrupt("archive entry", key, e))?;
                w.write(buf)
            };

        let (mut sessions, mut events) = (0, 0);
        let bound = session_bound(until_us);
        // Whether a session of the store is left out (see the module docs).
        let mut partial = snapshot.range(&db.sessions, bound..).next().is_some();
        for guard in snapshot.range(&db.sessions, ..bound) {
            let (k, v) = guard.into_inner()?;
            let summary = SessionSummary::decode(&k, &v)?;
            if summary.started_us >= until_us || summary.last_event_us < since_us {
                partial = true;
                continue;
            }
            entry(&mut w, &mut buf, Keyspace::Sessions, &k, &v)?;
            sessions += 1;
            for guard in snapshot.prefix(&db.events, &k) {
                let (ek, ev) = guard.into_inner()?;
                entry(&mut w, &mut buf, Keyspace::Events, &ek, &ev)?;
                events += gatehouse_core::event::runs::count(&summary.id, &ek);
            }
        }
        let mut tables = vec![
            (&db.grant_uses, Keyspace::GrantUses),
            (&db.revocations, Keyspace::Revocations),
            (&db.prunes, Keyspace::Prunes),
        ];
        if !partial {
            tables.push((&db.checkpoints, Keyspace::Checkpoints));
        }
        for (keyspace, ks) in tables {
            for guard in snapshot.iter(keyspace) {
                let (k, v) = guard.into_inner()?;
                entry(&mut w, &mut buf, ks, &k, &v)?;
            }
        }
        w.write(&[END])?;
        let hash = *w.hasher.finalize().as_bytes();
        w.out.write_all(&hash).map_err(StoreError::ArchiveIo)?;
        Ok(Exported {
            hash,
            sessions,
            events,
            bytes: w.bytes + hash.len() as u64,
        })
    }
}

/// Reads an archive from `src` into a new store in `dir` (which must not
/// hold a store yet; it is created if missing) and opens it for reading.
///
/// Every length is checked before it is trusted and the trailer's hash
/// before the reader is returned: a damaged or altered archive is an
/// [`StoreError::Archive`] naming what is wrong and where (bad magic,
/// malformed entry at offset N, truncated, bad hash), and whatever was
/// imported before the damage was found stays in `dir` for the caller to
/// delete (a temporary directory). The signature block is returned, not
/// verified: that takes the gateway's public key.
pub fn import_archive<R: Read>(mut src: R, dir: &Path) -> Result<Imported, StoreError> {
    if dir.join("version").exists() {
        return Err(StoreError::InvalidOption(
            "an archive is imported into a fresh directory, and this one holds a store",
        ));
    }
    let db = Db::open(dir, true)?;
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut header = None;
    let mut hash = None;
    let mut signature = None;
    let mut entries = 0u64;
    let mut batch = db.db.batch();
    let mut batched = 0usize;
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        while let Some(item) = decoder.decode(&mut buf)? {
            match item {
                Item::Header(h) => {
                    if !FORMAT_COMPATIBLE.contains(&h.event_format) {
                        check_format("event", h.event_format, FORMAT_VERSION, dir)?;
                    }
                    if !STORE_FORMAT_COMPATIBLE.contains(&h.store_format) {
                        check_format("store", h.store_format, STORE_FORMAT_VERSION, dir)?;
                    }
                    header = Some(h);
                }
                Item::Entry(e) => {
                    let keyspace = match e.keyspace {
                        Keyspace::Events => &db.events,
                        Keyspace::Sessions => &db.sessions,
                        Keyspace::GrantUses => &db.grant_uses,
                        Keyspace::Revocations => &db.revocations,
                        Keyspace::Checkpoints => &db.checkpoints,
                        Keyspace::Prunes => &db.prunes,
                        // A keyspace this build's decoder knows but this
                        // store does not: nothing reads it.
                        _ => continue,
                    };
                    batched += e.key.len() + e.value.len();
                    batch.insert(keyspace, e.key.as_ref(), e.value.as_ref());
                    entries += 1;
                    if batched >= IMPORT_BATCH {
                        std::mem::replace(&mut batch, db.db.batch()).commit()?;
                        batched = 0;
                    }
                }
                Item::Verified(h) => hash = Some(h),
                Item::Signature(s) => signature = s,
            }
        }
        let n = match src.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::ArchiveIo(e)),
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    decoder.finish(&buf)?;
    batch.commit()?;
    // An archive carries events and summaries, not their indexes.
    db.rebuild_index()?;
    let (Some(header), Some(hash)) = (header, hash) else {
        // `finish` succeeded, so both were read.
        return Err(StoreError::InvalidOption(
            "an archive without a header or trailer",
        ));
    };
    Ok(Imported {
        reader: Reader::new(Arc::new(db)),
        header,
        hash,
        signature,
        entries,
    })
}

fn check_format(
    what: &'static str,
    found: u32,
    expected: u32,
    dir: &Path,
) -> Result<(), StoreError> {
    if found == expected {
        Ok(())
    } else {
        Err(StoreError::UnknownFormat {
            path: dir.into(),
            what,
            found,
            expected,
        })
    }
}
