//! LISTEN/NOTIFY through the gateway: a client behind the gateway LISTENs,
//! a direct client NOTIFYs, and the notification arrives at the idle client
//! (the gateway passes on messages nobody asked for), in order, only after
//! the notifying transaction commits, and no longer after UNLISTEN. The
//! other way round works too.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::Duration;

use gatehouse_tests::messages::{self, Messages};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, User};
use tokio_postgres::{AsyncMessage, Notification};

const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(500);

async fn next_notification(msgs: &mut Messages) -> Notification {
    match msgs.next(WAIT).await {
        Some(Ok(AsyncMessage::Notification(n))) => n,
        Some(Ok(other)) => panic!("expected a notification, got {other:?}"),
        Some(Err(e)) => panic!("the connection failed: {e}"),
        None => panic!("no notification within {WAIT:?}"),
    }
}

async fn assert_quiet(msgs: &mut Messages, why: &str) {
    if let Some(m) = msgs.next(QUIET).await {
        panic!("{why}: got {m:?}");
    }
}

#[tokio::test]
async fn notifications_reach_a_listener_behind_the_gateway() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let (listener, mut msgs) = messages::connect_gateway(&gw, &token).await;
    let notifier = pg.client(User::App).await;
    let notifier_pid: i32 = notifier
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    listener
        .batch_execute("listen orders_events; listen \"Mixed Case\"")
        .await
        .unwrap();

    // The listener is idle: nothing it sends prompts this delivery.
    notifier
        .batch_execute("notify orders_events, 'invoice 1 paid'")
        .await
        .unwrap();
    let n = next_notification(&mut msgs).await;
    assert_eq!(n.channel(), "orders_events");
    assert_eq!(n.payload(), "invoice 1 paid");
    assert_eq!(n.process_id(), notifier_pid);

    // Several, in order, with awkward payloads; pg_notify from the extended
    // protocol too.
    let long = "x".repeat(7000);
    let payloads = ["", "ünïcødé ✓", "quote ' and \" and \\", long.as_str()];
    for p in payloads {
        notifier
            .execute("select pg_notify('orders_events', $1)", &[&p])
            .await
            .unwrap();
    }
    notifier
        .batch_execute("notify \"Mixed Case\", 'mixed'")
        .await
        .unwrap();
    for p in payloads {
        let n = next_notification(&mut msgs).await;
        assert_eq!((n.channel(), n.payload()), ("orders_events", p));
    }
    let n = next_notification(&mut msgs).await;
    assert_eq!((n.channel(), n.payload()), ("Mixed Case", "mixed"));

    // Only at commit; never after a rollback.
    notifier
        .batch_execute("begin; notify orders_events, 'rolled back'; rollback")
        .await
        .unwrap();
    notifier
        .batch_execute("begin; notify orders_events, 'committed'")
        .await
        .unwrap();
    assert_quiet(&mut msgs, "a notification arrived before its commit").await;
    notifier.batch_execute("commit").await.unwrap();
    let n = next_notification(&mut msgs).await;
    assert_eq!(n.payload(), "committed");

    // A notification that arrives while the listener runs a query of its
    // own comes too, and the query's result is intact.
    let slow = listener.query_one("select pg_sleep(0.5)::text, 'done'::text", &[]);
    let notify = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        notifier
            .batch_execute("notify orders_events, 'during a query'")
            .await
            .unwrap();
    };
    let (row, ()) = tokio::join!(slow, notify);
    assert_eq!(row.unwrap().get::<_, String>(1), "done");
    let n = next_notification(&mut msgs).await;
    assert_eq!(n.payload(), "during a query");

    listener.batch_execute("unlisten *").await.unwrap();
    notifier
        .batch_execute("notify orders_events, 'nobody listens'")
        .await
        .unwrap();
    assert_quiet(&mut msgs, "a notification arrived after UNLISTEN").await;
    assert_eq!(
        listener
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn notifications_from_behind_the_gateway() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());
    let (agent, mut own) = messages::connect_gateway(&gw, &token).await;
    let (direct, mut direct_msgs) =
        messages::connect(&pg.config(User::App), tokio_postgres::NoTls).await;

    direct.batch_execute("listen from_agent").await.unwrap();
    agent.batch_execute("listen from_agent").await.unwrap();
    agent
        .batch_execute("notify from_agent, 'hello from behind the gateway'")
        .await
        .unwrap();
    let n = next_notification(&mut direct_msgs).await;
    assert_eq!(n.payload(), "hello from behind the gateway");
    // The agent's own session hears itself too, as in PostgreSQL.
    let n = next_notification(&mut own).await;
    assert_eq!(n.payload(), "hello from behind the gateway");
}
