//! Audit before forward survives a crash: a client streams autocommit
//! INSERTs through the gateway, the gateway is killed with SIGKILL in the
//! middle, and every row PostgreSQL committed has its INSERT statement in
//! the store — in both durability modes. The store opens after the kill,
//! the killed session reads as cut (no `Closed` event) with every event
//! decodable (`gatehouse-replay list` calls it cut, `gatehouse-audit
//! verify` finds no break), and the gateway serves again after a restart.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse_core::event::{Body, StatementProtocol};
use gatehouse_store::Reader;
use gatehouse_tests::command::{DEFAULT_TIMEOUT, render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{Durability, Gateway, GatewayOptions, GrantArgs, PgCluster, Psql};

/// Kill, check, restart this many times per durability mode.
const ROUNDS: u64 = 3;
/// Row ids of round `r` start at `(r + 1) * ID_STRIDE`.
const ID_STRIDE: i64 = 1_000_000;
/// How long the INSERT stream may take to reach the kill point.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the client may take to notice the gateway died.
const CLIENT_END_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `gatehouse-replay` or `gatehouse-audit` (next to the gateway
/// binary) on `store`; it must succeed. Its stdout.
fn tool_ok(name: &str, args: &[&str], store: &Path) -> String {
    let binary = Gateway::binary().with_file_name(name);
    let out = run(
        Command::new(&binary).args(args).arg("--store").arg(store),
        DEFAULT_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "{name} {args:?} failed\n{}",
        render(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The INSERT for row `id`; its text identifies the row.
fn insert_sql(id: i64, round: u64) -> String {
    format!("insert into invoices (id, customer, total) values ({id}, 'kill9 round {round}', {id})")
}

/// The row id an INSERT written by [`insert_sql`] names.
fn id_of_insert(sql: &str) -> Option<i64> {
    let rest = sql.strip_prefix("insert into invoices (id, customer, total) values (")?;
    rest.split(',').next()?.trim().parse().ok()
}

async fn kill_mid_stream(durability: Durability) {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            durability,
            ..GatewayOptions::default()
        },
    );
    let direct = pg.superuser_client().await;
    let mode = durability.as_str();

    for round in 0..ROUNDS {
        let token = gw.grant(&GrantArgs::default());
        let jti = decode_claims(&token).expect("claims")["jti"]
            .as_str()
            .expect("jti")
            .to_owned();
        let (client, _conn) = gw.connect(&token).await;
        let base = (round as i64 + 1) * ID_STRIDE;
        let acked = Arc::new(AtomicU64::new(0));
        let stream = tokio::spawn({
            let acked = acked.clone();
            async move {
                let mut n: i64 = 0;
                loop {
                    if let Err(e) = client.simple_query(&insert_sql(base + n, round)).await {
                        return e;
                    }
                    n += 1;
                    acked.store(n as u64, Ordering::Release);
                }
            }
        });

        // Kill at a different point each round.
        let kill_at = 40 + 70 * round;
        let deadline = Instant::now() + STREAM_TIMEOUT;
        while acked.load(Ordering::Acquire) < kill_at {
            assert!(
                Instant::now() < deadline && !stream.is_finished(),
                "{mode} round {round}: only {} INSERTs went through in {STREAM_TIMEOUT:?}",
                acked.load(Ordering::Acquire)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        gw.kill9();
        let err = tokio::time::timeout(CLIENT_END_TIMEOUT, stream)
            .await
            .unwrap_or_else(|_| panic!("{mode} round {round}: the client did not notice the kill"))
            .expect("the stream task");
        let acked = acked.load(Ordering::Acquire) as i64;
        eprintln!("{mode} round {round}: {acked} INSERTs acknowledged, then: {err}");

        // What PostgreSQL committed: every acknowledged row, and perhaps the
        // one in flight.
        let committed: BTreeSet<i64> = direct
            .query(
                "select id from invoices where id >= $1 and id < $2",
                &[&(base as i32), &((base + ID_STRIDE) as i32)],
            )
            .await
            .expect("read the rows directly")
            .iter()
            .map(|r| i64::from(r.get::<_, i32>(0)))
            .collect();
        let want: BTreeSet<i64> = (base..base + acked).collect();
        assert!(
            committed.is_superset(&want) && committed.len() as i64 <= acked + 1,
            "{mode} round {round}: {acked} acknowledged but PostgreSQL has {committed:?}"
        );

        // The store opens after SIGKILL and holds every committed INSERT.
        let killed_id = {
            let reader = Reader::open(&gw.store_dir())
                .unwrap_or_else(|e| panic!("{mode} round {round}: the store does not open: {e}"));
            let killed: Vec<_> = reader
                .sessions()
                .collect::<Result<Vec<_>, _>>()
                .expect("read summaries")
                .into_iter()
                .filter(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
                .collect();
            assert_eq!(killed.len(), 1, "{mode} round {round}: {killed:#?}");
            let killed = &killed[0];
            assert!(
                killed.closed.is_none(),
                "{mode} round {round}: the killed session has a Closed event: {killed:#?}"
            );
            let events = reader
                .events(killed.id)
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| panic!("{mode} round {round}: an event does not decode: {e}"));
            assert_eq!(events.len() as u64, killed.events, "{mode} round {round}");
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.seq, i as u64, "{mode} round {round}: a gap in the events");
                assert!(!matches!(e.body, Body::Closed(_)), "{mode} round {round}");
            }
            let recorded: BTreeSet<i64> = events
                .iter()
                .filter_map(|e| match &e.body {
                    Body::Statement(s) => {
                        assert_eq!(s.protocol, StatementProtocol::Simple);
                        Some(id_of_insert(&s.text).unwrap_or_else(|| {
                            panic!("{mode} round {round}: unexpected statement {:?}", s.text)
                        }))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(
                recorded.len() as u64,
                killed.statements,
                "{mode} round {round}"
            );
            let missing: Vec<i64> = committed.difference(&recorded).copied().collect();
            assert!(
                missing.is_empty(),
                "{mode} round {round}: rows committed in PostgreSQL whose INSERT is not in the \
                 store: {missing:?} ({} committed, {} recorded, {acked} acknowledged)",
                committed.len(),
                recorded.len()
            );
            killed.id.to_string()
        };

        // The offline tools agree: the session was cut, and a crash is not
        // tampering.
        let list = tool_ok("gatehouse-replay", &["list"], &gw.store_dir());
        let line = list
            .lines()
            .find(|l| l.contains(&killed_id))
            .unwrap_or_else(|| panic!("{mode} round {round}: {killed_id} not listed:\n{list}"));
        assert!(line.contains("cut"), "{mode} round {round}: {line}");
        let verify = tool_ok("gatehouse-audit", &["verify"], &gw.store_dir());
        assert!(!verify.contains("BREAK"), "{mode} round {round}: {verify}");

        // And the gateway serves again on the same store.
        gw.restart();
    }

    let token = gw.grant(&GrantArgs::default());
    let out = Psql::new(gw.conn_string(&token))
        .command("select count(*) >= 40 from invoices where customer like 'kill9 round %'")
        .run();
    assert_eq!(out.assert_success(), "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_durability_keeps_every_forwarded_insert_across_kill9() {
    kill_mid_stream(Durability::Fsync).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_durability_keeps_every_forwarded_insert_across_kill9() {
    kill_mid_stream(Durability::Os).await;
}
