//! The WebSocket frame decoder (RFC 6455) over arbitrary bytes, both
//! roles, whole and split at an input-derived point: never a panic, the
//! same messages either way, memory within its limits.
//!
//! The body lives in `gatehouse_core::fuzzing`, where `cargo test` also
//! replays the committed corpus (`fuzz/corpus/ws_frames/`) through it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::ws_frames(data));
