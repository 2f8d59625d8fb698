//! Stored event bytes are validated before use: arbitrary bytes never
//! panic the reader.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/event_decode/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::event_decode(data));
