//! Retention: removing old sessions from a store no gateway holds, and the
//! two small keyspaces that make it auditable.
//!
//! - `prunes`: the signed prune records ([`gatehouse_core::event::PruneRecord`])
//!   naming every session a prune removed. The store does not sign; the
//!   caller (`gatehouse store prune`) signs with the seal key and hands the
//!   bytes to [`Retention::prune`], which stores them *before* it deletes
//!   anything: a prune cut short by a crash leaves sessions that a record
//!   lists but the store still holds (verified as usual), never a removed
//!   session that no record lists.
//! - `exports`: one [`ExportRecord`] per archive `gatehouse store export`
//!   wrote from this store (range, time, hash), so that a prune can refuse
//!   to remove sessions no archive carries away
//!   ([`ExportRecord::covers`]). A stopped store's export records through
//!   [`Retention::record_export`]; a running gateway's admin API through
//!   [`Store::record_export`], its own handle.
//!
//! A prune removes whole sessions: the summary, every event and the
//! session's secondary index entries (`index`), in fjall batches of about
//! [`PRUNE_BATCH`] keys, each session within one batch. Checkpoints are
//! never removed (see the prune record's docs). A session whose summary
//! does not decode keeps its index entries (an index is a superset that
//! readers check against the summaries).

use std::sync::Arc;

use fjall::PersistMode;
use gatehouse_core::event::{Hash, SessionId};

use crate::keys::{Db, decode_checkpoint_key};
use crate::{Durability, Reader, SessionSummary, Store, StoreError};

/// Keys deleted per fjall batch (at least one whole session per batch).
pub const PRUNE_BATCH: usize = 16 * 1024;

/// Bytes of a stored [`ExportRecord`].
const EXPORT_LEN: usize = 8 * 3 + 32 + 8;

/// What one export wrote: stored in `exports` by `gatehouse store export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportRecord {
    /// When the archive was taken, µs since the Unix epoch.
    pub at_us: i64,
    /// The range's start.
    pub since_us: i64,
    /// The range's end, exclusive (`i64::MAX`: none).
    pub until_us: i64,
    /// The archive's BLAKE3 hash (what its signature signs).
    pub hash: Hash,
    /// Sessions it holds.
    pub sessions: u64,
}

impl ExportRecord {
    /// Whether the archive holds all of the session `summary` describes:
    /// the session is in its range (as [`Reader::export_archive`] selects
    /// sessions) and had its last event before the archive was taken.
    pub fn covers(&self, summary: &SessionSummary) -> bool {
        summary.started_us < self.until_us
            && summary.last_event_us >= self.since_us
            && summary.last_event_us < self.at_us
    }

    /// The stored form: the five fields, big-endian.
    pub fn encode(&self) -> [u8; EXPORT_LEN] {
        let mut out = [0u8; EXPORT_LEN];
        let fields = self
            .at_us
            .to_be_bytes()
            .into_iter()
            .chain(self.since_us.to_be_bytes())
            .chain(self.until_us.to_be_bytes())
            .chain(self.hash)
            .chain(self.sessions.to_be_bytes());
        for (slot, byte) in out.iter_mut().zip(fields) {
            *slot = byte;
        }
        out
    }

    /// Reads the stored form; `None` unless it is exactly that.
    pub fn decode(bytes: &[u8]) -> Option<ExportRecord> {
        let bytes: &[u8; EXPORT_LEN] = bytes.try_into().ok()?;
        let (at, rest) = bytes.split_first_chunk::<8>()?;
        let (since, rest) = rest.split_first_chunk::<8>()?;
        let (until, rest) = rest.split_first_chunk::<8>()?;
        let (hash, rest) = rest.split_first_chunk::<32>()?;
        let sessions: [u8; 8] = rest.try_into().ok()?;
        Some(ExportRecord {
            at_us: i64::from_be_bytes(*at),
            since_us: i64::from_be_bytes(*since),
            until_us: i64::from_be_bytes(*until),
            hash: *hash,
            sessions: u64::from_be_bytes(sessions),
        })
    }
}

/// What [`Retention::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Sessions removed (summary and events).
    pub sessions: u64,
    /// Events removed.
    pub events: u64,
    /// fjall batches committed.
    pub batches: u64,
}

/// A store opened for retention work: a directory no gateway holds.
pub struct Retention {
    db: Arc<Db>,
}

impl Retention {
    /// Opens the store in `dir`, like [`Reader::open`]: [`StoreError::Locked`]
    /// while a gateway holds it, [`StoreError::NotFound`] without a store.
    pub fn open(dir: &std::path::Path) -> Result<Retention, StoreError> {
        Ok(Retention {
            db: Arc::new(Db::open(dir, false)?),
        })
    }

    /// Whether the gateway that last held this store ran with
    /// `[store.retention] require_export` ([`Store::set_require_export`]):
    /// the policy holds for the store, also when prune is run without the
    /// gateway's config.
    pub fn require_export(&self) -> Result<bool, StoreError> {
        self.db.require_export()
    }

    /// A reader of the same database.
    pub fn reader(&self) -> Reader {
        Reader::new(self.db.clone())
    }

    /// The sessions a prune with this cut-off removes: every session whose
    /// last event is before `before_us`, oldest first. In a store no
    /// gateway holds a session without a `Closed` event was cut, so closed
    /// and cut sessions alike; a session with any event at or after the
    /// cut-off is never among them.
    pub fn candidates(&self, before_us: i64) -> Result<Vec<SessionSummary>, StoreError> {
        let mut out = Vec::new();
        for summary in self.reader().sessions() {
            let summary = summary?;
            if summary.last_event_us < before_us {
                out.push(summary);
            }
        }
        Ok(out)
    }

    /// The number the next prune record gets: one past the highest.
    pub fn next_prune_number(&self) -> Result<u64, StoreError> {
        match self.db.prunes.last_key_value() {
            Some(guard) => {
                let key = guard.key()?;
                Ok(decode_checkpoint_key(&key)?.saturating_add(1))
            }
            None => Ok(0),
        }
    }

    /// Stores the signed prune `records` (number, bytes) and fsyncs them,
    /// then removes every session of `sessions` — its summary, events and
    /// index entries — in batches, and fsyncs again. The store does not look inside the
    /// records: the caller makes them list exactly `sessions`.
    pub fn prune(
        &self,
        records: &[(u64, Vec<u8>)],
        sessions: &[SessionId],
    ) -> Result<Pruned, StoreError> {
        let db = &self.db;
        let mut batch = db.db.batch();
        for (number, bytes) in records {
            if db.prunes.contains_key(number.to_be_bytes())? {
                return Err(StoreError::InvalidOption("a prune record number is taken"));
            }
            batch.insert(&db.prunes, number.to_be_bytes(), bytes.as_slice());
        }
        batch.commit()?;
        db.db.persist(PersistMode::SyncAll)?;

        let mut done = Pruned::default();
        let mut batch = db.db.batch();
        let mut index_keys = Vec::new();
        for id in sessions {
            index_keys.clear();
            if let Some(v) = db.sessions.get(id.0)?
                && let Ok(summary) = SessionSummary::decode(&id.0, &v)
            {
                crate::index::session_entries(db, &summary, &mut index_keys)?;
            }
            for key in index_keys.drain(..) {
                batch.remove(&db.index, key);
            }
            for guard in db.events.prefix(id.0) {
                let key = guard.key()?;
                done.events += gatehouse_core::event::runs::count(id, &key);
                batch.remove(&db.events, key);
            }
            batch.remove(&db.sessions, id.0);
            done.sessions += 1;
            if batch.len() >= PRUNE_BATCH {
                std::mem::replace(&mut batch, db.db.batch()).commit()?;
                done.batches += 1;
            }
        }
        if !batch.is_empty() {
            batch.commit()?;
            done.batches += 1;
        }
        db.db.persist(PersistMode::SyncAll)?;
        Ok(done)
    }

    /// Stores what an export wrote, fsynced; returns its number.
    pub fn record_export(&self, record: &ExportRecord) -> Result<u64, StoreError> {
        let number = match self.db.exports.last_key_value() {
            Some(guard) => decode_checkpoint_key(&guard.key()?)?.saturating_add(1),
            None => 0,
        };
        self.db
            .exports
            .insert(number.to_be_bytes(), record.encode())?;
        self.db.db.persist(PersistMode::SyncAll)?;
        Ok(number)
    }

    /// Every export recorded, oldest first.
    pub fn exports(&self) -> Result<Vec<ExportRecord>, StoreError> {
        self.db
            .exports
            .iter()
            .map(|guard| {
                let (k, v) = guard.into_inner()?;
                ExportRecord::decode(&v)
                    .ok_or_else(|| StoreError::corrupt("export record", &k, "not 64 bytes"))
            })
            .collect()
    }
}

impl Store {
    /// Remembers in the store whether pruning it needs an export first
    /// (`[store.retention] require_export`), so that `gatehouse store
    /// prune` enforces the gateway's policy even when it is not given the
    /// gateway's config. The gateway says so each time it opens the store.
    pub fn set_require_export(&self, yes: bool) -> Result<(), StoreError> {
        self.inner.shared.db()?.set_require_export(yes)
    }

    /// Stores what an export from this (live) store wrote, with the
    /// store's durability; returns its number. For the gateway's admin
    /// API, which streams archives from the store it holds. Fails while
    /// the store is poisoned or recovering.
    pub fn record_export(&self, record: &ExportRecord) -> Result<u64, StoreError> {
        let shared = &self.inner.shared;
        if let Some(e) = shared.poisoned() {
            return Err(e);
        }
        let db = shared.db()?;
        // One admin request at a time records; a race between two would
        // at worst overwrite one record of the same kind.
        let number = match db.exports.last_key_value() {
            Some(guard) => decode_checkpoint_key(&guard.key()?)?.saturating_add(1),
            None => 0,
        };
        db.exports.insert(number.to_be_bytes(), record.encode())?;
        let mode = match self.inner.durability {
            Durability::Fsync => PersistMode::SyncData,
            Durability::Os { .. } => PersistMode::Buffer,
        };
        db.db.persist(mode)?;
        Ok(number)
    }
}

impl Reader {
    /// Every stored prune record, by number, with its bytes as stored (not
    /// decoded or verified: that is the auditor's verification). A key
    /// that is not 8 bytes is reported as [`StoreError::Corrupt`].
    pub fn prunes(&self) -> Vec<Result<(u64, Vec<u8>), StoreError>> {
        self.db()
            .prunes
            .iter()
            .map(|guard| {
                let (k, v) = guard.into_inner()?;
                Ok((decode_checkpoint_key(&k)?, v.to_vec()))
            })
            .collect()
    }
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("path", &self.db.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use gatehouse_core::event::{Body, Opened, Recorder};

    use super::*;
    use crate::{Store, StoreOptions};

    fn tag() -> Body {
        Body::CommandComplete {
            tag: "SELECT 1".into(),
        }
    }

    fn opened(n: u8) -> Body {
        Body::Opened(Opened {
            subject: format!("agent-{n}"),
            jti: format!("jti-{n}"),
            issuer: "iss".into(),
            purpose: "p".into(),
            ticket: None,
            target: "orders".into(),
            client_user: "u".into(),
            application_name: None,
            client_addr: "127.0.0.1:1".into(),
            tls: None,
            use_number: 1,
            max_uses: None,
            expires_at: 0,
        })
    }

    /// Three opened sessions: #1 at t=100..110, #2 at t=200..300, #3 at
    /// t=400 (each indexed by subject, target and jti).
    fn store(dir: &std::path::Path) {
        let store = Store::open(dir, StoreOptions::default()).unwrap();
        let w = store.writer();
        for (id, times) in [(1u8, vec![100, 110]), (2, vec![200, 300]), (3, vec![400])] {
            let mut rec = Recorder::new(SessionId([id; 16]));
            let events = times
                .into_iter()
                .enumerate()
                .map(|(i, t)| rec.record(t, if i == 0 { opened(id) } else { tag() }))
                .collect();
            w.append_blocking(events).unwrap();
        }
        store.shutdown().unwrap();
    }

    #[test]
    fn prune_removes_whole_sessions_before_the_cut_off_only() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path());
        let r = Retention::open(dir.path()).unwrap();
        assert_eq!(r.db.index.iter().count(), 9, "3 entries a session");
        // #2 has an event at 300: a cut-off at 300 keeps it.
        let ids: Vec<_> = r.candidates(300).unwrap().iter().map(|s| s.id).collect();
        assert_eq!(ids, [SessionId([1; 16])]);
        let ids: Vec<_> = r.candidates(301).unwrap().iter().map(|s| s.id).collect();
        assert_eq!(ids, [SessionId([1; 16]), SessionId([2; 16])]);
        assert_eq!(r.next_prune_number().unwrap(), 0);
        let done = r.prune(&[(0, b"record".to_vec())], &ids).unwrap();
        assert_eq!((done.sessions, done.events, done.batches), (2, 4, 1));
        assert_eq!(r.next_prune_number().unwrap(), 1);
        let reader = r.reader();
        let left: Vec<_> = reader.sessions().map(|s| s.unwrap().id).collect();
        assert_eq!(left, [SessionId([3; 16])]);
        assert_eq!(reader.raw_events(SessionId([1; 16])).count(), 0);
        assert_eq!(reader.raw_events(SessionId([3; 16])).count(), 1);
        assert_eq!(r.db.index.iter().count(), 3, "#3's entries only");
        let prunes: Vec<_> = reader.prunes().into_iter().map(|p| p.unwrap()).collect();
        assert_eq!(prunes, [(0, b"record".to_vec())]);
        // A record number is never reused.
        assert!(r.prune(&[(0, b"again".to_vec())], &[]).is_err());
    }

    #[test]
    fn a_live_store_records_exports_too() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let rec = ExportRecord {
            at_us: 1,
            since_us: 0,
            until_us: 2,
            hash: [1; 32],
            sessions: 0,
        };
        assert_eq!(store.record_export(&rec).unwrap(), 0);
        assert_eq!(store.record_export(&rec).unwrap(), 1);
        store.shutdown().unwrap();
        let r = Retention::open(dir.path()).unwrap();
        assert_eq!(r.exports().unwrap(), [rec, rec]);
    }

    #[test]
    fn export_records_round_trip_and_cover() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path());
        let r = Retention::open(dir.path()).unwrap();
        assert!(r.exports().unwrap().is_empty());
        let rec = ExportRecord {
            at_us: 350,
            since_us: 0,
            until_us: i64::MAX,
            hash: [7; 32],
            sessions: 2,
        };
        assert_eq!(ExportRecord::decode(&rec.encode()), Some(rec));
        assert_eq!(ExportRecord::decode(&rec.encode()[1..]), None);
        assert_eq!(r.record_export(&rec).unwrap(), 0);
        assert_eq!(r.record_export(&rec).unwrap(), 1);
        assert_eq!(r.exports().unwrap(), [rec, rec]);
        let sessions: Vec<_> = r.reader().sessions().map(|s| s.unwrap()).collect();
        let covered: Vec<_> = sessions.iter().map(|s| rec.covers(s)).collect();
        // #3's last event (400) came after the export was taken.
        assert_eq!(covered, [true, true, false]);
        let ranged = ExportRecord {
            since_us: 150,
            until_us: 250,
            ..rec
        };
        let covered: Vec<_> = sessions.iter().map(|s| ranged.covers(s)).collect();
        assert_eq!(covered, [false, true, false]);
    }
}
