//! WebSocket (RFC 6455) frames of an upgraded connection, read for the
//! record, and the Kubernetes stream channels (`v5.channel.k8s.io` and its
//! elders) inside them.
//!
//! What this is: an observer. The relay copies each direction's bytes
//! unchanged to the other side and hands a copy to one [`WsDecoder`] per
//! direction, in chunks of any size that split frames anywhere. The decoder
//! answers with what was said, one [`WsMessage`] per message (fragments
//! joined, control frames yielded where they occur between fragments).
//!
//! What this is not: an endpoint. It never answers a ping, never closes the
//! connection, never changes a byte, and a protocol error it finds does not
//! fail the relay: it is reported once as a [`WsError`] and decoding stops
//! for that direction (the bytes keep flowing; the peer endpoints enforce
//! the protocol on each other). Deviations that an endpoint might tolerate
//! (a length not in its shortest form, invalid UTF-8 in a text message, a
//! malformed close body) are noted on the message ([`Notes`]) instead.
//!
//! Memory is bounded whatever the peer sends: a message's payload is kept up
//! to [`WsLimits::max_message`] bytes and the rest is counted and dropped
//! (the message comes out flagged [`WsMessage::truncated`], with its full
//! length in [`WsMessage::len`]); control frames are at most 125 bytes; a
//! frame header at most 14. The only other buffer is the input not yet
//! decoded, which holds what the caller fed since it last drained the
//! decoder.
//!
//! One direction, as the relay drives it:
//!
//! ```
//! use gatehouse_core::http::websocket::{Role, WsDecoder, WsLimits, k8s_channel};
//!
//! let mut from_client = WsDecoder::new(Role::Client, WsLimits::default());
//! // `kubectl exec` typing "ls\n" on stdin (channel 0): a masked binary
//! // frame, here arriving in two chunks.
//! let key = [1, 2, 3, 4];
//! let mut wire = vec![0x82, 0x84];
//! wire.extend_from_slice(&key);
//! wire.extend(b"\x00ls\n".iter().zip(key).map(|(b, k)| b ^ k));
//! let mut said = Vec::new();
//! for chunk in wire.chunks(5) {
//!     // (the relay forwards `chunk` unchanged, then:)
//!     from_client.feed(chunk);
//!     while let Some(result) = from_client.next_message() {
//!         match result {
//!             Ok(msg) => {
//!                 if let Some(frame) = k8s_channel("v5.channel.k8s.io", &msg) {
//!                     said.push((frame.name, frame.data));
//!                 }
//!             }
//!             // Recorded once; the relay goes on, the decoder stops.
//!             Err(error) => eprintln!("{error}"),
//!         }
//!     }
//! }
//! assert_eq!(said, [("stdin", bytes::Bytes::from_static(b"ls\n"))]);
//! // At the end of the stream: a message cut short, if any.
//! assert_eq!(from_client.finish(), None);
//! ```
//!
//! - [`decoder`]: [`WsDecoder`], the incremental frame decoder.
//! - [`k8s`]: the Kubernetes channel view of a message ([`k8s_channel`]) and
//!   the resize payload ([`parse_resize`]).

pub mod decoder;
mod frame;
pub mod k8s;

#[cfg(test)]
mod tests;

use bytes::Bytes;

pub use decoder::WsDecoder;
pub use k8s::{
    CLOSE_CHANNEL, K8sFrame, TerminalSize, is_channel_protocol, k8s_channel, parse_resize,
    port_forward_channel_name,
};

/// Which endpoint sends the bytes a decoder reads.
///
/// RFC 6455 §5.1: a client masks every frame it sends; a server masks none.
/// A frame that breaks this is a protocol error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The bytes come from the client (the agent's `kubectl`): every frame
    /// must be masked.
    Client,
    /// The bytes come from the server (the upstream API server): no frame
    /// may be masked.
    Server,
}

/// Bounds on what a decoder keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// The most payload bytes kept of one data message (text or binary,
    /// all its fragments together). Beyond it the payload is counted, not
    /// kept, and the message is yielded truncated.
    pub max_message: usize,
}

impl Default for WsLimits {
    /// 1 MiB per message: far above what `kubectl exec` sends in one
    /// message (stdin and stdout come in pieces of at most a few KiB), low
    /// enough that many recorded sessions at once stay cheap.
    fn default() -> Self {
        WsLimits {
            max_message: 1 << 20,
        }
    }
}

/// A message's kind: the opcode of its first frame (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: binary data (the Kubernetes channel protocols use these).
    Binary,
    /// 0x8: close, with an optional status code and reason.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// The opcode's value on the wire.
    pub fn code(self) -> u8 {
        match self {
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }

    /// A lower-case name for records: `text`, `binary`, `close`, `ping`,
    /// `pong`.
    pub fn name(self) -> &'static str {
        match self {
            Opcode::Text => "text",
            Opcode::Binary => "binary",
            Opcode::Close => "close",
            Opcode::Ping => "ping",
            Opcode::Pong => "pong",
        }
    }
}

/// Deviations from RFC 6455 that an endpoint may tolerate and the record
/// should show, noted on a message rather than stopping the decoder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notes {
    /// A frame of the message gave its length in a longer form than needed
    /// (16 bits for less than 126, 64 bits for less than 65536; §5.2 says
    /// the minimal number of bytes MUST be used).
    pub non_minimal_length: bool,
    /// A text message (or a close reason) is not valid UTF-8. For a
    /// truncated message only the kept part is checked, and a character cut
    /// by the truncation does not count.
    pub invalid_utf8: bool,
    /// A close frame's body is malformed: one byte long (no room for the
    /// code), or a status code that may not be sent (§7.4: below 1000,
    /// 1004–1006, 1015, and 1016–2999 which are unassigned).
    pub bad_close: bool,
    /// The connection ended before the message did: the message came from
    /// [`WsDecoder::finish`].
    pub incomplete: bool,
}

/// One message as the sending endpoint said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsMessage {
    /// The message's kind.
    pub opcode: Opcode,
    /// The payload, unmasked, fragments joined; at most
    /// [`WsLimits::max_message`] bytes of it for data messages.
    pub payload: Bytes,
    /// The payload's full length on the wire; more than `payload.len()`
    /// when the message was truncated or incomplete.
    pub len: u64,
    /// Whether `payload` is shorter than the message (kept up to the limit,
    /// or the connection ended mid-message).
    pub truncated: bool,
    /// How many frames carried the message (1 unless fragmented).
    pub frames: u32,
    /// For a close message with a body: the status code and the reason
    /// (UTF-8, invalid sequences replaced, see [`Notes::invalid_utf8`]).
    pub close: Option<(u16, String)>,
    /// What the message got wrong without being a protocol error.
    pub notes: Notes,
}

impl WsMessage {
    /// The payload as text, if the message is text and valid UTF-8.
    pub fn text(&self) -> Option<&str> {
        if self.opcode != Opcode::Text {
            return None;
        }
        std::str::from_utf8(&self.payload).ok()
    }
}

/// A protocol error that stopped a decoder, and where.
///
/// Each is something RFC 6455 says an endpoint MUST fail the connection
/// for; the gateway relays on regardless (the endpoints enforce it) and
/// records the error once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WebSocket protocol error at byte {offset} of the stream: {kind}")]
pub struct WsError {
    /// The offset in this direction's byte stream (counted from the first
    /// byte after the HTTP upgrade) of the frame that broke the protocol.
    pub offset: u64,
    /// What was wrong.
    pub kind: WsErrorKind,
}

/// What a [`WsError`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsErrorKind {
    /// RSV1–3 set (the value holds the three bits in place, `0x70` mask)
    /// while no extension is negotiated. This decoder reads no extension
    /// (`permessage-deflate` sets RSV1 and compresses payloads), so the
    /// relay must not let one be negotiated: it drops
    /// `Sec-WebSocket-Extensions` from the upgrade request.
    #[error("reserved bits {0:#04x} set without a negotiated extension")]
    ReservedBits(u8),
    /// An opcode that RFC 6455 reserves (0x3–0x7, 0xB–0xF).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A client frame without a mask (§5.1).
    #[error("client frame not masked")]
    UnmaskedClientFrame,
    /// A server frame with a mask (§5.1).
    #[error("server frame masked")]
    MaskedServerFrame,
    /// A 64-bit length with its most significant bit set (§5.2).
    #[error("64-bit payload length with the most significant bit set")]
    LengthOverflow,
    /// A control frame longer than 125 bytes (§5.5).
    #[error("control frame of {0} bytes (at most 125)")]
    ControlTooLong(u64),
    /// A control frame without FIN: control frames are never fragmented
    /// (§5.5).
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A continuation frame with no fragmented message to continue (§5.4).
    #[error("continuation frame outside a fragmented message")]
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is still open
    /// (§5.4: fragments of different messages never interleave).
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A frame after this side's close frame (§5.5.1: nothing follows a
    /// close).
    #[error("frame after close")]
    FrameAfterClose,
}
