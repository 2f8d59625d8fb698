//! Stored prune record bytes are untrusted: arbitrary bytes never panic the
//! decoder, and what decodes encodes back to the same bytes.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/prune_decode/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::prune_decode(data));
