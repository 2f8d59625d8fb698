//! JSON string decoding and encoding, and the number grammar (RFC 8259).

/// Decodes a JSON string's contents (between the quotes) into `out`:
/// escapes resolved, a surrogate pair joined, a lone surrogate decoded as
/// U+FFFD. Fails on a control character, a bad escape or bytes that are not
/// UTF-8.
pub(super) fn decode(inner: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    if std::str::from_utf8(inner).is_err() {
        return Err("string is not UTF-8");
    }
    let mut rest = inner;
    loop {
        let stop = rest.iter().position(|&b| b == b'\\' || b < 0x20);
        let Some(stop) = stop else {
            out.extend_from_slice(rest);
            return Ok(());
        };
        let (plain, tail) = rest.split_at(stop);
        out.extend_from_slice(plain);
        let Some((&b'\\', tail)) = tail.split_first() else {
            return Err("control character in string");
        };
        let (&e, tail) = tail.split_first().ok_or("unfinished escape")?;
        rest = tail;
        let simple = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let (unit, tail) = hex4(rest)?;
                rest = tail;
                let c = if (0xD800..0xDC00).contains(&unit) {
                    match low_surrogate(rest) {
                        Some((low, tail)) => {
                            rest = tail;
                            let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                            char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER)
                        }
                        None => char::REPLACEMENT_CHARACTER,
                    }
                } else {
                    char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER)
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            _ => return Err("bad escape in string"),
        };
        out.push(simple);
    }
}

/// Four hex digits after `\u`.
fn hex4(s: &[u8]) -> Result<(u32, &[u8]), &'static str> {
    let (digits, rest) = s.split_at_checked(4).ok_or("bad \\u escape")?;
    let mut v = 0u32;
    for &d in digits {
        let n = char::from(d).to_digit(16).ok_or("bad \\u escape")?;
        v = v * 16 + n;
    }
    Ok((v, rest))
}

/// A `\uDC00`–`\uDFFF` escape at the start of `s`.
fn low_surrogate(s: &[u8]) -> Option<(u32, &[u8])> {
    let s = s.strip_prefix(b"\\u")?;
    let (unit, rest) = hex4(s).ok()?;
    (0xDC00..0xE000).contains(&unit).then_some((unit, rest))
}

/// Appends `value` as a JSON string: quotes, `"` `\` and control characters
/// escaped, everything else as is; bytes that are not UTF-8 become U+FFFD
/// (the output is always valid JSON).
pub(super) fn encode(value: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for chunk in value.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                0..0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
                    out.push(HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'));
                }
                _ => out.push(b),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{FFFD}".as_bytes());
        }
    }
    out.push(b'"');
}

/// Whether `b` can continue a JSON number token.
pub(super) fn in_number(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
}

/// Whether `s` is a JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)?
/// ([eE] [+-]? [0-9]+)?`.
pub(super) fn is_number(s: &[u8]) -> bool {
    let digits = |s: &[u8]| s.iter().take_while(|b| b.is_ascii_digit()).count();
    let s = s.strip_prefix(b"-").unwrap_or(s);
    let s = match s.first() {
        Some(b'0') => s.get(1..).unwrap_or_default(),
        Some(b'1'..=b'9') => s.get(digits(s)..).unwrap_or_default(),
        _ => return false,
    };
    let s = match s.strip_prefix(b".") {
        Some(f) => match digits(f) {
            0 => return false,
            n => f.get(n..).unwrap_or_default(),
        },
        None => s,
    };
    let s = match s.first() {
        Some(b'e' | b'E') => {
            let e = s.get(1..).unwrap_or_default();
            let e = e
                .strip_prefix(b"+")
                .or_else(|| e.strip_prefix(b"-"))
                .unwrap_or(e);
            match digits(e) {
                0 => return false,
                n => e.get(n..).unwrap_or_default(),
            }
        }
        _ => s,
    };
    s.is_empty()
}
