use std::fmt;
use std::str::FromStr;

/// A session's identifier: 16 bytes of a UUIDv7, so that ids sort by the
/// time the session started. The caller mints it (it needs a clock and
/// randomness); this crate only carries and formats it.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// Milliseconds since the Unix epoch encoded in the UUIDv7 prefix.
    pub fn unix_ms(&self) -> u64 {
        let [a, b, c, d, e, f, ..] = self.0;
        u64::from_be_bytes([0, 0, a, b, c, d, e, f])
    }
}

impl fmt::Display for SessionId {
    /// The canonical hyphenated UUID form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A session id that is not 32 hex digits (hyphens allowed anywhere).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a session id (expected a UUID such as 0193a5e2-7c1e-7d3a-9b1f-2c4d5e6f7a8b)")]
pub struct ParseSessionIdError;

impl FromStr for SessionId {
    type Err = ParseSessionIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        let mut digits = s.bytes().filter(|b| *b != b'-');
        for byte in &mut out {
            let hi = digits.next().and_then(hex_val).ok_or(ParseSessionIdError)?;
            let lo = digits.next().and_then(hex_val).ok_or(ParseSessionIdError)?;
            *byte = hi << 4 | lo;
        }
        if digits.next().is_some() {
            return Err(ParseSessionIdError);
        }
        Ok(SessionId(out))
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = SessionId([
            0x01, 0x93, 0xa5, 0xe2, 0x7c, 0x1e, 0x7d, 0x3a, 0x9b, 0x1f, 0x2c, 0x4d, 0x5e, 0x6f,
            0x7a, 0x8b,
        ]);
        let text = id.to_string();
        assert_eq!(text, "0193a5e2-7c1e-7d3a-9b1f-2c4d5e6f7a8b");
        assert_eq!(text.parse::<SessionId>(), Ok(id));
        assert_eq!(id.unix_ms(), 0x0193_a5e2_7c1e);
    }

    #[test]
    fn rejects_short_long_and_non_hex() {
        for bad in [
            "",
            "0193",
            "0193a5e2-7c1e-7d3a-9b1f-2c4d5e6f7a8b00",
            "zz93a5e27c1e7d3a9b1f2c4d5e6f7a8b",
        ] {
            assert!(bad.parse::<SessionId>().is_err(), "{bad}");
        }
    }
}
