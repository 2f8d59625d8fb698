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

use bytes::{Buf, BufMut, BytesMut};

use super::{Notes, Opcode, Role, WsError, WsErrorKind, WsLimits, WsMessage};

/// Longest control payload (§5.5).
const MAX_CONTROL: u64 = 125;

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

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    non_minimal: bool,
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
    /// and not drained are dropped.
    pub fn finish(&mut self) -> Option<WsMessage> {
        let failed = matches!(self.state, State::Failed { .. });
        self.state = State::Done;
        self.input = BytesMut::new();
        let mut partial = self.message.take()?;
        if failed {
            return None;
        }
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
                let first = usize::try_from(h.len)
                    .unwrap_or(usize::MAX)
                    .min(self.limits.max_message);
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

/// `N` bytes of `buf` from `at`, if there are that many.
fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// Parses a frame header from the start of `buf`: `Ok(None)` if more bytes
/// are needed, else the header and its length. Checks what the header
/// alone can show (RSV bits, reserved opcodes, masking for `role`, control
/// frame rules, the 64-bit length's top bit) as soon as the two fixed
/// bytes are in.
fn parse_header(buf: &[u8], role: Role) -> Result<Option<(Header, usize)>, WsErrorKind> {
    let Some([b0, b1]) = array::<2>(buf, 0) else {
        return Ok(None);
    };
    let fin = b0 & 0x80 != 0;
    let rsv = b0 & 0x70;
    let opcode = b0 & 0x0f;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    if rsv != 0 {
        return Err(WsErrorKind::ReservedBits(rsv));
    }
    if matches!(opcode, 0x3..=0x7 | 0xB..=0xF) {
        return Err(WsErrorKind::ReservedOpcode(opcode));
    }
    match (role, masked) {
        (Role::Client, false) => return Err(WsErrorKind::UnmaskedClientFrame),
        (Role::Server, true) => return Err(WsErrorKind::MaskedServerFrame),
        _ => {}
    }
    let control = opcode >= 0x8;
    if control && !fin {
        return Err(WsErrorKind::FragmentedControl);
    }
    let (len, non_minimal, mut at) = match len7 {
        126 => {
            let Some(b) = array::<2>(buf, 2) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes(b));
            (len, len < 126, 4)
        }
        127 => {
            let Some(b) = array::<8>(buf, 2) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(b);
            if len >> 63 != 0 {
                return Err(WsErrorKind::LengthOverflow);
            }
            (len, len < 0x1_0000, 10)
        }
        short => (u64::from(short), false, 2),
    };
    if control && len > MAX_CONTROL {
        return Err(WsErrorKind::ControlTooLong(len));
    }
    let mask = if masked {
        let Some(key) = array::<4>(buf, at) else {
            return Ok(None);
        };
        at += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some((
        Header {
            fin,
            opcode,
            mask,
            len,
            non_minimal,
        },
        at,
    )))
}

/// Appends `chunk` to `out`, unmasked with `mask` starting at `position`
/// (0–3) in the key.
fn unmask_into(out: &mut BytesMut, chunk: &[u8], mask: Option<[u8; 4]>, position: usize) {
    let start = out.len();
    out.put_slice(chunk);
    let (Some(mut key), Some(tail)) = (mask, out.get_mut(start..)) else {
        return;
    };
    key.rotate_left(position % 4);
    let mut words = tail.chunks_exact_mut(4);
    for word in &mut words {
        for (b, k) in word.iter_mut().zip(key) {
            *b ^= k;
        }
    }
    for (b, k) in words.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// The status code and reason of a close body (§5.5.1), noting a malformed
/// one.
fn parse_close(body: &[u8], notes: &mut Notes) -> Option<(u16, String)> {
    let Some(code) = array::<2>(body, 0).map(u16::from_be_bytes) else {
        // Empty: no status (1005 to the application). One byte: malformed.
        notes.bad_close |= !body.is_empty();
        return None;
    };
    notes.bad_close |= !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    let reason = body.get(2..).unwrap_or_default();
    let reason = match std::str::from_utf8(reason) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            notes.invalid_utf8 = true;
            String::from_utf8_lossy(reason).into_owned()
        }
    };
    Some((code, reason))
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
