//! One frame's header on the wire (RFC 6455 §5.2), the masking of its
//! payload (§5.3), and the body of a close frame (§5.5.1): the pieces of
//! [`super::decoder`] that look at bytes rather than at state.

use bytes::{BufMut, BytesMut};

use super::{Notes, Role, WsErrorKind};

/// Longest control payload (§5.5).
const MAX_CONTROL: u64 = 125;

/// A parsed frame header.
pub(super) struct Header {
    pub(super) fin: bool,
    pub(super) opcode: u8,
    pub(super) mask: Option<[u8; 4]>,
    pub(super) len: u64,
    pub(super) non_minimal: bool,
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
pub(super) fn parse_header(buf: &[u8], role: Role) -> Result<Option<(Header, usize)>, WsErrorKind> {
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
pub(super) fn unmask_into(
    out: &mut BytesMut,
    chunk: &[u8],
    mask: Option<[u8; 4]>,
    position: usize,
) {
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
pub(super) fn parse_close(body: &[u8], notes: &mut Notes) -> Option<(u16, String)> {
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
