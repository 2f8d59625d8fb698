//! Cancelling a running query through the gateway. The client holds the
//! gateway's cancel key, never the target's; its CancelRequest arrives on a
//! new connection (often on another worker), and the gateway forwards it to
//! the target with the target's key. The statement ends promptly with
//! SQLSTATE 57014 and the session goes on.
//!
//! "Promptly" is a correctness bound (the sleep is 30 s, the bound 10 s),
//! not a speed claim.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::process::Command;
use std::time::{Duration, Instant};

use gatehouse_core::pg::backend::Message;
use gatehouse_core::pg::encode;
use gatehouse_tests::command::{DEFAULT_TIMEOUT, run_ok};
use gatehouse_tests::ports::wait_until;
use gatehouse_tests::wire::{self, RawConn};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql};
use tokio_postgres::error::SqlState;

const SLEEP: &str = "select pg_sleep(30)";
const PROMPTLY: Duration = Duration::from_secs(10);

/// Waits until `pg` runs `sql` in some session; panics after 10 s.
async fn wait_until_running(pg: &PgCluster, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running(pg, sql).await {
        assert!(
            Instant::now() < deadline,
            "`{sql}` did not start within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tokio_postgres_cancels_a_running_query() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    let tls = gw.certs().expect("TLS").make_tls_connect();

    // Several rounds, so that the CancelRequest lands on each worker.
    for round in 0..4 {
        let sql = format!("{SLEEP} -- round {round}");
        let started = Instant::now();
        let query = client.simple_query(&sql);
        let cancel = async {
            wait_until_running(&pg, &sql).await;
            client.cancel_token().cancel_query(tls.clone()).await
        };
        let (result, cancelled) =
            tokio::time::timeout(PROMPTLY, async { tokio::join!(query, cancel) })
                .await
                .unwrap_or_else(|_| {
                    panic!("round {round}: the query was not cancelled within {PROMPTLY:?}")
                });
        cancelled.unwrap();
        let err = result.expect_err("the query was cancelled");
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
        assert!(started.elapsed() < PROMPTLY);

        let row = client
            .query_one("select $1::int4", &[&round])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), round, "the session goes on");
    }

    // A cancel with nothing running changes nothing.
    client.cancel_token().cancel_query(tls).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        client
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[test]
fn psql_cancels_on_sigint() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let rt = tokio::runtime::Runtime::new().unwrap();

    let started = Instant::now();
    let mut psql = Psql::new(gw.conn_string(&token))
        .command(SLEEP)
        .timeout(Duration::from_secs(40))
        .spawn();
    rt.block_on(wait_until_running(&pg, SLEEP));
    // psql answers SIGINT with a CancelRequest (plaintext, libpq 15's
    // PQcancel) carrying the key the gateway gave it.
    run_ok(
        Command::new("kill").arg("-INT").arg(psql.id().to_string()),
        DEFAULT_TIMEOUT,
    );
    assert!(
        wait_until(PROMPTLY, || psql.has_exited()),
        "psql did not end within {PROMPTLY:?} of SIGINT"
    );
    let out = psql.wait();
    assert!(started.elapsed() < Duration::from_secs(20));
    let stderr = out.assert_failure();
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{out}"
    );
    // The target's session is not left running the sleep.
    assert!(!rt.block_on(running(&pg, SLEEP)));
}

/// Whether `pg` is running `sql` in some session right now.
async fn running(pg: &PgCluster, sql: &str) -> bool {
    let su = pg.superuser_client().await;
    let n: i64 = su
        .query_one(
            "select count(*) from pg_stat_activity where query = $1 and state = 'active'",
            &[&sql],
        )
        .await
        .unwrap()
        .get(0);
    n > 0
}

/// Sends a CancelRequest for `key` to the gateway on a new connection and
/// waits until the gateway has handled it (it then closes the connection).
fn send_cancel(port: u16, key: (i32, i32)) {
    let mut s = RawConn::plain(port);
    s.send(&encode::cancel_request(key.0, key.1));
    assert!(
        s.closes(),
        "the gateway did not close the cancel connection"
    );
}

#[test]
fn the_client_holds_the_gateways_key_not_the_targets() {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            allow_plaintext: true,
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let rt = tokio::runtime::Runtime::new().unwrap();

    // A raw connection, so that the key the client is given is visible.
    let mut c = RawConn::plain(gw.port());
    let login = c.login_ok("agent-7", "orders", &token);
    let key = login
        .iter()
        .find_map(|f| match Message::parse(f) {
            Ok(Message::BackendKeyData { pid, secret }) => Some((pid, secret)),
            _ => None,
        })
        .expect("BackendKeyData in the greeting");
    let rows = wire::rows(&c.simple_query("select pg_backend_pid()"));
    let upstream_pid: i32 = rows[0][0].as_deref().unwrap().parse().unwrap();
    assert_ne!(key.0, upstream_pid, "the client was given the target's pid");

    c.send(wire::query(SLEEP).bytes());
    rt.block_on(wait_until_running(&pg, SLEEP));

    // Keys that are not the gateway's cancel nothing.
    send_cancel(gw.port(), (upstream_pid, key.1));
    send_cancel(gw.port(), (key.0, key.1 ^ 1));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        rt.block_on(running(&pg, SLEEP)),
        "a wrong cancel key cancelled the query"
    );

    let started = Instant::now();
    send_cancel(gw.port(), key);
    let frames = c.until_ready();
    assert!(started.elapsed() < PROMPTLY);
    assert_eq!(
        wire::error(&frames).map(|e| e.0).as_deref(),
        Some("57014"),
        "{}",
        wire::describe(&frames)
    );
    let rows = wire::rows(&c.simple_query("select 'after'"));
    assert_eq!(rows, [[Some("after".to_owned())]], "the session goes on");
    assert!(!rt.block_on(running(&pg, SLEEP)));
}
