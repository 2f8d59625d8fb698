//! Resetting a logged-in target connection so another session can use it,
//! sans-IO: what to send, and reading the answer.
//!
//! `SELECT pg_advisory_unlock_all()` (session advisory locks survive
//! `DISCARD`), then `DISCARD ALL` (temporary tables, prepared statements,
//! `SET`s, `LISTEN`s, cursors, plans). The reset succeeds only if both run
//! without error and the target ends idle with nothing more to say; the
//! ParameterStatus messages it sends update the greeting the next client
//! gets.

use bytes::{Bytes, BytesMut};

use super::encode;
use super::frame::{self, Frame};
use super::upstream::LoggedIn;

/// The largest frame a reset reads.
const MAX_FRAME: usize = 1 << 20;

/// The reset's two queries, to send in one write.
pub fn request() -> Bytes {
    let mut out = BytesMut::new();
    for sql in ["SELECT pg_advisory_unlock_all()", "DISCARD ALL"] {
        let f = encode::frame(b'Q', |b| super::wire::put_cstr(b, sql.as_bytes()));
        out.extend_from_slice(f.bytes());
    }
    out.freeze()
}

/// Reads the target's answer to [`request`].
#[derive(Debug)]
pub struct Reset {
    login: LoggedIn,
    ready: u8,
}

/// The reset did not leave the connection clean: close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetFailed;

impl Reset {
    /// Reading the reset of a connection greeted with `login`.
    pub fn new(login: LoggedIn) -> Self {
        Reset { login, ready: 0 }
    }

    /// Consumes the whole frames in `buf`: `None` while more is needed,
    /// then the updated greeting, or [`ResetFailed`].
    pub fn feed(&mut self, buf: &mut BytesMut) -> Option<Result<LoggedIn, ResetFailed>> {
        loop {
            let f = match frame::decode(buf, MAX_FRAME) {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(_) => return Some(Err(ResetFailed)),
            };
            match f.tag() {
                b'E' => return Some(Err(ResetFailed)),
                b'S' => self.update_parameter(f),
                b'Z' => {
                    self.ready += 1;
                    if self.ready == 2 {
                        let idle = f.body().first() == Some(&b'I') && buf.is_empty();
                        return Some(if idle {
                            Ok(self.login.clone())
                        } else {
                            Err(ResetFailed)
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// Replaces (or adds) the ParameterStatus frame with `f`'s name.
    fn update_parameter(&mut self, f: Frame) {
        let name = |fr: &Frame| -> Vec<u8> {
            fr.body()
                .split(|b| *b == 0)
                .next()
                .unwrap_or_default()
                .to_vec()
        };
        let new = name(&f);
        match self.login.parameters.iter_mut().find(|p| name(p) == new) {
            Some(slot) => *slot = f,
            None => self.login.parameters.push(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login() -> LoggedIn {
        LoggedIn {
            parameters: vec![encode::frame(b'S', |b| {
                b.extend_from_slice(b"TimeZone\0UTC\0")
            })],
            notices: Vec::new(),
            key: Some((1, 2)),
            ready: encode::ready_for_query(b'I'),
        }
    }

    fn answer(parts: &[Frame]) -> BytesMut {
        let mut b = BytesMut::new();
        for p in parts {
            b.extend_from_slice(p.bytes());
        }
        b
    }

    fn complete(tag: &str) -> Frame {
        encode::frame(b'C', |b| super::super::wire::put_cstr(b, tag.as_bytes()))
    }

    #[test]
    fn a_clean_reset_updates_the_parameters() {
        let mut r = Reset::new(login());
        let mut buf = answer(&[
            complete("SELECT 1"),
            encode::ready_for_query(b'I'),
            encode::frame(b'S', |b| b.extend_from_slice(b"TimeZone\0Europe/Paris\0")),
            complete("DISCARD ALL"),
        ]);
        assert!(r.feed(&mut buf).is_none(), "one ReadyForQuery to go");
        buf.extend_from_slice(encode::ready_for_query(b'I').bytes());
        let done = r.feed(&mut buf).expect("done").expect("clean");
        assert_eq!(done.parameters.len(), 1);
        assert!(done.parameters[0].body().ends_with(b"Europe/Paris\0"));
    }

    #[test]
    fn an_error_or_a_transaction_fails_the_reset() {
        let mut r = Reset::new(login());
        let mut buf = answer(&[encode::error_response("ERROR", "25001", "x", None)]);
        assert_eq!(r.feed(&mut buf).map(|r| r.is_err()), Some(true));
        let mut r = Reset::new(login());
        let mut buf = answer(&[encode::ready_for_query(b'I'), encode::ready_for_query(b'T')]);
        assert_eq!(r.feed(&mut buf).map(|r| r.is_err()), Some(true));
    }
}
