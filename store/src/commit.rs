//! The writer: group commit on the writer thread, session summaries, grant
//! use counts, periodic sync, and poisoning at the first failure.
//!
//! The commit state ([`CommitState`]) sits behind a mutex. The writer
//! thread takes it for each group it commits. In `Os` mode a caller may
//! also commit its own submission inline, on its own thread, when nothing
//! is queued and the state is free (see `Shared::try_inline`): no thread
//! hop and no wake-up per statement, and the same batch, checks and
//! acknowledgement as on the thread. Syncs stay on the writer thread.
//!
//! After a failure the writer thread also tries, every recovery interval,
//! to reopen the database in place ([`recover`]).

mod recover;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fjall::PersistMode;
use gatehouse_core::event::SessionId;
use tokio::sync::oneshot;

use crate::keys::{Db, decode_uses};
use crate::summary::{Fact, SessionSummary};
use crate::writer::{Counters, Prepared, Shared, Submission};
use crate::{Durability, StoreError};

type AckTx = oneshot::Sender<Result<(), StoreError>>;

/// The writer thread.
pub(crate) struct Committer {
    rx: flume::Receiver<Submission>,
    state: Arc<Mutex<CommitState>>,
    shared: Arc<Shared>,
    durability: Durability,
    max_batch: usize,
    /// How often a poisoned writer tries to reopen the database.
    recovery_interval: Duration,
}

/// What committing needs, shared by the writer thread and, in `Os` mode,
/// callers committing inline.
pub(crate) struct CommitState {
    /// The store's directory, to reopen it after a failure.
    path: PathBuf,
    shared: Arc<Shared>,
    durability: Durability,
    /// Summaries of sessions that may get more events: a cache of the
    /// `sessions` keyspace, which is written with every batch. Closed and
    /// refused sessions are dropped after their batch commits; a later
    /// event for one reloads it. A session never closed (its task died
    /// without recording `Closed`) stays until the store closes.
    open: HashMap<SessionId, SessionSummary, IdHash>,
    /// In `Os` mode: batches written since the last sync.
    unsynced: bool,
    last_sync: Instant,
    /// The writer thread has finished: nothing may be committed any more.
    pub(crate) closed: bool,
}

impl Committer {
    pub(crate) fn new(
        path: PathBuf,
        rx: flume::Receiver<Submission>,
        shared: Arc<Shared>,
        opts: crate::StoreOptions,
    ) -> Self {
        let durability = opts.durability;
        let state = Arc::new(Mutex::new(CommitState {
            path,
            shared: shared.clone(),
            durability,
            open: HashMap::default(),
            unsynced: false,
            last_sync: Instant::now(),
            closed: false,
        }));
        if matches!(durability, Durability::Os { .. }) {
            shared.allow_inline(&state);
        }
        Committer {
            rx,
            state,
            shared,
            durability,
            max_batch: opts.max_batch,
            recovery_interval: opts.recovery_interval,
        }
    }

    fn lock(&self) -> MutexGuard<'_, CommitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs until the channel is closed and drained, then syncs once more.
    /// Returns the poison error if the writer was poisoned on the way.
    pub(crate) fn run(self) -> Result<(), StoreError> {
        while let Some(first) = self.next_first() {
            let mut queued = first.events.len();
            let mut group = vec![first];
            while queued < self.max_batch {
                let Ok(next) = self.rx.try_recv() else { break };
                queued += next.events.len();
                group.push(next);
            }
            let n = group.len();
            let mut state = self.lock();
            state.commit(group, true);
            // Under the lock: an inline commit sees these as committed only
            // once they are.
            self.shared.pending.fetch_sub(n, Ordering::AcqRel);
        }
        let mut state = self.lock();
        state.closed = true;
        // Let go of the database: with the last reader, its directory lock
        // goes, even while writer handles are still around.
        let db = self.shared.db_slot().take();
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        let Some(db) = db else {
            return Err(self.shared.refusal());
        };
        db.db.persist(PersistMode::SyncAll).map_err(|e| {
            let cause = self.shared.poison(format!("final fsync failed: {e}"));
            tracing::error!(%cause, "store shut down with a failed fsync");
            StoreError::Poisoned { cause }
        })
    }

    /// Blocks for the next submission. In `Os` mode, wakes every sync
    /// interval to sync what was written (also by inline commits); after a
    /// failure, wakes every recovery interval to try to recover from it.
    fn next_first(&self) -> Option<Submission> {
        loop {
            let deadline = {
                let mut state = self.lock();
                match self.durability {
                    _ if self.shared.poisoned().is_some() => {
                        Instant::now() + self.recovery_interval
                    }
                    Durability::Fsync => {
                        drop(state);
                        return self.rx.recv().ok();
                    }
                    Durability::Os { sync_interval } => {
                        if state.unsynced && state.last_sync.elapsed() >= sync_interval {
                            state.sync();
                        }
                        if state.unsynced {
                            state.last_sync + sync_interval
                        } else {
                            Instant::now() + sync_interval
                        }
                    }
                }
            };
            match self.rx.recv_deadline(deadline) {
                Ok(s) => return Some(s),
                Err(flume::RecvTimeoutError::Disconnected) => return None,
                Err(flume::RecvTimeoutError::Timeout) => {
                    // A failure is retried a recovery interval after it
                    // happened, and every interval after that.
                    self.lock().recover(self.recovery_interval);
                }
            }
        }
    }
}

impl CommitState {
    /// fsyncs what `Os` mode has written so far.
    fn sync(&mut self) {
        self.unsynced = false;
        self.last_sync = Instant::now();
        if self.shared.poisoned().is_some() {
            return;
        }
        #[cfg(test)]
        let injected = self
            .shared
            .fail_next_sync
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        let injected = false;
        let synced = if injected {
            Err(crate::StoreError::Engine(fjall::Error::Io(
                std::io::Error::other("injected fsync failure"),
            )))
        } else {
            self.shared
                .db()
                .and_then(|db| Ok(db.db.persist(PersistMode::SyncData)?))
        };
        match synced {
            Ok(()) => Counters::add(&self.shared.counters.syncs, 1),
            Err(e) => {
                let cause = self.shared.poison(format!("fsync failed: {e}"));
                tracing::error!(%cause, "store writer poisoned");
            }
        }
    }

    /// Writes a group of submissions in one atomic batch and acknowledges
    /// each of them. `may_sync`: in `Os` mode, sync if the interval has
    /// passed (the writer thread; inline commits never wait for a sync).
    pub(crate) fn commit(&mut self, group: Vec<Submission>, may_sync: bool) {
        let db = match self.shared.poisoned() {
            None => self.shared.db().ok(),
            Some(_) => None,
        };
        let Some(db) = db else {
            for s in group {
                reply(s.ack, Some(self.shared.refusal()));
            }
            return;
        };
        let mut batch = db.db.batch();
        if self.durability == Durability::Fsync {
            batch = batch.durability(Some(PersistMode::SyncData));
        }
        // Sessions with accepted events in this batch; may repeat (sorted
        // and deduplicated before their summaries are written).
        let mut touched: Vec<SessionId> = Vec::with_capacity(group.len());
        let mut uses: HashMap<String, (u32, bool)> = HashMap::new();
        let mut accepted: Vec<AckTx> = Vec::with_capacity(group.len());
        let mut seen: Vec<(SessionId, u64, bool)> = Vec::new();
        // Secondary index keys of the event at hand (usually none).
        let mut index_keys: Vec<Vec<u8>> = Vec::new();
        // The accepted submissions' entries of the `events` keyspace.
        let mut entries: Vec<crate::runs::Entry> = Vec::with_capacity(group.len());
        let mut events = 0;
        for s in group {
            seen.clear();
            if let Err(e) = self.check(&db, &s.events, &mut uses, &mut seen) {
                // Do not keep finished sessions that only a refused
                // submission loaded.
                for (id, ..) in &seen {
                    if !touched.contains(id) {
                        self.evict_if_done(id);
                    }
                }
                Counters::add(&self.shared.counters.refused, 1);
                reply(s.ack, Some(e));
                continue;
            }
            touched.extend(seen.iter().map(|(id, ..)| *id));
            // A submission's events are mostly of one session: its summary
            // is looked up once per run of events of the same session.
            let mut current: Option<(SessionId, &mut SessionSummary)> = None;
            events += s.events.len();
            for event in s.events {
                let Prepared {
                    session,
                    seq,
                    at_us,
                    fact,
                    ..
                } = event;
                if !matches!(&current, Some((id, _)) if *id == session) {
                    let summary = self
                        .open
                        .entry(session)
                        .or_insert_with(|| SessionSummary::new(session, at_us));
                    current = Some((session, summary));
                }
                let Some((_, summary)) = &mut current else {
                    unreachable!("the current session's summary was just set")
                };
                summary.apply(at_us, &fact);
                // In the same batch as the event: never ahead or behind.
                crate::index::entries(summary, seq, &fact, &mut index_keys);
                for k in index_keys.drain(..) {
                    batch.insert(&db.index, k, &[][..]);
                }
                if let Fact::Opened(o) = &fact
                    && let Some((n, changed)) = uses.get_mut(&o.jti)
                    && o.use_number > *n
                {
                    (*n, *changed) = (o.use_number, true);
                }
                if let Fact::Revoked(jti) = &fact {
                    batch.insert(&db.revocations, jti.as_bytes(), &at_us.to_be_bytes()[..]);
                }
            }
            entries.extend(s.entries);
            accepted.push(s.ack);
        }
        // Moved, not copied (the submitting threads made the copies),
        // unless a session's submissions continue each other: then joined.
        crate::runs::join(&mut entries, |key, value| {
            batch.insert(&db.events, key, value)
        });
        touched.sort_unstable();
        touched.dedup();
        for id in &touched {
            if let Some(summary) = self.open.get(id) {
                batch.insert(&db.sessions, &id.0[..], &summary.encode()[..]);
            }
        }
        for (jti, (n, changed)) in &uses {
            if *changed {
                batch.insert(&db.grant_uses, jti.as_bytes(), &n.to_be_bytes()[..]);
            }
        }
        if accepted.is_empty() {
            return;
        }
        if let Err(e) = self.write(batch) {
            let cause = self.shared.poison(format!("write failed: {e}"));
            tracing::error!(%cause, "store writer poisoned");
            for ack in accepted {
                reply(ack, self.shared.poisoned());
            }
            return;
        }
        for id in &touched {
            self.evict_if_done(id);
        }
        let counters = &self.shared.counters;
        Counters::add(&counters.batches, 1);
        Counters::add(&counters.submissions, accepted.len());
        Counters::add(&counters.events, events);
        if self.durability == Durability::Fsync {
            Counters::add(&counters.syncs, 1);
        }
        for ack in accepted {
            reply(ack, None);
        }
        if let Durability::Os { sync_interval } = self.durability {
            self.unsynced = true;
            if may_sync && self.last_sync.elapsed() >= sync_interval {
                self.sync();
            }
        }
    }

    /// Commits a batch (in `Fsync` mode, with its fsync).
    fn write(&self, batch: fjall::OwnedWriteBatch) -> Result<(), fjall::Error> {
        #[cfg(test)]
        if self
            .shared
            .fail_next_write
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            return Err(fjall::Error::Io(std::io::Error::other("injected failure")));
        }
        batch.commit()
    }

    /// Checks that a submission's events continue their sessions, loading
    /// the summaries and grant use counts it needs. Touches nothing else.
    ///
    /// `next` collects, per session of the submission, the next expected
    /// sequence number and whether it is closed.
    fn check(
        &mut self,
        db: &Db,
        events: &[Prepared],
        uses: &mut HashMap<String, (u32, bool)>,
        next: &mut Vec<(SessionId, u64, bool)>,
    ) -> Result<(), StoreError> {
        for enc in events {
            let fact = &enc.fact;
            let pos = match next.iter().position(|(id, ..)| *id == enc.session) {
                Some(pos) => pos,
                None => {
                    let (seq, closed) = match self.load(db, enc.session)? {
                        Some(s) => (s.events, s.closed.is_some()),
                        None => (0, false),
                    };
                    next.push((enc.session, seq, closed));
                    next.len() - 1
                }
            };
            let Some((_, expected, closed)) = next.get_mut(pos) else {
                unreachable!("position was just found or pushed")
            };
            if *closed {
                return Err(out_of_sequence(enc, "the session is already closed".into()));
            }
            if enc.seq != *expected {
                return Err(out_of_sequence(enc, format!("expected #{expected}")));
            }
            *expected += 1;
            *closed = matches!(fact, Fact::Closed(_));
            if let Fact::Opened(o) = fact
                && let Entry::Vacant(slot) = uses.entry(o.jti.clone())
            {
                let stored = match db.grant_uses.get(o.jti.as_bytes())? {
                    Some(v) => decode_uses(o.jti.as_bytes(), &v)?,
                    None => 0,
                };
                slot.insert((stored, false));
            }
        }
        Ok(())
    }

    /// Drops a closed or refused session's summary from the cache.
    fn evict_if_done(&mut self, id: &SessionId) {
        if self
            .open
            .get(id)
            .is_some_and(|s| s.closed.is_some() || s.refused.is_some())
        {
            self.open.remove(id);
        }
    }

    /// The summary of `id`, from the cache or the store (then cached).
    fn load(&mut self, db: &Db, id: SessionId) -> Result<Option<&SessionSummary>, StoreError> {
        if let Entry::Vacant(slot) = self.open.entry(id) {
            match db.sessions.get(id.0)? {
                Some(v) => {
                    slot.insert(SessionSummary::decode(&id.0, &v)?);
                }
                None => return Ok(None),
            }
        }
        Ok(self.open.get(&id))
    }
}

fn out_of_sequence(enc: &Prepared, reason: String) -> StoreError {
    StoreError::OutOfSequence {
        session: enc.session,
        got: enc.seq,
        reason,
    }
}

/// Sends the outcome; a caller that dropped its [`Ack`](crate::Ack) does
/// not want it.
fn reply(ack: AckTx, err: Option<StoreError>) {
    let _ = ack.send(err.map_or(Ok(()), Err));
}

/// The hasher of the summary cache, keyed by session id. SipHash (the
/// standard one) costs ~200 instructions per lookup, several per event;
/// this is a folded multiply per 8 bytes. Session ids are minted by the
/// gateway (UUIDv7: a timestamp, then random bits), not chosen by clients,
/// so there is no flooding to defend against, and the folded multiply
/// mixes every input bit into both ends of the hash (hashbrown takes the
/// bucket from the low bits and the tag from the high ones).
type IdHash = BuildHasherDefault<IdHasher>;

#[derive(Default)]
struct IdHasher(u64);

impl IdHasher {
    fn mix(&mut self, word: u64) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let p = u128::from(self.0 ^ word) * u128::from(K);
        self.0 = (p as u64) ^ ((p >> 64) as u64);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0; 8];
            w.copy_from_slice(word);
            self.mix(u64::from_le_bytes(w));
        }
        let mut tail = 0u64;
        for &b in words.remainder() {
            tail = (tail << 8) | u64::from(b);
        }
        if !words.remainder().is_empty() {
            self.mix(tail);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    /// Ids that differ only in a few bytes (sessions of one millisecond,
    /// numbered like the tests' and benches' ids) still spread over the
    /// low bits (hashbrown's bucket) and the top 7 (its tag).
    #[test]
    fn session_ids_spread_over_both_ends_of_the_hash() {
        let hash = IdHash::default();
        let (mut low, mut top) = (HashSet::new(), HashSet::new());
        for n in 0u32..1024 {
            let mut id = [0u8; 16];
            id[..6].copy_from_slice(&1_764_000_000_000u64.to_be_bytes()[2..]);
            id[6] = 0x70;
            id[8] = 0x80;
            id[12..].copy_from_slice(&n.to_be_bytes());
            let h = hash.hash_one(SessionId(id));
            low.insert(h & 1023);
            top.insert(h >> 57);
        }
        // A uniform hash gives ~647 distinct values of 1024, and all 128 tags.
        assert!(low.len() > 550, "{} distinct low values", low.len());
        assert_eq!(top.len(), 128);
    }
}
