//! The test cluster itself, straight from tokio-postgres and psql with no
//! gateway: every role logs in with the authentication method it stands
//! for, the seed data is there, the statement log records what ran, and the
//! cluster survives a crash-like stop.

use std::time::{Duration, Instant};

use gatehouse_tests::ports::port_accepts;
use gatehouse_tests::{INVOICES, PgCluster, Psql, User};

#[tokio::test]
async fn every_role_logs_in_and_reads_the_invoices() {
    let pg = PgCluster::start();
    for user in User::ALL {
        let client = pg.client(user).await;
        let who: String = client
            .query_one("select current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, user.name());
        let rows = client
            .query(
                "select id, customer, total::text from invoices order by id",
                &[],
            )
            .await
            .unwrap();
        let got: Vec<(i32, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let want: Vec<(i32, String, String)> = INVOICES
            .iter()
            .map(|(id, c, t)| (*id, c.to_string(), t.to_string()))
            .collect();
        assert_eq!(got, want, "as {}", user.name());
    }
}

#[tokio::test]
async fn password_roles_refuse_a_wrong_or_missing_password() {
    let pg = PgCluster::start();
    for user in [User::App, User::Md5, User::Clear] {
        let err = pg
            .try_client(user.name(), Some("wrong"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{} logged in with a wrong password", user.name()));
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "{}: {err}",
            user.name()
        );
        assert!(
            pg.try_client(user.name(), None).await.is_err(),
            "{} logged in without a password",
            user.name()
        );
    }
}

#[tokio::test]
async fn roles_use_the_configured_auth_methods_and_password_hashes() {
    let pg = PgCluster::start();
    let su = pg.superuser_client().await;

    for user in User::ALL {
        let rows = su
            .query(
                "select auth_method from pg_hba_file_rules \
                 where type = 'host' and $1 = any(user_name)",
                &[&user.name()],
            )
            .await
            .unwrap();
        let methods: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(methods, [user.auth_method()], "{}", user.name());
    }

    let hash = |role: &'static str| {
        let su = &su;
        async move {
            su.query_one(
                "select coalesce(rolpassword, '') from pg_authid where rolname = $1",
                &[&role],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    assert!(hash("app").await.starts_with("SCRAM-SHA-256$"));
    assert!(hash("clearuser").await.starts_with("SCRAM-SHA-256$"));
    let md5 = hash("md5user").await;
    assert!(md5.starts_with("md5") && md5.len() == 35, "{md5}");
    assert_eq!(hash("trustuser").await, "");
}

#[tokio::test]
async fn statement_log_records_simple_and_extended_statements() {
    let pg = PgCluster::start();
    let client = pg.client(User::App).await;
    client.simple_query("select 'simple-marker'").await.unwrap();
    client
        .query("select $1::text as extended_marker", &[&"x"])
        .await
        .unwrap();

    let statements = pg.statements();
    assert!(
        statements.iter().any(|s| s == "select 'simple-marker'"),
        "{statements:#?}"
    );
    assert!(
        statements
            .iter()
            .any(|s| s == "select $1::text as extended_marker"),
        "{statements:#?}"
    );
    assert!(
        pg.statement_log()
            .contains("connection authorized: user=app")
    );
}

#[test]
fn psql_runs_commands_files_and_copy_from_stdin() {
    let pg = PgCluster::start();
    let out = Psql::new(pg.conn_string(User::Md5))
        .command("select customer from invoices where id = 2")
        .run();
    assert_eq!(out.assert_success(), "globex");

    let script = pg.dir().join("script.sql");
    std::fs::write(&script, "select count(*) from invoices;\n").unwrap();
    let out = Psql::new(pg.conn_string(User::Clear)).file(&script).run();
    assert_eq!(out.assert_success(), INVOICES.len().to_string());

    let out = Psql::new(pg.conn_string(User::App))
        .command("copy invoices from stdin with (format csv)")
        .stdin("10,umbrella,1.00\n11,hooli,2.00\n")
        .run();
    assert_eq!(out.assert_success(), "COPY 2");

    let out = Psql::new(pg.conn_string(User::Trust))
        .command("select sum(id) from invoices where id >= 10")
        .run();
    assert_eq!(out.assert_success(), "21");

    let out = Psql::new(pg.conn_string(User::App))
        .command("select * from no_such_table")
        .run();
    assert!(out.assert_failure().contains("no_such_table"), "{out}");
}

#[tokio::test]
async fn committed_rows_survive_kill_and_stop() {
    let mut pg = PgCluster::start();
    let client = pg.client(User::App).await;
    client
        .execute("insert into invoices values (100, 'survivor', 1)", &[])
        .await
        .unwrap();

    pg.kill();
    assert!(!pg.is_running());
    assert!(!port_accepts(pg.port()));
    assert!(client.simple_query("select 1").await.is_err());

    pg.restart();
    assert_eq!(survivors(&pg).await, 1);

    pg.stop();
    pg.restart();
    assert_eq!(survivors(&pg).await, 1);
}

#[test]
fn clusters_are_independent_and_cleaned_up() {
    let started = Instant::now();
    let a = PgCluster::start();
    let first = started.elapsed();
    let started = Instant::now();
    let b = PgCluster::start();
    let second = started.elapsed();
    eprintln!("cluster start: first {first:?} (may include the template), second {second:?}");
    assert!(second < Duration::from_secs(10), "{second:?}");

    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    let (dir, port) = (a.dir().to_path_buf(), a.port());
    assert!(port_accepts(port));
    drop(a);
    assert!(!dir.exists(), "{} was not removed", dir.display());
    assert!(!port_accepts(port), "port {port} still accepts");
    assert!(port_accepts(b.port()));
}

async fn survivors(pg: &PgCluster) -> i64 {
    pg.client(User::App)
        .await
        .query_one("select count(*) from invoices where id = 100", &[])
        .await
        .unwrap()
        .get(0)
}
