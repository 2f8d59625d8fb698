//! A client, the session and a scripted target, all in memory.

use bytes::{Bytes, BytesMut};

use crate::event::{Body, CloseReason, Direction, Refusal, SessionId, decode};
use crate::pg::encode;
use crate::pg::session::*;
use crate::pg::upstream::UpstreamLogin;

fn cfg(plaintext_allowed: bool) -> SessionConfig {
    SessionConfig {
        tls_available: true,
        plaintext_allowed,
        max_client_frame: 1024,
        max_upstream_frame: 1 << 20,
        backend_key: (4242, 99),
        seal_key: None,
    }
}

fn startup(db: &str) -> Vec<u8> {
    encode::startup_message([
        ("user", "agent"),
        ("database", db),
        ("application_name", "psql"),
    ])
    .to_vec()
}

pub(super) struct Harness {
    pub(super) s: Session,
    pub(super) to_client: Vec<u8>,
    pub(super) to_upstream: Vec<u8>,
    pub(super) actions: Vec<Action>,
    pub(super) bodies: Vec<Body>,
    pub(super) raw_events: Vec<Vec<u8>>,
    /// The plan the session enforces; everything allowed unless set
    /// before `open`.
    pub(super) policy: Option<crate::pg::Policy>,
}

impl Harness {
    pub(super) fn new(plaintext_allowed: bool) -> Self {
        Harness {
            s: Session::new(
                SessionId([1; 16]),
                cfg(plaintext_allowed),
                "127.0.0.1:5555".into(),
                0,
            ),
            to_client: Vec::new(),
            to_upstream: Vec::new(),
            actions: Vec::new(),
            bodies: Vec::new(),
            raw_events: Vec::new(),
            policy: None,
        }
    }

    pub(super) fn drain(&mut self) {
        while let Some(t) = self.s.poll_transmit() {
            match t {
                Transmit::Client(b) => self.to_client.extend_from_slice(&b),
                Transmit::Upstream(b) => self.to_upstream.extend_from_slice(&b),
            }
        }
        while let Some(a) = self.s.poll_action() {
            self.actions.push(a);
        }
        for e in self.s.take_events() {
            self.raw_events.push(e.bytes.to_vec());
            self.bodies.push(decode(&e.bytes).unwrap().body);
        }
    }

    /// Feeds client bytes `chunk` at a time.
    pub(super) fn client(&mut self, bytes: &[u8], chunk: usize) {
        let mut buf = BytesMut::new();
        for piece in bytes.chunks(chunk) {
            buf.extend_from_slice(piece);
            self.s.handle_client_data(&mut buf, 1);
            self.drain();
        }
    }

    pub(super) fn upstream(&mut self, bytes: &[u8], chunk: usize) {
        let mut buf = BytesMut::new();
        for piece in bytes.chunks(chunk) {
            buf.extend_from_slice(piece);
            self.s.handle_upstream_data(&mut buf, 2);
            self.drain();
        }
    }

    /// Startup through login against a trust-auth target.
    pub(super) fn open(&mut self) {
        self.open_with(None)
    }

    /// [`Harness::open`] with masking rules.
    pub(super) fn open_with(&mut self, masker: Option<std::sync::Arc<crate::mask::Masker>>) {
        self.client(&startup("orders"), 1000);
        assert_eq!(
            self.to_client,
            encode::authentication(3, &[]).bytes().to_vec()
        );
        self.to_client.clear();
        self.client(encode::password_message(b"the.grant").bytes(), 1000);
        assert_eq!(
            self.actions.pop(),
            Some(Action::Authorize {
                token: "the.grant".into(),
                target: "orders".into()
            })
        );
        self.s.authorized(
            Authorized {
                subject: "agent:t".into(),
                jti: "j1".into(),
                issuer: "gatehouse".into(),
                purpose: "test".into(),
                ticket: None,
                use_number: 1,
                max_uses: Some(1),
                expires_at: 100,
                login: UpstreamLogin {
                    database: "orders_db".into(),
                    user: "app".into(),
                    password: None,
                },
                masker,
                policy: self.policy.clone().unwrap_or_else(super::allow_all),
            },
            1,
        );
        self.drain();
        assert_eq!(self.actions.pop(), Some(Action::ConnectUpstream));
        self.s.upstream_connected(1);
        self.drain();
        assert!(self.to_upstream.windows(9).any(|w| w == b"orders_db"));
        self.to_upstream.clear();
        let mut greeting = Vec::new();
        greeting.extend_from_slice(encode::authentication(0, &[]).bytes());
        greeting.extend_from_slice(
            encode::frame(b'S', |b| b.extend_from_slice(b"server_version\x0015.1\0")).bytes(),
        );
        greeting.extend_from_slice(encode::backend_key_data(7, 8).bytes());
        greeting.extend_from_slice(encode::ready_for_query(b'I').bytes());
        self.upstream(&greeting, 1000);
        if self.to_upstream.starts_with(b"Q") {
            // Masking with column rules reads the catalog first: table
            // 16384 "customers" has ssn as column 3.
            assert!(self.to_client.is_empty(), "greeted before the catalog");
            self.to_upstream.clear();
            let mut answer = encode::frame(b'T', |b| b.extend_from_slice(&0i16.to_be_bytes()))
                .bytes()
                .to_vec();
            for (oid, table, num, col) in [
                ("16384", "customers", "3", "ssn"),
                ("16384", "customers", "1", "id"),
                ("16384", "customers", "2", "name"),
                ("16390", "orders", "1", "id"),
            ] {
                answer.extend_from_slice(
                    encode::frame(b'D', |b| {
                        b.extend_from_slice(&5i16.to_be_bytes());
                        for v in [oid, table, num, col, "public"] {
                            b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                            b.extend_from_slice(v.as_bytes());
                        }
                    })
                    .bytes(),
                );
            }
            answer.extend_from_slice(
                encode::frame(b'C', |b| b.extend_from_slice(b"SELECT 2\0")).bytes(),
            );
            answer.extend_from_slice(encode::ready_for_query(b'I').bytes());
            self.upstream(&answer, 5);
        }
        assert_eq!(
            self.actions.pop(),
            Some(Action::RegisterCancel { pid: 7, secret: 8 })
        );
        let mut expected = Vec::new();
        expected.extend_from_slice(encode::authentication(0, &[]).bytes());
        expected.extend_from_slice(
            encode::frame(b'S', |b| b.extend_from_slice(b"server_version\x0015.1\0")).bytes(),
        );
        expected.extend_from_slice(encode::backend_key_data(4242, 99).bytes());
        expected.extend_from_slice(encode::ready_for_query(b'I').bytes());
        assert_eq!(
            self.to_client, expected,
            "the client sees the gateway's cancel key"
        );
        self.to_client.clear();
    }
}

pub(super) fn query(sql: &str) -> Vec<u8> {
    encode::frame(b'Q', |b| {
        b.extend_from_slice(sql.as_bytes());
        b.push(0)
    })
    .bytes()
    .to_vec()
}

fn result_stream() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        encode::frame(b'T', |b| {
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(b"n\0");
            b.extend_from_slice(&[0; 18]);
        })
        .bytes(),
    );
    for v in ["1", "22", "333"] {
        out.extend_from_slice(
            encode::frame(b'D', |b| {
                b.extend_from_slice(&1i16.to_be_bytes());
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v.as_bytes());
            })
            .bytes(),
        );
    }
    out.extend_from_slice(encode::frame(b'C', |b| b.extend_from_slice(b"SELECT 3\0")).bytes());
    out.extend_from_slice(encode::ready_for_query(b'I').bytes());
    out
}

#[test]
fn relays_byte_identically_at_every_split() {
    let mut client_stream = query("select n from t");
    client_stream.extend_from_slice(&query("select 2; select 3"));
    let server_stream = result_stream();
    for chunk in 1..=client_stream.len().max(server_stream.len()) {
        let mut h = Harness::new(true);
        h.open();
        h.bodies.clear();
        h.client(&client_stream, chunk);
        h.upstream(&server_stream, chunk);
        assert_eq!(h.to_upstream, client_stream, "chunk {chunk}");
        assert_eq!(h.to_client, server_stream, "chunk {chunk}");
        let statements: Vec<_> = h
            .bodies
            .iter()
            .filter_map(|b| match b {
                Body::Statement(s) => Some(s.text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(statements, ["select n from t", "select 2; select 3"]);
        assert!(h.bodies.contains(&Body::CommandComplete {
            tag: "SELECT 3".into()
        }));
        let recorded: Vec<u8> = h
            .bodies
            .iter()
            .filter_map(|b| match b {
                Body::Frame(f) if f.dir == Direction::ToClient => Some(f.bytes.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            recorded, server_stream,
            "the recording holds what the client got"
        );
    }
}

#[test]
fn opened_is_the_first_event_and_login_is_not_recorded() {
    let mut h = Harness::new(true);
    h.open();
    assert!(
        matches!(&h.bodies[0], Body::Opened(o) if o.target == "orders" && o.subject == "agent:t")
    );
    for b in &h.bodies {
        if let Body::Frame(f) = b {
            assert!(!f.bytes.windows(9).any(|w| w == b"the.grant"));
        }
    }
}

#[test]
fn bind_is_recorded_with_parse_text_and_params() {
    let mut h = Harness::new(true);
    h.open();
    h.bodies.clear();
    let mut stream = encode::frame(b'P', |b| {
        b.extend_from_slice(b"s1\0select $1\0");
        b.extend_from_slice(&0i16.to_be_bytes());
    })
    .bytes()
    .to_vec();
    stream.extend_from_slice(
        encode::frame(b'B', |b| {
            b.extend_from_slice(b"\0s1\0");
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&2i32.to_be_bytes());
            b.extend_from_slice(b"42");
            b.extend_from_slice(&0i16.to_be_bytes());
        })
        .bytes(),
    );
    stream.extend_from_slice(encode::frame(b'S', |_| {}).bytes());
    h.client(&stream, 7);
    let Some(Body::Statement(st)) = h.bodies.iter().find(|b| matches!(b, Body::Statement(_)))
    else {
        panic!("no statement")
    };
    assert_eq!(st.text, "select $1");
    assert_eq!(st.statement_name, "s1");
    assert_eq!(st.params[0].value, Some(Bytes::from_static(b"42")));
}

#[test]
fn plaintext_is_refused_where_tls_is_required() {
    let mut h = Harness::new(false);
    h.client(&startup("orders"), 1000);
    assert!(h.to_client.starts_with(b"E"));
    assert!(String::from_utf8_lossy(&h.to_client).contains("28000"));
    assert!(matches!(&h.bodies[0], Body::Refused(r) if r.reason == Refusal::TlsRequired));
    assert!(matches!(h.bodies.last(), Some(Body::Closed(c)) if c.reason == CloseReason::Refused));
    assert_eq!(h.actions.last(), Some(&Action::Close));
}

#[test]
fn ssl_request_then_tls() {
    let mut h = Harness::new(false);
    h.client(b"\0\0\0\x08\x04\xd2\x16\x2f", 3);
    assert_eq!(h.to_client, b"S");
    assert_eq!(h.actions, [Action::StartTls { direct: false }]);
    h.s.tls_established(crate::event::TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "x".into(),
        direct: false,
    });
    h.to_client.clear();
    h.client(&startup("orders"), 1000);
    assert_eq!(h.to_client, encode::authentication(3, &[]).bytes().to_vec());
}

#[test]
fn data_stuffed_after_ssl_request_is_refused() {
    let mut h = Harness::new(false);
    let mut bytes = b"\0\0\0\x08\x04\xd2\x16\x2f".to_vec();
    bytes.extend_from_slice(&startup("orders"));
    h.client(&bytes, 1000);
    assert!(String::from_utf8_lossy(&h.to_client).contains("08P01"));
    assert!(h.s.is_closed());
}

#[test]
fn direct_tls_is_detected_without_consuming() {
    let mut h = Harness::new(false);
    let mut buf = BytesMut::from(&b"\x16\x03\x01\x02\x00"[..]);
    h.s.handle_client_data(&mut buf, 0);
    h.drain();
    assert_eq!(h.actions, [Action::StartTls { direct: true }]);
    assert_eq!(buf.len(), 5);
}

#[test]
fn oversized_client_frame_ends_the_session_with_a_protocol_error() {
    let mut h = Harness::new(true);
    h.open();
    h.client(&query(&"x".repeat(2000)), 100);
    assert!(h.to_upstream.is_empty());
    assert!(String::from_utf8_lossy(&h.to_client).contains("08P01"));
    assert!(h.s.is_closed());
    assert!(
        matches!(h.bodies.last(), Some(Body::Closed(c)) if c.reason == CloseReason::ClientProtocolError)
    );
}

#[test]
fn a_message_not_finished_in_time_ends_the_session_with_a_protocol_error() {
    let mut h = Harness::new(true);
    // Before the session relays, the startup timeout is the driver's.
    h.s.message_timed_out(60.0, 50);
    assert!(!h.s.is_closed());
    h.open();
    // Half a Query message, then the driver's clock runs out.
    let q = query("select 1");
    h.client(&q[..4], 100);
    assert!(h.to_upstream.is_empty());
    h.s.message_timed_out(60.0, 200);
    h.drain();
    let text = String::from_utf8_lossy(&h.to_client);
    assert!(
        text.contains("08P01") && text.contains("within 60 s"),
        "{text}"
    );
    assert!(h.s.is_closed());
    assert!(
        matches!(h.bodies.last(), Some(Body::Closed(c)) if c.reason == CloseReason::ClientProtocolError)
    );
}

#[test]
fn cancel_request_is_forwarded_not_recorded() {
    let mut h = Harness::new(false);
    h.client(&encode::cancel_request(4242, 99), 1000);
    assert_eq!(
        h.actions,
        [
            Action::ForwardCancel {
                pid: 4242,
                secret: 99
            },
            Action::Close
        ]
    );
    assert!(h.bodies.is_empty());
}

#[test]
fn terminate_closes_after_forwarding() {
    let mut h = Harness::new(true);
    h.open();
    h.client(encode::terminate().bytes(), 1000);
    assert_eq!(h.to_upstream, encode::terminate().bytes().to_vec());
    assert!(
        matches!(h.bodies.last(), Some(Body::Closed(c)) if c.reason == CloseReason::ClientTerminated)
    );
}

#[test]
fn newer_minor_version_is_negotiated_down() {
    let mut h = Harness::new(true);
    let mut packet = encode::startup_message([("user", "a"), ("_pq_.x", "1")]).to_vec();
    packet[4..8].copy_from_slice(&0x0003_0002i32.to_be_bytes());
    h.client(&packet, 1000);
    assert_eq!(h.to_client[0], b'v');
    assert!(h.to_client.windows(6).any(|w| w == b"_pq_.x"));
}

#[test]
fn an_error_in_a_non_utf8_client_encoding_is_relayed_not_fatal() {
    let mut h = Harness::new(true);
    h.open();
    h.client(&query("select 1/0"), 1000);
    let mut server = encode::frame(b'E', |b| {
        b.extend_from_slice(b"SERROR\0C22012\0Mdivision par z\xe9ro\0\0");
    })
    .bytes()
    .to_vec();
    server.extend_from_slice(encode::ready_for_query(b'I').bytes());
    h.upstream(&server, 1000);
    assert!(!h.s.is_closed());
    assert_eq!(h.to_client, server);
    assert!(
        h.bodies
            .iter()
            .any(|b| matches!(b, Body::Error(e) if e.code == "22012"))
    );
}

#[test]
fn a_login_that_never_finishes_fails_with_08001_when_the_driver_says_so() {
    let mut h = Harness::new(true);
    h.client(&startup("orders"), 1000);
    h.client(encode::password_message(b"the.grant").bytes(), 1000);
    assert!(!h.s.is_logging_in());
    h.s.authorized(
        Authorized {
            subject: "agent:t".into(),
            jti: "j1".into(),
            issuer: "gatehouse".into(),
            purpose: "test".into(),
            ticket: None,
            use_number: 1,
            max_uses: Some(1),
            expires_at: 100,
            login: UpstreamLogin {
                database: "orders_db".into(),
                user: "app".into(),
                password: None,
            },
            masker: None,
            policy: super::allow_all(),
        },
        1,
    );
    assert!(h.s.is_logging_in());
    h.s.upstream_connected(2);
    h.drain();
    assert!(h.s.is_logging_in(), "the target has not answered");
    h.to_client.clear();
    h.s.upstream_failed("logging in timed out", 3);
    h.drain();
    assert!(h.s.is_closed() && !h.s.is_logging_in());
    assert_eq!(h.to_client.first(), Some(&b'E'));
    assert!(h.to_client.windows(5).any(|w| w == b"08001"));
    assert!(
        matches!(h.bodies.last(), Some(Body::Closed(c)) if c.reason == CloseReason::UpstreamUnavailable)
    );
}

#[test]
fn the_session_is_not_logging_in_once_greeted() {
    let mut h = Harness::new(true);
    h.open();
    assert!(!h.s.is_logging_in());
    h.s.upstream_failed("late", 5);
    assert!(
        !h.s.is_closed(),
        "a relaying session ignores a login failure"
    );
}
