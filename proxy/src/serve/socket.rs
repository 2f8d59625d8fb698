//! A TCP connection on whichever engine the worker runs: a tokio socket,
//! or one on the worker's io_uring. Sessions, TLS and the pool see only
//! this type.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::uring;

/// A connected TCP socket.
#[derive(Debug)]
pub enum Socket {
    /// On the tokio engine.
    Tokio(TcpStream),
    /// On the worker's io_uring.
    Uring(uring::Stream),
}

impl Socket {
    /// Connects to `host:port` on this worker's engine, by `deadline`.
    pub async fn connect(
        host: &str,
        port: u16,
        deadline: tokio::time::Instant,
    ) -> io::Result<Socket> {
        if !uring::on_this_thread() {
            let connect = TcpStream::connect((host, port));
            return match tokio::time::timeout_at(deadline, connect).await {
                Ok(s) => s.map(Socket::Tokio),
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            };
        }
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name resolved to nothing");
        let addrs = tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        for addr in addrs {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            match uring::Stream::connect(addr, left).await {
                Ok(s) => return Ok(Socket::Uring(s)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Socket::Tokio(s) => s.set_nodelay(on),
            Socket::Uring(s) => s.socket().set_nodelay(on),
        }
    }

    /// A second handle on the same connection, on tokio's reactor, for
    /// noticing that the peer went away while the first handle is busy
    /// elsewhere (see [`peer_gone`]). Never read from it.
    pub fn watcher(&self) -> io::Result<TcpStream> {
        let dup = match self {
            Socket::Tokio(s) => socket2::SockRef::from(s).try_clone()?,
            Socket::Uring(s) => s.socket().try_clone()?,
        };
        dup.set_nonblocking(true)?;
        TcpStream::from_std(dup.into())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Socket::Tokio(s) => s.peer_addr(),
            Socket::Uring(s) => s.peer_addr(),
        }
    }

    /// Whether the peer has neither closed the connection nor sent
    /// anything unasked (a pooled connection must be silent).
    pub fn is_quiet(&self) -> bool {
        match self {
            Socket::Tokio(s) => {
                let mut byte = [0u8; 1];
                matches!(s.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Socket::Uring(s) => s.is_quiet(),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tokio(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Uring(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tokio(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Uring(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tokio(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Uring(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Tokio(s) => s.is_write_vectored(),
            Socket::Uring(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tokio(s) => Pin::new(s).poll_flush(cx),
            Socket::Uring(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tokio(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Uring(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Resolves once the peer of `watcher` ([`Socket::watcher`]) has closed
/// its side (the reactor's read-closed readiness, which also shows behind
/// unread bytes such as a TLS close_notify) or the connection failed.
/// Bytes waiting to be read are left alone; while there are some, it looks
/// again every 250 ms.
pub async fn peer_gone(watcher: &TcpStream) {
    loop {
        match watcher.ready(tokio::io::Interest::READABLE).await {
            Ok(r) if r.is_read_closed() || r.is_error() => return,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_watcher_notices_the_peer_leaving_behind_unread_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let socket = Socket::Tokio(server);
        let watcher = socket.watcher().unwrap();
        client.write_all(b"unread bytes").await.unwrap();
        let early = tokio::time::timeout(Duration::from_millis(600), peer_gone(&watcher)).await;
        assert!(early.is_err(), "the peer is still there");
        drop(client);
        tokio::time::timeout(Duration::from_secs(5), peer_gone(&watcher))
            .await
            .expect("noticed");
        drop(socket);
    }
}
