//! The text body state machine: content masking line by line.

use std::sync::Arc;

use bytes::BytesMut;

use crate::event::MaskHit;
use crate::mask::Masker;

use super::hits::{HitRule, Tally};
use super::{BodyLimits, BodyMaskError};

/// The place text hits are charged to.
const PLACE: &str = "text";

/// Masks a text body (`text/plain`: `kubectl logs -f`) line by line with a
/// [`Masker`]'s content rules, chunk by chunk.
///
/// A line is the bytes before a `\n` (a `\r` before it belongs to the
/// line); it is held until its `\n` arrives, then scanned and written, `\n`
/// included. A line that nothing matched goes out unchanged; in one that a
/// content rule matched the matches are replaced, and when a matching
/// rule's strategy is [`Strategy::Null`](crate::mask::Strategy::Null) the
/// whole line is dropped (its `\n` stays). At [`finish`](Self::finish) a
/// last line without `\n` is scanned and written.
///
/// Lines longer than [`BodyLimits::max_value`] are scanned in pieces, so
/// that memory stays bounded: while the rest of a line is longer than the
/// limit, a piece is cut from its first `max_value` bytes, ending after the
/// last space or tab among them if there is one, else at the limit (moved
/// back to the start of a UTF-8 character); each piece is scanned as a line
/// of its own and written without a separator (a null strategy drops just
/// that piece). A match that straddles a
/// cut can be missed; cutting after whitespace makes that unlikely for the
/// detectors' tokens. The pieces depend only on the line, never on how the
/// body was chunked.
pub struct TextMaskStream {
    masker: Option<Arc<Masker>>,
    limits: BodyLimits,
    /// The start of a line begun in an earlier chunk.
    hold: Vec<u8>,
    tally: Tally,
    /// The replacement of the last masked piece.
    repl: Vec<u8>,
}

impl std::fmt::Debug for TextMaskStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextMaskStream")
            .field("held", &self.hold.len())
            .finish_non_exhaustive()
    }
}

impl TextMaskStream {
    /// A stream masking with `masker`'s content rules (none: the body passes
    /// unchanged), with default limits.
    pub fn new(masker: Option<Arc<Masker>>) -> TextMaskStream {
        TextMaskStream::with_limits(masker, BodyLimits::default())
    }

    /// As [`TextMaskStream::new`], with `limits` (only `max_value` applies).
    pub fn with_limits(masker: Option<Arc<Masker>>, limits: BodyLimits) -> TextMaskStream {
        TextMaskStream {
            masker,
            limits,
            hold: Vec::new(),
            tally: Tally::default(),
            repl: Vec::new(),
        }
    }

    /// Masks the next chunk, appending what can be sent to `out`. Never
    /// fails today; the `Result` matches [`super::JsonMaskStream::feed`].
    pub fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), BodyMaskError> {
        let mut i = 0;
        let mut flushed = 0;
        if !self.hold.is_empty() {
            let Some(p) = newline(chunk, 0) else {
                self.hold.extend_from_slice(chunk);
                self.drain_long(out);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.hold);
            line.extend_from_slice(chunk.get(..p).unwrap_or_default());
            self.held_line(&line, out);
            out.extend_from_slice(b"\n");
            line.clear();
            self.hold = line;
            (i, flushed) = (p + 1, p + 1);
        }
        while let Some(p) = newline(chunk, i) {
            self.line_in_chunk(chunk, i, p, &mut flushed, out);
            i = p + 1;
        }
        out.extend_from_slice(chunk.get(flushed..i).unwrap_or_default());
        self.hold
            .extend_from_slice(chunk.get(i..).unwrap_or_default());
        self.drain_long(out);
        Ok(())
    }

    /// Ends the body: scans and writes a last line without `\n`.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<(), BodyMaskError> {
        let line = std::mem::take(&mut self.hold);
        self.held_line(&line, out);
        Ok(())
    }

    /// What was masked so far (place `text`).
    pub fn hits(&self) -> Vec<MaskHit> {
        self.tally.summary(None, self.masker.as_deref())
    }

    /// [`TextMaskStream::hits`], then forgets them.
    pub fn take_hits(&mut self) -> Vec<MaskHit> {
        let hits = self.hits();
        self.tally.clear();
        hits
    }

    fn max(&self) -> usize {
        self.limits.max_value.max(1)
    }

    /// The line `c[s..e]`, inside the chunk: unchanged pieces stay in the
    /// span from `flushed` that is written later.
    fn line_in_chunk(
        &mut self,
        c: &[u8],
        s: usize,
        e: usize,
        flushed: &mut usize,
        out: &mut BytesMut,
    ) {
        let mut a = s;
        while a < e {
            let rest = c.get(a..e).unwrap_or_default();
            let b = a + cut(rest, self.max());
            if self.mask_piece(c.get(a..b).unwrap_or_default()) {
                out.extend_from_slice(c.get(*flushed..a).unwrap_or_default());
                out.extend_from_slice(&self.repl);
                *flushed = b;
            }
            a = b;
        }
    }

    /// A whole line (or the rest of one) gathered across chunks.
    fn held_line(&mut self, line: &[u8], out: &mut BytesMut) {
        let mut rest = line;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(cut(rest, self.max()));
            self.write_piece(piece, out);
            rest = tail;
        }
    }

    /// Writes the pieces of a held line that is already over the limit.
    fn drain_long(&mut self, out: &mut BytesMut) {
        let max = self.max();
        let mut done = 0;
        let hold = std::mem::take(&mut self.hold);
        while hold.len() - done > max {
            let rest = hold.get(done..).unwrap_or_default();
            let n = cut(rest, max);
            self.write_piece(rest.get(..n).unwrap_or_default(), out);
            done += n;
        }
        self.hold = hold;
        self.hold.drain(..done);
    }

    fn write_piece(&mut self, piece: &[u8], out: &mut BytesMut) {
        if self.mask_piece(piece) {
            out.extend_from_slice(&self.repl);
        } else {
            out.extend_from_slice(piece);
        }
    }

    /// True when `self.repl` holds the masked `piece`.
    fn mask_piece(&mut self, piece: &[u8]) -> bool {
        let Some(masker) = &self.masker else {
            return false;
        };
        self.repl.clear();
        let Some(outcome) = masker.mask_value(piece, &mut self.repl) else {
            return false;
        };
        for (id, n) in outcome.hits() {
            self.tally.add(HitRule::Content(id), PLACE, n);
        }
        if outcome.nulled() {
            self.repl.clear();
        }
        true
    }
}

/// The next `\n` in `c` at or after `from`.
fn newline(c: &[u8], from: usize) -> Option<usize> {
    c.get(from..)?
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| from + p)
}

/// The length of the next piece of a line whose rest is `rest`: all of it
/// within `max`, else up to the last space or tab of the first `max` bytes,
/// else `max` moved back to a UTF-8 character start.
fn cut(rest: &[u8], max: usize) -> usize {
    if rest.len() <= max {
        return rest.len();
    }
    let window = rest.get(..max).unwrap_or_default();
    if let Some(p) = window.iter().rposition(|&b| b == b' ' || b == b'\t')
        && p > 0
    {
        return p + 1;
    }
    let mut n = max;
    while n > 0 && rest.get(n).is_some_and(|&b| (0x80..0xC0).contains(&b)) {
        n -= 1;
    }
    if n == 0 { max } else { n }
}
