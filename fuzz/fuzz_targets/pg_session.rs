//! The session state machine fed arbitrary client and target bytes, split
//! at arbitrary points, with the driver's answers in between: never a
//! panic, and whatever it forwards is whole frames.
#![no_main]

use bytes::BytesMut;
use gatehouse_core::event::SessionId;
use gatehouse_core::mask::{ColumnRule, Detector, MaskRules, Masker, Strategy};
use gatehouse_core::grant::{Limits, Rule, TargetScope};
use gatehouse_core::pg::{
    Action, ApprovalDecision, Authorized, HoldMode, Policy, Session, SessionConfig, UpstreamLogin,
};
use gatehouse_core::policy::ClassifierCache;
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
    // A plan that allows reading `public` only, with limits: most
    // statements are denied, so the denial rewrites and the ledger of
    // requests in flight see the arbitrary traffic too.
    let policy = Policy {
        scope: std::sync::Arc::new(TargetScope {
            allow: vec![Rule {
                name: None,
                ops: vec!["select".into()],
                relations: vec!["public.*".into()],
                functions: vec![],
            }],
            approve: vec![Rule {
                name: None,
                ops: vec!["update".into(), "delete".into()],
                relations: vec!["public.*".into()],
                functions: vec![],
            }],
            limits: Limits {
                statements: Some(50),
                rows: Some(100),
                duration_s: Some(1),
            },
        }),
        classifier: std::sync::Arc::new(ClassifierCache::new(64)),
        jti: "j".into(),
        hold: HoldMode::Wait,
        approvals: None,
    };
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
                        policy: policy.clone(),
                    },
                    now,
                ),
                Action::ConnectUpstream => s.upstream_connected(now),
                // Holds are decided at once, either way.
                Action::RequestApproval {
                    request,
                    wait: true,
                } => {
                    let decision = ApprovalDecision {
                        approved: now % 2 == 0,
                        approver: "fuzz".into(),
                        reason: "r".into(),
                    };
                    s.approval_decided(&request.id, decision, now);
                    s.handle_client_data(&mut client, now);
                }
                _ => {}
            }
        }
        let _ = s.take_events();
    }
});
