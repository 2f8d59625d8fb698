//! The per-byte cost of the relay path in `core`: framing, and recording
//! a frame event (encoding + chain hash), whole and in parts beside the
//! ceilings for the same bytes (a memcpy, BLAKE3 alone).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_bench::result_stream;
use gatehouse_core::event::{
    ArchivedEvent, Body, Direction, Frame, Recorder, SessionId, decode, encode, encode_into,
    hash_of,
};
use gatehouse_core::pg::frame;
use rkyv::util::AlignedVec;

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
    g.finish();
    parts(c);
}

/// The parts of recording a 64-byte frame event, each alone, beside the
/// ceilings for the same number of bytes: encoding (the issue-7 target is
/// ≤ 50 ns per frame event), the chain hash, and decoding it back (what
/// replay and audit pay per event).
fn parts(c: &mut Criterion) {
    let mut rec = Recorder::new(SessionId([1; 16]));
    // The second event of a session: its `prev` is a real hash.
    rec.record(
        0,
        Body::Frame(Frame {
            dir: Direction::ToUpstream,
            bytes: bytes::Bytes::from_static(b"Q\0\0\0\x05\0"),
        }),
    );
    let encoded = rec.record(
        1_795_629_600_000_000,
        Body::Frame(Frame {
            dir: Direction::ToClient,
            bytes: bytes::Bytes::from(vec![7u8; 64]),
        }),
    );
    let event = decode(&encoded.bytes).expect("decodes");
    let len = encoded.bytes.len();
    eprintln!(
        "a 64-byte frame event encodes to {len} bytes (the fixed part, ArchivedEvent: {} bytes, \
         its Body as large as its largest variant)",
        size_of::<ArchivedEvent>()
    );

    let mut g = c.benchmark_group("record a 64-byte frame event, parts");
    g.throughput(Throughput::Bytes(len as u64));
    let mut reused = AlignedVec::new();
    encode_into(&event, &mut reused);
    assert_eq!(reused.as_slice(), encoded.bytes.as_slice());
    g.bench_function("encode into a reused buffer", |b| {
        b.iter(|| encode_into(black_box(&event), &mut reused))
    });
    g.bench_function("encode into a new buffer (what record does)", |b| {
        b.iter(|| encode(black_box(&event)))
    });
    // How `encode` sized its buffer before 2026-11-26 (frame bytes + 128):
    // too small for the 200-byte fixed part, so it grew once per event.
    g.bench_function("before: encode into a new buffer of 64 + 128 bytes", |b| {
        b.iter(|| {
            let mut v = AlignedVec::<16>::with_capacity(64 + 128);
            encode_into(black_box(&event), &mut v);
            v
        })
    });
    let mut copy: Vec<u8> = Vec::with_capacity(len);
    g.bench_function(
        "ceiling: memcpy of the same bytes into a reused buffer",
        |b| {
            b.iter(|| {
                copy.clear();
                copy.extend_from_slice(black_box(&encoded.bytes));
                copy.len()
            })
        },
    );
    g.bench_function("chain hash of it (hash_of)", |b| {
        b.iter(|| hash_of(black_box(&encoded.bytes)))
    });
    let plain = vec![7u8; len];
    g.bench_function("ceiling: BLAKE3 of as many plain bytes", |b| {
        b.iter(|| blake3::hash(black_box(&plain)))
    });
    g.bench_function("validated access (rkyv::access)", |b| {
        b.iter(|| {
            rkyv::access::<ArchivedEvent, rkyv::rancor::Error>(black_box(&encoded.bytes))
                .map(|e| e.seq)
        })
    });
    g.bench_function("decode (copy, validate, deserialize)", |b| {
        b.iter(|| decode(black_box(&encoded.bytes)))
    });
    g.finish();

    // BLAKE3 alone by input size: its cost is per 64-byte block until
    // there are whole 1 KiB chunks to hash side by side.
    let mut g = c.benchmark_group("blake3 by size");
    for n in [64usize, 128, 256, 512, 1024, 2048, 4096, 16 * 1024] {
        let data = vec![7u8; n];
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &data, |b, data| {
            b.iter(|| blake3::hash(black_box(data)))
        });
    }
    g.finish();
}

criterion_group!(benches, framing, recording);
criterion_main!(benches);
