//! `gatehouse-audit sessions|statements|masked`: the questions auditors
//! ask, answered from a real gateway's store — who touched a relation,
//! what was denied, which sessions were returned masked values — as a
//! table, JSON lines and CSV.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gatehouse_tests::command::{render, run};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};

const MASKING: &str = r#"
[[columns]]
pattern = "invoices.customer"
strategy = "redact"
"#;

fn audit(store: &Path, args: &[&str]) -> String {
    let out = run(
        Command::new(Gateway::binary().with_file_name("gatehouse-audit"))
            .args(args)
            .arg("--store")
            .arg(store),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "audit {args:?}\n{}", render(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_questions_are_answered_from_the_store() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions::default().with_masking("orders", MASKING),
    );
    let writer = gw.grant(&GrantArgs {
        sub: "agent-writer".to_owned(),
        purpose: "month-end corrections".to_owned(),
        ticket: Some("FIN-42".to_owned()),
        allow: vec![
            "select:public.invoices".to_owned(),
            "update:public.invoices".to_owned(),
        ],
        ..GrantArgs::default()
    });
    let reader = gw.grant(&GrantArgs {
        sub: "agent-reader".to_owned(),
        purpose: "weekly report".to_owned(),
        allow: vec!["select:public.invoices".to_owned()],
        ..GrantArgs::default()
    });
    {
        let (c, _conn) = gw.connect(&writer).await;
        c.simple_query("SELECT id, customer FROM invoices ORDER BY id")
            .await
            .expect("select");
        c.execute("UPDATE invoices SET total = total WHERE id = $1", &[&1i32])
            .await
            .expect("update");
        c.simple_query("DELETE FROM invoices")
            .await
            .expect_err("denied");
    }
    {
        let (c, _conn) = gw.connect(&reader).await;
        c.simple_query("SELECT count(*) FROM invoices")
            .await
            .expect("select");
        c.simple_query("UPDATE invoices SET total = 0")
            .await
            .expect_err("denied");
    }
    gw.stop();
    let store = gw.store_dir();

    // Sessions by subject, purpose and ticket.
    let rows = json_lines(&audit(
        &store,
        &["sessions", "--subject", "agent-writer", "--format", "json"],
    ));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["ticket"], "FIN-42");
    let rows = json_lines(&audit(
        &store,
        &["sessions", "--purpose", "WEEKLY", "--format", "json"],
    ));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["subject"], "agent-reader");
    let rows = json_lines(&audit(
        &store,
        &["sessions", "--since", "1h", "--format", "json"],
    ));
    assert_eq!(rows.len(), 2);
    let rows = json_lines(&audit(
        &store,
        &[
            "sessions",
            "--until",
            "2000-01-01T00:00:00Z",
            "--format",
            "json",
        ],
    ));
    assert!(rows.is_empty());

    // Who updated public.invoices: the allowed update, not the denied one.
    let rows = json_lines(&audit(
        &store,
        &[
            "statements",
            "--relation",
            "invoices",
            "--kind",
            "update",
            "--decision",
            "allow",
            "--format",
            "json",
        ],
    ));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["subject"], "agent-writer");
    assert_eq!(
        rows[0]["text"],
        "UPDATE invoices SET total = total WHERE id = $1"
    );

    // What was denied, with why.
    let rows = json_lines(&audit(
        &store,
        &["statements", "--decision", "deny", "--format", "json"],
    ));
    let texts: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        ["DELETE FROM invoices", "UPDATE invoices SET total = 0"]
    );
    assert!(
        rows[1]["reason"]
            .as_str()
            .unwrap()
            .contains("does not allow update on public.invoices")
    );

    // Allowed simple queries carry their text too.
    let rows = json_lines(&audit(
        &store,
        &["statements", "--text", "count(*)", "--format", "json"],
    ));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["decision"], "allow");

    // Which sessions were returned masked customer names.
    let rows = json_lines(&audit(
        &store,
        &["masked", "--column", "customer", "--format", "json"],
    ));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["subject"], "agent-writer");
    assert_eq!(rows[0]["count"], 3);

    // CSV with a header; a table for people.
    let csv = audit(
        &store,
        &["statements", "--decision", "deny", "--format", "csv"],
    );
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("at,session,subject,verdict,kind,touches,sql,reason,approver")
    );
    assert_eq!(lines.count(), 2);
    let table = audit(&store, &["statements", "--subject", "agent-reader"]);
    assert!(table.starts_with("at "), "{table}");
    assert!(table.contains("deny"), "{table}");
}
