//! Criterion benchmarks of Gatehouse's hot paths (`benches/`), and the
//! inputs they share. Run with `cargo bench -p gatehouse-bench`.
//!
//! Report ratios measured side by side in one run, not absolute times:
//! these machines are shared.

use bytes::BytesMut;
use gatehouse_core::pg::encode;

/// A target's answer to a query returning `rows` rows of two text columns,
/// as bytes on the wire.
pub fn result_stream(rows: usize) -> BytesMut {
    let mut out = BytesMut::new();
    out.extend_from_slice(
        encode::frame(b'T', |b| {
            b.extend_from_slice(&2i16.to_be_bytes());
            for name in [&b"id\0"[..], b"md5\0"] {
                b.extend_from_slice(name);
                b.extend_from_slice(&[0; 18]);
            }
        })
        .bytes(),
    );
    for i in 0..rows {
        let id = i.to_string();
        let hash = format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        out.extend_from_slice(
            encode::frame(b'D', |b| {
                b.extend_from_slice(&2i16.to_be_bytes());
                for v in [id.as_bytes(), hash.as_bytes()] {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            })
            .bytes(),
        );
    }
    out.extend_from_slice(
        encode::frame(b'C', |b| {
            b.extend_from_slice(format!("SELECT {rows}\0").as_bytes())
        })
        .bytes(),
    );
    out.extend_from_slice(encode::ready_for_query(b'I').bytes());
    out
}
