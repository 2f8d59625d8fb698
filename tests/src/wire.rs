//! A raw PostgreSQL wire client, for what no driver sends: garbage startup
//! packets, oversized frames, PostgreSQL 17's direct TLS, hand-built
//! extended-protocol batches.
//!
//! [`RawConn`] is blocking, over plain TCP or rustls, with a read timeout on
//! every read so a silent peer fails the test instead of hanging it. Frames
//! are built with `gatehouse_core::pg::encode` and cut with
//! `gatehouse_core::pg::frame::decode`, the gateway's own codec: the
//! PostgreSQL server, not the codec, is the reference these tests compare
//! against.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use gatehouse_core::pg::backend::Message;
use gatehouse_core::pg::encode;
use gatehouse_core::pg::frame::{self, Frame};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// How long one read may wait for the peer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Cap on a frame this client accepts.
const MAX_FRAME: usize = 1 << 30;

/// A blocking raw connection over `S` (TCP or TLS over TCP).
pub struct RawConn<S> {
    stream: S,
    buf: BytesMut,
}

/// A TLS stream over TCP.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// What a read ended with when it did not produce a frame.
#[derive(Debug)]
pub enum Ended {
    /// The peer closed the connection (EOF, reset, or a TLS close).
    Closed(String),
    /// Nothing arrived within the read timeout.
    TimedOut,
}

/// TCP to 127.0.0.1:`port` with read and write timeouts.
pub fn tcp(port: u16) -> TcpStream {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let tcp = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    tcp.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    tcp.set_write_timeout(Some(READ_TIMEOUT)).expect("timeout");
    let _ = tcp.set_nodelay(true);
    tcp
}

impl RawConn<TcpStream> {
    /// A plaintext connection to 127.0.0.1:`port`.
    pub fn plain(port: u16) -> Self {
        RawConn::new(tcp(port))
    }

    /// Changes how long a read waits (default [`READ_TIMEOUT`]).
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set_read_timeout");
    }
}

impl RawConn<TlsStream> {
    /// PostgreSQL 17's direct TLS: a TLS handshake as the very first bytes
    /// (no SSLRequest) with `config` (set its ALPN), verifying the server as
    /// `127.0.0.1`. The handshake is completed before this returns; `Err`
    /// is its failure.
    pub fn direct_tls(port: u16, config: ClientConfig) -> io::Result<Self> {
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let conn = ClientConnection::new(Arc::new(config), name)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut stream = StreamOwned::new(conn, tcp(port));
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(RawConn::new(stream))
    }

    /// The ALPN protocol the server chose.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.stream.conn.alpn_protocol().map(<[u8]>::to_vec)
    }
}

impl<S: Read + Write> RawConn<S> {
    /// Wraps a connected stream (which should have a read timeout).
    pub fn new(stream: S) -> Self {
        RawConn {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Writes `bytes` and flushes; `Err` when the peer is gone.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Writes `bytes` and flushes; panics when the peer is gone.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes)
            .unwrap_or_else(|e| panic!("cannot send {} bytes: {e}", bytes.len()));
    }

    /// The next tagged frame, or how the connection ended instead.
    pub fn try_frame(&mut self) -> Result<Frame, Ended> {
        loop {
            match frame::decode(&mut self.buf, MAX_FRAME) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => panic!("the peer sent an invalid frame: {e}"),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Ended::Closed("EOF".into())),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Ended::TimedOut);
                }
                Err(e) => return Err(Ended::Closed(e.to_string())),
            }
        }
    }

    /// The next tagged frame; panics if the connection ends or stays silent.
    pub fn frame(&mut self) -> Frame {
        self.try_frame()
            .unwrap_or_else(|ended| panic!("expected a frame from the peer: {ended:?}"))
    }

    /// Frames up to and including ReadyForQuery, or up to the end of the
    /// connection (then the last frame is whatever came last, typically a
    /// FATAL ErrorResponse). Panics if the peer stays silent.
    pub fn until_ready(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            match self.try_frame() {
                Ok(f) => {
                    let done = f.tag() == b'Z';
                    frames.push(f);
                    if done {
                        return frames;
                    }
                }
                Err(Ended::Closed(_)) => return frames,
                Err(Ended::TimedOut) => panic!(
                    "no ReadyForQuery within {READ_TIMEOUT:?}; got {:?}",
                    tags(&frames)
                ),
            }
        }
    }

    /// Sends a StartupMessage (`user`, `database`) and, when asked for a
    /// cleartext password, `password`; returns every frame up to
    /// ReadyForQuery or the end of the connection.
    pub fn login(&mut self, user: &str, database: &str, password: &str) -> Vec<Frame> {
        self.send(&encode::startup_message([
            ("user", user),
            ("database", database),
            ("application_name", "gatehouse-raw-test"),
        ]));
        let first = self.frame();
        match Message::parse(&first) {
            Ok(Message::Authentication { code: 3, .. }) => {
                self.send(encode::password_message(password.as_bytes()).bytes());
                let mut frames = vec![first];
                frames.extend(self.until_ready());
                frames
            }
            _ if first.tag() == b'Z' => vec![first],
            _ => {
                let mut frames = vec![first];
                frames.extend(self.until_ready());
                frames
            }
        }
    }

    /// [`login`](Self::login), panicking unless it ends with ReadyForQuery.
    pub fn login_ok(&mut self, user: &str, database: &str, password: &str) -> Vec<Frame> {
        let frames = self.login(user, database, password);
        assert_eq!(
            frames.last().map(Frame::tag),
            Some(b'Z'),
            "login did not finish: {}",
            describe(&frames)
        );
        frames
    }

    /// Sends a simple Query and returns the frames up to ReadyForQuery.
    pub fn simple_query(&mut self, sql: &str) -> Vec<Frame> {
        self.send(query(sql).bytes());
        self.until_ready()
    }

    /// Whether the peer closed the connection (rather than answering or
    /// staying silent) within [`READ_TIMEOUT`], ignoring frames before.
    pub fn closes(&mut self) -> bool {
        loop {
            match self.try_frame() {
                Ok(_) => {}
                Err(Ended::Closed(_)) => return true,
                Err(Ended::TimedOut) => return false,
            }
        }
    }
}

/// A simple Query frame.
pub fn query(sql: &str) -> Frame {
    encode::frame(b'Q', |b| {
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
    })
}

/// A Parse of the unnamed statement, no parameter types.
pub fn parse(sql: &str) -> Frame {
    encode::frame(b'P', |b| {
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
        b.extend_from_slice(&0i16.to_be_bytes());
    })
}

/// A Bind of the unnamed statement to the unnamed portal, no parameters,
/// text results.
pub fn bind() -> Frame {
    encode::frame(b'B', |b| {
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    })
}

/// An Execute of the unnamed portal, all rows.
pub fn execute() -> Frame {
    encode::frame(b'E', |b| {
        b.push(0);
        b.extend_from_slice(&0i32.to_be_bytes());
    })
}

/// Sync.
pub fn sync() -> Frame {
    encode::frame(b'S', |_| {})
}

/// The type bytes of `frames`, as a string (`"12DCZ"`).
pub fn tags(frames: &[Frame]) -> String {
    frames.iter().map(|f| f.tag() as char).collect()
}

/// The SQLSTATE and message of the first ErrorResponse in `frames`.
pub fn error(frames: &[Frame]) -> Option<(String, String)> {
    frames.iter().find_map(|f| match Message::parse(f) {
        Ok(Message::ErrorResponse(fields)) => Some((
            fields.get(b'C').unwrap_or_default().to_owned(),
            fields.get(b'M').unwrap_or_default().to_owned(),
        )),
        _ => None,
    })
}

/// The text values of every DataRow in `frames` (NULL as `None`).
pub fn rows(frames: &[Frame]) -> Vec<Vec<Option<String>>> {
    frames
        .iter()
        .filter_map(|f| match Message::parse(f) {
            Ok(Message::DataRow(values)) => Some(
                values
                    .iter()
                    .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// A readable summary of `frames` for assertion messages: tags, and the
/// fields of any error.
pub fn describe(frames: &[Frame]) -> String {
    match error(frames) {
        Some((code, message)) => format!("{} (error {code}: {message})", tags(frames)),
        None => tags(frames),
    }
}
