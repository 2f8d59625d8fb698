//! The audit queries answer the same through the store's secondary
//! indexes as through a scan: many sessions of varied subjects, targets,
//! grants, relations, kinds and verdicts; every filter combination run both
//! ways and compared row for row.

mod common;

use common::{SessionBuilder, T0_MS, sid};
use gatehouse_core::event::{Body, Decision, Opened, Refusal, Refused, StatementProtocol, Verdict};
use gatehouse_replay::query::{self, SessionFilter, StatementFilter};
use gatehouse_store::{Reader, Store, StoreOptions};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len() as u64) as usize]
    }
}

const SUBJECTS: &[&str] = &["agent:a", "agent:b", "agent:c", "agent:d", "bot"];
const TARGETS: &[&str] = &["orders", "billing", "crm"];
const ACCESSES: &[&str] = &[
    "select on public.customers",
    "update on public.customers",
    "update on public.invoices",
    "insert on audit.log",
    "delete on public.invoices",
    "calling function nextval",
];
const DAY_MS: u64 = 86_400_000;
const DAYS: u64 = 30;

fn verdict(rng: &mut Rng, decision: Decision, protocol: StatementProtocol, text: &str) -> Body {
    let n = 1 + rng.below(3);
    let accesses: Vec<String> = (0..n).map(|_| rng.pick(ACCESSES).to_owned()).collect();
    let mut kinds: Vec<String> = accesses
        .iter()
        .map(|a| a.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    if rng.below(4) == 0 {
        kinds.push("begin".into());
    }
    Body::Verdict(Verdict {
        decision,
        protocol,
        statement_name: String::new(),
        text: text.into(),
        kinds,
        accesses,
        reason: if decision == Decision::Allow {
            String::new()
        } else {
            "not in the plan".into()
        },
        approval: String::new(),
        approver: String::new(),
    })
}

fn session(rng: &mut Rng, n: u16) -> SessionBuilder {
    let ms = T0_MS + rng.below(DAYS * DAY_MS);
    let mut s = SessionBuilder::new(sid(ms, n));
    let subject = rng.pick(SUBJECTS);
    let target = rng.pick(TARGETS);
    let jti = format!("jti-{}", rng.below(40));
    if rng.below(10) == 0 {
        s.body(Body::Refused(Refused {
            reason: Refusal::Expired,
            message: "expired".into(),
            target: target.into(),
            client_addr: "10.0.0.9:40000".into(),
            subject: (rng.below(2) == 0).then(|| subject.to_owned()),
            jti: (rng.below(2) == 0).then(|| jti.clone()),
        }));
        return s;
    }
    s.body(Body::Opened(Opened {
        subject: subject.into(),
        jti,
        issuer: "gatehouse".into(),
        purpose: format!("purpose {}", rng.below(5)),
        ticket: (rng.below(2) == 0).then(|| format!("OPS-{}", rng.below(9))),
        target: target.into(),
        client_user: "agent".into(),
        application_name: None,
        client_addr: format!("10.0.0.{}:5000", rng.below(4)),
        tls: None,
        use_number: 1,
        max_uses: None,
        expires_at: 2_000_000_000,
    }));
    for i in 0..rng.below(9) {
        s.wait(1_000 + rng.below(1_000_000) as i64);
        let sql = format!("SELECT {i} /* {} */", rng.pick(SUBJECTS));
        match rng.below(6) {
            // An allowed simple query: its text is in the Statement.
            0 | 1 => {
                s.statement_event(&sql);
                let v = verdict(rng, Decision::Allow, StatementProtocol::Simple, "");
                s.body(v);
            }
            // Two verdicts after one Statement: the second gets no text.
            2 => {
                s.statement_event(&sql);
                let v = verdict(rng, Decision::Allow, StatementProtocol::Simple, "");
                s.body(v);
                let v = verdict(rng, Decision::Allow, StatementProtocol::Simple, "");
                s.body(v);
            }
            // A denial or hold carries its text.
            3 => {
                let d = if rng.below(2) == 0 {
                    Decision::Deny
                } else {
                    Decision::Hold
                };
                let v = verdict(rng, d, StatementProtocol::Simple, &sql);
                s.body(v);
            }
            // A Parse, and a Statement event that no verdict takes.
            4 => {
                let v = verdict(rng, Decision::Allow, StatementProtocol::Extended, &sql);
                s.body(v);
                s.statement_event(&sql);
            }
            _ => {
                s.body(Body::CommandComplete {
                    tag: "SELECT 1".into(),
                });
            }
        }
    }
    s
}

fn session_filters() -> Vec<SessionFilter> {
    let t0 = (T0_MS * 1000) as i64;
    let week = (7 * DAY_MS * 1000) as i64;
    let ranges = [
        (None, None),
        (Some(t0 + week), Some(t0 + 2 * week)),
        (Some(t0 + 3 * week), None),
        (None, Some(t0 + week / 2)),
    ];
    let mut out = vec![SessionFilter::default()];
    for (since_us, until_us) in ranges {
        let base = SessionFilter {
            since_us,
            until_us,
            ..SessionFilter::default()
        };
        out.push(base.clone());
        for s in SUBJECTS.iter().chain(&["nobody"]) {
            out.push(SessionFilter {
                subject: Some(s.to_string()),
                ..base.clone()
            });
            out.push(SessionFilter {
                subject: Some(s.to_string()),
                target: Some("orders".into()),
                ..base.clone()
            });
        }
        for t in TARGETS.iter().chain(&["nowhere"]) {
            out.push(SessionFilter {
                target: Some(t.to_string()),
                ..base.clone()
            });
            out.push(SessionFilter {
                target: Some(t.to_string()),
                purpose: Some("PURPOSE 1".into()),
                ..base.clone()
            });
        }
        for j in [0, 7, 13, 39, 99] {
            out.push(SessionFilter {
                jti: Some(format!("jti-{j}")),
                ..base.clone()
            });
            out.push(SessionFilter {
                jti: Some(format!("jti-{j}")),
                subject: Some("agent:a".into()),
                client: Some("10.0.0.1".into()),
                ..base.clone()
            });
        }
        out.push(SessionFilter {
            ticket: Some("ops-3".into()),
            ..base.clone()
        });
    }
    out
}

fn statement_filters() -> Vec<StatementFilter> {
    let mut out = vec![StatementFilter::default()];
    let relations = [
        None,
        Some("customers"),
        Some("public.customers"),
        Some("public.invoices"),
        Some("audit.log"),
        Some("public.nothing"),
    ];
    let kinds = [
        None,
        Some("select"),
        Some("update"),
        Some("delete"),
        Some("begin"),
        Some("calling function nextval"),
        Some("truncate"),
    ];
    for r in relations {
        for k in kinds {
            let base = StatementFilter {
                relation: r.map(Into::into),
                kind: k.map(Into::into),
                ..StatementFilter::default()
            };
            out.push(base.clone());
            out.push(StatementFilter {
                decision: Some("deny".into()),
                ..base.clone()
            });
            out.push(StatementFilter {
                text: Some("select 3".into()),
                ..base
            });
        }
    }
    out
}

#[test]
fn indexed_queries_answer_like_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let sessions: Vec<SessionBuilder> = (0..600).map(|n| session(&mut rng, n)).collect();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let writer = store.writer();
    // Several sessions per submission, as the gateway's group commit does.
    for chunk in sessions.chunks(7) {
        let events = chunk.iter().flat_map(|s| s.events.clone()).collect();
        writer.append_blocking(events).unwrap();
    }
    store.shutdown().unwrap();
    let reader = Reader::open(dir.path()).unwrap();

    let (mut nonempty_sessions, mut nonempty_statements) = (0, 0);
    let session_filters = session_filters();
    for f in &session_filters {
        let indexed = query::sessions(&reader, f).unwrap();
        let scanned = query::sessions_scan(&reader, f).unwrap();
        assert_eq!(indexed, scanned, "sessions {f:?}");
        nonempty_sessions += usize::from(!indexed.is_empty());
    }
    let statement_filters = statement_filters();
    for (i, sf) in statement_filters.iter().enumerate() {
        // Every statement filter with a few session filters (all of them
        // would take long in a debug build).
        for f in session_filters.iter().skip(i % 5).step_by(9) {
            let indexed = query::statements(&reader, f, sf).unwrap();
            let scanned = query::statements_scan(&reader, f, sf).unwrap();
            assert_eq!(indexed, scanned, "statements {f:?} {sf:?}");
            nonempty_statements += usize::from(!indexed.is_empty());
        }
    }
    // The comparisons were not all of empty answers.
    assert!(
        nonempty_sessions > session_filters.len() / 2,
        "{nonempty_sessions}"
    );
    assert!(nonempty_statements > 100, "{nonempty_statements}");
    // And texts were carried over from the Statement events.
    let all = query::statements(
        &reader,
        &SessionFilter::default(),
        &StatementFilter {
            relation: Some("customers".into()),
            ..StatementFilter::default()
        },
    )
    .unwrap();
    assert!(all.iter().any(|r| r.text.starts_with("SELECT")));
    assert!(all.iter().any(|r| r.text.is_empty()));
}
