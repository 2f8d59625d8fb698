//! Phone numbers, conservatively: a `+` and 8–15 digits (E.164, optionally
//! grouped by spaces, dashes, dots or a parenthesised group such as
//! `+44 (0)20 7946 0958`), or a NANP number written with separators:
//! `(415) 555-2671`, `415-555-2671`, `415.555.2671`, `415 555 2671`, with
//! an optional leading `1` and the same separator. Bare digit strings,
//! seven-digit local numbers and NANP numbers whose area code or exchange
//! starts with 0 or 1 are not phone numbers.

use super::{
    Span, at, before, digits_end, ends_cleanly, is_alnum, is_digit, next_group, starts_cleanly,
};

/// Reports the phone numbers in the digit run `v[start..end]`.
pub(crate) fn find(v: &[u8], start: usize, end: usize, emit: &mut impl FnMut(Span)) {
    let mut g = start;
    while g < end {
        if let Some(span) = phone_at(v, g) {
            emit(span);
            g = next_group(v, span.1, end);
        } else {
            g = next_group(v, digits_end(v, g), end);
        }
    }
}

fn phone_at(v: &[u8], g: usize) -> Option<Span> {
    match before(v, g) {
        Some(b'+') => {
            let plus = g - 1;
            let glued = before(v, plus).is_some_and(|b| b.is_ascii_alphanumeric() || b == b'+');
            if glued {
                return None;
            }
            e164(v, g).map(|e| (plus, e))
        }
        Some(b'(') => {
            let open = g - 1;
            if is_alnum(before(v, open)) {
                return None;
            }
            nanp(v, open).map(|e| (open, e))
        }
        _ if !starts_cleanly(v, g) => None,
        _ => {
            let ge = digits_end(v, g);
            if ge - g == 1 && at(v, g) == Some(b'1') {
                // `1-415-555-2671`, `1 (415) 555-2671`
                let sep = at(v, ge).filter(|b| matches!(b, b'-' | b' ' | b'.'))?;
                let e = nanp(v, ge + 1)?;
                let same = at(v, ge + 4) == Some(sep) || at(v, ge + 1) == Some(b'(');
                same.then_some((g, e))
            } else {
                nanp(v, g).map(|e| (g, e))
            }
        }
    }
}

/// `+` then country code and number, 8–15 digits, at `g` (after the `+`).
fn e164(v: &[u8], g: usize) -> Option<usize> {
    if at(v, g) == Some(b'0') {
        return None;
    }
    let mut digits = 0usize;
    let mut i = g;
    loop {
        let e = digits_end(v, i);
        digits += e - i;
        if digits > 15 {
            return None;
        }
        // Up to two separators between groups: ` `, `-`, `.`, `(`, `)`.
        let sep = |b: Option<u8>| matches!(b, Some(b' ' | b'-' | b'.' | b'(' | b')'));
        let next = if sep(at(v, e)) && is_digit(at(v, e + 1)) {
            e + 1
        } else if sep(at(v, e)) && sep(at(v, e + 1)) && is_digit(at(v, e + 2)) {
            e + 2
        } else {
            return (digits >= 8 && ends_cleanly(v, e)).then_some(e);
        };
        i = next;
    }
}

/// A NANP number at `s`: `(NXX) NXX-XXXX`, `(NXX)NXX-XXXX`, or `NXX-NXX-XXXX`
/// with one separator (`-`, `.` or space) used twice. Returns its end.
fn nanp(v: &[u8], s: usize) -> Option<usize> {
    let (area, rest) = if at(v, s) == Some(b'(') {
        let a = s + 1;
        let ae = digits_end(v, a);
        if ae - a != 3 || at(v, ae) != Some(b')') {
            return None;
        }
        let rest = if at(v, ae + 1) == Some(b' ') {
            ae + 2
        } else {
            ae + 1
        };
        (a, rest)
    } else {
        let ae = digits_end(v, s);
        let sep = at(v, ae).filter(|b| matches!(b, b'-' | b' ' | b'.'))?;
        let xe = digits_end(v, ae + 1);
        if ae - s != 3 || at(v, xe) != Some(sep) {
            return None;
        }
        (s, ae + 1)
    };
    let xe = digits_end(v, rest);
    if !matches!(at(v, xe), Some(b'-' | b' ' | b'.')) {
        return None;
    }
    let ne = digits_end(v, xe + 1);
    let shape = xe - rest == 3 && ne - xe == 5;
    let n_ok = |i: usize| at(v, i).is_some_and(|b| (b'2'..=b'9').contains(&b));
    (shape && n_ok(area) && n_ok(rest) && ends_cleanly(v, ne)).then_some(ne)
}
