//! The first thing an agent does: psql through the gateway, with a grant as
//! the password, runs `select 1` — and the statement reaches PostgreSQL.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql};

#[test]
fn psql_select_1_through_the_gateway() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let token = gw.grant(&GrantArgs::default());

    let out = Psql::new(gw.conn_string(&token)).command("select 1").run();
    assert_eq!(out.assert_success(), "1");

    let statements = pg.statements();
    assert!(
        statements.iter().any(|s| s.trim() == "select 1"),
        "select 1 did not reach PostgreSQL: {statements:#?}"
    );
}
