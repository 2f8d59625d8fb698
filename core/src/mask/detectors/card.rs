//! Payment card numbers: 13–19 digits, contiguous or in groups of three or
//! more separated by single spaces or dashes (`4111 1111 1111 1111`,
//! `3782 822463 10005`), a known issuer prefix for the length, and the Luhn
//! check.
//!
//! Inside a longer run of grouped digits (`12 4111 1111 1111 1111`) every
//! window of whole groups is a candidate; the leftmost start with the longest
//! valid window wins.

use super::{Span, at, before, digits_end, is_alnum, is_digit, next_group};

const MIN: usize = 13;
const MAX: usize = 19;

/// Reports the card numbers in the digit run `v[start..end]`.
pub(crate) fn find(v: &[u8], start: usize, end: usize, emit: &mut impl FnMut(Span)) {
    let mut g = start;
    while g < end {
        if let Some(e) = longest_from(v, g) {
            emit((g, e));
            g = next_group(v, e, end);
        } else {
            g = next_group(v, digits_end(v, g), end);
        }
    }
}

/// The end of the longest valid card number starting at group `s`.
fn longest_from(v: &[u8], s: usize) -> Option<usize> {
    if is_alnum(before(v, s)) {
        return None;
    }
    let mut digits = [0u8; MAX];
    let mut n = 0usize;
    let mut g = s;
    let mut best = None;
    loop {
        let ge = digits_end(v, g);
        if ge - g < 3 {
            return best;
        }
        for &b in v.get(g..ge).unwrap_or_default() {
            match digits.get_mut(n) {
                Some(d) => *d = b - b'0',
                None => return best,
            }
            n += 1;
        }
        let number = digits.get(..n).unwrap_or_default();
        if n >= MIN && !is_alnum(at(v, ge)) && valid(number) {
            best = Some(ge);
        }
        match at(v, ge) {
            Some(b' ' | b'-') if is_digit(at(v, ge + 1)) => g = ge + 1,
            _ => return best,
        }
    }
}

/// Issuer prefix and length, then Luhn.
pub(crate) fn valid(d: &[u8]) -> bool {
    issuer_ok(d) && luhn(d)
}

fn prefix(d: &[u8], k: usize) -> u32 {
    d.iter().take(k).fold(0u32, |n, &x| n * 10 + u32::from(x))
}

/// Known issuer identification ranges and their lengths (Visa, Mastercard,
/// American Express, Discover, Diners, JCB, UnionPay, Maestro, Mir).
fn issuer_ok(d: &[u8]) -> bool {
    let n = d.len();
    match d.first() {
        Some(4) => matches!(n, 13 | 16 | 19),
        Some(5) => match prefix(d, 2) {
            51..=55 => n == 16,
            50 | 56..=59 => n >= 13,
            _ => false,
        },
        Some(2) => match prefix(d, 4) {
            2221..=2720 => n == 16,
            2200..=2204 => n >= 16,
            _ => false,
        },
        Some(3) => match prefix(d, 2) {
            34 | 37 => n == 15,
            36 | 38 | 39 => n >= 14,
            30 => prefix(d, 3) <= 305 && n >= 14,
            35 => (3528..=3589).contains(&prefix(d, 4)) && n >= 16,
            _ => false,
        },
        Some(6) => n >= 13,
        _ => false,
    }
}

/// The Luhn (mod 10) check over digit values.
pub(crate) fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}
