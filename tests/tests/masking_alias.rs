//! A column rule follows the column, not its name: aliases and subqueries
//! over a masked column stay masked (the gateway resolves result columns to
//! their table column through the target's catalog). A view's column is the
//! view's own (PostgreSQL reports the view as its origin), so a view that
//! renames a masked column needs its own rule, which then matches however
//! the view's column is aliased.

use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, User};

const MASKING: &str = r#"
[[columns]]
pattern = "secrets.ssn"
strategy = "redact"
[[columns]]
pattern = "secrets_v.hidden"
strategy = "redact"
"#;

#[tokio::test]
async fn aliases_subqueries_and_views_do_not_unmask_a_column() {
    let pg = PgCluster::start();
    let gw = Gateway::start(
        &pg,
        GatewayOptions::default().with_masking("orders", MASKING),
    );
    pg.client(User::App)
        .await
        .batch_execute(
            "create table secrets (id int primary key, ssn text);
             insert into secrets values (1, '078-05-1120');
             create view secrets_v as select id, ssn as hidden from secrets;",
        )
        .await
        .expect("setup directly");
    let token = gw.grant(&GrantArgs::default());
    for sql in [
        "select ssn from secrets",
        "select ssn as x from secrets",
        "select x from (select ssn as x from secrets) s",
        "select hidden from secrets_v",
        "select hidden as h from secrets_v",
        "select s.ssn as \"SSN\" from secrets s join secrets t using (id)",
    ] {
        let out = Psql::new(gw.conn_string(&token)).command(sql).run();
        assert_eq!(out.assert_success(), "****", "{sql}");
    }
    // tokio-postgres query_typed sends Parse, Bind, Describe, Execute in
    // one batch: the rows are matched to the description that follows Bind.
    let (client, _conn) = gw.connect(&token).await;
    let rows = client
        .query_typed("select id, ssn from secrets", &[])
        .await
        .expect("query_typed through the gateway");
    let id: i32 = rows[0].get(0);
    let ssn: &str = rows[0].get(1);
    assert_eq!((id, ssn), (1, "****"));
    // Not a plain column reference: no origin; a plan that denies such
    // queries is the answer, the column rule cannot see it.
    let out = Psql::new(gw.conn_string(&token))
        .command("select id from secrets")
        .run();
    assert_eq!(out.assert_success(), "1");
}
