//! The CPU the gateway adds per statement: one simple Query and its answer
//! (RowDescription, 10 DataRows, CommandComplete, ReadyForQuery) through a
//! logged-in `pg::Session`, with every transmit and event drained.
//!
//! The session is driven as the gateway's IO driver does (startup, grant,
//! `authorized`, upstream login against a scripted trust-auth target: the
//! minimal logic of core's `pg/tests/session.rs` harness, copied). Then per
//! iteration: the client's Query into `handle_client_data`, the target's
//! answer into `handle_upstream_data`, and after each the transmits,
//! actions and events drained. Recording is always on in a session: the
//! figure includes encoding and chaining the events (the statement, the
//! query frame, the response batch). Classification is always on too: an
//! allow-everything plan still classifies, from the warmed cache. Side by
//! side:
//! - `allow all`: `Rule::everything()`, no masking;
//! - `5 rules`: a plan of five rules, the covering one last;
//! - `allow all, masking clean rows`: card-number and e-mail detectors, no
//!   value matching;
//! - `allow all, masking an e-mail per row`: the same, every row rewritten;
//! - and two parts of the whole: the cached classification of the query,
//!   and recording the events one statement produced.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_core::event::{Body, Encoded, Recorder, SessionId, decode};
use gatehouse_core::grant::{Limits, Rule, TargetScope};
use gatehouse_core::mask::{Detector, MaskRules, Masker, Strategy};
use gatehouse_core::pg::{
    Action, Authorized, HoldMode, Policy, Session, SessionConfig, Transmit, UpstreamLogin, encode,
};
use gatehouse_core::policy::ClassifierCache;

const SQL: &str =
    "SELECT id, name, email, status, total FROM customers WHERE region = 'emea' LIMIT 10";

/// A session and what it produced.
struct Harness {
    s: Session,
    to_client: usize,
    to_upstream: usize,
    actions: Vec<Action>,
    events: usize,
    /// The events of the last drain, when kept.
    kept: Option<Vec<Encoded>>,
}

impl Harness {
    fn new() -> Self {
        let cfg = SessionConfig {
            tls_available: false,
            plaintext_allowed: true,
            max_client_frame: 1 << 16,
            max_upstream_frame: 1 << 20,
            backend_key: (4242, 99),
            seal_key: None,
        };
        Harness {
            s: Session::new(SessionId([1; 16]), cfg, "127.0.0.1:5555".into(), 0),
            to_client: 0,
            to_upstream: 0,
            actions: Vec::new(),
            events: 0,
            kept: None,
        }
    }

    /// Drains transmits, actions and events, keeping only their sizes.
    fn drain(&mut self) {
        while let Some(t) = self.s.poll_transmit() {
            match t {
                Transmit::Client(b) => self.to_client += b.len(),
                Transmit::Upstream(b) => self.to_upstream += b.len(),
            }
        }
        while let Some(a) = self.s.poll_action() {
            self.actions.push(a);
        }
        let events = self.s.take_events();
        self.events += events.len();
        if let Some(kept) = &mut self.kept {
            kept.extend(events);
        }
    }

    fn client(&mut self, bytes: &[u8], now_us: i64) {
        let mut buf = BytesMut::from(bytes);
        self.s.handle_client_data(&mut buf, now_us);
        self.drain();
    }

    fn upstream(&mut self, bytes: &[u8], now_us: i64) {
        let mut buf = BytesMut::from(bytes);
        self.s.handle_upstream_data(&mut buf, now_us);
        self.drain();
    }

    /// Startup through login against a trust-auth target.
    fn open(policy: Policy, masker: Option<Arc<Masker>>) -> Self {
        let mut h = Harness::new();
        h.client(
            &encode::startup_message([
                ("user", "agent"),
                ("database", "orders"),
                ("application_name", "psql"),
            ]),
            1,
        );
        h.client(encode::password_message(b"the.grant").bytes(), 1);
        assert!(matches!(h.actions.pop(), Some(Action::Authorize { .. })));
        h.s.authorized(
            Authorized {
                subject: "agent:bench".into(),
                jti: "j1".into(),
                issuer: "gatehouse".into(),
                purpose: "bench".into(),
                ticket: None,
                use_number: 1,
                max_uses: None,
                expires_at: i64::MAX,
                login: UpstreamLogin {
                    database: "orders_db".into(),
                    user: "app".into(),
                    password: None,
                },
                masker,
                policy,
            },
            1,
        );
        h.drain();
        assert_eq!(h.actions.pop(), Some(Action::ConnectUpstream));
        h.s.upstream_connected(1);
        h.drain();
        let mut greeting = Vec::new();
        greeting.extend_from_slice(encode::authentication(0, &[]).bytes());
        greeting.extend_from_slice(
            encode::frame(b'S', |b| b.extend_from_slice(b"server_version\x0015.1\0")).bytes(),
        );
        greeting.extend_from_slice(encode::backend_key_data(7, 8).bytes());
        greeting.extend_from_slice(encode::ready_for_query(b'I').bytes());
        h.upstream(&greeting, 2);
        assert_eq!(
            h.actions.pop(),
            Some(Action::RegisterCancel { pid: 7, secret: 8 }),
            "logged in"
        );
        h
    }

    /// One statement: the query in, the answer back.
    fn statement(&mut self, query: &[u8], answer: &[u8], now_us: i64) {
        self.client(query, now_us);
        self.upstream(answer, now_us + 1);
    }
}

fn policy(scope: TargetScope) -> Policy {
    Policy {
        scope: Arc::new(scope),
        classifier: Arc::new(ClassifierCache::default()),
        jti: "j1".into(),
        hold: HoldMode::Wait,
        approvals: None,
    }
}

fn allow_all() -> Policy {
    policy(TargetScope {
        allow: vec![Rule::everything()],
        ..TargetScope::default()
    })
}

/// Five rules, the one covering `public.customers` last.
fn five_rules() -> Policy {
    let mut allow: Vec<Rule> = ["invoices", "tickets", "products", "shipments"]
        .iter()
        .map(|t| Rule {
            name: Some((*t).into()),
            ops: vec!["select".into(), "update".into()],
            relations: vec![format!("public.{t}")],
            functions: Vec::new(),
            ..Rule::default()
        })
        .collect();
    allow.push(Rule {
        name: Some("customers".into()),
        ops: vec!["select".into()],
        relations: vec!["public.customers".into()],
        functions: Vec::new(),
        ..Rule::default()
    });
    policy(TargetScope {
        allow,
        approve: Vec::new(),
        limits: Limits::default(),
        mask: Default::default(),
    })
}

fn masker() -> Arc<Masker> {
    let rules = MaskRules {
        columns: Vec::new(),
        detectors: vec![
            (Detector::CardNumber, Strategy::Partial { keep_last: 4 }),
            (Detector::Email, Strategy::Redact),
        ],
        dictionaries: Vec::new(),
    };
    Arc::new(Masker::new(rules, b"a gateway secret of some length").expect("masker"))
}

/// The target's answer: 5 text columns, 10 rows.
fn answer(with_email: bool) -> Vec<u8> {
    let cols = ["id", "name", "email", "status", "total"];
    let mut out = encode::frame(b'T', |b| {
        b.extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for name in cols {
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&0u32.to_be_bytes()); // table
            b.extend_from_slice(&0i16.to_be_bytes()); // column
            b.extend_from_slice(&25u32.to_be_bytes()); // text
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes()); // text format
        }
    })
    .bytes()
    .to_vec();
    for i in 0..10 {
        let id = (1040 + i).to_string();
        let email = if with_email {
            format!("customer{i}@example.com")
        } else {
            "(not given)".to_owned()
        };
        let values = [
            id.as_str(),
            "Maria Garcia",
            email.as_str(),
            "shipped",
            "129.90",
        ];
        out.extend_from_slice(
            encode::frame(b'D', |b| {
                b.extend_from_slice(&(values.len() as i16).to_be_bytes());
                for v in values {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
            })
            .bytes(),
        );
    }
    out.extend_from_slice(encode::frame(b'C', |b| b.extend_from_slice(b"SELECT 10\0")).bytes());
    out.extend_from_slice(encode::ready_for_query(b'I').bytes());
    out
}

/// A case's name, its policy, its masking, and the target's answer.
type Case<'a> = (&'a str, Policy, Option<Arc<Masker>>, &'a [u8]);

fn bench(c: &mut Criterion) {
    let query = encode::frame(b'Q', |b| {
        b.extend_from_slice(SQL.as_bytes());
        b.push(0)
    })
    .bytes()
    .to_vec();
    let clean = answer(false);
    let emails = answer(true);
    let cases: [Case; 4] = [
        ("allow all", allow_all(), None, &clean),
        ("5 rules", five_rules(), None, &clean),
        (
            "allow all, masking clean rows",
            allow_all(),
            Some(masker()),
            &clean,
        ),
        (
            "allow all, masking an e-mail per row",
            allow_all(),
            Some(masker()),
            &emails,
        ),
    ];
    let mut recorded = Vec::new();
    let mut g = c.benchmark_group("session per statement");
    g.throughput(Throughput::Elements(1));
    for (name, policy, masker, answer) in cases {
        let masking = masker.is_some();
        let mut h = Harness::open(policy, masker);
        // Warm the classifier cache, and check the statement went through.
        let (client, upstream, events) = (h.to_client, h.to_upstream, h.events);
        h.kept = Some(Vec::new());
        h.statement(&query, answer, 10);
        if name == "allow all" {
            recorded = h.kept.take().unwrap_or_default();
        }
        h.kept = None;
        assert_eq!(h.to_upstream - upstream, query.len(), "{name}: forwarded");
        let answered = h.to_client - client;
        if masking && answer == emails.as_slice() {
            assert_ne!(answered, answer.len(), "{name}: masked");
        } else {
            assert_eq!(answered, answer.len(), "{name}: relayed as is");
        }
        assert!(h.events > events, "{name}: recorded");
        assert!(h.actions.is_empty(), "{name}: {:?}", h.actions);
        eprintln!("{name}: {} events per statement", h.events - events);
        let mut now = 100;
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 10;
                h.statement(&query, answer, now);
            })
        });
        assert!(h.actions.is_empty() && !h.s.is_closed(), "{name}");
    }
    // The parts, beside the whole: the cached classification, and
    // recording (rkyv + BLAKE3 chain) the events one statement produced.
    let cache = ClassifierCache::default();
    cache.classify(SQL);
    g.bench_function("part: cached classification", |b| {
        b.iter(|| cache.classify(std::hint::black_box(SQL)))
    });
    let bodies: Vec<Body> = recorded
        .iter()
        .map(|e| decode(&e.bytes).expect("decode").body)
        .collect();
    eprintln!(
        "allow all records: {:?} ({} bytes encoded)",
        bodies
            .iter()
            .map(|b| format!("{:?}", b).chars().take(12).collect::<String>())
            .collect::<Vec<_>>(),
        recorded.iter().map(|e| e.bytes.len()).sum::<usize>()
    );
    let mut rec = Recorder::new(SessionId([2; 16]));
    g.bench_function("part: recording its events", |b| {
        b.iter(|| {
            for body in &bodies {
                std::hint::black_box(rec.record(1, body.clone()));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
