//! The session state machine fed arbitrary client and target bytes, split
//! at arbitrary points, with the driver's answers in between: never a
//! panic, and whatever it forwards is whole frames.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/pg_session/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::pg_session(data));
