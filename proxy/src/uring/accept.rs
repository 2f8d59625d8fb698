//! Accepting connections with one multishot accept, re-armed when the
//! kernel ends it.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use io_uring::{opcode, types};

use super::driver::{self, Keep, OpId};
use super::stream::{Stream, owned};

/// The worker's listening socket on its ring.
pub struct Acceptor {
    listener: TcpListener,
    driver: u64,
    op: Option<OpId>,
}

impl Acceptor {
    /// Accepts on `listener` (bound with `SO_REUSEPORT` by this worker).
    pub fn new(listener: TcpListener) -> io::Result<Acceptor> {
        let driver =
            driver::current().ok_or_else(|| io::Error::other("no io_uring on this thread"))?;
        Ok(Acceptor {
            listener,
            driver,
            op: None,
        })
    }

    /// The next accepted connection and its peer's address.
    pub async fn accept(&mut self) -> io::Result<(Stream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Stream, SocketAddr)>> {
        let accepted = driver::with(self.driver, |d| {
            loop {
                let op = match self.op {
                    Some(op) => op,
                    None => {
                        let entry = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
                            .flags(libc::SOCK_CLOEXEC)
                            .build();
                        match d.start(entry, Keep::Nothing) {
                            Ok(op) => *self.op.insert(op),
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                };
                match d.poll(op, cx) {
                    Poll::Pending => return Poll::Pending,
                    // The kernel ended the multishot: arm it again.
                    Poll::Ready(None) => self.op = None,
                    Poll::Ready(Some(c)) => return Poll::Ready(c.io().map(|fd| fd as i32)),
                }
            }
        });
        let fd = match accepted {
            Ok(Poll::Ready(Ok(fd))) => fd,
            Ok(Poll::Ready(Err(e))) | Err(e) => return Poll::Ready(Err(e)),
            Ok(Poll::Pending) => return Poll::Pending,
        };
        let stream = Stream::new(owned(fd))?;
        let peer = stream.peer_addr()?;
        Poll::Ready(Ok((stream, peer)))
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        if let Some(op) = self.op.take() {
            // Submitted before the listener's fd closes.
            let _ = driver::with(self.driver, |d| {
                d.release(op);
                d.submit()
            });
        }
    }
}
