//! The recording check: after the gateway has stopped, its store must hold
//! every statement the harness sent through it exactly once, in the
//! session of the connection that sent it, and every one of the run's
//! sessions must be closed and its hash chain intact.
//!
//! The run's sessions are found by the `application_name` each agent
//! connection sets (`gatehouse-loadtest:RUN:g:AGENT:CONN`), refusals by the
//! grants' `jti`s; only sessions started after the run began (less a
//! minute of clock skew) are read. Statements are matched by the tag they
//! start with. What the ledger says decides what is expected:
//!
//! | statement | expected in the store |
//! |---|---|
//! | answered (rows or an SQL error came back) | exactly once |
//! | sent, no answer (connection broke, timeout) | at most once |
//! | never sent by this run (unknown tag) | never |
//! | sent on the direct leg | never |
//!
//! Those are `Statement` events. The denied workload's statements are
//! different: the gateway judges a Parse before it forwards it and records a
//! `Verdict` with the SQL; a denied one never becomes a `Statement` (that is
//! recorded at Bind, for allowed Parses). So each of them must be in the
//! store as a `Verdict` with `Decision::Deny` — once when answered, at most
//! once when not — and never as a `Statement` or an allowing `Verdict`. A
//! `Statement` recorded between a denied Parse and the next verdict (the
//! Bind that followed the Parse in the same batch) is a difference of its
//! own: the gateway recorded a statement that never ran.
//!
//! Chains are verified with `gatehouse_replay::verify` (the same check as
//! `gatehouse-audit verify`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use gatehouse_core::event::{Body, Decision, StatementProtocol};
use gatehouse_store::{Reader, StoreError};
use serde::Serialize;

use crate::ledger::{Ledger, Sent};
use crate::schedule::Leg;
use crate::workload::{SessionOwner, parse_application_name, parse_tag};

/// Sessions that started this long before the run are not read.
const CLOCK_SLACK_US: i64 = 60_000_000;

/// How many differences are listed one by one.
const MAX_EXAMPLES: usize = 20;

/// What the check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// The store directory.
    pub store: String,
    /// No difference found.
    pub passed: bool,
    /// The run's sessions in the store (opened ones).
    pub sessions: u64,
    /// The run's connections the gateway refused.
    pub sessions_refused: u64,
    /// How the run's sessions ended, by close reason.
    pub close_reasons: BTreeMap<String, u64>,
    /// Connections the harness attempted through the gateway.
    pub connections_attempted: u64,
    /// Connections that opened.
    pub connections_opened: u64,
    /// Statements answered through the gateway: each must be recorded once.
    /// The denied workload's are counted apart.
    pub statements_answered: u64,
    /// Statements sent without an answer: each at most once (the denied
    /// workload's apart).
    pub statements_uncertain: u64,
    /// Tagged statements of this run found in the store.
    pub statements_recorded: u64,
    /// Statements in the run's sessions without a tag (none expected:
    /// tokio-postgres sends none of its own for these workloads).
    pub untagged_statements: u64,
    /// Masked-workload statements answered through the gateway.
    pub masked_answered: u64,
    /// `Masked` events in the run's sessions.
    pub masked_events: u64,
    /// Events whose chain links were verified.
    pub chain_events: u64,
    /// Breaks in those chains.
    pub chain_breaks: u64,
    /// Denied-workload statements answered through the gateway: each must
    /// be recorded as a denial once.
    pub denied_answered: u64,
    /// Denied-workload statements sent without an answer: each at most once.
    pub denied_uncertain: u64,
    /// Denials (`Verdict` events with `Deny`) of denied-workload statements
    /// found in the store.
    pub denials_recorded: u64,
    /// Differences by kind.
    pub differences: BTreeMap<&'static str, u64>,
    /// The first differences, spelled out.
    pub examples: Vec<String>,
}

impl CheckReport {
    fn differ(&mut self, kind: &'static str, detail: impl FnOnce() -> String) {
        *self.differences.entry(kind).or_default() += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(format!("{kind}: {}", detail()));
        }
    }
}

/// Opens the store at `dir` for reading, waiting up to `wait` for a
/// gateway to release it. `waiting` is called once if it has to wait.
pub async fn open_store(
    dir: &Path,
    wait: Duration,
    waiting: impl FnOnce(),
) -> anyhow::Result<Reader> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut waiting = Some(waiting);
    loop {
        match Reader::open(dir) {
            Ok(reader) => return Ok(reader),
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                if let Some(f) = waiting.take() {
                    f();
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open the store {}", dir.display()));
            }
        }
    }
}

/// Checks the store against what the run sent.
pub fn check(reader: &Reader, ledger: &Ledger) -> anyhow::Result<CheckReport> {
    let (answered, uncertain) = ledger.statement_counts();
    let (attempted, opened) = ledger.connection_counts();
    let mut report = CheckReport {
        store: reader.path().display().to_string(),
        connections_attempted: attempted,
        connections_opened: opened,
        statements_answered: answered,
        statements_uncertain: uncertain,
        masked_answered: ledger.masked_answered,
        ..CheckReport::default()
    };
    (report.denied_answered, report.denied_uncertain) = ledger.denied_counts();
    let jtis: HashSet<&str> = ledger.jtis.iter().map(String::as_str).collect();
    // Times each statement was recorded, by agent and sequence number.
    let mut seen: Vec<Vec<u8>> = ledger
        .agents
        .iter()
        .map(|a| vec![0; a.statements.len()])
        .collect();
    // Times each denied-workload statement was recorded as denied.
    let mut denials = seen.clone();
    let from_us = ledger.started_us.saturating_sub(CLOCK_SLACK_US);
    for summary in reader.sessions() {
        let summary = summary.context("cannot read a session summary")?;
        if summary.started_us < from_us {
            continue;
        }
        if let Some(refused) = &summary.refused {
            if refused.jti.as_deref().is_some_and(|j| jtis.contains(j)) {
                report.sessions_refused += 1;
                report.differ("refused", || {
                    format!(
                        "session {} was refused ({:?}): {}",
                        summary.id, refused.reason, refused.message
                    )
                });
            }
            continue;
        }
        let Some(opened) = &summary.opened else {
            continue;
        };
        let Some(owner) = opened
            .application_name
            .as_deref()
            .and_then(|n| parse_application_name(n, &ledger.run))
        else {
            continue;
        };
        let id = summary.id;
        let (agent, conn) = match owner {
            SessionOwner::Preflight => {
                report.sessions += 1;
                (None, None)
            }
            SessionOwner::Agent {
                leg: Leg::Direct, ..
            } => {
                report.differ("direct_in_store", || {
                    format!("session {id} is a direct connection, yet the gateway recorded it")
                });
                (None, None)
            }
            SessionOwner::Agent {
                leg: Leg::Gateway,
                agent,
                conn,
            } => {
                report.sessions += 1;
                // A connection the harness saw fail (a timeout in the
                // handshake) may still have been opened by the gateway;
                // one it never attempted may not.
                let attempted = ledger
                    .agents
                    .get(agent as usize)
                    .and_then(|a| a.conns.get(conn as usize))
                    .is_some();
                if !attempted {
                    report.differ("unexpected_session", || {
                        format!(
                            "session {id} claims agent {agent} connection {conn}, which the \
                             harness never attempted"
                        )
                    });
                }
                (Some(agent), Some(conn))
            }
        };
        match &summary.closed {
            Some(closed) => {
                *report
                    .close_reasons
                    .entry(format!("{:?}", closed.reason))
                    .or_default() += 1;
            }
            None => report.differ("not_closed", || {
                format!("session {id} has no Closed event (the gateway was cut off?)")
            }),
        }
        // The last extended-protocol verdict since the last statement: a
        // Statement after a denial is the Bind of the denied Parse.
        let mut pending: Option<Decision> = None;
        for event in reader.events(id) {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    report.differ("unreadable", || format!("session {id}: {e}"));
                    continue;
                }
            };
            match &event.body {
                Body::Statement(statement) => {
                    let after = pending.take();
                    if statement.protocol == StatementProtocol::Extended
                        && after == Some(Decision::Deny)
                    {
                        report.differ("statement_after_denial", || {
                            format!(
                                "session {id} #{}: a Statement was recorded at the Bind of a \
                                 denied Parse, a statement that never ran ({})",
                                event.seq,
                                parse_tag(&statement.text).map_or("untagged".to_owned(), |t| {
                                    format!("agent {} statement {}", t.agent, t.seq)
                                })
                            )
                        });
                        continue;
                    }
                    let Some(tag) = parse_tag(&statement.text) else {
                        report.untagged_statements += 1;
                        continue;
                    };
                    if tag.run != ledger.run {
                        report.differ("foreign_statement", || {
                            format!(
                                "session {id} #{}: a statement of run {}",
                                event.seq, tag.run
                            )
                        });
                        continue;
                    }
                    report.statements_recorded += 1;
                    if tag.leg == Leg::Direct {
                        report.differ("direct_in_store", || {
                            format!("session {id} #{}: a direct-leg statement", event.seq)
                        });
                        continue;
                    }
                    if (Some(tag.agent), Some(tag.conn)) != (agent, conn) {
                        report.differ("wrong_session", || {
                            format!(
                                "session {id} #{}: statement of agent {} connection {} in a \
                                 session of {}",
                                event.seq,
                                tag.agent,
                                tag.conn,
                                match (agent, conn) {
                                    (Some(a), Some(c)) => format!("agent {a} connection {c}"),
                                    _ => "no agent".to_owned(),
                                }
                            )
                        });
                    }
                    if is_denied(ledger, tag.agent, tag.seq) {
                        report.differ("denied_as_statement", || {
                            format!(
                                "session {id} #{}: agent {} statement {}, which the plan \
                                 denies, is recorded as a statement",
                                event.seq, tag.agent, tag.seq
                            )
                        });
                        continue;
                    }
                    let slot = seen
                        .get_mut(tag.agent as usize)
                        .and_then(|s| s.get_mut(usize::try_from(tag.seq).ok()?));
                    match slot {
                        Some(n) => *n = n.saturating_add(1),
                        None => report.differ("unexpected_statement", || {
                            format!(
                                "session {id} #{}: agent {} statement {} was never sent",
                                event.seq, tag.agent, tag.seq
                            )
                        }),
                    }
                }
                Body::Verdict(verdict) => {
                    if verdict.protocol == StatementProtocol::Extended {
                        pending = Some(verdict.decision);
                    }
                    let Some(tag) = parse_tag(&verdict.text).filter(|t| t.run == ledger.run) else {
                        continue;
                    };
                    if tag.leg == Leg::Direct {
                        report.differ("direct_in_store", || {
                            format!(
                                "session {id} #{}: a direct-leg statement's verdict",
                                event.seq
                            )
                        });
                        continue;
                    }
                    let denied = is_denied(ledger, tag.agent, tag.seq);
                    match (verdict.decision, denied) {
                        (Decision::Deny, true) => {
                            report.denials_recorded += 1;
                            if (Some(tag.agent), Some(tag.conn)) != (agent, conn) {
                                report.differ("wrong_session", || {
                                    format!(
                                        "session {id} #{}: the denial of agent {} connection {} \
                                         statement {} is in another session",
                                        event.seq, tag.agent, tag.conn, tag.seq
                                    )
                                });
                            }
                            if let Some(n) = denials
                                .get_mut(tag.agent as usize)
                                .and_then(|s| s.get_mut(usize::try_from(tag.seq).ok()?))
                            {
                                *n = n.saturating_add(1);
                            }
                        }
                        (Decision::Deny, false) => report.differ("unexpected_denial", || {
                            format!(
                                "session {id} #{}: agent {} statement {} was denied, yet it is \
                                 not the denied workload's: {}",
                                event.seq, tag.agent, tag.seq, verdict.reason
                            )
                        }),
                        (decision, true) => report.differ("denied_allowed", || {
                            format!(
                                "session {id} #{}: agent {} statement {}, which the plan \
                                 denies, has the verdict {decision:?}",
                                event.seq, tag.agent, tag.seq
                            )
                        }),
                        (_, false) => {}
                    }
                }
                Body::Masked(_) => report.masked_events += 1,
                _ => {}
            }
        }
        let chain = gatehouse_replay::verify::verify_session(reader, id, None)
            .with_context(|| format!("cannot verify session {id}"))?;
        report.chain_events += chain.events;
        for brk in chain.breaks {
            report.chain_breaks += 1;
            report.differ("chain", || brk.to_string());
        }
    }
    for (agent, (counts, sent)) in seen
        .iter()
        .zip(ledger.agents.iter().map(|a| &a.statements))
        .enumerate()
    {
        let denied = denials.get(agent).map_or(&[][..], Vec::as_slice);
        for (seq, (&n, &s)) in counts.iter().zip(sent).enumerate() {
            if is_denied(ledger, agent as u32, seq as u64) {
                match (s, denied.get(seq).copied().unwrap_or(0)) {
                    (Sent::Answered, 0) => report.differ("denial_missing", || {
                        format!(
                            "agent {agent} statement {seq} was denied but no denial of it is \
                             in the store"
                        )
                    }),
                    (_, d) if d > 1 => report.differ("denial_duplicated", || {
                        format!("agent {agent} statement {seq} is denied in the store {d} times")
                    }),
                    _ => {}
                }
                continue;
            }
            match (s, n) {
                (Sent::Answered, 0) => report.differ("missing", || {
                    format!("agent {agent} statement {seq} was answered but is not in the store")
                }),
                (_, n) if n > 1 => report.differ("duplicated", || {
                    format!("agent {agent} statement {seq} is in the store {n} times")
                }),
                _ => {}
            }
        }
    }
    let recorded = report.sessions;
    let (lo, hi) = (report.connections_opened, report.connections_attempted);
    if !(lo..=hi).contains(&recorded) {
        report.differ("sessions", || {
            format!(
                "the store holds {recorded} sessions of this run; the harness opened {lo} \
                 connections (of {hi} attempts)"
            )
        });
    }
    let masked = report.masked_answered;
    if masked > 0 && report.masked_events == 0 {
        report.differ("masked", || {
            format!(
                "{masked} masked-workload statements were answered but no Masked event was \
                 recorded: the gateway's config masks nothing that --masked-sql selects"
            )
        });
    }
    report.passed = report.differences.is_empty();
    Ok(report)
}

/// Whether agent `agent`'s statement `seq` is the denied workload's.
fn is_denied(ledger: &Ledger, agent: u32, seq: u64) -> bool {
    ledger
        .agents
        .get(agent as usize)
        .is_some_and(|a| a.is_denied(seq))
}

#[cfg(test)]
mod tests {
    use gatehouse_core::event::{
        CloseReason, Closed, Opened, Recorder, SessionId, Statement, StatementProtocol, Verdict,
    };
    use gatehouse_store::{Store, StoreOptions};

    use super::*;
    use crate::ledger::{AgentLedger, Conn};
    use crate::workload::{Tag, application_name};

    const RUN: &str = "cafe0001";
    const T0: i64 = 1_800_000_000_000_000;

    fn opened(app: &str) -> Body {
        Body::Opened(Opened {
            subject: "lt".into(),
            jti: "j0".into(),
            issuer: "gatehouse".into(),
            purpose: "test".into(),
            ticket: None,
            target: "orders".into(),
            client_user: "lt".into(),
            application_name: Some(app.into()),
            client_addr: "127.0.0.1:1".into(),
            tls: None,
            use_number: 1,
            max_uses: None,
            expires_at: 0,
        })
    }

    fn statement(text: String) -> Body {
        Body::Statement(Statement {
            protocol: StatementProtocol::Simple,
            text,
            statement_name: String::new(),
            portal: String::new(),
            params: Vec::new(),
        })
    }

    fn tag(seq: u64) -> Tag<'static> {
        Tag {
            run: RUN,
            leg: Leg::Gateway,
            agent: 0,
            conn: 0,
            seq,
        }
    }

    fn tagged(seq: u64) -> Body {
        statement(tag(seq).apply("SELECT 1"))
    }

    /// The Statement event of an extended-protocol statement (at Bind).
    fn bound(seq: u64) -> Body {
        Body::Statement(Statement {
            protocol: StatementProtocol::Extended,
            text: tag(seq).apply(crate::workload::POINT_SQL),
            statement_name: String::new(),
            portal: String::new(),
            params: Vec::new(),
        })
    }

    /// The Verdict event of a Parse of statement `seq`.
    fn parsed(seq: u64, decision: Decision) -> Body {
        Body::Verdict(Verdict {
            decision,
            protocol: StatementProtocol::Extended,
            statement_name: String::new(),
            text: tag(seq).apply(crate::workload::DENIED_SQL),
            kinds: vec!["delete".into()],
            accesses: vec!["delete on public.gatehouse_lt_items".into()],
            reason: String::new(),
            approval: String::new(),
            approver: String::new(),
        })
    }

    /// A store holding one session of agent 0's connection 0 with
    /// `bodies` between its Opened and Closed events.
    fn store_with(dir: &Path, bodies: Vec<Body>) -> Reader {
        let store = Store::open(dir, StoreOptions::default()).expect("open");
        let mut rec = Recorder::new(SessionId([0x42; 16]));
        let mut events = vec![rec.record(T0, opened(&application_name(RUN, Leg::Gateway, 0, 0)))];
        for (i, body) in bodies.into_iter().enumerate() {
            events.push(rec.record(T0 + 1 + i as i64, body));
        }
        events.push(rec.record(
            T0 + 1000,
            Body::Closed(Closed {
                reason: CloseReason::ClientTerminated,
                bytes_to_upstream: 0,
                bytes_to_client: 0,
                statements: 0,
                duration_us: 1000,
                seal: None,
            }),
        ));
        store.writer().append_blocking(events).expect("append");
        store.shutdown().expect("shutdown");
        Reader::open(dir).expect("reader")
    }

    fn ledger(statements: Vec<Sent>) -> Ledger {
        Ledger {
            run: RUN.into(),
            agents: vec![AgentLedger {
                statements,
                conns: vec![Conn::Opened],
                denied: Default::default(),
            }],
            preflight: false,
            jtis: vec!["j0".into()],
            started_us: T0,
            masked_answered: 0,
        }
    }

    /// A ledger of `statements`, those in `denied` the denied workload's.
    fn ledger_denying(statements: Vec<Sent>, denied: &[u64]) -> Ledger {
        let mut l = ledger(statements);
        l.agents[0].denied = denied.iter().copied().collect();
        l
    }

    #[test]
    fn denials_recorded_once_pass() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reader = store_with(
            dir.path(),
            vec![
                parsed(0, Decision::Allow),
                bound(0),
                parsed(1, Decision::Deny),
                parsed(2, Decision::Allow),
                bound(2),
            ],
        );
        let sent = vec![
            Sent::Answered,
            Sent::Answered,
            Sent::Answered,
            Sent::Uncertain,
        ];
        let report = check(&reader, &ledger_denying(sent, &[1, 3])).expect("check");
        assert!(report.passed, "{report:?}");
        assert_eq!(
            (
                report.statements_answered,
                report.statements_recorded,
                report.denied_answered,
                report.denied_uncertain,
                report.denials_recorded
            ),
            (2, 2, 1, 1, 1)
        );
    }

    #[test]
    fn denials_missing_doubled_or_allowed_are_differences() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reader = store_with(
            dir.path(),
            vec![
                // 0: denied twice.
                parsed(0, Decision::Deny),
                parsed(0, Decision::Deny),
                // 1: denied, and the Bind after it recorded with the text
                // of the unnamed statement before.
                parsed(1, Decision::Deny),
                bound(0),
                // 2: the plan let it through.
                parsed(2, Decision::Allow),
                bound(2),
                // 3: not the denied workload's, yet denied.
                parsed(3, Decision::Deny),
                // 4: never recorded.
            ],
        );
        let sent = vec![Sent::Answered; 5];
        let report = check(&reader, &ledger_denying(sent, &[0, 1, 2, 4])).expect("check");
        assert!(!report.passed);
        let kinds: Vec<(&str, u64)> = report.differences.iter().map(|(k, n)| (*k, *n)).collect();
        assert_eq!(
            kinds,
            [
                ("denial_duplicated", 1),
                ("denial_missing", 2),
                ("denied_allowed", 1),
                ("denied_as_statement", 1),
                ("missing", 1),
                ("statement_after_denial", 1),
                ("unexpected_denial", 1),
            ],
            "{report:?}"
        );
        assert_eq!(report.denials_recorded, 3);
    }

    #[test]
    fn a_complete_recording_passes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reader = store_with(dir.path(), vec![tagged(0), tagged(1)]);
        let report = check(&reader, &ledger(vec![Sent::Answered, Sent::Uncertain])).expect("check");
        assert!(report.passed, "{report:?}");
        assert_eq!(
            (
                report.sessions,
                report.statements_recorded,
                report.chain_events
            ),
            (1, 2, 4)
        );
        assert_eq!(report.close_reasons["ClientTerminated"], 1);
    }

    #[test]
    fn missing_duplicated_and_unknown_statements_are_differences() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reader = store_with(
            dir.path(),
            vec![
                tagged(0),
                tagged(1),
                tagged(1),
                statement("SELECT 'untagged'".into()),
                tagged(9),
            ],
        );
        let sent = vec![
            Sent::Answered,
            Sent::Answered,
            Sent::Uncertain,
            Sent::Answered,
        ];
        let report = check(&reader, &ledger(sent)).expect("check");
        assert!(!report.passed);
        assert_eq!(report.untagged_statements, 1);
        let kinds: Vec<(&str, u64)> = report.differences.iter().map(|(k, n)| (*k, *n)).collect();
        assert_eq!(
            kinds,
            [
                ("duplicated", 1),
                ("missing", 1),
                ("unexpected_statement", 1)
            ],
            "{report:?}"
        );
        assert!(
            report
                .examples
                .iter()
                .any(|e| e.contains("agent 0 statement 3")),
            "{:?}",
            report.examples
        );
    }

    #[test]
    fn a_session_the_harness_did_not_open_is_a_difference() {
        let dir = tempfile::tempdir().expect("temp dir");
        let reader = store_with(dir.path(), vec![tagged(0)]);
        let mut l = ledger(vec![Sent::Answered]);
        l.agents[0].conns = Vec::new();
        let report = check(&reader, &l).expect("check");
        assert!(
            report.differences.contains_key("unexpected_session"),
            "{report:?}"
        );
        assert!(report.differences.contains_key("sessions"), "{report:?}");
    }
}
