//! Writing replacements: redaction, partial redaction and HMAC tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

use super::rules::Strategy;

/// The redaction marker.
pub(super) const REDACTED: &[u8] = b"****";
/// The prefix of every token.
pub(super) const TOKEN_PREFIX: &[u8] = b"tok_";
/// How many bytes of the HMAC a token keeps (128 bits: collisions between
/// distinct values are not a practical concern).
const TOKEN_BYTES: usize = 16;
/// The shortest secret accepted when a rule uses [`Strategy::Token`].
pub(super) const MIN_SECRET: usize = 16;

/// What [`Masker::apply`](super::Masker::apply) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The replacement was appended to `out`.
    Written,
    /// The value must become SQL NULL (length -1); nothing was appended.
    Null,
}

/// HMAC-SHA-256 keyed once with the gateway secret.
#[derive(Clone)]
pub(super) struct Tokenizer {
    mac: Hmac<Sha256>,
}

impl Tokenizer {
    pub(super) fn new(secret: &[u8]) -> Tokenizer {
        // HMAC accepts keys of any length; this cannot fail.
        let mac = match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => unreachable_key(),
        };
        Tokenizer { mac }
    }

    fn write(&self, value: &[u8], out: &mut Vec<u8>) {
        let mut mac = self.mac.clone();
        mac.update(value);
        let tag = mac.finalize().into_bytes();
        let short: &[u8] = tag.get(..TOKEN_BYTES).unwrap_or_default();
        // 16 bytes are 22 base64 characters without padding.
        let mut text = [0u8; 24];
        let n = URL_SAFE_NO_PAD.encode_slice(short, &mut text).unwrap_or(0);
        out.extend_from_slice(TOKEN_PREFIX);
        out.extend_from_slice(text.get(..n).unwrap_or_default());
    }
}

#[cold]
fn unreachable_key() -> Hmac<Sha256> {
    // `Hmac::new_from_slice` only fails for MACs with a fixed key size, which
    // HMAC is not. Fall back to an empty key rather than panic.
    Hmac::<Sha256>::new(&Default::default())
}

/// Appends the replacement of `value` under `strategy` to `out`.
pub(super) fn write(
    strategy: Strategy,
    value: &[u8],
    tokens: &Tokenizer,
    out: &mut Vec<u8>,
) -> Applied {
    match strategy {
        Strategy::Redact => out.extend_from_slice(REDACTED),
        Strategy::Partial { keep_last } => partial(value, keep_last, out),
        Strategy::Token => tokens.write(value, out),
        Strategy::Null => return Applied::Null,
    }
    Applied::Written
}

/// `****` and the last `keep` characters, if at least as many are hidden.
/// Characters are UTF-8 scalar values when the value is UTF-8, else bytes.
fn partial(value: &[u8], keep: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(REDACTED);
    if keep == 0 {
        return;
    }
    let tail_start = match std::str::from_utf8(value) {
        Ok(s) => {
            let chars = s.chars().count();
            if chars < keep.saturating_mul(2) {
                return;
            }
            s.char_indices()
                .nth(chars - keep)
                .map_or(value.len(), |(i, _)| i)
        }
        Err(_) => {
            if value.len() < keep.saturating_mul(2) {
                return;
            }
            value.len() - keep
        }
    };
    if let Some(tail) = value.get(tail_start..) {
        out.extend_from_slice(tail);
    }
}
