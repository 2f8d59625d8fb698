//! The frame decoder: RFC examples, tungstenite's frames, fragmentation,
//! errors, truncation and memory bounds.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// RFC 6455 §5.7's examples, byte for byte.
#[test]
fn rfc_examples() {
    let hello = |role, bytes: &str| {
        let m = ok(decode_every_split(role, WsLimits::default(), &hex(bytes)));
        assert_eq!(m.len(), 1, "{bytes}");
        m.into_iter().next().unwrap()
    };
    let m = hello(Role::Server, "81 05 48 65 6c 6c 6f");
    assert_eq!((m.opcode, m.text()), (Opcode::Text, Some("Hello")));
    let m = hello(Role::Client, "81 85 37 fa 21 3d 7f 9f 4d 51 58");
    assert_eq!(
        (m.opcode, m.text(), m.frames),
        (Opcode::Text, Some("Hello"), 1)
    );
    let m = hello(Role::Server, "01 03 48 65 6c 80 02 6c 6f");
    assert_eq!((m.text(), m.frames, m.len), (Some("Hello"), 2, 5));
    let m = hello(Role::Server, "89 05 48 65 6c 6c 6f");
    assert_eq!((m.opcode, &m.payload[..]), (Opcode::Ping, &b"Hello"[..]));
    let m = hello(Role::Client, "8a 85 37 fa 21 3d 7f 9f 4d 51 58");
    assert_eq!((m.opcode, &m.payload[..]), (Opcode::Pong, &b"Hello"[..]));

    let mut b256 = hex("82 7e 01 00");
    b256.extend((0..=255u8).collect::<Vec<_>>());
    let m = ok(decode(Role::Server, &b256));
    assert_eq!(m[0].payload.len(), 256);
    assert_eq!(m[0].payload[255], 255);
    assert_eq!(m[0].notes, Notes::default());

    let mut b64k = hex("82 7f 00 00 00 00 00 01 00 00");
    b64k.extend(std::iter::repeat_n(7u8, 65536));
    let m = ok(decode(Role::Server, &b64k));
    assert_eq!((m[0].payload.len(), m[0].truncated), (65536, false));
}

/// A kubectl-like session from tungstenite, both roles, fed every way:
/// exactly the messages sent, in order, with control frames between the
/// fragments of a message.
#[test]
fn tungstenite_session_every_split() {
    for role in [Role::Client, Role::Server] {
        let sent = vec![
            binary(b"\x00ls -l\n"),
            text("hello"),
            fragment(b"frag", TEXT, false),
            Message::Ping(Bytes::from_static(b"keepalive")),
            fragment(b"mented ", CONTINUE, false),
            Message::Pong(Bytes::new()),
            fragment(b"text", CONTINUE, true),
            binary(b""),
            fragment(b"", BINARY, false),
            fragment(b"", CONTINUE, true),
            binary(&[0x5a; 300]),
            close(1000, "done"),
        ];
        let bytes = wire(role, sent);
        let got = ok(decode_every_split(role, WsLimits::default(), &bytes));
        let views: Vec<_> = got.iter().map(view).collect();
        let want = vec![
            (Opcode::Binary, b"\x00ls -l\n".to_vec(), None),
            (Opcode::Text, b"hello".to_vec(), None),
            (Opcode::Ping, b"keepalive".to_vec(), None),
            (Opcode::Pong, vec![], None),
            (Opcode::Text, b"fragmented text".to_vec(), None),
            (Opcode::Binary, vec![], None),
            (Opcode::Binary, vec![], None),
            (Opcode::Binary, vec![0x5a; 300], None),
            (
                Opcode::Close,
                b"\x03\xe8done".to_vec(),
                Some((1000, "done".into())),
            ),
        ];
        assert_eq!(views, want, "{role:?}");
        assert_eq!(got[4].frames, 3);
        assert_eq!(got[6].frames, 2);
        assert!(
            got.iter()
                .all(|m| !m.truncated && m.notes == Notes::default())
        );
    }
}

/// Random message sequences (random sizes across the 7/16/64-bit length
/// forms, random fragmentation, pings between fragments): the decoder
/// reads what tungstenite, as the receiving peer, reads.
#[test]
fn same_as_tungstenite_reader() {
    let mut rng = StdRng::seed_from_u64(6455);
    for round in 0..40 {
        let role = if round % 2 == 0 {
            Role::Client
        } else {
            Role::Server
        };
        let mut sent = Vec::new();
        for _ in 0..rng.gen_range(1..12) {
            let len = match rng.gen_range(0..4) {
                0 => rng.gen_range(0..126),
                1 => rng.gen_range(126..1000),
                2 => rng.gen_range(60_000..70_000),
                _ => 125,
            };
            let data: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            match rng.gen_range(0..4) {
                0 => sent.push(binary(&data)),
                1 => sent.push(Message::Ping(Bytes::from(data[..len.min(125)].to_vec()))),
                2 => sent.push(text(&"é".repeat(len / 2))),
                _ => {
                    let cut = rng.gen_range(0..=len);
                    sent.push(fragment(&data[..cut], BINARY, false));
                    sent.push(Message::Ping(Bytes::from_static(b"p")));
                    sent.push(fragment(&data[cut..], CONTINUE, true));
                }
            }
        }
        sent.push(close(4000, "bye"));
        let bytes = wire(role, sent);
        let oracle: Vec<_> = tungstenite_reads(role, &bytes)
            .iter()
            .filter_map(expected)
            .collect();
        // Random chunking, including empty chunks.
        let mut chunks = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = rng.gen_range(0..=rest.len().min(9000));
            let (a, b) = rest.split_at(n);
            chunks.push(a);
            rest = b;
        }
        let (got, tail) = decode_chunks(role, WsLimits::default(), chunks);
        let got: Vec<_> = ok(got).iter().map(view).collect();
        assert_eq!(got, oracle, "round {round}");
        assert_eq!(tail, None);
    }
}

/// Masking follows the sender's role; the other role's frames are errors.
#[test]
fn role_violations() {
    let client = wire(Role::Client, vec![text("hi")]);
    let server = wire(Role::Server, vec![text("hi")]);
    let err = |role, bytes: &[u8]| decode(role, bytes).pop().unwrap().unwrap_err();
    assert_eq!(
        err(Role::Server, &client),
        WsError {
            offset: 0,
            kind: WsErrorKind::MaskedServerFrame
        }
    );
    assert_eq!(
        err(Role::Client, &server),
        WsError {
            offset: 0,
            kind: WsErrorKind::UnmaskedClientFrame
        }
    );
}

/// Each protocol error: its kind, the offset of the frame that made it,
/// reported once, and nothing decoded after it however many bytes follow.
#[test]
fn protocol_errors() {
    let good = hex("81 02 6f 6b"); // "ok", 4 bytes
    let cases: Vec<(&str, Vec<u8>, WsErrorKind)> = vec![
        ("rsv1", hex("c1 00"), WsErrorKind::ReservedBits(0x40)),
        ("rsv2+3", hex("b1 00"), WsErrorKind::ReservedBits(0x30)),
        ("opcode 3", hex("83 00"), WsErrorKind::ReservedOpcode(3)),
        ("opcode 0xb", hex("8b 00"), WsErrorKind::ReservedOpcode(0xb)),
        (
            "fragmented ping",
            hex("09 00"),
            WsErrorKind::FragmentedControl,
        ),
        (
            "long ping",
            hex("89 7e 00 7e"),
            WsErrorKind::ControlTooLong(126),
        ),
        (
            "bare continuation",
            hex("80 00"),
            WsErrorKind::UnexpectedContinuation,
        ),
        (
            "text in text",
            hex("01 01 61 81 00"),
            WsErrorKind::ExpectedContinuation,
        ),
        (
            "64-bit msb",
            hex("82 7f 80 00 00 00 00 00 00 00"),
            WsErrorKind::LengthOverflow,
        ),
        (
            "after close",
            hex("88 00 81 00"),
            WsErrorKind::FrameAfterClose,
        ),
    ];
    for (name, bad, kind) in cases {
        let mut bytes = good.clone();
        bytes.extend_from_slice(&bad);
        bytes.extend_from_slice(&good);
        let results = decode_every_split(Role::Server, WsLimits::default(), &bytes);
        let oks = results.iter().filter(|r| r.is_ok()).count();
        let err = results.last().unwrap().as_ref().unwrap_err();
        // "ok", a close frame in "after close", then the error and nothing more.
        assert_eq!(oks, if name == "after close" { 2 } else { 1 }, "{name}");
        assert_eq!(results.len(), oks + 1, "{name}");
        let offset = match name {
            "text in text" => 7,
            "after close" => 6,
            _ => 4,
        };
        assert_eq!(*err, WsError { offset, kind }, "{name}");

        let mut d = WsDecoder::new(Role::Server, WsLimits::default());
        d.feed(&bytes);
        while d.next_message().is_some() {}
        d.feed(&good);
        assert_eq!(d.next_message(), None, "{name}: silent after the error");
        assert_eq!(d.error(), Some(err), "{name}");
        assert_eq!(d.held(), 0, "{name}: stopped decoders hold nothing");
        assert_eq!(d.offset(), (bytes.len() + good.len()) as u64);
        assert_eq!(d.finish(), None);
        assert_eq!(d.error(), Some(err), "{name}: finish keeps the error");
    }
}

/// A message over the limit keeps its first `max_message` bytes, counts the
/// rest, and comes out flagged; whole, fragmented, and with a control frame
/// between the fragments.
#[test]
fn truncation() {
    let limits = WsLimits { max_message: 100 };
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    for role in [Role::Client, Role::Server] {
        let sent = vec![
            binary(&data),
            fragment(&data[..60], BINARY, false),
            Message::Ping(Bytes::from_static(b"x")),
            fragment(&data[60..], CONTINUE, true),
            binary(&data[..100]),
            text("naïve café"),
        ];
        let bytes = wire(role, sent);
        let m = ok(decode_every_split(role, limits, &bytes));
        assert_eq!(m.len(), 5);
        for big in [&m[0], &m[2]] {
            assert_eq!(big.payload[..], data[..100]);
            assert_eq!((big.len, big.truncated), (1000, true));
        }
        assert_eq!(m[1].opcode, Opcode::Ping);
        assert_eq!((m[3].payload.len(), m[3].truncated), (100, false));
        assert_eq!(m[4].text(), Some("naïve café"));

        // Cut inside a character: truncated, not invalid.
        let limits = WsLimits { max_message: 2 };
        let m = ok(decode_every_split(
            role,
            limits,
            &wire(role, vec![text("aéb")]),
        ));
        assert_eq!((&m[0].payload[..], m[0].truncated), (&b"a\xc3"[..], true));
        assert!(!m[0].notes.invalid_utf8);
    }
}

/// Memory stays bounded under a frame that announces 2^62 bytes and a
/// stream of megabytes: the decoder holds the limit plus the last chunk.
#[test]
fn bounded_memory() {
    let limits = WsLimits { max_message: 4096 };
    for role in [Role::Client, Role::Server] {
        let mut d = WsDecoder::new(role, limits);
        let mut header = hex("82 7f 40 00 00 00 00 00 00 00");
        if role == Role::Client {
            header[1] |= 0x80;
            header.extend_from_slice(&[1, 2, 3, 4]);
        }
        d.feed(&header);
        assert_eq!(d.next_message(), None);
        let chunk = vec![0xab; 64 * 1024];
        for _ in 0..160 {
            d.feed(&chunk);
            assert_eq!(d.next_message(), None);
            assert!(d.held() <= 4096, "{}", d.held());
        }
        let m = d.finish().unwrap();
        assert_eq!((m.payload.len(), m.len, m.truncated), (4096, 1 << 62, true));
        assert!(m.notes.incomplete);
    }
}

#[test]
fn close_frames() {
    let close_of = |body: &[u8]| {
        let mut bytes = vec![0x88, body.len() as u8];
        bytes.extend_from_slice(body);
        ok(decode(Role::Server, &bytes)).remove(0)
    };
    let m = close_of(b"");
    assert_eq!((m.close, m.notes.bad_close), (None, false));
    let m = close_of(b"\x03\xe8");
    assert_eq!(m.close, Some((1000, String::new())));
    let m = close_of(b"\x03\xf3server restart");
    assert_eq!(
        (m.close, m.notes.bad_close),
        (Some((1011, "server restart".into())), false)
    );
    let m = close_of(b"\x03");
    assert_eq!((m.close, m.notes.bad_close), (None, true));
    for reserved in [999u16, 1004, 1005, 1006, 1015, 2000, 5000] {
        let m = close_of(&reserved.to_be_bytes());
        assert!(m.notes.bad_close, "{reserved}");
        assert_eq!(m.close, Some((reserved, String::new())));
    }
    let m = close_of(b"\x0f\xa0bad \xff utf8");
    assert_eq!(m.close, Some((4000, "bad \u{fffd} utf8".into())));
    assert!(m.notes.invalid_utf8 && !m.notes.bad_close);
}

/// Lengths in a longer form than needed decode, and are noted.
#[test]
fn non_minimal_lengths() {
    let mut bytes = hex("82 7e 00 05 01 02 03 04 05");
    bytes.extend(hex("82 7f 00 00 00 00 00 00 01 2c"));
    bytes.extend(std::iter::repeat_n(9u8, 300));
    bytes.extend(hex("89 7e 00 01 70"));
    bytes.extend(hex("02 01 61 80 7e 00 01 62"));
    let m = ok(decode_every_split(
        Role::Server,
        WsLimits::default(),
        &bytes,
    ));
    assert_eq!(m.len(), 4);
    assert_eq!(m[0].payload[..], [1, 2, 3, 4, 5]);
    assert_eq!(m[1].payload.len(), 300);
    assert_eq!((m[2].opcode, &m[2].payload[..]), (Opcode::Ping, &b"p"[..]));
    assert_eq!(&m[3].payload[..], b"ab");
    assert!(m.iter().all(|m| m.notes.non_minimal_length));
}

#[test]
fn invalid_utf8_text_is_noted() {
    let m = ok(decode(Role::Server, &hex("81 02 c3 28")));
    assert!(m[0].notes.invalid_utf8);
    assert_eq!(m[0].text(), None);
    let m = ok(decode(Role::Server, &hex("81 01 c3")));
    assert!(m[0].notes.invalid_utf8, "cut at the end of a whole message");
}

/// The connection ends mid-message: `finish` yields what came.
#[test]
fn finish_yields_the_open_message() {
    let bytes = wire(
        Role::Client,
        vec![
            text("whole"),
            fragment(b"first ", TEXT, false),
            fragment(b"second", CONTINUE, false),
        ],
    );
    let cut = bytes.len() - 3;
    let (got, tail) = decode_chunks(Role::Client, WsLimits::default(), [&bytes[..cut]]);
    assert_eq!(ok(got).len(), 1);
    let tail = tail.unwrap();
    assert_eq!(&tail.payload[..], b"first sec");
    assert_eq!((tail.len, tail.frames, tail.truncated), (12, 1, true));
    assert!(tail.notes.incomplete);

    let (_, tail) = decode_chunks(Role::Client, WsLimits::default(), [&bytes[..]]);
    assert_eq!(tail.unwrap().payload, Bytes::from_static(b"first second"));
}
