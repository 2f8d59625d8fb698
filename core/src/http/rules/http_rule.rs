//! One `http` entry of a plan rule, `"METHODS PATH"`, parsed and matched.

use std::fmt;

use super::path::NormalPath;

/// One `http` entry: methods and a path pattern.
///
/// - Methods are comma-separated (`GET`, `GET,HEAD`, `POST`) or `*` for
///   any method. They are upper-cased when parsed; a request's method is
///   compared exactly (methods are case-sensitive, RFC 9110), so `GET`
///   does not cover a request sent as `get`, nor `HEAD`.
/// - The path pattern starts with `/`. A `*` segment matches exactly one
///   non-empty segment; a final `/**` matches the rest: zero or more
///   segments, and a trailing slash (`/v1/invoices/**` matches
///   `/v1/invoices`, `/v1/invoices/` and `/v1/invoices/7/lines`). `*` is
///   a wildcard only as a whole segment (`/v1/inv*` is refused), and `**`
///   only at the end. Other segments are compared after the same
///   normalisation as request paths ([`NormalPath`]), so `%7E` in a
///   pattern is `~`. Without `/**`, a trailing slash must match exactly.
///   A pattern has no query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    text: String,
    /// `None` is any method.
    methods: Option<Vec<String>>,
    segments: Vec<Segment>,
    /// Ends in `/**`.
    rest: bool,
    trailing_slash: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
}

impl HttpRule {
    /// Parses an entry, saying what is wrong with it.
    pub fn parse(entry: &str) -> Result<HttpRule, String> {
        let mut words = entry.split_whitespace();
        let (Some(methods), Some(path), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "http entry {entry:?}: expected METHODS PATH, e.g. \"GET,HEAD /v1/invoices/**\""
            ));
        };
        let methods = parse_methods(methods).map_err(|e| format!("http entry {entry:?}: {e}"))?;
        let (prefix, rest) = match path.strip_suffix("/**") {
            Some(prefix) => (if prefix.is_empty() { "/" } else { prefix }, true),
            None => (path, false),
        };
        if path.contains('?') {
            return Err(format!(
                "http entry {entry:?}: a path pattern has no query (queries are not matched)"
            ));
        }
        let normal = NormalPath::parse(prefix).map_err(|e| format!("http entry {entry:?}: {e}"))?;
        let segments = normal
            .segments
            .into_iter()
            .map(|s| match s.as_str() {
                "*" => Ok(Segment::One),
                "**" => Err(format!(
                    "http entry {entry:?}: `**` is allowed only at the end, as `/**`"
                )),
                _ if s.contains('*') => Err(format!(
                    "http entry {entry:?}: `*` must be a whole path segment"
                )),
                _ => Ok(Segment::Literal(s)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HttpRule {
            text: entry.trim().to_owned(),
            methods,
            segments,
            rest,
            trailing_slash: normal.trailing_slash && !rest,
        })
    }

    /// Whether the rule covers `method` on `path`.
    pub fn matches(&self, method: &str, path: &NormalPath) -> bool {
        let method_ok = self
            .methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m == method));
        method_ok && self.matches_path(path)
    }

    fn matches_path(&self, path: &NormalPath) -> bool {
        let n = self.segments.len();
        let fits = if self.rest {
            path.segments.len() >= n
        } else {
            path.segments.len() == n && path.trailing_slash == self.trailing_slash
        };
        fits && self
            .segments
            .iter()
            .zip(&path.segments)
            .all(|(p, s)| match p {
                Segment::One => true,
                Segment::Literal(l) => l == s,
            })
    }
}

impl fmt::Display for HttpRule {
    /// The entry as the plan spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_methods(spec: &str) -> Result<Option<Vec<String>>, String> {
    if spec == "*" {
        return Ok(None);
    }
    let mut methods = Vec::new();
    for m in spec.split(',') {
        if m == "*" {
            return Ok(None);
        }
        if m.is_empty() || !m.bytes().all(is_tchar) {
            return Err(format!("{m:?} is not an HTTP method"));
        }
        methods.push(m.to_ascii_uppercase());
    }
    Ok(Some(methods))
}

/// A token character (RFC 9110 section 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
