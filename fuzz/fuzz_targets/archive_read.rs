//! A sealed archive is an untrusted file: arbitrary bytes never panic its
//! decoder, and decoding in pieces agrees with decoding at once.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/archive_read/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::archive_read(data));
