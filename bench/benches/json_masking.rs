//! Streaming masking of HTTP response bodies: a Kubernetes-like pod list
//! (~1 MiB of JSON) and container logs (~1 MiB of text), fed in 16 KiB
//! chunks as the proxy reads them. Throughput is body bytes.
//!
//! - `json keys only`: key rules, no content rules (every string is still
//!   lexed, validated and held until its closing quote);
//! - `json keys + detectors`: key rules and every detector (every string
//!   and number also scanned);
//! - `serde_json parse`: parsing the same body into a `Value`, whole (a
//!   yardstick, not a ceiling: it neither streams nor writes);
//! - `text detectors`: log lines through every detector.

use std::hint::black_box;
use std::sync::Arc;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gatehouse_core::mask::{
    Detector, JsonKeyRule, JsonKeys, JsonMaskStream, MaskRules, Masker, Strategy, TextMaskStream,
};

const CHUNK: usize = 16 * 1024;
const SECRET: &[u8] = b"0123456789abcdef-bench-secret";

fn pod(i: usize) -> String {
    format!(
        r#"{{"metadata":{{"name":"api-{i}-7d9f8c6b5-x2k4p","namespace":"billing","uid":"550e8400-e29b-41d4-a716-{i:012}","resourceVersion":"{rv}","creationTimestamp":"2024-03-15T12:34:56Z","labels":{{"app":"api","pod-template-hash":"7d9f8c6b5"}},"annotations":{{"owner":"{owner}"}}}},"spec":{{"containers":[{{"name":"api","image":"registry.example.com/api:1.2.{i}","env":[{{"name":"DB_HOST","value":"db.billing.svc"}},{{"name":"API_TOKEN","value":"t-{i}"}}],"ports":[{{"containerPort":8080,"protocol":"TCP"}}],"resources":{{"limits":{{"cpu":"500m","memory":"256Mi"}}}}}}],"serviceAccountName":"api","nodeName":"node-{n}"}},"status":{{"phase":"Running","podIP":"10.0.{n}.{m}","startTime":"2024-03-15T12:35:01Z","conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
        rv = 100_000 + i,
        owner = if i.is_multiple_of(50) {
            "ops@example.com"
        } else {
            "team-billing"
        },
        n = i % 7,
        m = i % 250,
    )
}

fn pod_list() -> Vec<u8> {
    let mut body = String::from(r#"{"kind":"PodList","apiVersion":"v1","items":["#);
    let mut i = 0;
    while body.len() < 1 << 20 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&pod(i));
        i += 1;
    }
    body.push_str("]}");
    body.into_bytes()
}

fn logs() -> Vec<u8> {
    let mut body = String::new();
    let mut i = 0usize;
    while body.len() < 1 << 20 {
        if i.is_multiple_of(100) {
            body.push_str(&format!("2024-03-15T12:34:{:02}Z INFO charge ok user=bob{i}@example.com card=4111111111111111\n", i % 60));
        } else {
            body.push_str(&format!("2024-03-15T12:34:{:02}Z INFO GET /v1/invoices/{i} 200 12ms request_id=550e8400-e29b-41d4\n", i % 60));
        }
        i += 1;
    }
    body.into_bytes()
}

fn keys() -> Arc<JsonKeys> {
    let rules: Vec<JsonKeyRule> = ["password", "*token", "secret*", "email"]
        .iter()
        .map(|p| JsonKeyRule {
            pattern: (*p).into(),
            strategy: Strategy::Redact,
        })
        .collect();
    Arc::new(JsonKeys::new(&rules, SECRET).expect("key rules"))
}

fn masker() -> Arc<Masker> {
    let rules = MaskRules {
        detectors: Detector::ALL
            .iter()
            .map(|&d| (d, Strategy::Redact))
            .collect(),
        ..MaskRules::default()
    };
    Arc::new(Masker::new(rules, SECRET).expect("rules"))
}

fn bench(c: &mut Criterion) {
    let (keys, masker) = (keys(), masker());
    let list = pod_list();
    let mut out = BytesMut::with_capacity(list.len() + 4096);
    let mut group = c.benchmark_group("body masking");
    group.throughput(Throughput::Bytes(list.len() as u64));
    for (name, m) in [
        ("json keys only", None),
        ("json keys + detectors", Some(masker.clone())),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut s = JsonMaskStream::new(keys.clone(), m.clone());
                for chunk in list.chunks(CHUNK) {
                    s.feed(chunk, &mut out).expect("valid JSON");
                }
                s.finish(&mut out).expect("valid JSON");
                black_box(out.len())
            })
        });
    }
    group.bench_function("serde_json parse", |b| {
        b.iter(|| black_box(serde_json::from_slice::<serde_json::Value>(&list).expect("JSON")))
    });
    let text = logs();
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("text detectors", |b| {
        b.iter(|| {
            out.clear();
            let mut s = TextMaskStream::new(Some(masker.clone()));
            for chunk in text.chunks(CHUNK) {
                s.feed(chunk, &mut out).expect("text");
            }
            s.finish(&mut out).expect("text");
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
