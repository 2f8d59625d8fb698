//! Views of the messages a server sends, borrowed from a [`Frame`].

use super::frame::Frame;
use super::frontend::Malformed;
use super::wire::Reader;

/// A server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// `R`: an authentication request or result; `code` 0 is AuthenticationOk.
    Authentication {
        /// 0 ok, 3 cleartext, 5 MD5, 10 SASL, 11 SASL continue, 12 SASL final.
        code: i32,
        /// The rest of the body (salt, mechanisms, SASL data).
        data: &'a [u8],
    },
    /// `S`: a run-time parameter's value.
    ParameterStatus {
        /// Parameter name.
        name: &'a str,
        /// Its value.
        value: &'a str,
    },
    /// `K`: the key to cancel this connection's queries.
    BackendKeyData {
        /// Process id.
        pid: i32,
        /// Secret.
        secret: i32,
    },
    /// `Z`: ready for a new query; the transaction status byte.
    ReadyForQuery(u8),
    /// `T`: the columns of the rows that follow.
    RowDescription(Vec<Field<'a>>),
    /// `D`: one row; `None` is NULL.
    DataRow(Vec<Option<&'a [u8]>>),
    /// `C`: a command finished with this tag.
    CommandComplete(&'a str),
    /// `E`: an error.
    ErrorResponse(Fields<'a>),
    /// `N`: a notice.
    NoticeResponse(Fields<'a>),
    /// `A`: a NOTIFY delivered to this session.
    Notification {
        /// The notifying backend's pid.
        pid: i32,
        /// Channel name.
        channel: &'a str,
        /// Payload.
        payload: &'a str,
    },
    /// `G`, `H` or `W`: COPY in, out, or both starts.
    CopyResponse {
        /// The type byte: `G` in, `H` out, `W` both.
        tag: u8,
        /// 0 text, 1 binary.
        format: u8,
    },
    /// `d`: COPY data.
    CopyData(&'a [u8]),
    /// `c`: COPY finished.
    CopyDone,
    /// `1`, `2`, `3`, `n`, `I`, `s`, `t`, `v` and anything else without
    /// fields the gateway needs.
    Other(u8),
}

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// Column name.
    pub name: &'a str,
    /// Table OID, or 0.
    pub table_oid: u32,
    /// Column number in that table, or 0.
    pub column: i16,
    /// Data type OID.
    pub type_oid: u32,
    /// Type size (negative: variable).
    pub type_size: i16,
    /// Type modifier.
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// The fields of an ErrorResponse or NoticeResponse: (code byte, value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields<'a>(pub Vec<(u8, &'a str)>);

impl<'a> Fields<'a> {
    /// The value of field `code` (`b'C'` SQLSTATE, `b'M'` message, …).
    pub fn get(&self, code: u8) -> Option<&'a str> {
        self.0.iter().find(|(c, _)| *c == code).map(|(_, v)| *v)
    }

    /// The non-localized severity (`V`), falling back to `S`.
    pub fn severity(&self) -> &'a str {
        self.get(b'V').or_else(|| self.get(b'S')).unwrap_or("ERROR")
    }
}

impl<'a> Message<'a> {
    /// Parses a server frame.
    pub fn parse(frame: &'a Frame) -> Result<Self, Malformed> {
        Self::parse_parts(frame.tag(), frame.body())
    }

    /// Parses a server message from its type byte and body.
    pub fn parse_parts(tag: u8, body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let msg = match tag {
            b'R' => Message::Authentication {
                code: r.i32().ok_or(Malformed("Authentication"))?,
                data: r.remaining(),
            },
            b'S' => Message::ParameterStatus {
                name: r.cstr().ok_or(Malformed("ParameterStatus"))?,
                value: r.cstr().ok_or(Malformed("ParameterStatus"))?,
            },
            b'K' => Message::BackendKeyData {
                pid: r.i32().ok_or(Malformed("BackendKeyData"))?,
                secret: r.i32().ok_or(Malformed("BackendKeyData"))?,
            },
            b'Z' => Message::ReadyForQuery(r.u8().ok_or(Malformed("ReadyForQuery"))?),
            b'T' => Message::RowDescription(fields(&mut r).ok_or(Malformed("RowDescription"))?),
            b'D' => Message::DataRow(values(&mut r).ok_or(Malformed("DataRow"))?),
            b'C' => Message::CommandComplete(r.cstr().ok_or(Malformed("CommandComplete"))?),
            b'E' => {
                Message::ErrorResponse(notice_fields(&mut r).ok_or(Malformed("ErrorResponse"))?)
            }
            b'N' => {
                Message::NoticeResponse(notice_fields(&mut r).ok_or(Malformed("NoticeResponse"))?)
            }
            b'A' => Message::Notification {
                pid: r.i32().ok_or(Malformed("NotificationResponse"))?,
                channel: r.cstr().ok_or(Malformed("NotificationResponse"))?,
                payload: r.cstr().ok_or(Malformed("NotificationResponse"))?,
            },
            tag @ (b'G' | b'H' | b'W') => Message::CopyResponse {
                tag,
                format: r.u8().ok_or(Malformed("CopyResponse"))?,
            },
            b'd' => Message::CopyData(r.remaining()),
            b'c' => Message::CopyDone,
            other => Message::Other(other),
        };
        Ok(msg)
    }
}

fn fields<'a>(r: &mut Reader<'a>) -> Option<Vec<Field<'a>>> {
    let n = usize::try_from(r.i16()?).ok()?;
    let mut out = Vec::with_capacity(n.min(r.remaining().len() / 19));
    for _ in 0..n {
        out.push(Field {
            name: r.cstr()?,
            table_oid: r.i32()? as u32,
            column: r.i16()?,
            type_oid: r.i32()? as u32,
            type_size: r.i16()?,
            type_modifier: r.i32()?,
            format: r.i16()?,
        });
    }
    Some(out)
}

fn values<'a>(r: &mut Reader<'a>) -> Option<Vec<Option<&'a [u8]>>> {
    let n = usize::try_from(r.i16()?).ok()?;
    let mut out = Vec::with_capacity(n.min(r.remaining().len() / 4));
    for _ in 0..n {
        out.push(r.value()?);
    }
    Some(out)
}

fn notice_fields<'a>(r: &mut Reader<'a>) -> Option<Fields<'a>> {
    let mut out = Vec::new();
    loop {
        let code = r.u8()?;
        if code == 0 {
            return Some(Fields(out));
        }
        out.push((code, r.cstr()?));
    }
}

/// The fields of an ErrorResponse or NoticeResponse body in any client
/// encoding: values that are not UTF-8 are decoded lossily. Stops at the
/// first malformed field.
pub fn notice_fields_lossy(body: &[u8]) -> Vec<(u8, String)> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    while let Some(code) = r.u8().filter(|c| *c != 0) {
        let Some(value) = r.cstr_bytes() else { break };
        out.push((code, String::from_utf8_lossy(value).into_owned()));
    }
    out
}

/// The row count at the end of a CommandComplete tag (`SELECT 5`,
/// `INSERT 0 5`, `COPY 5`), if the command reports one.
pub fn tag_rows(tag: &str) -> Option<u64> {
    let (verb, rest) = tag.split_once(' ')?;
    let count = rest.rsplit(' ').next()?;
    match verb {
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "COPY" | "FETCH" | "MOVE" => {
            count.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::encode;

    #[test]
    fn error_fields() {
        let f = encode::error_response("ERROR", "42P01", "relation \"x\" does not exist", None);
        let Message::ErrorResponse(fields) = Message::parse(&f).unwrap() else {
            panic!()
        };
        assert_eq!(fields.get(b'C'), Some("42P01"));
        assert_eq!(fields.severity(), "ERROR");
    }

    #[test]
    fn row_counts_from_tags() {
        assert_eq!(tag_rows("SELECT 100000"), Some(100_000));
        assert_eq!(tag_rows("INSERT 0 3"), Some(3));
        assert_eq!(tag_rows("CREATE TABLE"), None);
        assert_eq!(tag_rows("BEGIN"), None);
    }

    #[test]
    fn truncated_bodies_are_malformed() {
        for tag in [
            b'R', b'S', b'K', b'Z', b'T', b'D', b'C', b'E', b'N', b'A', b'G',
        ] {
            let f = encode::frame(tag, |b| b.extend_from_slice(b"\x00\x01"));
            let _ = Message::parse(&f);
            let f = encode::frame(tag, |_| {});
            assert!(Message::parse(&f).is_err(), "{}", tag as char);
        }
    }
}
