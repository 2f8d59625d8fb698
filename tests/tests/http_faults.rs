//! The HTTP path fails safely and clearly, with real processes: real
//! `curl` through the gateway to small upstreams of the test's own
//! ([`ScriptedServer`]) that misbehave on purpose.
//!
//! - a TLS client certificate as the target's credential works end to end,
//!   and without it (or with the wrong CA for the upstream) the client gets
//!   a 502 that names the failure, and nothing is forwarded;
//! - an unreachable upstream is a quick 502, and other targets still work;
//! - a body cut by the upstream, or JSON that cannot be masked, cuts the
//!   client's response before anything unmasked, with an `Error` event;
//! - compressed JSON under masking is withheld (502);
//! - expired, revoked and other targets' grants get 401s, each a `Refused`
//!   event; the plan's statement limit and the gateway's rate limit 429s.
//!
//! Every case checks the store afterwards, and `gatehouse-audit verify`.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gatehouse_core::event::{Body, CloseReason, Decision, Direction, Refusal};
use gatehouse_tests::command::{render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::http_client::{Answer, KeepAlive, curl, recorded_events};
use gatehouse_tests::http_upstream::{ClientPki, Reply, ScriptedServer, mtls_server_config};
use gatehouse_tests::ports::free_port;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, TestCerts};

/// The one answer to a single request.
fn one(gw: &Gateway, token: &str, path: &str) -> (Answer, Output) {
    let (mut answers, out) = curl(gw, token, &[path]);
    (answers.remove(0), out)
}

fn grant(gw: &Gateway, targets: &[&str], extra: &[&str]) -> String {
    grant_for(gw, targets, "15m", extra)
}

fn grant_for(gw: &Gateway, targets: &[&str], ttl: &str, extra: &[&str]) -> String {
    let mut args: Vec<String> = targets
        .iter()
        .skip(1)
        .flat_map(|t| ["--target".to_owned(), (*t).to_owned()])
        .collect();
    args.extend(["--allow".to_owned(), "http:GET /**".to_owned()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    gw.grant(&GrantArgs {
        sub: "agent-faults".to_owned(),
        target: targets[0].to_owned(),
        allow: Vec::new(),
        extra: args,
        purpose: "http faults".to_owned(),
        ttl: ttl.to_owned(),
        ..GrantArgs::default()
    })
}

fn jti(token: &str) -> String {
    decode_claims(token).expect("claims")["jti"]
        .as_str()
        .expect("jti")
        .to_owned()
}

/// What the client was sent, as the record has it.
fn to_client(events: &[Body]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for e in events {
        if let Body::HttpBody(b) = e
            && b.dir == Direction::ToClient
        {
            bytes.extend_from_slice(&b.bytes);
        }
    }
    bytes
}

fn gateway_502s(events: &[Body]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Body::HttpResponse(r) if r.status == 502 && r.from_gateway))
        .count()
}

fn errors(events: &[Body]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Body::Error(err) => Some(err.message.clone()),
            _ => None,
        })
        .collect()
}

fn mkdir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir(&d).expect("mkdir");
    d
}

fn http_target(name: &str, url: &str, more: &str) -> String {
    format!("\n[targets.{name}]\nkind = \"http\"\nurl = \"{url}\"\n{more}\n")
}

/// An upstream behind TLS that requires a client certificate from its own
/// client CA, and a gateway with three targets for it: `mtls` (the right
/// CA and the client certificate), `no-cert` (no credential) and
/// `wrong-ca` (an unrelated CA).
struct Mtls {
    _pg: PgCluster,
    _dir: tempfile::TempDir,
    upstream: ScriptedServer,
    gw: Gateway,
    token: String,
}

fn mtls() -> Mtls {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().expect("dir");
    let server = TestCerts::generate(&mkdir(dir.path(), "server"));
    let unrelated = TestCerts::generate(&mkdir(dir.path(), "unrelated"));
    let client = ClientPki::generate(&mkdir(dir.path(), "client"), "gatehouse-agent-client");
    let upstream =
        ScriptedServer::start_tls(mtls_server_config(&server, &client.ca_cert), |seen| {
            let who = seen.client_cn.as_deref().unwrap_or("nobody");
            Reply::ok("text/plain", format!("hello {who}").as_bytes())
        });
    let url = format!("https://localhost:{}", upstream.port());
    let ca = |p: &Path| format!("ca_file = \"{}\"\nconnect_timeout = \"2s\"", p.display());
    let cert = |name: &str| {
        format!(
            "[targets.{name}.credential]\ncert_file = \"{}\"\nkey_file = \"{}\"",
            client.cert.display(),
            client.key.display()
        )
    };
    let extra = [
        http_target(
            "mtls",
            &url,
            &format!("{}\n{}", ca(&server.ca_cert), cert("mtls")),
        ),
        http_target("no-cert", &url, &ca(&server.ca_cert)),
        http_target(
            "wrong-ca",
            &url,
            &format!("{}\n{}", ca(&unrelated.ca_cert), cert("wrong-ca")),
        ),
    ]
    .concat();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            http: Some(String::new()),
            extra_config: extra,
            ..GatewayOptions::default()
        },
    );
    let token = grant(&gw, &["mtls", "no-cert", "wrong-ca"], &[]);
    Mtls {
        _pg: pg,
        _dir: dir,
        upstream,
        gw,
        token,
    }
}

/// The target's credential is a TLS client certificate: the upstream, which
/// requires one from its own client CA, sees it; without it, or when the
/// gateway does not trust the upstream's CA, the client gets a 502 naming
/// the failure and nothing reaches the upstream.
#[test]
fn client_certificate_and_upstream_ca() {
    let Mtls {
        upstream,
        mut gw,
        token,
        ..
    } = mtls();

    let (a, out) = one(&gw, &token, "/mtls/who");
    assert_eq!(
        (a.status, a.body.as_str()),
        (200, "hello gatehouse-agent-client"),
        "{}",
        render(&out)
    );
    assert_eq!(upstream.seen().len(), 1);

    // No client certificate: the upstream's handshake fails.
    let (a, out) = one(&gw, &token, "/no-cert/who");
    assert_eq!(a.status, 502, "{}", render(&out));
    let message = a.message();
    assert!(
        message.contains("the target no-cert could not be reached"),
        "{message}"
    );

    // The upstream's certificate leads to a CA the gateway does not trust.
    let (a, out) = one(&gw, &token, "/wrong-ca/who");
    assert_eq!(a.status, 502, "{}", render(&out));
    let message = a.message();
    assert!(
        message.contains("the target wrong-ca could not be reached")
            && message.contains("invalid peer certificate"),
        "{message}"
    );
    assert_eq!(upstream.seen().len(), 1, "nothing forwarded");

    // Still serving, on the same connection too.
    let (answers, out) = curl(&gw, &token, &["/wrong-ca/who", "/mtls/again"]);
    let got: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(got, [502, 200], "{}", render(&out));
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.client_cn.as_deref() == Some("gatehouse-agent-client")),
        "{seen:?}"
    );

    let events = recorded_events(&mut gw);
    assert_eq!(gateway_502s(&events), 3);
    let sent = String::from_utf8_lossy(&to_client(&events)).into_owned();
    assert_eq!(sent.matches("hello gatehouse-agent-client").count(), 2);
    assert_eq!(sent.matches("could not be reached").count(), 3, "{sent}");
}

/// Without the client certificate the upstream ends the handshake with a
/// `certificate_required` alert; the 502 should say so.
#[test]
fn a_missing_client_certificate_is_named() {
    let s = mtls();
    let (a, out) = one(&s.gw, &s.token, "/no-cert/who");
    assert_eq!(a.status, 502, "{}", render(&out));
    let message = a.message().to_ascii_lowercase();
    assert!(message.contains("certificate"), "{message}");
    assert!(s.upstream.seen().is_empty());
}

const SECRET: &str = "s3cr3t";

/// The faulty upstream's answers, by path.
fn faulty(line: &str) -> Reply {
    let path = line.split_whitespace().nth(1).unwrap_or("");
    match path {
        "/ok" => Reply::ok(
            "application/json",
            format!(r#"{{"name":"Ada","password":"{SECRET}-ok"}}"#).as_bytes(),
        ),
        "/cut" => Reply::raw_then_close(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
              Content-Length: 100000\r\n\r\n0123456789",
        ),
        // The upstream dies inside a secret.
        "/cut-json" => Reply::raw_then_close(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n\
                 {{\"name\":\"Ada\",\"password\":\"{SECRET}-cut"
            )
            .as_bytes(),
        ),
        // Complete, but not JSON past the secret.
        "/bad-json" => Reply::ok(
            "application/json",
            format!(r#"{{"name":"Ada","password":"{SECRET}-bad","a": tru}}"#).as_bytes(),
        ),
        // A raw control character inside the secret's string.
        "/bad-string" => Reply::ok(
            "application/json",
            format!("{{\"password\":\"{SECRET}-ctl\u{1}tail\",\"n\":1}}").as_bytes(),
        ),
        "/gzip" => {
            // gzip of {"password":"…"}: only its magic matters here.
            let body = [
                0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0x56, 0x2a, 0x48,
                0x2c, 0x2e, 0x06, 0x00,
            ];
            let mut bytes = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            bytes.extend_from_slice(&body);
            Reply {
                bytes,
                close: false,
            }
        }
        // Answers after the gateway's response_timeout (700 ms here).
        "/stall" => {
            std::thread::sleep(Duration::from_millis(2500));
            Reply::ok("text/plain", b"too late")
        }
        _ => Reply::ok("text/plain", b"fine"),
    }
}

/// An unreachable upstream, bodies cut or unmaskable, compressed JSON, and
/// the plan's statement limit: the client sees it, the record has it, and
/// nothing unmasked gets out.
#[test]
fn unreachable_cut_and_unmaskable() {
    let pg = PgCluster::start();
    let upstream = ScriptedServer::start(|seen| faulty(&seen.line));
    let closed = free_port();
    let extra = [
        http_target(
            "faulty",
            &format!("http://127.0.0.1:{}", upstream.port()),
            "response_timeout = \"700ms\"\n[targets.faulty.masking]\nkeys = { password = \"redact\" }",
        ),
        http_target(
            "closed",
            &format!("http://127.0.0.1:{closed}"),
            "connect_timeout = \"2s\"",
        ),
    ]
    .concat();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            http: Some(String::new()),
            extra_config: extra,
            ..GatewayOptions::default()
        },
    );
    let token = grant(&gw, &["faulty", "closed"], &[]);

    // Unreachable: a quick 502; then another target on the same connection.
    let started = Instant::now();
    let (answers, out) = curl(&gw, &token, &["/closed/x", "/faulty/ok"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answers.len(), 2, "{}", render(&out));
    assert_eq!(answers[0].status, 502, "{answers:?}");
    let message = answers[0].message();
    assert!(
        message.contains("the target closed could not be reached"),
        "{message}"
    );
    assert_eq!(answers[1].status, 200, "{answers:?}");
    let ok: serde_json::Value = serde_json::from_str(&answers[1].body).expect("JSON");
    assert_eq!(ok["password"], "****");

    // Cut by the upstream: the client's body is cut too (curl: error 18).
    // A target that does not answer in time: 504 naming the setting.
    let started = Instant::now();
    let (a, out) = one(&gw, &token, "/faulty/stall");
    assert_eq!(a.status, 504, "{}", render(&out));
    assert!(a.message().contains("response_timeout"), "{}", a.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let (a, out) = one(&gw, &token, "/faulty/cut");
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "0123456789", "{}", render(&out));
    assert!(!out.status.success(), "{}", render(&out));

    // Cut inside a secret: the head went out with the first masked piece,
    // and the response stops before anything unmasked.
    let (a, out) = one(&gw, &token, "/faulty/cut-json");
    assert_eq!(a.status, 200, "{}", render(&out));
    assert!(!out.status.success(), "the body is cut: {}", render(&out));
    assert!(!a.body.contains(SECRET), "{}", a.body);
    assert!(serde_json::from_str::<serde_json::Value>(&a.body).is_err());
    // JSON that cannot be masked from its first piece on: 502, withheld.
    for path in ["/faulty/bad-json", "/faulty/bad-string"] {
        let (a, out) = one(&gw, &token, path);
        assert_eq!(a.status, 502, "{path}: {}", render(&out));
        assert!(a.message().contains("withheld"), "{path}: {}", a.body);
        assert!(!a.body.contains(SECRET), "{path}: {}", a.body);
    }

    // Compressed JSON cannot be masked: withheld.
    let (a, out) = one(&gw, &token, "/faulty/gzip");
    assert_eq!(a.status, 502, "{}", render(&out));
    assert!(
        a.message()
            .contains("content-encoding gzip cannot be masked")
    );
    assert!(!out.stdout.windows(2).any(|w| w == [0x1f, 0x8b]));

    // Still serving.
    let (a, _) = one(&gw, &token, "/faulty/ok");
    assert_eq!(a.status, 200);

    // The plan's limit: requests count as statements, per session.
    let limited = grant(&gw, &["faulty"], &["--max-statements", "2"]);
    let (answers, out) = curl(&gw, &limited, &["/faulty/a", "/faulty/b", "/faulty/c"]);
    let got: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(got, [200, 200, 429], "{}", render(&out));
    let message = answers[2].message();
    assert!(
        message.contains("allows 2 requests per session"),
        "{message}"
    );
    assert_eq!(
        upstream
            .seen()
            .iter()
            .filter(|s| s.line.starts_with("GET /c "))
            .count(),
        0
    );

    let events = recorded_events(&mut gw);
    let errors = errors(&events);
    let count = |what: &str| errors.iter().filter(|m| m.contains(what)).count();
    assert!(count("the response was cut") >= 2, "{errors:?}");
    assert!(count("cannot be masked: invalid JSON") >= 2, "{errors:?}");
    assert!(
        count("content-encoding gzip cannot be masked") >= 1,
        "{errors:?}"
    );
    // The closed port, the gzip body and the two unmaskable JSON bodies.
    assert_eq!(gateway_502s(&events), 4);
    let sent = to_client(&events);
    assert!(!String::from_utf8_lossy(&sent).contains(SECRET));
    assert!(!sent.windows(2).any(|w| w == [0x1f, 0x8b]));
    assert!(events.iter().any(|e| matches!(
        e,
        Body::Verdict(v) if v.decision == Decision::Deny && v.text == "GET /c"
    )));
}

const ADMIN_TOKEN: &str = "http-faults-admin-token-0123456789";

/// Expired, revoked and other targets' grants: 401s naming why, each a
/// `Refused` event (and a session open when its grant expires or is
/// revoked ends at its next request); over the gateway's rate limit: 429
/// with Retry-After.
#[test]
fn grant_refusals_and_rate_limit() {
    let pg = PgCluster::start();
    let upstream = ScriptedServer::start(|seen| faulty(&seen.line));
    let dir = tempfile::tempdir().expect("dir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("token file");
    let admin_port = free_port();
    let url = format!("http://127.0.0.1:{}", upstream.port());
    let extra = format!(
        "{}{}\n[limits]\nstatements_per_second_per_grant = 1\n\n[admin]\n\
         listen = \"127.0.0.1:{admin_port}\"\n[[admin.tokens]]\nname = \"alice\"\n\
         token_file = \"{}\"\n",
        http_target("api", &url, ""),
        http_target("other", &url, ""),
        token_file.display()
    );
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            http: Some(String::new()),
            extra_config: extra,
            ..GatewayOptions::default()
        },
    );
    // Valid for 1 s, plus the gateway's 5 s leeway.
    let expiring = grant_for(&gw, &["api"], "1s", &[]);
    let minted = Instant::now();
    let mut early = KeepAlive::open(&gw);
    let a = early.get("/api/hello", &expiring).expect("an answer");
    assert_eq!((a.status, a.body.as_str()), (200, "fine"));

    // Another target's grant.
    let other = grant(&gw, &["other"], &[]);
    let (a, out) = one(&gw, &other, "/api/hello");
    assert_eq!(a.status, 401, "{}", render(&out));
    let message = a.message();
    assert!(message.contains("api"), "{message}");

    // Revoked: works, then ends its open session, then is refused.
    let revoked = grant(&gw, &["api"], &[]);
    let mut held = KeepAlive::open(&gw);
    let a = held.get("/api/hello", &revoked).expect("an answer");
    assert_eq!(a.status, 200);
    let out = run(
        Command::new(Gateway::binary())
            .args(["grants", "revoke", &jti(&revoked), "--reason", "leaked"])
            .arg("--admin")
            .arg(format!("http://127.0.0.1:{admin_port}"))
            .arg("--token-file")
            .arg(&token_file),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", render(&out));
    std::thread::sleep(Duration::from_millis(1100));
    let a = held.get("/api/hello", &revoked).expect("an answer");
    assert_eq!(a.status, 401, "{a:?}");
    assert!(
        a.message()
            .contains(&format!("grant {} was revoked", jti(&revoked))),
        "{a:?}"
    );
    assert!(held.get("/api/hello", &revoked).is_none(), "closed");
    let (a, out) = one(&gw, &revoked, "/api/hello");
    assert_eq!(a.status, 401, "{}", render(&out));
    let message = a.message();
    assert!(
        message.contains(&format!("grant {} was revoked", jti(&revoked))),
        "{message}"
    );

    // A burst over 1 request per second per grant.
    let bursty = grant(&gw, &["api"], &[]);
    let (answers, out) = curl(&gw, &bursty, &["/api/1", "/api/2", "/api/3"]);
    let got: Vec<(u16, &str)> = answers
        .iter()
        .map(|a| (a.status, a.retry_after.as_str()))
        .collect();
    assert_eq!(got[0], (200, ""), "{}", render(&out));
    assert!(got[1..].iter().all(|g| *g == (429, "1")), "{got:?}");
    let message = answers[1].message();
    assert!(message.contains("1 requests per second"), "{message}");
    assert!(
        upstream
            .seen()
            .iter()
            .all(|s| !s.line.starts_with("GET /2 "))
    );

    // Expired (past the leeway).
    let wait = Duration::from_millis(7_000).saturating_sub(minted.elapsed());
    std::thread::sleep(wait);
    let a = early.get("/api/hello", &expiring).expect("an answer");
    assert_eq!(a.status, 401, "{a:?}");
    assert!(a.message().contains("has expired"), "{a:?}");
    assert!(early.get("/api/hello", &expiring).is_none(), "closed");
    let (a, out) = one(&gw, &expiring, "/api/hello");
    assert_eq!(a.status, 401, "{}", render(&out));
    let message = a.message();
    assert!(message.contains("expired"), "{message}");

    // Still serving.
    let (a, _) = one(&gw, &bursty, "/api/hello");
    assert_eq!(a.status, 200);

    let events = recorded_events(&mut gw);
    let refused: Vec<(Refusal, Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            Body::Refused(r) => Some((r.reason, r.jti.clone())),
            _ => None,
        })
        .collect();
    // An expired grant's claims are not trusted, so not its jti either.
    for (reason, jti) in [
        (Refusal::WrongTarget, Some(jti(&other))),
        (Refusal::Revoked, Some(jti(&revoked))),
        (Refusal::Expired, None),
    ] {
        assert!(
            refused.contains(&(reason, jti.clone())),
            "{reason:?}: {refused:?}"
        );
    }
    assert_eq!(refused.len(), 3, "{refused:?}");
    // The open sessions ended for their reasons.
    let closed: Vec<CloseReason> = events
        .iter()
        .filter_map(|e| match e {
            Body::Closed(c) => Some(c.reason),
            _ => None,
        })
        .collect();
    assert!(closed.contains(&CloseReason::Revoked), "{closed:?}");
    assert!(closed.contains(&CloseReason::LimitReached), "{closed:?}");
    assert_eq!(upstream.seen().len(), 4, "{:?}", upstream.seen());
    let denied = events
        .iter()
        .filter(|e| matches!(e, Body::Verdict(v) if v.decision == Decision::Deny))
        .count();
    assert_eq!(denied, 2, "the burst's two refusals");
}
