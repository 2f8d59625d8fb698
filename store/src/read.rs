//! The read path: sessions, their events, and grant use counts.

use std::path::Path;
use std::sync::Arc;

use gatehouse_core::event::{Event, SessionId, event_key};

mod events;

pub use events::{Events, RawEvent, RawEvents};

use crate::index::{self, SessionIndex, StatementIndex};
use crate::keys::{Db, decode_checkpoint_key, decode_uses};
use crate::{SessionSummary, StoreError};

/// Read access to a store. Cheap to clone.
///
/// Reads see every batch committed before they start (each iterator reads
/// one consistent snapshot), whether or not it has been fsynced yet.
#[derive(Clone)]
pub struct Reader {
    db: Arc<Db>,
}

impl Reader {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Reader { db }
    }

    /// Opens the store in `dir` for reading, for the replay and audit tools.
    ///
    /// fjall has no read-only mode and allows one open database per
    /// directory, so this takes the directory's lock like
    /// [`Store::open`](crate::Store::open): it fails with
    /// [`StoreError::Locked`] while a gateway holds the store, and a gateway
    /// cannot open it while this reader (or a clone) is alive. It never
    /// creates a store: a directory without one is [`StoreError::NotFound`].
    /// Opening may replay fjall's journal into its trees, as any open does.
    pub fn open(dir: &Path) -> Result<Reader, StoreError> {
        Ok(Reader::new(Arc::new(Db::open(dir, false)?)))
    }

    /// The database, for the archive export.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.db.path
    }

    /// All sessions' summaries, oldest first (session ids are UUIDv7, so
    /// key order is start order). Reverse it for newest first.
    pub fn sessions(&self) -> Sessions {
        Sessions {
            iter: self.db.sessions.iter(),
        }
    }

    /// One session's summary.
    pub fn session(&self, id: SessionId) -> Result<Option<SessionSummary>, StoreError> {
        self.db
            .sessions
            .get(id.0)?
            .map(|v| SessionSummary::decode(&id.0, &v))
            .transpose()
    }

    /// One session's events in order: a single range scan over its entries
    /// (single events and runs of them, see the crate docs). Each is validated and decoded; an event whose content
    /// does not match its key is reported as [`StoreError::Corrupt`] and the
    /// iteration goes on. Gaps and chain breaks are not checked here: that
    /// is the auditor's verification.
    pub fn events(&self, id: SessionId) -> Events {
        events_of(&self.db, id)
    }

    /// One session's stored event archives in order, byte for byte as
    /// they are on disk (a run's events one by one, without the run's
    /// length prefixes): the same range scan as [`events`](Reader::events),
    /// without decoding or validating them. For verification, which hashes
    /// the stored bytes. An entry whose key is not the session id followed
    /// by a sequence number (or two, for a run), or a run whose events do
    /// not fit its value, is reported as one [`StoreError::Corrupt`] and
    /// the iteration goes on.
    pub fn raw_events(&self, id: SessionId) -> RawEvents {
        RawEvents::new(self.db.events.prefix(id.0), id)
    }

    /// Sessions whose `index` field is exactly `value` and that started in
    /// `[since_us, until_us)` (either bound optional), through the
    /// secondary index: no summary or event is read. In start order; may
    /// name sessions that no longer match (a superseded `Opened`, a pruned
    /// session): callers re-check the summaries.
    pub fn sessions_by(
        &self,
        index: SessionIndex,
        value: &str,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<SessionId>, StoreError> {
        index::sessions_by(&self.db, index, value, since_us, until_us)
    }

    /// Judged statements — the session and sequence number of each
    /// `Verdict` event — whose `index` field is exactly `value`, of
    /// sessions that started in `[since_us, until_us)`, through the
    /// secondary index. In session start order, then sequence order; a
    /// superset like [`sessions_by`](Self::sessions_by).
    pub fn statements_by(
        &self,
        index: StatementIndex,
        value: &str,
        since_us: Option<i64>,
        until_us: Option<i64>,
    ) -> Result<Vec<(SessionId, u64)>, StoreError> {
        index::statements_by(&self.db, index, value, since_us, until_us)
    }

    /// One session's events with sequence numbers in `seqs`, decoded and
    /// checked like [`events`](Self::events); reversible (`.rev()`), to
    /// look back from an event.
    pub fn events_in(&self, id: SessionId, seqs: std::ops::Range<u64>) -> Events {
        let end = event_key(id, seqs.end).to_vec();
        match events::scan_start(&self.db, id, seqs.start) {
            Ok(start) if start < end => {
                Events::new(self.db.events.range(start..end), id, Some(seqs))
            }
            Ok(_) => Events::new(self.db.events.range(end.clone()..end), id, Some(seqs)),
            Err(e) => Events::failed(self.db.events.range(end.clone()..end), id, e),
        }
    }

    /// One event, decoded and checked like [`events`](Self::events).
    pub fn event(&self, id: SessionId, seq: u64) -> Result<Option<Event>, StoreError> {
        events::stored(&self.db, id, seq)?
            .map(|(key, bytes)| events::read_event(&id, seq, &bytes, &key))
            .transpose()
    }

    /// One stored event exactly as it is on disk, without decoding it:
    /// what [`raw_events`](Reader::raw_events) yields for `seq`, as a point
    /// read. `None` when the store holds no event `seq` of `id`.
    pub fn raw_event(&self, id: SessionId, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(events::stored(&self.db, id, seq)?.map(|(_, bytes)| bytes))
    }

    /// Every stored checkpoint, by number, with its bytes as stored (not
    /// decoded or verified: that is the auditor's verification). A key
    /// that is not 8 bytes is reported as [`StoreError::Corrupt`] and the
    /// iteration goes on.
    pub fn checkpoints(&self) -> Checkpoints {
        Checkpoints {
            iter: self.db.checkpoints.iter(),
        }
    }

    /// The checkpoint with the highest number, if any: where the gateway
    /// continues the chain after a restart.
    pub fn last_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.db
            .checkpoints
            .last_key_value()
            .map(Checkpoints::read)
            .transpose()
    }

    /// Every grant (`jti`) that opened a session, with the highest use
    /// number recorded for it, in `jti` order.
    pub fn grant_uses(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.db
            .grant_uses
            .iter()
            .map(|guard| {
                let (k, v) = guard.into_inner()?;
                let jti = String::from_utf8(k.to_vec())
                    .map_err(|e| StoreError::corrupt("grant use key", &k, e))?;
                Ok((jti, decode_uses(&k, &v)?))
            })
            .collect()
    }

    /// Every revoked grant (`jti`), with when it was revoked (µs since the
    /// Unix epoch), in `jti` order.
    pub fn revocations(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.db
            .revocations
            .iter()
            .map(|guard| {
                let (k, v) = guard.into_inner()?;
                let jti = String::from_utf8(k.to_vec())
                    .map_err(|e| StoreError::corrupt("revocation key", &k, e))?;
                let at: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::corrupt("revocation", &k, "not 8 bytes"))?;
                Ok((jti, i64::from_be_bytes(at)))
            })
            .collect()
    }

    /// The highest use number recorded for grant `jti`; 0 if it never
    /// opened a session.
    pub fn grant_use_count(&self, jti: &str) -> Result<u32, StoreError> {
        match self.db.grant_uses.get(jti.as_bytes())? {
            Some(v) => decode_uses(jti.as_bytes(), &v),
            None => Ok(0),
        }
    }

    /// Sessions whose id starts with `prefix`: hex digits as an auditor
    /// types them, hyphens ignored, any case (`0193a5e2-7c`). Returns every
    /// match in start order; one match means the prefix is unambiguous.
    pub fn find_session_prefix(&self, prefix: &str) -> Result<Vec<SessionId>, StoreError> {
        let invalid = || StoreError::InvalidIdPrefix(prefix.to_owned());
        let nibbles = prefix
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(invalid)?;
        if nibbles.is_empty() || nibbles.len() > 32 {
            return Err(invalid());
        }
        let bytes: Vec<u8> = nibbles
            .chunks_exact(2)
            .map(|pair| pair.iter().fold(0, |acc, n| acc << 4 | n))
            .collect();
        let odd = nibbles.chunks_exact(2).remainder().first().copied();
        let mut out = Vec::new();
        for guard in self.db.sessions.prefix(&bytes) {
            let key = guard.key()?;
            let id: [u8; 16] = key
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::corrupt("session key", &key, "not 16 bytes"))?;
            let matches = match odd {
                Some(n) => id.get(bytes.len()).is_some_and(|b| b >> 4 == n),
                None => true,
            };
            if matches {
                out.push(SessionId(id));
            }
        }
        Ok(out)
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("path", &self.db.path)
            .finish_non_exhaustive()
    }
}

/// Iterator over session summaries; see [`Reader::sessions`].
pub struct Sessions {
    iter: fjall::Iter,
}

impl Sessions {
    fn read(guard: fjall::Guard) -> Result<SessionSummary, StoreError> {
        let (k, v) = guard.into_inner()?;
        SessionSummary::decode(&k, &v)
    }
}

impl Iterator for Sessions {
    type Item = Result<SessionSummary, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.iter.next().map(Sessions::read)
    }
}

impl DoubleEndedIterator for Sessions {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.iter.next_back().map(Sessions::read)
    }
}

/// Iterator over stored checkpoints, by number: each checkpoint's number
/// and stored bytes; see [`Reader::checkpoints`].
pub struct Checkpoints {
    iter: fjall::Iter,
}

impl Checkpoints {
    fn read(guard: fjall::Guard) -> Result<(u64, Vec<u8>), StoreError> {
        let (k, v) = guard.into_inner()?;
        Ok((decode_checkpoint_key(&k)?, v.to_vec()))
    }
}

impl Iterator for Checkpoints {
    type Item = Result<(u64, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.iter.next().map(Checkpoints::read)
    }
}

/// One session's events, decoded and checked, from `db`.
pub(crate) fn events_of(db: &Db, id: SessionId) -> Events {
    Events::new(db.events.prefix(id.0), id, None)
}
