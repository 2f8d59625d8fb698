//! TLS on the client side of the gateway: `sslmode=require` encrypts,
//! `verify-full` verifies against the test CA (and fails against another),
//! plaintext is refused with a message that says TLS is required (SQLSTATE
//! 28000) unless `allow_plaintext = true`, PostgreSQL 17's direct TLS
//! (no SSLRequest, ALPN `postgresql`) works and without ALPN is refused, and
//! plaintext bytes smuggled after an SSLRequest are refused.
//!
//! psql 15 cannot do direct TLS, so a raw client does: rustls with ALPN
//! `postgresql`, then a hand-built StartupMessage and password message.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::time::Duration;

use gatehouse_core::pg::encode;
use gatehouse_tests::wire::{self, RawConn};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, TestCerts};
use tokio_postgres::config::{SslMode, SslNegotiation};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

const ALPN: &[u8] = b"postgresql";

fn start(options: GatewayOptions) -> (PgCluster, Gateway, String) {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, options);
    let token = gw.grant(&GrantArgs::default());
    (pg, gw, token)
}

fn plaintext_options() -> GatewayOptions {
    GatewayOptions {
        allow_plaintext: true,
        ..GatewayOptions::default()
    }
}

/// `conn` with its `sslmode=…` replaced.
fn with_sslmode(conn: &str, mode: &str) -> String {
    let kept: Vec<&str> = conn
        .split(' ')
        .filter(|kv| !kv.starts_with("sslmode="))
        .collect();
    format!("{} sslmode={mode}", kept.join(" "))
}

#[test]
fn sslmode_require_and_verify_full() {
    let (_pg, gw, token) = start(GatewayOptions::default());

    let out = Psql::new(gw.conn_string(&token))
        .command("\\conninfo")
        .command("select 'encrypted'")
        .run();
    let stdout = out.assert_success();
    assert!(
        stdout.contains("SSL connection (protocol: TLSv1.3"),
        "{out}"
    );
    assert!(stdout.ends_with("encrypted"), "{out}");

    let out = Psql::new(gw.conn_string_verify_full(&token))
        .command("select 'verified'")
        .run();
    assert_eq!(out.assert_success(), "verified");
    // The certificate names localhost as well as 127.0.0.1.
    let by_name = gw
        .conn_string_verify_full(&token)
        .replace("host=127.0.0.1", "host=localhost");
    let out = Psql::new(by_name).command("select 'by name'").run();
    assert_eq!(out.assert_success(), "by name");

    // Another CA does not vouch for the gateway.
    let other = gw.dir().join("other-ca");
    std::fs::create_dir(&other).unwrap();
    let other = TestCerts::generate(&other);
    let conn = gw.conn_string_verify_full(&token).replace(
        &gw.certs().unwrap().ca_cert.display().to_string(),
        &other.ca_cert.display().to_string(),
    );
    let out = Psql::new(conn).command("select 1").run();
    // Both test CAs share a name, so OpenSSL may fail on the signature
    // ("EVP lib") rather than on a missing issuer.
    let stderr = out.assert_failure();
    assert!(
        stderr.contains("certificate verify failed") || stderr.contains("SSL error"),
        "{out}"
    );

    // sslmode=prefer ends up encrypted.
    let out = Psql::new(with_sslmode(&gw.conn_string(&token), "prefer"))
        .command("\\conninfo")
        .run();
    assert!(out.assert_success().contains("SSL connection"), "{out}");
}

#[tokio::test]
async fn plaintext_is_refused_with_a_message_about_tls() {
    let (_pg, gw, token) = start(GatewayOptions::default());

    let out = Psql::new(with_sslmode(&gw.conn_string(&token), "disable"))
        .command("select 1")
        .run();
    let stderr = out.assert_failure();
    assert!(stderr.contains("requires TLS"), "{out}");
    assert!(
        !stderr.contains(&token),
        "the error echoes the grant: {out}"
    );

    let mut config = gw.pg_config(&token);
    config.ssl_mode(SslMode::Disable);
    let err = config
        .connect(tokio_postgres::NoTls)
        .await
        .err()
        .expect("a plaintext connection was accepted");
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{err}"
    );
    let db = err.as_db_error().expect("a server error");
    assert!(db.message().contains("TLS"), "{}", db.message());
    assert_eq!(db.severity(), "FATAL");

    // Refused before any password is asked for: the grant is never sent
    // over plaintext.
    let mut c = RawConn::plain(gw.port());
    c.send(&encode::startup_message([
        ("user", "agent-7"),
        ("database", "orders"),
    ]));
    let frames = c.until_ready();
    assert_eq!(wire::tags(&frames), "E", "{}", wire::describe(&frames));
    assert_eq!(wire::error(&frames).unwrap().0, "28000");
    assert!(c.closes());
}

#[tokio::test]
async fn allow_plaintext_lets_plaintext_in() {
    let (_pg, gw, token) = start(plaintext_options());
    let out = Psql::new(with_sslmode(&gw.conn_string(&token), "disable"))
        .command("\\conninfo")
        .command("select 'plain'")
        .run();
    let stdout = out.assert_success();
    assert!(!stdout.contains("SSL connection"), "{out}");
    assert!(stdout.ends_with("plain"), "{out}");

    let mut config = gw.pg_config(&token);
    config.ssl_mode(SslMode::Disable);
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let n: i32 = client.query_one("select 5", &[]).await.unwrap().get(0);
    assert_eq!(n, 5);

    // TLS still works on the same listener.
    let out = Psql::new(gw.conn_string(&token))
        .command("\\conninfo")
        .run();
    assert!(out.assert_success().contains("SSL connection"), "{out}");

    // A gateway without a certificate answers SSLRequest with `N`.
    let (_pg2, bare, token) = start(GatewayOptions {
        tls: false,
        ..plaintext_options()
    });
    let out = Psql::new(with_sslmode(&bare.conn_string(&token), "prefer"))
        .command("select 'fell back'")
        .run();
    assert_eq!(out.assert_success(), "fell back");
    let out = Psql::new(with_sslmode(&bare.conn_string(&token), "require"))
        .command("select 1")
        .run();
    assert!(
        out.assert_failure().contains("server does not support SSL"),
        "{out}"
    );
}

#[test]
fn direct_tls_with_alpn() {
    let (_pg, gw, token) = start(GatewayOptions::default());
    let mut config = gw.certs().unwrap().client_config();
    config.alpn_protocols = vec![ALPN.to_vec()];
    let mut c = RawConn::direct_tls(gw.port(), config).expect("the direct TLS handshake");
    assert_eq!(c.alpn().as_deref(), Some(ALPN));

    let login = c.login_ok("agent-7", "orders", &token);
    assert_eq!(&wire::tags(&login)[..2], "RR", "{}", wire::describe(&login));
    let rows = wire::rows(&c.simple_query("select current_user, 'direct'"));
    assert_eq!(rows, [[Some("app".to_owned()), Some("direct".to_owned())]]);
    c.send(encode::terminate().bytes());
    assert!(c.closes());
}

#[tokio::test]
async fn direct_tls_with_tokio_postgres() {
    let (_pg, gw, token) = start(GatewayOptions::default());
    let mut tls = gw.certs().unwrap().client_config();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = gw.pg_config(&token);
    config.ssl_negotiation(SslNegotiation::Direct);
    let (client, conn) = config
        .connect(MakeRustlsConnect::new(tls))
        .await
        .expect("direct TLS through the gateway");
    tokio::spawn(conn);
    let n: i32 = client.query_one("select 17", &[]).await.unwrap().get(0);
    assert_eq!(n, 17);
}

#[test]
fn direct_tls_without_alpn_is_refused() {
    let (_pg, gw, token) = start(GatewayOptions::default());

    // No ALPN at all: the handshake completes, then the gateway closes
    // without reading a startup packet.
    let config = gw.certs().unwrap().client_config();
    match RawConn::direct_tls(gw.port(), config) {
        Err(_) => {} // refused during the handshake: also fine
        Ok(mut c) => {
            assert_eq!(c.alpn(), None);
            let _ = c.try_send(&encode::startup_message([
                ("user", "agent-7"),
                ("database", "orders"),
            ]));
            let first = c.try_frame();
            assert!(
                matches!(first, Err(wire::Ended::Closed(_))),
                "direct TLS without ALPN got an answer: {first:?}"
            );
        }
    }

    // Another protocol's ALPN: refused in the handshake.
    let mut config = gw.certs().unwrap().client_config();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let err = RawConn::direct_tls(gw.port(), config)
        .err()
        .expect("a handshake with ALPN http/1.1 succeeded");
    assert!(
        err.to_string().contains("NoApplicationProtocol"),
        "unexpected handshake error: {err}"
    );

    // The gateway goes on serving.
    let out = Psql::new(gw.conn_string(&token)).command("select 1").run();
    assert_eq!(out.assert_success(), "1");
}

#[test]
fn plaintext_after_ssl_request_is_refused() {
    // CVE-2021-23214: bytes sent together with the SSLRequest, before the
    // handshake, must not be read as if they had come over TLS.
    let (_pg, gw, token) = start(plaintext_options());
    let mut c = RawConn::plain(gw.port());
    let mut bytes = 8i32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&80_877_103i32.to_be_bytes());
    bytes.extend_from_slice(&encode::startup_message([
        ("user", "agent-7"),
        ("database", "orders"),
    ]));
    c.send(&bytes);
    let frames = c.until_ready();
    assert_eq!(wire::tags(&frames), "E", "{}", wire::describe(&frames));
    assert_eq!(wire::error(&frames).unwrap().0, "08P01");
    assert!(c.closes());

    let out = Psql::new(gw.conn_string(&token))
        .command("select 1")
        .timeout(Duration::from_secs(30))
        .run();
    assert_eq!(out.assert_success(), "1");
}
