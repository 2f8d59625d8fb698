//! Small formatting helpers shared by the renderers: terminal-safe strings,
//! timestamps, durations, counts and sizes.

use std::fmt::Write as _;

use time::OffsetDateTime;
use time::macros::format_description;

/// Makes recorded text safe to print on an auditor's terminal.
///
/// Everything in a transcript came from an agent or a target, so it may
/// hold escape sequences meant for a terminal. Control characters (C0, DEL,
/// C1) and the Unicode bidirectional overrides are written as escapes
/// (`\t`, `\r`, `\u{1b}`); newlines are kept when `keep_newlines`, else
/// written as `\n`. Backslashes are left alone, so the output is for
/// reading, not for parsing back.
pub fn sanitize(s: &str, keep_newlines: bool) -> String {
    escape(s, keep_newlines, false)
}

/// [`sanitize`] for a line of COPY text: tabs (its column separator) kept,
/// newlines escaped.
pub fn sanitize_copy_line(s: &str) -> String {
    escape(s, false, true)
}

fn escape(s: &str, keep_newlines: bool, keep_tabs: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' if keep_newlines => out.push('\n'),
            '\n' => out.push_str("\\n"),
            '\t' if keep_tabs => out.push('\t'),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || is_bidi_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Characters that reorder how a line displays (Trojan Source, CVE-2021-42574).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// Lower-case hex with PostgreSQL's `\x` prefix (as `bytea_output = hex`).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + 2 * bytes.len());
    out.push_str("\\x");
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// An RFC 3339 UTC timestamp with milliseconds, e.g.
/// `2026-11-25T18:40:01.123Z`, for microseconds since the Unix epoch.
/// Times outside what can be represented are shown as the raw number.
pub fn rfc3339_us(at_us: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_us) * 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("@{at_us}us"))
}

/// A duration for a person: `0.4 ms`, `12.3 ms`, `1.204 s`, `12m03.5s`.
pub fn duration_us(us: i64) -> String {
    let us = us.max(0);
    if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else if us < 600_000_000 {
        format!("{:.3} s", us as f64 / 1e6)
    } else {
        let secs = us / 1_000_000;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            format!("{h}h{m:02}m{s:02}s")
        } else {
            format!("{m}m{s:02}s")
        }
    }
}

/// A session duration, compact: `1.204s`, `12m03s`, `2h05m00s`.
pub fn session_duration_us(us: i64) -> String {
    let us = us.max(0);
    if us < 600_000_000 {
        format!("{:.3}s", us as f64 / 1e6)
    } else {
        duration_us(us)
    }
}

/// An offset from the session start, as in `[+0.003s]`.
pub fn offset_us(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "+" };
    let us = us.unsigned_abs();
    format!("[{sign}{}.{:03}s]", us / 1_000_000, us % 1_000_000 / 1000)
}

/// A count with thousands grouped by spaces: `99 900`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A byte count with a binary unit: `312 B`, `4.1 KiB`, `2.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = "KiB";
    for next in UNITS.iter().skip(1) {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// `s`, cut to at most `max` characters with a trailing `…`.
pub fn ellipsize(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The display width of `s` in columns, counting each character as one.
pub fn width(s: &str) -> usize {
    s.chars().count()
}

/// `n` and the singular or plural noun: `1 row`, `3 rows`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", grouped(n), if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_terminal_escapes() {
        assert_eq!(sanitize("a\x1b[2Jb", true), "a\\u{1b}[2Jb");
        assert_eq!(sanitize("x\ny\tz", true), "x\ny\\tz");
        assert_eq!(sanitize("x\ny", false), "x\\ny");
        assert_eq!(sanitize("a\u{202e}b", false), "a\\u{202e}b");
        assert_eq!(sanitize("zoë €", false), "zoë €");
    }

    #[test]
    fn formats_times_and_numbers() {
        assert_eq!(
            rfc3339_us(1_795_632_001_123_456),
            "2026-11-25T18:40:01.123Z"
        );
        assert_eq!(rfc3339_us(i64::MAX), format!("@{}us", i64::MAX));
        assert_eq!(duration_us(400), "0.4 ms");
        assert_eq!(duration_us(1_204_000), "1.204 s");
        assert_eq!(session_duration_us(1_204_000), "1.204s");
        assert_eq!(duration_us(3_723_000_000), "1h02m03s");
        assert_eq!(offset_us(3_000), "[+0.003s]");
        assert_eq!(offset_us(12_345_678), "[+12.345s]");
        assert_eq!(grouped(99_900), "99 900");
        assert_eq!(grouped(1_234_567), "1 234 567");
        assert_eq!(grouped(100), "100");
        assert_eq!(bytes(312), "312 B");
        assert_eq!(bytes(4200), "4.1 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(hex(&[0, 0x2a]), "\\x002a");
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(plural(1, "row", "rows"), "1 row");
    }
}
