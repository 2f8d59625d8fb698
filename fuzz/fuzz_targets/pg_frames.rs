//! Every decoder of PostgreSQL bytes, on arbitrary input: never a panic.
#![no_main]

use bytes::BytesMut;
use gatehouse_core::pg::{backend, frame, frontend};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let _ = frame::decode_startup(&mut buf);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = frame::decode(&mut buf, 1 << 20) {
        let _ = frontend::Message::parse(&f);
        let _ = backend::Message::parse(&f);
    }
    let bytes = bytes::Bytes::copy_from_slice(data);
    for f in frame::split(&bytes) {
        let _ = backend::Message::parse(&f);
    }
});
