//! The Kubernetes channel view, on messages decoded from tungstenite's
//! frames.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

/// `kubectl exec` over v5, as the client sends it: the frames decoded,
/// then read as channels.
#[test]
fn v5_exec_session() {
    let sent = vec![
        binary(b"\x04{\"Width\":80,\"Height\":24}"),
        binary(b"\x00ls -l\n"),
        binary(b"\x00"),
        binary(b"\xff\x00"),
        binary(b"\xff\x01\x02"),
        Message::Ping(Bytes::new()),
        binary(b""),
        close(1000, ""),
    ];
    let bytes = wire(Role::Client, sent);
    let messages = ok(decode_every_split(
        Role::Client,
        WsLimits::default(),
        &bytes,
    ));
    let frames: Vec<_> = messages
        .iter()
        .filter_map(|m| k8s_channel("v5.channel.k8s.io", m))
        .collect();
    let names: Vec<_> = frames.iter().map(|f| (f.channel, f.name)).collect();
    assert_eq!(
        names,
        [
            (4, "resize"),
            (0, "stdin"),
            (0, "stdin"),
            (255, "close"),
            (255, "close")
        ]
    );
    assert_eq!(
        parse_resize(&frames[0].data),
        [TerminalSize {
            width: 80,
            height: 24
        }]
    );
    assert_eq!(&frames[1].data[..], b"ls -l\n");
    assert!(frames[2].data.is_empty());
    assert_eq!(frames[3].closed_channel(), Some(0));
    assert_eq!(frames[4].closed_channel(), None, "malformed close signal");
    assert_eq!(frames[1].closed_channel(), None);
}

/// The server's side: stdout, stderr, and the final status on the error
/// channel.
#[test]
fn server_channels_v4_and_v1() {
    let status = br#"{"metadata":{},"status":"Success"}"#;
    let mut error_msg = vec![3];
    error_msg.extend_from_slice(status);
    let sent = vec![
        binary(b"\x01total 0\n"),
        binary(b"\x02warning\n"),
        binary(&error_msg),
        binary(b"\xff\x01"),
        binary(b"\x07?"),
    ];
    let bytes = wire(Role::Server, sent);
    let messages = ok(decode(Role::Server, &bytes));
    for protocol in ["v4.channel.k8s.io", "channel.k8s.io", ""] {
        let frames: Vec<_> = messages
            .iter()
            .map(|m| k8s_channel(protocol, m).unwrap())
            .collect();
        let names: Vec<_> = frames.iter().map(|f| f.name).collect();
        // No close signal before v5: 255 is an unknown channel.
        assert_eq!(names, ["stdout", "stderr", "error", "other", "other"]);
        assert_eq!(&frames[2].data[..], status);
        assert_eq!(frames[3].closed_channel(), None);
    }
}

/// The base64 protocols: ASCII channel digits, base64 data (Go's
/// `StdEncoding`), in text messages; the examples of k8s's `conn.go`.
#[test]
fn base64_channels() {
    let stdin = format!("0{}", STANDARD.encode("foo\n"));
    let sent = vec![
        text(&stdin),
        text("1Cg=="),
        text("2"),
        text("0Zm9v\r\nYmFy"),
        text("1not base64!"),
        // Non-zero trailing bits: Go accepts them.
        text("0Zh=="),
    ];
    let bytes = wire(Role::Client, sent);
    let messages = ok(decode(Role::Client, &bytes));
    for protocol in ["base64.channel.k8s.io", "v4.base64.channel.k8s.io"] {
        let frames: Vec<_> = messages
            .iter()
            .map(|m| k8s_channel(protocol, m).unwrap())
            .collect();
        let got: Vec<_> = frames
            .iter()
            .map(|f| (f.channel, f.name, &f.data[..], f.invalid_base64))
            .collect();
        assert_eq!(
            got,
            [
                (0, "stdin", &b"foo\n"[..], false),
                (1, "stdout", b"\n", false),
                (2, "stderr", b"", false),
                (0, "stdin", b"foobar", false),
                (1, "stdout", b"not base64!", true),
                (0, "stdin", b"f", false),
            ]
        );
    }
}

/// A truncated base64 message decodes its whole quanta.
#[test]
fn base64_truncated() {
    let payload = format!("1{}", STANDARD.encode([7u8; 30]));
    let bytes = wire(Role::Server, vec![text(&payload)]);
    let limits = WsLimits { max_message: 11 };
    let (m, _) = decode_chunks(Role::Server, limits, [&bytes[..]]);
    let m = ok(m).remove(0);
    assert!(m.truncated);
    let f = k8s_channel("base64.channel.k8s.io", &m).unwrap();
    assert_eq!((&f.data[..], f.invalid_base64), (&[7u8; 6][..], false));
}

#[test]
fn not_channel_traffic() {
    let bytes = wire(
        Role::Server,
        vec![
            binary(b""),
            Message::Ping(Bytes::from_static(b"\x01x")),
            close(1000, "x"),
        ],
    );
    for m in ok(decode(Role::Server, &bytes)) {
        assert_eq!(k8s_channel("v5.channel.k8s.io", &m), None, "{m:?}");
    }
    let m = ok(decode(
        Role::Server,
        &wire(Role::Server, vec![binary(b"\x01x")]),
    ))
    .remove(0);
    assert_eq!(k8s_channel("SPDY/3.1", &m), None);
    assert_eq!(k8s_channel("v5.base64.channel.k8s.io", &m), None);
    assert!(is_channel_protocol("v5.channel.k8s.io"));
    assert!(!is_channel_protocol("chat"));
}

#[test]
fn port_forward_names() {
    let names: Vec<_> = (0..4).map(port_forward_channel_name).collect();
    assert_eq!(names, ["data", "error", "data", "error"]);
}

#[test]
fn resize_payloads() {
    let size = |w, h| TerminalSize {
        width: w,
        height: h,
    };
    let cases: Vec<(&str, Vec<TerminalSize>)> = vec![
        (r#"{"Width":80,"Height":24}"#, vec![size(80, 24)]),
        (
            r#"{"width":120,"HEIGHT":40,"extra":true}"#,
            vec![size(120, 40)],
        ),
        (r#"{"Height":5}"#, vec![size(0, 5)]),
        (
            r#"{"Width":1,"Height":2} {"Width":3,"Height":4}"#,
            vec![size(1, 2), size(3, 4)],
        ),
        (r#"{"Width":70000,"Height":1}"#, vec![]),
        (r#"{"Width":-1,"Height":1}"#, vec![]),
        (r#"{"Width":1,"Height":1} [1]"#, vec![size(1, 1)]),
        ("not json", vec![]),
        ("", vec![]),
    ];
    for (json, want) in cases {
        assert_eq!(parse_resize(json.as_bytes()), want, "{json}");
    }
}
