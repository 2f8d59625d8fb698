//! The keyword prefilter: one aho-corasick automaton over every dictionary
//! term and every detector keyword of a rule set, built once at load.
//!
//! A hit is only a candidate: a keyword hit goes to its detector's validator,
//! a term hit is checked for case (when the automaton folds case for another
//! dictionary) and for word boundaries.

use aho_corasick::{AhoCorasick, Input, MatchKind};

use super::Candidate;
use super::detectors::{self, Kw};
use super::rules::{MaskError, RuleId, Strategy};

/// What a pattern of the automaton stands for.
#[derive(Debug, Clone, Copy)]
enum What {
    Keyword(Kw),
    Term { word_start: bool, word_end: bool },
}

#[derive(Debug, Clone)]
struct Trigger {
    rule: RuleId,
    strategy: Strategy,
    what: What,
    /// Whether the hit must equal the pattern byte for byte (the automaton
    /// folds ASCII case but this pattern is case-sensitive).
    exact: bool,
}

/// A pattern to compile, and what it triggers.
pub(super) struct Pattern {
    pub(super) bytes: Vec<u8>,
    pub(super) rule: RuleId,
    pub(super) strategy: Strategy,
    pub(super) keyword: Option<Kw>,
    pub(super) case_insensitive: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Prefilter {
    ac: AhoCorasick,
    triggers: Vec<Trigger>,
    patterns: Vec<Box<[u8]>>,
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
        let fold = patterns.iter().any(|p| p.case_insensitive);
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .ascii_case_insensitive(fold)
            .build(patterns.iter().map(|p| &p.bytes))
            .map_err(|e| MaskError::Automaton(e.to_string()))?;
        let triggers = patterns
            .iter()
            .map(|p| Trigger {
                rule: p.rule,
                strategy: p.strategy,
                what: match p.keyword {
                    Some(kw) => What::Keyword(kw),
                    None => What::Term {
                        word_start: p.bytes.first().is_some_and(|&b| word_byte(b)),
                        word_end: p.bytes.last().is_some_and(|&b| word_byte(b)),
                    },
                },
                exact: fold && !p.case_insensitive,
            })
            .collect();
        let patterns = patterns.into_iter().map(|p| p.bytes.into()).collect();
        Ok(Some(Prefilter {
            ac,
            triggers,
            patterns,
        }))
    }

    pub(super) fn automaton(&self) -> &AhoCorasick {
        &self.ac
    }

    /// Reports the confirmed matches in `v`.
    pub(super) fn candidates(&self, v: &[u8], emit: &mut impl FnMut(Candidate)) {
        let mut pos = 0;
        while pos < v.len() {
            let Some(m) = self.ac.find(Input::new(v).span(pos..v.len())) else {
                return;
            };
            let id = m.pattern().as_usize();
            let confirmed = match (self.triggers.get(id), self.patterns.get(id)) {
                (Some(t), Some(p)) => self.confirm(t, p, v, m.start(), m.end()),
                _ => None,
            };
            match confirmed {
                Some(c) => {
                    pos = c.end.max(m.start() + 1);
                    emit(c);
                }
                None => pos = m.start() + 1,
            }
        }
    }

    fn confirm(
        &self,
        t: &Trigger,
        pattern: &[u8],
        v: &[u8],
        s: usize,
        e: usize,
    ) -> Option<Candidate> {
        if t.exact && v.get(s..e) != Some(pattern) {
            return None;
        }
        let (start, end) = match t.what {
            What::Keyword(kw) => detectors::keyword(kw, v, s, e - s)?,
            What::Term {
                word_start,
                word_end,
            } => {
                let glued_before = word_start && detectors::is_alnum(detectors::before(v, s));
                let glued_after = word_end && detectors::is_alnum(detectors::at(v, e));
                if glued_before || glued_after {
                    return None;
                }
                (s, e)
            }
        };
        Some(Candidate {
            start,
            end,
            rule: t.rule,
            strategy: t.strategy,
        })
    }
}
