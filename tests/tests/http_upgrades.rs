//! Upgrades other than WebSocket: refused by default (see
//! `http_kubernetes`), and with `allow_spdy = true` relayed as an opaque
//! tunnel whose bytes are recorded both ways.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use gatehouse_core::event::{Body, Direction};
use gatehouse_tests::http_client::{recorded_events, tls_stream};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};

/// A server that answers one SPDY upgrade with 101 and then echoes every
/// byte back, upper-cased (so the test can tell the echo from its input).
fn spdy_echo() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n",
        );
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            let upper = buf[..n].to_ascii_uppercase();
            if s.write_all(&upper).is_err() {
                break;
            }
        }
    });
    port
}

fn read_until(s: &mut impl std::io::Read, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(needle.len()).any(|w| w == needle) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got
}

#[test]
fn an_allowed_spdy_upgrade_is_a_recorded_tunnel() {
    let pg = PgCluster::start();
    let port = spdy_echo();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            http: Some(String::new()),
            extra_config: format!(
                "[targets.legacy]\nkind = \"kubernetes\"\nurl = \"http://127.0.0.1:{port}\"\n\
                 allow_spdy = true\n"
            ),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs {
        target: "legacy".to_owned(),
        allow: Vec::new(),
        extra: vec!["--allow".into(), "kube:create pods/exec in billing".into()],
        ..GrantArgs::default()
    });
    let mut s = tls_stream(&gw);
    let request = format!(
        "POST /legacy/api/v1/namespaces/billing/pods/web-1/exec?command=sh HTTP/1.1\r\n\
         Host: localhost\r\nAuthorization: Bearer {token}\r\nConnection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(request.as_bytes()).expect("write");
    let head = read_until(&mut s, b"\r\n\r\n");
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping through the tunnel").expect("write");
    let echo = read_until(&mut s, b"TUNNEL");
    assert_eq!(echo, b"PING THROUGH THE TUNNEL");
    drop(s);
    std::thread::sleep(Duration::from_millis(300));

    let events = recorded_events(&mut gw);
    let bytes = |dir: Direction| -> Vec<u8> {
        events
            .iter()
            .filter_map(|b| match b {
                Body::WsMessage(m) if m.dir == dir && m.kind == "bytes" => Some(m.bytes.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    assert_eq!(bytes(Direction::ToUpstream), b"ping through the tunnel");
    assert_eq!(bytes(Direction::ToClient), b"PING THROUGH THE TUNNEL");
}
