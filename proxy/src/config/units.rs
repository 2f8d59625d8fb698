//! Values with units: byte sizes and durations.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A size as written in the config: an integer number of bytes, or a
/// string with a unit (`"64MiB"`, `"512 KiB"`, `"1MB"`, `"4096"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    /// `max_frame_bytes = 65536`
    Bytes(u64),
    /// `max_frame_bytes = "64MiB"`
    Text(String),
}

impl ByteSize {
    /// The number of bytes. Units: `B`, `KiB`/`MiB`/`GiB` (powers of 1024),
    /// `KB`/`MB`/`GB` (powers of 1000); case-insensitive, space allowed
    /// before the unit.
    pub fn bytes(&self) -> Result<u64, String> {
        let text = match self {
            ByteSize::Bytes(n) => return Ok(*n),
            ByteSize::Text(text) => text.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let bad = || {
            format!(
                "{text:?} is not a size; write bytes as an integer, or a number with a unit \
                 (B, KiB, MiB, GiB, KB, MB, GB), e.g. \"64MiB\""
            )
        };
        let number: u64 = number.parse().map_err(|_| bad())?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            _ => return Err(bad()),
        };
        number
            .checked_mul(multiplier)
            .ok_or_else(|| format!("{text:?} is too large"))
    }
}

/// Parses a humantime duration (`"5s"`, `"250ms"`, `"1m 30s"`).
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write e.g. \"5s\", \"250ms\" or \"1m 30s\"")
    })
}

/// A duration as the config would write it.
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A byte count as the config would write it (`64MiB`, `1000B`).
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let ok = [
            (ByteSize::Bytes(4096), 4096),
            (ByteSize::Text("4096".into()), 4096),
            (ByteSize::Text("64MiB".into()), 64 << 20),
            (ByteSize::Text("64 mib".into()), 64 << 20),
            (ByteSize::Text("1KB".into()), 1000),
            (ByteSize::Text("2GiB".into()), 2 << 30),
            (ByteSize::Text("7B".into()), 7),
        ];
        for (size, bytes) in ok {
            assert_eq!(size.bytes(), Ok(bytes), "{size:?}");
        }
        for bad in [
            "",
            "MiB",
            "1.5MiB",
            "64 parsecs",
            "-1",
            "99999999999999999999GiB",
        ] {
            assert!(ByteSize::Text(bad.into()).bytes().is_err(), "{bad:?}");
        }
        assert_eq!(Size(64 << 20).to_string(), "64MiB");
        assert_eq!(Size(1000).to_string(), "1000B");
    }
}
