//! The target dies mid-query, stays down, and comes back: the client whose
//! query was running gets a protocol-native error promptly (not a hang),
//! a session to another target is untouched, new connections while the
//! target is down get FATAL 08001 naming it, and once the target restarts
//! new sessions work without restarting the gateway.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::{Duration, Instant};

use gatehouse_tests::ports::wait_until;
use gatehouse_tests::{APP_PASSWORD, Gateway, GatewayOptions, GrantArgs, PgCluster};

/// How long the client of a killed target may take to get its error.
const ERROR_BOUND: Duration = Duration::from_secs(15);
/// How long a refused connection may take while the target is down.
const REFUSAL_BOUND: Duration = Duration::from_secs(10);
/// The second target, on its own cluster.
const OTHER: &str = "other";

/// A `[targets.other]` section for `cluster` (same database and role as
/// `orders`), and the environment variable with its password.
fn other_target(cluster: &PgCluster) -> (String, (String, String)) {
    let section = format!(
        "[targets.{OTHER}]\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"orders\"\n\
         user = \"app\"\npassword_env = \"GATEHOUSE_OTHER_PASSWORD\"\n",
        cluster.port()
    );
    let env = (
        "GATEHOUSE_OTHER_PASSWORD".to_owned(),
        APP_PASSWORD.to_owned(),
    );
    (section, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_dies_mid_query_then_recovers() {
    let mut pg = PgCluster::start();
    let pg_other = PgCluster::start();
    let (section, env) = other_target(&pg_other);
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_config: section,
            env: vec![env],
            ..GatewayOptions::default()
        },
    );

    // A session to the other target, busy before and after.
    let other_token = gw.grant(&GrantArgs {
        target: OTHER.to_owned(),
        ..GrantArgs::default()
    });
    let mut other_config = gw.pg_config(&other_token);
    other_config.dbname(OTHER);
    let (other, other_conn) = gw
        .try_connect_with(&other_config)
        .await
        .expect("a session to the other target");
    let other_pid: i32 = other
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("query the other target")
        .get(0);

    // The victim: a long query on `orders`.
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    let sleeper = tokio::spawn(async move { client.simple_query("select pg_sleep(10)").await });
    {
        let direct = pg.superuser_client().await;
        let sleeping = || async {
            direct
                .query_one(
                    "select count(*) from pg_stat_activity where query = 'select pg_sleep(10)' \
                     and state = 'active'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get::<_, i64>(0)
                == 1
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sleeping().await {
            assert!(Instant::now() < deadline, "the query never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let killed_at = Instant::now();
    pg.kill();
    let outcome = tokio::time::timeout(ERROR_BOUND, sleeper)
        .await
        .unwrap_or_else(|_| panic!("the client hung for {ERROR_BOUND:?} after the target died"))
        .expect("the query task");
    let err = outcome.expect_err("a query on a killed target cannot succeed");
    let db = err.as_db_error().unwrap_or_else(|| {
        panic!(
            "the client got no protocol-native error, only: {err:?}\n{}",
            gw.log()
        )
    });
    eprintln!(
        "after {:?} the client got {} {}: {}",
        killed_at.elapsed(),
        db.severity(),
        db.code().code(),
        db.message()
    );
    assert!(
        db.code().code().starts_with("08") || db.code().code() == "57P01",
        "unexpected SQLSTATE: {db:?}"
    );

    // The other target's session did not notice.
    let pid: i32 = other
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("the other target's session survives")
        .get(0);
    assert_eq!(pid, other_pid, "same upstream backend");
    assert!(!other_conn.is_finished());

    // While the target is down: FATAL 08001 naming it, quickly.
    for _ in 0..3 {
        let token = gw.grant(&GrantArgs::default());
        let started = Instant::now();
        let err = tokio::time::timeout(REFUSAL_BOUND, gw.try_connect(&token))
            .await
            .unwrap_or_else(|_| panic!("connecting hung for {REFUSAL_BOUND:?}"))
            .map(|_| ())
            .expect_err("the target is down");
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("not a protocol-native error: {err:?}"));
        assert_eq!(db.code().code(), "08001", "{db:?}");
        assert_eq!(db.severity(), "FATAL");
        assert!(db.message().contains("\"orders\""), "{}", db.message());
        eprintln!("refused in {:?}: {}", started.elapsed(), db.message());
    }

    // Back up: new sessions work, the gateway was not restarted.
    pg.restart();
    let mut back = None;
    let recovered = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let token = gw.grant(&GrantArgs::default());
            if let Ok(pair) = gw.try_connect(&token).await {
                back = Some(pair);
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(recovered, "no session after the restart\n{}", gw.log());
    let (client, _conn) = back.expect("connected");
    let n: i64 = client
        .query_one("select count(*) from invoices", &[])
        .await
        .expect("query after the restart")
        .get(0);
    assert!(n > 0);
    assert!(
        wait_until(Duration::from_secs(1), || !other_conn.is_finished()),
        "the other session is still open"
    );
    other
        .simple_query("select 1")
        .await
        .expect("the other session still works");
}
