//! E-mail addresses, found around an `@`.
//!
//! Local part: ASCII letters, digits and `._%+-` (and non-ASCII bytes, so an
//! internationalised address is masked whole), at most 64 bytes back from the
//! `@`. Domain: two or more dot-separated labels of letters, digits, `-` (not
//! at either end of a label) or non-ASCII bytes, the last of which is at
//! least two letters (or non-ASCII). So `user@example.com` and
//! `a@b.co` are addresses; `foo@bar`, `a@b.c`, `pkg@1.2.3`, `@Override` and
//! retina image names such as `icon@2x.png` are not.

use super::{Span, at};

const LOCAL_MAX: usize = 64;
const DOMAIN_MAX: usize = 255;

fn local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-') || b >= 0x80
}

fn label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80
}

/// The address around the `@` at `a`.
pub(crate) fn at_sign(v: &[u8], a: usize) -> Option<Span> {
    let head = v.get(a.saturating_sub(LOCAL_MAX)..a)?;
    let local_len = head.iter().rev().take_while(|&&b| local_byte(b)).count();
    let local = head.get(head.len() - local_len..)?;
    // A local part does not start with a dot (`see.@x` is prose).
    let dots = local.iter().take_while(|&&b| b == b'.').count();
    if dots == local.len() {
        return None;
    }
    let start = a - local_len + dots;
    let end = domain_end(v, a + 1)?;
    Some((start, end))
}

/// The end of the domain starting at `d`, or `None` if there is no valid one.
fn domain_end(v: &[u8], d: usize) -> Option<usize> {
    let limit = v.len().min(d.saturating_add(DOMAIN_MAX));
    let mut i = d;
    let mut labels = 0usize;
    let mut first_label = (d, d);
    let mut best = None;
    loop {
        let ls = i;
        while i < limit && at(v, i).is_some_and(label_byte) {
            i += 1;
        }
        let label = v.get(ls..i).unwrap_or_default();
        if label.is_empty() || label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            break;
        }
        labels += 1;
        if labels == 1 {
            first_label = (ls, i);
        } else if top_level(label) {
            best = Some(i);
        }
        let more = at(v, i) == Some(b'.') && at(v, i + 1).is_some_and(label_byte);
        if !more {
            break;
        }
        i += 1;
    }
    let end = best?;
    // `icon@2x.png`: a scale suffix, not a host.
    let first = v.get(first_label.0..first_label.1).unwrap_or_default();
    let scale = first.len() >= 2
        && first.last() == Some(&b'x')
        && first.iter().rev().skip(1).all(u8::is_ascii_digit);
    (!scale).then_some(end)
}

fn top_level(label: &[u8]) -> bool {
    label.len() >= 2 && label.iter().all(|&b| b.is_ascii_alphabetic() || b >= 0x80)
}
