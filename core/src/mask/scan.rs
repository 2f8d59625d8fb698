//! The byte scan: the prefilter of the detectors that have no keyword.
//!
//! Card numbers, SSNs, phone numbers and IBANs all contain runs of digits;
//! e-mail addresses contain an `@`. Three stages, each only for what passed
//! the one before:
//! 1. a census (one vectorised pass): the digit detectors need 8 digits in
//!    the value, e-mail an `@`; ids, amounts, names and words stop here;
//! 2. bit masks of 64 bytes at a time ([`super::bits`]) tested for shapes:
//!    `ddd?dd?dddd` (SSN), `ddd?dddd` (NANP), `+` and 8 digits (E.164), two
//!    capitals and two digits (IBAN), 13 digits within 17 bytes from a group
//!    of three (card); dates, times and uuids stop here;
//! 3. around a position that passed, the run of digits joined by up to two
//!    separators (` -.()/`) is measured and the validators its group lengths
//!    allow are run.

use super::Candidate;
use super::bits::{self, Block, Classes, Wanted};
use super::detectors::{self, Span, at, digits_end, is_digit};
use super::rules::{Detector, RuleId, Strategy};

/// The fewest digits any digit detector matches: a `+` and 8 digits (E.164);
/// SSNs have 9, NANP numbers 10, IBANs and cards more.
const MIN_DIGITS: usize = 8;
/// How far back a trigger looks for the start of its run.
const RUN_BACK: usize = 48;

/// Which scanned detectors are on, and their rule and strategy.
#[derive(Debug, Clone, Default)]
pub(super) struct ByteScan {
    card: Option<(RuleId, Strategy)>,
    ssn: Option<(RuleId, Strategy)>,
    phone: Option<(RuleId, Strategy)>,
    iban: Option<(RuleId, Strategy)>,
    email: Option<(RuleId, Strategy)>,
}

fn run_sep(b: u8) -> bool {
    matches!(b, b' ' | b'-' | b'.' | b'(' | b')' | b'/')
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
        if self.is_empty() || v.is_empty() {
            return;
        }
        let want = Wanted {
            card: self.card.is_some(),
            ssn: self.ssn.is_some(),
            phone: self.phone.is_some(),
            iban: self.iban.is_some(),
        };
        // A census first (one vectorised pass): every digit detector needs
        // at least 8 digits, e-mail an `@`. Most values stop here.
        let census = census(v);
        let digits_on = self.digits_on() && census.digits >= MIN_DIGITS;
        let email_on = self.email.is_some() && census.at_signs > 0;
        if !digits_on && !email_on {
            return;
        }
        let classes = Classes {
            digit: digits_on,
            at: email_on,
            plus: digits_on && self.phone.is_some(),
        };
        // Everything before `done` has been validated.
        let mut done = 0usize;
        let mut base = 0usize;
        let mut prev_digit = 0u64;
        let mut cur = Block::load(v, 0, classes);
        loop {
            let last = base + 64 >= v.len();
            let next = if last {
                Block::default()
            } else {
                Block::load(v, base + 64, classes)
            };
            if let Some(target) = self.email {
                let mut at_signs = cur.at;
                while at_signs != 0 {
                    let j = base + at_signs.trailing_zeros() as usize;
                    if let Some(span) = detectors::email_at(v, j) {
                        emit(candidate(span, target));
                    }
                    at_signs &= at_signs - 1;
                }
            }
            if digits_on && cur.digit | next.digit != 0 {
                let mut hits = bits::triggers(v, base, &cur, &next, prev_digit, want);
                while hits != 0 {
                    let j = base + hits.trailing_zeros() as usize;
                    if j >= done {
                        done = self.validate_at(v, j, done, emit);
                    }
                    hits &= hits - 1;
                }
            }
            if last {
                return;
            }
            prev_digit = cur.digit;
            cur = next;
            base += 64;
        }
    }

    /// Calls `visit` with each position of `v` where [`ByteScan::run`] may
    /// start validating: every `@` (e-mail on) and every shape trigger of
    /// the digit detectors, all classes on, with no census. Stops, and
    /// returns true, when `visit` does.
    ///
    /// Over values joined by NUL bytes this visits, within each value,
    /// every position `run` over that value alone would (and more): NUL is
    /// in no class (digit, `@`, `+`, capital), as the bytes past a value's
    /// ends are to `run`. A shape requires bytes to be in a class, except
    /// for non-digits between required digits (so inside the value) and
    /// one non-digit before a card's first group (a NUL, or nothing). Bits
    /// past the end of the value only add positions; and a block's masks
    /// look 64 bytes ahead, farther than any shape reaches, so where a value
    /// starts in its block changes nothing.
    pub(super) fn any_trigger(&self, v: &[u8], visit: &mut impl FnMut(usize) -> bool) -> bool {
        if self.is_empty() || v.is_empty() {
            return false;
        }
        let digits_on = self.digits_on();
        let want = Wanted {
            card: self.card.is_some(),
            ssn: self.ssn.is_some(),
            phone: self.phone.is_some(),
            iban: self.iban.is_some(),
        };
        let classes = Classes {
            digit: digits_on,
            at: self.email.is_some(),
            plus: self.phone.is_some(),
        };
        let mut base = 0usize;
        let mut prev_digit = 0u64;
        let mut cur = Block::load(v, 0, classes);
        loop {
            let last = base + 64 >= v.len();
            let next = if last {
                Block::default()
            } else {
                Block::load(v, base + 64, classes)
            };
            let mut at_signs = cur.at;
            while at_signs != 0 {
                if visit(base + at_signs.trailing_zeros() as usize) {
                    return true;
                }
                at_signs &= at_signs - 1;
            }
            if digits_on && cur.digit | next.digit != 0 {
                let mut hits = bits::triggers(v, base, &cur, &next, prev_digit, want);
                while hits != 0 {
                    if visit(base + hits.trailing_zeros() as usize) {
                        return true;
                    }
                    hits &= hits - 1;
                }
            }
            if last {
                return false;
            }
            prev_digit = cur.digit;
            cur = next;
            base += 64;
        }
    }

    /// Validates the run(s) of digits around trigger position `j`, not
    /// looking back before `done`; returns where validation stopped.
    fn validate_at(
        &self,
        v: &[u8],
        j: usize,
        done: usize,
        emit: &mut impl FnMut(Candidate),
    ) -> usize {
        let mut s = match at(v, j) {
            Some(b'+') => j + 1,
            Some(b) if b.is_ascii_uppercase() => j + 2,
            _ => {
                // Back to the start of the run (bounded).
                let floor = j.saturating_sub(RUN_BACK).max(done);
                let mut s = j;
                while s > floor
                    && detectors::before(v, s).is_some_and(|b| b.is_ascii_digit() || run_sep(b))
                {
                    s -= 1;
                }
                s
            }
        };
        loop {
            while s < v.len() && !is_digit(at(v, s)) {
                s += 1;
            }
            if s >= v.len() {
                return s;
            }
            let e = self.digit_run(v, s, emit);
            if e > j {
                return e;
            }
            s = e;
        }
    }

    /// Measures the run of digits starting at `s` and validates it if its
    /// shape can hold a match; returns its end.
    fn digit_run(&self, v: &[u8], s: usize, emit: &mut impl FnMut(Candidate)) -> usize {
        let shape = Shape::measure(v, s);
        if let Some(target) = self.iban {
            let capital = |i: usize| at(v, i).is_some_and(|b| b.is_ascii_uppercase());
            let after_capitals = s >= 2 && capital(s - 1) && capital(s - 2);
            if after_capitals && let Some(span) = detectors::iban_at(v, s) {
                emit(candidate(span, target));
            }
        }
        if let (Some(t), true) = (self.phone, shape.phone) {
            detectors::phone_numbers(v, s, shape.end, &mut |span| emit(candidate(span, t)));
        }
        if let (Some(t), true) = (self.ssn, shape.ssn) {
            detectors::ssns(v, s, shape.end, &mut |span| emit(candidate(span, t)));
        }
        if let (Some(t), true) = (self.card, shape.card) {
            detectors::card_numbers(v, s, shape.end, &mut |span| emit(candidate(span, t)));
        }
        shape.end
    }
}

/// What a run of digit groups could hold, from its group lengths and
/// separators alone: a superset of what the validators accept.
struct Shape {
    end: usize,
    /// Groups of 3, 3 and 4 digits in a row (NANP), or a `+` and 8 digits.
    phone: bool,
    /// Groups of 3, 2 and 4 joined by the same single `-` or space.
    ssn: bool,
    /// 13 digits in groups joined by single spaces or dashes.
    card: bool,
}

impl Shape {
    fn measure(v: &[u8], s: usize) -> Shape {
        let plus = s > 0 && at(v, s - 1) == Some(b'+');
        let mut shape = Shape {
            end: s,
            phone: false,
            ssn: false,
            card: false,
        };
        // Lengths of the two groups before this one, and the single-byte
        // separators before this group and before the previous one (0 for a
        // two-byte separator).
        let (mut len2, mut len1) = (0usize, 0usize);
        let (mut sep2, mut sep1) = (0u8, 0u8);
        let (mut digits, mut chain) = (0usize, 0usize);
        let mut g = s;
        loop {
            let ge = digits_end(v, g);
            let len = ge - g;
            digits += len;
            chain = if matches!(sep1, b' ' | b'-') {
                chain + len
            } else {
                len
            };
            shape.card |= chain >= 13;
            shape.phone |= (len2 == 3 && len1 == 3 && len == 4) || (plus && digits >= 8);
            shape.ssn |=
                len2 == 3 && len1 == 2 && len == 4 && sep1 == sep2 && matches!(sep1, b' ' | b'-');
            shape.end = ge;
            let (next, sep) = match (at(v, ge), at(v, ge + 1)) {
                (Some(a), Some(b)) if run_sep(a) && b.is_ascii_digit() => (ge + 1, a),
                (Some(a), Some(b)) if run_sep(a) && run_sep(b) && is_digit(at(v, ge + 2)) => {
                    (ge + 2, 0)
                }
                _ => return shape,
            };
            (len2, len1) = (len1, len);
            (sep2, sep1) = (sep1, sep);
            g = next;
        }
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

/// How many digits and `@` signs `v` holds.
/// Byte-wide counters over chunks of 255 keep the loop in vector registers.
fn census(v: &[u8]) -> Census {
    let mut total = Census::default();
    if v.len() <= 64 {
        // Short values (most) through a fixed 64-byte copy: the loop is
        // fully vectorised, with no scalar tail.
        let mut bytes = [0u8; 64];
        if let Some(dst) = bytes.get_mut(..v.len()) {
            dst.copy_from_slice(v);
        }
        total.add(&bytes);
    } else {
        for chunk in v.chunks(255) {
            total.add(chunk);
        }
    }
    total
}

impl Census {
    /// Adds the counts of at most 255 bytes.
    fn add(&mut self, chunk: &[u8]) {
        let (mut d, mut a) = (0u8, 0u8);
        for &b in chunk {
            d = d.wrapping_add(u8::from(b.wrapping_sub(b'0') < 10));
            a = a.wrapping_add(u8::from(b == b'@'));
        }
        self.digits += usize::from(d);
        self.at_signs += usize::from(a);
    }
}

#[derive(Debug, Default)]
struct Census {
    digits: usize,
    at_signs: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ByteScan {
        /// Stage two alone, on every run: what stage one must not lose.
        fn run_everywhere(&self, v: &[u8], emit: &mut impl FnMut(Candidate)) {
            let mut i = 0;
            while i < v.len() {
                match at(v, i) {
                    Some(b'@') => {
                        if let (Some(span), Some(t)) = (detectors::email_at(v, i), self.email) {
                            emit(candidate(span, t));
                        }
                        i += 1;
                    }
                    Some(b) if b.is_ascii_digit() => i = self.digit_run(v, i, emit),
                    _ => i += 1,
                }
            }
        }
    }

    fn all() -> ByteScan {
        let mut scan = ByteScan::default();
        for (i, d) in Detector::ALL.into_iter().enumerate() {
            scan.enable(d, RuleId(i as u32), Strategy::Redact);
        }
        scan
    }

    fn spans(f: impl FnOnce(&mut dyn FnMut(Candidate))) -> Vec<(usize, usize, RuleId)> {
        let mut out = Vec::new();
        f(&mut |c: Candidate| out.push((c.start, c.end, c.rule)));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Random values built from pieces that resemble (and nearly resemble)
    /// what the detectors look for: the filtered scan finds exactly what the
    /// unfiltered one does.
    #[test]
    fn stage_one_loses_nothing() {
        const PIECES: &[&str] = &[
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "378282246310005",
            "5555555555554444",
            "123-45-6789",
            "123 45 6789",
            "(415) 555-2671",
            "415.555.2671",
            "+44 20 7946 0958",
            "+1 (415) 555-2671",
            "1-800-555-0199",
            "+7 (495) 123-45-67",
            "+4 9. 1 5. 1 2",
            "GB82 WEST 1234 5698 7654 32",
            "DE89370400440532013000",
            "user@example.com",
            "a@b.co",
            "2024-03-15 12:34:56.789+00",
            "550e8400-e29b-41d4-a716-446655440000",
            "1234.56",
            "42",
            "7",
            "-",
            " ",
            "  ",
            ".",
            "(",
            ")",
            "/",
            "+",
            "@",
            "x",
            "GB",
            "Ab",
            "é",
            "\u{1F389}",
            "0",
            "12",
            "123",
            "1234",
        ];
        let scan = all();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut value = String::new();
            let n = 1 + next() % 12;
            for _ in 0..n {
                value.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let v = value.as_bytes();
            let filtered = spans(|e| scan.run(v, &mut |c| e(c)));
            let everywhere = spans(|e| scan.run_everywhere(v, &mut |c| e(c)));
            assert_eq!(filtered, everywhere, "{value:?}");
        }
    }
}
