//! Table-driven tests of the masking engine.

mod detectors;
mod rules;

use super::{Detector, DictionaryRule, MaskRules, Masker, Strategy};

const SECRET: &[u8] = b"0123456789abcdef-test-secret";

/// A masker with the given detectors, all redacting.
fn with_detectors(detectors: &[Detector]) -> Masker {
    let rules = MaskRules {
        detectors: detectors.iter().map(|&d| (d, Strategy::Redact)).collect(),
        ..MaskRules::default()
    };
    Masker::new(rules, SECRET).unwrap()
}

fn all_detectors() -> Masker {
    with_detectors(&Detector::ALL)
}

fn dictionary(terms: &[&str], case_insensitive: bool) -> DictionaryRule {
    DictionaryRule {
        terms: terms.iter().map(|t| (*t).to_owned()).collect(),
        case_insensitive,
        strategy: Strategy::Redact,
    }
}

/// The masked text, or `None` when the masker left the value alone (then it
/// must also have written nothing).
fn mask(m: &Masker, text: &str) -> Option<String> {
    mask_bytes(m, text.as_bytes()).map(|b| String::from_utf8(b).unwrap())
}

fn mask_bytes(m: &Masker, value: &[u8]) -> Option<Vec<u8>> {
    let mut out = b"prefix".to_vec();
    match m.mask_value(value, &mut out) {
        None => {
            assert_eq!(out, b"prefix", "wrote without reporting a hit");
            None
        }
        Some(outcome) => {
            assert!(outcome.hits().total() > 0);
            assert_eq!(out.get(..6), Some(&b"prefix"[..]), "clobbered out");
            Some(out.split_off(6))
        }
    }
}

/// Runs `(input, expected)` cases against `m`; `None` means untouched.
fn check(m: &Masker, cases: &[(&str, Option<&str>)]) {
    for (input, expected) in cases {
        let got = mask(m, input);
        assert_eq!(got.as_deref(), *expected, "input: {input:?}");
    }
}
