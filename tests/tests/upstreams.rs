//! The upstreams of the HTTP and Kubernetes tests, with real clients and
//! no gateway: kubectl against [`FakeKube`], curl against [`Nginx`].

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use gatehouse_tests::command::{render, run};
use gatehouse_tests::kube_api::{
    FakeKube, FakeKubeOptions, Kubectl, LOG_LINES, NAMESPACE, PODS, SECRET_DATA, SECRET_OWNER_EMAIL,
};
use gatehouse_tests::nginx::{self, Nginx};
use serde_json::Value;

const TOKEN: &str = "upstream-sa-token";
const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn kubectl_lists_gets_and_deletes_pods() {
    // kubectl sends a bearer token over TLS only.
    let kube = FakeKube::start_with(FakeKubeOptions {
        token: Some(TOKEN.into()),
        tls: true,
        ..Default::default()
    });
    let kubectl = Kubectl::for_fake(&kube, TOKEN);

    let table = kubectl.ok(&["get", "pods", "-n", NAMESPACE]);
    // The server printed the columns (a Table), as the API server does.
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        "{table}"
    );
    for (line, pod) in lines[1..].iter().zip(PODS) {
        assert_eq!(line[..4], [pod, "1/1", "Running", "0"], "{table}");
    }
    assert_eq!(lines.len(), 1 + PODS.len(), "{table}");
    let wide = kubectl.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("node-1") && wide.contains("10.0.0.12"),
        "{wide}"
    );
    let list = kubectl.json(&["get", "pods", "-n", NAMESPACE]);
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, PODS);
    let pod = kubectl.json(&["get", "pod", "web-1", "-n", NAMESPACE]);
    assert_eq!(pod["status"]["phase"], "Running");

    let deleted = kubectl.ok(&["delete", "pod", "web-1", "-n", NAMESPACE]);
    assert!(deleted.contains("pod \"web-1\" deleted"), "{deleted}");
    assert!(kube.pod(NAMESPACE, "web-1").is_none());
    let gone = kubectl.run(&["get", "pod", "web-1", "-n", NAMESPACE]);
    assert!(!gone.status.success());
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(
        stderr.contains("NotFound") && stderr.contains("web-1"),
        "{stderr}"
    );

    // Every request carried the configured token, and kubectl discovered
    // the API (aggregated, in one request per root) before using it.
    let requests = kube.requests();
    let discovery = requests
        .iter()
        .find(|r| r.path() == "/api")
        .expect("discovery");
    assert!(
        discovery
            .header("accept")
            .unwrap_or("")
            .contains("as=APIGroupDiscoveryList")
    );
    assert!(!requests.iter().any(|r| r.path() == "/api/v1"));
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(&*format!("Bearer {TOKEN}")),
            "{r:?}"
        );
    }
    assert!(
        requests
            .iter()
            .any(|r| r.method == "DELETE" && r.path() == "/api/v1/namespaces/billing/pods/web-1")
    );
}

#[test]
fn kubectl_falls_back_to_legacy_discovery() {
    let kube = FakeKube::start_with(FakeKubeOptions {
        aggregated_discovery: false,
        ..Default::default()
    });
    let out = Kubectl::for_fake(&kube, TOKEN).ok(&["get", "pods", "-o", "name"]);
    assert_eq!(out, "pod/db-0\npod/web-1\npod/web-2\n");
    let paths: Vec<String> = kube
        .requests()
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    for path in ["/api", "/apis", "/api/v1", "/apis/apps/v1"] {
        assert!(paths.iter().any(|p| p == path), "{path} not in {paths:?}");
    }
}

#[test]
fn a_wrong_token_is_unauthorized() {
    let kube = FakeKube::start_with(FakeKubeOptions {
        token: Some(TOKEN.into()),
        tls: true,
        ..Default::default()
    });
    let out = Kubectl::for_fake(&kube, "agent-grant").run(&["get", "pods"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // kubectl's words for a 401.
    assert!(stderr.contains("provide credentials"), "{stderr}");
    let seen = kube.requests();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| r.header("authorization") == Some("Bearer agent-grant"))
    );
}

#[test]
fn kubectl_watch_gets_events_as_they_happen() {
    let kube = FakeKube::start();
    let kubectl = Kubectl::for_fake(&kube, TOKEN);
    let watch = kubectl.spawn_lines(&["get", "pods", "-n", NAMESPACE, "--watch"]);
    watch.expect("web-2", TIMEOUT);
    assert!(
        kube.wait_for_watches(1, TIMEOUT),
        "kubectl never opened a watch"
    );
    let started = Instant::now();
    kube.add_pod(NAMESPACE, "web-3").expect("new pod");
    watch.expect("web-3", Duration::from_secs(10));
    assert!(started.elapsed() < Duration::from_secs(10));
    // The stream is still open: the event came before its end.
    assert_eq!(kube.open_watches(), 1);
    kube.end_watches();
    assert!(kube.wait_for_watches_below(1, Duration::from_secs(5)));
    let w = kube
        .requests()
        .into_iter()
        .find(|r| r.uri.contains("watch=true"))
        .expect("a watch request");
    assert!(w.uri.contains("resourceVersion="), "{}", w.uri);
}

#[test]
fn watch_tick_modifies_a_pod_while_watched() {
    let kube = FakeKube::start_with(FakeKubeOptions {
        watch_tick: Some(Duration::from_millis(100)),
        ..Default::default()
    });
    let kubectl = Kubectl::for_fake(&kube, TOKEN);
    let watch =
        kubectl.spawn_lines(&["get", "pods", "-n", NAMESPACE, "--watch-only", "-o", "name"]);
    watch.expect("pod/web-1", TIMEOUT);
    watch.expect("pod/web-1", Duration::from_secs(5));
    let pod = kube.pod(NAMESPACE, "web-1").expect("web-1");
    assert!(pod["metadata"]["annotations"]["gatehouse.test/tick"].is_string());
}

#[test]
fn kubectl_logs_and_follow() {
    let kube = FakeKube::start_with(FakeKubeOptions {
        log_interval: Duration::from_millis(50),
        ..Default::default()
    });
    let kubectl = Kubectl::for_fake(&kube, TOKEN);
    let logs = kubectl.ok(&["logs", "web-1", "-n", NAMESPACE]);
    assert_eq!(logs, format!("{}\n", LOG_LINES.join("\n")));
    let follow = kubectl.spawn_lines(&["logs", "-f", "web-1", "-n", NAMESPACE]);
    follow.expect(LOG_LINES[0], TIMEOUT);
    follow.expect("tick 2", Duration::from_secs(5));
}

#[test]
fn kubectl_exec_over_websocket() {
    let kube = FakeKube::start();
    let kubectl = Kubectl::for_fake(&kube, TOKEN);
    let out = kubectl.ok(&["exec", "web-1", "-n", NAMESPACE, "--", "echo", "hello"]);
    assert_eq!(out, "hello\n");
    let upgrade = kube
        .requests()
        .into_iter()
        .find(|r| r.path().ends_with("/exec"))
        .expect("exec request");
    assert_eq!(
        upgrade
            .header("upgrade")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("websocket")
    );
    assert!(
        upgrade
            .header("sec-websocket-protocol")
            .unwrap_or("")
            .contains("v5.channel.k8s.io")
    );

    let failed = kubectl.run(&["exec", "web-1", "--", "sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{}", render(&failed));

    // With stdin: echoed back until stdin closes.
    let mut child = kubectl
        .command(&["exec", "-i", "web-1", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl exec -i");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"line one\nline two\n")
        .expect("write stdin");
    drop(stdin);
    let out = gatehouse_tests::command::wait_with_output(child, TIMEOUT).expect("exec -i ends");
    assert!(out.status.success(), "{}", render(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "line one\nline two\n");
    let frames = kube.exec_frames();
    assert!(frames.iter().any(|f| f.from_client && f.channel == 0));
    assert!(
        frames
            .iter()
            .any(|f| f.from_client && f.channel == 255 && f.data == [0])
    );
}

#[test]
fn kubectl_attach_echoes_stdin() {
    let kube = FakeKube::start();
    let kubectl = Kubectl::for_fake(&kube, TOKEN);
    let mut child = kubectl
        .command(&["attach", "-i", "web-1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl attach -i");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"ping\n").expect("write stdin");
    drop(stdin);
    let out = gatehouse_tests::command::wait_with_output(child, TIMEOUT).expect("attach ends");
    assert!(out.status.success(), "{}", render(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ping\n");
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.path().ends_with("/pods/web-1/attach"))
    );
}

#[test]
fn kubectl_reads_the_secret() {
    let kube = FakeKube::start();
    let secret = Kubectl::for_fake(&kube, TOKEN).json(&["get", "secret", "db", "-n", NAMESPACE]);
    for (key, value) in SECRET_DATA {
        let b64 = secret["data"][key].as_str().expect(key);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        assert_eq!(decoded, value.as_bytes());
    }
    assert_eq!(
        secret["metadata"]["annotations"]["owner-email"],
        SECRET_OWNER_EMAIL
    );
}

#[test]
fn kubectl_over_tls_trusts_the_ca() {
    let kube = FakeKube::start_with(FakeKubeOptions {
        tls: true,
        ..Default::default()
    });
    assert!(kube.url().starts_with("https://"));
    assert!(kube.ca_pem().expect("CA").contains("BEGIN CERTIFICATE"));
    let out = Kubectl::for_fake(&kube, TOKEN).ok(&["get", "pods", "-o", "name"]);
    assert_eq!(out, "pod/db-0\npod/web-1\npod/web-2\n");
}

fn curl(args: &[&str]) -> Output {
    let out = run(
        Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args),
        TIMEOUT,
    );
    assert!(out.status.success(), "curl {args:?}\n{}", render(&out));
    out
}

#[test]
fn curl_gets_nginx_files() {
    let nginx = Nginx::start();
    let json = curl(&[&format!("{}/data.json", nginx.url())]);
    assert_eq!(String::from_utf8_lossy(&json.stdout), nginx::DATA_JSON);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("large.bin");
    curl(&["-o", path(&file), &format!("{}/large.bin", nginx.url())]);
    assert!(std::fs::read(&file).expect("read") == nginx::large_content());
    let echo = curl(&[
        "-H",
        "Authorization: Bearer upstream",
        &format!("{}/echo/x?y=1", nginx.url()),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&echo.stdout),
        "GET /echo/x?y=1\nBearer upstream\n"
    );
    assert!(
        nginx
            .access_log()
            .iter()
            .any(|l| l.contains("/echo/x?y=1 200 \"Bearer upstream\""))
    );
}

#[test]
fn nginx_slow_location_sends_first_bytes_early() {
    let nginx = Nginx::start();
    let started = Instant::now();
    let mut child = Command::new("curl")
        .args(["-sS", "-N", &format!("{}/slow/large.bin", nginx.url())])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn curl");
    let mut first = vec![0u8; 4096];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut first)
        .expect("first bytes");
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let expected: Vec<u8> = (0..first.len()).map(nginx::pattern_byte).collect();
    assert_eq!(first, expected);
    let whole = Duration::from_secs((nginx::LARGE_LEN / nginx::SLOW_RATE) as u64);
    assert!(
        elapsed < Duration::from_secs(3) && elapsed < whole / 4,
        "{elapsed:?}"
    );
}

#[test]
fn nginx_proxies_to_the_fake_api_server() {
    let kube = FakeKube::start();
    let nginx = Nginx::start_proxy(kube.port());
    let out = curl(&[&format!(
        "{}/proxy/api/v1/namespaces/billing/pods",
        nginx.url()
    )]);
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list["kind"], "PodList");
    assert!(
        kube.requests()
            .iter()
            .any(|r| r.uri == "/api/v1/namespaces/billing/pods")
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn kubectl_creates_a_pod() {
    let kube = FakeKube::start();
    let kubectl = Kubectl::for_fake(&kube, TOKEN);
    let manifest = kubectl.dir().join("pod.json");
    std::fs::write(
        &manifest,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"job-1"},"spec":{"containers":[{"name":"job","image":"busybox"}]}}"#,
    )
    .expect("write manifest");
    // No OpenAPI documents are served: client-side validation is off.
    let out = kubectl.ok(&["create", "--validate=false", "-f", path(&manifest)]);
    assert!(out.contains("pod/job-1 created"), "{out}");
    assert!(kube.pod(NAMESPACE, "job-1").is_some());
    let again = kubectl.run(&["create", "--validate=false", "-f", path(&manifest)]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"),
        "{}",
        render(&again)
    );
}
