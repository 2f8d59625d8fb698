//! Grants from an external identity provider: the gateway fetches the
//! provider's JWK set from a URL (a tiny HTTP server in this test), accepts
//! ES256 tokens without a `plan` through a named policy their `scope`
//! selects, picks up a new key after rotation, and refuses a removed key.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gatehouse_core::grant::{KeyAlgorithm, sign_with_pem};
use gatehouse_tests::{Gateway, GatewayOptions, PgCluster};
use serde_json::json;

const EC1_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLOjjkKrg75UETejF
ui0UTAUCJqukxXoGjGh/UemiqVGhRANCAARcbSn6JbyyJYTsg58cwcS5xwI2Vn1N
M25XPe0BSmND/F1A3J9BvSJ7/3XOuNywNkvM/7xC96TfNQEgWm9zw9gA
-----END PRIVATE KEY-----
";
const EC1: (&str, &str) = (
    "XG0p-iW8siWE7IOfHMHEuccCNlZ9TTNuVz3tAUpjQ_w",
    "XUDcn0G9Inv_dc643LA2S8z_vEL3pN81ASBab3PD2AA",
);
const EC2_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4z+fUzsp1BvRQtm7
zt+ZGeAMcDuSrz/VGbfAb/mV2cKhRANCAASokr0tHPbXYRe6p/CwEwwpZ0ix5k8E
VL41aNeyN9uD6mGXbhFpjrdUHYS+mLS1eEDUYbpEt3o+Kk8wTmbGUF8t
-----END PRIVATE KEY-----
";
const EC2: (&str, &str) = (
    "qJK9LRz212EXuqfwsBMMKWdIseZPBFS-NWjXsjfbg-o",
    "YZduEWmOt1QdhL6YtLV4QNRhukS3ej4qTzBOZsZQXy0",
);

/// How often the gateway re-reads the JWK set in this test.
const REFRESH: Duration = Duration::from_secs(2);

fn jwks(keys: &[(&str, (&str, &str))]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|(kid, (x, y))| {
            json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                   "kid": kid, "x": x, "y": y})
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// Serves whatever `body` holds as JSON to every request.
fn serve_jwks(body: Arc<Mutex<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the JWKS server");
    let addr = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = body.lock().expect("body").clone();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A token as a provider would mint it: no plan, no purpose, no nbf.
fn idp_token(kid: &str, pem: &str, jti: &str, scope: &str) -> String {
    let now = now_s();
    let payload = json!({
        "iss": "gatehouse",
        "sub": "svc-billing",
        "aud": ["gatehouse"],
        "iat": now,
        "exp": now + 600,
        "jti": jti,
        "scope": scope,
    });
    sign_with_pem(&payload, KeyAlgorithm::Es256, kid, pem).expect("sign")
}

async fn refused(gw: &Gateway, token: &str) -> (String, String) {
    let err = match gw.try_connect(token).await {
        Ok(_) => panic!("the gateway let the grant in"),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {err:?}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_policies_and_key_rotation() {
    let cluster = PgCluster::start();
    let body = Arc::new(Mutex::new(jwks(&[("k1", EC1)])));
    let url = serve_jwks(Arc::clone(&body));
    let options = GatewayOptions {
        grants_config: format!(
            "jwks_url = \"{url}\"\njwks_refresh_interval = \"{}s\"\n\
             jwks_refresh_min_interval = \"1s\"",
            REFRESH.as_secs()
        ),
        extra_config: r#"
[policies.billing_read]
targets = ["orders"]
allow = [{ ops = ["select"], relations = ["public.*"] }]

[[grants.policy_claims]]
claim = "scope"
value = "billing-read"
policy = "billing_read"
"#
        .to_owned(),
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(&cluster, options);

    // The policy the scope selects allows SELECT and nothing else.
    let old = idp_token("k1", EC1_PEM, "idp-1", "openid billing-read");
    let (client, _conn) = gw.connect(&old).await;
    let row = client
        .query_one("SELECT count(*) FROM invoices", &[])
        .await
        .expect("an allowed SELECT");
    assert!(row.get::<_, i64>(0) > 0);
    let denied = client
        .simple_query("DELETE FROM invoices WHERE id = -1")
        .await
        .expect_err("DELETE is not in the policy");
    assert!(denied.as_db_error().is_some(), "{denied:?}");
    drop(client);

    // Claims that select no policy.
    let (code, message) = refused(&gw, &idp_token("k1", EC1_PEM, "idp-2", "openid")).await;
    assert_eq!(code, "28000", "{message}");
    assert!(
        message.contains("the grant has no plan and its claims select no policy"),
        "{message}"
    );

    // Rotation: a new key appears at the URL and is used at once.
    *body.lock().expect("body") = jwks(&[("k1", EC1), ("k2", EC2)]);
    let new = idp_token("k2", EC2_PEM, "idp-3", "billing-read");
    let (client, _conn) = gw.connect(&new).await;
    client
        .query_one("SELECT count(*) FROM invoices", &[])
        .await
        .expect("SELECT with the new key");
    drop(client);

    // The old key is removed: after the next refresh its grants are
    // refused, the cached one too.
    *body.lock().expect("body") = jwks(&[("k2", EC2)]);
    tokio::time::sleep(REFRESH * 2).await;
    for token in [old, idp_token("k1", EC1_PEM, "idp-4", "billing-read")] {
        let (code, message) = refused(&gw, &token).await;
        assert_eq!(code, "28P01", "{message}");
        assert!(
            message.contains("\"k1\"") && message.contains("does not know"),
            "{message}"
        );
    }
    let again = idp_token("k2", EC2_PEM, "idp-5", "billing-read");
    gw.connect(&again).await;
}
