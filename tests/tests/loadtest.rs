//! `gatehouse-loadtest` end to end: a few seconds, a few agents, every
//! workload that needs no extra config (statements the plan denies
//! included), through a real gateway and side by side with direct
//! connections to the same PostgreSQL. The harness starts
//! the gateway itself (`--spawn-gateway`), stops it and checks its store;
//! this test checks the JSON report and that the recording check passed —
//! not the speed.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::process::Command;
use std::time::Duration;

use gatehouse_tests::command::{render, run};
use gatehouse_tests::loadtest::binary as loadtest_binary;
use gatehouse_tests::{Gateway, GatewayOptions, PgCluster, Target, User};
use serde_json::Value;

/// The harness runs for about 5 s; this bounds everything around it too.
const HARNESS_TIMEOUT: Duration = Duration::from_secs(180);

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = &cur[key];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in the report: {cur}"))
}

/// The fields every leg's report has, with sane values.
fn check_leg(report: &Value, leg: &str) {
    let l = &report[leg];
    assert!(l.is_object(), "no {leg} in the report");
    let at = |f: &str| num(report, &format!("{leg}.{f}"));
    assert!(at("requests") > 0.0, "{leg}: no requests");
    assert_eq!(at("errors"), 0.0, "{leg}: errors {}", l["errors_by_kind"]);
    assert_eq!(at("ok"), at("requests"));
    assert!(at("throughput_rps") > 0.0);
    assert!(at("statements") >= at("ok"));
    assert!(at("measured_seconds") > 0.0);
    assert!(
        at("connections_opened") > 0.0,
        "{leg}: connect-per-task opened nothing"
    );
    let (p50, p90, p99, p999, max) = (
        at("latency_us.p50"),
        at("latency_us.p90"),
        at("latency_us.p99"),
        at("latency_us.p999"),
        at("latency_us.max"),
    );
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
        "{leg}: percentiles out of order: {}",
        l["latency_us"]
    );
    for workload in ["point", "range", "write", "connect", "denied"] {
        let w = &l["workloads"][workload];
        assert!(
            w["ok"].as_u64().is_some_and(|n| n > 0),
            "{leg}: workload {workload} did not run: {}",
            l["workloads"]
        );
        assert_eq!(w["errors"].as_u64(), Some(0), "{leg} {workload}");
    }
}

#[test]
fn a_short_run_through_a_real_gateway_is_measured_and_recorded_in_full() {
    let cluster = PgCluster::start();
    // Lays out keys, TLS certificates, a store and a config; the harness
    // runs the gateway itself from that config, so this one stops.
    let mut gateway = Gateway::start(&cluster, GatewayOptions::default());
    gateway.stop();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let json = out_dir.path().join("result.json");
    let target = Target::for_user(User::App);
    let ca = gateway
        .certs()
        .expect("the gateway runs with TLS")
        .ca_cert
        .clone();

    let mut cmd = Command::new(loadtest_binary());
    cmd.arg("--spawn-gateway")
        .arg(gateway.config_path())
        .arg("--gatehouse-bin")
        .arg(Gateway::binary())
        .arg("--gateway-log")
        .arg(out_dir.path().join("gateway.log"))
        .arg("--signing-key")
        .arg(gateway.signing_key())
        .arg("--ca")
        .arg(&ca)
        .args(["--dbname", &target.name])
        .arg("--direct")
        .arg(cluster.conn_string(User::App))
        .args(["--setup", "--rows", "500", "--range-rows", "50"])
        .args(["--agents", "4", "--ramp-up", "500ms", "--warmup", "1s"])
        .args(["--duration", "3s", "--timeout", "20s", "--seed", "7"])
        .args(["--mix", "point=45,range=10,write=20,connect=15,denied=10"])
        .args(["--compare-direct", "--slice", "500ms"])
        .arg("--json")
        .arg(&json)
        .env(target.password_env(), target.password_value())
        .env("GATEHOUSE_LOG", "info")
        .env("NO_COLOR", "1");
    let out = run(&mut cmd, HARNESS_TIMEOUT);
    let shown = render(&out);
    assert!(out.status.success(), "gatehouse-loadtest failed\n{shown}");
    // Shown with --nocapture.
    println!("{shown}");

    let stdout = String::from_utf8_lossy(&out.stdout);
    // Not a terminal: progress comes as plain lines, then the table.
    assert!(stdout.contains("tasks/s p99"), "no progress lines\n{shown}");
    assert!(
        !stdout.contains('\r'),
        "terminal control on a pipe\n{shown}"
    );
    assert!(stdout.contains("throughput (tasks/s)"), "{shown}");
    assert!(stdout.contains("PASSED"), "{shown}");
    assert!(stdout.contains("denied as planned"), "{shown}");

    let text = std::fs::read_to_string(&json).expect("--json wrote the report");
    let report: Value = serde_json::from_str(&text).expect("the report is JSON");
    assert_eq!(report["tool"], "gatehouse-loadtest");
    assert_eq!(report["stopped_by"], "duration");
    assert_eq!(report["settings"]["agents"], 4);
    assert_eq!(report["settings"]["mode"], "closed");
    assert_eq!(report["settings"]["tls"], "verify-ca");
    check_leg(&report, "gateway");
    check_leg(&report, "direct");
    // Through the gateway every denied-workload task was denied (42501, not
    // an error); direct, the same statements ran.
    let denied = num(&report, "gateway.denied_as_planned");
    assert!(denied > 0.0, "no denials: {}", report["gateway"]);
    assert_eq!(denied, num(&report, "gateway.workloads.denied.ok"));
    assert_eq!(num(&report, "direct.denied_as_planned"), 0.0);
    for ratio in ["throughput", "p50", "p99"] {
        assert!(
            num(&report, &format!("ratios.{ratio}")) > 0.0,
            "ratio {ratio}: {}",
            report["ratios"]
        );
    }
    let process = &report["gateway_process"];
    assert!(num(process, "samples") >= 1.0, "{process}");
    assert!(num(process, "rss_max_bytes") > 0.0, "{process}");
    assert!(process["cpu_seconds"].is_number(), "{process}");

    let check = &report["check"];
    assert_eq!(check["passed"], true, "{check}");
    assert_eq!(check["differences"], serde_json::json!({}), "{check}");
    let answered = num(check, "statements_answered");
    let uncertain = num(check, "statements_uncertain");
    let recorded = num(check, "statements_recorded");
    assert!(answered > 0.0, "{check}");
    assert!(
        answered <= recorded && recorded <= answered + uncertain,
        "{check}"
    );
    // Each denied statement is recorded as a denial, once.
    let denied_answered = num(check, "denied_answered");
    let denials = num(check, "denials_recorded");
    assert!(denied_answered >= denied, "{check}");
    assert!(
        denied_answered <= denials && denials <= denied_answered + num(check, "denied_uncertain"),
        "{check}"
    );
    // Every connection through the gateway, the preflight one included,
    // is one session in the store, closed by the client.
    assert_eq!(
        num(check, "sessions"),
        num(check, "connections_opened"),
        "{check}"
    );
    assert_eq!(num(check, "chain_breaks"), 0.0, "{check}");
    assert!(num(check, "chain_events") > recorded, "{check}");
    assert_eq!(
        check["close_reasons"].as_object().map(|o| o.len()),
        Some(1),
        "{check}"
    );
    assert!(
        check["close_reasons"]["ClientTerminated"].is_number(),
        "{check}"
    );
}
