//! The store's `events` entries (single events and runs of them) are
//! untrusted bytes: the run decoder never panics, and what it splits is
//! exactly the run's framing.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/event_runs/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::event_runs(data));
