//! The Kubernetes stream channels inside WebSocket messages: what `kubectl
//! exec`, `attach` and `port-forward` say on which stream.
//!
//! The channel protocols, as the API server and kubelet speak them
//! (`k8s.io/apimachinery/pkg/util/httpstream/wsstream/conn.go`,
//! `k8s.io/apimachinery/pkg/util/remotecommand/constants.go`):
//!
//! - `channel.k8s.io`, `v4.channel.k8s.io`, `v5.channel.k8s.io`, and no
//!   subprotocol at all: each message's first byte is the channel number,
//!   the rest is the data, raw.
//! - `base64.channel.k8s.io`, `v4.base64.channel.k8s.io`: the first byte is
//!   the channel number as an ASCII digit (`'0' + n`), the rest the data in
//!   standard padded base64 (Go's `base64.StdEncoding`).
//! - v5 adds channel 255, the close signal: the message `[255, n]` says the
//!   sender will send nothing more on channel `n` (`kubectl cp` closing
//!   stdin). v1–v4 have no such signal; 255 there is just an unknown
//!   channel.
//!
//! The channel numbers of exec and attach are the POSIX descriptors plus
//! two: 0 stdin, 1 stdout, 2 stderr, 3 error (the API server's final
//! `metav1.Status` as JSON), 4 resize (`{"Width":80,"Height":24}`, see
//! [`parse_resize`]). The v1–v3 protocols differ from v4 only in what the
//! error channel carries, not in framing. Port-forward uses two channels
//! per forwarded port instead, `2i` data and `2i+1` error, each opening
//! with the port number (two bytes, little-endian) from the server; name
//! those with [`port_forward_channel_name`].
//!
//! An empty message carries no channel (the API server skips it), and
//! control messages (ping, pong, close) are not channel traffic.

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;

use super::{Opcode, WsMessage};

/// The v5 close signal's channel number.
pub const CLOSE_CHANNEL: u8 = 255;

/// One message on a Kubernetes stream channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sFrame {
    /// The channel number (decoded from its ASCII digit in the base64
    /// protocols).
    pub channel: u8,
    /// The exec/attach name of the channel: `stdin`, `stdout`, `stderr`,
    /// `error`, `resize`, `close` (v5's 255), or `other`.
    pub name: &'static str,
    /// The data, base64-decoded in the base64 protocols. For `close`, the
    /// number of the channel being closed (one byte).
    pub data: Bytes,
    /// The base64 protocols only: the data was not valid base64, so `data`
    /// holds the text as sent (the API server refuses such a message; the
    /// record keeps it).
    pub invalid_base64: bool,
}

impl K8sFrame {
    /// For a v5 close signal, the channel it closes; `None` for anything
    /// else, including a close signal whose data is not exactly one byte
    /// (the API server does not act on those as a close).
    pub fn closed_channel(&self) -> Option<u8> {
        match (self.name, &self.data[..]) {
            ("close", &[channel]) => Some(channel),
            _ => None,
        }
    }
}

/// How a channel protocol frames its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// Raw channel byte and data; `close_signal` for v5.
    Binary { close_signal: bool },
    /// ASCII channel digit and base64 data.
    Base64,
}

fn codec(protocol: &str) -> Option<Codec> {
    match protocol.trim() {
        "v5.channel.k8s.io" => Some(Codec::Binary { close_signal: true }),
        "v4.channel.k8s.io" | "channel.k8s.io" | "" => Some(Codec::Binary {
            close_signal: false,
        }),
        "v4.base64.channel.k8s.io" | "base64.channel.k8s.io" => Some(Codec::Base64),
        _ => None,
    }
}

/// Whether `protocol` (the negotiated `Sec-WebSocket-Protocol`, empty for
/// none) is one of the Kubernetes channel protocols [`k8s_channel`] reads.
pub fn is_channel_protocol(protocol: &str) -> bool {
    codec(protocol).is_some()
}

/// The exec/attach name of a channel number.
fn channel_name(channel: u8, close_signal: bool) -> &'static str {
    match channel {
        0 => "stdin",
        1 => "stdout",
        2 => "stderr",
        3 => "error",
        4 => "resize",
        CLOSE_CHANNEL if close_signal => "close",
        _ => "other",
    }
}

/// The name of a port-forward channel: `data` (even) or `error` (odd);
/// the forwarded port is the one at index `channel / 2` of the request's
/// `ports`.
pub fn port_forward_channel_name(channel: u8) -> &'static str {
    if channel.is_multiple_of(2) {
        "data"
    } else {
        "error"
    }
}

/// Go's `base64.StdEncoding` for decoding: standard alphabet, padding
/// required, and (Go being lenient there) non-zero trailing bits accepted.
const GO_STD: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// The Kubernetes channel view of `msg` under the negotiated subprotocol
/// `protocol`: `None` for a protocol that is not a channel protocol, a
/// control message, or an empty message.
///
/// A truncated message (see [`WsMessage::truncated`]) gives its kept part;
/// in the base64 protocols, the longest prefix that is whole base64
/// quanta.
pub fn k8s_channel(protocol: &str, msg: &WsMessage) -> Option<K8sFrame> {
    let codec = codec(protocol)?;
    if !matches!(msg.opcode, Opcode::Text | Opcode::Binary) {
        return None;
    }
    let (&first, _) = msg.payload.split_first()?;
    let rest = msg.payload.slice(1..);
    match codec {
        Codec::Binary { close_signal } => Some(K8sFrame {
            channel: first,
            name: channel_name(first, close_signal),
            data: rest,
            invalid_base64: false,
        }),
        Codec::Base64 => {
            // Go's byte arithmetic: wraps below '0'.
            let channel = first.wrapping_sub(b'0');
            let (data, invalid_base64) = match decode_base64(&rest, msg.truncated) {
                Some(data) => (Bytes::from(data), false),
                None => (rest, true),
            };
            Some(K8sFrame {
                channel,
                name: channel_name(channel, false),
                data,
                invalid_base64,
            })
        }
    }
}

/// Decodes base64 as Go's `StdEncoding` does (which skips CR and LF); for
/// a truncated message, the whole quanta only.
fn decode_base64(text: &[u8], truncated: bool) -> Option<Vec<u8>> {
    let cleaned: Vec<u8>;
    let mut text = text;
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        cleaned = text
            .iter()
            .copied()
            .filter(|&b| b != b'\r' && b != b'\n')
            .collect();
        text = &cleaned;
    }
    if truncated {
        text = text.get(..text.len() / 4 * 4)?;
    }
    GO_STD.decode(text).ok()
}

/// A terminal size from the resize channel (k8s `remotecommand.TerminalSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// The terminal sizes in a resize channel message: one per JSON object,
/// in order (kubectl sends one per message; the kubelet reads the channel
/// as a stream of objects, so several are possible).
///
/// Read as Go's `encoding/json` reads them into `TerminalSize`: keys match
/// `Width` and `Height` case-insensitively, a missing one is 0, other keys
/// are ignored. Like the kubelet, reading stops at the first object that
/// does not decode (not JSON, not an object, a size that is not a
/// `uint16`).
pub fn parse_resize(data: &[u8]) -> Vec<TerminalSize> {
    let mut sizes = Vec::new();
    for value in serde_json::Deserializer::from_slice(data).into_iter::<serde_json::Value>() {
        let Ok(serde_json::Value::Object(map)) = value else {
            break;
        };
        let mut size = TerminalSize {
            width: 0,
            height: 0,
        };
        let mut ok = true;
        for (key, value) in &map {
            let field = if key.eq_ignore_ascii_case("width") {
                &mut size.width
            } else if key.eq_ignore_ascii_case("height") {
                &mut size.height
            } else {
                continue;
            };
            match value.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(n) => *field = n,
                None => ok = false,
            }
        }
        if !ok {
            break;
        }
        sizes.push(size);
    }
    sizes
}
