//! The worker's ring and the operations in flight on it.
//!
//! One ring per worker thread, kept in a thread-local so that the
//! connection types built on it stay `Send` (the tokio engine's session
//! code is shared, and spawns `Send` futures) while every use is checked
//! against the ring it was started on. The worker's current-thread tokio
//! runtime runs the [`Pump`]: it submits what operations queued since its
//! last turn (one `io_uring_enter` for all of them) and hands completions
//! to the operations' wakers; the runtime sleeps in epoll on the ring's fd.
//!
//! Each operation has a slot that owns what the kernel may still touch
//! ([`Keep`]: the bytes being sent, the address being connected to). When
//! its owner goes away before the last completion, the slot is abandoned,
//! not freed: it lives, with its memory, until the kernel is done, and the
//! receive buffers such late completions carry go back to the buffer ring.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use super::bufring::BufRing;

/// `user_data` of entries whose completions nobody waits for (link
/// timeouts, cancel requests).
const UNWATCHED: u64 = u64::MAX;

/// An operation started on one worker's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId {
    key: u32,
    generation: u32,
    driver: u64,
}

impl OpId {
    fn user_data(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.key)
    }
}

/// One completion of an operation.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    /// The result: a count, or a negated errno.
    pub result: i32,
    /// `IORING_CQE_F_*`.
    pub flags: u32,
}

impl Completion {
    /// The result as an `io::Result`.
    pub fn io(self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }

    /// The provided buffer this completion filled, if any.
    pub fn buffer(self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// Memory an operation lends the kernel until its last completion.
pub enum Keep {
    /// Nothing.
    Nothing,
    /// Bytes being sent.
    Bytes(#[allow(dead_code)] Bytes),
    /// An address being connected to, and the connect's timeout.
    Connect(#[allow(dead_code)] Box<(socket2::SockAddr, io_uring::types::Timespec)>),
    /// A timeout's duration.
    Timespec(#[allow(dead_code)] Box<io_uring::types::Timespec>),
}

struct Slot {
    generation: u32,
    waker: Option<Waker>,
    completions: VecDeque<Completion>,
    /// The last completion (one without `IORING_CQE_F_MORE`) arrived.
    finished: bool,
    /// Its owner is gone; freed at the last completion.
    abandoned: bool,
    keep: Keep,
}

/// The ring of one worker thread.
pub struct Driver {
    id: u64,
    // Field order is drop order: the ring goes before the buffers it used.
    ring: IoUring,
    bufs: Option<BufRing>,
    slots: Slab<Slot>,
    next_generation: u32,
    /// Streams waiting for receive buffers to come back.
    buf_waiters: Vec<Waker>,
    /// Wakes the pump when entries are queued.
    queued: Arc<Notify>,
}

thread_local! {
    static DRIVER: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

static NEXT_DRIVER: AtomicU64 = AtomicU64::new(1);

/// What a worker needs to set up its ring.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Submission queue entries.
    pub entries: u32,
    /// Receive buffers (a power of two).
    pub buffers: u16,
    /// Bytes per receive buffer.
    pub buffer_size: usize,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            entries: 1024,
            buffers: 512,
            buffer_size: 16 * 1024,
        }
    }
}

/// Creates this thread's ring; returns the pump to spawn on the thread's
/// runtime (inside it: the pump registers the ring's fd with tokio).
pub fn install(config: RingConfig) -> io::Result<Pump> {
    let ring = IoUring::builder()
        .setup_cqsize(config.entries * 4)
        .setup_submit_all()
        .build(config.entries)?;
    let bufs = BufRing::register(&ring, config.buffers, config.buffer_size)?;
    let id = NEXT_DRIVER.fetch_add(1, Ordering::Relaxed);
    let queued = Arc::new(Notify::new());
    // SAFETY: the ring's fd is open for as long as `ring`, which outlives
    // this borrow; the clone is a new fd the pump owns.
    let watched = unsafe { BorrowedFd::borrow_raw(ring.as_raw_fd()) }.try_clone_to_owned()?;
    // SAFETY: `watched` is an open fd owned by the `AsyncFd` for its whole
    // life, and `as_raw_fd` always returns it.
    let fd = unsafe { AsyncFd::register_with_interest(watched, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    DRIVER.with(|d| {
        *d.borrow_mut() = Some(Driver {
            id,
            ring,
            bufs: Some(bufs),
            slots: Slab::new(),
            next_generation: 0,
            buf_waiters: Vec::new(),
            queued: queued.clone(),
        })
    });
    Ok(Pump { id, fd, queued })
}

/// The id of this thread's ring, if it has one.
pub fn current() -> Option<u64> {
    DRIVER.with(|d| d.borrow().as_ref().map(|d| d.id))
}

/// Operations this thread's ring holds a slot for (in flight or abandoned
/// and not yet completed).
#[cfg(test)]
pub fn slots_in_use() -> usize {
    DRIVER.with(|d| d.borrow().as_ref().map_or(0, |d| d.slots.len()))
}

/// Runs `f` on ring `id`, which must be this thread's.
pub fn with<R>(id: u64, f: impl FnOnce(&mut Driver) -> R) -> io::Result<R> {
    DRIVER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => match d.as_mut() {
            Some(d) if d.id == id => Ok(f(d)),
            _ => Err(io::Error::other(
                "an io_uring operation was used outside the worker that started it",
            )),
        },
        Err(_) => Err(io::Error::other("the io_uring driver is busy (re-entered)")),
    })
}

impl Driver {
    /// Starts an operation; `keep` stays alive until its last completion.
    pub fn start(&mut self, entry: squeue::Entry, keep: Keep) -> io::Result<OpId> {
        let op = self.slot(keep);
        if let Err(e) = self.push(&[entry.user_data(op.user_data())]) {
            self.slots.remove(op.key as usize);
            return Err(e);
        }
        Ok(op)
    }

    /// Starts `entry` linked to a timeout: it fails with `ECANCELED` if
    /// it has not completed when `timeout` fires.
    pub fn start_with_timeout(
        &mut self,
        entry: squeue::Entry,
        timeout: *const io_uring::types::Timespec,
        keep: Keep,
    ) -> io::Result<OpId> {
        let op = self.slot(keep);
        let linked = [
            entry
                .user_data(op.user_data())
                .flags(squeue::Flags::IO_LINK),
            opcode::LinkTimeout::new(timeout)
                .build()
                .user_data(UNWATCHED),
        ];
        if let Err(e) = self.push(&linked) {
            self.slots.remove(op.key as usize);
            return Err(e);
        }
        Ok(op)
    }

    fn slot(&mut self, keep: Keep) -> OpId {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let key = self.slots.insert(Slot {
            generation,
            waker: None,
            completions: VecDeque::new(),
            finished: false,
            abandoned: false,
            keep,
        });
        OpId {
            key: key as u32,
            generation,
            driver: self.id,
        }
    }

    /// The next completion of `op`; `None` once its last one was taken.
    pub fn poll(&mut self, op: OpId, cx: &mut Context<'_>) -> Poll<Option<Completion>> {
        let Some(slot) = self.live(op) else {
            return Poll::Ready(None);
        };
        if let Some(c) = slot.completions.pop_front() {
            return Poll::Ready(Some(c));
        }
        if slot.finished {
            self.slots.remove(op.key as usize);
            return Poll::Ready(None);
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Whether `op` has completions not taken yet.
    pub fn has_completions(&mut self, op: OpId) -> bool {
        self.live(op).is_some_and(|s| !s.completions.is_empty())
    }

    /// Asks the kernel to end `op` early (it completes with `ECANCELED`).
    pub fn cancel(&mut self, op: OpId) {
        if self.live(op).is_some_and(|s| !s.finished) {
            let cancel = opcode::AsyncCancel::new(op.user_data())
                .build()
                .user_data(UNWATCHED);
            if let Err(e) = self.push(&[cancel]) {
                tracing::warn!("io_uring: could not cancel an operation: {e}");
            }
        }
    }

    /// The owner of `op` is done with it: it is cancelled if it is still
    /// running, and its slot (with the memory it keeps) is freed at its
    /// last completion. Receive buffers it still holds go back to the ring.
    pub fn release(&mut self, op: OpId) {
        self.cancel(op);
        self.abandon(op);
    }

    /// Like [`release`](Self::release), but lets a running `op` finish
    /// (a send of bytes already reported as written).
    pub fn abandon(&mut self, op: OpId) {
        let Some(slot) = self.live(op) else { return };
        let buffers: Vec<u16> = slot
            .completions
            .drain(..)
            .filter_map(Completion::buffer)
            .collect();
        let finished = slot.finished;
        slot.abandoned = true;
        slot.waker = None;
        if finished {
            self.slots.remove(op.key as usize);
        }
        for bid in buffers {
            self.recycle(bid);
        }
    }

    fn live(&mut self, op: OpId) -> Option<&mut Slot> {
        self.slots
            .get_mut(op.key as usize)
            .filter(|s| s.generation == op.generation && op.driver == self.id)
    }

    /// The receive buffers.
    pub fn bufs(&self) -> &BufRing {
        self.bufs
            .as_ref()
            .expect("buffers live as long as the driver")
    }

    /// Hands a receive buffer back to the kernel, and wakes the streams
    /// that ran out.
    pub fn recycle(&mut self, bid: u16) {
        if let Some(bufs) = &mut self.bufs {
            bufs.recycle(bid);
        }
        for w in self.buf_waiters.drain(..) {
            w.wake();
        }
    }

    /// Whether the kernel has a receive buffer to fill; if not, `waker`
    /// is woken when one comes back.
    pub fn buffers_or_wait(&mut self, waker: &Waker) -> bool {
        if self.bufs().has_free() {
            return true;
        }
        self.buf_waiters.push(waker.clone());
        false
    }

    fn push(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        for attempt in 0..2 {
            let mut sq = self.ring.submission();
            if sq.capacity() - sq.len() >= entries.len() {
                // SAFETY: every pointer in these entries refers to memory
                // kept by a slot (or by the ring's buffers) until the
                // operation's last completion.
                unsafe { sq.push_multiple(entries) }.map_err(|_| io::Error::other("sq full"))?;
                drop(sq);
                self.queued.notify_one();
                return Ok(());
            }
            drop(sq);
            if attempt == 0 {
                self.submit()?;
            }
        }
        Err(io::Error::other("the io_uring submission queue stays full"))
    }

    /// Submits what is queued, then takes every completion.
    fn turn(&mut self) -> io::Result<()> {
        self.submit()?;
        self.reap();
        Ok(())
    }

    /// Submits what is queued now. Owners of an fd call this before
    /// closing it: a queued entry names the fd by number, and the kernel
    /// takes its reference to the file only at submission.
    pub fn submit(&mut self) -> io::Result<()> {
        loop {
            if self.ring.submission().is_empty() {
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // The completion queue overflowed: make room, try again.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => self.reap(),
                Err(e) => return Err(e),
            }
        }
    }

    fn reap(&mut self) {
        let Driver {
            ring,
            slots,
            bufs,
            buf_waiters,
            ..
        } = self;
        let mut recycled = false;
        for cqe in ring.completion() {
            let data = cqe.user_data();
            if data == UNWATCHED {
                continue;
            }
            let completion = Completion {
                result: cqe.result(),
                flags: cqe.flags(),
            };
            let key = (data & 0xffff_ffff) as usize;
            let last = !cqueue::more(completion.flags);
            if let (Some(bid), Some(bufs)) = (completion.buffer(), bufs.as_mut()) {
                bufs.taken(bid);
            }
            let Some(slot) = slots
                .get_mut(key)
                .filter(|s| u64::from(s.generation) == data >> 32)
            else {
                continue;
            };
            if slot.abandoned {
                if let (Some(bid), Some(bufs)) = (completion.buffer(), bufs.as_mut()) {
                    bufs.recycle(bid);
                    recycled = true;
                }
                if last {
                    slots.remove(key);
                }
                continue;
            }
            slot.completions.push_back(completion);
            slot.finished |= last;
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
        if recycled {
            for w in buf_waiters.drain(..) {
                w.wake();
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.submit();
        self.reap();
        if !self.slots.is_empty() {
            // The kernel may still use memory these operations lent it:
            // leak it rather than free it under the kernel.
            for (_, slot) in std::mem::take(&mut self.slots) {
                std::mem::forget(slot.keep);
            }
            std::mem::forget(self.bufs.take());
        }
    }
}

/// Drives one worker's ring from the worker's runtime.
pub struct Pump {
    id: u64,
    fd: AsyncFd<OwnedFd>,
    queued: Arc<Notify>,
}

impl Pump {
    /// Submits and completes operations until the runtime stops.
    pub async fn run(self) {
        loop {
            if let Err(e) = with(self.id, Driver::turn).and_then(|r| r) {
                tracing::error!("io_uring: submitting failed: {e}");
            }
            tokio::select! {
                ready = self.fd.readable() => match ready {
                    Ok(mut guard) => {
                        if let Err(e) = with(self.id, Driver::turn).and_then(|r| r) {
                            tracing::error!("io_uring: submitting failed: {e}");
                        }
                        guard.clear_ready();
                    }
                    Err(e) => {
                        tracing::error!("io_uring: watching the ring failed: {e}");
                        return;
                    }
                },
                _ = self.queued.notified() => {}
            }
        }
    }
}
