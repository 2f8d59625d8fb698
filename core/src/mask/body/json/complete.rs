//! What happens when a token or container is complete: grammar state, key
//! paths, and the masking of scalars.

use crate::mask::Strategy;

use super::super::BodyMaskError;
use super::super::escape::{decode, encode, is_number};
use super::super::hits::HitRule;
use super::{Expect, Frame, JsonMaskStream, LIMIT_REPLACEMENT, MAX_SEGMENT, Token, place};

impl JsonMaskStream {
    /// A whole token, `raw` as it came: updates the grammar state and
    /// returns true when `self.repl` holds what replaces it.
    pub(super) fn complete(&mut self, raw: &[u8]) -> Result<bool, BodyMaskError> {
        let token = std::mem::replace(&mut self.token, Token::None);
        let replaced = match token {
            Token::None => return Ok(false),
            Token::Str { key: true, .. } => {
                self.key(raw)?;
                return Ok(false);
            }
            Token::Str { skip: true, .. } => false,
            Token::Str { .. } => self.string_value(raw)?,
            Token::Num => {
                if raw.len() > self.limits.max_value {
                    return Err(BodyMaskError::TooLong {
                        offset: self.token_start,
                    });
                }
                if !is_number(raw) {
                    return Err(self.syntax_at_token("invalid number"));
                }
                self.mask_scalar(raw)
            }
            Token::Lit { word, .. } => {
                let masked = word != b"null" && self.rule().is_some();
                masked && self.mask_scalar(word)
            }
        };
        self.after_value();
        Ok(replaced)
    }

    /// The key rule for the value being completed.
    fn rule(&self) -> Option<(usize, Strategy)> {
        self.next_rule.or(self.subtree.map(|(rule, _)| rule))
    }

    fn after_value(&mut self) {
        self.next_rule = None;
        self.expect = if self.stack.is_empty() {
            Expect::Value
        } else {
            Expect::CommaOrEnd
        };
    }

    /// `{` or `[` at body offset `at`.
    pub(super) fn open(&mut self, array: bool, at: u64) -> Result<(), BodyMaskError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(BodyMaskError::TooDeep { offset: at });
        }
        if let Some(rule) = self.next_rule.take()
            && self.subtree.is_none()
        {
            self.subtree = Some((rule, self.stack.len() + 1));
        }
        self.stack.push(Frame {
            array,
            base: self.path.len(),
        });
        if array {
            self.path.push_str("[]");
            self.expect = Expect::ValueOrEnd;
        } else {
            self.expect = Expect::KeyOrEnd;
        }
        Ok(())
    }

    /// The `}` or `]` of the innermost container (the caller checked which).
    pub(super) fn close(&mut self) {
        if let Some(frame) = self.stack.pop() {
            self.path.truncate(frame.base);
        }
        if self
            .subtree
            .is_some_and(|(_, depth)| depth > self.stack.len())
        {
            self.subtree = None;
        }
        self.after_value();
    }

    /// A key: decoded, matched against the key rules (outside a masked
    /// subtree), and made the last segment of the path.
    fn key(&mut self, raw: &[u8]) -> Result<(), BodyMaskError> {
        if raw.len() > self.limits.max_value {
            return Err(BodyMaskError::TooLong {
                offset: self.token_start,
            });
        }
        let mut buf = std::mem::take(&mut self.decoded);
        buf.clear();
        let key = match decoded(inner(raw), &mut buf) {
            Ok(key) => key,
            Err(what) => {
                self.decoded = buf;
                return Err(self.syntax_at_token(what));
            }
        };
        self.next_rule = match self.subtree {
            None => self.keys.find(key),
            Some(_) => None,
        };
        let base = self.stack.last().map_or(0, |f| f.base);
        self.path.truncate(base);
        if base > 0 {
            self.path.push('.');
        }
        let segment = String::from_utf8_lossy(key);
        let mut end = segment.len().min(MAX_SEGMENT);
        while !segment.is_char_boundary(end) {
            end -= 1;
        }
        self.path.push_str(segment.get(..end).unwrap_or_default());
        self.decoded = buf;
        self.expect = Expect::Colon;
        Ok(())
    }

    /// A whole string value.
    fn string_value(&mut self, raw: &[u8]) -> Result<bool, BodyMaskError> {
        if raw.len() > self.limits.max_value {
            self.tally.add(HitRule::Limit, place(&self.path), 1);
            self.repl.clear();
            self.repl.extend_from_slice(LIMIT_REPLACEMENT);
            return Ok(true);
        }
        let mut buf = std::mem::take(&mut self.decoded);
        buf.clear();
        let result = match decoded(inner(raw), &mut buf) {
            Ok(text) => Ok(self.mask_scalar(text)),
            Err(what) => Err(self.syntax_at_token(what)),
        };
        self.decoded = buf;
        result
    }

    /// Masks a scalar's text (a decoded string, a number's or literal's
    /// JSON text) by the key rule over it, else by content; true when
    /// `self.repl` holds its replacement.
    fn mask_scalar(&mut self, text: &[u8]) -> bool {
        self.repl.clear();
        let mut value = std::mem::take(&mut self.scratch);
        value.clear();
        let replaced = if let Some((index, strategy)) = self.rule() {
            self.tally.add(HitRule::Key(index), place(&self.path), 1);
            if self.keys.apply(strategy, text, &mut value) {
                encode(&value, &mut self.repl);
            } else {
                self.repl.extend_from_slice(b"null");
            }
            true
        } else if let Some(masker) = &self.masker
            && let Some(outcome) = masker.mask_value(text, &mut value)
        {
            for (id, n) in outcome.hits() {
                self.tally.add(HitRule::Content(id), place(&self.path), n);
            }
            if outcome.nulled() {
                self.repl.extend_from_slice(b"null");
            } else {
                encode(&value, &mut self.repl);
            }
            true
        } else {
            false
        };
        self.scratch = value;
        replaced
    }
}

/// A string token's contents, between its quotes.
fn inner(raw: &[u8]) -> &[u8] {
    raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default()
}

/// The decoded contents: `inner` itself when it has no escape (checked for
/// UTF-8 and control characters), else decoded into `buf`.
fn decoded<'a>(inner: &'a [u8], buf: &'a mut Vec<u8>) -> Result<&'a [u8], &'static str> {
    if inner.iter().any(|&b| b == b'\\' || b < 0x20) {
        decode(inner, buf)?;
        Ok(buf)
    } else if std::str::from_utf8(inner).is_ok() {
        Ok(inner)
    } else {
        Err("string is not UTF-8")
    }
}
