//! Keyword-anchored secrets: cloud keys, API tokens, JWTs, PEM private keys.
//! Each validator gets the value, where the keyword hit starts and its
//! length, and says which bytes to replace.

use super::{Kw, Span, at, before};

/// The longest base64 run read after `AccountKey=` (keys are 88 characters).
const AZURE_MAX: usize = 512;
/// The longest JWT part read (bounds the work per `eyJ` hit).
const PART_MAX: usize = 16 * 1024;

fn alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Validates the keyword hit `v[s..s + len]` for `kw`.
pub(crate) fn validate(kw: Kw, v: &[u8], s: usize, len: usize) -> Option<Span> {
    let body = s + len;
    match kw {
        Kw::AwsKeyId => fixed(
            v,
            s,
            body,
            16,
            |b| b.is_ascii_uppercase() || b.is_ascii_digit(),
            alnum,
        ),
        Kw::GcpKey => fixed(v, s, body, 35, b64url, b64url),
        Kw::GithubClassic => token(v, s, body, 30..=251, alnum, |b| alnum(b) || b == b'_'),
        Kw::GithubPat => token(v, s, body, 22..=244, |b| alnum(b) || b == b'_', alnum),
        Kw::Stripe => stripe(v, s, body),
        Kw::Slack => slack(v, s, body),
        Kw::AwsSecret => aws_secret(v, body),
        Kw::AzureKey => azure_key(v, body),
        Kw::Jwt => jwt(v, s),
        Kw::Pem => pem(v, s, body),
    }
}

/// The prefix and exactly `n` body bytes of `class`, not glued to `glue`
/// bytes on either side.
fn fixed(
    v: &[u8],
    s: usize,
    body: usize,
    n: usize,
    class: impl Fn(u8) -> bool,
    glue: impl Fn(u8) -> bool,
) -> Option<Span> {
    let e = super::run_end_max(v, body, n, &class);
    let glued = before(v, s).is_some_and(&glue) || at(v, body + n).is_some_and(&glue);
    (e >= body + n && !glued).then_some((s, body + n))
}

/// The prefix and a body of `class` bytes whose length is in `lens`.
fn token(
    v: &[u8],
    s: usize,
    body: usize,
    lens: std::ops::RangeInclusive<usize>,
    class: impl Fn(u8) -> bool,
    glue_before: impl Fn(u8) -> bool,
) -> Option<Span> {
    if before(v, s).is_some_and(glue_before) {
        return None;
    }
    let e = super::run_end_max(v, body, lens.end() + 1, class);
    lens.contains(&(e - body)).then_some((s, e))
}

/// `sk_live_…`, `rk_live_…`, `sk_test_…`, `rk_test_…`: the hit starts at
/// the `k`.
fn stripe(v: &[u8], s: usize, body: usize) -> Option<Span> {
    let start = s.checked_sub(1)?;
    if !matches!(at(v, start), Some(b's' | b'r')) {
        return None;
    }
    token(v, start, body, 16..=247, alnum, |b| alnum(b) || b == b'_')
}

/// `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-` (hit `xox`), or
/// `xapp-`.
fn slack(v: &[u8], s: usize, body: usize) -> Option<Span> {
    let body = if at(v, s + 1) == Some(b'o') {
        let kind = matches!(at(v, body), Some(b'b' | b'p' | b'a' | b'r' | b's' | b'e'));
        if !kind || at(v, body + 1) != Some(b'-') {
            return None;
        }
        body + 2
    } else {
        body
    };
    token(v, s, body, 10..=255, |b| alnum(b) || b == b'-', alnum)
}

/// `…secret_access_key = "…40 base64 characters…"`: only the key.
fn aws_secret(v: &[u8], body: usize) -> Option<Span> {
    let mut i = body;
    let mut assigned = false;
    while i < body + 8 {
        match at(v, i) {
            Some(b':' | b'=') => assigned = true,
            Some(b' ' | b'\t' | b'"' | b'\'' | b'>') => {}
            _ => break,
        }
        i += 1;
    }
    let e = super::run_end_max(v, i, 41, b64);
    let glued = at(v, e).is_some_and(|b| b == b'=');
    (assigned && e - i == 40 && !glued).then_some((i, e))
}

/// `AccountKey=…base64…` / `SharedAccessKey=…`: only the key.
fn azure_key(v: &[u8], body: usize) -> Option<Span> {
    let e = super::run_end_max(v, body, AZURE_MAX, b64);
    if e - body < 20 {
        return None;
    }
    let pad = v
        .get(e..)
        .unwrap_or_default()
        .iter()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    Some((body, e + pad))
}

/// `eyJ….eyJ….signature` (two to five dot-separated base64url parts, the
/// second also a JSON object).
fn jwt(v: &[u8], s: usize) -> Option<Span> {
    if before(v, s).is_some_and(b64url) {
        return None;
    }
    let e1 = super::run_end_max(v, s, PART_MAX, b64url);
    if e1 - s < 10 || at(v, e1) != Some(b'.') {
        return None;
    }
    let p2 = e1 + 1;
    if v.get(p2..p2 + 3) != Some(b"eyJ".as_slice()) {
        return None;
    }
    let e2 = super::run_end_max(v, p2, PART_MAX, b64url);
    if at(v, e2) != Some(b'.') {
        return None;
    }
    let mut end = super::run_end_max(v, e2 + 1, PART_MAX, b64url);
    // JWE has five parts; keep going over up to two more.
    for _ in 0..2 {
        if at(v, end) == Some(b'.') && at(v, end + 1).is_some_and(b64url) {
            end = super::run_end_max(v, end + 1, PART_MAX, b64url);
        } else {
            break;
        }
    }
    Some((s, end))
}

/// `-----BEGIN … PRIVATE KEY-----` through the next `-----END …-----`, or to
/// the end of the value when the block is cut off.
fn pem(v: &[u8], s: usize, body: usize) -> Option<Span> {
    let label_end = super::run_end_max(v, body, 64, |b| {
        b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' '
    });
    let label = v.get(body..label_end)?;
    let dashes = v.get(label_end..label_end + 5) == Some(b"-----".as_slice());
    if !dashes || find(label, b"PRIVATE KEY").is_none() {
        return None;
    }
    let after = label_end + 5;
    let Some(end_at) = find(v.get(after..)?, b"-----END ").map(|i| after + i) else {
        return Some((s, v.len()));
    };
    let tail = end_at + b"-----END ".len();
    let close = find(v.get(tail..)?, b"-----").map_or(v.len(), |i| tail + i + 5);
    Some((s, close))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
