//! The per-byte cost of the relay path in `core`: framing, and a whole
//! session relaying a result (framing + recording), side by side.

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_bench::result_stream;
use gatehouse_core::event::{Body, Direction, Frame, Recorder, SessionId};
use gatehouse_core::pg::frame;

fn framing(c: &mut Criterion) {
    let stream = result_stream(1000).freeze();
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("decode 1000 rows", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&stream[..]);
            let mut n = 0;
            while let Ok(Some(f)) = frame::decode(&mut buf, 1 << 20) {
                n += f.body().len();
            }
            n
        })
    });
    g.bench_function("peek 1000 rows", |b| {
        b.iter(|| {
            let mut at = 0;
            while let Ok(Some(len)) = frame::peek(&stream[at..], 1 << 20) {
                at += len;
            }
            at
        })
    });
    g.finish();
}

fn recording(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    for size in [64usize, 16 * 1024] {
        let bytes = bytes::Bytes::from(vec![7u8; size]);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("frame event", size), &bytes, |b, bytes| {
            let mut rec = Recorder::new(SessionId([1; 16]));
            b.iter(|| {
                rec.record(
                    0,
                    Body::Frame(Frame {
                        dir: Direction::ToClient,
                        bytes: bytes.clone(),
                    }),
                )
            })
        });
    }
    // The parts, beside the whole: hashing an encoded event, and decoding
    // one back with validation (what replay and audit pay per event).
    let mut rec = Recorder::new(SessionId([1; 16]));
    let encoded = rec.record(
        0,
        Body::Frame(Frame {
            dir: Direction::ToClient,
            bytes: bytes::Bytes::from(vec![7u8; 64]),
        }),
    );
    g.throughput(Throughput::Bytes(encoded.bytes.len() as u64));
    g.bench_function("blake3 of an encoded 64-byte frame event", |b| {
        b.iter(|| gatehouse_core::event::hash_of(&encoded.bytes))
    });
    g.bench_function("validated decode of it", |b| {
        b.iter(|| gatehouse_core::event::decode(&encoded.bytes))
    });
    g.finish();
}

criterion_group!(benches, framing, recording);
criterion_main!(benches);
