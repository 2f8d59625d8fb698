//! A TCP connection on the worker's ring.
//!
//! Receiving is one multishot recv into the worker's provided buffers,
//! armed while the reader wants data: an idle connection holds no buffer.
//! Bytes stay in the buffer the kernel filled until the reader copies them
//! out, and a reader that stops reading (backpressure from the other side
//! of the session) gets its recv cancelled once it holds
//! [`MAX_HELD_BUFFERS`], so one connection cannot take every buffer; it is
//! re-armed when the reader asks again. Sending hands the kernel an owned
//! `Bytes`, kept by the operation's slot until the kernel is done with it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use io_uring::{opcode, types};
use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::bufring::GROUP;
use super::driver::{self, Completion, Keep, OpId};
use super::send::Sender;

/// Receive buffers one connection may hold unread before its recv is
/// cancelled.
const MAX_HELD_BUFFERS: usize = 4;

/// A connected TCP socket driven by the worker's ring.
#[derive(Debug)]
pub struct Stream {
    fd: OwnedFd,
    driver: u64,
    /// The multishot recv, while armed.
    recv: Option<OpId>,
    /// A cancel of `recv` was asked for (backpressure).
    recv_cancelled: bool,
    /// Filled buffers not read yet: buffer id, length, bytes already read.
    held: VecDeque<(u16, usize, usize)>,
    /// The peer closed its side (or reading failed: the error, once).
    read_end: Option<Option<io::Error>>,
    /// Last time recv ran out of buffers.
    starved: bool,
    /// Sends in flight and bytes queued behind them.
    sender: Sender,
}

impl Stream {
    /// Wraps an accepted or connected socket; it must belong to this
    /// thread's worker.
    pub fn new(fd: OwnedFd) -> io::Result<Stream> {
        let driver =
            driver::current().ok_or_else(|| io::Error::other("no io_uring on this thread"))?;
        Ok(Stream {
            fd,
            driver,
            recv: None,
            recv_cancelled: false,
            held: VecDeque::new(),
            read_end: None,
            starved: false,
            sender: Sender::default(),
        })
    }

    /// Connects to `addr`, giving up after `timeout` (a ring timeout linked
    /// to the connect).
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Stream> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.cloexec(),
            Some(Protocol::TCP),
        )?;
        let fd: OwnedFd = socket.into();
        let stream = Stream::new(fd)?;
        let keep = Box::new((
            SockAddr::from(addr),
            types::Timespec::new()
                .sec(timeout.as_secs())
                .nsec(timeout.subsec_nanos()),
        ));
        let entry = opcode::Connect::new(
            types::Fd(stream.fd.as_raw_fd()),
            keep.0.as_ptr().cast(),
            keep.0.len(),
        )
        .build();
        let op = driver::with(stream.driver, |d| {
            let timespec: *const types::Timespec = &keep.1;
            d.start_with_timeout(entry, timespec, Keep::Connect(keep))
        })??;
        match Op::new(op).await.io() {
            Ok(_) => Ok(stream),
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            )),
            Err(e) => Err(e),
        }
    }

    /// The socket, for options.
    pub fn socket(&self) -> SockRef<'_> {
        SockRef::from(&self.fd)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket()
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))
    }

    /// Whether the peer has neither closed nor sent anything (for a pooled
    /// connection, which must be silent while idle).
    pub fn is_quiet(&self) -> bool {
        if !self.held.is_empty() || self.read_end.is_some() {
            return false;
        }
        match self.recv {
            Some(op) => !driver::with(self.driver, |d| d.has_completions(op)).unwrap_or(true),
            None => self.peek_dontwait(),
        }
    }

    fn peek_dontwait(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: a one-byte buffer we own; MSG_DONTWAIT keeps it from
        // blocking on this (blocking-mode) socket.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    /// Takes the recv's completions into `held` (or ends reading).
    fn collect(&mut self, d: &mut driver::Driver, cx: &mut Context<'_>) {
        while let Some(op) = self.recv {
            match d.poll(op, cx) {
                Poll::Pending => return,
                Poll::Ready(None) => {
                    self.recv = None;
                    self.recv_cancelled = false;
                }
                Poll::Ready(Some(c)) => self.received(d, op, c),
            }
        }
    }

    fn received(&mut self, d: &mut driver::Driver, op: OpId, c: Completion) {
        match (c.io(), c.buffer()) {
            (Ok(0), bid) => {
                if let Some(bid) = bid {
                    d.recycle(bid);
                }
                self.read_end.get_or_insert(None);
            }
            (Ok(n), Some(bid)) => {
                self.held.push_back((bid, n as usize, 0));
                if self.held.len() >= MAX_HELD_BUFFERS && !self.recv_cancelled {
                    self.recv_cancelled = true;
                    d.cancel(op);
                }
            }
            (Ok(_), None) => {
                self.read_end
                    .get_or_insert(Some(io::Error::other("recv completed without a buffer")));
            }
            (Err(e), _) => match e.raw_os_error() {
                Some(libc::ENOBUFS) => self.starved = true,
                Some(libc::ECANCELED) | Some(libc::EINTR) => {}
                _ => {
                    self.read_end.get_or_insert(Some(e));
                }
            },
        }
    }

    fn arm(&mut self, d: &mut driver::Driver) -> io::Result<()> {
        let entry = opcode::RecvMulti::new(types::Fd(self.fd.as_raw_fd()), GROUP).build();
        self.recv = Some(d.start(entry, Keep::Nothing)?);
        Ok(())
    }

    fn poll_read_inner(
        &mut self,
        d: &mut driver::Driver,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.held.is_empty() {
                while buf.remaining() > 0 {
                    let Some((bid, len, read)) = self.held.front_mut() else {
                        break;
                    };
                    let data = &d.bufs().filled(*bid, *len)[*read..];
                    let n = data.len().min(buf.remaining());
                    buf.put_slice(&data[..n]);
                    *read += n;
                    if *read == *len {
                        let bid = *bid;
                        self.held.pop_front();
                        d.recycle(bid);
                    }
                }
                return Poll::Ready(Ok(()));
            }
            self.collect(d, cx);
            if !self.held.is_empty() {
                continue;
            }
            if let Some(end) = &mut self.read_end {
                return Poll::Ready(match end.take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                });
            }
            if self.recv.is_some() {
                return Poll::Pending;
            }
            if self.starved {
                // Every buffer was taken: wait for one to come back.
                if !d.buffers_or_wait(cx.waker()) {
                    return Poll::Pending;
                }
                self.starved = false;
            }
            self.arm(d)?;
        }
    }

    fn with_driver_poll<R>(
        &mut self,
        f: impl FnOnce(&mut Self, &mut driver::Driver) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match driver::with(self.driver, |d| f(self, d)) {
            Ok(p) => p,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut()
            .with_driver_poll(|s, d| s.poll_read_inner(d, cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let fd = this.fd.as_raw_fd();
        this.with_driver_poll(|s, d| s.sender.poll_write(fd, d, cx, data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let fd = this.fd.as_raw_fd();
        this.with_driver_poll(|s, d| s.sender.poll_write_vectored(fd, d, cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let fd = this.fd.as_raw_fd();
        this.with_driver_poll(|s, d| s.sender.poll_flush(fd, d, cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Poll::Ready(self.socket().shutdown(std::net::Shutdown::Write))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let recv = self.recv.take();
        let held: Vec<u16> = self.held.drain(..).map(|(bid, _, _)| bid).collect();
        let sender = std::mem::take(&mut self.sender);
        // Bytes reported written but not sent yet go out on a task of
        // their own, which keeps the socket open with a duplicate fd.
        let linger = (!sender.is_idle()).then(|| self.fd.try_clone());
        let driver = self.driver;
        let released = driver::with(driver, |d| {
            if let Some(op) = recv {
                d.release(op);
            }
            for bid in held {
                d.recycle(bid);
            }
            match linger {
                Some(Ok(fd)) => sender.linger(fd, driver, d),
                Some(Err(e)) => {
                    tracing::debug!("could not keep a closing connection open: {e}");
                    let mut sender = sender;
                    sender.release(d);
                }
                None => {}
            }
            // Before the fd closes (see `Driver::submit`).
            d.submit()
        })
        .and_then(|submitted| submitted);
        if let Err(e) = released {
            tracing::error!("io_uring: a connection was dropped off its worker: {e}");
        }
    }
}

/// A single-shot operation; dropping it before it completes abandons it
/// (cancelled, its memory kept until the kernel is done).
pub struct Op {
    id: Option<OpId>,
    driver: u64,
}

impl Op {
    pub(super) fn new(id: OpId) -> Op {
        let driver = driver::current().unwrap_or_default();
        Op {
            id: Some(id),
            driver,
        }
    }
}

impl Future for Op {
    type Output = Completion;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion> {
        let Some(id) = self.id else {
            return Poll::Ready(Completion {
                result: -libc::EINVAL,
                flags: 0,
            });
        };
        let polled = driver::with(self.driver, |d| {
            let p = d.poll(id, cx);
            if p.is_ready() {
                d.release(id);
            }
            p
        });
        let done = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Some(c))) => c,
            Ok(Poll::Ready(None)) => Completion {
                result: -libc::ECANCELED,
                flags: 0,
            },
            Err(_) => Completion {
                result: -libc::EBADF,
                flags: 0,
            },
        };
        self.id = None;
        Poll::Ready(done)
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let _ = driver::with(self.driver, |d| d.release(id));
        }
    }
}

/// Takes ownership of a raw fd the kernel handed us (an accepted socket).
pub fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by accept and belongs to no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
