//! Binary-format values of common PostgreSQL types, as psql would print
//! their text form.
//!
//! Drivers such as tokio-postgres, asyncpg and pgx exchange values in
//! binary format. A transcript keeps the exact bytes (in hex) and, for the
//! types below, also shows what they mean. A value of any other type, or
//! one whose length does not fit its type, is shown in hex only: nothing
//! here guesses.
//!
//! Times are shown in UTC (`timestamptz` with `+00`), whatever the
//! session's `TimeZone` was.

use std::fmt::Write as _;

use time::{Date, Duration, PrimitiveDateTime, Time};

/// Type OIDs (from `pg_type.dat`).
mod oid {
    pub const BOOL: u32 = 16;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const XID: u32 = 28;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
}

/// The text form of a binary value of type `type_oid`, if this module
/// knows the type and the bytes are valid for it.
pub fn decode_binary(type_oid: u32, b: &[u8]) -> Option<String> {
    match type_oid {
        oid::BOOL => match b {
            [0] => Some("f".into()),
            [1] => Some("t".into()),
            _ => None,
        },
        oid::CHAR => match b {
            [c] if c.is_ascii() => Some(char::from(*c).to_string()),
            _ => None,
        },
        oid::NAME
        | oid::TEXT
        | oid::JSON
        | oid::XML
        | oid::UNKNOWN
        | oid::BPCHAR
        | oid::VARCHAR => std::str::from_utf8(b).ok().map(str::to_owned),
        oid::JSONB => match b.split_first() {
            Some((1, json)) => std::str::from_utf8(json).ok().map(str::to_owned),
            _ => None,
        },
        oid::INT2 => Some(i16::from_be_bytes(b.try_into().ok()?).to_string()),
        oid::INT4 => Some(i32::from_be_bytes(b.try_into().ok()?).to_string()),
        oid::INT8 => Some(i64::from_be_bytes(b.try_into().ok()?).to_string()),
        oid::OID | oid::XID => Some(u32::from_be_bytes(b.try_into().ok()?).to_string()),
        oid::FLOAT4 => Some(float(f64::from(f32::from_be_bytes(b.try_into().ok()?)))),
        oid::FLOAT8 => Some(float(f64::from_be_bytes(b.try_into().ok()?))),
        oid::UUID => uuid(b),
        oid::DATE => date(i32::from_be_bytes(b.try_into().ok()?)),
        oid::TIME => time_of_day(i64::from_be_bytes(b.try_into().ok()?)),
        oid::TIMESTAMP => timestamp(i64::from_be_bytes(b.try_into().ok()?), ""),
        oid::TIMESTAMPTZ => timestamp(i64::from_be_bytes(b.try_into().ok()?), "+00"),
        oid::NUMERIC => numeric(b),
        _ => None,
    }
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        v.to_string()
    }
}

fn uuid(b: &[u8]) -> Option<String> {
    if b.len() != 16 {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    Some(s)
}

/// PostgreSQL's epoch, 2000-01-01.
fn pg_epoch() -> Option<Date> {
    Date::from_calendar_date(2000, time::Month::January, 1).ok()
}

fn date(days: i32) -> Option<String> {
    match days {
        i32::MAX => return Some("infinity".into()),
        i32::MIN => return Some("-infinity".into()),
        _ => {}
    }
    let d = pg_epoch()?.checked_add(Duration::days(i64::from(days)))?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    ))
}

fn time_of_day(us: i64) -> Option<String> {
    if !(0..=86_400_000_000).contains(&us) {
        return None;
    }
    let secs = us / 1_000_000;
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    push_fraction(&mut s, us % 1_000_000);
    Some(s)
}

fn timestamp(us: i64, zone: &str) -> Option<String> {
    match us {
        i64::MAX => return Some("infinity".into()),
        i64::MIN => return Some("-infinity".into()),
        _ => {}
    }
    let epoch = PrimitiveDateTime::new(pg_epoch()?, Time::MIDNIGHT);
    let t = epoch.checked_add(Duration::microseconds(us))?;
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    push_fraction(&mut s, i64::from(t.microsecond()));
    s.push_str(zone);
    Some(s)
}

/// `.123` for 123000 µs, as PostgreSQL trims trailing zeros.
fn push_fraction(s: &mut String, us: i64) {
    if us != 0 {
        let frac = format!("{us:06}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
}

/// Binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
fn numeric(b: &[u8]) -> Option<String> {
    let word = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(2 * i)?, *b.get(2 * i + 1)?]))
    };
    let ndigits = usize::try_from(word(0)? as i16).ok()?;
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::try_from(word(3)? as i16).ok()?;
    if b.len() != 8 + 2 * ndigits {
        return None;
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(4 + i).filter(|d| *d < 10_000))
        .collect::<Option<_>>()?;
    let digit = |i: i64| -> u16 {
        usize::try_from(i)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut s = String::new();
    match sign {
        0x0000 => {}
        0x4000 => s.push('-'),
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    }
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            if i == 0 {
                let _ = write!(s, "{}", digit(i));
            } else {
                let _ = write!(s, "{:04}", digit(i));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: i16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn decodes_common_types() {
        let cases: Vec<(u32, Vec<u8>, Option<&str>)> = vec![
            (oid::BOOL, vec![1], Some("t")),
            (oid::BOOL, vec![2], None),
            (oid::INT4, 3i32.to_be_bytes().to_vec(), Some("3")),
            (oid::INT4, vec![0, 3], None),
            (oid::INT8, (-5i64).to_be_bytes().to_vec(), Some("-5")),
            (oid::INT2, 7i16.to_be_bytes().to_vec(), Some("7")),
            (oid::TEXT, b"initech".to_vec(), Some("initech")),
            (oid::TEXT, vec![0xff], None),
            (oid::JSONB, b"\x01{\"a\": 1}".to_vec(), Some("{\"a\": 1}")),
            (oid::FLOAT8, 0.1f64.to_be_bytes().to_vec(), Some("0.1")),
            (oid::FLOAT4, f32::NAN.to_be_bytes().to_vec(), Some("NaN")),
            (
                oid::UUID,
                (0u8..16).collect(),
                Some("00010203-0405-0607-0809-0a0b0c0d0e0f"),
            ),
            (
                oid::DATE,
                9_090i32.to_be_bytes().to_vec(),
                Some("2024-11-20"),
            ),
            (
                oid::TIMESTAMPTZ,
                (1_000_000i64 * 86_400 + 123_000).to_be_bytes().to_vec(),
                Some("2000-01-02 00:00:00.123+00"),
            ),
            (
                oid::TIME,
                (3_723_000_000i64).to_be_bytes().to_vec(),
                Some("01:02:03"),
            ),
            (
                oid::NUMERIC,
                numeric_bytes(0, 0, 2, &[4500]),
                Some("4500.00"),
            ),
            (
                oid::NUMERIC,
                numeric_bytes(1, 0x4000, 3, &[12, 3456, 7800]),
                Some("-123456.780"),
            ),
            (oid::NUMERIC, numeric_bytes(-1, 0, 4, &[50]), Some("0.0050")),
            (oid::NUMERIC, numeric_bytes(0, 0, 0, &[]), Some("0")),
            (oid::NUMERIC, numeric_bytes(0, 0xC000, 0, &[]), Some("NaN")),
            (oid::NUMERIC, numeric_bytes(0, 0, 0, &[10_000]), None),
            (oid::NUMERIC, vec![0, 5, 0], None),
            (17, vec![1, 2], None),
        ];
        for (oid, bytes, want) in cases {
            assert_eq!(
                decode_binary(oid, &bytes).as_deref(),
                want,
                "{oid} {bytes:?}"
            );
        }
    }
}
