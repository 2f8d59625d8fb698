//! National identifiers: US social security numbers and IBANs.

use super::{Span, at, before, digits_end, ends_cleanly, is_alnum, next_group, number};

/// Reports the SSNs (`AAA-GG-SSSS` or `AAA GG SSSS`) in the digit run
/// `v[start..end]`. Bare nine-digit numbers are not reported: too many ids
/// look like them (mask such columns with a column rule).
pub(crate) fn ssns(v: &[u8], start: usize, end: usize, emit: &mut impl FnMut(Span)) {
    let mut g = start;
    while g < end {
        if let Some(e) = ssn_at(v, g) {
            emit((g, e));
            g = next_group(v, e, end);
        } else {
            g = next_group(v, digits_end(v, g), end);
        }
    }
}

fn ssn_at(v: &[u8], s: usize) -> Option<usize> {
    let e1 = digits_end(v, s);
    let sep = at(v, e1).filter(|b| matches!(b, b'-' | b' '))?;
    let e2 = digits_end(v, e1 + 1);
    let e3 = digits_end(v, e2 + 1);
    let shape = e1 - s == 3 && e2 - e1 == 3 && at(v, e2) == Some(sep) && e3 - e2 == 5;
    if !shape || !clean_around(v, s, e3, sep) {
        return None;
    }
    let area = number(v, s, e1);
    let group = number(v, e1 + 1, e2);
    let serial = number(v, e2 + 1, e3);
    let valid = area != 0 && area != 666 && area < 900 && group != 0 && serial != 0;
    valid.then_some(e3)
}

/// Not glued to letters or digits, nor part of a longer chain joined by the
/// same separator.
fn clean_around(v: &[u8], s: usize, e: usize, sep: u8) -> bool {
    let chained_before = before(v, s) == Some(sep) && s >= 2 && super::is_digit(before(v, s - 1));
    let chained_after = at(v, e) == Some(sep) && super::is_digit(at(v, e + 1));
    !is_alnum(before(v, s)) && !chained_before && !chained_after && ends_cleanly(v, e)
}

/// IBAN lengths by country (ISO 13616 registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20),
    (b"BE", 16), (b"BG", 22), (b"BH", 22), (b"BI", 27), (b"BR", 29), (b"BY", 28),
    (b"CH", 21), (b"CR", 22), (b"CY", 28), (b"CZ", 24), (b"DE", 22), (b"DJ", 27),
    (b"DK", 18), (b"DO", 28), (b"EE", 20), (b"EG", 29), (b"ES", 24), (b"FI", 18),
    (b"FK", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22), (b"GE", 22), (b"GI", 23),
    (b"GL", 18), (b"GR", 27), (b"GT", 28), (b"HN", 28), (b"HR", 21), (b"HU", 28),
    (b"IE", 22), (b"IL", 23), (b"IQ", 23), (b"IS", 26), (b"IT", 27), (b"JO", 30),
    (b"KW", 30), (b"KZ", 20), (b"LB", 28), (b"LC", 32), (b"LI", 21), (b"LT", 20),
    (b"LU", 20), (b"LV", 21), (b"LY", 25), (b"MC", 27), (b"MD", 24), (b"ME", 22),
    (b"MK", 19), (b"MN", 20), (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NI", 28),
    (b"NL", 18), (b"NO", 15), (b"OM", 23), (b"PK", 24), (b"PL", 28), (b"PS", 29),
    (b"PT", 25), (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"RU", 33), (b"SA", 24),
    (b"SC", 31), (b"SD", 18), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27),
    (b"SO", 23), (b"ST", 25), (b"SV", 28), (b"TL", 23), (b"TN", 24), (b"TR", 26),
    (b"UA", 29), (b"VA", 22), (b"VG", 24), (b"XK", 20), (b"YE", 30),
];

const IBAN_MAX: usize = 34;

/// The IBAN whose check digits start at `i` (the country code is the two
/// letters before), compact or printed in groups of four.
pub(crate) fn iban_at(v: &[u8], i: usize) -> Option<Span> {
    let s = i.checked_sub(2)?;
    let country = v.get(s..i)?;
    if is_alnum(before(v, s)) || !super::is_digit(at(v, i + 1)) {
        return None;
    }
    let len = IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|&(_, len)| len)?;
    let mut chars = [0u8; IBAN_MAX];
    let mut n = 0usize;
    let mut j = s;
    while n < len {
        match at(v, j) {
            Some(b) if b.is_ascii_uppercase() || b.is_ascii_digit() => {
                *chars.get_mut(n)? = b;
                n += 1;
                j += 1;
            }
            Some(b' ') if n.is_multiple_of(4) && is_alnum(at(v, j + 1)) => j += 1,
            _ => return None,
        }
    }
    if is_alnum(at(v, j)) {
        return None;
    }
    let chars = chars.get(..len)?;
    let (head, bban) = chars.split_at(4);
    let rem = bban.iter().chain(head).fold(0u32, |r, &b| {
        if b.is_ascii_digit() {
            (r * 10 + u32::from(b - b'0')) % 97
        } else {
            (r * 100 + u32::from(b - b'A') + 10) % 97
        }
    });
    (rem == 1).then_some((s, j))
}
