use std::io::{Read as _, Write as _};
use std::net::TcpListener;

use serde_json::json;

use super::*;

#[test]
fn limiter_allows_one_refresh_per_interval() {
    let t0 = Instant::now();
    let mut l = RefreshLimiter::new(Duration::from_secs(30));
    assert!(l.allow(t0));
    assert!(!l.allow(t0));
    assert!(!l.allow(t0 + Duration::from_secs(29)));
    assert!(l.allow(t0 + Duration::from_secs(30)));
    assert!(!l.allow(t0 + Duration::from_secs(31)));
    let mut zero = RefreshLimiter::new(Duration::ZERO);
    assert!(zero.allow(t0));
    assert!(zero.allow(t0));
}

#[test]
fn urls() {
    assert!(check_url("https://idp.example/.well-known/jwks.json").is_ok());
    assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
    assert!(check_url("ftp://idp.example/jwks").is_err());
    assert!(check_url("idp.example/jwks").is_err());
    assert!(check_url("not a url").is_err());
}

const EC1: (&str, &str) = (
    "XG0p-iW8siWE7IOfHMHEuccCNlZ9TTNuVz3tAUpjQ_w",
    "XUDcn0G9Inv_dc643LA2S8z_vEL3pN81ASBab3PD2AA",
);
const EC2: (&str, &str) = (
    "qJK9LRz212EXuqfwsBMMKWdIseZPBFS-NWjXsjfbg-o",
    "YZduEWmOt1QdhL6YtLV4QNRhukS3ej4qTzBOZsZQXy0",
);

fn jwks(keys: &[(&str, (&str, &str))]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|(kid, (x, y))| json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": x, "y": y}))
        .collect();
    json!({ "keys": keys }).to_string()
}

/// Serves the body in `body` to every GET, counting requests.
fn serve(body: Arc<Mutex<String>>, hits: Arc<Mutex<u32>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            *hits.lock().unwrap() += 1;
            let body = body.lock().unwrap().clone();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/jwks.json")
}

fn live(url: &str, interval: Duration, min_interval: Duration) -> anyhow::Result<LiveVerifier> {
    let sources = Sources {
        fixed: KeySet::new(),
        file: None,
        url: Some(check_url(url).unwrap()),
    };
    let template = Verifier {
        keys: KeySet::new(),
        issuer: "idp".into(),
        audience: "gatehouse".into(),
        leeway_s: 5,
    };
    LiveVerifier::spawn(
        sources,
        template,
        PolicySelector::default(),
        interval,
        min_interval,
    )
}

#[test]
fn rotation_and_the_refresh_rate_limit() {
    let body = Arc::new(Mutex::new(jwks(&[("k1", EC1)])));
    let hits = Arc::new(Mutex::new(0));
    let url = serve(Arc::clone(&body), Arc::clone(&hits));
    let v = live(&url, Duration::from_secs(3600), Duration::from_millis(300)).unwrap();
    assert!(v.current().keys.contains("k1"));
    assert_eq!(*hits.lock().unwrap(), 1);

    // A new key appears: the first unknown kid re-reads at once.
    *body.lock().unwrap() = jwks(&[("k1", EC1), ("k2", EC2)]);
    assert!(v.refresh_for_unknown_kid());
    assert!(v.current().keys.contains("k2"));
    assert_eq!(*hits.lock().unwrap(), 2);

    // The old key goes; a second request within the interval is refused
    // without a fetch, one after it re-reads.
    *body.lock().unwrap() = jwks(&[("k2", EC2)]);
    assert!(!v.refresh_for_unknown_kid());
    assert_eq!(*hits.lock().unwrap(), 2);
    assert!(v.current().keys.contains("k1"));
    std::thread::sleep(Duration::from_millis(350));
    assert!(v.refresh_for_unknown_kid());
    assert!(!v.current().keys.contains("k1"));
    assert_eq!(*hits.lock().unwrap(), 3);
}

#[test]
fn periodic_refresh_and_failures_keep_the_old_keys() {
    let body = Arc::new(Mutex::new(jwks(&[("k1", EC1)])));
    let hits = Arc::new(Mutex::new(0));
    let url = serve(Arc::clone(&body), Arc::clone(&hits));
    let v = live(&url, Duration::from_millis(200), Duration::from_secs(3600)).unwrap();
    *body.lock().unwrap() = "not a JWK set".to_owned();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        v.current().keys.contains("k1"),
        "a failed re-read keeps the keys"
    );
    *body.lock().unwrap() = jwks(&[("k2", EC2)]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while v.current().keys.contains("k1") {
        assert!(Instant::now() < deadline, "no periodic refresh");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(v.current().keys.contains("k2"));
}

#[test]
fn an_unreachable_url_fails_at_start() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let e = live(&url, Duration::from_secs(60), Duration::from_secs(30)).unwrap_err();
    let text = format!("{e:#}");
    assert!(
        text.contains("grants.jwks_url: cannot fetch the JWK set from"),
        "{text}"
    );
}
