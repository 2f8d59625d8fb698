//! Streaming masking of HTTP response bodies: JSON ([`JsonMaskStream`]) and
//! line-oriented text ([`TextMaskStream`]).
//!
//! Both are sans-IO state machines, one per response: the caller feeds the
//! body's bytes in chunks of any size and gets back, after each chunk, every
//! byte that is already safe to send. Only the token in progress is held (a
//! JSON string, number or literal; a text line), and never more than
//! [`BodyLimits::max_value`] bytes of it, so a large or endless response
//! (`kubectl get -w`, `kubectl logs -f`) streams through in bounded memory.
//! The output does not depend on how the body was cut into chunks.
//!
//! What gets masked:
//! - JSON values under a key that matches a [`JsonKeys`] rule (`password`,
//!   `*token`), with the rule's strategy; every scalar inside an object or
//!   array under such a key;
//! - every other JSON string value (decoded, so escapes cannot hide a match)
//!   and number, and every text line, by the [`Masker`](super::Masker)'s
//!   content rules (detectors and dictionaries).
//!
//! What this module is not: it knows no HTTP. The caller picks the stream
//! by content type, undoes and redoes any content encoding, and frames the
//! output (chunked transfer coding, since the length changes).
//!
//! Each stream reports what it masked as [`MaskHit`](crate::event::MaskHit)
//! summaries: rule name, where (the JSON key path, `text` for text bodies)
//! and how many values — never the values.

mod escape;
mod hits;
mod json;
mod keys;
#[cfg(test)]
mod tests;
mod text;

pub use json::JsonMaskStream;
pub use keys::{JsonKeyRule, JsonKeys, KeyRuleError};
pub use text::TextMaskStream;

/// Which stream masks a body, by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// [`JsonMaskStream`]: `application/json` (with any parameters, such as
    /// Kubernetes' `;stream=watch` or `;as=Table`), `application/*+json`
    /// (`merge-patch+json`, `problem+json`) and `application/x-ndjson`.
    Json,
    /// [`TextMaskStream`]: `text/*` (`text/plain` of `kubectl logs`,
    /// `text/event-stream`, …).
    Text,
}

impl BodyKind {
    /// The kind for a `Content-Type` value, ASCII case-insensitive and
    /// parameters ignored; `None` for a type neither stream reads
    /// (Kubernetes protobuf, images, archives, or no type at all): the
    /// caller decides whether such a body may pass unmasked or must be
    /// refused (or asks the upstream for JSON through `Accept`).
    pub fn of_content_type(value: &str) -> Option<BodyKind> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        let essence = essence.to_ascii_lowercase();
        let (kind, subtype) = essence.split_once('/')?;
        match kind {
            "application"
                if subtype == "json" || subtype == "x-ndjson" || subtype.ends_with("+json") =>
            {
                Some(BodyKind::Json)
            }
            "text" if !subtype.is_empty() => Some(BodyKind::Text),
            _ => None,
        }
    }
}

/// Bounds on what a stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The longest token held, in raw (encoded) bytes: a JSON string with
    /// its quotes and escapes, a JSON key or number, a text line. A longer
    /// JSON string value is replaced whole by `"****"` (fail closed, hit
    /// `limit:max_value`) without being scanned; a longer key or number is an
    /// error; a longer text line is cut (see [`TextMaskStream`]).
    /// Default 1 MiB.
    pub max_value: usize,
    /// The deepest nesting of JSON objects and arrays accepted (an error
    /// past it). Default 256.
    pub max_depth: usize,
}

impl Default for BodyLimits {
    fn default() -> BodyLimits {
        BodyLimits {
            max_value: 1 << 20,
            max_depth: 256,
        }
    }
}

/// Why a body could not be masked. After an error the stream is poisoned:
/// every later call fails with [`BodyMaskError::Poisoned`] and writes
/// nothing, so the caller must cut the response (the upstream caused it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyMaskError {
    /// The body is not JSON: `what` was wrong at byte `offset` of the body
    /// (for a malformed token, the offset of its first byte).
    #[error("invalid JSON at byte {offset}: {what}")]
    Syntax {
        /// Offset from the start of the body.
        offset: u64,
        /// What was wrong.
        what: &'static str,
    },
    /// A JSON key or number longer than [`BodyLimits::max_value`].
    #[error("JSON key or number at byte {offset} is longer than the limit")]
    TooLong {
        /// Offset of the token's first byte.
        offset: u64,
    },
    /// Objects and arrays nested deeper than [`BodyLimits::max_depth`].
    #[error("JSON nested deeper than the limit at byte {offset}")]
    TooDeep {
        /// Offset of the opening bracket past the limit.
        offset: u64,
    },
    /// The body ended inside a value.
    #[error("the body ended inside a JSON value")]
    Truncated,
    /// An earlier call failed; nothing more is masked.
    #[error("an earlier error stopped masking this body")]
    Poisoned,
}
