//! HTTP and Kubernetes requests held against a plan, and plan rule entries
//! parsed, over arbitrary text: never a panic, and nothing allowed or held
//! that the rules do not cover.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/request_policy/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::request_policy(data));
