//! HTTP through the gateway with real `curl` to a real nginx: the grant as
//! bearer token, the target's credential injected, verdicts, masking of
//! JSON, streaming without buffering, HTTP/1.1 framing (keep-alive,
//! pipelining, chunked and `Expect: 100-continue` bodies), limits, and
//! malformed requests that never reach the target.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use gatehouse_core::event::{Body, Decision, Direction};
use gatehouse_store::Reader;
use gatehouse_tests::command::{audit_verify, render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::nginx::{LARGE_LEN, Nginx, large_content};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};

const USER: &str = "svc-orders";
const PASSWORD: &str = "upstream-secret-pw";

fn start(nginx: &Nginx, pg: &PgCluster) -> Gateway {
    let options = GatewayOptions {
        http: Some("max_body_bytes = \"64KiB\"\nmax_header_bytes = \"16KiB\"".to_owned()),
        env: vec![("ORDERS_API_PASSWORD".to_owned(), PASSWORD.to_owned())],
        extra_config: format!(
            r#"
[targets.orders-api]
kind = "http"
url = "{url}"
hosts = ["orders-api.example"]
[targets.orders-api.credential]
basic_user = "{USER}"
password_env = "ORDERS_API_PASSWORD"
[targets.orders-api.masking]
keys = {{ password = "redact", token = "redact" }}
detectors = {{ email = "redact" }}
"#,
            url = nginx.url(),
        ),
        ..GatewayOptions::default()
    };
    Gateway::start(pg, options)
}

fn grant(gw: &Gateway, rules: &[&str]) -> String {
    gw.grant(&GrantArgs {
        sub: "agent-http".to_owned(),
        target: "orders-api".to_owned(),
        allow: Vec::new(),
        extra: rules.iter().map(|s| (*s).to_owned()).collect(),
        purpose: "http through gatehouse".to_owned(),
        ..GrantArgs::default()
    })
}

fn ca(gw: &Gateway) -> &Path {
    &gw.certs().expect("TLS").ca_cert
}

/// `curl` against the gateway's HTTP listener with `token`.
fn curl(gw: &Gateway, token: &str, args: &[&str], path: &str) -> Output {
    run(
        Command::new("curl")
            .args(["-sS", "--http1.1", "--cacert"])
            .arg(ca(gw))
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .args(args)
            .arg(format!("https://127.0.0.1:{}{path}", gw.http_port())),
        Duration::from_secs(60),
    )
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

use gatehouse_tests::http_client::tls_stream as raw;

/// Sends `request` and reads until the server closes or `until` is seen.
fn exchange(gw: &Gateway, request: &[u8], until: &str) -> String {
    let mut s = raw(gw);
    s.write_all(request).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&got).matches(until).count() > 0 {
            break;
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn http_through_the_gateway() {
    let pg = PgCluster::start();
    let nginx = Nginx::start();
    let mut gw = start(&nginx, &pg);
    let token = grant(
        &gw,
        &[
            "--allow",
            "http:GET,HEAD /**",
            "--allow",
            "http:POST /echo/**",
        ],
    );
    let jti = decode_claims(&token).expect("claims")["jti"]
        .as_str()
        .expect("jti")
        .to_owned();

    // JSON masked by key and by content; the credential injected.
    let out = curl(&gw, &token, &[], "/orders-api/data.json");
    assert!(out.status.success(), "{}", render(&out));
    let body: serde_json::Value = serde_json::from_str(&text(&out)).expect("JSON");
    assert_eq!(body["password"], "****");
    assert_eq!(body["token"], "****");
    assert_eq!(body["items"][1]["password"], "****");
    assert_eq!(body["name"], "Ada");
    assert!(!text(&out).contains("a@example.com"), "{}", text(&out));
    let out = curl(&gw, &token, &[], "/orders-api/echo/who");
    let echoed = text(&out);
    assert!(echoed.starts_with("GET /echo/who\nBasic "), "{echoed}");
    assert!(!echoed.contains(&token));

    // By host name: no prefix.
    let out = curl(
        &gw,
        &token,
        &["-H", "Host: orders-api.example"],
        "/hello.txt",
    );
    assert_eq!(text(&out), "hello from nginx\n", "{}", render(&out));

    // Denied: 403 naming the grant; nginx never sees it.
    let out = curl(
        &gw,
        &token,
        &["-X", "DELETE", "-w", "\n%{http_code}"],
        "/orders-api/data.json",
    );
    let answer = text(&out);
    assert!(answer.ends_with("\n403"), "{answer}");
    assert!(
        answer.contains(&jti) && answer.contains("DELETE /data.json"),
        "{answer}"
    );
    assert!(nginx.access_log().iter().all(|l| !l.starts_with("DELETE")));

    // A path no target claims: 404, recorded as refused (a grant was shown).
    let out = curl(&gw, &token, &["-w", "\n%{http_code}"], "/nowhere/x");
    assert!(text(&out).ends_with("\n404"), "{}", render(&out));

    // Without a grant: 401; with a forged one: 401, recorded as refused.
    let out = run(
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(ca(&gw))
            .arg(format!(
                "https://127.0.0.1:{}/orders-api/data.json",
                gw.http_port()
            )),
        Duration::from_secs(30),
    );
    assert_eq!(text(&out), "401");
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let out = curl(
        &gw,
        &forged,
        &["-o", "/dev/null", "-w", "%{http_code}"],
        "/orders-api/data.json",
    );
    assert_eq!(text(&out), "401");

    // A large binary body passes whole; a slow one streams (first bytes
    // long before its end).
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("large.bin");
    let out = curl(
        &gw,
        &token,
        &["-o", file.to_str().unwrap()],
        "/orders-api/large.bin",
    );
    assert!(out.status.success(), "{}", render(&out));
    assert!(std::fs::read(&file).unwrap() == large_content());
    let slow = dir.path().join("slow.bin");
    let out = curl(
        &gw,
        &token,
        &["--max-time", "3", "-o", slow.to_str().unwrap()],
        "/orders-api/slow/large.bin",
    );
    assert_eq!(
        out.status.code(),
        Some(28),
        "curl timed out mid-body: {}",
        render(&out)
    );
    let got = std::fs::metadata(&slow).map(|m| m.len()).unwrap_or(0);
    assert!(
        got > 0 && (got as usize) < LARGE_LEN,
        "streamed {got} bytes"
    );

    // Bodies: chunked, and Expect: 100-continue; past the limit 413.
    let small = dir.path().join("small.txt");
    std::fs::write(&small, "x".repeat(40 << 10)).unwrap();
    let out = run(
        Command::new("curl")
            .args(["-sS", "--http1.1", "--cacert"])
            .arg(ca(&gw))
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .args([
                "-H",
                "Transfer-Encoding: chunked",
                "-H",
                "Expect: 100-continue",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", small.display()))
            .arg(format!(
                "https://127.0.0.1:{}/orders-api/echo/upload",
                gw.http_port()
            )),
        Duration::from_secs(30),
    );
    assert!(
        text(&out).starts_with("POST /echo/upload\n"),
        "{}",
        render(&out)
    );
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(100 << 10)).unwrap();
    let out = run(
        Command::new("curl")
            .args([
                "-sS",
                "--http1.1",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
            ])
            .arg(ca(&gw))
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg("--data-binary")
            .arg(format!("@{}", big.display()))
            .arg(format!(
                "https://127.0.0.1:{}/orders-api/echo/big",
                gw.http_port()
            )),
        Duration::from_secs(30),
    );
    assert_eq!(text(&out), "413");

    // Keep-alive and pipelining: two requests in one write, two answers in
    // order on one connection.
    let two = format!(
        "GET /orders-api/hello.txt HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n\
         GET /orders-api/echo/second HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let answers = exchange(&gw, two.as_bytes(), "GET /echo/second");
    let first = answers.find("hello from nginx").expect("the first answer");
    let second = answers.find("GET /echo/second").expect("the second answer");
    assert!(first < second, "{answers}");
    assert_eq!(answers.matches("HTTP/1.1 200").count(), 2, "{answers}");

    // Malformed, smuggling-shaped and oversized requests: 400 or 431, and
    // none of them reaches nginx.
    let before = nginx.access_log().len();
    let bad = [
        format!(
            "GET /orders-api/echo/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nno colon here\r\n\r\n"
        ),
        format!(
            "POST /orders-api/echo/b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
        ),
        format!(
            "GET /orders-api/echo/c HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Big: {}\r\n\r\n",
            "y".repeat(32 << 10)
        ),
        "GET /orders-api/echo/d HTTP/9.9\r\nHost: x\r\n\r\n".to_owned(),
    ];
    for request in &bad {
        let answer = exchange(&gw, request.as_bytes(), "\r\n\r\n");
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 431"),
            "{}\n→ {answer}",
            &request[..request.len().min(120)]
        );
    }
    assert_eq!(nginx.access_log().len(), before, "{:?}", nginx.access_log());

    // The record: requests, verdicts, and masked bodies (never the secret).
    let store = gw.store_dir();
    gw.stop();
    let reader = Reader::open(&store).expect("store");
    let (mut ops, mut denied, mut bodies) = (Vec::new(), 0, Vec::new());
    let mut unknown = Vec::new();
    for summary in reader.sessions() {
        let summary = summary.expect("summary");
        for e in reader.events(summary.id) {
            match e.expect("event").body {
                Body::HttpRequest(r) => {
                    assert!(r.headers.iter().all(|h| !h.value.contains(&token)), "{r:?}");
                    ops.push(r.operation.clone());
                }
                Body::Verdict(v) if v.decision == Decision::Deny => denied += 1,
                Body::Refused(r) if r.reason == gatehouse_core::event::Refusal::UnknownTarget => {
                    unknown.push(r.target.clone())
                }
                Body::HttpBody(b) if b.dir == Direction::ToClient => {
                    bodies.extend_from_slice(&b.bytes)
                }
                _ => {}
            }
        }
    }
    assert!(ops.iter().any(|o| o == "GET /data.json"), "{ops:?}");
    assert!(ops.iter().any(|o| o == "DELETE /data.json"), "{ops:?}");
    assert!(denied >= 1);
    assert_eq!(unknown, ["127.0.0.1/nowhere/x"]);
    let recorded = String::from_utf8_lossy(&bodies);
    assert!(recorded.contains("\"password\":\"****\""));
    assert!(!recorded.contains("hunter2") && !recorded.contains("a@example.com"));
    drop(reader);
    let out = audit_verify(&store, &gw.seal_public_key());
    assert!(out.status.success(), "{}", render(&out));
}

/// A client that dribbles its request head is cut at `header_timeout`; a
/// keep-alive connection left idle is closed at `idle_timeout`; a response
/// that keeps streaming is not cut by either.
#[test]
fn header_and_idle_timeouts() {
    let pg = PgCluster::start();
    let nginx = Nginx::start();
    let mut options = GatewayOptions {
        http: Some("header_timeout = \"400ms\"\nidle_timeout = \"600ms\"".to_owned()),
        env: vec![("ORDERS_API_PASSWORD".to_owned(), PASSWORD.to_owned())],
        ..GatewayOptions::default()
    };
    options.extra_config = format!(
        "[targets.orders-api]\nkind = \"http\"\nurl = \"{}\"\n[targets.orders-api.credential]\n\
         basic_user = \"{USER}\"\npassword_env = \"ORDERS_API_PASSWORD\"\n",
        nginx.url()
    );
    let gw = Gateway::start(&pg, options);
    let token = grant(&gw, &["--allow", "http:GET /**"]);

    // Slowloris: half a head, then silence.
    let mut s = raw(&gw);
    s.write_all(b"GET /orders-api/hello.txt HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    // header_timeout is 400 ms: cut long before the 20 s read timeout.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "cut in time: {:?}",
        started.elapsed()
    );
    let answer = String::from_utf8_lossy(&rest);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // Idle keep-alive: one answer, then the gateway closes.
    let mut s = raw(&gw);
    let req = format!(
        "GET /orders-api/hello.txt HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let started = std::time::Instant::now();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("hello from nginx"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed when idle (600 ms): {:?}",
        started.elapsed()
    );

    // A slow response streams on past both timeouts.
    let dir = tempfile::tempdir().expect("dir");
    let slow = dir.path().join("slow.bin");
    let out = curl(
        &gw,
        &token,
        &["--max-time", "3", "-o", slow.to_str().unwrap()],
        "/orders-api/slow/large.bin",
    );
    assert_eq!(out.status.code(), Some(28), "{}", render(&out));
    let got = std::fs::metadata(&slow).map(|m| m.len()).unwrap_or(0);
    assert!(got > 512 << 10, "streamed only {got} bytes in 3 s");
}

/// A gateway whose approvals run in `mode`, with an admin API, in front
/// of `nginx`.
struct WithAdmin {
    gw: Gateway,
    admin_port: u16,
    admin_token: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl WithAdmin {
    fn start(pg: &PgCluster, nginx: &Nginx, mode: &str) -> WithAdmin {
        let dir = tempfile::tempdir().expect("dir");
        let admin_token = dir.path().join("admin.token");
        std::fs::write(&admin_token, "test-admin-token-0123456789").expect("token file");
        let admin_port = gatehouse_tests::ports::free_port();
        let gw = Gateway::start(
            pg,
            GatewayOptions {
                http: Some(String::new()),
                env: vec![("ORDERS_API_PASSWORD".to_owned(), PASSWORD.to_owned())],
                extra_config: format!(
                    "[targets.orders-api]\nkind = \"http\"\nurl = \"{}\"\n\
                     [targets.orders-api.credential]\nbasic_user = \"{USER}\"\n\
                     password_env = \"ORDERS_API_PASSWORD\"\n\n[approvals]\nmode = \"{mode}\"\n\n\
                     [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n[[admin.tokens]]\n\
                     name = \"alice\"\ntoken_file = \"{}\"\n",
                    nginx.url(),
                    admin_token.display()
                ),
                ..GatewayOptions::default()
            },
        );
        WithAdmin {
            gw,
            admin_port,
            admin_token,
            _dir: dir,
        }
    }

    fn approvals(&self, args: &[&str]) -> String {
        let out = run(
            Command::new(Gateway::binary())
                .arg("approvals")
                .args(args)
                .arg("--admin")
                .arg(format!("http://127.0.0.1:{}", self.admin_port))
                .arg("--token-file")
                .arg(&self.admin_token),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}", render(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pending(&self) -> serde_json::Value {
        serde_json::from_str(&self.approvals(&["list", "--json"])).expect("JSON")
    }
}

/// `[approvals] mode = "reject"`: a request that needs approval is refused
/// at once with the approval's id; once approved, the identical request
/// passes once.
#[test]
fn reject_and_retry_approvals() {
    let pg = PgCluster::start();
    let nginx = Nginx::start();
    let s = WithAdmin::start(&pg, &nginx, "reject");
    let gw = &s.gw;
    let token = grant(gw, &["--approve", "http:POST /echo/**"]);
    let post = |path: &str| curl(gw, &token, &["-X", "POST", "-w", "\n%{http_code}"], path);
    let out = post("/orders-api/echo/refund?order=7");
    let first = text(&out);
    assert!(
        first.ends_with("\n403") && first.contains("needs approval"),
        "{first}"
    );
    let list = s.pending();
    let pending = &list[0];
    assert_eq!(pending["statement"], "POST /echo/refund?order=7");
    let id = pending["id"].as_str().expect("id").to_owned();
    assert!(first.contains(&id), "{first}");
    s.approvals(&["approve", &id]);
    // Another request is still refused; the identical one passes, once.
    assert!(text(&post("/orders-api/echo/refund?order=8")).ends_with("\n403"));
    let retried = text(&post("/orders-api/echo/refund?order=7"));
    assert!(
        retried.starts_with("POST /echo/refund?order=7\n"),
        "{retried}"
    );
    assert!(text(&post("/orders-api/echo/refund?order=7")).ends_with("\n403"));
}

/// A client that gives up while its request waits for approval withdraws
/// the request: approvers no longer see it, and nginx never does.
#[test]
fn a_held_request_is_withdrawn_when_its_client_leaves() {
    let pg = PgCluster::start();
    let nginx = Nginx::start();
    let s = WithAdmin::start(&pg, &nginx, "wait");
    let token = grant(&s.gw, &["--approve", "http:POST /echo/**"]);
    let out = curl(
        &s.gw,
        &token,
        &["-X", "POST", "--max-time", "2"],
        "/orders-api/echo/held",
    );
    assert_eq!(
        out.status.code(),
        Some(28),
        "curl gave up: {}",
        render(&out)
    );
    let gone = gatehouse_tests::ports::wait_until(Duration::from_secs(10), || {
        s.pending().as_array().is_some_and(Vec::is_empty)
    });
    assert!(gone, "still pending: {}\n{}", s.pending(), s.gw.log());
    assert!(nginx.access_log().iter().all(|l| !l.contains("/echo/held")));
}

/// Content nginx proxies (unbuffered, chunked) from a streaming backend —
/// the test suite's Kubernetes API server, watched — reaches curl through
/// the gateway event by event, through the JSON masker (each event still
/// one valid JSON line).
#[test]
fn chunked_content_proxied_by_nginx_streams_through_the_masker() {
    use gatehouse_tests::kube_api::{FakeKube, FakeKubeOptions};
    let pg = PgCluster::start();
    let kube = FakeKube::start_with(FakeKubeOptions {
        watch_tick: Some(Duration::from_millis(200)),
        ..FakeKubeOptions::default()
    });
    let nginx = Nginx::start_proxy(kube.port());
    let gw = start(&nginx, &pg);
    let token = grant(&gw, &["--allow", "http:GET /**"]);
    let out = curl(
        &gw,
        &token,
        &["-N", "--max-time", "3"],
        "/orders-api/proxy/api/v1/namespaces/billing/pods?watch=true",
    );
    assert_eq!(
        out.status.code(),
        Some(28),
        "the watch went on: {}",
        render(&out)
    );
    let events: Vec<serde_json::Value> = text(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
        .collect();
    assert!(events.len() >= 4, "{events:?}");
    assert!(events.iter().any(|e| e["type"] == "MODIFIED"), "{events:?}");
    assert!(
        events.iter().all(|e| e["object"]["kind"] == "Pod"),
        "{events:?}"
    );
}
