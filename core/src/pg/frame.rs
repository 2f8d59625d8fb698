//! Incremental, zero-copy framing of the PostgreSQL wire protocol.
//!
//! Two shapes of frame exist. Before startup completes, a client sends
//! *untagged* packets (`length, code, body`): SSLRequest, GSSENCRequest,
//! CancelRequest, StartupMessage. Everything after is *tagged*
//! (`type byte, length, body`). Both decoders take the read buffer, return
//! `Ok(None)` when it does not yet hold a whole frame, and otherwise split
//! the frame off with `split_to(..).freeze()`: the frame shares the read
//! buffer's allocation and is never copied, so the same `Bytes` can be
//! recorded and forwarded.
//!
//! Every length read from the wire is checked against a caller-given cap
//! before anything is buffered for it.

use bytes::{Bytes, BytesMut};

use super::wire::Reader;

/// A length on the wire that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length field is smaller than the length field itself.
    #[error("invalid message length {0}")]
    BadLength(i32),
    /// The frame is larger than the configured cap.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// An untagged startup packet whose contents do not parse.
    #[error("malformed startup packet: {0}")]
    BadStartup(&'static str),
}

/// A tagged frame: type byte, big-endian length (counting itself), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
}

impl Frame {
    /// The message type byte, e.g. `b'Q'`.
    pub fn tag(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }

    /// The body after the type byte and length.
    pub fn body(&self) -> &[u8] {
        self.bytes.get(5..).unwrap_or_default()
    }

    /// The whole frame as it was on the wire.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole frame as it was on the wire.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Wraps bytes that are known to hold exactly one whole frame (as built
    /// by this crate's encoders).
    pub(crate) fn from_encoded(bytes: Bytes) -> Self {
        Frame { bytes }
    }
}

/// The size of the whole tagged frame at the front of `buf`, if all of it
/// is there. `max_len` caps the whole frame's size in bytes.
pub fn peek(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(header) = buf.get(1..5) else {
        return Ok(None);
    };
    let len = Reader::new(header).i32().unwrap_or(0);
    if len < 4 {
        return Err(FrameError::BadLength(len));
    }
    // len >= 4 here, so the conversion and the addition cannot overflow.
    let total = len as usize + 1;
    if total > max_len {
        return Err(FrameError::TooLong {
            len: total,
            max: max_len,
        });
    }
    Ok((buf.len() >= total).then_some(total))
}

/// Splits one tagged frame off the front of `buf`, if it holds a whole one.
///
/// `max_len` caps the whole frame's size in bytes.
pub fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
    match peek(buf, max_len)? {
        Some(total) => Ok(Some(Frame {
            bytes: buf.split_to(total).freeze(),
        })),
        None => Ok(None),
    }
}

/// Iterates over the whole frames in `bytes`, which must hold only whole
/// frames (as a recorded [`crate::event::Frame`] does). Stops at the first
/// malformed or partial one.
pub fn split(bytes: &Bytes) -> impl Iterator<Item = Frame> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = bytes.get(at..)?;
        let len = peek(rest, usize::MAX).ok()??;
        let frame = Frame {
            bytes: bytes.slice(at..at + len),
        };
        at += len;
        Some(frame)
    })
}

/// Cap on an untagged startup packet, as in PostgreSQL (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// An untagged packet a client sends before startup completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// Asks to switch to TLS.
    SslRequest,
    /// Asks for GSSAPI encryption (refused by the gateway).
    GssEncRequest,
    /// Asks to cancel the query running on the connection with this key.
    Cancel {
        /// The process id the connection was given.
        pid: i32,
        /// The secret the connection was given.
        secret: i32,
    },
    /// The StartupMessage.
    Message {
        /// Major protocol version (3).
        major: u16,
        /// Minor protocol version.
        minor: u16,
        /// Name/value parameters in the order sent.
        params: Vec<(String, String)>,
    },
}

impl Startup {
    /// The value of a StartupMessage parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Startup::Message { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Splits one untagged startup packet off the front of `buf`.
pub fn decode_startup(buf: &mut BytesMut) -> Result<Option<Startup>, FrameError> {
    let Some(header) = buf.get(..4) else {
        return Ok(None);
    };
    let len = Reader::new(header).i32().unwrap_or(0);
    if len < 8 {
        return Err(FrameError::BadLength(len));
    }
    let len = len as usize;
    if len > MAX_STARTUP_LEN {
        return Err(FrameError::TooLong {
            len,
            max: MAX_STARTUP_LEN,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let packet = buf.split_to(len);
    let mut r = Reader::new(packet.get(4..).unwrap_or_default());
    let code = r.i32().ok_or(FrameError::BadStartup("truncated"))?;
    let startup = match code {
        SSL_REQUEST | GSSENC_REQUEST if !r.is_empty() => {
            return Err(FrameError::BadStartup("request with a body"));
        }
        SSL_REQUEST => Startup::SslRequest,
        GSSENC_REQUEST => Startup::GssEncRequest,
        CANCEL_REQUEST => {
            let pid = r
                .i32()
                .ok_or(FrameError::BadStartup("truncated cancel request"))?;
            let secret = r
                .i32()
                .ok_or(FrameError::BadStartup("truncated cancel request"))?;
            Startup::Cancel { pid, secret }
        }
        code => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            Startup::Message {
                major,
                minor,
                params: startup_params(&mut r)?,
            }
        }
    };
    Ok(Some(startup))
}

fn startup_params(r: &mut Reader<'_>) -> Result<Vec<(String, String)>, FrameError> {
    let mut params = Vec::new();
    loop {
        let name = r.cstr().ok_or(FrameError::BadStartup(
            "unterminated or non-UTF-8 parameter",
        ))?;
        if name.is_empty() {
            break;
        }
        let value = r.cstr().ok_or(FrameError::BadStartup(
            "unterminated or non-UTF-8 parameter",
        ))?;
        params.push((name.to_owned(), value.to_owned()));
    }
    if !r.is_empty() {
        return Err(FrameError::BadStartup("bytes after the parameter list"));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(stream: &[u8], chunk: usize) -> Vec<Frame> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(f) = decode(&mut buf, 1 << 20).unwrap() {
                out.push(f);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn any_split_gives_the_same_frames() {
        let stream = b"Q\0\0\0\x0dselect 1\0S\0\0\0\x04X\0\0\0\x04";
        let whole = frames_of(stream, stream.len());
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].tag(), b'Q');
        assert_eq!(whole[0].body(), b"select 1\0");
        for chunk in 1..stream.len() {
            assert_eq!(frames_of(stream, chunk), whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn lengths_are_checked_before_buffering() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x03"[..]);
        assert_eq!(decode(&mut buf, 100), Err(FrameError::BadLength(3)));
        let mut buf = BytesMut::from(&b"Q\x7f\xff\xff\xff"[..]);
        assert!(matches!(
            decode(&mut buf, 100),
            Err(FrameError::TooLong { .. })
        ));
        let mut buf = BytesMut::from(&b"Q\xff\xff\xff\xff"[..]);
        assert!(matches!(
            decode(&mut buf, 100),
            Err(FrameError::BadLength(-1))
        ));
    }

    #[test]
    fn startup_packets() {
        let mut buf = BytesMut::from(&b"\0\0\0\x08\x04\xd2\x16\x2f"[..]);
        assert_eq!(decode_startup(&mut buf), Ok(Some(Startup::SslRequest)));
        let mut buf = BytesMut::from(&b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x07\0\0\0\x09"[..]);
        assert_eq!(
            decode_startup(&mut buf),
            Ok(Some(Startup::Cancel { pid: 7, secret: 9 }))
        );
        let body = b"\0\x03\0\0user\0agent\0database\0orders\0\0";
        let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(body);
        for cut in 0..packet.len() {
            let mut buf = BytesMut::from(&packet[..cut]);
            assert_eq!(decode_startup(&mut buf), Ok(None));
        }
        let mut buf = BytesMut::from(&packet[..]);
        let s = decode_startup(&mut buf).unwrap().unwrap();
        assert_eq!(s.param("database"), Some("orders"));
        assert_eq!(s.param("user"), Some("agent"));
    }

    #[test]
    fn malformed_startup_is_an_error() {
        for bad in [
            &b"\0\0\0\x04"[..],
            b"\0\0\0\x0c\x04\xd2\x16\x2f\0\0\0\0",
            b"\0\0\0\x0d\0\x03\0\0user\0",
            b"\x7f\0\0\0",
        ] {
            let mut buf = BytesMut::from(bad);
            assert!(decode_startup(&mut buf).is_err(), "{bad:?}");
        }
    }
}
