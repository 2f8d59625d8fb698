//! Content detectors: validators that confirm (or reject) a candidate found
//! by the prefilter, and say which bytes to replace.
//!
//! Two kinds of candidates reach them:
//! - keyword hits from the automaton (`AKIA`, `ghp_`, `-----BEGIN `, …):
//!   [`keyword`] validates what surrounds the hit;
//! - digit runs and `@` signs from the byte scan ([`super::scan`]): card
//!   numbers, SSNs, phone numbers and IBANs are parsed out of a run of digits
//!   and separators, e-mail addresses out of the text around an `@`.
//!
//! Every validator is bounded: it reads at most a few hundred bytes around
//! its candidate (a PEM block reads to its END line), and rejects anything
//! glued to letters or digits on either side.

mod card;
mod email;
mod ids;
mod phone;
mod secrets;

pub(super) use card::find as card_numbers;
pub(super) use email::at_sign as email_at;
pub(super) use ids::{iban_at, ssns};
pub(super) use phone::find as phone_numbers;
pub(super) use secrets::validate as keyword;

use super::rules::Detector;

/// A byte range `[start, end)` of the value to replace.
pub(super) type Span = (usize, usize);

/// Which validator a keyword hit goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kw {
    AwsKeyId,
    AwsSecret,
    GcpKey,
    AzureKey,
    GithubClassic,
    GithubPat,
    Stripe,
    Slack,
    Jwt,
    Pem,
}

/// The keywords each detector hangs off, for the automaton. All are matched
/// exactly, except [`Kw::AwsSecret`]'s names, matched ignoring ASCII case.
pub(super) const KEYWORDS: &[(Detector, &str, Kw)] = &[
    (Detector::AwsAccessKey, "AKIA", Kw::AwsKeyId),
    (Detector::AwsAccessKey, "ASIA", Kw::AwsKeyId),
    // Matched ignoring case: `aws_secret_access_key`, `SecretAccessKey`, …
    (Detector::AwsSecretKey, "secret_access_key", Kw::AwsSecret),
    (Detector::AwsSecretKey, "secretaccesskey", Kw::AwsSecret),
    (Detector::AwsSecretKey, "secret-access-key", Kw::AwsSecret),
    (Detector::GcpApiKey, "AIza", Kw::GcpKey),
    (Detector::AzureStorageKey, "AccountKey=", Kw::AzureKey),
    (Detector::AzureStorageKey, "SharedAccessKey=", Kw::AzureKey),
    (Detector::GithubToken, "ghp_", Kw::GithubClassic),
    (Detector::GithubToken, "gho_", Kw::GithubClassic),
    (Detector::GithubToken, "ghs_", Kw::GithubClassic),
    (Detector::GithubToken, "ghu_", Kw::GithubClassic),
    (Detector::GithubToken, "ghr_", Kw::GithubClassic),
    (Detector::GithubToken, "github_pat_", Kw::GithubPat),
    // The letter before `k_` is checked by the validator (`sk_`, `rk_`).
    (Detector::StripeKey, "k_live_", Kw::Stripe),
    (Detector::StripeKey, "k_test_", Kw::Stripe),
    // The validator checks `xox[bparse]-`.
    (Detector::SlackToken, "xox", Kw::Slack),
    (Detector::SlackToken, "xapp-", Kw::Slack),
    (Detector::Jwt, "eyJ", Kw::Jwt),
    (Detector::PemPrivateKey, "-----BEGIN ", Kw::Pem),
];

/// Bytes of which a value must hold at least one for `kw`'s validator to
/// accept a match (screening before the automaton runs).
pub(super) fn required_bytes(kw: Kw) -> &'static [u8] {
    match kw {
        // `AKIA`, `ASIA`, `AIza` are matched in exact case.
        Kw::AwsKeyId | Kw::GcpKey => b"A",
        // `eyJ`, exact case.
        Kw::Jwt => b"J",
        // The name is followed by `:` or `=`.
        Kw::AwsSecret => b":=",
        Kw::AzureKey => b"=",
        Kw::GithubClassic | Kw::GithubPat | Kw::Stripe => b"_",
        // `xoxb-`, `xapp-`, `-----BEGIN `.
        Kw::Slack | Kw::Pem => b"-",
    }
}

pub(super) fn is_digit(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_digit())
}

pub(super) fn is_alnum(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric())
}

/// The byte before `i`, if any.
pub(super) fn before(v: &[u8], i: usize) -> Option<u8> {
    i.checked_sub(1).and_then(|j| v.get(j).copied())
}

/// The byte at `i`, if any.
pub(super) fn at(v: &[u8], i: usize) -> Option<u8> {
    v.get(i).copied()
}

/// End of the run of bytes satisfying `f` that starts at `i`.
pub(super) fn run_end(v: &[u8], i: usize, f: impl Fn(u8) -> bool) -> usize {
    v.get(i..).map_or(i, |rest| {
        i + rest.iter().position(|&b| !f(b)).unwrap_or(rest.len())
    })
}

/// Like [`run_end`], but reads at most `max` bytes (validators stay linear on
/// hostile input).
pub(super) fn run_end_max(v: &[u8], i: usize, max: usize, f: impl Fn(u8) -> bool) -> usize {
    v.get(i..).map_or(i, |rest| {
        i + rest.iter().take(max).take_while(|&&b| f(b)).count()
    })
}

/// End of the digit group starting at `i`.
pub(super) fn digits_end(v: &[u8], i: usize) -> usize {
    run_end(v, i, |b| b.is_ascii_digit())
}

/// The first digit at or after `i`, before `end`.
pub(super) fn next_group(v: &[u8], i: usize, end: usize) -> usize {
    let mut j = i;
    while j < end && !is_digit(at(v, j)) {
        j += 1;
    }
    j
}

/// The number written by the ASCII digits `v[s..e]` (at most 9 of them).
pub(super) fn number(v: &[u8], s: usize, e: usize) -> u32 {
    v.get(s..e).unwrap_or_default().iter().fold(0u32, |n, &b| {
        n.wrapping_mul(10)
            .wrapping_add(u32::from(b.wrapping_sub(b'0')))
    })
}

/// A digit-based match may start at `s`: not glued to a letter or digit,
/// nor continuing a `-`/`.`-separated number.
pub(super) fn starts_cleanly(v: &[u8], s: usize) -> bool {
    match before(v, s) {
        None => true,
        Some(b) if b.is_ascii_alphanumeric() => false,
        Some(b'-' | b'.') => !is_digit(before(v, s - 1)),
        Some(_) => true,
    }
}

/// A digit-based match may end at `e`: the mirror of [`starts_cleanly`].
pub(super) fn ends_cleanly(v: &[u8], e: usize) -> bool {
    match at(v, e) {
        None => true,
        Some(b) if b.is_ascii_alphanumeric() => false,
        Some(b'-' | b'.') => !is_digit(at(v, e + 1)),
        Some(_) => true,
    }
}
