//! [`WsDecoder`]: RFC 6455 frames in, whole messages out, one direction of
//! one connection, sans-IO.
//!
//! Call order: [`WsDecoder::feed`] each chunk the relay forwarded, then
//! [`WsDecoder::next_message`] until it returns `None` (it needs more
//! bytes, or it has stopped), and at the end of the stream
//! [`WsDecoder::finish`] for a message the connection cut short. Feeding
//! without draining is allowed but buffers the undrained bytes.
//!
//! States: reading a frame header (at most 14 bytes buffered), reading a
//! frame's payload (streamed through: unmasked into the open message up to
//! the limit, the rest counted and dropped), stopped by a protocol error
//! (reported once; later bytes are counted and dropped), or finished.

use bytes::{Buf, BytesMut};

use super::frame::{Header, parse_close, parse_header, unmask_into};
use super::{Notes, Opcode, Role, WsError, WsErrorKind, WsLimits, WsMessage};

/// The most a message's buffer reserves before its bytes arrive.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// Decodes one direction of a WebSocket connection into messages.
///
/// See the [module docs](self) for the call order. Never panics, whatever
/// the bytes; memory stays within [`WsLimits::max_message`] plus 125 bytes
/// of control payload plus the input fed and not yet drained.
#[derive(Debug)]
pub struct WsDecoder {
    role: Role,
    limits: WsLimits,
    /// Fed and not yet decoded.
    input: BytesMut,
    /// Stream offset of `input`'s first byte.
    offset: u64,
    state: State,
    /// The data message being assembled (its first frame seen, not its
    /// last).
    message: Option<Partial>,
    /// This side sent a close frame.
    closed: bool,
}

#[derive(Debug)]
enum State {
    /// Expecting a frame header.
    Header,
    /// Inside a frame's payload.
    Payload(Frame),
    /// Stopped by a protocol error; `reported` once `next_message` has
    /// returned it.
    Failed { error: WsError, reported: bool },
    /// [`WsDecoder::finish`] was called.
    Done,
}

/// The frame whose payload is being read.
#[derive(Debug)]
struct Frame {
    fin: bool,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Payload bytes read so far (also the position in the mask).
    read: u64,
    /// `None` for a data frame (its payload goes to the open message), the
    /// opcode and payload of a control frame otherwise.
    control: Option<(Opcode, BytesMut)>,
    non_minimal: bool,
}

/// A data message being assembled.
#[derive(Debug)]
struct Partial {
    opcode: Opcode,
    kept: BytesMut,
    len: u64,
    frames: u32,
    notes: Notes,
}

impl WsDecoder {
    /// A decoder for the bytes `role` sends.
    pub fn new(role: Role, limits: WsLimits) -> Self {
        WsDecoder {
            role,
            limits,
            input: BytesMut::new(),
            offset: 0,
            state: State::Header,
            message: None,
            closed: false,
        }
    }

    /// Hands the decoder the next bytes of the stream (a copy of what the
    /// relay forwarded). After an error or [`finish`](Self::finish) the
    /// bytes are counted and dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        match self.state {
            State::Header | State::Payload(_) => self.input.extend_from_slice(bytes),
            State::Failed { .. } | State::Done => {
                self.offset = self.offset.saturating_add(bytes.len() as u64);
            }
        }
    }

    /// The next complete message, the protocol error that stopped the
    /// decoder (returned once), or `None` when more bytes are needed or the
    /// decoder has stopped.
    pub fn next_message(&mut self) -> Option<Result<WsMessage, WsError>> {
        loop {
            match &mut self.state {
                State::Done => return None,
                State::Failed { error, reported } => {
                    if *reported {
                        return None;
                    }
                    *reported = true;
                    return Some(Err(error.clone()));
                }
                State::Header => {
                    if self.input.is_empty() {
                        return None;
                    }
                    let start = self.offset;
                    if self.closed {
                        self.fail(start, WsErrorKind::FrameAfterClose);
                        continue;
                    }
                    match parse_header(&self.input, self.role) {
                        Ok(None) => return None,
                        Err(kind) => self.fail(start, kind),
                        Ok(Some((header, n))) => {
                            self.consume(n);
                            if let Err(kind) = self.begin_frame(header) {
                                self.fail(start, kind);
                            }
                        }
                    }
                }
                State::Payload(frame) => {
                    let remaining = frame.len - frame.read;
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    if take == 0 && remaining > 0 {
                        return None;
                    }
                    let chunk = self.input.get(..take).unwrap_or_default();
                    let position = (frame.read % 4) as usize;
                    match (&mut frame.control, &mut self.message) {
                        (Some((_, kept)), _) => unmask_into(kept, chunk, frame.mask, position),
                        (None, Some(message)) => {
                            let room = self.limits.max_message.saturating_sub(message.kept.len());
                            let kept = chunk.get(..room.min(take)).unwrap_or_default();
                            unmask_into(&mut message.kept, kept, frame.mask, position);
                        }
                        // A data frame always has its message open.
                        (None, None) => {}
                    }
                    frame.read += take as u64;
                    let done = frame.read == frame.len;
                    self.consume(take);
                    if done
                        && let State::Payload(frame) =
                            std::mem::replace(&mut self.state, State::Header)
                        && let Some(message) = self.end_frame(frame)
                    {
                        return Some(Ok(message));
                    }
                }
            }
        }
    }

    /// Ends the stream: returns the data message the connection cut short,
    /// if any (flagged truncated and [`Notes::incomplete`]), and stops the
    /// decoder. Drain [`next_message`](Self::next_message) first: bytes fed
    /// and not drained are dropped. A decoder stopped by an error stays as
    /// it is (and keeps its [`error`](Self::error)).
    pub fn finish(&mut self) -> Option<WsMessage> {
        self.offset = self.offset();
        self.input = BytesMut::new();
        if matches!(self.state, State::Failed { .. }) {
            return None;
        }
        self.state = State::Done;
        let mut partial = self.message.take()?;
        partial.notes.incomplete = true;
        let mut message = partial.into_message();
        message.truncated = true;
        Some(message)
    }

    /// How many bytes of the stream the decoder has been fed.
    pub fn offset(&self) -> u64 {
        self.offset.saturating_add(self.input.len() as u64)
    }

    /// The protocol error that stopped the decoder, if one did.
    pub fn error(&self) -> Option<&WsError> {
        match &self.state {
            State::Failed { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The role whose bytes this decoder reads.
    pub fn role(&self) -> Role {
        self.role
    }

    fn consume(&mut self, n: usize) {
        self.input.advance(n.min(self.input.len()));
        self.offset = self.offset.saturating_add(n as u64);
    }

    fn fail(&mut self, offset: u64, kind: WsErrorKind) {
        self.offset = self.offset.saturating_add(self.input.len() as u64);
        self.input = BytesMut::new();
        self.message = None;
        self.state = State::Failed {
            error: WsError { offset, kind },
            reported: false,
        };
    }

    /// Checks a header against the decoder's state and enters its payload.
    fn begin_frame(&mut self, h: Header) -> Result<(), WsErrorKind> {
        let control = match h.opcode {
            0x0 => {
                let message = self
                    .message
                    .as_mut()
                    .ok_or(WsErrorKind::UnexpectedContinuation)?;
                message.len = message.len.saturating_add(h.len);
                message.notes.non_minimal_length |= h.non_minimal;
                None
            }
            0x1 | 0x2 => {
                if self.message.is_some() {
                    return Err(WsErrorKind::ExpectedContinuation);
                }
                let opcode = if h.opcode == 0x1 {
                    Opcode::Text
                } else {
                    Opcode::Binary
                };
                // Room for the first frame, but not on the peer's word
                // alone: a header announcing a megabyte costs no megabyte
                // until the bytes come.
                let first = usize::try_from(h.len)
                    .unwrap_or(usize::MAX)
                    .min(self.limits.max_message)
                    .min(INITIAL_CAPACITY);
                self.message = Some(Partial {
                    opcode,
                    kept: BytesMut::with_capacity(first),
                    len: h.len,
                    frames: 0,
                    notes: Notes {
                        non_minimal_length: h.non_minimal,
                        ..Notes::default()
                    },
                });
                None
            }
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            other => return Err(WsErrorKind::ReservedOpcode(other)),
        };
        self.state = State::Payload(Frame {
            fin: h.fin,
            mask: h.mask,
            len: h.len,
            read: 0,
            control: control.map(|op| (op, BytesMut::with_capacity(h.len as usize))),
            non_minimal: h.non_minimal,
        });
        Ok(())
    }

    /// A frame's payload is complete: the message it ends, if it ends one.
    fn end_frame(&mut self, frame: Frame) -> Option<WsMessage> {
        if let Some((opcode, payload)) = frame.control {
            let mut notes = Notes {
                non_minimal_length: frame.non_minimal,
                ..Notes::default()
            };
            let close = if opcode == Opcode::Close {
                self.closed = true;
                parse_close(&payload, &mut notes)
            } else {
                None
            };
            return Some(WsMessage {
                opcode,
                payload: payload.freeze(),
                len: frame.len,
                truncated: false,
                frames: 1,
                close,
                notes,
            });
        }
        let message = self.message.as_mut()?;
        message.frames = message.frames.saturating_add(1);
        if !frame.fin {
            return None;
        }
        self.message.take().map(Partial::into_message)
    }
}

impl Partial {
    fn into_message(mut self) -> WsMessage {
        let truncated = (self.kept.len() as u64) < self.len;
        if self.opcode == Opcode::Text
            && let Err(e) = std::str::from_utf8(&self.kept)
            // A character cut by the truncation is not an error.
            && (e.error_len().is_some() || !truncated)
        {
            self.notes.invalid_utf8 = true;
        }
        WsMessage {
            opcode: self.opcode,
            payload: self.kept.freeze(),
            len: self.len,
            truncated,
            frames: self.frames,
            close: None,
            notes: self.notes,
        }
    }
}

#[doc(hidden)]
impl WsDecoder {
    /// Bytes held (input, open message, control payload): for the memory
    /// bound checks of the tests and the fuzz target.
    pub fn held(&self) -> usize {
        let control = match &self.state {
            State::Payload(Frame {
                control: Some((_, kept)),
                ..
            }) => kept.len(),
            _ => 0,
        };
        self.input.len() + self.message.as_ref().map_or(0, |m| m.kept.len()) + control
    }
}
