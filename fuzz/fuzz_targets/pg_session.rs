//! The session state machine fed arbitrary client and target bytes, split
//! at arbitrary points, with the driver's answers in between: never a
//! panic, and whatever it forwards is whole frames.
#![no_main]

use bytes::BytesMut;
use gatehouse_core::event::SessionId;
use gatehouse_core::mask::{ColumnRule, Detector, MaskRules, Masker, Strategy};
use gatehouse_core::pg::{Action, Authorized, Session, SessionConfig, UpstreamLogin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = SessionConfig {
        tls_available: false,
        plaintext_allowed: true,
        max_client_frame: 4096,
        max_upstream_frame: 4096,
        backend_key: (1, 2),
        seal_key: None,
    };
    // Masking on, with a column rule, so the shape tracker and the frame
    // rewriting see the same arbitrary traffic.
    let rules = MaskRules {
        columns: vec![ColumnRule {
            pattern: "ssn".into(),
            strategy: Strategy::Redact,
        }],
        detectors: vec![(Detector::Email, Strategy::Redact)],
        dictionaries: vec![],
    };
    let Ok(masker) = Masker::new(rules, b"") else {
        return;
    };
    let masker = std::sync::Arc::new(masker);
    let mut s = Session::new(SessionId([0; 16]), cfg, "fuzz".into(), 0);
    let mut client = BytesMut::new();
    let mut upstream = BytesMut::new();
    // Each chunk: a selector byte, a length byte, then that many bytes.
    let mut rest = data;
    let mut now = 0;
    while let [sel, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (chunk, tail) = tail.split_at(n);
        rest = tail;
        now += 1;
        if sel & 1 == 0 {
            client.extend_from_slice(chunk);
            s.handle_client_data(&mut client, now);
        } else {
            upstream.extend_from_slice(chunk);
            s.handle_upstream_data(&mut upstream, now);
        }
        while s.poll_transmit().is_some() {}
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
                        masker: Some(masker.clone()),
                    },
                    now,
                ),
                Action::ConnectUpstream => s.upstream_connected(now),
                _ => {}
            }
        }
        let _ = s.take_events();
    }
});
