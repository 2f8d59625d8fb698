//! Lexing the scalar tokens across chunks: where a token ends, holding
//! the part that runs past a chunk, and the limit on what is held.

use bytes::BytesMut;

use super::super::BodyMaskError;
use super::super::escape::in_number;
use super::super::hits::HitRule;
use super::{JsonMaskStream, LIMIT_REPLACEMENT, Token, place};

/// Held buffers grown past this are freed once their token is done, so an
/// idle stream does not keep a large value's memory.
const KEEP_CAPACITY: usize = 64 * 1024;

impl JsonMaskStream {
    /// Lexes the token starting at `c[s]`. Returns where it ended, or `None`
    /// when it runs past the chunk (then it is held and `c` fully handled).
    pub(super) fn lex(
        &mut self,
        c: &[u8],
        s: usize,
        flushed: &mut usize,
        out: &mut BytesMut,
    ) -> Result<Option<usize>, BodyMaskError> {
        let from = if matches!(self.token, Token::Str { .. }) {
            s + 1
        } else {
            s
        };
        match self.scan(c, from)? {
            Some(e) => {
                let raw = c.get(s..e).unwrap_or_default();
                if self.complete(raw)? {
                    out.extend_from_slice(c.get(*flushed..s).unwrap_or_default());
                    out.extend_from_slice(&self.repl);
                    *flushed = e;
                }
                if raw.len() > KEEP_CAPACITY {
                    self.shrink();
                }
                Ok(Some(e))
            }
            None => {
                out.extend_from_slice(c.get(*flushed..s).unwrap_or_default());
                *flushed = c.len();
                self.hold.clear();
                self.hold.extend_from_slice(c.get(s..).unwrap_or_default());
                self.check_hold(out)?;
                Ok(None)
            }
        }
    }

    /// Continues a held token at the start of `c`: where it ended, or `None`
    /// when it runs past this chunk too.
    pub(super) fn resume(
        &mut self,
        c: &[u8],
        out: &mut BytesMut,
    ) -> Result<Option<usize>, BodyMaskError> {
        let skip = matches!(self.token, Token::Str { skip: true, .. });
        let Some(e) = self.scan(c, 0)? else {
            if !skip {
                self.hold.extend_from_slice(c);
                self.check_hold(out)?;
            }
            return Ok(None);
        };
        let mut hold = std::mem::take(&mut self.hold);
        if !skip {
            hold.extend_from_slice(c.get(..e).unwrap_or_default());
        }
        let replaced = self.complete(&hold);
        if let Ok(replaced) = replaced
            && !skip
        {
            out.extend_from_slice(if replaced { &self.repl } else { &hold });
        }
        hold.clear();
        self.hold = hold;
        self.shrink();
        replaced.map(|_| Some(e))
    }

    /// Scans the current token from `c[from]`: the end of the token, or
    /// `None` if it goes on past `c`.
    fn scan(&mut self, c: &[u8], from: usize) -> Result<Option<usize>, BodyMaskError> {
        match &mut self.token {
            Token::None => Ok(Some(from)),
            Token::Str { escape, .. } => Ok(scan_string(c, from, escape)),
            Token::Num => Ok(c
                .get(from..)
                .unwrap_or_default()
                .iter()
                .position(|&b| !in_number(b))
                .map(|p| from + p)),
            Token::Lit { word, seen } => {
                let offset = self.token_start;
                let mut i = from;
                loop {
                    let Some(&want) = word.get(*seen) else {
                        return Ok(Some(i));
                    };
                    let Some(&b) = c.get(i) else {
                        return Ok(None);
                    };
                    if b != want {
                        return Err(BodyMaskError::Syntax {
                            offset,
                            what: "invalid literal",
                        });
                    }
                    *seen += 1;
                    i += 1;
                }
            }
        }
    }

    /// Enforces the limit on the held token; a string value past it is
    /// replaced now and its remaining bytes dropped as they come.
    fn check_hold(&mut self, out: &mut BytesMut) -> Result<(), BodyMaskError> {
        if self.hold.len() <= self.limits.max_value {
            return Ok(());
        }
        match self.token {
            Token::Str {
                key: false,
                escape,
                skip: false,
            } => {
                self.hold.clear();
                self.token = Token::Str {
                    key: false,
                    escape,
                    skip: true,
                };
                self.tally.add(HitRule::Limit, place(&self.path), 1);
                out.extend_from_slice(LIMIT_REPLACEMENT);
                Ok(())
            }
            Token::Str { key: true, .. } | Token::Num => Err(BodyMaskError::TooLong {
                offset: self.token_start,
            }),
            _ => Ok(()),
        }
    }

    /// Frees the buffers a large token grew (called once it is written:
    /// none of them holds anything needed any more).
    fn shrink(&mut self) {
        for buf in [
            &mut self.hold,
            &mut self.decoded,
            &mut self.scratch,
            &mut self.repl,
        ] {
            if buf.capacity() > KEEP_CAPACITY {
                *buf = Vec::new();
            }
        }
    }
}

/// Scans a string's bytes from `from`, after its opening quote: the index
/// just past its closing quote, or `None` if it goes on past `c` (with
/// `escape` set when `c` ends in the middle of an escape).
fn scan_string(c: &[u8], from: usize, escape: &mut bool) -> Option<usize> {
    let mut i = from;
    if *escape {
        if i >= c.len() {
            return None;
        }
        *escape = false;
        i += 1;
    }
    loop {
        let rest = c.get(i..)?;
        let j = i + rest.iter().position(|&b| b == b'"' || b == b'\\')?;
        if c.get(j) == Some(&b'"') {
            return Some(j + 1);
        }
        if j + 1 >= c.len() {
            *escape = true;
            return None;
        }
        i = j + 2;
    }
}
