//! The plan on the wire: denials the target raises, the gateway's own
//! completions dropped, holds, limits.

use bytes::BytesMut;

use super::session::{Harness, query};
use super::with_scope;
use crate::event::{Body, Decision};
use crate::grant::{Limits, Rule, TargetScope};
use crate::pg::frame;
use crate::pg::{Action, ApprovalDecision, encode};

fn rule(ops: &[&str], relations: &[&str]) -> Rule {
    Rule {
        name: None,
        ops: ops.iter().map(|s| s.to_string()).collect(),
        relations: relations.iter().map(|s| s.to_string()).collect(),
        functions: Vec::new(),
        ..Rule::default()
    }
}

fn scope() -> TargetScope {
    TargetScope {
        allow: vec![rule(&["select"], &["public.invoices"])],
        approve: vec![rule(&["delete"], &["public.invoices"])],
        ..TargetScope::default()
    }
}

fn open(scope: TargetScope) -> Harness {
    let mut h = Harness::new(true);
    h.policy = Some(with_scope(scope));
    h.open();
    h.bodies.clear();
    h
}

/// The type bytes of the frames in `bytes`.
fn tags(bytes: &[u8]) -> Vec<u8> {
    frame::split(&bytes::Bytes::copy_from_slice(bytes))
        .map(|f| f.tag())
        .collect()
}

fn parse(name: &str, sql: &str) -> Vec<u8> {
    encode::frame(b'P', |b| {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
        b.extend_from_slice(&0i16.to_be_bytes());
    })
    .bytes()
    .to_vec()
}

fn simple(tag: u8, body: &[u8]) -> Vec<u8> {
    encode::frame(tag, |b| b.extend_from_slice(body))
        .bytes()
        .to_vec()
}

fn sync() -> Vec<u8> {
    simple(b'S', b"")
}

fn describe_statement(name: &str) -> Vec<u8> {
    simple(b'D', format!("S{name}\0").as_bytes())
}

fn bind_execute(statement: &str) -> Vec<u8> {
    let mut v = encode::frame(b'B', |b| {
        b.push(0);
        b.extend_from_slice(statement.as_bytes());
        b.push(0);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    })
    .bytes()
    .to_vec();
    v.extend(simple(b'E', b"\0\0\0\0\0"));
    v
}

fn error(code: &str) -> Vec<u8> {
    encode::error_response("ERROR", code, "raised", None)
        .bytes()
        .to_vec()
}

fn ready(status: u8) -> Vec<u8> {
    encode::ready_for_query(status).bytes().to_vec()
}

fn verdicts(h: &Harness) -> Vec<crate::event::Verdict> {
    h.bodies
        .iter()
        .filter_map(|b| match b {
            Body::Verdict(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn allowed_statements_pass_byte_for_byte() {
    let mut h = open(scope());
    let q = query("SELECT * FROM invoices");
    h.client(&q, 3);
    assert_eq!(h.to_upstream, q);
    let v = verdicts(&h);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].decision, Decision::Allow);
    assert_eq!(v[0].accesses, ["select on public.invoices"]);
}

#[test]
fn a_denied_query_is_raised_by_the_target() {
    let mut h = open(scope());
    h.client(&query("UPDATE invoices SET total = 0"), 1000);
    let sent = String::from_utf8_lossy(&h.to_upstream).into_owned();
    assert_eq!(tags(&h.to_upstream), b"Q");
    assert!(
        sent.contains("DO $gatehouse$BEGIN RAISE EXCEPTION USING ERRCODE = '42501'"),
        "{sent}"
    );
    assert!(
        sent.contains("does not allow update on public.invoices"),
        "{sent}"
    );
    assert!(
        !sent.contains("SET total"),
        "the statement never reaches the target"
    );
    let v = verdicts(&h);
    assert_eq!(v[0].decision, Decision::Deny);
    assert_eq!(v[0].text, "UPDATE invoices SET total = 0");
    // The target's answer reaches the client as it is.
    let mut answer = error("42501");
    answer.extend(ready(b'E'));
    h.upstream(&answer, 1000);
    assert_eq!(h.to_client, answer);
}

#[test]
fn a_denied_parse_fails_for_the_client_alone() {
    let mut h = open(scope());
    // Allowed batch, then a denied one, pipelined.
    let mut c = parse("s1", "SELECT id FROM invoices");
    c.extend(bind_execute("s1"));
    c.extend(sync());
    c.extend(parse("s2", "TRUNCATE invoices"));
    c.extend(describe_statement("s2"));
    c.extend(sync());
    h.client(&c, 7);
    assert_eq!(tags(&h.to_upstream), b"PBESPBEDS");
    // The target: the first batch, then our Parse/Bind completions, the
    // raised error, and the Sync's ReadyForQuery.
    let mut answer = Vec::new();
    for t in [b'1', b'2'] {
        answer.extend(simple(t, b""));
    }
    answer.extend(simple(b'C', b"SELECT 0\0"));
    answer.extend(ready(b'I'));
    answer.extend(simple(b'1', b""));
    answer.extend(simple(b'2', b""));
    answer.extend(error("42501"));
    answer.extend(ready(b'I'));
    h.upstream(&answer, 3);
    assert_eq!(tags(&h.to_client), b"12CZEZ");
    // The recorded client-bound frames are what the client got.
    let to_client: Vec<u8> = h
        .bodies
        .iter()
        .filter_map(|b| match b {
            Body::Frame(f) if f.dir == crate::event::Direction::ToClient => Some(f.bytes.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(to_client, h.to_client);
}

#[test]
fn an_error_before_the_denial_leaves_nothing_to_drop() {
    let mut h = open(scope());
    let mut c = parse("", "SELECT id FROM invoices");
    c.extend(parse("", "TRUNCATE invoices"));
    c.extend(sync());
    c.extend(parse("", "SELECT 1"));
    c.extend(sync());
    h.client(&c, 1000);
    // The first Parse fails at the target: it skips ours too.
    let mut answer = error("42P01");
    answer.extend(ready(b'I'));
    answer.extend(simple(b'1', b""));
    answer.extend(ready(b'I'));
    h.upstream(&answer, 1000);
    assert_eq!(tags(&h.to_client), b"EZ1Z");
}

#[test]
fn a_hold_waits_then_goes_on_with_the_decision() {
    for approved in [true, false] {
        let mut h = open(scope());
        let held = query("DELETE FROM invoices WHERE id = 1");
        let mut buf = BytesMut::from(&held[..]);
        buf.extend_from_slice(&query("SELECT * FROM invoices"));
        h.s.handle_client_data(&mut buf, 5);
        h.drain();
        assert!(h.to_upstream.is_empty(), "nothing forwarded while held");
        let id = match h.actions.pop() {
            Some(Action::RequestApproval {
                request,
                wait: true,
            }) => {
                assert_eq!(request.needs, ["delete on public.invoices"]);
                assert_eq!(request.statement, "DELETE FROM invoices WHERE id = 1");
                request.id
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(h.s.held_approval(), Some(id.as_str()));
        assert!(!h.s.wants_client_data());
        // More input changes nothing while held.
        h.s.handle_client_data(&mut buf, 6);
        h.drain();
        assert!(h.to_upstream.is_empty());
        h.s.approval_decided(
            &id,
            ApprovalDecision {
                approved,
                approver: "alice".into(),
                reason: "checked".into(),
            },
            7,
        );
        h.s.handle_client_data(&mut buf, 7);
        h.drain();
        assert!(buf.is_empty());
        let sent = String::from_utf8_lossy(&h.to_upstream).into_owned();
        if approved {
            let mut expected = held.clone();
            expected.extend(query("SELECT * FROM invoices"));
            assert_eq!(h.to_upstream, expected);
        } else {
            assert!(
                sent.contains(&format!("approval {id} was denied by alice: checked")),
                "{sent}"
            );
            assert!(sent.ends_with("SELECT * FROM invoices\0"), "{sent}");
        }
        let v = verdicts(&h);
        assert_eq!(v[0].decision, Decision::Hold);
        let want = if approved {
            Decision::Allow
        } else {
            Decision::Deny
        };
        assert_eq!(v[1].decision, want);
        assert_eq!(
            (v[1].approval.as_str(), v[1].approver.as_str()),
            (id.as_str(), "alice")
        );
    }
}

#[test]
fn the_statement_limit_refuses_the_next() {
    let mut s = scope();
    s.limits = Limits {
        statements: Some(2),
        ..Limits::default()
    };
    let mut h = open(s);
    h.client(&query("SELECT 1; SELECT 2"), 1000);
    h.client(&query("SELECT 3"), 1000);
    let sent = String::from_utf8_lossy(&h.to_upstream).into_owned();
    assert!(sent.contains("ERRCODE = '54000'"), "{sent}");
}

/// A rate that lets `allowance` statements through, then refuses.
#[derive(Debug)]
struct Allowance(std::sync::Mutex<u64>);

impl crate::pg::StatementRate for Allowance {
    fn take(&self, jti: &str, n: u64, _now_us: i64) -> Result<(), u64> {
        assert_eq!(jti, "j1");
        let mut left = self.0.lock().unwrap();
        if *left < n {
            return Err(5);
        }
        *left -= n;
        Ok(())
    }
}

#[test]
fn a_statement_over_the_rate_is_raised_by_the_target_and_the_session_goes_on() {
    let mut h = Harness::new(true);
    h.policy = Some(with_scope(scope()));
    h.s.set_statement_rate(std::sync::Arc::new(Allowance(std::sync::Mutex::new(1))));
    h.open();
    h.bodies.clear();
    let q = query("SELECT * FROM invoices");
    h.client(&q, 10);
    assert_eq!(h.to_upstream, q, "within the rate: forwarded as it is");
    h.to_upstream.clear();
    h.client(&query("SELECT id FROM invoices"), 20);
    let sent = String::from_utf8_lossy(&h.to_upstream).into_owned();
    assert!(sent.contains("ERRCODE = '53400'"), "{sent}");
    assert!(!sent.contains("SELECT id"), "never reaches the target");
    h.to_upstream.clear();
    // Parse over the rate: replaced by the gateway's own batch.
    let mut c = parse("s1", "SELECT id FROM invoices");
    c.extend(sync());
    h.client(&c, 30);
    assert_eq!(tags(&h.to_upstream), b"PBES");
    h.to_upstream.clear();
    // Ending a block is never refused for the rate.
    let q = query("ROLLBACK");
    h.client(&q, 40);
    assert_eq!(h.to_upstream, q);
    let v = verdicts(&h);
    assert_eq!(v.len(), 4);
    assert_eq!(v[3].decision, Decision::Allow);
    let v = &v[..3];
    assert_eq!(v[0].decision, Decision::Allow);
    for denied in &v[1..] {
        assert_eq!(denied.decision, Decision::Deny);
        assert!(
            denied.reason.contains("statements_per_second_per_grant"),
            "{}",
            denied.reason
        );
    }
}

#[test]
fn the_row_limit_ends_the_session_before_the_row_past_it() {
    let mut s = scope();
    s.limits = Limits {
        rows: Some(1),
        ..Limits::default()
    };
    let mut h = open(s);
    h.client(&query("SELECT id FROM invoices"), 1000);
    let mut answer = Vec::new();
    for id in ["1", "2"] {
        answer.extend(
            encode::frame(b'D', |b| {
                b.extend_from_slice(&1i16.to_be_bytes());
                b.extend_from_slice(&1i32.to_be_bytes());
                b.extend_from_slice(id.as_bytes());
            })
            .bytes(),
        );
    }
    h.upstream(&answer, 1000);
    assert_eq!(tags(&h.to_client), b"DE");
    assert!(h.s.is_closed());
}

#[test]
fn a_bind_after_a_denied_parse_records_no_statement() {
    let mut h = open(scope());
    // The unnamed statement was an allowed one before.
    let mut c = parse("", "SELECT id FROM invoices");
    c.extend(sync());
    c.extend(parse("", "TRUNCATE invoices"));
    c.extend(bind_execute(""));
    c.extend(sync());
    h.client(&c, 1000);
    let statements = h
        .bodies
        .iter()
        .filter(|b| matches!(b, Body::Statement(_)))
        .count();
    assert_eq!(statements, 0, "{:?}", h.bodies);
}
