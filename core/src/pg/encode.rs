//! Encoders for the messages the gateway itself sends: the body is written
//! first, the length filled in afterwards.

use bytes::Bytes;

use super::frame::Frame;
use super::wire::put_cstr;

/// Builds a tagged frame: `tag`, then a length, then whatever `body` writes.
pub fn frame(tag: u8, body: impl FnOnce(&mut Vec<u8>)) -> Frame {
    let mut out = vec![tag, 0, 0, 0, 0];
    body(&mut out);
    fill_len(&mut out, 1);
    Frame::from_encoded(Bytes::from(out))
}

/// Writes the big-endian length of `out[at..]` into `out[at..at + 4]`.
fn fill_len(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as i32;
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

/// An ErrorResponse (or, with severity `NOTICE`/`WARNING`, the same fields).
/// `severity` is sent both as `S` and as the non-localized `V`.
pub fn error_response(severity: &str, code: &str, message: &str, hint: Option<&str>) -> Frame {
    frame(b'E', |b| notice_body(b, severity, code, message, hint))
}

/// A NoticeResponse.
pub fn notice_response(severity: &str, code: &str, message: &str, hint: Option<&str>) -> Frame {
    frame(b'N', |b| notice_body(b, severity, code, message, hint))
}

fn notice_body(b: &mut Vec<u8>, severity: &str, code: &str, message: &str, hint: Option<&str>) {
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        b.push(field);
        put_cstr(b, value.as_bytes());
    }
    if let Some(hint) = hint {
        b.push(b'H');
        put_cstr(b, hint.as_bytes());
    }
    b.push(0);
}

/// `R` with an authentication code and extra data.
pub fn authentication(code: i32, data: &[u8]) -> Frame {
    frame(b'R', |b| {
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(data);
    })
}

/// BackendKeyData.
pub fn backend_key_data(pid: i32, secret: i32) -> Frame {
    frame(b'K', |b| {
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&secret.to_be_bytes());
    })
}

/// ReadyForQuery with a transaction status (`I`, `T` or `E`).
pub fn ready_for_query(status: u8) -> Frame {
    frame(b'Z', |b| b.push(status))
}

/// NegotiateProtocolVersion: the newest minor version supported and the
/// protocol options (`_pq_.*`) that were not recognized.
pub fn negotiate_protocol_version(minor: i32, unrecognized: &[&str]) -> Frame {
    frame(b'v', |b| {
        b.extend_from_slice(&minor.to_be_bytes());
        b.extend_from_slice(&(unrecognized.len() as i32).to_be_bytes());
        for opt in unrecognized {
            put_cstr(b, opt.as_bytes());
        }
    })
}

/// A protocol 3.0 StartupMessage (untagged).
pub fn startup_message<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Bytes {
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(&0x0003_0000i32.to_be_bytes());
    for (name, value) in params {
        put_cstr(&mut out, name.as_bytes());
        put_cstr(&mut out, value.as_bytes());
    }
    out.push(0);
    fill_len(&mut out, 0);
    Bytes::from(out)
}

/// A CancelRequest (untagged) for the given key.
pub fn cancel_request(pid: i32, secret: i32) -> Bytes {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&16i32.to_be_bytes());
    out.extend_from_slice(&80_877_102i32.to_be_bytes());
    out.extend_from_slice(&pid.to_be_bytes());
    out.extend_from_slice(&secret.to_be_bytes());
    Bytes::from(out)
}

/// A PasswordMessage carrying a NUL-terminated password.
pub fn password_message(password: &[u8]) -> Frame {
    frame(b'p', |b| put_cstr(b, password))
}

/// SASLInitialResponse for `mechanism` with the client-first message.
pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Frame {
    frame(b'p', |b| {
        put_cstr(b, mechanism.as_bytes());
        b.extend_from_slice(&(data.len() as i32).to_be_bytes());
        b.extend_from_slice(data);
    })
}

/// SASLResponse with raw data.
pub fn sasl_response(data: &[u8]) -> Frame {
    frame(b'p', |b| b.extend_from_slice(data))
}

/// Terminate.
pub fn terminate() -> Frame {
    frame(b'X', |_| {})
}
