//! Recovering in place after a failed write or fsync.
//!
//! fjall poisons its database at the first failed journal write or fsync,
//! and a batch that failed half-way may have left a torn entry at the end
//! of the journal, so the old handle must not be written to again. What
//! can be done without a restart is what a restart does: let go of the
//! database and open it again, which replays the journal and truncates a
//! torn tail. The writer thread tries that every recovery interval while
//! the store is poisoned:
//!
//! 1. a probe file of [`PROBE_BYTES`] must be writable and syncable in the
//!    store's directory (cheap: a full disk is told apart without
//!    replaying the journal every interval);
//! 2. the failed database is dropped, once no [`Reader`](crate::Reader)
//!    holds it any more (fjall allows one open handle per directory);
//! 3. it is opened again, and a write with an fsync must succeed on it;
//! 4. only then is the failure forgotten: later submissions are accepted.
//!
//! Everything acknowledged before the failure was on disk (or, in `Os`
//! mode, written to the operating system) and is there after reopening.
//! Submissions refused because of the failure stay refused; sessions that
//! saw a refusal have ended (the gateway ends them), so their chains end
//! where the store last acknowledged them.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::commit::CommitState;
use crate::keys::Db;
use crate::writer::Counters;

/// The size of the probe file: enough room for a few batches.
const PROBE_BYTES: usize = 1 << 20;
/// The probe file's name in the store directory.
const PROBE_FILE: &str = "gatehouse-space-probe";

impl CommitState {
    /// Tries once to recover from the failure the store is poisoned with,
    /// if it happened at least `interval` ago. `true` when it did (or there
    /// was nothing to recover from).
    pub(crate) fn recover(&mut self, interval: Duration) -> bool {
        let Some(failed_at) = self.shared.poisoned_at() else {
            return true;
        };
        if failed_at.elapsed() < interval {
            return false;
        }
        if let Err(e) = probe_space(&self.path) {
            tracing::debug!(error = %e, "store still cannot write; will retry");
            return false;
        }
        {
            let mut slot = self.shared.db_slot();
            if let Some(old) = slot.take() {
                match Arc::try_unwrap(old) {
                    Ok(db) => drop(db),
                    Err(old) => {
                        *slot = Some(old);
                        tracing::warn!(
                            "the store could recover but a reader still holds it; will retry"
                        );
                        return false;
                    }
                }
            }
        }
        let db = match Db::open(&self.path, false).and_then(|db| db.probe().map(|()| db)) {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!(error = %e, "reopening the store failed; will retry");
                return false;
            }
        };
        *self.shared.db_slot() = Some(Arc::new(db));
        // Summaries cached before the failure may include events of the
        // batch that failed: read them again from what is on disk.
        self.open.clear();
        self.unsynced = false;
        self.last_sync = Instant::now();
        let failure = self.shared.refusal();
        self.shared.unpoison();
        Counters::add(&self.shared.counters.recoveries, 1);
        tracing::warn!(%failure, "store recovered: appends are accepted again");
        true
    }
}

/// Writes, syncs and removes a probe file in `dir`.
fn probe_space(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&[0; PROBE_BYTES])?;
        file.sync_data()
    });
    let removed = std::fs::remove_file(&path);
    written.and(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use gatehouse_core::event::{Body, Recorder, SessionId};

    use crate::{Durability, Store, StoreError, StoreOptions};

    const INTERVAL: Duration = Duration::from_millis(20);

    fn open(dir: &std::path::Path, durability: Durability) -> Store {
        let opts = StoreOptions {
            durability,
            recovery_interval: INTERVAL,
            ..StoreOptions::default()
        };
        Store::open(dir, opts).unwrap()
    }

    fn tag(n: u64) -> Body {
        Body::CommandComplete {
            tag: format!("SELECT {n}"),
        }
    }

    fn fail_next_write(store: &Store) {
        let shared = &store.inner.shared;
        shared.fail_next_write.store(true, Ordering::Relaxed);
    }

    /// Polls until the store accepts appends again; panics after 10 s.
    fn wait_healthy(store: &Store) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.health().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the store did not recover: {:?}",
                store.health()
            );
            std::thread::sleep(INTERVAL / 4);
        }
    }

    fn events(store: &Store, id: SessionId) -> u64 {
        store.reader().unwrap().session(id).unwrap().unwrap().events
    }

    #[test]
    fn a_failed_store_recovers_in_place_and_keeps_what_it_acknowledged() {
        let modes = [
            Durability::Fsync,
            Durability::Os {
                sync_interval: Duration::from_millis(10),
            },
        ];
        for durability in modes {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path(), durability);
            let w = store.writer();
            let (a, b) = (SessionId([0xa; 16]), SessionId([0xb; 16]));
            let mut broken = Recorder::new(a);
            w.append_blocking(vec![broken.record(0, tag(0))]).unwrap();

            fail_next_write(&store);
            let err = w.append_blocking(vec![broken.record(1, tag(1))]);
            assert!(matches!(err, Err(StoreError::Poisoned { .. })), "{err:?}");
            wait_healthy(&store);
            assert_eq!(store.stats().recoveries, 1, "{durability:?}");

            // The refused event never landed, so the session's chain cannot
            // go on past it; a new session records as before.
            let err = w.append_blocking(vec![broken.record(2, tag(2))]);
            assert!(
                matches!(err, Err(StoreError::OutOfSequence { got: 2, .. })),
                "{err:?}"
            );
            let mut fresh = Recorder::new(b);
            let batch = vec![fresh.record(3, tag(3)), fresh.record(4, tag(4))];
            w.append_blocking(batch).unwrap();
            assert_eq!((events(&store, a), events(&store, b)), (1, 2));

            store.shutdown().unwrap();
            let store = open(dir.path(), durability);
            assert_eq!((events(&store, a), events(&store, b)), (1, 2));
            store.shutdown().unwrap();
        }
    }

    #[test]
    fn a_failed_periodic_fsync_poisons_and_the_store_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::Os {
            sync_interval: Duration::from_millis(5),
        };
        let store = open(dir.path(), durability);
        let w = store.writer();
        let id = SessionId([0xd; 16]);
        let mut rec = Recorder::new(id);
        w.append_blocking(vec![rec.record(0, tag(0))]).unwrap();
        let shared = &store.inner.shared;
        shared.fail_next_sync.store(true, Ordering::Relaxed);
        // An append makes the next periodic sync due; it fails.
        let _ = w.append_blocking(vec![rec.record(1, tag(1))]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !matches!(store.health(), Err(StoreError::Poisoned { ref cause }) if cause.contains("fsync"))
        {
            assert!(std::time::Instant::now() < deadline, "{:?}", store.health());
            std::thread::sleep(Duration::from_millis(2));
        }
        // Nothing is accepted until the store has recovered, then it goes on.
        assert!(w.append_blocking(vec![rec.record(2, tag(2))]).is_err());
        wait_healthy(&store);
        assert_eq!(store.stats().recoveries, 1);
        let mut fresh = Recorder::new(SessionId([0xe; 16]));
        w.append_blocking(vec![fresh.record(3, tag(3))]).unwrap();
        // Both acknowledged events of the first session are still there.
        assert_eq!(events(&store, id), 2);
        store.shutdown().unwrap();
    }

    #[test]
    fn recovery_waits_until_no_reader_holds_the_failed_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), Durability::Fsync);
        let w = store.writer();
        let mut rec = Recorder::new(SessionId([0xc; 16]));
        w.append_blocking(vec![rec.record(0, tag(0))]).unwrap();
        let reader = store.reader().unwrap();

        fail_next_write(&store);
        assert!(w.append_blocking(vec![rec.record(1, tag(1))]).is_err());
        // Ten recovery intervals with the reader held: every attempt finds
        // the failed database still in use.
        std::thread::sleep(INTERVAL * 10);
        assert!(store.health().is_err());
        assert_eq!(store.stats().recoveries, 0);
        // The reader still reads what was acknowledged.
        assert_eq!(
            reader
                .session(SessionId([0xc; 16]))
                .unwrap()
                .unwrap()
                .events,
            1
        );

        drop(reader);
        wait_healthy(&store);
        assert_eq!(store.stats().recoveries, 1);
        store.shutdown().unwrap();
    }
}
