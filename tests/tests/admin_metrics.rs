//! The admin API's `/readyz` and `/metrics` on a real gateway: readiness
//! needs no token, metrics do; after an allowed statement, a denied one
//! and a refused login, the Prometheus counters say so, and once the
//! client has gone its session is counted as closed.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use gatehouse_tests::ports::{free_port, wait_until};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};
use tokio_postgres::error::SqlState;

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// One `GET` over a fresh connection: status and body.
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect to the admin API");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    tcp.read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_owned())
}

/// The value of the sample `series` (name and labels as written) in a
/// Prometheus text exposition.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_metrics_follow_sessions() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("token file");
    let port = free_port();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_config: format!(
                "[admin]\nlisten = \"127.0.0.1:{port}\"\n[[admin.tokens]]\nname = \"alice\"\n\
                 token_file = \"{}\"\n",
                token_file.display()
            ),
            ..GatewayOptions::default()
        },
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the admin API does not listen\n{}",
        gw.log()
    );

    assert_eq!(get(port, "/readyz", None), (200, "ready\n".to_owned()));
    let (status, body) = get(port, "/metrics", None);
    assert_eq!(status, 401, "metrics need the admin token: {body}");
    // The harness probed the port once when the gateway started; that
    // connection may still be on its way through accept.
    let mut before = String::new();
    let mut status = 0;
    let probed = wait_until(Duration::from_secs(10), || {
        (status, before) = get(port, "/metrics", Some(ADMIN_TOKEN));
        sample(&before, "gatehouse_connections_total") == Some(1)
            && sample(&before, "gatehouse_connections_open") == Some(0)
    });
    assert!(probed, "the harness's probe was not counted:\n{before}");
    assert_eq!(status, 200, "{before}");
    assert_eq!(sample(&before, "gatehouse_store_healthy"), Some(1));
    assert_eq!(sample(&before, "gatehouse_ready"), Some(1));
    assert_eq!(sample(&before, "gatehouse_connections_open"), Some(0));
    assert!(before.contains("# TYPE gatehouse_verdicts_total counter"));
    assert!(before.contains("gatehouse_build_info{version=\""));

    // One allowed statement, one denied, then a login with a bad grant.
    let token = gw.grant(&GrantArgs {
        allow: vec!["select:public.invoices".into()],
        ..Default::default()
    });
    let (client, conn) = gw.connect(&token).await;
    client
        .simple_query("select count(*) from invoices")
        .await
        .expect("an allowed select");
    let err = client
        .simple_query("delete from invoices where id = -1")
        .await
        .expect_err("a delete the grant does not allow");
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");

    let (_, during) = get(port, "/metrics", Some(ADMIN_TOKEN));
    assert_eq!(sample(&during, "gatehouse_connections_open"), Some(1));
    assert_eq!(sample(&during, "gatehouse_sessions_opened_total"), Some(1));
    assert_eq!(
        sample(&during, "gatehouse_verdicts_total{decision=\"allow\"}"),
        Some(1),
        "{during}"
    );
    assert_eq!(
        sample(&during, "gatehouse_verdicts_total{decision=\"deny\"}"),
        Some(1),
        "{during}"
    );
    assert!(sample(&during, "gatehouse_statements_total") >= Some(2));

    drop(client);
    let _ = conn.await;
    assert!(
        gw.try_connect("not-a-grant").await.is_err(),
        "a malformed grant must be refused"
    );

    let mut after = String::new();
    let settled = wait_until(Duration::from_secs(10), || {
        after = get(port, "/metrics", Some(ADMIN_TOKEN)).1;
        sample(&after, "gatehouse_connections_open") == Some(0)
            && sample(
                &after,
                "gatehouse_sessions_closed_total{reason=\"client_terminated\"}",
            ) == Some(1)
            && sample(
                &after,
                "gatehouse_sessions_refused_total{reason=\"malformed\"}",
            ) == Some(1)
    });
    assert!(settled, "the counters did not settle:\n{after}");
    // Two more connections than before.
    let connections = |text: &str| sample(text, "gatehouse_connections_total").unwrap_or(0);
    assert_eq!(connections(&after), connections(&before) + 2, "{after}");
    assert_eq!(
        sample(&after, "gatehouse_store_write_errors_total"),
        Some(0)
    );
    // The store wrote what the sessions handed it, in group commits.
    let events = sample(&after, "gatehouse_store_events_total").expect("events");
    let submitted = sample(&after, "gatehouse_store_submitted_events_total").expect("submitted");
    assert!(events > 0 && events <= submitted, "{after}");
    assert!(sample(&after, "gatehouse_store_batches_total") > Some(0));
    assert!(sample(&after, "gatehouse_store_fsyncs_total") > Some(0));
    assert!(sample(&after, "gatehouse_store_disk_bytes") > Some(0));
    assert_eq!(sample(&after, "gatehouse_approvals_pending"), Some(0));

    // Every sample belongs to a declared metric.
    for line in after
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "{line:?} has no # TYPE"
        );
    }
    assert_eq!(get(port, "/readyz", None), (200, "ready\n".to_owned()));
}
