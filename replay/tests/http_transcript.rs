//! HTTP sessions (HTTP and Kubernetes targets) as transcripts: exchanges
//! with their verdicts, headers, bodies and masking, streamed responses
//! and `kubectl exec` sessions, in the text view, `play`, and the exports.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use gatehouse_core::event::{
    Body, CloseReason, Decision, Direction, HttpBody, HttpHeader, HttpRequest, HttpResponse,
    MaskHit, Masked, StatementProtocol, Verdict, WsMessage,
};
use gatehouse_replay::export::{self, Format};
use gatehouse_replay::play::{Pace, play};
use gatehouse_replay::render::render_to_string;
use gatehouse_replay::transcript::{ItemKind, Transcript, TranscriptBuilder, TranscriptOptions};
use serde_json::Value;

fn h(name: &str, value: &str) -> HttpHeader {
    HttpHeader {
        name: name.into(),
        value: value.into(),
    }
}

trait Http {
    fn request(&mut self, n: u32, method: &str, target: &str, operation: &str) -> &mut Self;
    fn verdict(
        &mut self,
        d: Decision,
        operation: &str,
        reason: &str,
        approval: &str,
        by: &str,
    ) -> &mut Self;
    fn response(&mut self, n: u32, status: u16, headers: Vec<HttpHeader>, gw: bool) -> &mut Self;
    fn piece(&mut self, n: u32, dir: Direction, bytes: &[u8], end: bool) -> &mut Self;
    fn ws(&mut self, dir: Direction, kind: &str, channel: Option<u8>, bytes: &[u8]) -> &mut Self;
}

impl Http for SessionBuilder {
    fn request(&mut self, n: u32, method: &str, target: &str, operation: &str) -> &mut Self {
        self.body(Body::HttpRequest(Box::new(HttpRequest {
            exchange: n,
            method: method.into(),
            target: target.into(),
            upstream_target: target.trim_start_matches("/orders-api").into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                h("host", "gatehouse:18443"),
                h("authorization", "[redacted]"),
                h("accept", "application/json"),
            ],
            operation: operation.into(),
        })))
    }

    fn verdict(
        &mut self,
        decision: Decision,
        operation: &str,
        reason: &str,
        approval: &str,
        by: &str,
    ) -> &mut Self {
        self.body(Body::Verdict(Verdict {
            decision,
            protocol: StatementProtocol::Http,
            statement_name: String::new(),
            text: operation.into(),
            kinds: vec!["get".into()],
            accesses: vec![operation.into()],
            reason: reason.into(),
            approval: approval.into(),
            approver: by.into(),
        }))
    }

    fn response(&mut self, n: u32, status: u16, headers: Vec<HttpHeader>, gw: bool) -> &mut Self {
        self.body(Body::HttpResponse(Box::new(HttpResponse {
            exchange: n,
            status,
            headers,
            from_gateway: gw,
        })))
    }

    fn piece(&mut self, n: u32, dir: Direction, bytes: &[u8], end: bool) -> &mut Self {
        self.body(Body::HttpBody(Box::new(HttpBody {
            exchange: n,
            dir,
            bytes: Bytes::copy_from_slice(bytes),
            end,
        })))
    }

    fn ws(&mut self, dir: Direction, kind: &str, channel: Option<u8>, bytes: &[u8]) -> &mut Self {
        self.body(Body::WsMessage(Box::new(WsMessage {
            exchange: 1,
            dir,
            kind: kind.into(),
            channel,
            bytes: Bytes::copy_from_slice(bytes),
            truncated: false,
        })))
    }
}

const JSON: &str = "application/json";

fn transcript(s: &SessionBuilder) -> Transcript {
    TranscriptBuilder::build(sid(T0_MS, 1), TranscriptOptions::default(), &s.decoded())
}

fn json(t: &Transcript) -> Value {
    let mut buf = Vec::new();
    export::write(t, Format::Json, &mut buf).unwrap();
    serde_json::from_slice(&buf).unwrap()
}

fn csv(t: &Transcript) -> String {
    let mut buf = Vec::new();
    export::write(t, Format::Csv, &mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

/// A GET with a JSON body, a binary one, a denied DELETE, a held POST
/// (approved, with a request body) and a masked response.
fn api_session() -> SessionBuilder {
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.opened();
    let op = "GET /v1/invoices";
    s.wait(2_000)
        .request(1, "GET", "/orders-api/v1/invoices?limit=2", op)
        .verdict(Decision::Allow, op, "", "", "");
    s.wait(1_500)
        .response(
            1,
            200,
            vec![h("content-type", JSON), h("set-cookie", "[redacted]")],
            false,
        )
        .piece(
            1,
            Direction::ToClient,
            b"{\"items\": [{\"id\": 1, \"total\": \"10.00\"}]}",
            true,
        );

    let op = "DELETE /v1/invoices/1";
    s.wait(1_000_000)
        .request(2, "DELETE", "/orders-api/v1/invoices/1", op)
        .verdict(
            Decision::Deny,
            op,
            "the plan does not allow DELETE /v1/invoices/*",
            "",
            "",
        )
        .response(2, 403, vec![h("content-type", JSON)], true)
        .piece(
            2,
            Direction::ToClient,
            b"{\"error\": \"denied\", \"rule\": \"DELETE /v1/invoices/*\", \"jti\": \"jti-1\"}",
            true,
        );

    let op = "POST /v1/refunds";
    s.wait(1_000_000)
        .request(3, "POST", "/orders-api/v1/refunds", op)
        .verdict(Decision::Hold, op, "refunds need approval", "ap-7", "");
    s.wait(30_000_000)
        .verdict(Decision::Allow, op, "checked with finance", "ap-7", "alice")
        .piece(3, Direction::ToUpstream, b"{\"invoice\": 1}", true);
    s.wait(5_000)
        .response(3, 201, vec![h("content-type", JSON)], false)
        .piece(3, Direction::ToClient, b"", true);

    let op = "GET /v1/customers";
    s.wait(1_000_000)
        .request(4, "GET", "/orders-api/v1/customers", op)
        .verdict(Decision::Allow, op, "", "", "")
        .response(4, 200, vec![h("content-type", JSON)], false)
        .body(Body::Masked(Masked {
            hits: vec![MaskHit {
                rule: "key:email".into(),
                column: "items[].email".into(),
                count: 2,
            }],
            cells: vec![],
        }))
        .piece(
            4,
            Direction::ToClient,
            b"{\"items\": [{\"email\": \"****\"}, {\"email\": \"****\"}]}",
            true,
        );

    let op = "GET /v1/logo.png";
    s.wait(1_000)
        .request(5, "GET", "/orders-api/v1/logo.png", op)
        .verdict(Decision::Allow, op, "", "", "")
        .response(5, 200, vec![h("content-type", "image/png")], false)
        .piece(
            5,
            Direction::ToClient,
            &[0x89, b'P', b'N', b'G', 0, 0xff],
            true,
        );
    s.wait(1_000).closed(CloseReason::ClientTerminated);
    s
}

#[test]
fn exchanges_in_the_text_view() {
    let t = transcript(&api_session());
    assert_eq!(
        t.items
            .iter()
            .filter(|i| matches!(i.kind, ItemKind::Http(_)))
            .count(),
        5
    );
    assert_eq!((t.header.denied, t.header.held), (1, 1));
    let text = render_to_string(&t);
    for want in [
        // A plain GET with a JSON body.
        "[+0.002s] GET /orders-api/v1/invoices?limit=2 → 200 OK   1.5 ms\n",
        "operation: GET /v1/invoices   upstream: /v1/invoices?limit=2\n",
        "          allowed\n",
        "> authorization: [redacted]\n",
        "< HTTP/1.1 200 OK\n",
        "< set-cookie: [redacted]\n",
        "< body (40 B):\n",
        "<   {\"items\": [{\"id\": 1, \"total\": \"10.00\"}]}\n",
        // The denial, answered by the gateway.
        "DELETE /orders-api/v1/invoices/1 → 403 Forbidden",
        "denied by the plan: the plan does not allow DELETE /v1/invoices/*\n",
        "< HTTP/1.1 403 Forbidden   (answered by the gateway)\n",
        "\"rule\": \"DELETE /v1/invoices/*\"",
        // Held, then approved; its request body.
        "POST /orders-api/v1/refunds → 201 Created   30.005 s\n",
        "held for approval ap-7, approved by alice: checked with finance\n",
        "> body (14 B):\n",
        ">   {\"invoice\": 1}\n",
        "< body (empty)\n",
        // Masked: the hits of this exchange.
        "< body (49 B; masked: key:email in items[].email ×2):\n",
        // Binary: hex.
        "<   binary: \\x89504e4700ff\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(text.contains("masked: key:email in items[].email ×2"));
    assert!(text.contains("plan: 1 denied, 1 held for approval"));
}

#[test]
fn exchanges_in_the_json_and_csv_exports() {
    let t = transcript(&api_session());
    let doc = json(&t);
    let items = doc["items"].as_array().unwrap();
    let get = &items[0];
    assert_eq!(get["kind"], "http");
    assert_eq!(get["decision"], "allow");
    assert_eq!(get["method"], "GET");
    assert_eq!(get["target"], "/orders-api/v1/invoices?limit=2");
    assert_eq!(get["upstream_target"], "/v1/invoices?limit=2");
    assert_eq!(get["operation"], "GET /v1/invoices");
    assert_eq!(get["request_headers"][1]["name"], "authorization");
    assert_eq!(get["request_headers"][1]["value"], "[redacted]");
    assert_eq!(get["response"]["status"], 200);
    assert_eq!(get["response"]["headers"][0]["value"], JSON);
    assert_eq!(get["response"]["from_gateway"], false);
    assert_eq!(
        get["response_body"]["text"],
        "{\"items\": [{\"id\": 1, \"total\": \"10.00\"}]}"
    );
    assert_eq!(get["response_body"]["size"], 40);
    assert_eq!(get["response_body"]["complete"], true);
    assert_eq!(get["duration_us"], 1_500);

    let denied = &items[1];
    assert_eq!(denied["decision"], "deny");
    assert_eq!(
        denied["verdict"]["reason"],
        "the plan does not allow DELETE /v1/invoices/*"
    );
    assert_eq!(denied["response"]["status"], 403);
    assert_eq!(denied["response"]["from_gateway"], true);

    let held = &items[2];
    assert_eq!(held["verdict"]["decision"], "allow");
    assert_eq!(held["verdict"]["held"], true);
    assert_eq!(held["verdict"]["approval"], "ap-7");
    assert_eq!(held["verdict"]["approver"], "alice");
    assert_eq!(held["request_body"]["text"], "{\"invoice\": 1}");

    let masked = &items[3];
    assert_eq!(masked["masked"][0]["rule"], "key:email");
    assert_eq!(masked["masked"][0]["column"], "items[].email");
    assert_eq!(masked["masked"][0]["count"], 2);

    let binary = &items[4];
    assert_eq!(binary["response_body"]["base64"], "iVBORwD/");
    assert!(binary["response_body"].get("text").is_none());

    let csv = csv(&t);
    let mut r = ::csv::Reader::from_reader(csv.as_bytes());
    let head = r.headers().unwrap().clone();
    let col = |name: &str| head.iter().position(|c| c == name).unwrap();
    let rows: Vec<_> = r.records().map(Result::unwrap).collect();
    assert_eq!(&rows[0][col("kind")], "http");
    assert_eq!(&rows[0][col("text")], "GET /orders-api/v1/invoices?limit=2");
    assert_eq!(&rows[0][col("status")], "200");
    assert_eq!(&rows[1][col("decision")], "deny");
    assert_eq!(&rows[2][col("approver")], "alice");
    assert_eq!(&rows[3][col("masked_cells")], "2");
    assert_eq!(&rows[3][col("operation")], "GET /v1/customers");

    let mut html = Vec::new();
    export::write(&t, Format::Html, &mut html).unwrap();
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("HTTP · denied by the plan"), "{html}");
    assert!(
        html.contains("&lt;   {&quot;items&quot;") || html.contains("&lt;   {\"items\""),
        "{html}"
    );
}

/// A `watch`: one response body in pieces a second apart.
fn watch_session() -> SessionBuilder {
    let mut s = SessionBuilder::new(sid(T0_MS, 2));
    s.opened();
    let op = "watch pods in billing";
    s.wait(1_000)
        .request(
            1,
            "GET",
            "/k8s/prod/api/v1/namespaces/billing/pods?watch=1",
            op,
        )
        .verdict(Decision::Allow, op, "", "", "");
    s.wait(1_000)
        .response(
            1,
            200,
            vec![h("content-type", JSON), h("transfer-encoding", "chunked")],
            false,
        )
        .piece(
            1,
            Direction::ToClient,
            b"{\"type\":\"ADDED\",\"object\":{\"name\":\"web-0\"}}\n",
            false,
        );
    s.wait(1_000_000)
        .piece(1, Direction::ToClient, b"{\"type\":\"MODIFIED\",", false);
    s.wait(500_000).piece(
        1,
        Direction::ToClient,
        b"\"object\":{\"name\":\"web-0\"}}\n",
        false,
    );
    s.wait(1_000_000).piece(1, Direction::ToClient, b"", true);
    s.wait(1_000).closed(CloseReason::ClientTerminated);
    s
}

#[test]
fn streamed_response_keeps_its_timing() {
    let t = transcript(&watch_session());
    let text = render_to_string(&t);
    for want in [
        "GET /k8s/prod/api/v1/namespaces/billing/pods?watch=1 → 200 OK   2.501 s\n",
        "operation: watch pods in billing\n",
        "< body (89 B in 4 pieces):\n",
        "<   {\"type\":\"ADDED\",\"object\":{\"name\":\"web-0\"}}\n",
        "<   {\"type\":\"MODIFIED\",\"object\":{\"name\":\"web-0\"}}\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let doc = json(&t);
    let body = &doc["items"][0]["response_body"];
    assert_eq!(body["pieces_received"], 4);
    let offsets: Vec<i64> = body["pieces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["at_us"].as_i64().unwrap() - t.header.started_us)
        .collect();
    assert_eq!(offsets, [2_000, 1_002_000, 1_502_000, 2_502_000]);

    // Play: the whole text, paused as the pieces arrived (the MODIFIED
    // line once its second piece completed it).
    let mut out = Vec::new();
    let mut pauses = Vec::new();
    let pace = Pace {
        speed: 1.0,
        max_wait: Duration::from_secs(10),
    };
    play(&t, &mut out, pace, &mut |d| pauses.push(d)).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), text);
    assert_eq!(
        pauses,
        [
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::from_millis(1_500),
        ]
    );

    // The asciicast has the MODIFIED line at 1.502 s.
    let mut cast = Vec::new();
    export::write(&t, Format::Asciicast, &mut cast).unwrap();
    let cast = String::from_utf8(cast).unwrap();
    let modified = cast
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e[2].as_str().unwrap().contains("MODIFIED"))
        .unwrap();
    assert_eq!(modified[0].as_f64().unwrap(), 1.502);
}

/// `kubectl exec -it web-0 -- sh`, held for approval, then a terminal.
fn exec_session() -> SessionBuilder {
    let mut s = SessionBuilder::new(sid(T0_MS, 3));
    s.opened();
    let op = "create pods/exec in billing";
    s.wait(1_000)
        .request(
            1,
            "GET",
            "/k8s/prod/api/v1/namespaces/billing/pods/web-0/exec?command=sh&stdin=true&stdout=true&tty=true",
            op,
        )
        .verdict(Decision::Allow, op, "", "", "");
    s.wait(2_000).response(
        1,
        101,
        vec![
            h("upgrade", "websocket"),
            h("sec-websocket-protocol", "v5.channel.k8s.io"),
        ],
        false,
    );
    s.wait(1_000).ws(
        Direction::ToUpstream,
        "binary",
        Some(4),
        b"{\"Width\":120,\"Height\":40}",
    );
    s.wait(100_000)
        .ws(Direction::ToClient, "binary", Some(1), b"# ");
    s.wait(1_000_000)
        .ws(Direction::ToUpstream, "binary", Some(0), b"ls /\r");
    s.wait(20_000).ws(
        Direction::ToClient,
        "binary",
        Some(1),
        b"ls /\r\nbin  etc\r\n# ",
    );
    s.wait(500_000).ws(
        Direction::ToClient,
        "binary",
        Some(2),
        b"warning: \x1b[31mred\x1b[0m\n",
    );
    s.wait(10_000)
        .ws(Direction::ToClient, "binary", Some(1), &[0xff, 0xfe]);
    s.wait(1_000_000).ws(Direction::ToClient, "ping", None, b"");
    s.wait(10_000).ws(
        Direction::ToClient,
        "binary",
        Some(3),
        br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 2","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#,
    );
    s.wait(1_000)
        .ws(Direction::ToUpstream, "binary", Some(255), &[0]);
    s.wait(1_000)
        .ws(Direction::ToClient, "close", None, &[3, 232]);
    s.wait(1_000).closed(CloseReason::ClientTerminated);
    s
}

#[test]
fn exec_sessions_as_terminal_playback() {
    let t = transcript(&exec_session());
    let text = render_to_string(&t);
    for want in [
        "/exec?command=sh&stdin=true&stdout=true&tty=true → 101 Switching Protocols   2.645 s\n",
        "operation: create pods/exec in billing\n",
        "< HTTP/1.1 101 Switching Protocols\n",
        "WebSocket v5.channel.k8s.io: 10 messages, 267 B\n",
        "[+0.004s] resize 120×40\n",
        "[+0.104s] stdout #\n",
        "[+1.104s] stdin> ls /\\r\n",
        "[+1.124s] stdout ls /\n",
        "                 bin  etc\n",
        "                 #\n",
        // Terminal escapes never reach the auditor's terminal.
        "[+1.624s] stderr warning: \\u{1b}[31mred\\u{1b}[0m\n",
        "[+2.634s] ping from the target\n",
        "[+2.644s] exit: Failure: command terminated with non-zero exit code: exit status 2 (exit code 2)\n",
        "[+2.645s] close stdin\n",
        "[+2.646s] closed (1000) by the target\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }

    let doc = json(&t);
    let ws = &doc["items"][0]["websocket"];
    assert_eq!(ws["protocol"], "v5.channel.k8s.io");
    assert_eq!(ws["messages_received"], 10);
    let m = ws["messages"].as_array().unwrap();
    assert_eq!(m[0]["stream"], "resize");
    assert_eq!(m[0]["note"], "resize 120×40");
    assert_eq!(m[2]["direction"], "to_upstream");
    assert_eq!(m[2]["stream"], "stdin");
    assert_eq!(m[2]["text"], "ls /\r");
    assert_eq!(m[3]["text"], "ls /\r\nbin  etc\r\n# ");
    assert_eq!(m[5]["base64"], "//4=");
    assert_eq!(m[7]["stream"], "error");
    assert_eq!(
        m[7]["note"],
        "exit: Failure: command terminated with non-zero exit code: exit status 2 (exit code 2)"
    );
    assert_eq!(m[9]["kind"], "close");
    assert_eq!(m[9]["note"], "closed (1000)");

    // Played back at recorded speed: a pause before each message.
    let mut out = Vec::new();
    let mut pauses = Vec::new();
    let pace = Pace {
        speed: 1.0,
        max_wait: Duration::from_secs(10),
    };
    play(&t, &mut out, pace, &mut |d| pauses.push(d)).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), text);
    assert!(pauses.contains(&Duration::from_millis(1_000)), "{pauses:?}");
    assert!(pauses.contains(&Duration::from_millis(500)), "{pauses:?}");
    let total: Duration = pauses.iter().sum();
    assert_eq!(total, Duration::from_micros(2_646_000));
}

#[test]
fn http_sessions_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_session();
    let exec = exec_session();
    write_store(dir.path(), &[&api, &exec]);
    let id = sid(T0_MS, 3).to_string();
    let (code, out, err) = replay(&["show", &id], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stdin> ls /\\r"), "{out}");
    let (code, out, err) = replay(&["export", &id, "--format", "json"], dir.path());
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["items"][0]["response"]["status"], 101);
    let (code, out, err) = replay(&["play", &id, "--speed", "0"], dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("exit: Failure"), "{out}");

    // The audit lists HTTP verdicts with their operation.
    let audit = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse-audit"))
        .args([
            "statements",
            "--decision",
            "deny",
            "--format",
            "json",
            "--store",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8(audit.stdout).unwrap();
    assert!(audit.status.success(), "{stdout}");
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(rows[0]["protocol"], "http");
    assert_eq!(rows[0]["text"], "DELETE /v1/invoices/1");
    assert_eq!(
        rows[0]["reason"],
        "the plan does not allow DELETE /v1/invoices/*"
    );
}

#[test]
fn large_bodies_are_capped_like_results() {
    let mut s = SessionBuilder::new(sid(T0_MS, 4));
    s.opened();
    let op = "GET /v1/export";
    s.wait(1_000)
        .request(1, "GET", "/orders-api/v1/export", op)
        .verdict(Decision::Allow, op, "", "", "")
        .response(1, 200, vec![h("content-type", "text/csv")], false);
    // 300 000 lines of "row NNNNNN\n" (11 bytes each) in 3 pieces.
    let all: Vec<u8> = (0..300_000)
        .flat_map(|i| format!("row {i:06}\n").into_bytes())
        .collect();
    for (i, chunk) in all.chunks(1_100_000).enumerate() {
        s.wait(1_000).piece(1, Direction::ToClient, chunk, i == 2);
    }
    let t = transcript(&s);
    let text = render_to_string(&t);
    for want in [
        "< body (3.1 MiB in 3 pieces):\n",
        "<   row 000000\n",
        "<   row 000099\n",
        "<   … 23 732 lines more (--all-rows shows them)\n",
        "<   … only the first 256.0 KiB kept (--all-rows keeps it all)\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("row 000100"));
    let doc = json(&t);
    let body = &doc["items"][0]["response_body"];
    assert_eq!(body["size"], 3_300_000);
    assert_eq!(body["truncated"], true);
    assert_eq!(body["text"].as_str().unwrap().len(), 256 * 1024);
    assert_eq!(body["pieces"].as_array().unwrap().len(), 1);
    assert_eq!(body["pieces_received"], 3);

    let t = TranscriptBuilder::build(sid(T0_MS, 4), TranscriptOptions::all_rows(), &s.decoded());
    let text = render_to_string(&t);
    assert!(text.contains("<   row 299999\n"));
    assert!(!text.contains("kept"));
}
