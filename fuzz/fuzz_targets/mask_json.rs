//! JSON and text body masking over arbitrary bytes split at an arbitrary
//! point: never a panic, the same result however the body is split, and
//! valid JSON stays valid JSON.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/mask_json/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::mask_json(data));
