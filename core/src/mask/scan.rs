//! The byte scan: the prefilter of the detectors that have no keyword.
//!
//! Card numbers, SSNs, phone numbers and IBANs all contain a run of digits;
//! e-mail addresses contain an `@`. The scan skips 32 bytes at a time while a
//! block has neither (a branch-free fold the compiler vectorises), measures
//! each run of digits joined by up to two separators (` -.()/`), and calls the
//! validators only for runs with enough digits for one of them: 8 for a phone
//! number, 9 for an SSN, 13 for a card. An IBAN is tried where a run starts
//! right after two capital letters. Dates, times, amounts and short ids are
//! dismissed after one look at their digits.

use super::Candidate;
use super::detectors::{self, Span, at, digits_end, is_digit};
use super::rules::{Detector, RuleId, Strategy};

const BLOCK: usize = 32;

/// Which scanned detectors are on, and their rule and strategy.
#[derive(Debug, Clone, Default)]
pub(super) struct ByteScan {
    card: Option<(RuleId, Strategy)>,
    ssn: Option<(RuleId, Strategy)>,
    phone: Option<(RuleId, Strategy)>,
    iban: Option<(RuleId, Strategy)>,
    email: Option<(RuleId, Strategy)>,
}

fn run_sep(b: Option<u8>) -> bool {
    matches!(b, Some(b' ' | b'-' | b'.' | b'(' | b')' | b'/'))
}

impl ByteScan {
    /// Turns on `detector`; false if it is not a scanned detector.
    pub(super) fn enable(&mut self, detector: Detector, rule: RuleId, strategy: Strategy) -> bool {
        let slot = match detector {
            Detector::CardNumber => &mut self.card,
            Detector::UsSsn => &mut self.ssn,
            Detector::Phone => &mut self.phone,
            Detector::Iban => &mut self.iban,
            Detector::Email => &mut self.email,
            _ => return false,
        };
        *slot = Some((rule, strategy));
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.card.is_none()
            && self.ssn.is_none()
            && self.phone.is_none()
            && self.iban.is_none()
            && self.email.is_none()
    }

    fn digits_on(&self) -> bool {
        self.card.is_some() || self.ssn.is_some() || self.phone.is_some() || self.iban.is_some()
    }

    /// Reports the scanned detectors' matches in `v`.
    pub(super) fn run(&self, v: &[u8], emit: &mut impl FnMut(Candidate)) {
        if self.is_empty() {
            return;
        }
        // With digits off, `@` is the only interesting byte, and vice versa.
        let digit_hi = if self.digits_on() { 10 } else { 0 };
        let at_sign = if self.email.is_some() { b'@' } else { b'0' };
        let mut i = 0;
        while let Some(j) = next_interesting(v, i, digit_hi, at_sign) {
            if at(v, j) == Some(b'@') {
                if let (Some(span), Some(target)) = (detectors::email_at(v, j), self.email) {
                    emit(candidate(span, target));
                }
                i = j + 1;
            } else {
                i = self.digit_run(v, j, emit);
            }
        }
    }

    /// Validates the run of digits starting at `s`; returns its end.
    fn digit_run(&self, v: &[u8], s: usize, emit: &mut impl FnMut(Candidate)) -> usize {
        let mut e = digits_end(v, s);
        let mut digits = e - s;
        loop {
            let next = if run_sep(at(v, e)) && is_digit(at(v, e + 1)) {
                e + 1
            } else if run_sep(at(v, e)) && run_sep(at(v, e + 1)) && is_digit(at(v, e + 2)) {
                e + 2
            } else {
                break;
            };
            let ge = digits_end(v, next);
            digits += ge - next;
            e = ge;
        }
        if let Some(target) = self.iban {
            let capital = |i: usize| at(v, i).is_some_and(|b| b.is_ascii_uppercase());
            let after_capitals = s >= 2 && capital(s - 1) && capital(s - 2);
            if after_capitals && let Some(span) = detectors::iban_at(v, s) {
                emit(candidate(span, target));
            }
        }
        if digits < 8 {
            return e;
        }
        if let Some(t) = self.phone {
            detectors::phone_numbers(v, s, e, &mut |span| emit(candidate(span, t)));
        }
        if let (Some(t), true) = (self.ssn, digits >= 9) {
            detectors::ssns(v, s, e, &mut |span| emit(candidate(span, t)));
        }
        if let (Some(t), true) = (self.card, digits >= 13) {
            detectors::card_numbers(v, s, e, &mut |span| emit(candidate(span, t)));
        }
        e
    }
}

fn candidate((start, end): Span, (rule, strategy): (RuleId, Strategy)) -> Candidate {
    Candidate {
        start,
        end,
        rule,
        strategy,
    }
}

/// The first position at or after `from` holding a digit (when `digit_hi` is
/// 10) or `at_sign`.
fn next_interesting(v: &[u8], from: usize, digit_hi: u8, at_sign: u8) -> Option<usize> {
    let hit = |b: u8| b.wrapping_sub(b'0') < digit_hi || b == at_sign;
    let rest = v.get(from..)?;
    let mut base = from;
    let mut blocks = rest.chunks_exact(BLOCK);
    for block in &mut blocks {
        let any = block.iter().fold(0u8, |acc, &b| acc | u8::from(hit(b)));
        if any != 0 {
            return block.iter().position(|&b| hit(b)).map(|p| base + p);
        }
        base += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&b| hit(b))
        .map(|p| base + p)
}
