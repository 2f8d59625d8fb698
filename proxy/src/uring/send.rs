//! The sending half of a [`Stream`](super::Stream): one send in flight at a
//! time (so partial sends cannot reorder bytes), and bytes written while it
//! runs gathered behind it, up to a bound.
//!
//! A write returns as soon as its bytes are queued: they are then owned by
//! the ring (the in-flight send's slot) or by the sender. Callers that drop
//! a connection right after a write (a TLS alert, an error before closing)
//! lose nothing: a connection dropped with bytes unsent hands its sender to
//! a lingering task that finishes sending, for a bounded time, before the
//! socket closes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, types};

use super::driver::{self, Driver, Keep, OpId};

/// Bytes a writer may queue behind the send in flight before a write waits.
const MAX_QUEUED: usize = 256 * 1024;
/// How long bytes left unsent by a dropped connection may take to go out.
const LINGER: Duration = Duration::from_secs(10);

/// The send in flight and the bytes queued behind it.
#[derive(Debug, Default)]
pub struct Sender {
    /// The send in flight and what of it is still unconfirmed.
    in_flight: Option<(OpId, Bytes)>,
    queued: BytesMut,
}

impl Sender {
    /// Whether bytes are in flight or queued.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.queued.is_empty()
    }

    /// Queues `data`; `Pending` only while the queue is full.
    pub fn poll_write(
        &mut self,
        fd: RawFd,
        d: &mut Driver,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(fd, d, cx, &[io::IoSlice::new(data)])
    }

    /// Queues all of `bufs` (gathered into one send); `Pending` only while
    /// the queue is full. Writers such as rustls hand over everything they
    /// have in one vectored write and may not come back for the rest (a
    /// last alert before an error), so all of it is taken.
    pub fn poll_write_vectored(
        &mut self,
        fd: RawFd,
        d: &mut Driver,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.queued.len() >= MAX_QUEUED {
            ready!(self.poll_flush(fd, d, cx))?;
        } else if self.in_flight.is_some() {
            // Progress without waiting; a failure shows on this write.
            if let Poll::Ready(Err(e)) = self.poll_flush(fd, d, cx) {
                return Poll::Ready(Err(e));
            }
        }
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        for b in bufs {
            self.queued.extend_from_slice(b);
        }
        if self.in_flight.is_none() && !self.queued.is_empty() {
            let next = self.queued.split().freeze();
            self.start(fd, d, next)?;
        }
        Poll::Ready(Ok(len))
    }

    /// Resolves when everything written so far is sent.
    pub fn poll_flush(
        &mut self,
        fd: RawFd,
        d: &mut Driver,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some((op, rest)) = &self.in_flight {
                let (op, rest) = (*op, rest.clone());
                let sent = match ready!(d.poll(op, cx)) {
                    Some(c) => c.io(),
                    None => Err(io::Error::other("a send ended without a result")),
                };
                d.release(op);
                self.in_flight = None;
                match sent {
                    Ok(n) if (n as usize) < rest.len() => {
                        self.start(fd, d, rest.slice(n as usize..))?;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.queued.clear();
                        return Poll::Ready(Err(e));
                    }
                }
            }
            if self.queued.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let next = self.queued.split().freeze();
            self.start(fd, d, next)?;
        }
    }

    fn start(&mut self, fd: RawFd, d: &mut Driver, bytes: Bytes) -> io::Result<()> {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let entry = opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        let op = d.start(entry, Keep::Bytes(bytes.clone()))?;
        self.in_flight = Some((op, bytes));
        Ok(())
    }

    /// Gives up on what is unsent: the send in flight is cancelled.
    pub fn release(&mut self, d: &mut Driver) {
        if let Some((op, _)) = self.in_flight.take() {
            d.release(op);
        }
        self.queued.clear();
    }

    /// Finishes sending on a task of its own (see the module docs), with
    /// `fd` (a duplicate of the connection's) keeping the socket open until
    /// then. Without a runtime to run on, what is unsent is given up.
    pub fn linger(mut self, fd: OwnedFd, driver: u64, d: &mut Driver) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.release(d);
            return;
        };
        runtime.spawn(async move {
            let raw = fd.as_raw_fd();
            let flush = std::future::poll_fn(|cx| {
                driver::with(driver, |d| self.poll_flush(raw, d, cx))
                    .unwrap_or_else(|e| Poll::Ready(Err(e)))
            });
            if tokio::time::timeout(LINGER, flush).await.is_err() {
                tracing::debug!("a closed connection's last bytes were not taken in {LINGER:?}");
            }
            // Before the fd closes (see `Driver::submit`).
            let _ = driver::with(driver, |d| {
                self.release(d);
                d.submit()
            });
            drop(fd);
        });
    }
}
