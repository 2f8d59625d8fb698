//! The masking engine over arbitrary values: never a panic, and a value it
//! reports unchanged gets nothing written.
#![no_main]

use gatehouse_core::mask::{ColumnRule, Detector, DictionaryRule, MaskRules, Masker, Strategy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rules = MaskRules {
        columns: vec![ColumnRule {
            pattern: "*.ssn".into(),
            strategy: Strategy::Redact,
        }],
        detectors: Detector::ALL
            .iter()
            .map(|d| (*d, Strategy::Token))
            .collect(),
        dictionaries: vec![DictionaryRule {
            terms: vec!["Initech".into(), "db-7.internal".into()],
            case_insensitive: true,
            strategy: Strategy::Partial { keep_last: 2 },
        }],
    };
    let Ok(masker) = Masker::new(rules, b"fuzzing secret, 32 bytes long..") else {
        return;
    };
    let mut out = Vec::new();
    if masker.mask_value(data, &mut out).is_none() {
        assert!(out.is_empty());
    }
});
