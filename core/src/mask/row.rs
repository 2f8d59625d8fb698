//! Screening a whole row before masking its values one by one.
//!
//! Most rows hold nothing to mask, and most of their values are short
//! (ids, names, timestamps, amounts), so per-value masking is bound by the
//! per-call cost of the automaton and the byte scan, not by bytes.
//! [`Masker::row_may_match`] copies the row into one buffer, the bytes
//! between values (length prefixes) zeroed, and runs each prefilter once
//! over it:
//! - the byte scan's triggers (every `@`, every digit shape), with no
//!   census; a trigger is then checked by running the scan over the value
//!   it falls in, alone;
//! - the keyword automaton, over the buffer folded to lower case; a match
//!   is then checked by running the keyword prefilter over its value alone.
//!
//! So the answer is exact: true when, and only when, [`Masker::mask_value`]
//! would rewrite one of the values (or the row is too long to screen). A
//! false alarm from the row pass (a shape or a pattern spanning two values)
//! costs one value's check. That nothing can be missed is argued at
//! [`super::scan::ByteScan::any_trigger`] and
//! [`super::prefilter::Prefilter::any_match`]: NUL is in none of the scan's
//! classes and in no pattern.

use std::ops::{ControlFlow, Range};

use super::Masker;

/// Rows with more bytes than this are not screened: their values go to
/// [`Masker::mask_value`] one by one, whose per-call cost values this long
/// amortise, and the buffer stays small.
const ROW_MAX: usize = 16 * 1024;

/// Buffers [`Masker::row_may_match`] reuses from row to row (one per
/// session).
#[derive(Debug, Default)]
pub struct RowScratch {
    /// The row, every byte outside the values zeroed.
    bytes: Vec<u8>,
    /// Where each non-empty value is.
    spans: Vec<(usize, usize)>,
}

impl Masker {
    /// Whether [`Masker::mask_value`] would rewrite any of the values of
    /// `row` at `values` (the ranges the caller would pass it, in order,
    /// apart: at least one byte between two values, such as a length
    /// prefix). `false` means every one of them may be forwarded untouched
    /// without calling it; `true` means at least one would be rewritten, or
    /// that the row was not screened (longer than 16 KiB, or ranges out of
    /// order, touching or out of bounds).
    ///
    /// The row is copied once into `scratch`, the bytes between values
    /// zeroed: NUL is in none of the byte scan's classes and in no pattern,
    /// so no match found spans two values (the argument is in `row.rs`).
    pub fn row_may_match<I>(&self, row: &[u8], values: I, scratch: &mut RowScratch) -> bool
    where
        I: IntoIterator<Item = Range<usize>>,
    {
        if !self.has_content_rules() {
            return false;
        }
        let RowScratch { bytes, spans } = scratch;
        spans.clear();
        let mut end = 0;
        for Range { start, end: e } in values {
            if start == e {
                continue;
            }
            let apart = start > end || (start == 0 && spans.is_empty());
            if !apart || e < start || e > row.len() {
                return true;
            }
            spans.push((start, e));
            end = e;
        }
        if spans.is_empty() {
            return false;
        }
        if end > ROW_MAX {
            return true;
        }
        bytes.clear();
        bytes.extend_from_slice(row.get(..end).unwrap_or_default());
        let mut gap = 0;
        for &(s, e) in spans.iter() {
            let between = bytes.get_mut(gap..s).unwrap_or_default();
            // Most gaps are one length prefix: a fixed-size store, not a
            // call to `memset`.
            match <&mut [u8; 4]>::try_from(&mut *between) {
                Ok(prefix) => *prefix = [0; 4],
                Err(_) => between.fill(0),
            }
            gap = e;
        }
        let spans: &[(usize, usize)] = spans;
        // The value holding position `p`.
        let value_at = |p: usize| -> Option<(usize, usize, usize)> {
            let k = spans.partition_point(|&(_, e)| e <= p);
            spans
                .get(k)
                .filter(|&&(s, _)| s <= p)
                .map(|&(s, e)| (k, s, e))
        };

        let mut checked = None;
        let scan_hit = self.scan.any_trigger(bytes, &mut |p| {
            let Some((k, s, e)) = value_at(p) else {
                return false;
            };
            if checked == Some(k) {
                return false;
            }
            checked = Some(k);
            let mut hit = false;
            self.scan
                .run(row.get(s..e).unwrap_or_default(), &mut |_| hit = true);
            hit
        });
        if scan_hit {
            return true;
        }

        let Some(prefilter) = &self.prefilter else {
            return false;
        };
        prefilter.any_match(bytes, &mut |p| {
            let Some((_, s, e)) = value_at(p) else {
                return ControlFlow::Continue(p + 1);
            };
            let mut hit = false;
            prefilter.candidates(row.get(s..e).unwrap_or_default(), &mut |_| hit = true);
            if hit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(e)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, DictionaryRule, MaskRules, Masker, Strategy};
    use super::*;

    /// Pieces values are built from: what the detectors and dictionaries
    /// look for, in other cases, cut in two, and the clean columns around
    /// them.
    const PIECES: &[&str] = &[
        "4111 1111 1111 1111",
        "4111 1111",
        " 1111 1111",
        "5555555555554444",
        "5555555",
        "555444",
        "123-45-6789",
        "123-45-",
        "6789",
        "(415) 555-2671",
        "+44 20 7946 0958",
        "+44",
        " 20 7946 0958",
        "GB82 WEST 1234 5698 7654 32",
        "GB",
        "82 WEST 1234 5698 7654 32",
        "maria.garcia@example.com",
        "maria.garcia",
        "@example.com",
        "AKIAIOSFODNN7EXAMPLE",
        "akiaiosfodnn7example",
        "AKIA",
        "IOSFODNN7EXAMPLE",
        "ghp_aB3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6",
        "ghp_",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "SECRET_ACCESS_KEY: ",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----",
        "-----BEGIN ",
        "Contoso",
        "CONTOSO",
        "conTOSO ltd",
        "Conto",
        "so",
        "Zed",
        "zed",
        "db-prod-7.internal",
        "DB-PROD-7.INTERNAL",
        "1000007",
        "3f2a9b1c-0d4e-4f5a-a6b7-c8d9e0f1a2b3",
        "2024-03-15 12:34:56.789012+00",
        "1234.56",
        "Maria Garcia",
        "shipped",
        "the customer asked about delivery ",
        "Müller",
        "\u{1F389}",
        "12",
        "1234",
        "+",
        "-",
        " ",
        "@",
        "\0",
        "",
    ];

    fn maskers() -> Vec<Masker> {
        let all = Detector::ALL
            .iter()
            .map(|&d| (d, Strategy::Redact))
            .collect::<Vec<_>>();
        let dictionaries = vec![
            DictionaryRule {
                terms: vec!["contoso".into(), "db-prod-7.internal".into()],
                case_insensitive: true,
                strategy: Strategy::Redact,
            },
            DictionaryRule {
                terms: vec!["Zed".into()],
                case_insensitive: false,
                strategy: Strategy::Redact,
            },
        ];
        let mut sets = vec![
            MaskRules {
                detectors: all.clone(),
                ..MaskRules::default()
            },
            MaskRules {
                detectors: all,
                dictionaries: dictionaries.clone(),
                ..MaskRules::default()
            },
            MaskRules {
                dictionaries,
                ..MaskRules::default()
            },
        ];
        // Each detector alone: its classes and shapes without the others'.
        for &d in &Detector::ALL {
            sets.push(MaskRules {
                detectors: vec![(d, Strategy::Redact)],
                ..MaskRules::default()
            });
        }
        sets.into_iter()
            .map(|rules| Masker::new(rules, b"0123456789abcdef-test-secret").unwrap())
            .collect()
    }

    /// Each value masked alone, as the protocol layer did before the screen.
    fn per_value(m: &Masker, row: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
        row.iter()
            .map(|v| {
                let mut out = Vec::new();
                m.mask_value(v, &mut out)
                    .map(|o| if o.nulled() { b"NULL".to_vec() } else { out })
            })
            .collect()
    }

    /// `values` laid out as a row: before each, a gap of 1 to 6 bytes of
    /// what length prefixes can hold (digits, `@`, `+`, capitals, letters
    /// of patterns); returns the row and the values' ranges.
    fn lay_out(values: &[Vec<u8>], next: &mut impl FnMut() -> u64) -> (Vec<u8>, Vec<Range<usize>>) {
        const GAP: &[u8] = b"09@+AZaksy_-=:\0\xff";
        let mut row = Vec::new();
        let mut ranges = Vec::new();
        for v in values {
            for _ in 0..1 + next() % 6 {
                row.push(GAP[(next() % GAP.len() as u64) as usize]);
            }
            ranges.push(row.len()..row.len() + v.len());
            row.extend_from_slice(v);
        }
        let tail = (next() % 3) as usize;
        row.extend(std::iter::repeat_n(b'7', tail));
        (row, ranges)
    }

    /// Random rows of 1 to 12 values built from [`PIECES`], some values
    /// long enough to cross 64-byte blocks, laid out between bytes that
    /// would complete a match: the screen answers exactly whether per-value
    /// masking rewrites anything, so masking through it gives the same row.
    #[test]
    fn screen_is_exact() {
        let maskers = maskers();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut scratch = RowScratch::default();
        let (mut dirty, mut clean) = (0, 0);
        for round in 0..6_000 {
            let columns = 1 + next() % 12;
            let values: Vec<Vec<u8>> = (0..columns)
                .map(|_| {
                    let mut v = Vec::new();
                    for _ in 0..next() % 6 {
                        let piece = PIECES[(next() % PIECES.len() as u64) as usize];
                        v.extend_from_slice(piece.as_bytes());
                    }
                    v
                })
                .collect();
            let (row, ranges) = lay_out(&values, &mut next);
            let m = &maskers[round % maskers.len()];
            let expected = per_value(m, &values);
            let any = expected.iter().any(Option::is_some);
            let screened = m.row_may_match(&row, ranges, &mut scratch);
            let shown: Vec<_> = values.iter().map(|v| String::from_utf8_lossy(v)).collect();
            assert_eq!(screened, any, "{shown:?}");
            let masked = if screened {
                per_value(m, &values)
            } else {
                vec![None; values.len()]
            };
            assert_eq!(masked, expected);
            if any {
                dirty += 1;
            } else {
                clean += 1;
            }
        }
        // Both answers were exercised.
        assert!(dirty > 1000 && clean > 1000, "{dirty} dirty, {clean} clean");
    }

    /// A match split across two values is no match, and one at either end
    /// of a value, next to another, is found.
    #[test]
    fn boundaries() {
        let maskers = maskers();
        let m = &maskers[1];
        let mut scratch = RowScratch::default();
        // Values one byte apart, that byte a digit.
        let mut screen = |values: &[&str]| {
            let mut row = Vec::new();
            let mut ranges = Vec::new();
            for v in values {
                row.push(b'5');
                ranges.push(row.len()..row.len() + v.len());
                row.extend_from_slice(v.as_bytes());
            }
            m.row_may_match(&row, ranges, &mut scratch)
        };
        assert!(!screen(&["4111 1111", "1111 1111"]));
        assert!(!screen(&["4111 1111 111", "1 1111"]));
        assert!(!screen(&["123-45", "-6789"]));
        assert!(!screen(&["maria.garcia", "@example.com"]));
        assert!(!screen(&["AK", "IAIOSFODNN7EXAMPLE"]));
        assert!(!screen(&["Cont", "oso"]));
        assert!(!screen(&[
            "1000007",
            "3f2a9b1c-0d4e-4f5a-a6b7-c8d9e0f1a2b3"
        ]));
        assert!(!screen(&[]));
        assert!(!screen(&["", ""]));
        assert!(screen(&["1000007", "4111 1111 1111 1111"]));
        assert!(screen(&["4111 1111 1111 1111", "x"]));
        assert!(screen(&["x", "CONTOSO"]));
        assert!(screen(&["contoso", "x"]));
        assert!(screen(&["x", "a@b.co"]));
        let long = "x".repeat(ROW_MAX);
        assert!(screen(&["1", long.as_str()]), "too long to screen");
        // Ranges the screen cannot separate are not screened.
        let row = b"4111 1111 1111 1111";
        assert!(m.row_may_match(row, [0..9, 9..19], &mut scratch));
        assert!(m.row_may_match(row, [0..4, 2..9], &mut scratch));
        assert!(m.row_may_match(row, std::iter::once(0..40), &mut scratch));
        assert!(!m.row_may_match(row, [0..4, 5..9], &mut scratch));
        let none = Masker::new(MaskRules::default(), b"").unwrap();
        assert!(!none.row_may_match(row, std::iter::once(0..row.len()), &mut scratch));
    }
}
