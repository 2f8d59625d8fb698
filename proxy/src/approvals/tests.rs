use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::time::{Duration, Instant};

use gatehouse_core::pg::ApprovedStatements as _;
use tokio::sync::oneshot::error::TryRecvError;

use super::*;

fn registry(mode: ApprovalMode) -> ApprovalRegistry {
    ApprovalRegistry::new(ApprovalSettings {
        mode,
        ..ApprovalSettings::default()
    })
}

fn req(id: &str, sql: &str) -> PendingApproval {
    PendingApproval {
        id: id.to_owned(),
        session: "0190-session".to_owned(),
        jti: "jti-1".to_owned(),
        subject: "agent-7".to_owned(),
        target: "orders".to_owned(),
        purpose: "cleanup".to_owned(),
        ticket: Some("OPS-1".to_owned()),
        statement: sql.to_owned(),
        needs: vec!["delete on public.invoices".to_owned()],
        requested_at_us: 1_700_000_000_000_000,
    }
}

fn by(approver: &str, approved: bool, reason: &str) -> Decision {
    Decision {
        approved,
        approver: approver.to_owned(),
        reason: reason.to_owned(),
    }
}

#[test]
fn defaults() {
    let r = ApprovalRegistry::new(ApprovalSettings::default());
    assert_eq!(r.timeout(), Duration::from_secs(300));
    assert_eq!(r.mode(), ApprovalMode::Wait);
    assert!(r.pending().is_empty());
    assert!(format!("{r:?}").contains("pending: 0"));
}

#[test]
fn request_then_approve_reaches_the_waiting_session() {
    let r = registry(ApprovalMode::Wait);
    let mut rx = r.request(req("a1", "delete from invoices"));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(r.pending(), vec![req("a1", "delete from invoices")]);

    let decided = r.decide("a1", by("alice", true, "ok")).unwrap();
    assert_eq!(decided.id, "a1");
    assert_eq!(rx.try_recv(), Ok(by("alice", true, "ok")));
    assert!(r.pending().is_empty(), "decided requests leave the list");

    match r.decide("a1", by("bob", false, "no")) {
        Err(DecideError::AlreadyDecided { id, decision }) => {
            assert_eq!(id, "a1");
            assert_eq!(decision, by("alice", true, "ok"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.decide("nope", by("bob", true, "")),
        Err(DecideError::Unknown("nope".to_owned()))
    );
}

#[test]
fn deny_reaches_the_session() {
    let r = registry(ApprovalMode::Wait);
    let mut rx = r.request(req("a1", "delete from invoices"));
    r.decide("a1", by("alice", false, "not in prod")).unwrap();
    assert_eq!(rx.try_recv(), Ok(by("alice", false, "not in prod")));
    // Reject-mode bookkeeping stays out of wait mode.
    assert_eq!(r.take_approved("jti-1", "delete from invoices"), None);
}

#[test]
fn withdrawn_requests_leave_the_list_and_cannot_be_decided() {
    let r = registry(ApprovalMode::Wait);
    let _rx = r.request(req("a1", "delete from invoices"));
    r.withdraw("a1");
    r.withdraw("a1");
    r.withdraw("never-existed");
    assert!(r.pending().is_empty());
    assert_eq!(
        r.decide("a1", by("alice", true, "")),
        Err(DecideError::Withdrawn("a1".to_owned()))
    );
}

#[test]
fn a_session_gone_without_withdrawing_is_pruned() {
    let r = registry(ApprovalMode::Wait);
    drop(r.request(req("a1", "x")));
    let _keep = r.request(req("a2", "y"));
    assert_eq!(
        r.decide("a1", by("alice", true, "")),
        Err(DecideError::Withdrawn("a1".into()))
    );
    drop(r.request(req("a3", "z")));
    let ids: Vec<String> = r.pending().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["a2"]);
}

#[test]
fn pending_is_oldest_first() {
    let r = registry(ApprovalMode::Wait);
    let ids = ["zz", "aa", "mm", "bb"];
    let _rxs: Vec<_> = ids.iter().map(|id| r.request(req(id, "x"))).collect();
    let listed: Vec<String> = r.pending().into_iter().map(|p| p.id).collect();
    assert_eq!(listed, ids);
}

#[test]
fn duplicate_ids_are_denied_at_once() {
    let r = registry(ApprovalMode::Wait);
    let _first = r.request(req("a1", "x"));
    let mut second = r.request(req("a1", "y"));
    let d = second.try_recv().unwrap();
    assert!(!d.approved);
    assert_eq!(d.approver, GATEWAY_APPROVER);
    assert_eq!(d.reason, "duplicate approval id");
    assert_eq!(r.pending()[0].statement, "x");
}

#[test]
fn reject_mode_keeps_an_approval_for_one_retry() {
    let r = registry(ApprovalMode::Reject);
    // Nobody waits in reject mode: the receiver is dropped at once.
    drop(r.request(req("a1", "delete from invoices where id = 1")));
    assert_eq!(r.pending().len(), 1, "still listed for approvers");
    assert_eq!(
        r.take_approved("jti-1", "delete from invoices where id = 1"),
        None
    );

    r.decide("a1", by("alice", true, "")).unwrap();
    assert!(r.pending().is_empty());
    // Only the same grant and the exact text.
    assert_eq!(
        r.take_approved("jti-2", "delete from invoices where id = 1"),
        None
    );
    assert_eq!(
        r.take_approved("jti-1", "delete from invoices where id = 2"),
        None
    );
    assert_eq!(
        r.take_approved("jti-1", "delete from invoices where id = 1 "),
        None
    );
    assert_eq!(
        r.take_approved("jti-1", "delete from invoices where id = 1"),
        Some("a1".to_owned())
    );
    assert_eq!(
        r.take_approved("jti-1", "delete from invoices where id = 1"),
        None,
        "once"
    );
}

#[test]
fn reject_mode_denials_keep_nothing_and_approvals_expire() {
    let r = registry(ApprovalMode::Reject);
    drop(r.request(req("a1", "x")));
    r.decide("a1", by("alice", false, "no")).unwrap();
    assert_eq!(r.take_approved("jti-1", "x"), None);

    let t0 = Instant::now();
    drop(r.request_at(req("a2", "x"), t0));
    drop(r.request_at(req("a3", "x"), t0));
    r.decide_at("a2", by("alice", true, ""), t0).unwrap();
    r.decide_at("a3", by("alice", true, ""), t0 + Duration::from_secs(1800))
        .unwrap();
    // a2 has expired an hour after its approval; a3 has not.
    let later = t0 + APPROVAL_TTL + Duration::from_secs(1);
    assert_eq!(
        r.take_approved_at("jti-1", "x", later),
        Some("a3".to_owned())
    );
    assert_eq!(r.take_approved_at("jti-1", "x", later), None);
    assert_eq!(r.lock().approved_count, 0);
}

#[test]
fn reject_mode_requests_expire_after_an_hour() {
    let r = registry(ApprovalMode::Reject);
    let t0 = Instant::now();
    drop(r.request_at(req("a1", "x"), t0));
    assert_eq!(r.pending_at(t0 + Duration::from_secs(60)).len(), 1);
    assert!(r.pending_at(t0 + APPROVAL_TTL).is_empty());
    assert_eq!(
        r.decide("a1", by("alice", true, "")),
        Err(DecideError::Withdrawn("a1".to_owned()))
    );
}

#[test]
fn the_registry_is_bounded() {
    let r = registry(ApprovalMode::Wait);
    let _rxs: Vec<_> = (0..MAX_PENDING)
        .map(|n| r.request(req(&format!("a{n}"), "x")))
        .collect();
    let mut over = r.request(req("one-too-many", "x"));
    assert_eq!(
        over.try_recv(),
        Ok(by(GATEWAY_APPROVER, false, "too many approvals pending"))
    );
    assert_eq!(r.pending().len(), MAX_PENDING);
    r.withdraw("a0");
    let mut fits = r.request(req("fits-again", "x"));
    assert_eq!(fits.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn kept_approvals_are_bounded() {
    let r = registry(ApprovalMode::Reject);
    let now = Instant::now();
    for n in 0..=MAX_APPROVED {
        let id = format!("a{n}");
        drop(r.request_at(req(&id, &format!("q{n}")), now));
        r.decide_at(&id, by("alice", true, ""), now).unwrap();
    }
    assert_eq!(r.lock().approved_count, MAX_APPROVED);
    assert_eq!(
        r.take_approved_at("jti-1", &format!("q{MAX_APPROVED}"), now),
        None
    );
    // Once the old ones expire, there is room again.
    let later = now + APPROVAL_TTL;
    drop(r.request_at(req("b", "qb"), later));
    r.decide_at("b", by("alice", true, ""), later).unwrap();
    assert_eq!(r.lock().approved_count, 1);
    assert_eq!(
        r.take_approved_at("jti-1", "qb", later),
        Some("b".to_owned())
    );
}

#[test]
fn subscribers_see_requests_decisions_and_withdrawals_in_order() {
    let r = registry(ApprovalMode::Wait);
    let mut events = r.subscribe();
    let _a = r.request(req("a1", "x"));
    let _b = r.request(req("a2", "y"));
    r.decide("a1", by("alice", true, "fine")).unwrap();
    r.withdraw("a2");
    assert_eq!(
        events.try_recv().unwrap(),
        ApprovalEvent::Requested {
            approval: req("a1", "x")
        }
    );
    assert_eq!(
        events.try_recv().unwrap(),
        ApprovalEvent::Requested {
            approval: req("a2", "y")
        }
    );
    let decided = events.try_recv().unwrap();
    assert_eq!(
        decided,
        ApprovalEvent::Decided {
            approval: req("a1", "x"),
            decision: by("alice", true, "fine"),
        }
    );
    assert_eq!(
        events.try_recv().unwrap(),
        ApprovalEvent::Withdrawn {
            id: "a2".to_owned()
        }
    );
    assert!(events.try_recv().is_err());
    let json = serde_json::to_value(&decided).unwrap();
    assert_eq!(json["event"], "decided");
    assert_eq!(json["approval"]["id"], "a1");
    assert_eq!(json["decision"]["approver"], "alice");
}

/// Accepts one HTTP request on `listener`, answers `status`, and returns
/// the request's head and body.
fn serve_one(listener: &std::net::TcpListener, status: &str) -> (String, String) {
    let (tcp, _) = listener.accept().unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(tcp.try_clone().unwrap());
    let mut head = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let mut tcp = tcp;
    write!(
        tcp,
        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn the_webhook_receives_each_new_request_as_json() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = ApprovalRegistry::new(ApprovalSettings {
        webhook_url: Some(
            format!("http://127.0.0.1:{port}/hooks/approvals")
                .parse()
                .unwrap(),
        ),
        ..ApprovalSettings::default()
    });
    let started = Instant::now();
    let _rx = r.request(req("a1", "delete from invoices"));
    let _rx2 = r.request(req("a2", "delete from orders"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "request() never waits"
    );

    let (head, body) = serve_one(&listener, "204 No Content");
    assert!(
        head.starts_with("POST /hooks/approvals HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let posted: PendingApproval = serde_json::from_str(&body).unwrap();
    // Posts run concurrently, so either may come first.
    assert!(
        posted == req("a1", "delete from invoices") || posted.id == "a2",
        "{body}"
    );
    // A failing endpoint is logged, not fatal.
    let (_, body) = serve_one(&listener, "500 Internal Server Error");
    assert!(body.contains("\"id\":\"a"), "{body}");
}

#[tokio::test]
async fn webhook_failures_are_errors_not_panics() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url: hyper::Uri = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(listener);
    let err = webhook::post(&url, &req("a1", "x")).await.unwrap_err();
    assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url: hyper::Uri = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let server = std::thread::spawn(move || serve_one(&listener, "500 Internal Server Error"));
    let err = webhook::post(&url, &req("a1", "x")).await.unwrap_err();
    assert!(err.to_string().contains("500"), "{err:#}");
    server.join().unwrap();
}
