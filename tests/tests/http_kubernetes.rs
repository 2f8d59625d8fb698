//! Real `kubectl` through the gateway's HTTP listener to a Kubernetes API
//! server of the test suite ([`FakeKube`]), with a grant as its token:
//!
//! - `get pods` works, with the cluster's token injected upstream (the
//!   grant never reaches the API server) and `Impersonate-User` naming the
//!   agent;
//! - `delete pod` is denied with a Kubernetes `Status` that names the plan
//!   and the grant; the API server never sees it;
//! - `get secret -o json` has its secret keys and e-mail addresses masked;
//! - `get pods --watch` streams: the first event arrives long before the
//!   watch ends;
//! - `exec -- echo hello` over WebSocket (`v5.channel.k8s.io`) waits for a
//!   human's approval, then runs; the record holds it per channel;
//! - every request is in the store, and `gatehouse-audit verify` is clean.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gatehouse_core::event::{Body, Decision, Direction};
use gatehouse_store::Reader;
use gatehouse_tests::command::{audit_verify, render, run};
use gatehouse_tests::kube_api::{FakeKube, FakeKubeOptions, write_kubeconfig};
use gatehouse_tests::ports::{free_port, wait_until};
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster};

const CLUSTER_TOKEN: &str = "cluster-service-account-token";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

struct Setup {
    _pg: PgCluster,
    kube: FakeKube,
    gw: Gateway,
    dir: tempfile::TempDir,
    admin: String,
    admin_token: PathBuf,
}

fn start() -> Setup {
    let pg = PgCluster::start();
    let kube = FakeKube::start_with(FakeKubeOptions {
        token: Some(CLUSTER_TOKEN.to_owned()),
        watch_tick: Some(Duration::from_millis(300)),
        ..FakeKubeOptions::default()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let admin_token = dir.path().join("admin.token");
    std::fs::write(&admin_token, ADMIN_TOKEN).expect("token file");
    let admin_port = free_port();
    let options = GatewayOptions {
        http: Some(String::new()),
        env: vec![("PROD_TOKEN".to_owned(), CLUSTER_TOKEN.to_owned())],
        extra_config: format!(
            r#"
[targets.prod]
kind = "kubernetes"
url = "{url}"
path_prefix = "/k8s/prod"
impersonate = true
[targets.prod.credential]
bearer_env = "PROD_TOKEN"
[targets.prod.masking]
keys = {{ password = "redact", "*token" = "redact" }}
detectors = {{ email = "redact" }}

[admin]
listen = "127.0.0.1:{admin_port}"
[[admin.tokens]]
name = "alice"
token_file = "{token}"
"#,
            url = kube.url(),
            token = admin_token.display(),
        ),
        ..GatewayOptions::default()
    };
    let gw = Gateway::start(&pg, options);
    Setup {
        _pg: pg,
        kube,
        gw,
        dir,
        admin: format!("http://127.0.0.1:{admin_port}"),
        admin_token,
    }
}

impl Setup {
    /// A grant for `prod` with these `--allow`/`--approve` rules.
    fn grant(&self, sub: &str, rules: &[&str]) -> String {
        self.gw.grant(&GrantArgs {
            sub: sub.to_owned(),
            target: "prod".to_owned(),
            allow: Vec::new(),
            extra: rules.iter().map(|s| (*s).to_owned()).collect(),
            purpose: "kubernetes through gatehouse".to_owned(),
            ..GrantArgs::default()
        })
    }

    /// A kubeconfig pointing kubectl at the gateway with `token`.
    fn kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let ca = self.gw.certs().map(|c| c.ca_cert.clone());
        write_kubeconfig(
            &self.dir.path().join(name),
            &format!("https://127.0.0.1:{}/k8s/prod", self.gw.http_port()),
            token,
            ca.as_deref(),
        )
    }

    fn approvals(&self, args: &[&str]) -> String {
        let out = run(
            Command::new(Gateway::binary())
                .arg("approvals")
                .args(args)
                .arg("--admin")
                .arg(&self.admin)
                .arg("--token-file")
                .arg(&self.admin_token),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "approvals {args:?}\n{}", render(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn kubectl(config: &Path, args: &[&str]) -> Output {
    run(
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(config)
            .arg("--request-timeout=20s")
            .args(args),
        Duration::from_secs(60),
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn kubectl_through_the_gateway() {
    let s = start();
    let token = s.grant(
        "agent-k8s",
        &[
            "--allow",
            "kube:get,list,watch pods,pods/log,secrets in billing",
            "--approve",
            "kube:create pods/exec in billing",
        ],
    );
    let config = s.kubeconfig("agent.kubeconfig", &token);

    // get pods: allowed; the cluster sees its own token and the agent's name.
    let out = kubectl(&config, &["get", "pods", "-n", "billing"]);
    assert!(out.status.success(), "{}", render(&out));
    assert!(stdout(&out).contains("web-1"), "{}", render(&out));
    let reqs = s.kube.requests();
    let list = reqs
        .iter()
        .find(|r| r.method == "GET" && r.path() == "/api/v1/namespaces/billing/pods")
        .expect("the list reached the API server");
    assert_eq!(
        list.header("authorization"),
        Some(format!("Bearer {CLUSTER_TOKEN}").as_str())
    );
    assert_eq!(list.header("impersonate-user"), Some("agent-k8s"));
    for r in &reqs {
        for (name, value) in &r.headers {
            assert!(
                !value.contains(&token),
                "the grant reached the cluster in {name}"
            );
        }
    }

    // delete: denied with a Status naming the grant; never forwarded.
    s.kube.clear_requests();
    let out = kubectl(&config, &["delete", "pod", "web-1", "-n", "billing"]);
    assert!(!out.status.success(), "{}", render(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gatehouse denied delete pods"), "{err}");
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
    assert!(s.kube.requests().iter().all(|r| r.method != "DELETE"));
    assert!(s.kube.pod("billing", "web-1").is_some());

    // secrets: keys and e-mail addresses masked.
    let out = kubectl(
        &config,
        &["get", "secret", "db", "-n", "billing", "-o", "json"],
    );
    assert!(out.status.success(), "{}", render(&out));
    let secret: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let text = secret.to_string();
    assert!(!text.contains("dba@example.com"), "{text}");
    let data = secret["data"].as_object().expect("data");
    for (key, value) in data {
        if key == "password" || key.ends_with("token") {
            assert_eq!(value, "****", "{key}: {text}");
        }
    }

    // watch: the first event arrives while the watch goes on.
    let started = Instant::now();
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&config)
        .args(["get", "pods", "-n", "billing", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl watch");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("text");
    assert!(first.starts_with("pod/"), "{first}");
    assert!(
        s.kube.wait_for_watches(1, Duration::from_secs(20)),
        "a watch is open"
    );
    let more = lines.next().expect("another line").expect("text");
    assert!(more.starts_with("pod/"), "{more}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let _ = child.kill();
    let _ = child.wait();

    // logs -f: text lines stream, e-mail addresses masked.
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&config)
        .args(["logs", "web-1", "-n", "billing", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl logs");
    let lines: Vec<String> = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .take(4)
        .map(|l| l.expect("a log line"))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(lines[1], "user **** logged in", "{lines:?}");
    assert!(lines[3].starts_with("tick"), "followed: {lines:?}");

    // exec: held until approved, then it runs over WebSocket.
    let exec_config = config.clone();
    let exec = std::thread::spawn(move || {
        kubectl(
            &exec_config,
            &["exec", "web-1", "-n", "billing", "--", "echo", "hello"],
        )
    });
    let mut pending = serde_json::Value::Null;
    let appeared = wait_until(Duration::from_secs(30), || {
        let list: serde_json::Value =
            serde_json::from_str(&s.approvals(&["list", "--json"])).expect("JSON");
        match list.as_array().and_then(|a| a.first()) {
            Some(p) => {
                pending = p.clone();
                true
            }
            None => false,
        }
    });
    assert!(appeared, "the exec was not held");
    assert_eq!(pending["needs"][0], "create pods/exec in billing");
    let asked = pending["statement"].as_str().expect("statement");
    assert!(
        asked.starts_with("GET /api/v1/namespaces/billing/pods/web-1/exec?")
            && asked.contains("command=echo")
            && asked.contains("command=hello"),
        "the approver sees the command: {asked}"
    );
    assert!(!exec.is_finished(), "the exec waits for approval");
    let id = pending["id"].as_str().expect("id").to_owned();
    s.approvals(&["approve", &id, "--reason", "debugging INC-7"]);
    let out = exec.join().expect("kubectl exec");
    assert!(out.status.success(), "{}", render(&out));
    assert_eq!(stdout(&out).trim(), "hello");

    // The record: every request, the verdicts, the exec per channel.
    let store = s.gw.store_dir();
    let mut gw = s.gw;
    gw.stop();
    let reader = Reader::open(&store).expect("store");
    let mut requests = Vec::new();
    let mut verdicts = Vec::new();
    let mut stdout_channel = Vec::new();
    let mut exec_session = None;
    for summary in reader.sessions() {
        let summary = summary.expect("summary");
        for e in reader.events(summary.id) {
            let body = e.expect("event").body;
            if matches!(body, Body::WsMessage(_)) {
                exec_session.get_or_insert(summary.id);
            }
            match body {
                Body::HttpRequest(r) => requests.push(r.operation.clone()),
                Body::Verdict(v) => verdicts.push((v.decision, v.text.clone(), v.approver.clone())),
                Body::WsMessage(m) if m.dir == Direction::ToClient && m.channel == Some(1) => {
                    stdout_channel.extend_from_slice(&m.bytes)
                }
                _ => {}
            }
        }
    }
    assert!(
        requests.iter().any(|r| r == "list pods in billing"),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r == "delete pods in billing"),
        "{requests:?}"
    );
    assert!(verdicts.contains(&(
        Decision::Deny,
        "delete pods in billing".into(),
        String::new()
    )));
    assert!(verdicts.contains(&(
        Decision::Hold,
        "create pods/exec in billing".into(),
        String::new()
    )));
    assert!(verdicts.contains(&(
        Decision::Allow,
        "create pods/exec in billing".into(),
        "alice".into()
    )));
    assert_eq!(String::from_utf8_lossy(&stdout_channel), "hello\n");
    drop(reader);
    let out = audit_verify(&store, &gw.seal_public_key());
    assert!(out.status.success(), "{}", render(&out));

    // Replay shows the exec as a terminal; the audit lists the denial.
    let tools = Gateway::binary().with_file_name("gatehouse-replay");
    let session = exec_session.expect("an exec session").to_string();
    let out = run(
        Command::new(&tools)
            .args(["show", &session, "--store"])
            .arg(&store),
        Duration::from_secs(30),
    );
    let shown = stdout(&out);
    assert!(out.status.success(), "{}", render(&out));
    assert!(shown.contains("create pods/exec in billing"), "{shown}");
    assert!(shown.contains("hello"), "{shown}");
    assert!(shown.contains("approved by alice"), "{shown}");
    let out = run(
        Command::new(tools.with_file_name("gatehouse-audit"))
            .args(["statements", "--decision", "deny", "--store"])
            .arg(&store),
        Duration::from_secs(30),
    );
    assert!(
        stdout(&out).contains("delete pods in billing"),
        "{}",
        render(&out)
    );
}

/// An API server behind TLS with its own CA; SPDY upgrades are refused
/// with a message that says what to use instead.
#[test]
fn a_tls_api_server_and_spdy_refused() {
    let pg = PgCluster::start();
    let kube = FakeKube::start_with(FakeKubeOptions {
        token: Some(CLUSTER_TOKEN.to_owned()),
        tls: true,
        ..FakeKubeOptions::default()
    });
    let ca = kube.ca_cert().expect("CA").to_owned();
    let gw = Gateway::start(
        &pg,
        GatewayOptions {
            http: Some(String::new()),
            // The second target trusts the system's store, here the
            // API server's CA through SSL_CERT_FILE.
            env: vec![
                ("PROD_TOKEN".to_owned(), CLUSTER_TOKEN.to_owned()),
                ("SSL_CERT_FILE".to_owned(), ca.display().to_string()),
            ],
            extra_config: format!(
                "[targets.prod]\nkind = \"kubernetes\"\nurl = \"{url}\"\nca_file = \"{ca}\"\n\
                 [targets.prod.credential]\nbearer_env = \"PROD_TOKEN\"\n\n\
                 [targets.prod-system]\nkind = \"kubernetes\"\nurl = \"{url}\"\n\
                 [targets.prod-system.credential]\nbearer_env = \"PROD_TOKEN\"\n",
                url = kube.url(),
                ca = ca.display()
            ),
            ..GatewayOptions::default()
        },
    );
    let token = gw.grant(&GrantArgs {
        target: "prod".to_owned(),
        allow: Vec::new(),
        extra: vec![
            "--allow".into(),
            "kube:* * in billing".into(),
            "--target".into(),
            "prod-system".into(),
        ],
        ..GrantArgs::default()
    });
    let dir = tempfile::tempdir().expect("dir");
    let config = write_kubeconfig(
        &dir.path().join("kubeconfig"),
        &format!("https://localhost:{}/prod", gw.http_port()),
        &token,
        gw.certs().map(|c| c.ca_cert.as_path()),
    );
    let out = kubectl(&config, &["get", "pods", "-n", "billing", "-o", "name"]);
    assert!(out.status.success(), "{}", render(&out));
    assert!(stdout(&out).contains("pod/web-1"));
    let system = write_kubeconfig(
        &dir.path().join("kubeconfig-system"),
        &format!("https://localhost:{}/prod-system", gw.http_port()),
        &token,
        gw.certs().map(|c| c.ca_cert.as_path()),
    );
    let out = kubectl(&system, &["get", "pods", "-n", "billing", "-o", "name"]);
    assert!(
        out.status.success(),
        "the system's CA store: {}",
        render(&out)
    );

    // exec -i: the agent's stdin goes through, and is recorded on channel 0.
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&config)
        .args(["exec", "-i", "web-1", "-n", "billing", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl exec -i");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"typed by the agent\n").expect("stdin");
    }
    let out = child.wait_with_output().expect("kubectl exec -i");
    assert!(out.status.success(), "{}", render(&out));
    assert_eq!(stdout(&out), "typed by the agent\n");
    assert!(
        kube.exec_frames()
            .iter()
            .any(|f| f.from_client && f.channel == 0 && f.data == b"typed by the agent\n"),
        "the API server got the stdin"
    );

    let out = run(
        Command::new("curl")
            .args(["-sS", "--http1.1", "--cacert"])
            .arg(&gw.certs().expect("TLS").ca_cert)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args([
                "-H",
                "Connection: Upgrade",
                "-H",
                "Upgrade: SPDY/3.1",
                "-w",
                "\n%{http_code}",
            ])
            .arg(format!(
                "https://localhost:{}/prod/api/v1/namespaces/billing/pods/web-1/exec?command=ls",
                gw.http_port()
            )),
        Duration::from_secs(30),
    );
    let answer = stdout(&out);
    assert!(answer.ends_with("\n403"), "{answer}");
    assert!(answer.contains("SPDY/3.1 upgrade is refused"), "{answer}");
    assert!(
        kube.requests()
            .iter()
            .all(|r| !r.uri.contains("/exec?command=ls")),
        "the SPDY exec never reached the API server"
    );

    // attach (without stdin: the container's output) over the same relay.
    let out = kubectl(&config, &["attach", "web-1", "-n", "billing"]);
    assert!(out.status.success(), "{}", render(&out));
    assert_eq!(stdout(&out).trim(), "attached");
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.path().ends_with("/pods/web-1/attach")),
        "attach reached the API server"
    );

    // The stdin is in the record, on its channel.
    let store = gw.store_dir();
    let mut gw = gw;
    gw.stop();
    let reader = Reader::open(&store).expect("store");
    let mut stdin = Vec::new();
    for summary in reader.sessions() {
        for e in reader.events(summary.expect("summary").id) {
            if let Body::WsMessage(m) = e.expect("event").body
                && m.dir == Direction::ToUpstream
                && m.channel == Some(0)
            {
                stdin.extend_from_slice(&m.bytes);
            }
        }
    }
    assert_eq!(String::from_utf8_lossy(&stdin), "typed by the agent\n");
}
