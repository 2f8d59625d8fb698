//! Tests of the WebSocket decoder against RFC 6455's own examples and
//! against frames written (and read back) by `tungstenite`, fed whole, byte
//! by byte and split at every boundary.

mod frames;
mod k8s;

use std::io::{Cursor, Read, Write};

use bytes::Bytes;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::{CloseFrame, Role as TRole, WebSocket};
use tungstenite::{Message, Utf8Bytes};

use super::*;

/// A stream for tungstenite: writes collect in `out`, reads come from `input`.
#[derive(Default)]
struct Pipe {
    input: Cursor<Vec<u8>>,
    out: Vec<u8>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.input.read(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `role` puts on the wire for `messages`, as tungstenite writes it
/// (client frames masked with random keys).
fn wire(role: Role, messages: Vec<Message>) -> Vec<u8> {
    let trole = match role {
        Role::Client => TRole::Client,
        Role::Server => TRole::Server,
    };
    let mut ws = WebSocket::from_raw_socket(Pipe::default(), trole, None);
    for m in messages {
        ws.send(m).unwrap();
    }
    std::mem::take(&mut ws.get_mut().out)
}

/// Reads `bytes` (sent by `role`) back with tungstenite, as the receiving
/// peer would: the oracle for the differential tests.
fn tungstenite_reads(role: Role, bytes: &[u8]) -> Vec<Message> {
    let receiver = match role {
        Role::Client => TRole::Server,
        Role::Server => TRole::Client,
    };
    let pipe = Pipe {
        input: Cursor::new(bytes.to_vec()),
        out: Vec::new(),
    };
    let mut ws = WebSocket::from_raw_socket(pipe, receiver, None);
    let mut out = Vec::new();
    while let Ok(m) = ws.read() {
        out.push(m);
    }
    out
}

fn text(s: &str) -> Message {
    Message::Text(Utf8Bytes::from(s))
}

fn binary(b: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(b))
}

fn fragment(data: &[u8], opcode: OpCode, fin: bool) -> Message {
    Message::Frame(Frame::message(Bytes::copy_from_slice(data), opcode, fin))
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

const TEXT: OpCode = OpCode::Data(Data::Text);
const BINARY: OpCode = OpCode::Data(Data::Binary);
const CONTINUE: OpCode = OpCode::Data(Data::Continue);

/// Everything the decoder yields for `chunks`, in order, then `finish`.
fn decode_chunks<'a>(
    role: Role,
    limits: WsLimits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<Result<WsMessage, WsError>>, Option<WsMessage>) {
    let mut d = WsDecoder::new(role, limits);
    let mut out = Vec::new();
    for chunk in chunks {
        d.feed(chunk);
        while let Some(m) = d.next_message() {
            out.push(m);
        }
    }
    let tail = d.finish();
    (out, tail)
}

fn decode(role: Role, bytes: &[u8]) -> Vec<Result<WsMessage, WsError>> {
    let (out, tail) = decode_chunks(role, WsLimits::default(), [bytes]);
    assert_eq!(tail, None, "a message left open");
    out
}

fn ok(results: Vec<Result<WsMessage, WsError>>) -> Vec<WsMessage> {
    results.into_iter().map(|r| r.unwrap()).collect()
}

/// Decodes `bytes` whole, byte by byte, and split in two at every boundary
/// (and three ways around the middle), asserting every way gives the same
/// as the whole.
fn decode_every_split(
    role: Role,
    limits: WsLimits,
    bytes: &[u8],
) -> Vec<Result<WsMessage, WsError>> {
    let (whole, whole_tail) = decode_chunks(role, limits, [bytes]);
    let (bytewise, tail) = decode_chunks(role, limits, bytes.chunks(1));
    assert_eq!(bytewise, whole, "byte by byte");
    assert_eq!(tail, whole_tail);
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        let (split, tail) = decode_chunks(role, limits, [a, b]);
        assert_eq!(split, whole, "split at {at}");
        assert_eq!(tail, whole_tail, "split at {at}");
        let mid = bytes.len() / 2;
        if at < mid {
            let parts = [&bytes[..at], &bytes[at..mid], &bytes[mid..]];
            let (split, _) = decode_chunks(role, limits, parts);
            assert_eq!(split, whole, "split at {at} and {mid}");
        }
    }
    whole
}

/// What a message comes to: opcode, payload, close code and reason.
type View = (Opcode, Vec<u8>, Option<(u16, String)>);

/// The decoder's view of a tungstenite message.
fn expected(m: &Message) -> Option<View> {
    Some(match m {
        Message::Text(t) => (Opcode::Text, t.as_bytes().to_vec(), None),
        Message::Binary(b) => (Opcode::Binary, b.to_vec(), None),
        Message::Ping(b) => (Opcode::Ping, b.to_vec(), None),
        Message::Pong(b) => (Opcode::Pong, b.to_vec(), None),
        Message::Close(None) => (Opcode::Close, Vec::new(), None),
        Message::Close(Some(f)) => {
            let mut body = u16::from(f.code).to_be_bytes().to_vec();
            body.extend_from_slice(f.reason.as_bytes());
            (
                Opcode::Close,
                body,
                Some((f.code.into(), f.reason.to_string())),
            )
        }
        Message::Frame(_) => return None,
    })
}

fn view(m: &WsMessage) -> View {
    (m.opcode, m.payload.to_vec(), m.close.clone())
}
