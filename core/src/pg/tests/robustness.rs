//! Untrusted bytes never panic the decoders or the session: random and
//! mutated inputs, deterministic so a failure reproduces. (The fuzz targets
//! under `fuzz/` explore the same entry points without bounds.)

use bytes::{Bytes, BytesMut};

use crate::event::SessionId;
use crate::pg::session::*;
use crate::pg::upstream::UpstreamLogin;
use crate::pg::{backend, encode, frame, frontend};

/// xorshift64*: enough randomness to shake decoders, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn valid_client_stream() -> Vec<u8> {
    let mut s = encode::startup_message([("user", "a"), ("database", "orders")]).to_vec();
    s.extend_from_slice(encode::password_message(b"grant").bytes());
    s.extend_from_slice(encode::frame(b'Q', |b| b.extend_from_slice(b"select 1\0")).bytes());
    s.extend_from_slice(
        encode::frame(b'P', |b| {
            b.extend_from_slice(b"s\0select $1\0");
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&23i32.to_be_bytes());
        })
        .bytes(),
    );
    s.extend_from_slice(
        encode::frame(b'B', |b| {
            b.extend_from_slice(b"\0s\0\0\x01\0\x01\0\0\0\x011\0\0");
        })
        .bytes(),
    );
    s.extend_from_slice(encode::frame(b'S', |_| {}).bytes());
    s
}

fn valid_server_stream() -> Vec<u8> {
    let mut s = encode::authentication(0, &[]).bytes().to_vec();
    s.extend_from_slice(encode::backend_key_data(1, 2).bytes());
    s.extend_from_slice(encode::ready_for_query(b'I').bytes());
    s.extend_from_slice(encode::frame(b'C', |b| b.extend_from_slice(b"SELECT 1\0")).bytes());
    s.extend_from_slice(encode::error_response("ERROR", "42601", "syntax", Some("hint")).bytes());
    // Ends the catalog phase when masking is on; then a row to mask.
    s.extend_from_slice(encode::ready_for_query(b'I').bytes());
    s.extend_from_slice(
        encode::frame(b'T', |b| {
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(b"n\0");
            b.extend_from_slice(&[
                0, 0, 64, 0, 0, 1, 0, 0, 0, 25, 255, 255, 255, 255, 255, 255, 0, 0,
            ]);
        })
        .bytes(),
    );
    s.extend_from_slice(
        encode::frame(b'D', |b| {
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&20i32.to_be_bytes());
            b.extend_from_slice(b"jane.doe@example.com");
        })
        .bytes(),
    );
    s.extend_from_slice(encode::frame(b'C', |b| b.extend_from_slice(b"SELECT 1\0")).bytes());
    s.extend_from_slice(encode::ready_for_query(b'I').bytes());
    s
}

fn mutate(rng: &mut Rng, mut v: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        match rng.below(3) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v.truncate(i);
            }
            _ => {
                let i = rng.below(v.len() + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v
}

fn drive(client: &[u8], server: &[u8], rng: &mut Rng) {
    let cfg = SessionConfig {
        tls_available: false,
        plaintext_allowed: true,
        max_client_frame: 4096,
        max_upstream_frame: 4096,
        backend_key: (1, 2),
        seal_key: None,
    };
    let mut s = Session::new(SessionId([0; 16]), cfg, "t".into(), 0);
    // Half the runs with masking on (a column rule, so the catalog phase
    // and the shape tracker run too).
    let masker = (rng.below(2) == 0).then(|| {
        let rules = crate::mask::MaskRules {
            columns: vec![crate::mask::ColumnRule {
                pattern: "n".into(),
                strategy: crate::mask::Strategy::Redact,
            }],
            detectors: vec![(crate::mask::Detector::Email, crate::mask::Strategy::Redact)],
            dictionaries: vec![],
        };
        std::sync::Arc::new(crate::mask::Masker::new(rules, b"").unwrap())
    });
    let (mut cbuf, mut ubuf) = (BytesMut::new(), BytesMut::new());
    let (mut ci, mut ui) = (0, 0);
    while ci < client.len() || ui < server.len() {
        if ci < client.len() && (ui >= server.len() || rng.below(2) == 0) {
            let n = 1 + rng.below(client.len() - ci);
            cbuf.extend_from_slice(&client[ci..ci + n]);
            ci += n;
            s.handle_client_data(&mut cbuf, 1);
        } else {
            let n = 1 + rng.below(server.len() - ui);
            ubuf.extend_from_slice(&server[ui..ui + n]);
            ui += n;
            s.handle_upstream_data(&mut ubuf, 2);
        }
        while let Some(t) = s.poll_transmit() {
            if let Transmit::Upstream(b) = t {
                // What reaches the target is whole frames (or the login).
                let _ = frame::split(&b).count();
            }
        }
        while let Some(a) = s.poll_action() {
            match a {
                Action::Authorize { .. } => s.authorized(
                    Authorized {
                        subject: "s".into(),
                        jti: "j".into(),
                        issuer: "i".into(),
                        purpose: "p".into(),
                        ticket: None,
                        use_number: 1,
                        max_uses: None,
                        expires_at: 0,
                        login: UpstreamLogin {
                            database: "d".into(),
                            user: "u".into(),
                            password: Some("pw".into()),
                        },
                        masker: masker.clone(),
                        policy: super::with_scope(super::select_only()),
                    },
                    1,
                ),
                Action::ConnectUpstream => s.upstream_connected(1),
                _ => {}
            }
        }
        for e in s.take_events() {
            crate::event::decode(&e.bytes).unwrap();
        }
    }
}

#[test]
fn mutated_sessions_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (client, server) = (valid_client_stream(), valid_server_stream());
    drive(&client, &server, &mut rng);
    for _ in 0..3000 {
        let c = mutate(&mut rng, client.clone());
        let s = mutate(&mut rng, server.clone());
        drive(&c, &s, &mut rng);
    }
}

#[test]
fn random_bytes_never_panic_the_decoders() {
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let len = rng.below(64);
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = frame::decode_startup(&mut BytesMut::from(&data[..]));
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(f)) = frame::decode(&mut buf, 1 << 16) {
            let _ = frontend::Message::parse(&f);
            let _ = backend::Message::parse(&f);
        }
        for f in frame::split(&Bytes::from(data.clone())) {
            let _ = backend::Message::parse(&f);
        }
        assert!(crate::event::decode(&data).is_err() || data.len() >= 8);
    }
}
