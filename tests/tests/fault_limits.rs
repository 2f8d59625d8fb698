//! Per-grant limits and the startup deadline, against real processes:
//!
//! - `[limits] connections_per_grant`: a grant past its sessions is refused
//!   with SQLSTATE 53300 (and the refusal recorded) while other grants are
//!   served; once one of its sessions ends, it is served again.
//! - `[limits] statements_per_second_per_grant`: statements over the rate
//!   are refused with 53400 and never reach PostgreSQL; the session goes on,
//!   a transaction block fails as PostgreSQL fails it, and every denial is
//!   a recorded verdict. Driven by eight sessions of one grant at once,
//!   spread over four workers, the rate holds for the grant as a whole
//!   (the bucket is one per grant, shared by the workers): what reaches
//!   PostgreSQL stays within the bucket's bound, the rest gets 53400,
//!   every session stays usable, and another grant is served meanwhile.
//! - `[listener] startup_timeout`: a slowloris client (a byte of its
//!   startup packet every 300 ms) and a silent one are disconnected, while
//!   a normal client connecting meanwhile is served.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::event::{Body, Decision};
use gatehouse_store::Reader;
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::ports::wait_until;
use gatehouse_tests::wire::{self, RawConn};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, User};
use tokio_postgres::error::SqlState;

fn jti_of(token: &str) -> String {
    decode_claims(token).expect("a JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned()
}

/// The server's SQLSTATE and message of a database error.
fn db_error(err: &tokio_postgres::Error) -> (SqlState, String) {
    match err.as_db_error() {
        Some(db) => (db.code().clone(), db.message().to_owned()),
        None => panic!("not a server error: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_grant_are_limited_and_given_back() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_config: "[limits]\nconnections_per_grant = 2".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let jti = jti_of(&token);
    let other = gw.grant(&GrantArgs::default());

    let (a, a_conn) = gw.connect(&token).await;
    let (b, _b_conn) = gw.connect(&token).await;
    let err = match gw.try_connect(&token).await {
        Ok(_) => panic!("a third session of the grant was served"),
        Err(e) => e,
    };
    let (code, message) = db_error(&err);
    assert_eq!(code, SqlState::TOO_MANY_CONNECTIONS, "{message}");
    assert!(
        message.contains(&format!("grant {jti} already has 2 sessions open"))
            && message.contains("connections_per_grant"),
        "{message}"
    );
    // Another grant is served meanwhile, and the grant's open sessions go on.
    let (c, _c_conn) = gw.connect(&other).await;
    c.simple_query("SELECT 1").await.expect("another grant");
    a.simple_query("SELECT 1").await.expect("a goes on");
    b.simple_query("SELECT 1").await.expect("b goes on");

    // Once one session ends, the grant is served again.
    drop(a);
    let _ = a_conn.await;
    let mut served = None;
    for _ in 0..100 {
        if let Ok(pair) = gw.try_connect(&token).await {
            served = Some(pair);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (d, _d_conn) = served.unwrap_or_else(|| panic!("never served again\n{}", gw.log()));
    d.simple_query("SELECT 1").await.expect("served again");
    drop((b, c, d));

    // The refusal is recorded, with the grant.
    gw.stop();
    let reader = Reader::open(&gw.store_dir()).expect("open the store");
    let refused: Vec<_> = reader
        .sessions()
        .map(|s| s.expect("summary"))
        .filter_map(|s| s.refused)
        .filter(|r| r.jti.as_deref() == Some(jti.as_str()))
        .collect();
    assert!(!refused.is_empty(), "the refusal is not in the store");
    assert!(
        refused
            .iter()
            .all(|r| r.message.contains("connections_per_grant")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_past_the_rate_are_denied_and_the_session_goes_on() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_config: "[limits]\nstatements_per_second_per_grant = 5".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let jti = jti_of(&token);
    let (client, _conn) = gw.connect(&token).await;

    // A burst of 20, simple and extended (Parse) alternately.
    let (mut ran, mut denied) = (0, 0);
    for i in 0..20i32 {
        let result = if i % 2 == 0 {
            client.simple_query("SELECT 1").await.map(drop)
        } else {
            client.query_one("SELECT $1::int", &[&i]).await.map(drop)
        };
        match result {
            Ok(()) => ran += 1,
            Err(e) => {
                let (code, message) = db_error(&e);
                assert_eq!(code, SqlState::CONFIGURATION_LIMIT_EXCEEDED, "{message}");
                assert!(
                    message.contains(&format!("grant {jti} is over its limit of 5"))
                        && message.contains("statements_per_second_per_grant"),
                    "{message}"
                );
                denied += 1;
            }
        }
    }
    assert!(ran >= 1 && denied >= 1, "ran {ran}, denied {denied}");

    // After a pause the session is usable.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rows = client
        .query("SELECT 41 + 1", &[])
        .await
        .expect("after a pause");
    assert_eq!(rows[0].get::<_, i32>(0), 42);

    // Inside a transaction block, a denial fails the block on both sides.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.simple_query("BEGIN").await.expect("begin");
    let mut denied_in_block = false;
    for _ in 0..20 {
        match client.simple_query("SELECT 1").await {
            Ok(_) => {}
            Err(e) => {
                let (code, message) = db_error(&e);
                assert_eq!(code, SqlState::CONFIGURATION_LIMIT_EXCEEDED, "{message}");
                denied_in_block = true;
                denied += 1;
                break;
            }
        }
    }
    assert!(denied_in_block, "no denial inside the block");
    let err = client
        .simple_query("SELECT 1")
        .await
        .expect_err("the block is aborted");
    assert_eq!(
        db_error(&err).0,
        SqlState::IN_FAILED_SQL_TRANSACTION,
        "PostgreSQL agrees the block failed"
    );
    // ROLLBACK is never refused for the rate; then the session goes on.
    client.simple_query("ROLLBACK").await.expect("rollback");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .simple_query("SELECT 1")
        .await
        .expect("after rollback");
    drop(client);

    // Every denial is a recorded verdict naming the limit.
    gw.stop();
    let reader = Reader::open(&gw.store_dir()).expect("open the store");
    let id = reader
        .sessions()
        .map(|s| s.expect("summary"))
        .find(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
        .expect("the session")
        .id;
    let recorded = reader
        .events(id)
        .map(|e| e.expect("event"))
        .filter(|e| {
            matches!(&e.body, Body::Verdict(v) if v.decision == Decision::Deny
                && v.reason.contains("statements_per_second_per_grant"))
        })
        .count();
    // The SELECT in the failed block may also have been over the rate: the
    // client then saw 25P02, and the verdict is recorded all the same.
    assert!(
        recorded >= denied,
        "{recorded} denials recorded, {denied} seen"
    );
}

/// CPU time (clock ticks) of each of the gateway's worker threads, by
/// thread id: the threads named `gatehouse-worker-N` (15 bytes of it, as
/// the kernel keeps them).
fn worker_cpu(pid: u32) -> BTreeMap<String, u64> {
    let mut cpu = BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the gateway's threads");
    for task in tasks {
        let dir = task.expect("a thread").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("gatehouse-worke") {
            continue;
        }
        // `pid (comm) state …`: utime and stime are fields 14 and 15, the
        // 12th and 13th after the comm.
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
            let tid = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            cpu.insert(tid.unwrap_or_default(), user + system);
        }
    }
    cpu
}

/// What one session of the rate-limited grant saw.
#[derive(Default)]
struct Burst {
    ran: u64,
    denied: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_holds_for_a_grant_across_sessions_and_workers() {
    /// `statements_per_second_per_grant`: also the bucket's size.
    const RATE: u64 = 20;
    const SESSIONS: i32 = 8;
    const WORKERS: u32 = 4;
    /// How long the sessions send as fast as they can.
    const BURST: Duration = Duration::from_millis(2500);

    let pg = PgCluster::start();
    pg.client(User::App)
        .await
        .batch_execute("CREATE TABLE rate_hits (session int NOT NULL, n int NOT NULL)")
        .await
        .expect("create rate_hits");
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            workers: WORKERS,
            extra_config: format!("[limits]\nstatements_per_second_per_grant = {RATE}"),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let jti = jti_of(&token);
    let other = gw.grant(&GrantArgs::default());
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        let (client, conn) = gw.connect(&token).await;
        clients.push((Arc::new(client), conn));
    }
    let (bystander, _bystander_conn) = gw.connect(&other).await;
    let pid = gw.pid().expect("the gateway runs");
    let cpu_before = worker_cpu(pid);
    assert_eq!(cpu_before.len(), WORKERS as usize, "{cpu_before:?}");

    // Every session sends INSERTs as fast as it is answered, simple and
    // extended (a Parse each time) alternately, for BURST.
    let started = Instant::now();
    let deadline = started + BURST;
    let mut bursts = Vec::new();
    for (i, (client, _)) in clients.iter().enumerate() {
        let client = Arc::clone(client);
        let jti = jti.clone();
        bursts.push(tokio::spawn(async move {
            let session = i as i32;
            let mut seen = Burst::default();
            let mut n = 0i32;
            while Instant::now() < deadline {
                n += 1;
                let result = if n % 2 == 0 {
                    client
                        .simple_query(&format!("INSERT INTO rate_hits VALUES ({session}, {n})"))
                        .await
                        .map(drop)
                } else {
                    client
                        .execute("INSERT INTO rate_hits VALUES ($1, $2)", &[&session, &n])
                        .await
                        .map(drop)
                };
                match result {
                    Ok(()) => seen.ran += 1,
                    Err(e) => {
                        let (code, message) = db_error(&e);
                        assert_eq!(code, SqlState::CONFIGURATION_LIMIT_EXCEEDED, "{message}");
                        assert!(
                            message.contains(&format!("grant {jti} is over its limit of {RATE}")),
                            "{message}"
                        );
                        seen.denied += 1;
                    }
                }
            }
            seen
        }));
    }
    // Another grant, meanwhile, well inside its own rate: never refused.
    let mut bystander_ran = 0;
    while Instant::now() < deadline {
        bystander
            .simple_query("SELECT 1")
            .await
            .expect("another grant is not limited by this one's rate");
        bystander_ran += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (mut ran, mut denied) = (0, 0);
    for burst in bursts {
        let seen = burst.await.expect("a session's burst");
        assert!(seen.ran + seen.denied > 0);
        ran += seen.ran;
        denied += seen.denied;
    }
    let elapsed = started.elapsed();
    let cpu_after = worker_cpu(pid);

    // The bucket: full (RATE) at the start, refilled at RATE a second, one
    // for the grant whatever session or worker takes from it.
    let bound = RATE + (RATE as f64 * elapsed.as_secs_f64()).floor() as u64;
    eprintln!(
        "{SESSIONS} sessions in {elapsed:?}: {ran} ran, {denied} denied (bound {bound}); the \
         other grant ran {bystander_ran}; worker CPU ticks {cpu_before:?} -> {cpu_after:?}"
    );
    assert!(
        ran <= bound + 1,
        "{ran} statements of one grant ran in {elapsed:?}, more than its bucket allows \
         ({RATE} + {RATE}/s = {bound}): the rate is not shared by its sessions"
    );
    // Not stuck either: the burst and at least a second's refill went
    // through.
    assert!(ran >= 2 * RATE, "only {ran} ran in {elapsed:?}");
    assert!(denied > ran, "{denied} denied, {ran} ran");
    assert!(bystander_ran >= 5, "{bystander_ran}");

    // PostgreSQL ran exactly the statements that were answered as run.
    let direct = pg.superuser_client().await;
    let rows: i64 = direct
        .query_one("SELECT count(*) FROM rate_hits", &[])
        .await
        .expect("count the rows")
        .get(0);
    assert_eq!(rows as u64, ran, "rows in PostgreSQL vs INSERTs answered");
    let executed = pg
        .statements_of(User::App)
        .iter()
        .filter(|s| s.starts_with("INSERT INTO rate_hits"))
        .count();
    assert_eq!(
        executed as u64, ran,
        "INSERTs in PostgreSQL's statement log"
    );

    // The sessions were spread over more than one worker.
    let busy = cpu_after
        .iter()
        .filter(|(tid, ticks)| cpu_before.get(*tid).is_some_and(|b| *ticks > b))
        .count();
    assert!(
        busy >= 2,
        "the sessions ran on {busy} worker(s): {cpu_before:?} -> {cpu_after:?}"
    );

    // Every session is usable once the bucket refills.
    for (i, (client, _)) in clients.iter().enumerate() {
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            match client.simple_query("SELECT 1").await {
                Ok(_) => break,
                Err(e) => {
                    let (code, message) = db_error(&e);
                    assert_eq!(code, SqlState::CONFIGURATION_LIMIT_EXCEEDED, "{message}");
                    assert!(Instant::now() < give_up, "session {i} never usable again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(clients);
    drop(bystander);

    // Every denial is a recorded verdict naming the limit.
    gw.stop();
    let reader = Reader::open(&gw.store_dir()).expect("open the store");
    let mut recorded = 0;
    for summary in reader.sessions() {
        let summary = summary.expect("summary");
        if summary.opened.as_ref().is_none_or(|o| o.jti != jti) {
            continue;
        }
        recorded += reader
            .events(summary.id)
            .map(|e| e.expect("event"))
            .filter(|e| {
                matches!(&e.body, Body::Verdict(v) if v.decision == Decision::Deny
                    && v.reason.contains("statements_per_second_per_grant"))
            })
            .count() as u64;
    }
    assert!(
        recorded >= denied,
        "{recorded} denials recorded, {denied} seen"
    );
}

/// A StartupMessage for `orders` (protocol 3.0).
fn startup_packet() -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for s in ["user", "agent", "database", "orders", ""] {
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// Sends `packet` a byte every 300 ms: the bytes sent when the gateway
/// disconnected, or `None` if it never did.
fn slowloris(port: u16, packet: &[u8]) -> Option<usize> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    let mut scratch = [0u8; 256];
    for (sent, byte) in packet.iter().enumerate() {
        if s.write_all(&[*byte]).is_err() {
            return Some(sent);
        }
        match s.read(&mut scratch) {
            Ok(0) => return Some(sent + 1),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(sent + 1),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_silent_clients_are_cut_at_the_startup_timeout() {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            listener_config: "startup_timeout = \"1s\"".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let port = gw.port();
    let packet = startup_packet();
    let total = packet.len();
    let slow = tokio::task::spawn_blocking(move || slowloris(port, &packet));
    let silent = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let mut scratch = [0u8; 16];
        match s.read(&mut scratch) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    });

    // A normal client connecting meanwhile is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = gw.grant(&GrantArgs::default());
    let (client, _conn) = gw.connect(&token).await;
    client.simple_query("SELECT 1").await.expect("served");

    let sent = slow.await.expect("slowloris thread");
    match sent {
        Some(n) => assert!(n < total, "cut only after all {total} bytes"),
        None => panic!(
            "the slowloris client sent all {total} bytes without being cut\n{}",
            gw.log()
        ),
    }
    assert!(
        silent.await.expect("silent thread"),
        "the silent client was not disconnected"
    );
    // The normal session outlives both.
    client.simple_query("SELECT 1").await.expect("still served");
    assert!(wait_until(Duration::from_secs(2), || gw
        .log()
        .contains("did not complete startup in time")));
}

/// After login, a client that starts a message and sends it a byte every
/// 300 ms is cut at `message_timeout = "1s"` with FATAL 08P01, before the
/// message is complete; a session that is only idle for longer than that
/// is not, and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_client_that_dribbles_a_message_is_cut() {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            allow_plaintext: true,
            listener_config: "message_timeout = \"1s\"".to_owned(),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs::default());
    let (idle, _conn) = gw.connect(&token).await;
    idle.simple_query("SELECT 1").await.expect("served");

    let port = gw.port();
    let dribbler_token = token.clone();
    let dribbler = tokio::task::spawn_blocking(move || {
        let mut c = RawConn::plain(port);
        c.login_ok("agent-7", "orders", &dribbler_token);
        let message = wire::query("select 'slowly, slowly'");
        let started = Instant::now();
        for (sent, byte) in message.bytes().iter().enumerate() {
            if c.try_send(&[*byte]).is_err() {
                return (sent, started.elapsed(), Vec::new());
            }
            std::thread::sleep(Duration::from_millis(300));
            c.set_read_timeout(Duration::from_millis(1));
            if let Ok(first) = c.try_frame() {
                c.set_read_timeout(Duration::from_secs(10));
                let mut frames = vec![first];
                frames.extend(c.until_ready());
                return (sent + 1, started.elapsed(), frames);
            }
        }
        (message.bytes().len(), started.elapsed(), Vec::new())
    });
    let (sent, took, frames) = dribbler.await.expect("the dribbling client");
    let total = wire::query("select 'slowly, slowly'").bytes().len();
    assert!(sent < total, "cut only after all {total} bytes ({took:?})");
    let (code, message) = wire::error(&frames)
        .unwrap_or_else(|| panic!("no error before the close: {}", wire::describe(&frames)));
    assert_eq!(code, "08P01", "{message}");
    assert!(
        message.contains("did not finish sending a message"),
        "{message}"
    );
    assert!(took < Duration::from_secs(10), "cut after {took:?}");

    // The idle session was idle for longer than the timeout and goes on.
    idle.simple_query("SELECT 2")
        .await
        .expect("an idle session is not cut");
    assert!(wait_until(Duration::from_secs(2), || gw
        .log()
        .contains("client did not finish a message in time")));
}
