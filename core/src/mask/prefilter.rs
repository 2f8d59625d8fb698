//! The keyword prefilter: one aho-corasick automaton over every dictionary
//! term and every detector keyword of a rule set, built once at load.
//!
//! The automaton holds the patterns in ASCII lower case and searches a
//! lower-cased copy of the value, folded a window at a time into a buffer
//! (a vectorised pass). So it stays case-sensitive, and aho-corasick keeps its
//! SIMD (Teddy) prefilter, which an ASCII-case-insensitive automaton loses:
//! with up to 64 distinct patterns (the detector keywords take 20 of them)
//! a value with no hit costs that one vector scan. Short values are padded
//! with NUL (which no pattern contains) to the length the SIMD searcher needs.
//!
//! Before that, a value is screened: every keyword's validator needs one of
//! a few bytes (`A` for `AKIA`/`AIza`, `J` for `eyJ`, `_`, `-`, `=`, `:`),
//! and every term its rarest byte; when the rule set needs at most eight
//! such bytes, a value holding none of them (most numbers, words, prose) is
//! not searched at all.
//!
//! A hit is only a candidate. Each pattern carries the checks of every rule
//! it may stand for, including rules whose pattern is a prefix of it (a
//! longest-match search reports only the longest pattern at a position):
//! the original bytes are compared exactly or ignoring ASCII case, then a
//! keyword goes to its detector's validator, a term to a word-boundary check.

use std::collections::HashMap;
use std::ops::ControlFlow;

use aho_corasick::{AhoCorasick, Input, MatchKind};

use super::Candidate;
use super::detectors::{self, Kw};
use super::rules::{MaskError, RuleId, Strategy};

/// The longest pattern accepted (terms longer than this are refused at
/// load); a window always holds a whole match.
pub(super) const MAX_PATTERN: usize = 1024;
/// Longer values are folded this much at a time.
const WINDOW: usize = 8 * 1024;
/// Haystacks are padded to at least this length (Teddy's minimum is 18 with
/// 128-bit vectors).
const PAD_TO: usize = 32;
/// Above this many patterns aho-corasick has no SIMD prefilter; padding
/// would only add work.
const TEDDY_PATTERNS: usize = 64;

/// A pattern to compile, and the rule it belongs to.
pub(super) struct Pattern {
    pub(super) bytes: Vec<u8>,
    pub(super) rule: RuleId,
    pub(super) strategy: Strategy,
    pub(super) keyword: Option<Kw>,
    pub(super) case_insensitive: bool,
}

/// One rule to confirm at a hit.
#[derive(Debug, Clone)]
struct Check {
    rule: RuleId,
    strategy: Strategy,
    keyword: Option<Kw>,
    case_insensitive: bool,
    /// The rule's own pattern, in its configured case.
    bytes: Box<[u8]>,
}

#[derive(Debug, Clone)]
pub(super) struct Prefilter {
    ac: AhoCorasick,
    /// What [`Prefilter::any_match`] searches rows with: the detector
    /// keywords and the dictionary terms in two automata when there are
    /// both. One automaton over both has twice the patterns per SIMD
    /// bucket, and verifies so many more candidates that two scans are
    /// faster (5.3 GB/s for one over 32 patterns, 17 and 15 GB/s for the
    /// 12 terms and the 20 keywords apart). Values are searched with `ac`:
    /// for them the second call would cost more than it saves.
    row: Vec<AhoCorasick>,
    /// Checks by automaton pattern id.
    checks: Vec<Vec<Check>>,
    longest: usize,
    pad: bool,
    /// Bytes of which every match contains at least one (padded to eight
    /// with repeats), when there are at most eight: a value holding none is
    /// not searched at all.
    required: Option<[u8; 8]>,
}

fn word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

impl Prefilter {
    /// Compiles the patterns; `None` when there are none.
    pub(super) fn build(patterns: Vec<Pattern>) -> Result<Option<Prefilter>, MaskError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let required = required_bytes(&patterns);
        // Keywords and terms apart, lower-cased, for the row automata.
        let mut keywords: Vec<Vec<u8>> = Vec::new();
        let mut terms: Vec<Vec<u8>> = Vec::new();
        for p in &patterns {
            let group = if p.keyword.is_some() {
                &mut keywords
            } else {
                &mut terms
            };
            let key = p.bytes.to_ascii_lowercase();
            if !group.contains(&key) {
                group.push(key);
            }
        }
        // Distinct lower-cased patterns, each with its checks.
        let mut ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut folded: Vec<Vec<u8>> = Vec::new();
        let mut checks: Vec<Vec<Check>> = Vec::new();
        for p in patterns {
            let key = p.bytes.to_ascii_lowercase();
            let id = *ids.entry(key.clone()).or_insert_with(|| {
                folded.push(key);
                checks.push(Vec::new());
                folded.len() - 1
            });
            if let Some(list) = checks.get_mut(id) {
                list.push(Check {
                    rule: p.rule,
                    strategy: p.strategy,
                    keyword: p.keyword,
                    case_insensitive: p.case_insensitive,
                    bytes: p.bytes.into(),
                });
            }
        }
        // A pattern also stands for the patterns that are its prefixes.
        let own = checks.clone();
        for (id, pattern) in folded.iter().enumerate() {
            for len in 1..pattern.len() {
                let shorter = pattern.get(..len).and_then(|p| ids.get(p));
                if let (Some(&sid), Some(list)) = (shorter, checks.get_mut(id)) {
                    list.extend(own.get(sid).into_iter().flatten().cloned());
                }
            }
        }
        let build = |patterns: &[Vec<u8>]| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(patterns)
                .map_err(|e| MaskError::Automaton(e.to_string()))
        };
        let ac = build(&folded)?;
        let row = if keywords.is_empty() || terms.is_empty() {
            vec![ac.clone()]
        } else {
            vec![build(&keywords)?, build(&terms)?]
        };
        Ok(Some(Prefilter {
            ac,
            row,
            checks,
            longest: folded.iter().map(Vec::len).max().unwrap_or(1),
            pad: folded.len() <= TEDDY_PATTERNS,
            required,
        }))
    }

    pub(super) fn automaton(&self) -> &AhoCorasick {
        &self.ac
    }

    /// Reports the confirmed matches in `v`: leftmost first, then from the
    /// end of each confirmed match (from the next byte after a rejected hit).
    pub(super) fn candidates(&self, v: &[u8], emit: &mut impl FnMut(Candidate)) {
        if let Some(required) = &self.required
            && !holds_any(v, required)
        {
            return;
        }
        // The buffer grows with the value, so short values zero little.
        if v.len() <= 64 {
            self.search(v, &mut [0u8; 64], emit);
        } else if v.len() <= 512 {
            self.search(v, &mut [0u8; 512], emit);
        } else {
            self.search(v, &mut vec![0u8; WINDOW.min(v.len())], emit);
        }
    }

    /// Folds `buf` (values joined by NUL bytes) to lower case in place and,
    /// for each row automaton, calls `visit` with the start of the
    /// leftmost-longest match, then of the next one from where `visit` says
    /// to resume; stops, and returns true, when `visit` breaks. No pattern
    /// holds a NUL, so no match spans two values, and a value in which an
    /// automaton finds a match alone holds the match that automaton finds
    /// first after the values before it. Every pattern is in one of the
    /// row automata.
    pub(super) fn any_match(
        &self,
        buf: &mut Vec<u8>,
        visit: &mut impl FnMut(usize) -> ControlFlow<(), usize>,
    ) -> bool {
        let len = buf.len();
        if self.pad && len < PAD_TO {
            buf.resize(PAD_TO, 0);
        }
        fold_in_place(buf);
        // Searched to the padding's end (NUL never matches): short rows keep
        // the SIMD searcher.
        let end = buf.len();
        for ac in &self.row {
            let mut pos = 0;
            while pos < len {
                let Some(m) = ac.find(Input::new(buf.as_slice()).span(pos..end)) else {
                    break;
                };
                match visit(m.start()) {
                    ControlFlow::Break(()) => return true,
                    ControlFlow::Continue(resume) => pos = resume.max(m.start() + 1),
                }
            }
        }
        false
    }

    fn search(&self, v: &[u8], buf: &mut [u8], emit: &mut impl FnMut(Candidate)) {
        let mut pos = 0;
        // The folded window: `v[base..base + len]` is in `buf[..len]`.
        let mut window: Option<(usize, usize)> = None;
        while pos < v.len() {
            let (base, len) = match window {
                Some((b, l)) if b <= pos && (b + l == v.len() || pos + self.longest <= b + l) => {
                    (b, l)
                }
                _ => (pos, fold(v.get(pos..).unwrap_or_default(), buf)),
            };
            window = Some((base, len));
            let end = base + len;
            let last = end == v.len();
            // Hits starting before `exact` are whole in the window.
            let exact = if last { end } else { end + 1 - self.longest };
            let span_end = if last && self.pad {
                len.max(PAD_TO).min(buf.len())
            } else {
                len
            };
            let hay = buf.get(..span_end).unwrap_or_default();
            let found = self.ac.find(Input::new(hay).span(pos - base..span_end));
            match found {
                Some(m) if base + m.start() < exact => {
                    let s = base + m.start();
                    let mut next = s + 1;
                    for check in self
                        .checks
                        .get(m.pattern().as_usize())
                        .into_iter()
                        .flatten()
                    {
                        if let Some(c) = confirm(check, v, s) {
                            next = next.max(c.end);
                            emit(c);
                        }
                    }
                    pos = next;
                }
                _ if last => return,
                _ => {
                    pos = exact.max(pos + 1);
                    window = None;
                }
            }
        }
    }
}

/// Copies `src` lower-cased into `buf` (as much as fits), zeroes the bytes
/// after it up to `PAD_TO`, and returns how much was folded. The case is
/// folded in place over whole 32-byte chunks, which vectorise without a
/// scalar tail.
fn fold(src: &[u8], buf: &mut [u8]) -> usize {
    let n = src.len().min(buf.len());
    if let (Some(dst), Some(src)) = (buf.get_mut(..n), src.get(..n)) {
        dst.copy_from_slice(src);
    }
    let padded = n.next_multiple_of(32).max(PAD_TO).min(buf.len());
    if let Some(pad) = buf.get_mut(n..padded) {
        pad.fill(0);
    }
    let mut chunks = buf
        .get_mut(..padded)
        .unwrap_or_default()
        .chunks_exact_mut(32);
    for chunk in &mut chunks {
        let chunk: &mut [u8; 32] = match chunk.try_into() {
            Ok(c) => c,
            Err(_) => continue,
        };
        for b in chunk.iter_mut() {
            *b |= u8::from(b.wrapping_sub(b'A') < 26) << 5;
        }
    }
    for b in chunks.into_remainder() {
        *b |= u8::from(b.wrapping_sub(b'A') < 26) << 5;
    }
    n
}

/// Lower-cases `buf` in place (ASCII), whole 32-byte chunks at a time.
fn fold_in_place(buf: &mut [u8]) {
    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        for b in chunk.iter_mut() {
            *b |= u8::from(b.wrapping_sub(b'A') < 26) << 5;
        }
    }
    for b in chunks.into_remainder() {
        *b |= u8::from(b.wrapping_sub(b'A') < 26) << 5;
    }
}

/// How common a byte is in text, roughly (lower is rarer): the byte a
/// dictionary term is screened by is its rarest.
fn commonness(b: u8) -> u8 {
    const LETTERS: &[u8] = b"zqjxkvbpygfwmucldrhsnioate";
    match b {
        b' ' => 255,
        b'a'..=b'z' | b'A'..=b'Z' => {
            let rank = LETTERS
                .iter()
                .position(|&l| l == b.to_ascii_lowercase())
                .unwrap_or(0);
            100u8.saturating_add(u8::try_from(rank * 4).unwrap_or(u8::MAX))
        }
        b'0'..=b'9' => 120,
        _ => 60,
    }
}

/// The bytes that screen values before the automaton runs: for each keyword
/// a byte its validator cannot do without, for each term its rarest byte
/// (in both cases when the term ignores case). `None` past eight bytes.
fn required_bytes(patterns: &[Pattern]) -> Option<[u8; 8]> {
    let mut set: Vec<u8> = Vec::new();
    for p in patterns {
        let needs: Vec<u8> = match p.keyword {
            Some(kw) => detectors::required_bytes(kw).to_vec(),
            None => {
                let rarest = p.bytes.iter().copied().min_by_key(|&b| commonness(b))?;
                if p.case_insensitive && rarest.is_ascii_alphabetic() {
                    vec![rarest.to_ascii_lowercase(), rarest.to_ascii_uppercase()]
                } else {
                    vec![rarest]
                }
            }
        };
        for b in needs {
            if !set.contains(&b) {
                set.push(b);
            }
        }
    }
    let first = *set.first()?;
    let mut out = [first; 8];
    for (slot, b) in out.iter_mut().zip(set.iter().copied()) {
        *slot = b;
    }
    (set.len() <= 8).then_some(out)
}

/// Whether `v` holds any of `bytes` (compared eight at a time, vectorised).
fn holds_any(v: &[u8], bytes: &[u8; 8]) -> bool {
    let any = |chunk: &[u8]| {
        let mut acc = 0u8;
        for &b in chunk {
            for &r in bytes {
                acc |= u8::from(b == r);
            }
        }
        acc != 0
    };
    if v.len() <= 64 {
        // A fixed copy (NUL is never required) keeps the loop tail-free.
        let mut block = [0u8; 64];
        if let Some(dst) = block.get_mut(..v.len()) {
            dst.copy_from_slice(v);
        }
        any(&block)
    } else {
        v.chunks(256).any(any)
    }
}

/// Confirms `check` at `s` in the original value.
fn confirm(check: &Check, v: &[u8], s: usize) -> Option<Candidate> {
    let e = s + check.bytes.len();
    let text = v.get(s..e)?;
    let same = if check.case_insensitive {
        text.eq_ignore_ascii_case(&check.bytes)
    } else {
        *text == *check.bytes
    };
    if !same {
        return None;
    }
    let (start, end) = match check.keyword {
        Some(kw) => detectors::keyword(kw, v, s, e - s)?,
        None => {
            let first = check.bytes.first().is_some_and(|&b| word_byte(b));
            let last = check.bytes.last().is_some_and(|&b| word_byte(b));
            let glued_before = first && detectors::is_alnum(detectors::before(v, s));
            let glued_after = last && detectors::is_alnum(detectors::at(v, e));
            if glued_before || glued_after {
                return None;
            }
            (s, e)
        }
    };
    Some(Candidate {
        start,
        end,
        rule: check.rule,
        strategy: check.strategy,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, DictionaryRule, MaskRules, Masker, Strategy};
    use super::*;

    fn spans(p: &Prefilter, v: &[u8]) -> Vec<(usize, usize, RuleId)> {
        let mut out = Vec::new();
        p.candidates(v, &mut |c| out.push((c.start, c.end, c.rule)));
        out
    }

    /// Screening by required bytes loses no match: random values built from
    /// keywords, terms and near misses give the same candidates with and
    /// without it.
    #[test]
    fn screening_loses_nothing() {
        let rules = MaskRules {
            detectors: Detector::ALL
                .iter()
                .map(|&d| (d, Strategy::Redact))
                .collect(),
            dictionaries: vec![
                DictionaryRule {
                    terms: vec!["db-prod-7.internal".into(), "Acme-Corp".into()],
                    case_insensitive: true,
                    strategy: Strategy::Redact,
                },
                DictionaryRule {
                    terms: vec!["Zed".into()],
                    case_insensitive: false,
                    strategy: Strategy::Redact,
                },
            ],
            ..MaskRules::default()
        };
        let masker = Masker::new(rules, b"").unwrap();
        let screened = masker.prefilter.clone().unwrap();
        assert!(screened.required.is_some());
        let mut unscreened = screened.clone();
        unscreened.required = None;
        const PIECES: &[&str] = &[
            "AKIAIOSFODNN7EXAMPLE",
            "akia",
            "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
            "eyJhbGciOiJIUzI1NiJ9",
            ".",
            "eyJzdWIiOiIxIn0",
            "ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "xoxb-123456789012-1234",
            "xapp-1-A0123456789",
            "-----BEGIN PRIVATE KEY-----",
            "\n",
            "-----END PRIVATE KEY-----",
            "AccountKey=",
            "abcdefghijklmnopqrstuvwxyz0123456789+/ab",
            "SecretAccessKey",
            ": ",
            "=",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "CONTOSO",
            "contoso",
            "Zed",
            "zed",
            "DB-PROD-7.INTERNAL",
            " ",
            "x",
            "9",
            "_",
            "-",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut value = String::new();
            for _ in 0..1 + next() % 8 {
                value.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let v = value.as_bytes();
            assert_eq!(spans(&screened, v), spans(&unscreened, v), "{value:?}");
        }
    }
}
