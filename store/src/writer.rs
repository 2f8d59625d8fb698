//! The append path: [`Writer`] handles submit events to one writer thread,
//! which group-commits them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use gatehouse_core::event::{Encoded, SessionId};
use tokio::sync::oneshot;

use crate::StoreError;
use crate::commit::CommitState;
use crate::keys::Db;
use crate::runs;
use crate::summary::{Fact, inspect};

/// A batch of one caller's events and where to report the outcome.
pub(crate) struct Submission {
    pub(crate) events: Vec<Prepared>,
    /// The `events` keyspace's entries holding them ([`runs::entries`]):
    /// built into fjall's buffers on the submitting thread, so that the one
    /// writer thread moves them into its batch instead of copying (and the
    /// caller's buffers are freed where they were allocated).
    pub(crate) entries: Vec<runs::Entry>,
    pub(crate) ack: oneshot::Sender<Result<(), StoreError>>,
}

/// What the writer needs to know of one checked event.
pub(crate) struct Prepared {
    pub(crate) session: SessionId,
    pub(crate) seq: u64,
    pub(crate) at_us: i64,
    /// What it contributes to its session's summary.
    pub(crate) fact: Fact,
}

impl Prepared {
    /// Checks `enc` ([`inspect`]).
    fn new(enc: &Encoded) -> Result<Self, StoreError> {
        Ok(Prepared {
            fact: inspect(enc)?,
            session: enc.session,
            seq: enc.seq,
            at_us: enc.at_us,
        })
    }
}

/// State shared by the [`Store`](crate::Store), its writers and the writer
/// thread.
pub(crate) struct Shared {
    /// The only long-lived sender. Writers clone it for the duration of one
    /// send; taking it out closes the channel once in-flight sends finish.
    tx: RwLock<Option<flume::Sender<Submission>>>,
    /// The open database. Empty only while the writer reopens it after a
    /// failure (and for as long as reopening fails).
    db: RwLock<Option<Arc<Db>>>,
    /// The first write or fsync failure since the store was opened or last
    /// recovered.
    poison: Poison,
    /// What the writer thread has done.
    pub(crate) counters: Counters,
    /// Submissions queued for the writer thread and not committed yet.
    pub(crate) pending: AtomicUsize,
    /// In `Os` mode, the commit state callers may commit inline with. Weak:
    /// the writer thread owns it (and with it the database), so it goes
    /// when the thread ends.
    inline: OnceLock<Weak<Mutex<CommitState>>>,
    /// Test hook: the next batch write fails as if the disk had.
    #[cfg(test)]
    pub(crate) fail_next_write: std::sync::atomic::AtomicBool,
    /// Test hook: the next periodic sync (`Os` mode) fails.
    #[cfg(test)]
    pub(crate) fail_next_sync: std::sync::atomic::AtomicBool,
}

/// The writer thread's counters; see [`StoreStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) submissions: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) syncs: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) inline: AtomicU64,
    pub(crate) recoveries: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StoreStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreStats {
            submissions: get(&self.submissions),
            events: get(&self.events),
            batches: get(&self.batches),
            syncs: get(&self.syncs),
            refused: get(&self.refused),
            inline: get(&self.inline),
            recoveries: get(&self.recoveries),
        }
    }
}

/// Counters of the writer thread since the store was opened, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Submissions written and acknowledged.
    pub submissions: u64,
    /// Events written.
    pub events: u64,
    /// Atomic batches committed; `submissions / batches` is the group
    /// commit's sharing factor.
    pub batches: u64,
    /// fsyncs: one per batch with [`Durability::Fsync`], periodic with
    /// [`Durability::Os`].
    ///
    /// [`Durability::Fsync`]: crate::Durability::Fsync
    /// [`Durability::Os`]: crate::Durability::Os
    pub syncs: u64,
    /// Submissions refused as invalid or out of sequence.
    pub refused: u64,
    /// Submissions handled inline on the caller's thread (`Os` mode)
    /// rather than by the writer thread; also counted in `submissions` (or
    /// `refused`).
    pub inline: u64,
    /// Times the store recovered in place after a failed write or fsync
    /// (see the [crate docs](crate#failure)).
    pub recoveries: u64,
}

/// The first failure, until the writer recovers from it.
#[derive(Default)]
struct Poison {
    /// Whether `cause` is set: the hot path's check, without the mutex.
    set: AtomicBool,
    /// The failure and when it happened.
    cause: Mutex<Option<(Arc<str>, Instant)>>,
}

impl Poison {
    fn cause(&self) -> std::sync::MutexGuard<'_, Option<(Arc<str>, Instant)>> {
        self.cause.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shared {
    pub(crate) fn new(tx: flume::Sender<Submission>, db: Arc<Db>) -> Self {
        Shared {
            tx: RwLock::new(Some(tx)),
            db: RwLock::new(Some(db)),
            poison: Poison::default(),
            counters: Counters::default(),
            pending: AtomicUsize::new(0),
            inline: OnceLock::new(),
            #[cfg(test)]
            fail_next_write: Default::default(),
            #[cfg(test)]
            fail_next_sync: Default::default(),
        }
    }

    /// Lets callers commit inline with `state` (`Os` mode).
    pub(crate) fn allow_inline(&self, state: &Arc<Mutex<CommitState>>) {
        let _ = self.inline.set(Arc::downgrade(state));
    }

    /// Commits `s` on the calling thread if that keeps the order of
    /// submissions: nothing is queued for the writer thread (so nothing
    /// submitted before `s` is still uncommitted) and the commit state is
    /// free right now. Otherwise hands `s` back, to be queued.
    fn try_inline(&self, s: Submission) -> Result<(), Submission> {
        let Some(state) = self.inline.get().and_then(Weak::upgrade) else {
            return Err(s);
        };
        if self.pending.load(Ordering::Acquire) != 0 || self.health().is_err() {
            // Queued work first; a closed or poisoned store refuses on the
            // queue path.
            return Err(s);
        }
        let Ok(mut state) = state.try_lock() else {
            return Err(s);
        };
        if state.closed || self.pending.load(Ordering::Acquire) != 0 {
            return Err(s);
        }
        state.commit(vec![s], false);
        Counters::add(&self.counters.inline, 1);
        Ok(())
    }

    /// Queues `s` for the writer thread, counted in `pending` until it is
    /// committed.
    async fn enqueue(&self, s: Submission) -> Result<(), StoreError> {
        let tx = self.sender()?;
        self.pending.fetch_add(1, Ordering::AcqRel);
        tx.send_async(s).await.map_err(|_| {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.gone()
        })
    }

    /// [`enqueue`](Self::enqueue), blocking.
    fn enqueue_blocking(&self, s: Submission) -> Result<(), StoreError> {
        let tx = self.sender()?;
        self.pending.fetch_add(1, Ordering::AcqRel);
        tx.send(s).map_err(|_| {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.gone()
        })
    }

    /// Stops accepting submissions. The writer thread drains what is queued
    /// and stops when the last in-flight send is done.
    pub(crate) fn close(&self) {
        let mut tx = self.tx.write().unwrap_or_else(|e| e.into_inner());
        tx.take();
    }

    /// Records the first failure; later failures keep the first cause.
    pub(crate) fn poison(&self, cause: String) -> Arc<str> {
        let mut first = self.poison.cause();
        let (cause, _) = first.get_or_insert_with(|| (Arc::from(cause), Instant::now()));
        let cause = cause.clone();
        self.poison.set.store(true, Ordering::Release);
        cause
    }

    /// The poison error, if the writer is poisoned.
    pub(crate) fn poisoned(&self) -> Option<StoreError> {
        if !self.poison.set.load(Ordering::Acquire) {
            return None;
        }
        let (cause, _) = self.poison.cause().clone()?;
        Some(StoreError::Poisoned { cause })
    }

    /// When the writer was poisoned, if it is.
    pub(crate) fn poisoned_at(&self) -> Option<Instant> {
        if !self.poison.set.load(Ordering::Acquire) {
            return None;
        }
        self.poison.cause().as_ref().map(|(_, at)| *at)
    }

    /// Forgets the failure once the writer has recovered from it.
    pub(crate) fn unpoison(&self) {
        let mut cause = self.poison.cause();
        self.poison.set.store(false, Ordering::Release);
        cause.take();
    }

    /// The open database.
    pub(crate) fn db(&self) -> Result<Arc<Db>, StoreError> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner()).clone();
        db.ok_or_else(|| self.refusal())
    }

    /// Why nothing can be written now: the failure, the store's shutdown,
    /// or (briefly, while a recovery reopens it) that the database is
    /// being reopened.
    pub(crate) fn refusal(&self) -> StoreError {
        if let Some(e) = self.poisoned() {
            return e;
        }
        if self.tx.read().unwrap_or_else(|e| e.into_inner()).is_none() {
            return StoreError::Closed;
        }
        StoreError::Poisoned {
            cause: Arc::from("the store is being reopened after a failure"),
        }
    }

    /// The database slot, for the writer's recovery.
    pub(crate) fn db_slot(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<Db>>> {
        self.db.write().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` while submissions are accepted.
    pub(crate) fn health(&self) -> Result<(), StoreError> {
        if let Some(e) = self.poisoned() {
            return Err(e);
        }
        let closed = self.tx.read().unwrap_or_else(|e| e.into_inner()).is_none();
        if closed {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    fn sender(&self) -> Result<flume::Sender<Submission>, StoreError> {
        if let Some(e) = self.poisoned() {
            return Err(e);
        }
        let tx = self.tx.read().unwrap_or_else(|e| e.into_inner());
        tx.clone().ok_or(StoreError::Closed)
    }

    /// The error for a send that found no receiver.
    fn gone(&self) -> StoreError {
        if let Some(e) = self.poisoned() {
            return e;
        }
        let closed = self.tx.read().unwrap_or_else(|e| e.into_inner()).is_none();
        if closed {
            StoreError::Closed
        } else {
            StoreError::Poisoned {
                cause: writer_died(),
            }
        }
    }
}

fn writer_died() -> Arc<str> {
    Arc::from("the store writer thread stopped unexpectedly")
}

/// A handle for appending events. Cheap to clone; one per connection task is
/// the intended use.
///
/// Every method validates the events on the calling thread (each must be a
/// valid archive whose key, session, sequence number and kind match its
/// [`Encoded`] fields), then queues them for the writer thread. The queue is
/// bounded: when it is full, callers wait (backpressure). Events of one call
/// are written in one atomic batch, in order, and acknowledged together.
///
/// The writer refuses, per call, events that do not continue their session:
/// the first event of a session must have `seq == 0`, each next one the next
/// number, and nothing may follow a `Closed` event. Nothing recorded is ever
/// overwritten.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

impl Writer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Writer { shared }
    }

    /// Appends `events` and waits until they are durable as the store's
    /// [`Durability`](crate::Durability) defines it.
    ///
    /// This is the call for "audit before forward": forward a command only
    /// after this returned `Ok`. If the future is dropped after the events
    /// were queued, they are still written.
    pub async fn append(&self, events: Vec<Encoded>) -> Result<(), StoreError> {
        self.submit(events).await?.await
    }

    /// [`append`](Self::append) for threads outside an async runtime.
    /// Must not be called from within one (it blocks).
    pub fn append_blocking(&self, events: Vec<Encoded>) -> Result<(), StoreError> {
        self.submit_blocking(events)?.wait_blocking()
    }

    /// Queues `events` (waiting for queue space) and returns without
    /// waiting for the write. The [`Ack`] reports the outcome; await it
    /// later or drop it. For records that may lag, such as responses.
    pub async fn submit(&self, events: Vec<Encoded>) -> Result<Ack, StoreError> {
        let Some((submission, ack)) = self.prepare(events)? else {
            return Ok(Ack::done());
        };
        if let Err(submission) = self.shared.try_inline(submission) {
            self.shared.enqueue(submission).await?;
        }
        Ok(ack)
    }

    /// [`submit`](Self::submit) for threads outside an async runtime.
    pub fn submit_blocking(&self, events: Vec<Encoded>) -> Result<Ack, StoreError> {
        let Some((submission, ack)) = self.prepare(events)? else {
            return Ok(Ack::done());
        };
        if let Err(submission) = self.shared.try_inline(submission) {
            self.shared.enqueue_blocking(submission)?;
        }
        Ok(ack)
    }

    /// Validates and inspects the events; `None` when there are none.
    fn prepare(&self, events: Vec<Encoded>) -> Result<Option<(Submission, Ack)>, StoreError> {
        if let Some(e) = self.shared.poisoned() {
            return Err(e);
        }
        if events.is_empty() {
            return Ok(None);
        }
        let prepared = events
            .iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>, _>>()?;
        let entries = runs::entries(&events);
        let (tx, rx) = oneshot::channel();
        Ok(Some((
            Submission {
                events: prepared,
                entries,
                ack: tx,
            },
            Ack(AckInner::Pending(rx)),
        )))
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("poisoned", &self.shared.poisoned())
            .finish_non_exhaustive()
    }
}

/// The outcome of a [`Writer::submit`]: resolves to `Ok(())` once the
/// events are durable per the store's durability mode, or to the error that
/// kept them out. Dropping it does not cancel the write.
#[must_use = "an Ack says whether the events were recorded; drop it explicitly to ignore that"]
#[derive(Debug)]
pub struct Ack(AckInner);

#[derive(Debug)]
enum AckInner {
    Pending(oneshot::Receiver<Result<(), StoreError>>),
    Done,
}

impl Ack {
    fn done() -> Self {
        Ack(AckInner::Done)
    }

    /// Waits for the outcome on a thread outside an async runtime.
    pub fn wait_blocking(self) -> Result<(), StoreError> {
        match self.0 {
            AckInner::Pending(rx) => rx.blocking_recv().unwrap_or_else(|_| {
                Err(StoreError::Poisoned {
                    cause: writer_died(),
                })
            }),
            AckInner::Done => Ok(()),
        }
    }
}

impl Future for Ack {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            AckInner::Pending(rx) => Pin::new(rx).poll(cx).map(|r| {
                r.unwrap_or_else(|_| {
                    Err(StoreError::Poisoned {
                        cause: writer_died(),
                    })
                })
            }),
            AckInner::Done => Poll::Ready(Ok(())),
        }
    }
}
