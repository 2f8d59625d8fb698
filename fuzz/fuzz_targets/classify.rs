//! SQL classification of arbitrary text: never a panic, a cached
//! classification equals a direct one, and every statement's accesses come
//! sorted and without duplicates.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/classify/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::classify(data));
