//! The `gatehouse-replay` binary end to end: list, show, and its errors.

mod common;

use std::path::Path;

use common::*;
use gatehouse_core::event::CloseReason;
use gatehouse_store::{Store, StoreOptions};

/// Two sessions in the same millisecond (ids share a long prefix), one
/// still open (cut), and a refused one.
fn store(dir: &Path) {
    let mut a = SessionBuilder::new(sid(T0_MS, 1));
    a.opened().greeting();
    a.wait(2_000).up(&[query("SELECT 1")]);
    a.wait(1_000).down(&[
        row_description(&[("?column?", INT4, 0)]),
        data_row(&[Some(b"1")]),
        complete("SELECT 1"),
        ready(),
    ]);
    a.wait(1_201_000).closed(CloseReason::ClientTerminated);

    let mut b = SessionBuilder::new(sid(T0_MS, 2));
    b.opened().greeting();
    b.wait(5_000).up(&[query("SELECT pg_sleep(10)")]);

    let mut c = SessionBuilder::new(sid(T0_MS + 60_000, 3));
    c.refused().closed(CloseReason::Refused);
    write_store(dir, &[&a, &b, &c]);
}

#[test]
fn list_as_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let (code, out, err) = replay(&["list"], dir.path());
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("SESSION"), "{out}");
    for (line, expected) in lines[1..].iter().zip([
        [
            "agent:reconciler",
            "orders",
            "reconcile invoices, OPS-1234",
            "2026-11-25T18:40:01.123Z",
            "1.204s",
            "closed: client terminated",
        ],
        [
            "agent:reconciler",
            "orders",
            "reconcile invoices",
            "2026-11-25T18:40:01.123Z",
            "0.005s",
            "cut (no close recorded)",
        ],
        [
            "agent:late",
            "orders",
            "-",
            "2026-11-25T18:41:01.123Z",
            "0.000s",
            "refused: grant expired",
        ],
    ]) {
        for field in expected {
            assert!(line.contains(field), "{field:?} not in {line:?}");
        }
    }
    assert_eq!(lines[4], "(3 sessions)");

    let (code, out, _) = replay(&["list", "--json"], dir.path());
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["id"], sid(T0_MS, 1).to_string());
    assert_eq!(v[0]["statements"], 0, "no Statement events were recorded");
    assert_eq!(v[1]["status"]["state"], "cut");
    assert_eq!(v[2]["status"]["reason"], "expired");
    assert!(v[0]["bytes_to_client"].as_u64().unwrap() > 0);
}

#[test]
fn show_by_prefix_and_its_errors() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let a = sid(T0_MS, 1).to_string();

    let (code, out, err) = replay(&["show", &a], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("session {a}  agent:reconciler → orders")),
        "{out}"
    );
    assert!(out.contains("[+0.002s] SELECT 1\n"), "{out}");
    assert!(out.contains("(1 row)   SELECT 1   1.0 ms"), "{out}");

    // The cut session: its last statement never completed.
    let (code, out, _) = replay(&["show", &sid(T0_MS, 2).to_string()], dir.path());
    assert_eq!(code, 0);
    assert!(out.contains("cut (no close recorded)"), "{out}");
    assert!(
        out.contains("SELECT pg_sleep(10)\n          (no response recorded)"),
        "{out}"
    );

    let (code, out, _) = replay(&["show", &a[..8], "--json"], dir.path());
    assert_eq!(code, 1, "{out}");
    let (_, _, err) = replay(&["show", &a[..8]], dir.path());
    assert!(err.contains("is ambiguous: it matches 2 sessions"), "{err}");

    let (code, _, err) = replay(&["show", "ffff"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("no session id starts with \"ffff\""), "{err}");

    let (code, _, err) = replay(&["show", "not-hex"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("not a session id prefix"), "{err}");

    let (code, out, _) = replay(&["show", &a[..13], "--json"], dir.path());
    // 13 characters still match both (they share the millisecond).
    assert_eq!(code, 1, "{out}");
    let unique = sid(T0_MS + 60_000, 3).to_string();
    let (code, out, _) = replay(&["show", &unique[..11], "--json"], dir.path());
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["header"]["status"]["state"], "refused");
}

#[test]
fn missing_and_locked_stores_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = replay(&["list"], &dir.path().join("nope"));
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");

    let (code, _, err) = replay(&["list"], dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("holds no Gatehouse store"), "{err}");

    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let (code, _, err) = replay(&["list"], dir.path());
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "is in use by a running gateway; stop it, read the gateway with --gateway URL, \
             or point at an archive"
        ),
        "{err}"
    );
    store.shutdown().unwrap();
    let (code, out, err) = replay(&["list"], dir.path());
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "SESSION  SUBJECT  TARGET  PURPOSE  STARTED  DURATION  STMTS  BYTES UP/DOWN  STATUS\n(0 sessions)\n"
        ),
        "{err}"
    );
}
