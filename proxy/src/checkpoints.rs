//! Signed checkpoints: every `[store] checkpoint_interval`, and once more at
//! shutdown, the gateway signs with its seal key a list of the sessions
//! active since the previous checkpoint — each with its event count and
//! chain head — and stores it ([`gatehouse_core::event::Checkpoint`]). Seals
//! and chains show that what is in the store was not altered; checkpoints
//! show that nothing was taken away: a deleted whole session, or a session
//! cut before its close that lost its tail. `gatehouse-audit verify` checks
//! them.
//!
//! What a checkpoint covers: every session opened since the previous
//! checkpoint, and every session still open — the [`SessionRegistry`].
//! Sessions register when their first event (`seq` 0) is handed to the
//! store and are marked when their `Closed` event is; that is two short
//! lock holds per session, none per statement ([`SessionRegistry::observe`]
//! skips every other event after two comparisons). A closed session leaves
//! the registry once a checkpoint has listed it with its `Closed` event (or
//! after two checkpoints, if its `Closed` event never reached the store).
//! Counts and heads come from the store itself ([`gatehouse_store::Reader`]):
//! a checkpoint vouches only for what was committed when it was taken.
//!
//! When it is written: by a thread of its own every interval, when some
//! session is new or has more events than the last checkpoint listed (an
//! idle gateway writes none);
//! and a last one after the workers have drained their sessions and the
//! store has been flushed and shut down ([`CheckpointTask::stop`], then
//! [`Checkpointer::checkpoint`] through handles taken before the shutdown).
//! The numbering and the chain continue across restarts from the last
//! checkpoint in the store. Without a seal key there are no checkpoints.
//!
//! What it is not: it does not cover sessions of earlier runs that were
//! cut by a crash before any checkpoint listed them, nor anything after
//! the newest checkpoint (nothing vouches for the newest one either).

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use gatehouse_core::event::{
    Covered, Encoded, EventKind, HASH_LEN, Hash, SealKey, SessionId, hash_of, sign_checkpoint,
};
use gatehouse_store::{CheckpointWriter, Reader, Store, StoreError};

/// The sessions the next checkpoint covers: opened since the last one, or
/// still open. Shared by every connection task (through the store writer
/// wrapper) and the checkpoint thread.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    sessions: Mutex<HashMap<SessionId, Tracked>>,
}

/// What the registry knows of one session.
#[derive(Debug, Default, Clone, Copy)]
struct Tracked {
    /// Events up to and including its `Closed` event, once that was
    /// handed to the store.
    closed_at: Option<u64>,
    /// Checkpoints taken since it closed that did not see its `Closed`.
    missed: u8,
}

impl SessionRegistry {
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Tracked>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes sessions that start (`seq` 0) or close in `events`, which are
    /// about to be handed to the store. Every other event costs two
    /// comparisons and no lock.
    pub fn observe(&self, events: &[Encoded]) {
        for enc in events {
            if enc.seq == 0 {
                self.lock().entry(enc.session).or_default();
            }
            if enc.kind == EventKind::Closed {
                self.lock().entry(enc.session).or_default().closed_at =
                    Some(enc.seq.saturating_add(1));
            }
        }
    }

    /// The sessions to cover.
    fn snapshot(&self) -> Vec<SessionId> {
        self.lock().keys().copied().collect()
    }

    /// After a checkpoint (written, or the same as the last one) that
    /// listed `covered`: closed sessions it saw closed are done; a closed
    /// session whose `Closed` event it did not see gets one more chance.
    fn covered(&self, covered: &[Covered]) {
        let listed: HashMap<SessionId, u64> =
            covered.iter().map(|c| (c.session, c.events)).collect();
        self.lock().retain(|id, t| {
            let Some(closed_at) = t.closed_at else {
                return true;
            };
            if listed.get(id).is_some_and(|n| *n >= closed_at) {
                return false;
            }
            t.missed = t.missed.saturating_add(1);
            t.missed < 2
        });
    }

    /// Sessions tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Numbers, chains, signs and stores checkpoints. One per gateway.
#[derive(Debug)]
pub struct Checkpointer {
    key: Arc<SealKey>,
    sessions: Arc<SessionRegistry>,
    /// The number of the next checkpoint.
    next: u64,
    /// [`hash_of`] the last checkpoint's stored bytes; zeros before #0.
    prev: Hash,
    /// What the last checkpoint listed (by session id), to skip one that
    /// would say nothing new.
    last: Vec<Covered>,
}

impl Checkpointer {
    /// Continues the chain after the last checkpoint in the store.
    pub fn resume(
        reader: &Reader,
        key: Arc<SealKey>,
        sessions: Arc<SessionRegistry>,
    ) -> Result<Checkpointer, StoreError> {
        let (next, prev) = match reader.last_checkpoint()? {
            Some((number, bytes)) => (number.saturating_add(1), hash_of(&bytes)),
            None => (0, [0; HASH_LEN]),
        };
        Ok(Checkpointer {
            key,
            sessions,
            next,
            prev,
            last: Vec::new(),
        })
    }

    /// Where the sessions to cover are noted.
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.sessions
    }

    /// The number the next checkpoint gets.
    pub fn next_number(&self) -> u64 {
        self.next
    }

    /// Takes a checkpoint of the registry's sessions as `reader` sees them
    /// and stores it with `writer`, dated `at_us`. `Ok(None)` when there
    /// was nothing new to say (no session, or each as the last checkpoint
    /// listed it).
    pub fn checkpoint(
        &mut self,
        reader: &Reader,
        writer: &CheckpointWriter,
        at_us: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut covered = Vec::new();
        for id in self.sessions.snapshot() {
            // The summary is written in the same batch as the events it
            // counts, and events are never changed: event `events - 1` is
            // there and final.
            let Some(summary) = reader.session(id)? else {
                continue;
            };
            let Some(last) = summary.events.checked_sub(1) else {
                continue;
            };
            let Some(bytes) = reader.raw_event(id, last)? else {
                continue;
            };
            covered.push(Covered {
                session: id,
                events: summary.events,
                head: hash_of(&bytes),
            });
        }
        covered.sort_by_key(|c| c.session);
        // Nothing new: every session as the last checkpoint already has it.
        if covered.iter().all(|c| {
            self.last
                .binary_search_by_key(&c.session, |l| l.session)
                .is_ok_and(|i| self.last.get(i) == Some(c))
        }) {
            self.sessions.covered(&covered);
            return Ok(None);
        }
        let number = self.next;
        let bytes = sign_checkpoint(&self.key, number, at_us, &self.prev, covered.clone());
        writer.write(number, &bytes)?;
        self.next = number.saturating_add(1);
        self.prev = hash_of(&bytes);
        self.sessions.covered(&covered);
        self.last = covered;
        Ok(Some(number))
    }
}

/// The checkpoint thread.
#[derive(Debug)]
pub struct CheckpointTask {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<Checkpointer>,
}

/// Starts the thread that writes a checkpoint every `interval`.
pub fn spawn(
    store: Store,
    mut checkpointer: Checkpointer,
    interval: Duration,
) -> std::io::Result<CheckpointTask> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("gatehouse-checkpoint".into())
        .spawn(move || {
            // Logged once per failure streak, not every interval.
            let mut failing = false;
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                // Handles per checkpoint: a recovery after a failure waits
                // for them to be dropped.
                let result = store.reader().and_then(|reader| {
                    let writer = store.checkpoint_writer()?;
                    checkpointer.checkpoint(&reader, &writer, now_us())
                });
                match result {
                    Ok(written) => {
                        if failing {
                            tracing::info!("checkpoints are written again");
                        }
                        failing = false;
                        if let Some(n) = written {
                            tracing::debug!(checkpoint = n, "checkpoint written");
                        }
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!("a checkpoint could not be written: {e}");
                    }
                    Err(_) => {}
                }
            }
            checkpointer
        })?;
    Ok(CheckpointTask { stop, thread })
}

impl CheckpointTask {
    /// Stops the thread (after the checkpoint it may be writing) and hands
    /// back the checkpointer, for the last checkpoint at shutdown. `None`
    /// if the thread panicked.
    pub fn stop(self) -> Option<Checkpointer> {
        let _ = self.stop.send(());
        self.thread.join().ok()
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::event::{
        Body, CloseReason, Closed, Recorder, decode_checkpoint, verify_checkpoint,
    };
    use gatehouse_store::StoreOptions;

    fn closed() -> Body {
        Body::Closed(Closed {
            reason: CloseReason::ClientTerminated,
            bytes_to_upstream: 0,
            bytes_to_client: 0,
            statements: 0,
            duration_us: 0,
            seal: None,
        })
    }

    fn tag() -> Body {
        Body::CommandComplete {
            tag: "SELECT 1".into(),
        }
    }

    #[test]
    fn checkpoints_cover_new_and_open_sessions_and_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let key = Arc::new(SealKey::from_secret_bytes(&[3; 32]));
        let sessions = Arc::new(SessionRegistry::default());
        let mut cp =
            Checkpointer::resume(&store.reader().unwrap(), key.clone(), sessions.clone()).unwrap();
        let w = store.writer();
        let append = |events: Vec<Encoded>| {
            sessions.observe(&events);
            w.append_blocking(events).unwrap();
        };
        let take = |cp: &mut Checkpointer| {
            let reader = store.reader().unwrap();
            let writer = store.checkpoint_writer().unwrap();
            cp.checkpoint(&reader, &writer, 1).unwrap()
        };

        // Nothing yet: no checkpoint.
        assert_eq!(take(&mut cp), None);
        let (a, b) = (SessionId([1; 16]), SessionId([2; 16]));
        let mut ra = Recorder::new(a);
        let mut rb = Recorder::new(b);
        let a_events = vec![ra.record(1, tag()), ra.record(2, closed())];
        append(a_events.clone());
        append(vec![rb.record(1, tag())]);
        assert_eq!(take(&mut cp), Some(0));
        // a closed and covered: gone from the registry; b still open.
        assert_eq!(sessions.len(), 1);
        // The same again: skipped.
        assert_eq!(take(&mut cp), None);
        let b_last = rb.record(2, tag());
        append(vec![b_last.clone()]);
        assert_eq!(take(&mut cp), Some(1));

        let reader = store.reader().unwrap();
        let all: Vec<_> = reader
            .checkpoints()
            .map(|c| decode_checkpoint(&c.unwrap().1).unwrap())
            .collect();
        assert_eq!(all.len(), 2);
        for c in &all {
            assert_eq!(verify_checkpoint(&key.public_key(), c), Ok(()));
        }
        let first = &all[0];
        assert_eq!(first.prev, [0; 32]);
        assert_eq!(
            first.sessions,
            [
                Covered {
                    session: a,
                    events: 2,
                    head: hash_of(&a_events[1].bytes),
                },
                Covered {
                    session: b,
                    events: 1,
                    head: hash_of(&reader.raw_event(b, 0).unwrap().unwrap()),
                },
            ]
        );
        let (_, first_bytes) = reader.checkpoints().next().unwrap().unwrap();
        assert_eq!(all[1].prev, hash_of(&first_bytes));
        assert_eq!(
            all[1].sessions,
            [Covered {
                session: b,
                events: 2,
                head: hash_of(&b_last.bytes),
            }]
        );

        // A restart continues the numbering and the chain.
        let again = Checkpointer::resume(&reader, key, Arc::new(SessionRegistry::default()));
        assert_eq!(again.unwrap().next_number(), 2);
        drop(reader);
        store.shutdown().unwrap();
    }

    #[test]
    fn a_close_that_never_reached_the_store_is_forgotten_after_two_checkpoints() {
        let sessions = SessionRegistry::default();
        let mut rec = Recorder::new(SessionId([9; 16]));
        let first = rec.record(1, tag());
        let close = rec.record(2, closed());
        sessions.observe(&[first, close]);
        let listed = [Covered {
            session: SessionId([9; 16]),
            events: 1,
            head: [0; 32],
        }];
        sessions.covered(&listed);
        assert_eq!(sessions.len(), 1);
        sessions.covered(&listed);
        assert_eq!(sessions.len(), 0);
    }
}
