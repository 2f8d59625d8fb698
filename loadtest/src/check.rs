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
//! Chains are verified with `gatehouse_replay::verify` (the same check as
//! `gatehouse-audit verify`). Denials: the harness has no denied workload
//! yet (the gateway enforces no per-statement policy), so there are none to
//! check; the report says so.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use gatehouse_core::event::Body;
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
    pub statements_answered: u64,
    /// Statements sent without an answer: each at most once.
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
    /// Denials are not checked yet.
    pub denials: &'static str,
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
        denials: "not checked: the harness has no denied workload yet",
        ..CheckReport::default()
    };
    let jtis: HashSet<&str> = ledger.jtis.iter().map(String::as_str).collect();
    // Times each statement was recorded, by agent and sequence number.
    let mut seen: Vec<Vec<u8>> = ledger
        .agents
        .iter()
        .map(|a| vec![0; a.statements.len()])
        .collect();
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
        for (seq, (&n, &s)) in counts.iter().zip(sent).enumerate() {
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

#[cfg(test)]
mod tests {
    use gatehouse_core::event::{
        CloseReason, Closed, Opened, Recorder, SessionId, Statement, StatementProtocol,
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

    fn tagged(seq: u64) -> Body {
        let tag = Tag {
            run: RUN,
            leg: Leg::Gateway,
            agent: 0,
            conn: 0,
            seq,
        };
        statement(tag.apply("SELECT 1"))
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
            }],
            preflight: false,
            jtis: vec!["j0".into()],
            started_us: T0,
            masked_answered: 0,
        }
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
