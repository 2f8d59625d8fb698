//! The JSON body state machine: a push lexer over chunks that forwards
//! every byte it can and holds only the scalar token in progress.

use std::sync::Arc;

use bytes::BytesMut;

use crate::event::MaskHit;
use crate::mask::{Masker, Strategy};

mod complete;
mod lex;

use super::hits::Tally;
use super::keys::JsonKeys;
use super::{BodyLimits, BodyMaskError};

/// What replaces a value longer than [`BodyLimits::max_value`].
const LIMIT_REPLACEMENT: &[u8] = b"\"****\"";
/// Bytes of a key kept in a hit's place (longer keys are cut there).
const MAX_SEGMENT: usize = 64;

/// What the grammar allows next (whitespace aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A value: at the top level (where the body may also end), after `:`,
    /// or after `,` in an array.
    Value,
    /// A value or `]`, after `[`.
    ValueOrEnd,
    /// A key or `}`, after `{`.
    KeyOrEnd,
    /// A key, after `,` in an object.
    Key,
    /// The `:` after a key.
    Colon,
    /// `,` or the end of the enclosing object or array, after a value.
    CommaOrEnd,
}

/// The token being lexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    None,
    /// A string; `escape` when the last byte seen was a backslash; `skip`
    /// when it grew past the limit and its replacement is already out.
    Str {
        key: bool,
        escape: bool,
        skip: bool,
    },
    Num,
    /// `true`, `false` or `null`, of which `seen` bytes matched.
    Lit {
        word: &'static [u8],
        seen: usize,
    },
}

/// An open object or array.
#[derive(Debug, Clone, Copy)]
struct Frame {
    array: bool,
    /// The length of the path where this container's segments start.
    base: usize,
}

/// Masks one JSON body (or a stream of JSON values separated by
/// whitespace, such as a Kubernetes watch), chunk by chunk.
///
/// Call [`feed`](JsonMaskStream::feed) with each chunk as it arrives, then
/// [`finish`](JsonMaskStream::finish) at the end of the body; send what they
/// append to `out` right away. Everything but the scalar token in progress
/// (a string, number or literal, at most [`BodyLimits::max_value`] bytes) is
/// written by the call that received it. Whitespace, structure, keys and
/// values that nothing matched go out byte for byte as they came; a masked
/// value is written as valid JSON (see [`JsonKeys`] for key rules; a string
/// or number a content rule matches becomes a string with the matches
/// replaced, or `null` when a matching rule's strategy is
/// [`Strategy::Null`]).
///
/// The body must be zero or more JSON values (RFC 8259, strings in UTF-8;
/// a lone `\uD800`-style surrogate escape is accepted and scanned as
/// U+FFFD) separated by optional whitespace (so `{}{}` and `true false`
/// are two values each; a byte order mark is not accepted). Anything else is an error,
/// after which the stream is poisoned: send nothing more and cut the
/// response. A string value longer than the limit is replaced by `"****"`
/// without being scanned or validated past its closing quote's search.
pub struct JsonMaskStream {
    keys: Arc<JsonKeys>,
    masker: Option<Arc<Masker>>,
    limits: BodyLimits,
    expect: Expect,
    stack: Vec<Frame>,
    token: Token,
    /// Offset in the body of the token's first byte.
    token_start: u64,
    /// The raw bytes of a token begun in an earlier chunk.
    hold: Vec<u8>,
    /// The key rule matched by the last key, for the value that follows.
    next_rule: Option<(usize, Strategy)>,
    /// The key rule masking every scalar inside the container opened at
    /// the given depth (stack length).
    subtree: Option<((usize, Strategy), usize)>,
    /// Where the current value is: `items[].spec.token`.
    path: String,
    tally: Tally,
    /// Bytes of the body before the current chunk.
    offset: u64,
    poisoned: bool,
    /// The replacement of the last completed token.
    repl: Vec<u8>,
    scratch: Vec<u8>,
    decoded: Vec<u8>,
}

impl std::fmt::Debug for JsonMaskStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonMaskStream")
            .field("offset", &self.offset)
            .field("depth", &self.stack.len())
            .field("held", &self.hold.len())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl JsonMaskStream {
    /// A stream masking by `keys` and by `masker`'s content rules (its
    /// column rules do not apply to JSON), with default limits.
    pub fn new(keys: Arc<JsonKeys>, masker: Option<Arc<Masker>>) -> JsonMaskStream {
        JsonMaskStream::with_limits(keys, masker, BodyLimits::default())
    }

    /// As [`JsonMaskStream::new`], with `limits`.
    pub fn with_limits(
        keys: Arc<JsonKeys>,
        masker: Option<Arc<Masker>>,
        limits: BodyLimits,
    ) -> JsonMaskStream {
        JsonMaskStream {
            keys,
            masker,
            limits,
            expect: Expect::Value,
            stack: Vec::new(),
            token: Token::None,
            token_start: 0,
            hold: Vec::new(),
            next_rule: None,
            subtree: None,
            path: String::new(),
            tally: Tally::default(),
            offset: 0,
            poisoned: false,
            repl: Vec::new(),
            scratch: Vec::new(),
            decoded: Vec::new(),
        }
    }

    /// Masks the next chunk of the body, appending what can be sent to
    /// `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), BodyMaskError> {
        if self.poisoned {
            return Err(BodyMaskError::Poisoned);
        }
        let result = self.run(chunk, out);
        self.offset = self.offset.saturating_add(chunk.len() as u64);
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// Ends the body: appends the held token, if any, to `out`. Fails if
    /// the body ended inside a value.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), BodyMaskError> {
        if self.poisoned {
            return Err(BodyMaskError::Poisoned);
        }
        let result = self.end(out);
        if result.is_err() {
            self.poison();
        }
        result
    }

    /// What was masked so far: rule, JSON key path (`$` for a top-level
    /// scalar, `[]` for array elements: `items[].spec.token`, each key cut
    /// to 64 bytes) and count of values. Sorted by rule (key rules in
    /// configuration order, then content rules, then `limit:max_value`),
    /// then path; past 1024 distinct (rule, path) pairs new paths are
    /// counted under `*`.
    pub fn hits(&self) -> Vec<MaskHit> {
        self.tally.summary(Some(&self.keys), self.masker.as_deref())
    }

    /// [`JsonMaskStream::hits`], then forgets them (to record them per
    /// batch of frames).
    pub fn take_hits(&mut self) -> Vec<MaskHit> {
        let hits = self.hits();
        self.tally.clear();
        hits
    }

    fn poison(&mut self) {
        self.poisoned = true;
        self.hold = Vec::new();
    }

    fn end(&mut self, out: &mut BytesMut) -> Result<(), BodyMaskError> {
        match self.token {
            Token::None => {}
            Token::Num => {
                let hold = std::mem::take(&mut self.hold);
                let replaced = self.complete(&hold)?;
                out.extend_from_slice(if replaced { &self.repl } else { &hold });
            }
            Token::Lit { .. } => return Err(self.syntax_at_token("unfinished literal")),
            Token::Str { .. } => return Err(BodyMaskError::Truncated),
        }
        if self.stack.is_empty() {
            Ok(())
        } else {
            Err(BodyMaskError::Truncated)
        }
    }

    fn syntax_at_token(&self, what: &'static str) -> BodyMaskError {
        BodyMaskError::Syntax {
            offset: self.token_start,
            what,
        }
    }

    fn run(&mut self, c: &[u8], out: &mut BytesMut) -> Result<(), BodyMaskError> {
        // c[flushed..i] is checked and unchanged, not yet in `out`.
        let mut flushed = 0;
        let mut i = 0;
        if self.token != Token::None {
            match self.resume(c, out)? {
                Some(end) => (i, flushed) = (end, end),
                None => return Ok(()),
            }
        }
        while let Some(&b) = c.get(i) {
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                i += 1;
                continue;
            }
            let at = self.offset + i as u64;
            let syntax = |what| BodyMaskError::Syntax { offset: at, what };
            let token = match (self.expect, b) {
                (Expect::Colon, b':') => {
                    self.expect = Expect::Value;
                    None
                }
                (Expect::Colon, _) => return Err(syntax("expected ':'")),
                (Expect::CommaOrEnd, b',') => {
                    let array = self.stack.last().is_some_and(|f| f.array);
                    self.expect = if array { Expect::Value } else { Expect::Key };
                    None
                }
                (Expect::CommaOrEnd, b']' | b'}')
                | (Expect::ValueOrEnd, b']')
                | (Expect::KeyOrEnd, b'}') => {
                    let array = self.stack.last().map(|f| f.array);
                    if array != Some(b == b']') {
                        return Err(syntax("mismatched closing bracket"));
                    }
                    self.close();
                    None
                }
                (Expect::CommaOrEnd, _) => return Err(syntax("expected ',' or a closing bracket")),
                (Expect::Key | Expect::KeyOrEnd, b'"') => Some(Token::Str {
                    key: true,
                    escape: false,
                    skip: false,
                }),
                (Expect::Key | Expect::KeyOrEnd, _) => return Err(syntax("expected a key")),
                (Expect::Value | Expect::ValueOrEnd, b'{' | b'[') => {
                    self.open(b == b'[', at)?;
                    None
                }
                (Expect::Value | Expect::ValueOrEnd, b'"') => Some(Token::Str {
                    key: false,
                    escape: false,
                    skip: false,
                }),
                (Expect::Value | Expect::ValueOrEnd, b'-' | b'0'..=b'9') => Some(Token::Num),
                (Expect::Value | Expect::ValueOrEnd, b't') => Some(lit(b"true")),
                (Expect::Value | Expect::ValueOrEnd, b'f') => Some(lit(b"false")),
                (Expect::Value | Expect::ValueOrEnd, b'n') => Some(lit(b"null")),
                (Expect::Value | Expect::ValueOrEnd, _) => return Err(syntax("expected a value")),
            };
            match token {
                None => i += 1,
                Some(token) => {
                    self.token = token;
                    self.token_start = at;
                    match self.lex(c, i, &mut flushed, out)? {
                        Some(end) => i = end,
                        None => return Ok(()),
                    }
                }
            }
        }
        out.extend_from_slice(c.get(flushed..).unwrap_or_default());
        Ok(())
    }
}

fn lit(word: &'static [u8]) -> Token {
    Token::Lit { word, seen: 0 }
}

/// The place a hit is charged to.
pub(super) fn place(path: &str) -> &str {
    if path.is_empty() { "$" } else { path }
}
