//! HTTP/1.1 edge cases through the gateway (RFC 9110/9112), with real
//! `curl`, hand-written requests over TLS, and an upstream of this test's
//! own that records every request it reads, head and body, byte for byte:
//!
//! - HEAD, 204 and 304 under masking keep their Content-Length and never
//!   turn chunked or hang the connection;
//! - an upstream `103 Early Hints` before the real answer; a response
//!   without length that ends by close, then the next request on the same
//!   client connection (a new upstream connection);
//! - a chunked request body and a GET with a body reach the upstream with
//!   a Content-Length; the Host it gets is the target's;
//! - a denied request with `Expect: 100-continue` gets its 403 without
//!   the gateway asking for (or forwarding) the body;
//! - a grant sent as the Kubernetes bearer WebSocket subprotocol on a
//!   plain request never goes upstream;
//! - a client that leaves while the target has not answered releases the
//!   target's connection and its session;
//! - `CONNECT`, `TRACE` and `OPTIONS *` get a 4xx, a body in a transfer
//!   coding other than chunked a 501, and none reaches it;
//! - an HTTP/1.0 client gets a masked body it can read (no chunking);
//! - the record: no grant, no credential, nothing unmasked.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_core::event::{Body, Direction};
use gatehouse_tests::command::{render, run};
use gatehouse_tests::http_client::{recorded_events, tls_stream};
use gatehouse_tests::http_upstream::read_request;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};

const UPSTREAM_SECRET: &str = "upstream-api-key-417";

/// A raw HTTP/1.1 upstream: each request's bytes (head and a
/// Content-Length body) recorded, answered by `reply` (the bytes to send,
/// and whether to close afterwards).
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

fn reply(line: &str) -> (String, bool) {
    let json = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let path = line.split_whitespace().nth(1).unwrap_or("");
    match path {
        // What a GET would have: its length, no body.
        "/doc" => (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 42\r\n\r\n"
                .to_owned(),
            false,
        ),
        "/nothing" => (
            "HTTP/1.1 204 No Content\r\nContent-Type: application/json\r\n\r\n".to_owned(),
            false,
        ),
        "/same" => (
            "HTTP/1.1 304 Not Modified\r\nContent-Type: application/json\r\nETag: \"v1\"\r\n\r\n"
                .to_owned(),
            false,
        ),
        "/hints" => (
            format!(
                "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n{}",
                json("200 OK", r#"{"password":"pw-hinted","ok":1}"#)
            ),
            false,
        ),
        "/until-close" => (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"token\":\"tok-closing\"}"
                .to_owned(),
            true,
        ),
        // Both framings: Transfer-Encoding wins (RFC 9112 §6.3).
        "/both-framings" => (
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                .to_owned(),
            false,
        ),
        "/digested" => {
            let body = r#"{"password":"pw-digested"}"#;
            (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Digest: sha-256=:AAAA:\r\nRepr-Digest: sha-256=:AAAA:\r\n\
                     Digest: SHA-256=AAAA\r\nContent-MD5: AAAA\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ),
                false,
            )
        }
        // An unasked-for part of a JSON document: just a value, and valid
        // JSON by itself (a string no key names).
        "/part" => (
            "HTTP/1.1 206 Partial Content\r\nContent-Type: application/json\r\n\
             Content-Range: bytes 10-23/40\r\nContent-Length: 14\r\n\r\n\"tok-in-range\""
                .to_owned(),
            false,
        ),
        _ => (json("200 OK", r#"{"token":"tok-plain","ok":true}"#), false),
    }
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(s, &log));
            }
        });
        Upstream { port, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn serve(mut s: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut s, &mut buf) else {
            return;
        };
        let text = String::from_utf8_lossy(&request).into_owned();
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text.clone());
        if text.starts_with("GET /stall ") {
            // Never answers; notes when the gateway lets go.
            let mut chunk = [0u8; 64];
            while matches!(s.read(&mut chunk), Ok(n) if n > 0) {}
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push("released /stall".to_owned());
            return;
        }
        let (bytes, close) = reply(text.lines().next().unwrap_or(""));
        if s.write_all(bytes.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// One hand-written request over TLS; everything read until `done` says
/// the answer is complete, the connection closes, or 10 s pass. Returns
/// the text and how long it took.
fn raw(gw: &Gateway, request: &str, done: impl Fn(&str) -> bool) -> (String, Duration) {
    let started = Instant::now();
    let mut s = tls_stream(gw);
    s.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while !done(&String::from_utf8_lossy(&got)) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

#[test]
fn http_protocol_edges() {
    let pg = PgCluster::start();
    let upstream = Upstream::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            http: Some(String::new()),
            env: vec![("API_KEY".to_owned(), UPSTREAM_SECRET.to_owned())],
            extra_config: format!(
                "\n[targets.api]\nkind = \"http\"\nurl = \"http://127.0.0.1:{}\"\n\
                 [targets.api.credential]\nheader = \"x-upstream-token\"\nvalue_env = \"API_KEY\"\n\
                 [targets.api.masking]\nkeys = {{ password = \"redact\", token = \"redact\" }}\n",
                upstream.port
            ),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs {
        sub: "agent-protocol".to_owned(),
        target: "api".to_owned(),
        allow: Vec::new(),
        extra: [
            "--allow",
            "http:GET,HEAD /**",
            "--allow",
            "http:POST /upload",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect(),
        purpose: "protocol edges".to_owned(),
        ..GrantArgs::default()
    });
    let auth = format!("Authorization: Bearer {token}\r\n");

    // HEAD, 204, 304 under masking: Content-Length as the target sent it,
    // nothing chunked, and the connection goes on (a GET answered after).
    let bodiless = format!(
        "HEAD /api/doc HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n\
         GET /api/nothing HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n\
         GET /api/same HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n\
         GET /api/plain HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    );
    let (text, took) = raw(&gw, &bodiless, |t| t.contains("\"ok\":true"));
    eprintln!("{text}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let heads: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(heads.len(), 4, "{text}");
    assert!(heads[0].starts_with("200"), "{}", heads[0]);
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("content-length: 42\r\n"),
        "{}",
        heads[0]
    );
    assert!(heads[1].starts_with("204"), "{}", heads[1]);
    assert!(heads[2].starts_with("304"), "{}", heads[2]);
    for h in &heads[..3] {
        assert!(!h.to_ascii_lowercase().contains("transfer-encoding"), "{h}");
    }
    assert!(heads[3].starts_with("200"), "{}", heads[3]);

    // 103 before the answer; a body ended by the upstream's close, then
    // another request on the same client connection; both masked.
    let out = run(
        Command::new("curl")
            .args(["-sS", "--http1.1", "--cacert"])
            .arg(&gw.certs().expect("TLS").ca_cert)
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .args(["-w", " %{http_code} %{num_connects}\n"])
            .arg(format!("https://localhost:{}/api/hints", gw.http_port()))
            .arg(format!(
                "https://localhost:{}/api/until-close",
                gw.http_port()
            ))
            .arg(format!("https://localhost:{}/api/after", gw.http_port())),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", render(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].contains("\"ok\":1") && lines[0].ends_with(" 200 1"),
        "{text}"
    );
    assert!(
        lines[1].contains("\"token\"") && lines[1].ends_with(" 200 0"),
        "{text}"
    );
    assert!(
        lines[2].contains("\"ok\":true") && lines[2].ends_with(" 200 0"),
        "{text}"
    );
    for secret in ["pw-hinted", "tok-closing", "tok-plain"] {
        assert!(!text.contains(secret), "{secret} unmasked: {text}");
    }

    // A response with both framings: the client gets the chunked body
    // whole, with no stale Content-Length, and the connection goes on.
    let (text, _) = raw(
        &gw,
        &format!(
            "GET /api/both-framings HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n\
             GET /api/plain HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        ),
        |_| false,
    );
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("content-length: 3\r\n"),
        "{text}"
    );
    assert!(
        text.contains("hello\r\n") || text.contains("hello world"),
        "{text}"
    );
    assert!(
        text.contains(" world\r\n") || text.contains("hello world"),
        "{text}"
    );
    assert_eq!(count(&text, "HTTP/1.1 200 "), 2, "{text}");

    // Under masking a Range is not passed on (the whole body comes, and
    // is masked), and a 206 the target sends anyway is withheld.
    let (text, _) = raw(
        &gw,
        &format!(
            "GET /api/ranged HTTP/1.1\r\nHost: localhost\r\n{auth}Range: bytes=9-25\r\n\
             If-Range: \"v1\"\r\n\r\n\
             GET /api/part HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        ),
        |_| false,
    );
    let ranged = upstream
        .seen()
        .into_iter()
        .find(|r| r.starts_with("GET /ranged "))
        .expect("ranged");
    assert!(!ranged.to_ascii_lowercase().contains("range:"), "{ranged}");
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(text.contains("HTTP/1.1 502 "), "{text}");
    assert!(
        !text.contains("tok-in-range") && !text.contains("tok-plain"),
        "{text}"
    );

    // A masked body loses the digests of the target's bytes.
    let (text, _) = raw(
        &gw,
        &format!(
            "GET /api/digested HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        ),
        |_| false,
    );
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(!text.contains("pw-digested"), "{text}");
    assert!(!text.contains("AAAA"), "{text}");

    // A chunked body, and a GET with a body: each with its length upstream.
    let (text, _) = raw(
        &gw,
        &format!(
            "POST /api/upload HTTP/1.1\r\nHost: localhost\r\n{auth}Transfer-Encoding: chunked\r\n\
             X-Upstream-Token: agent-own-token\r\nCookie: session=cookie-secret\r\n\r\n\
             5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
             GET /api/query HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 7\r\n\r\n{{\"q\":1}}"
        ),
        |t| count(t, "\"ok\":true") >= 2,
    );
    assert_eq!(count(&text, "HTTP/1.1 200"), 2, "{text}");
    let seen = upstream.seen();
    let upload = seen
        .iter()
        .find(|r| r.starts_with("POST /upload "))
        .expect("upload");
    let lower = upload.to_ascii_lowercase();
    assert!(lower.contains("content-length: 11\r\n"), "{upload}");
    assert!(!lower.contains("transfer-encoding"), "{upload}");
    assert!(upload.ends_with("\r\n\r\nhello world"), "{upload}");
    assert!(
        lower.contains(&format!("host: 127.0.0.1:{}\r\n", upstream.port)),
        "{upload}"
    );
    assert!(
        lower.contains(&format!("x-upstream-token: {UPSTREAM_SECRET}\r\n")),
        "{upload}"
    );
    assert!(
        !upload.contains(&token),
        "the grant went upstream: {upload}"
    );
    let query = seen
        .iter()
        .find(|r| r.starts_with("GET /query "))
        .expect("query");
    assert!(
        query.to_ascii_lowercase().contains("content-length: 7\r\n"),
        "{query}"
    );
    assert!(query.ends_with("{\"q\":1}"), "{query}");

    // The grant as a WebSocket subprotocol on a plain request (as the API
    // server accepts it): it never goes upstream.
    let offered = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&token)
    };
    let (text, _) = raw(
        &gw,
        &format!(
            "GET /api/offered HTTP/1.1\r\nHost: localhost\r\nSec-WebSocket-Protocol: \
             v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.{offered}\r\n\r\n"
        ),
        |t| t.contains("\"ok\":true"),
    );
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    let seen = upstream.seen();
    let offered_req = seen
        .iter()
        .find(|r| r.starts_with("GET /offered "))
        .expect("offered");
    assert!(!offered_req.contains("base64url.bearer"), "{offered_req}");
    assert!(!offered_req.contains(&offered), "{offered_req}");

    // Denied with Expect: 100-continue: the 403 comes without the body
    // being asked for (no 100 Continue first) and nothing goes upstream.
    let (text, took) = raw(
        &gw,
        &format!(
            "POST /api/secret HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 1000000\r\n\
             Expect: 100-continue\r\n\r\n"
        ),
        |t| t.contains("\"gateway\":\"gatehouse\""),
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(text.starts_with("HTTP/1.1 403 "), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{text}"
    );
    // A client that sends more anyway: the connection closes, and nothing
    // is read as a request.
    let mut s = tls_stream(&gw);
    s.write_all(
        format!(
            "POST /api/secret HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 20\r\n\
             Expect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while !String::from_utf8_lossy(&got).contains("\"gateway\":\"gatehouse\"") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let after = format!(
        "GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET /api/after-expect HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    );
    let _ = s.write_all(after.as_bytes());
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    eprintln!("{text}");
    assert!(text.starts_with("HTTP/1.1 403 "), "{text}");
    assert!(!text.contains("HTTP/1.1 400"), "{text}");
    assert!(!text.contains("HTTP/1.1 404"), "{text}");

    // CONNECT, TRACE, OPTIONS *: the gateway's own 4xx.
    for (request, status) in [
        (
            format!(
                "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n{auth}\r\n",
                upstream.port
            ),
            "405",
        ),
        (
            format!("TRACE /api/x HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n"),
            "405",
        ),
        (
            format!("OPTIONS * HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n"),
            "400",
        ),
        (
            format!(
                "POST /api/upload HTTP/1.1\r\nHost: localhost\r\n{auth}\
                 Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            ),
            "501",
        ),
    ] {
        let (text, _) = raw(&gw, &request, |t| t.contains("\"gateway\":\"gatehouse\""));
        assert!(
            text.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request}\n{text}"
        );
    }
    let seen = upstream.seen();
    assert!(
        seen.iter().all(|r| !r.starts_with("POST /secret")
            && !r.starts_with("CONNECT")
            && !r.starts_with("TRACE")
            && !r.starts_with("OPTIONS")),
        "{seen:#?}"
    );
    assert_eq!(
        seen.iter()
            .filter(|r| r.starts_with("POST /upload "))
            .count(),
        1,
        "{seen:#?}"
    );

    // A client that leaves while the target has not answered: the
    // gateway lets go of the target's connection (and ends the session).
    {
        let mut s = tls_stream(&gw);
        s.write_all(format!("GET /api/stall HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n").as_bytes())
            .expect("write");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !upstream.seen().iter().any(|r| r.starts_with("GET /stall ")) {
            assert!(Instant::now() < deadline, "the request never arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        s.sock.shutdown(std::net::Shutdown::Both).expect("shutdown");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !upstream.seen().iter().any(|r| r == "released /stall") {
        assert!(
            Instant::now() < deadline,
            "the gateway still holds the stalled request of a client that left"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Clients that send a request and leave at once, while their session
    // opens: each session still ends with its Closed (checked below).
    for _ in 0..20 {
        let mut s = tls_stream(&gw);
        s.write_all(format!("GET /api/plain HTTP/1.1\r\nHost: localhost\r\n{auth}\r\n").as_bytes())
            .expect("write");
        s.flush().expect("flush");
        s.conn.send_close_notify();
        let _ = s.flush();
        let _ = s.sock.shutdown(std::net::Shutdown::Both);
    }
    std::thread::sleep(Duration::from_millis(500));

    // HTTP/1.0: an answer it can read (masked, not chunked, ends by close).
    let (text, _) = raw(
        &gw,
        &format!("GET /api/plain HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n"),
        |_| false,
    );
    assert!(text.starts_with("HTTP/1.0 200 "), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text}"
    );
    assert!(text.ends_with("\"ok\":true}"), "{text}");
    assert!(!text.contains("tok-plain"), "{text}");

    // The record: bodies both ways, nothing secret in it.
    let events = recorded_events(&mut gw);
    let up: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Body::HttpBody(b) if b.dir == Direction::ToUpstream => Some(b.bytes.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(String::from_utf8_lossy(&up).contains("hello world"));
    // In order per exchange: request head, its body, response head, its
    // body; every session opened is closed; the grant never in a header.
    let mut stage = std::collections::HashMap::new();
    let (mut opened, mut closed) = (0, 0);
    for e in &events {
        match e {
            Body::Opened(_) => {
                opened += 1;
                stage.clear();
            }
            Body::Closed(_) => closed += 1,
            Body::HttpRequest(r) => {
                assert!(stage.insert(r.exchange, 1).is_none(), "{r:?}");
                let auth = r.headers.iter().find(|h| h.name == "authorization");
                assert!(auth.is_none_or(|h| h.value == "[redacted]"), "{r:?}");
            }
            Body::HttpBody(b) if b.dir == Direction::ToUpstream => {
                assert_eq!(stage.get(&b.exchange), Some(&1), "{b:?}");
            }
            Body::HttpResponse(r) => {
                assert_eq!(stage.insert(r.exchange, 2), Some(1), "{r:?}");
            }
            Body::HttpBody(b) => assert_eq!(stage.get(&b.exchange), Some(&2), "{b:?}"),
            _ => {}
        }
    }
    assert!(opened >= 7, "{opened} sessions");
    assert_eq!(opened, closed, "every session is closed");
    let all = format!("{events:?}");
    for secret in [
        token.as_str(),
        UPSTREAM_SECRET,
        "pw-hinted",
        "tok-closing",
        "tok-plain",
        "tok-in-range",
        "agent-own-token",
        "cookie-secret",
    ] {
        assert!(!all.contains(secret), "{secret} is in the record");
    }
}
