//! Stored event bytes are validated before use: arbitrary bytes never
//! panic the reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gatehouse_core::event::decode(data);
});
