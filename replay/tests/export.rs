//! `gatehouse-replay export` and `play` end to end, on a store the real
//! `Recorder` wrote: a result with a hostile cell and a masked one, an
//! hour's idle gap, an error.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use gatehouse_core::event::CloseReason;

const HOSTILE: &str = "<script>alert(1)</script>";

fn ok(args: &[&str], store: &Path) -> String {
    let (code, out, err) = replay(args, store);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

fn store(dir: &Path) -> String {
    let id = sid(T0_MS, 1);
    let mut s = SessionBuilder::new(id);
    s.opened().greeting();
    s.wait(2_000)
        .up(&[query("select id, note, card from customers")]);
    s.wait(1_000)
        .masked(&[("detector:card_number", "card", 1)], &[(1, 2)])
        .down(&[
            row_description(&[("id", INT4, 0), ("note", TEXT, 0), ("card", TEXT, 0)]),
            data_row(&[Some(b"1"), Some(HOSTILE.as_bytes()), Some(b"****1111")]),
            complete("SELECT 1"),
            ready(),
        ]);
    // An hour of nothing.
    s.wait(3_600_000_000).up(&[query("select 1/0")]);
    s.wait(500)
        .down(&[error("22012", "division by zero", None, None), ready()]);
    s.wait(1_000).closed(CloseReason::ClientTerminated);
    write_store(dir, &[&s]);
    id.to_string()
}

#[test]
fn every_format_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let id = store(dir.path());

    // JSON: the masked cell is marked, the hostile one kept as it was.
    let doc: serde_json::Value =
        serde_json::from_str(&ok(&["export", &id[..8], "--format", "json"], dir.path())).unwrap();
    assert_eq!(doc["session"]["id"], id.as_str());
    assert_eq!(doc["session"]["subject"], "agent:reconciler");
    let row = &doc["items"][0]["results"][0]["rows"][0];
    assert_eq!(row[1], HOSTILE);
    assert_eq!(
        row[2],
        serde_json::json!({"masked": true, "value": "****1111"})
    );
    assert_eq!(doc["items"][1]["results"][0]["error"]["code"], "22012");
    assert_eq!(doc["items"][1]["offset_us"], 3_600_003_000i64);

    // CSV, through the csv crate.
    let out = tempfile::tempdir().unwrap();
    let csv_path = out.path().join("s.csv");
    let stdout = ok(
        &[
            "export",
            &id,
            "--format",
            "csv",
            "--out",
            csv_path.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(stdout.is_empty(), "{stdout}");
    let mut r = csv::Reader::from_path(&csv_path).unwrap();
    let headers = r.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        &rows[0][col("text")],
        "select id, note, card from customers"
    );
    assert_eq!(&rows[0][col("masked_cells")], "1");
    assert_eq!(&rows[0][col("offset_s")], "0.002000");
    assert_eq!(&rows[1][col("error_code")], "22012");
    assert_eq!(&rows[1][col("offset_s")], "3600.003000");

    // HTML: escaped, masked cell marked.
    let html = ok(&["export", &id, "--format", "html"], dir.path());
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("****1111 <span class=\"mark\">⟨masked⟩</span>"),
        "{html}"
    );
    assert!(html.contains("1 row; 1 cell masked"), "{html}");

    // asciicast: the hour is in the timing.
    let cast = ok(&["export", &id, "--format", "asciicast"], dir.path());
    let lines: Vec<serde_json::Value> = cast
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["version"], 2);
    let times: Vec<f64> = lines[1..].iter().map(|e| e[0].as_f64().unwrap()).collect();
    assert_eq!(times, [0.0, 0.002, 3600.003]);

    // play: not a terminal, so no pauses, whatever the speed.
    let show = ok(&["show", &id], dir.path());
    let started = Instant::now();
    assert_eq!(ok(&["play", &id], dir.path()), show);
    assert_eq!(ok(&["play", &id, "--speed", "0"], dir.path()), show);
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn export_errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let id = store(dir.path());
    let (code, _, err) = replay(&["export", &id, "--format", "pdf"], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("json") && err.contains("asciicast"), "{err}");
    let (code, _, err) = replay(
        &[
            "export",
            &id,
            "--format",
            "json",
            "--out",
            "/nonexistent/dir/out.json",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot create /nonexistent/dir/out.json"),
        "{err}"
    );
    let (code, _, err) = replay(&["play", &id, "--speed=-1"], dir.path());
    assert_ne!(code, 0);
    assert!(err.contains("not a speed"), "{err}");
}
