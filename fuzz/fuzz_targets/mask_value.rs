//! The masking engine over arbitrary values: never a panic, and a value it
//! reports unchanged gets nothing written.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/mask_value/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::mask_value(data));
