//! SQL classification of arbitrary text: never a panic, a cached
//! classification equals a direct one, and every statement's accesses come
//! sorted and without duplicates.
#![no_main]

use std::sync::OnceLock;

use gatehouse_core::policy::{ClassifierCache, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static CACHE: OnceLock<ClassifierCache> = OnceLock::new();
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let direct = classify(sql);
    if let Ok(classification) = &direct {
        for statement in &classification.statements {
            assert!(statement.accesses.windows(2).all(|w| w[0] < w[1]));
        }
    }
    let cached = CACHE
        .get_or_init(|| ClassifierCache::new(1024))
        .classify(sql);
    // The cache keys by normalized text, so it may hold the classification
    // of another statement differing only in constants: constants never
    // change a classification.
    if let (Ok(direct), Ok(cached)) = (&direct, &*cached) {
        assert_eq!(direct, cached);
    }
});
