//! The gateway logs in to the target with the target's credential, by
//! every authentication method PostgreSQL offers over a password
//! (SCRAM-SHA-256, MD5, cleartext) and trust. The session then runs as the
//! upstream role, never as the agent. A wrong upstream password, or a
//! target that is down, gives the client a clear FATAL error (SQLSTATE
//! 08001) that does not contain the password.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::{Duration, Instant};

use gatehouse_tests::ports::free_port;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, Target, User};
use tokio_postgres::error::SqlState;

const WRONG_PASSWORD: &str = "wr0ng-Upstream-Passw0rd";
const AGENT: &str = "agent-7";

/// A target for `user` under `name` whose configured password is wrong.
fn wrong_password_target(name: &str, user: User) -> Target {
    Target {
        name: name.to_owned(),
        password: Some(WRONG_PASSWORD.to_owned()),
        ..Target::for_user(user)
    }
}

fn grant_for(gw: &Gateway, target: &str) -> String {
    gw.grant(&GrantArgs {
        sub: AGENT.to_owned(),
        target: target.to_owned(),
        ..GrantArgs::default()
    })
}

#[tokio::test]
async fn every_upstream_auth_method_logs_in_as_the_upstream_role() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default().with_auth_targets());

    for user in [User::App, User::Md5, User::Clear, User::Trust] {
        let target = Target::for_user(user);
        let token = grant_for(&gw, &target.name);

        let out = Psql::new(gw.conn_string_to(&target.name, &token))
            .command("select current_user, session_user, current_database()")
            .run();
        assert_eq!(
            out.assert_success(),
            format!("{0}|{0}|orders", user.name()),
            "{} ({})",
            target.name,
            user.auth_method()
        );

        let mut config = gw.pg_config(&token);
        config.dbname(&target.name);
        let (client, _conn) = match gw.try_connect_with(&config).await {
            Ok(pair) => pair,
            Err(e) => panic!("{}: {e}", target.name),
        };
        let row = client
            .query_one(
                "select current_user::text, (select count(*) from invoices) > 0",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user.name());
        assert!(row.get::<_, bool>(1));
    }

    // The server saw each upstream role log in, and never the agent.
    let log = pg.statement_log();
    for user in [User::App, User::Md5, User::Clear, User::Trust] {
        assert!(
            log.contains(&format!(
                "connection authorized: user={} database=orders",
                user.name()
            )),
            "{} never logged in upstream",
            user.name()
        );
    }
    assert!(
        !log.contains(AGENT),
        "the agent's name reached PostgreSQL:\n{log}"
    );
}

#[tokio::test]
async fn a_wrong_upstream_password_is_a_clear_error_without_the_password() {
    let pg = PgCluster::start();
    let options = GatewayOptions {
        extra_targets: vec![
            wrong_password_target("orders_badscram", User::App),
            wrong_password_target("orders_badmd5", User::Md5),
            wrong_password_target("orders_badclear", User::Clear),
        ],
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(&pg, options);

    for (target, user) in [
        ("orders_badscram", User::App),
        ("orders_badmd5", User::Md5),
        ("orders_badclear", User::Clear),
    ] {
        let token = grant_for(&gw, target);
        let mut config = gw.pg_config(&token);
        config.dbname(target);
        let err = gw
            .try_connect_with(&config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{target}: logged in with a wrong upstream password"));
        assert_eq!(
            err.code(),
            Some(&SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
            "{target}: {err}"
        );
        let db = err.as_db_error().expect("a server error");
        assert_eq!(db.severity(), "FATAL");
        let message = db.to_string();
        assert!(message.contains(target), "{target}: {message}");
        assert!(
            message.contains("password authentication failed"),
            "{target}: {message}"
        );
        assert!(
            !message.contains(WRONG_PASSWORD) && !message.contains(user.password().unwrap()),
            "{target}: the error carries a password: {message}"
        );

        let out = Psql::new(gw.conn_string_to(target, &token))
            .command("select 1")
            .run();
        let stderr = out.assert_failure();
        assert!(stderr.contains("could not open target"), "{out}");
        assert!(!stderr.contains(WRONG_PASSWORD), "{out}");
        assert!(!stderr.contains(&token), "{out}");
    }

    // Nor does the gateway's log hold the password.
    assert!(
        !gw.log().contains(WRONG_PASSWORD),
        "the gateway logged the upstream password"
    );

    // The gateway goes on serving good targets.
    let token = grant_for(&gw, "orders");
    let out = Psql::new(gw.conn_string(&token)).command("select 1").run();
    assert_eq!(out.assert_success(), "1");
}

#[tokio::test]
async fn a_target_that_is_down_is_a_clear_error() {
    let pg = PgCluster::start();
    let nobody = free_port();
    let options = GatewayOptions {
        extra_config: format!(
            "[targets.orders_down]\nhost = \"127.0.0.1\"\nport = {nobody}\n\
             database = \"orders\"\nuser = \"app\"\n\
             password_env = \"GATEHOUSE_ORDERS_DOWN_PASSWORD\"\n"
        ),
        env: vec![(
            "GATEHOUSE_ORDERS_DOWN_PASSWORD".to_owned(),
            WRONG_PASSWORD.to_owned(),
        )],
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(&pg, options);
    let token = grant_for(&gw, "orders_down");
    let mut config = gw.pg_config(&token);
    config.dbname("orders_down");
    let started = Instant::now();
    let Err(err) = gw.try_connect_with(&config).await else {
        panic!("connected to a target that is down");
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        err.code(),
        Some(&SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
        "{err}"
    );
    let message = err
        .as_db_error()
        .expect("a server error")
        .message()
        .to_owned();
    assert!(message.contains("orders_down"), "{message}");
    assert!(!message.contains(WRONG_PASSWORD), "{message}");
}
