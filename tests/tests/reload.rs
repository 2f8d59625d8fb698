//! SIGHUP reloads grant keys, policies, targets and masking rules without
//! dropping sessions: an open session keeps what it connected with, new
//! ones get the new config, and a config with mistakes changes nothing.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::process::Command;
use std::time::Duration;

use gatehouse_tests::ports::wait_until;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};
use tokio_postgres::SimpleQueryMessage;

fn hup(gw: &Gateway) {
    let pid = gw.pid().expect("running");
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_for_log(gw: &Gateway, text: &str, times: usize) {
    let seen = wait_until(Duration::from_secs(20), || {
        gw.log().matches(text).count() >= times
    });
    assert!(seen, "the gateway never logged {text:?}\n{}", gw.log());
}

async fn customers(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .simple_query("SELECT customer FROM invoices ORDER BY id")
        .await
        .expect("select")
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_targets_and_rules_without_dropping_sessions() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let orders = gw.grant(&GrantArgs::default());
    let (before, _conn) = gw.connect(&orders).await;
    let plain = customers(&before).await;
    assert!(plain.iter().all(|c| !c.contains('*')), "{plain:?}");

    // A second target and a masking rule on the first.
    let path = gw.config_path();
    let original = std::fs::read_to_string(&path).expect("config");
    let mut config: toml::Table = toml::from_str(&original).expect("TOML");
    {
        let targets = config
            .get_mut("targets")
            .and_then(|t| t.as_table_mut())
            .expect("[targets]");
        let mut orders_target = targets["orders"].clone();
        orders_target
            .as_table_mut()
            .expect("table")
            .remove("masking");
        targets.insert("billing".to_owned(), orders_target);
        let masking: toml::Table = toml::from_str(
            "columns = [{ pattern = \"invoices.customer\", strategy = \"redact\" }]",
        )
        .expect("masking");
        targets["orders"]
            .as_table_mut()
            .expect("table")
            .insert("masking".to_owned(), toml::Value::Table(masking));
    }
    std::fs::write(&path, toml::to_string(&config).expect("TOML")).expect("write");
    hup(&gw);
    wait_for_log(&gw, "SIGHUP: config reloaded", 1);

    // The open session goes on, as it started.
    assert_eq!(customers(&before).await, plain);
    // A new one gets the rule.
    let (after, _conn2) = gw.connect(&orders).await;
    let masked = customers(&after).await;
    assert!(masked.iter().all(|c| c.contains("****")), "{masked:?}");
    // The new target answers.
    let billing = gw.grant(&GrantArgs {
        target: "billing".to_owned(),
        ..GrantArgs::default()
    });
    let (b, _conn3) = gw
        .try_connect_with(&gw.pg_config(&billing).dbname("billing").to_owned())
        .await
        .expect("the new target");
    b.simple_query("SELECT 1").await.expect("billing works");

    // A broken config changes nothing.
    std::fs::write(&path, "this is [not toml").expect("write");
    hup(&gw);
    wait_for_log(&gw, "the config was not reloaded", 1);
    let (still, _conn4) = gw
        .try_connect_with(&gw.pg_config(&billing).dbname("billing").to_owned())
        .await
        .expect("still served");
    still.simple_query("SELECT 1").await.expect("still works");
    std::fs::write(&path, original).expect("restore");
}
