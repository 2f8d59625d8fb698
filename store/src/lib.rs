//! Gatehouse's append-only event store, on [fjall].
//!
//! The gateway's connection tasks number, hash-chain and encode events
//! ([`gatehouse_core::event::Recorder`]); this crate appends them, keeps a
//! summary per session and a use count per grant, and reads them back for
//! the replay and audit tools.
//!
//! - [`Store::open`] opens (or creates) a store directory and starts the one
//!   writer thread.
//! - [`Writer`] handles, one per connection task, [`append`](Writer::append)
//!   events and learn when they are durable.
//! - [`Reader`] lists [`SessionSummary`]s, scans one session's events, and
//!   reports grant use counts (for single-use grants across restarts).
//! - [`CheckpointWriter`] stores the gateway's signed checkpoints
//!   ([`gatehouse_core::event::Checkpoint`]); [`Reader::checkpoints`] reads
//!   them back.
//! - [`archive`]: [`Reader::export_archive`] writes a time range as a
//!   sealed archive (the file format is
//!   [`gatehouse_core::event::archive`]) and [`archive::import_archive`]
//!   puts one into a fresh directory for a [`Reader`], so the replay and
//!   audit tools read an archive — a file, or one a running gateway
//!   streams from its admin API — exactly as they read a store.
//! - [`Retention`] opens a store no gateway holds to remove old sessions
//!   ([`Retention::prune`], storing the caller's signed prune records
//!   first) and to record what was exported ([`ExportRecord`]);
//!   [`Reader::prunes`] reads the records back for verification.
//!
//! What it is not: it does not number, chain, sign or verify events (the
//! caller and `gatehouse-replay` do; an archive's and a prune record's
//! signature are the caller's too), it never updates or deletes a recorded
//! event — except that [`Retention::prune`] removes whole sessions from a
//! store no gateway holds, after storing the record that names them — and it is
//! not shared between processes — fjall locks the directory, so one
//! process at a time opens it, and other processes read a live store
//! through an archive.
//!
//! # Layout
//!
//! | keyspace | key | value |
//! |---|---|---|
//! | `events` | session id (16 bytes) ‖ seq (u64 BE), i.e. [`event_key`] | the event's rkyv archive, as the caller encoded it |
//! | `events` (a run) | session id ‖ first seq ‖ last seq (u64 BE each) | for each event of the run: its archive's length (u32 LE) ‖ the archive |
//! | `sessions` | session id (16 bytes) | the session's [`SessionSummary`], rkyv-archived |
//! | `grant_uses` | the grant's `jti` (UTF-8) | highest use number recorded, u32 BE |
//! | `revocations` | the revoked grant's `jti` (UTF-8) | when, µs since the Unix epoch, i64 BE |
//! | `checkpoints` | checkpoint number (u64 BE) | the signed checkpoint, as the gateway encoded it ([`gatehouse_core::event::Checkpoint`]) |
//! | `prunes` | prune record number (u64 BE) | the signed prune record naming the sessions a prune removed, as `gatehouse store prune` encoded it ([`gatehouse_core::event::PruneRecord`]) |
//! | `exports` | export number (u64 BE) | what `gatehouse store export` wrote from this store ([`ExportRecord`]: when, range, archive hash, sessions; 64 bytes) |
//! | `index` | tag ‖ len (u32 BE) ‖ value ‖ session start (i64, sign bit flipped, BE) ‖ session id, and for statement tags also ‖ seq (u64 BE) | empty |
//! | `meta` | `event_format`, `store_format`, `index_format` | u32 BE |
//!
//! Session ids are UUIDv7, so `events` and `sessions` are ordered by the
//! time sessions started, and one session's events are one range scan.
//! The events one caller submits together for one session (a statement's
//! frame, statement and verdict) are stored as one run under one key:
//! fjall's cost per insert is many times its cost per byte. Runs sort by
//! their first sequence number and never overlap; a lone event keeps its
//! own key ([`gatehouse_core::event::runs`]).
//! The two format versions in `meta` are the event archive's
//! ([`FORMAT_VERSION`]) and the store's own ([`STORE_FORMAT_VERSION`]: keys,
//! summaries, use counts); a store written with any other is refused.
//! `revocations`, `checkpoints`, `prunes` and `exports` were added
//! without a format change: a store without them gets them, empty, when
//! it is opened.
//!
//! # Secondary indexes
//!
//! The `index` keyspace holds the audit queries' indexes, each under a
//! tag byte: sessions by subject (`s`), target (`t`) and grant `jti`
//! (`j`), from the session's `Opened` (or its `Refused`, if it was never
//! opened); and judged statements — `Verdict` events — by relation (`r`)
//! and by kind (`k`). Relations and kinds are what the recorded verdict
//! says, not a parse of the SQL: a relation is the part after ` on ` of
//! one of its `accesses` (`update on public.invoices`), a kind one of its
//! `kinds` or the operation of an access (the part before ` on `). Every
//! key carries the start of its session, so one value's entries are
//! ordered by time and a range of session starts is one range scan
//! ([`Reader::sessions_by`], [`Reader::statements_by`]).
//!
//! Entries are written in the same atomic batch as the events they index,
//! so after a crash they never disagree with the events. They are a
//! superset: readers re-check summaries and events, so an entry left by a
//! superseded `Opened` or a removed session is harmless. A store written
//! before the indexes existed has no `index_format` in `meta`; opening it
//! builds them once from its summaries and events (logged), as does an
//! archive import (archives do not carry them); no format version
//! changed. A store that an older build wrote to after a newer one
//! indexed it would have incomplete indexes: delete `index_format` from
//! `meta` to have them rebuilt.
//!
//! Checkpoints are written outside the group commit
//! ([`CheckpointWriter`]), once a minute or so, with the store's
//! durability; they go through the same journal as the events, after the
//! events they cover.
//!
//! An archive carries these keys and values exactly as stored, each
//! tagged with its keyspace (not `meta`: its header names both format
//! versions, and an import refuses others); see [`archive`] for which
//! sessions a time range includes.
//!
//! [`event_key`]: gatehouse_core::event::event_key
//! [`FORMAT_VERSION`]: gatehouse_core::event::FORMAT_VERSION
//!
//! # Durability
//!
//! A group of submissions is written as one atomic fjall batch: a crash
//! leaves all of it or none of it, and never a session summary that
//! disagrees with the events.
//!
//! - [`Durability::Fsync`]: a submission is acknowledged only after its
//!   batch is fsynced (`fdatasync` of fjall's journal). Submissions queued
//!   together share one fsync (group commit), so many concurrent sessions
//!   cost one fsync per batch, not one each. Nothing acknowledged is lost,
//!   even on power failure.
//! - [`Durability::Os`]: a submission is acknowledged once its batch is
//!   written to the operating system; the writer fsyncs at most every
//!   `sync_interval`, also when idle. Nothing acknowledged is lost when the
//!   gateway crashes; on power failure or a kernel crash up to about
//!   `sync_interval` of acknowledged events may be lost. When nothing is
//!   queued for the writer thread and no commit is running, a caller
//!   commits its own submission inline, on its own thread (the same batch,
//!   checks and acknowledgement, without a thread hop and two wake-ups per
//!   statement); otherwise it queues, behind everything submitted before
//!   it, so the order of submissions is kept either way.
//!
//! "Audit before forward" is the caller's job: forward a client's command
//! to the target only after [`Writer::append`] of the events that record it
//! returned `Ok`. Records that may lag (responses) can use
//! [`Writer::submit`] and check the [`Ack`] later.
//!
//! # Failure
//!
//! Storage stops at the first failure. If a batch write or an fsync fails
//! (a full disk, a failing device), the writer is poisoned: that batch's
//! submissions and every later one get [`StoreError::Poisoned`], and
//! nothing is acknowledged that might not be on disk.
//!
//! Then it recovers in place, without a restart, once it can: every
//! [`StoreOptions::recovery_interval`] the writer thread checks that the
//! directory takes a write and an fsync again (a probe file), lets go of
//! the failed database, opens it again (which replays fjall's journal and
//! drops a batch torn by the failure) and proves it with an fsynced write.
//! Only then are appends accepted again ([`StoreStats::recoveries`] counts
//! it). Everything acknowledged before the failure is still there;
//! everything refused stays refused — a caller that got a refusal must not
//! go on with that session's chain (the gateway ends such sessions).
//! [`Reader`]s taken from the store hold the failed database open, so
//! recovery waits until they are dropped.
//!
//! After a failed *fsync* the kernel may already have dropped the pages it
//! could not write (and report the next fsync as a success). In `Fsync`
//! mode nothing acknowledged depended on them; in `Os` mode events
//! acknowledged but not yet synced may be lost, as on a power failure.
//!
//! [fjall]: https://docs.rs/fjall/3
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

pub mod archive;
mod checkpoints;
mod commit;
mod error;
mod index;
mod keys;
mod read;
mod retention;
mod runs;
mod summary;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use checkpoints::CheckpointWriter;
pub use error::StoreError;
pub use index::{SessionIndex, StatementIndex};
pub use keys::STORE_FORMAT_VERSION;
pub use read::{Checkpoints, Events, RawEvent, RawEvents, Reader, Sessions};
pub use retention::{ExportRecord, PRUNE_BATCH, Pruned, Retention};
pub use summary::SessionSummary;
pub use writer::{Ack, StoreStats, Writer};

use commit::Committer;
use keys::Db;
use writer::Shared;

/// When an append is acknowledged. See the [crate docs](crate#durability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after fsync; batches share one fsync.
    Fsync,
    /// Acknowledge after the write reaches the operating system; fsync at
    /// most every `sync_interval`.
    Os {
        /// The longest that acknowledged events stay unsynced.
        sync_interval: Duration,
    },
}

/// How a [`Store`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Submissions (calls to [`Writer::append`] or [`Writer::submit`]) that
    /// may wait in the queue; when it is full, writers wait.
    pub queue_capacity: usize,
    /// Events gathered into one batch at most (a single larger submission
    /// still goes in whole).
    pub max_batch: usize,
    /// After a failed write or fsync, how often the writer tries to
    /// recover in place (see [Failure](crate#failure)).
    pub recovery_interval: Duration,
}

impl Default for StoreOptions {
    /// fsync durability, 1024 queued submissions, batches of up to 4096
    /// events, a recovery attempt every second after a failure.
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Fsync,
            queue_capacity: 1024,
            max_batch: 4096,
            recovery_interval: Duration::from_secs(1),
        }
    }
}

impl StoreOptions {
    /// Checks the options.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.queue_capacity == 0 {
            return Err(StoreError::InvalidOption(
                "queue_capacity must be at least 1",
            ));
        }
        if self.max_batch == 0 {
            return Err(StoreError::InvalidOption("max_batch must be at least 1"));
        }
        if self.recovery_interval.is_zero() {
            return Err(StoreError::InvalidOption(
                "recovery_interval must be positive",
            ));
        }
        if let Durability::Os { sync_interval } = self.durability
            && sync_interval.is_zero()
        {
            return Err(StoreError::InvalidOption(
                "sync_interval must be positive (use Durability::Fsync to sync every batch)",
            ));
        }
        Ok(())
    }
}

/// An open store: the database and its writer thread. Cheap to clone.
///
/// The directory stays locked until the store is shut down (or its last
/// handle dropped) *and* every [`Reader`] from it is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    path: PathBuf,
    durability: Durability,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<Result<(), StoreError>>>>,
}

impl Store {
    /// Opens the store in `dir`, creating it if absent, and starts the
    /// writer thread (`gatehouse-store`).
    ///
    /// Fails with [`StoreError::Locked`] when another process (or another
    /// open store in this one) holds the directory, and with
    /// [`StoreError::UnknownFormat`] when it was written in another format.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        opts.validate()?;
        let db = Arc::new(Db::open(dir, true)?);
        let path = db.path.clone();
        let (tx, rx) = flume::bounded(opts.queue_capacity);
        let shared = Arc::new(Shared::new(tx, db));
        let committer = Committer::new(path.clone(), rx, shared.clone(), opts);
        let thread = std::thread::Builder::new()
            .name("gatehouse-store".into())
            .spawn(move || committer.run())
            .map_err(|source| StoreError::Io {
                path: dir.into(),
                source,
            })?;
        tracing::debug!(path = %dir.display(), ?opts, "store opened");
        Ok(Store {
            inner: Arc::new(StoreInner {
                path,
                durability: opts.durability,
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// A handle for appending events.
    pub fn writer(&self) -> Writer {
        Writer::new(self.inner.shared.clone())
    }

    /// A handle for reading, sharing this store's database.
    ///
    /// Fails only while the store is recovering from a failure and could
    /// not reopen its database yet. A reader holds the database it was
    /// made from: keep it for a task, not for the gateway's lifetime, or a
    /// recovery waits for it.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Ok(Reader::new(self.inner.shared.db()?))
    }

    /// A handle for writing checkpoints, sharing this store's database
    /// (see [`CheckpointWriter`]: it outlives [`shutdown`](Self::shutdown),
    /// and a recovery waits for it). Fails while the store is recovering
    /// from a failure.
    pub fn checkpoint_writer(&self) -> Result<CheckpointWriter, StoreError> {
        Ok(CheckpointWriter::new(
            self.inner.shared.db()?,
            self.inner.shared.clone(),
            self.inner.durability,
        ))
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `Ok` while the store accepts appends; otherwise why not
    /// ([`StoreError::Poisoned`] or [`StoreError::Closed`]). For readiness
    /// checks: a gateway whose store fails must refuse new commands.
    pub fn health(&self) -> Result<(), StoreError> {
        self.inner.shared.health()
    }

    /// What the writer thread has done since the store was opened.
    pub fn stats(&self) -> StoreStats {
        self.inner.shared.counters.snapshot()
    }

    /// Stops accepting appends, through every clone of this store and
    /// every [`Writer`] (later ones get [`StoreError::Closed`]),
    /// writes everything already queued, fsyncs, and joins the writer
    /// thread. Blocks; from async code call it on a blocking thread.
    ///
    /// Returns the poison error if a write or fsync failed at any point, so
    /// a clean `Ok` means everything acknowledged is on disk.
    pub fn shutdown(self) -> Result<(), StoreError> {
        self.inner.stop()
    }
}

impl StoreInner {
    fn stop(&self) -> Result<(), StoreError> {
        self.shared.close();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        match thread.map(JoinHandle::join) {
            None => self.shared.poisoned().map_or(Ok(()), Err),
            Some(Ok(result)) => result,
            Some(Err(_panic)) => Err(StoreError::Poisoned {
                cause: Arc::from("the store writer thread panicked"),
            }),
        }
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        let running = self
            .thread
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !running {
            return;
        }
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "store closed with an error");
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::sync::atomic::Ordering;

    use gatehouse_core::event::{Body, Recorder, SessionId};

    use super::*;

    fn tag(n: u64) -> Body {
        Body::CommandComplete {
            tag: format!("SELECT {n}"),
        }
    }

    /// Connection tasks are spawned on multi-threaded runtimes too.
    #[test]
    fn handles_and_futures_are_send() {
        fn send<T: Send>(_: &T) {}
        fn sync<T: Send + Sync + Clone>() {}
        sync::<Store>();
        sync::<Writer>();
        sync::<Reader>();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let w = store.writer();
        send(&w.append(Vec::new()));
        send(&w.submit(Vec::new()));
        send(&w.submit_blocking(Vec::new()).unwrap());
        store.shutdown().unwrap();
    }

    #[test]
    fn a_failed_write_poisons_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        // No recovery during the test (see `commit::recover` for that).
        let opts = StoreOptions {
            recovery_interval: Duration::from_secs(3600),
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), opts).unwrap();
        let w = store.writer();
        let mut rec = Recorder::new(SessionId([1; 16]));
        w.append_blocking(vec![rec.record(0, tag(0))]).unwrap();
        assert!(store.health().is_ok());

        store
            .inner
            .shared
            .fail_next_write
            .store(true, Ordering::Relaxed);
        let err = w.append_blocking(vec![rec.record(1, tag(1))]).unwrap_err();
        assert!(
            matches!(&err, StoreError::Poisoned { cause } if cause.contains("injected")),
            "{err:?}"
        );
        // Everything later is refused up front, with the first cause, and
        // nothing pretends success.
        let err = w.append_blocking(vec![rec.record(2, tag(2))]).unwrap_err();
        assert!(
            matches!(&err, StoreError::Poisoned { cause } if cause.contains("injected")),
            "{err:?}"
        );
        assert!(matches!(store.health(), Err(StoreError::Poisoned { .. })));
        assert_eq!(store.stats().submissions, 1);
        assert_eq!(
            store
                .reader()
                .unwrap()
                .session(SessionId([1; 16]))
                .unwrap()
                .unwrap()
                .events,
            1
        );
        assert!(matches!(store.shutdown(), Err(StoreError::Poisoned { .. })));
    }

    #[test]
    fn stats_count_batches_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let w = store.writer();
        let mut rec = Recorder::new(SessionId([2; 16]));
        let first = rec.record(0, tag(0));
        w.append_blocking(vec![first.clone(), rec.record(1, tag(1))])
            .unwrap();
        assert!(w.append_blocking(vec![first]).is_err());
        let stats = store.stats();
        assert_eq!(
            (
                stats.submissions,
                stats.events,
                stats.batches,
                stats.syncs,
                stats.refused
            ),
            (1, 2, 1, 1, 1)
        );
        store.shutdown().unwrap();
    }
}
