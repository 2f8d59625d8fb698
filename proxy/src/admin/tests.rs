//! The admin API in process: bound on 127.0.0.1:0, driven with the client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::{Method, Response, StatusCode, Uri};
use tokio::sync::watch;

use super::client;
use crate::approvals::{
    ApprovalMode, ApprovalRegistry, ApprovalSettings, Decision, PendingApproval,
};
use crate::config::{AdminToken, Secret};
use crate::metrics::Metrics;

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

struct Admin {
    base: String,
    registry: Arc<ApprovalRegistry>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    metrics: Arc<Metrics>,
}

impl Admin {
    fn start() -> Admin {
        Admin::start_with(None)
    }

    /// An admin API that reports on `store`.
    fn start_with(store: Option<gatehouse_store::Store>) -> Admin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let registry = Arc::new(ApprovalRegistry::new(ApprovalSettings {
            mode: ApprovalMode::Wait,
            ..ApprovalSettings::default()
        }));
        let tokens = vec![
            AdminToken {
                name: "alice".to_owned(),
                token: Secret::new(ALICE),
            },
            AdminToken {
                name: "bob".to_owned(),
                token: Secret::new(BOB),
            },
        ];
        let (stop, stop_rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::default());
        let observed = super::Observed {
            store,
            metrics: metrics.clone(),
            shutdown: stop_rx.clone(),
            revocations: None,
            seal_key: None,
        };
        let thread =
            super::spawn_on(listener, tokens, registry.clone(), observed, stop_rx).unwrap();
        Admin {
            base,
            registry,
            stop,
            thread: Some(thread),
            metrics,
        }
    }

    fn uri(&self, path: &str) -> Uri {
        client::join(&self.base, path).unwrap()
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Response<Incoming> {
        let body = body.map(|b| Bytes::from(b.to_owned()));
        client::send(
            &self.uri(path),
            method,
            token,
            body,
            Duration::from_secs(10),
        )
        .await
        .unwrap()
    }

    /// Status and body (as JSON, or a string) of one request.
    async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, serde_json::Value) {
        let response = self.call(method, path, token, body).await;
        let status = response.status();
        let bytes = client::read_body(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()));
        (status, value)
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn req(id: &str) -> PendingApproval {
    PendingApproval {
        id: id.to_owned(),
        session: "0190-session".to_owned(),
        jti: "jti-1".to_owned(),
        subject: "agent-7".to_owned(),
        target: "orders".to_owned(),
        purpose: "cleanup".to_owned(),
        ticket: None,
        statement: "delete from invoices where id = 1".to_owned(),
        needs: vec!["delete on public.invoices".to_owned()],
        requested_at_us: 1,
    }
}

#[tokio::test]
async fn healthz_needs_no_token() {
    let admin = Admin::start();
    let (status, body) = admin.json(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok\n");
}

#[tokio::test]
async fn everything_else_needs_a_known_token() {
    let admin = Admin::start();
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        let response = admin.call(Method::GET, "/approvals", token, None).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body = client::read_body(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("token"),
            "{body}"
        );
    }
    let (status, _) = admin
        .json(Method::POST, "/approvals/a1/approve", None, Some("{}"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin.json(Method::GET, "/approvals", Some(BOB), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn list_and_approve() {
    let admin = Admin::start();
    let (status, body) = admin
        .json(Method::GET, "/approvals", Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!([]));

    let mut decision = admin.registry.request(req("a1"));
    let (_, body) = admin
        .json(Method::GET, "/approvals", Some(ALICE), None)
        .await;
    assert_eq!(body, serde_json::to_value(vec![req("a1")]).unwrap());

    let (status, body) = admin
        .json(
            Method::POST,
            "/approvals/a1/approve",
            Some(ALICE),
            Some(r#"{"reason": "ticket OPS-1"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["approval"]["id"], "a1");
    assert_eq!(body["decision"]["approver"], "alice");
    let expected = Decision {
        approved: true,
        approver: "alice".to_owned(),
        reason: "ticket OPS-1".to_owned(),
    };
    assert_eq!(decision.try_recv(), Ok(expected));

    // Already decided: 409, whoever asks.
    let (status, body) = admin
        .json(
            Method::POST,
            "/approvals/a1/deny",
            Some(BOB),
            Some(r#"{"reason":"no"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("already approved by alice")
    );
    // Unknown: 404. No body is fine for approve.
    let (status, _) = admin
        .json(Method::POST, "/approvals/zz/approve", Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deny_needs_a_reason() {
    let admin = Admin::start();
    let mut decision = admin.registry.request(req("a/1"));
    for body in [None, Some("{}"), Some(r#"{"reason": "  "}"#)] {
        let (status, answer) = admin
            .json(Method::POST, "/approvals/a%2F1/deny", Some(BOB), body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}: {answer}");
    }
    let (status, _) = admin
        .json(
            Method::POST,
            "/approvals/a%2F1/deny",
            Some(BOB),
            Some("not json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(admin.registry.pending().len(), 1, "still pending");

    let (status, body) = admin
        .json(
            Method::POST,
            "/approvals/a%2F1/deny",
            Some(BOB),
            Some(r#"{"reason": "not during the freeze"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let d = decision.try_recv().unwrap();
    assert!(!d.approved);
    assert_eq!(d.approver, "bob");
    assert_eq!(d.reason, "not during the freeze");
}

#[tokio::test]
async fn wrong_methods_and_paths() {
    let admin = Admin::start();
    let response = admin
        .call(Method::GET, "/approvals/a1/approve", Some(ALICE), None)
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST");
    let (status, _) = admin
        .json(Method::DELETE, "/approvals", Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = admin.json(Method::GET, "/nothing", Some(ALICE), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The next non-empty line of a `watch` stream.
async fn next_line(body: &mut Incoming, buf: &mut Vec<u8>) -> String {
    loop {
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = String::from_utf8(line).unwrap();
            if line.trim().is_empty() {
                continue;
            }
            return line;
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a watch line in time")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

#[tokio::test]
async fn watch_streams_requests_and_decisions() {
    let admin = Admin::start();
    let response = admin
        .call(Method::GET, "/approvals/watch", Some(ALICE), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let mut body = response.into_body();
    let mut buf = Vec::new();

    let _decision = admin.registry.request(req("a1"));
    let line = next_line(&mut body, &mut buf).await;
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "requested");
    assert_eq!(event["approval"]["id"], "a1");
    assert_eq!(
        event["approval"]["statement"],
        "delete from invoices where id = 1"
    );

    let (status, _) = admin
        .json(Method::POST, "/approvals/a1/approve", Some(BOB), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let line = next_line(&mut body, &mut buf).await;
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "decided");
    assert_eq!(event["decision"]["approver"], "bob");
    assert_eq!(event["decision"]["approved"], true);
}

#[tokio::test]
async fn shutdown_ends_the_server_and_its_streams() {
    let mut admin = Admin::start();
    let response = admin
        .call(Method::GET, "/approvals/watch", Some(ALICE), None)
        .await;
    let mut body = response.into_body();
    admin.stop.send(true).unwrap();
    let thread = admin.thread.take().unwrap();
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    // The stream ends (or fails): it does not hang.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
    assert!(ended.is_ok());
    let err = client::send(
        &admin.uri("/healthz"),
        Method::GET,
        None,
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, client::ClientError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn readyz_follows_the_store_and_needs_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        gatehouse_store::Store::open(dir.path(), gatehouse_store::StoreOptions::default()).unwrap();
    let admin = Admin::start_with(Some(store.clone()));
    let (status, body) = admin.json(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, "ready\n".into()));

    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .unwrap()
        .unwrap();
    let (status, body) = admin.json(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["ready"], false);
    assert_eq!(body["reason"], "store_closed", "{body}");
    assert_eq!(body["store"], "the store is shut down");
}

#[tokio::test]
async fn metrics_need_a_token_and_speak_prometheus_text() {
    let admin = Admin::start();
    let response = admin.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    drop(admin.metrics.connection());
    let _open = admin.metrics.connection();
    let _decision = admin.registry.request(req("ap-1"));
    let response = admin.call(Method::GET, "/metrics", Some(ALICE), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = client::read_body(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in [
        "gatehouse_connections_total 2",
        "gatehouse_connections_open 1",
        "gatehouse_approvals_pending 1",
        "gatehouse_store_healthy 1",
        "gatehouse_ready 1",
        "gatehouse_verdicts_total{decision=\"deny\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
    }
    assert!(text.contains("gatehouse_build_info{version=\""));
}

#[tokio::test]
async fn store_archive_streams_a_verifiable_archive_to_a_token() {
    use gatehouse_core::event::archive::{Item, decode_all};
    use gatehouse_core::event::{Body, Recorder, SessionId};

    let dir = tempfile::tempdir().unwrap();
    let store =
        gatehouse_store::Store::open(dir.path(), gatehouse_store::StoreOptions::default()).unwrap();
    let mut rec = Recorder::new(SessionId(*uuid::Uuid::now_v7().as_bytes()));
    let now_us = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap();
    let writer = store.writer();
    tokio::task::spawn_blocking(move || {
        writer.append_blocking(vec![rec.record(
            now_us,
            Body::CommandComplete {
                tag: "SELECT 1".into(),
            },
        )])
    })
    .await
    .unwrap()
    .unwrap();
    let admin = Admin::start_with(Some(store.clone()));

    let response = admin.call(Method::GET, "/store/archive", None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = admin
        .json(Method::GET, "/store/archive?since=never", Some(ALICE), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let response = admin
        .call(Method::GET, "/store/archive?since=1h", Some(ALICE), None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let bytes = client::read_body(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let items = decode_all(&bytes).unwrap();
    let entries = items.iter().filter(|i| matches!(i, Item::Entry(_))).count();
    // The session's summary and its one event.
    assert_eq!(entries, 2, "{items:?}");
    assert_eq!(items.last(), Some(&Item::Signature(None)));
    drop(admin);
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .unwrap()
        .unwrap();
}
