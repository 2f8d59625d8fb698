//! Views of the messages a client sends, borrowed from a [`Frame`].
//!
//! Parsing never copies and never panics: a body that does not match its
//! type is a [`Malformed`] error naming the message.

use super::frame::Frame;
use super::wire::Reader;

/// A message body that does not match its type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0} message")]
pub struct Malformed(pub &'static str);

/// A client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// `Q`: a simple query, possibly several statements.
    Query(&'a str),
    /// `P`: prepare a statement.
    Parse {
        /// Statement name; empty is the unnamed statement.
        name: &'a str,
        /// The SQL text.
        sql: &'a str,
        /// Parameter type OIDs the client specified (0 = unspecified).
        param_types: Vec<u32>,
    },
    /// `B`: bind parameters to a statement, creating a portal.
    Bind(Bind<'a>),
    /// `E`: run a portal.
    Execute {
        /// Portal name.
        portal: &'a str,
        /// Row limit; 0 is no limit.
        max_rows: i32,
    },
    /// `D`: describe a statement (`S`) or portal (`P`).
    Describe {
        /// `b'S'` or `b'P'`.
        kind: u8,
        /// Its name.
        name: &'a str,
    },
    /// `C`: close a statement (`S`) or portal (`P`).
    Close {
        /// `b'S'` or `b'P'`.
        kind: u8,
        /// Its name.
        name: &'a str,
    },
    /// `S`: end of an extended-protocol batch.
    Sync,
    /// `H`: flush pending output.
    Flush,
    /// `d`: COPY data.
    CopyData(&'a [u8]),
    /// `c`: COPY finished.
    CopyDone,
    /// `f`: COPY aborted with a message.
    CopyFail(&'a str),
    /// `X`: the client is leaving.
    Terminate,
    /// `p`: a password, SASL or GSS response; the body is opaque here.
    Password(&'a [u8]),
    /// `F`: the legacy function-call sub-protocol.
    FunctionCall,
    /// Any other type byte.
    Unknown(u8),
}

/// The parts of a Bind message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Destination portal; empty is the unnamed portal.
    pub portal: &'a str,
    /// Source statement; empty is the unnamed statement.
    pub statement: &'a str,
    /// Parameter format codes (none: all text; one: applies to all).
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is NULL.
    pub params: Vec<Option<&'a [u8]>>,
    /// Result column format codes.
    pub result_formats: Vec<i16>,
}

impl Bind<'_> {
    /// The format code of parameter `i`, as the protocol defines defaults.
    pub fn param_format(&self, i: usize) -> i16 {
        match self.param_formats.as_slice() {
            [] => 0,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(0),
        }
    }
}

impl<'a> Message<'a> {
    /// Parses a client frame.
    pub fn parse(frame: &'a Frame) -> Result<Self, Malformed> {
        Self::parse_parts(frame.tag(), frame.body())
    }

    /// Parses a client message from its type byte and body.
    pub fn parse_parts(tag: u8, body: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(body);
        let msg = match tag {
            b'Q' => Message::Query(r.cstr().ok_or(Malformed("Query"))?),
            b'P' => parse_parse(&mut r).ok_or(Malformed("Parse"))?,
            b'B' => Message::Bind(parse_bind(&mut r).ok_or(Malformed("Bind"))?),
            b'E' => {
                let portal = r.cstr().ok_or(Malformed("Execute"))?;
                let max_rows = r.i32().ok_or(Malformed("Execute"))?;
                Message::Execute { portal, max_rows }
            }
            b'D' => {
                let kind = r.u8().ok_or(Malformed("Describe"))?;
                let name = r.cstr().ok_or(Malformed("Describe"))?;
                Message::Describe { kind, name }
            }
            b'C' => {
                let kind = r.u8().ok_or(Malformed("Close"))?;
                let name = r.cstr().ok_or(Malformed("Close"))?;
                Message::Close { kind, name }
            }
            b'S' => Message::Sync,
            b'H' => Message::Flush,
            b'd' => Message::CopyData(r.remaining()),
            b'c' => Message::CopyDone,
            b'f' => Message::CopyFail(r.cstr().ok_or(Malformed("CopyFail"))?),
            b'X' => Message::Terminate,
            b'p' => Message::Password(r.remaining()),
            b'F' => Message::FunctionCall,
            other => Message::Unknown(other),
        };
        Ok(msg)
    }
}

fn parse_parse<'a>(r: &mut Reader<'a>) -> Option<Message<'a>> {
    let name = r.cstr()?;
    let sql = r.cstr()?;
    let n = usize::try_from(r.i16()?).ok()?;
    let mut param_types = Vec::with_capacity(n.min(r.remaining().len() / 4));
    for _ in 0..n {
        param_types.push(r.i32()? as u32);
    }
    Some(Message::Parse {
        name,
        sql,
        param_types,
    })
}

fn parse_bind<'a>(r: &mut Reader<'a>) -> Option<Bind<'a>> {
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let param_formats = i16_list(r)?;
    let n = usize::try_from(r.i16()?).ok()?;
    let mut params = Vec::with_capacity(n.min(r.remaining().len() / 4));
    for _ in 0..n {
        params.push(r.value()?);
    }
    let result_formats = i16_list(r)?;
    Some(Bind {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

fn i16_list(r: &mut Reader<'_>) -> Option<Vec<i16>> {
    let n = usize::try_from(r.i16()?).ok()?;
    let mut out = Vec::with_capacity(n.min(r.remaining().len() / 2));
    for _ in 0..n {
        out.push(r.i16()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::encode;

    #[test]
    fn parses_extended_protocol_messages() {
        let f = encode::frame(b'B', |b| {
            b.extend_from_slice(b"p1\0s1\0");
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&2i16.to_be_bytes());
            b.extend_from_slice(&2i32.to_be_bytes());
            b.extend_from_slice(b"42");
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
        });
        let Message::Bind(bind) = Message::parse(&f).unwrap() else {
            panic!("not a bind")
        };
        assert_eq!((bind.portal, bind.statement), ("p1", "s1"));
        assert_eq!(bind.params, vec![Some(&b"42"[..]), None]);
        assert_eq!(bind.param_format(1), 1);
    }

    #[test]
    fn truncated_bodies_are_malformed() {
        for tag in [b'Q', b'P', b'B', b'E', b'D', b'C', b'f'] {
            let f = encode::frame(tag, |b| b.extend_from_slice(b"abc"));
            assert!(Message::parse(&f).is_err(), "{}", tag as char);
        }
        // A Bind claiming 30000 parameters in a short body must not allocate for them.
        let f = encode::frame(b'B', |b| {
            b.extend_from_slice(b"\0\0\0\0");
            b.extend_from_slice(&30000i16.to_be_bytes());
        });
        assert!(Message::parse(&f).is_err());
    }
}
