//! A grant's `uses` limit holds: a single-use grant opens exactly one
//! session — also when two clients race with it, and also after the gateway
//! crashed or restarted — and a grant for three uses opens three.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use gatehouse_core::event::Refusal;
use gatehouse_store::{Reader, SessionSummary};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql};

/// How many single-use grants the race test races with.
const RACES: usize = 8;

fn jti_of(token: &str) -> String {
    decode_claims(token).expect("a JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned()
}

fn grant_with_uses(gw: &Gateway, uses: u32) -> String {
    gw.grant(&GrantArgs {
        uses: Some(uses),
        ..GrantArgs::default()
    })
}

/// Opens a session with `token` and runs a query in it.
async fn use_once(gw: &Gateway, token: &str, what: &str) {
    let (client, conn) = gw.connect(token).await;
    let n: i64 = client
        .query_one("select count(*) from invoices", &[])
        .await
        .unwrap_or_else(|e| panic!("{what}: query failed: {e}"))
        .get(0);
    assert!(n > 0, "{what}");
    drop(client);
    let _ = conn.await;
}

/// The connection must be refused because the grant is used up.
async fn expect_used_up(gw: &Gateway, token: &str, what: &str) {
    let err = match gw.try_connect(token).await {
        Ok(_) => panic!("{what}: a used-up grant opened another session"),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: not a server error: {err:?}"));
    assert_eq!(db.severity(), "FATAL", "{what}: {db:?}");
    assert_eq!(db.code().code(), "28000", "{what}: {db:?}");
    assert!(
        db.message().contains("have been used"),
        "{what}: the message does not say the grant is used up: {:?}",
        db.message()
    );
}

fn summaries(gw: &Gateway) -> (Reader, Vec<SessionSummary>) {
    let reader = Reader::open(&gw.store_dir()).expect("open the store");
    let all = reader
        .sessions()
        .collect::<Result<Vec<_>, _>>()
        .expect("read summaries");
    (reader, all)
}

fn opened_with(all: &[SessionSummary], jti: &str) -> Vec<u32> {
    let mut uses: Vec<u32> = all
        .iter()
        .filter_map(|s| s.opened.as_ref())
        .filter(|o| o.jti == jti)
        .map(|o| o.use_number)
        .collect();
    uses.sort_unstable();
    uses
}

fn refused_used_up(all: &[SessionSummary], jti: &str) -> usize {
    all.iter()
        .filter_map(|s| s.refused.as_ref())
        .filter(|r| r.reason == Refusal::UsedUp && r.jti.as_deref() == Some(jti))
        .count()
}

#[tokio::test]
async fn a_single_use_grant_opens_one_session_also_after_a_crash_and_a_restart() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(&pg, GatewayOptions::default());
    let token = grant_with_uses(&gw, 1);
    let jti = jti_of(&token);

    use_once(&gw, &token, "first use").await;
    expect_used_up(&gw, &token, "second use").await;
    // psql too, which sees the reason on stderr.
    let out = Psql::new(gw.conn_string(&token)).command("select 1").run();
    let stderr = out.assert_failure();
    assert!(
        stderr.contains("FATAL") && stderr.contains("have been used"),
        "{out}"
    );

    // A crash: the use is in the store, not only in the dead gateway's
    // memory.
    gw.restart();
    expect_used_up(&gw, &token, "after kill -9 and restart").await;

    // A clean stop and start.
    gw.stop();
    gw.restart();
    expect_used_up(&gw, &token, "after a clean restart").await;

    // Other grants are not affected.
    let other = grant_with_uses(&gw, 1);
    use_once(&gw, &other, "another single-use grant").await;
    expect_used_up(&gw, &other, "another single-use grant, second use").await;

    gw.stop();
    let (reader, all) = summaries(&gw);
    assert_eq!(opened_with(&all, &jti), [1], "{all:#?}");
    assert_eq!(refused_used_up(&all, &jti), 4, "{all:#?}");
    assert_eq!(reader.grant_use_count(&jti).expect("use count"), 1);
    assert_eq!(
        reader.grant_use_count(&jti_of(&other)).expect("use count"),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_racing_with_one_single_use_grant_get_one_session() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(&pg, GatewayOptions::default());
    let tokens: Vec<String> = (0..RACES).map(|_| grant_with_uses(&gw, 1)).collect();

    for (round, token) in tokens.iter().enumerate() {
        let (a, b) = tokio::join!(gw.try_connect(token), gw.try_connect(token));
        let mut wins = 0;
        for result in [a, b] {
            match result {
                Ok((client, _conn)) => {
                    wins += 1;
                    let one: i32 = client
                        .query_one("select 1", &[])
                        .await
                        .unwrap_or_else(|e| panic!("round {round}: the winner cannot query: {e}"))
                        .get(0);
                    assert_eq!(one, 1);
                }
                Err(e) => {
                    let db = e.as_db_error().unwrap_or_else(|| {
                        panic!("round {round}: the loser got no server error: {e:?}")
                    });
                    assert_eq!(db.code().code(), "28000", "round {round}: {db:?}");
                    assert!(db.message().contains("have been used"), "{db:?}");
                }
            }
        }
        assert_eq!(wins, 1, "round {round}: {wins} sessions opened");
    }

    gw.stop();
    let (reader, all) = summaries(&gw);
    for token in &tokens {
        let jti = jti_of(token);
        assert_eq!(opened_with(&all, &jti), [1], "{jti}: {all:#?}");
        assert_eq!(refused_used_up(&all, &jti), 1, "{jti}: {all:#?}");
        assert_eq!(reader.grant_use_count(&jti).expect("use count"), 1);
    }
}

#[tokio::test]
async fn a_grant_for_three_uses_opens_three_sessions() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(&pg, GatewayOptions::default());
    let token = grant_with_uses(&gw, 3);
    let jti = jti_of(&token);

    use_once(&gw, &token, "use 1").await;
    // Through psql as well: a use is a session, whatever the client.
    let out = Psql::new(gw.conn_string(&token))
        .command("select 'use 2'")
        .run();
    assert_eq!(out.assert_success(), "use 2");
    // Two uses left after a restart? One: the count survives.
    gw.restart();
    use_once(&gw, &token, "use 3 (after a restart)").await;
    expect_used_up(&gw, &token, "use 4").await;
    gw.restart();
    expect_used_up(&gw, &token, "use 4 after a restart").await;

    // Unlimited grants are not counted down.
    let unlimited = gw.grant(&GrantArgs::default());
    for i in 0..5 {
        use_once(&gw, &unlimited, &format!("unlimited use {i}")).await;
    }

    gw.stop();
    let (reader, all) = summaries(&gw);
    assert_eq!(opened_with(&all, &jti), [1, 2, 3], "{all:#?}");
    assert_eq!(refused_used_up(&all, &jti), 2, "{all:#?}");
    assert_eq!(reader.grant_use_count(&jti).expect("use count"), 3);
    for s in all
        .iter()
        .filter(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
    {
        let o = s.opened.as_ref().expect("opened");
        assert_eq!(o.max_uses, Some(3), "{o:?}");
    }
    assert_eq!(
        opened_with(&all, &jti_of(&unlimited)),
        [1, 2, 3, 4, 5],
        "{all:#?}"
    );
}
