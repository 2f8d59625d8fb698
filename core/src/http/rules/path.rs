//! Request paths normalised before they are matched: one strict
//! percent-decoding, and the refusal of everything that could make the
//! gateway and the target read a path differently.
//!
//! The path is percent-decoded once, fully, as Go's `net/url` (the
//! Kubernetes API server) and most servers do: `/v1/%69nvoices` is
//! `/v1/invoices`. A path is refused, never repaired, when it holds
//!
//! - a `.` or `..` segment, also once decoded (`%2E%2E`) and with path
//!   parameters (`..;x`, which Tomcat and Spring read as `..`): so
//!   `/v1/invoices/../admin` can never pass as `/v1/invoices/**`;
//! - an encoded `/` or `\` (`%2F`, `%5C`), a raw `\`, or one of those or a
//!   dot encoded twice (`%252F`, `%252E`): servers disagree on them;
//! - an empty segment (`//`) other than a trailing slash;
//! - a bad percent-escape, a decoded byte that is a control character, a
//!   `#`, or bytes that are not UTF-8 once decoded;
//! - anything but an origin-form target (it must start with `/`).
//!
//! The query (after the first `?`) is not part of the path and is ignored
//! for matching. A trailing slash is kept: `/v1/invoices/` is not
//! `/v1/invoices`.

use std::fmt;

/// Why a request path could not be normalised (the request is denied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The request target does not start with `/`.
    #[error("the request path must start with `/`")]
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    #[error("the path has a bad percent-escape")]
    BadEscape,
    /// `%2F` or `%5C` (an encoded slash or backslash), or a raw `\`.
    #[error("the path has an encoded `/` or a backslash, which servers read differently")]
    EncodedSlash,
    /// An escape of `/`, `\` or `.` encoded a second time (`%252F`).
    #[error("the path is percent-encoded twice")]
    DoubleEncoded,
    /// A `.` or `..` segment.
    #[error("the path has a `.` or `..` segment")]
    DotSegment,
    /// `//` inside the path.
    #[error("the path has an empty segment (`//`)")]
    EmptySegment,
    /// A control character or `#`, raw or decoded.
    #[error("the path has a control character or `#`")]
    ControlChar,
    /// The decoded path is not UTF-8.
    #[error("the decoded path is not UTF-8")]
    NotUtf8,
}

/// A request path, decoded and checked: its segments and whether it ends
/// in a slash. `/` is no segment and no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// The decoded segments, none empty, none `.` or `..`.
    pub segments: Vec<String>,
    /// Whether the path ends in `/` after its last segment.
    pub trailing_slash: bool,
}

impl NormalPath {
    /// Normalises the path of `path_and_query` (the query is dropped).
    pub fn parse(path_and_query: &str) -> Result<NormalPath, PathError> {
        let path = match path_and_query.split_once('?') {
            Some((path, _query)) => path,
            None => path_and_query,
        };
        let rest = path.strip_prefix('/').ok_or(PathError::NotOriginForm)?;
        if rest.is_empty() {
            return Ok(NormalPath {
                segments: Vec::new(),
                trailing_slash: false,
            });
        }
        let (rest, trailing_slash) = match rest.strip_suffix('/') {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let segments = rest
            .split('/')
            .map(decode_segment)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NormalPath {
            segments,
            trailing_slash,
        })
    }
}

impl fmt::Display for NormalPath {
    /// The decoded path: `/` then the segments joined by `/`, then the
    /// trailing slash if any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            write!(f, "/{s}")?;
        }
        if self.trailing_slash {
            f.write_str("/")?;
        }
        Ok(())
    }
}

/// Decodes and checks one segment.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    if raw.is_empty() {
        return Err(PathError::EmptySegment);
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let byte = if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&h| hex(h));
            let lo = bytes.get(i + 2).and_then(|&l| hex(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            i += 3;
            let decoded = hi << 4 | lo;
            if decoded == b'/' || decoded == b'\\' {
                return Err(PathError::EncodedSlash);
            }
            decoded
        } else {
            i += 1;
            if b == b'\\' {
                return Err(PathError::EncodedSlash);
            }
            b
        };
        if byte < 0x20 || byte == 0x7f || byte == b'#' {
            return Err(PathError::ControlChar);
        }
        out.push(byte);
    }
    if encodes_dangerous(&out) {
        return Err(PathError::DoubleEncoded);
    }
    let segment = String::from_utf8(out).map_err(|_| PathError::NotUtf8)?;
    let bare = segment.split(';').next().unwrap_or_default();
    if bare == "." || bare == ".." {
        return Err(PathError::DotSegment);
    }
    Ok(segment)
}

/// Whether decoded bytes still hold an escape of `/`, `\` or `.` (the
/// path was encoded twice: `%252F`, or `%25%32%46`).
fn encodes_dangerous(decoded: &[u8]) -> bool {
    decoded.windows(3).any(|w| {
        let w = w.to_ascii_uppercase();
        matches!(w.as_slice(), b"%2F" | b"%5C" | b"%2E")
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
