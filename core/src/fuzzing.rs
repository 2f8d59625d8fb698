//! The bodies of the cargo-fuzz targets in `fuzz/fuzz_targets/`, one
//! function per target, so that the targets (libFuzzer, nightly) and
//! `core/tests/fuzz_corpus.rs` (the committed corpus replayed with brief
//! deterministic mutations on stable, in every `cargo test`) run exactly
//! the same code.
//!
//! Each function takes arbitrary bytes and must never panic; the
//! assertions in them are the properties the targets check. Not part of
//! the API: hidden from the docs, and only the fuzz targets and the corpus
//! replay call it.
#![doc(hidden)]

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;

use crate::event::SessionId;
use crate::grant::{KeySet, Limits, Rule, SigningKey, TargetScope, Verifier};
use crate::mask::{ColumnRule, Detector, DictionaryRule, MaskRules, Masker, Strategy};
use crate::pg::{
    Action, ApprovalDecision, Authorized, HoldMode, Policy, Session, SessionConfig, UpstreamLogin,
    backend, frame, frontend,
};
use crate::policy::{ClassifierCache, classify as classify_sql};

/// Every decoder of PostgreSQL bytes, on arbitrary input: never a panic.
pub fn pg_frames(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let _ = frame::decode_startup(&mut buf);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(f)) = frame::decode(&mut buf, 1 << 20) {
        let _ = frontend::Message::parse(&f);
        let _ = backend::Message::parse(&f);
    }
    let bytes = bytes::Bytes::copy_from_slice(data);
    for f in frame::split(&bytes) {
        let _ = backend::Message::parse(&f);
    }
}

/// HTTP and Kubernetes requests held against a plan, and rule entries
/// parsed, on arbitrary text: never a panic, and nothing is allowed or held
/// that the plan's rules do not cover (no traversal past a pattern).
///
/// Input format: a byte whose low bit chooses a Kubernetes target over an
/// HTTP one, then `METHOD TARGET` (lossy UTF-8), also parsed as an `http`
/// and a `kube` entry.
pub fn request_policy(data: &[u8]) {
    use crate::http::kube::RequestInfo;
    use crate::http::rules::{Decision, HttpPolicy, HttpRule, KubeRule, NormalPath, TargetKind};
    static POLICIES: OnceLock<Option<(HttpPolicy, HttpPolicy)>> = OnceLock::new();
    let Some((http, kube)) = POLICIES.get_or_init(|| {
        let rule = |http: &[&str], kube: &[&str]| Rule {
            http: http.iter().map(|s| (*s).to_owned()).collect(),
            kube: kube.iter().map(|s| (*s).to_owned()).collect(),
            ..Rule::default()
        };
        let scope = TargetScope {
            allow: vec![rule(
                &["GET,HEAD /v1/invoices/**"],
                &["get,list,watch pods in billing"],
            )],
            approve: vec![rule(
                &["POST /v1/refunds"],
                &["create pods/exec in billing"],
            )],
            ..TargetScope::default()
        };
        let http = HttpPolicy::compile(&scope, TargetKind::Http).ok()?;
        let kube = HttpPolicy::compile(&scope, TargetKind::Kubernetes).ok()?;
        Some((http, kube))
    }) else {
        panic!("the fuzz plan does not compile");
    };
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let _ = HttpRule::parse(&text);
    let _ = KubeRule::parse(&text);
    let (method, target) = text.split_once(' ').unwrap_or(("GET", &text));
    let path = NormalPath::parse(target);
    if kind & 1 == 0 {
        let verdict = http.check(method, target);
        let path = path.as_ref().map(|p| p.segments.clone());
        match verdict.decision {
            Decision::Allow => {
                let under = path.is_ok_and(|s| s.starts_with(&["v1".into(), "invoices".into()]));
                assert!(
                    under && (method == "GET" || method == "HEAD"),
                    "{verdict:?}"
                );
            }
            Decision::Hold => {
                assert!(method == "POST" && path == Ok(vec!["v1".into(), "refunds".into()]));
            }
            Decision::Deny => assert!(!verdict.reason.is_empty()),
        }
        return;
    }
    let verdict = kube.check(method, target);
    let info = RequestInfo::parse(method, target);
    assert_eq!(
        path.is_err(),
        matches!(info, Err(crate::http::kube::KubeError::Path(_)))
    );
    if let Ok(info) = &info {
        let _ = info.describe();
    }
    match verdict.decision {
        Decision::Allow => {
            let info = info.unwrap_or_else(|e| panic!("allowed but unreadable: {e}"));
            let reads = ["get", "list", "watch"].contains(&info.verb.as_str());
            let pods = info.is_resource_request
                && info.namespace == "billing"
                && info.api_group.is_empty()
                && info.resource == "pods"
                && info.subresource.is_empty();
            // `http` entries cover non-resource URLs on a Kubernetes target.
            let invoices = !info.is_resource_request
                && (method == "GET" || method == "HEAD")
                && (info.path == "/v1/invoices" || info.path.starts_with("/v1/invoices/"));
            assert!(
                info.is_discovery() || (reads && pods) || invoices,
                "{info:?}"
            );
        }
        Decision::Hold => {
            let info = info.unwrap_or_else(|e| panic!("held but unreadable: {e}"));
            let exec = info.describe() == "create pods/exec in billing";
            // The approve rule's `http` entry, on a non-resource URL.
            let refunds =
                !info.is_resource_request && method == "POST" && info.path == "/v1/refunds";
            assert!(exec || refunds, "{info:?}");
        }
        Decision::Deny => assert!(!verdict.reason.is_empty()),
    }
}

/// The session state machine fed arbitrary client and target bytes, split
/// at arbitrary points, with the driver's answers in between: never a
/// panic, and whatever it forwards is whole frames.
///
/// Input format: a sequence of chunks, each a selector byte (even: client
/// bytes, odd: upstream bytes), a length byte, then that many bytes (fewer
/// at the end of the input).
pub fn pg_session(data: &[u8]) {
    let cfg = SessionConfig {
        tls_available: false,
        plaintext_allowed: true,
        max_client_frame: 4096,
        max_upstream_frame: 4096,
        backend_key: (1, 2),
        seal_key: None,
    };
    // Masking on, with a column rule, so the shape tracker and the frame
    // rewriting see the same arbitrary traffic.
    let rules = MaskRules {
        columns: vec![ColumnRule {
            pattern: "ssn".into(),
            strategy: Strategy::Redact,
        }],
        detectors: vec![(Detector::Email, Strategy::Redact)],
        dictionaries: vec![],
    };
    let Ok(masker) = Masker::new(rules, b"") else {
        return;
    };
    let masker = Arc::new(masker);
    // A plan that allows reading `public` only, with limits: most
    // statements are denied, so the denial rewrites and the ledger of
    // requests in flight see the arbitrary traffic too.
    let policy = Policy {
        scope: Arc::new(TargetScope {
            allow: vec![Rule {
                name: None,
                ops: vec!["select".into()],
                relations: vec!["public.*".into()],
                functions: vec![],
                ..Rule::default()
            }],
            approve: vec![Rule {
                name: None,
                ops: vec!["update".into(), "delete".into()],
                relations: vec!["public.*".into()],
                functions: vec![],
                ..Rule::default()
            }],
            limits: Limits {
                statements: Some(50),
                rows: Some(100),
                duration_s: Some(1),
            },
            mask: Default::default(),
        }),
        classifier: Arc::new(ClassifierCache::new(64)),
        jti: "j".into(),
        hold: HoldMode::Wait,
        approvals: None,
    };
    let mut s = Session::new(SessionId([0; 16]), cfg, "fuzz".into(), 0);
    let mut client = BytesMut::new();
    let mut upstream = BytesMut::new();
    // Each chunk: a selector byte, a length byte, then that many bytes.
    let mut rest = data;
    let mut now = 0;
    while let [sel, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (chunk, tail) = tail.split_at(n);
        rest = tail;
        now += 1;
        if sel & 1 == 0 {
            client.extend_from_slice(chunk);
            s.handle_client_data(&mut client, now);
        } else {
            upstream.extend_from_slice(chunk);
            s.handle_upstream_data(&mut upstream, now);
        }
        while s.poll_transmit().is_some() {}
        while let Some(a) = s.poll_action() {
            match a {
                Action::Authorize { .. } => s.authorized(
                    Authorized {
                        subject: "s".into(),
                        jti: "j".into(),
                        issuer: "i".into(),
                        purpose: "p".into(),
                        ticket: None,
                        use_number: 1,
                        max_uses: None,
                        expires_at: 0,
                        login: UpstreamLogin {
                            database: "d".into(),
                            user: "u".into(),
                            password: Some("pw".into()),
                        },
                        masker: Some(masker.clone()),
                        policy: policy.clone(),
                    },
                    now,
                ),
                Action::ConnectUpstream => s.upstream_connected(now),
                // Holds are decided at once, either way.
                Action::RequestApproval {
                    request,
                    wait: true,
                } => {
                    let decision = ApprovalDecision {
                        approved: now % 2 == 0,
                        approver: "fuzz".into(),
                        reason: "r".into(),
                    };
                    s.approval_decided(&request.id, decision, now);
                    s.handle_client_data(&mut client, now);
                }
                _ => {}
            }
        }
        let _ = s.take_events();
    }
}

/// Grant verification of arbitrary strings: never a panic, never accepted.
pub fn grant_verify(data: &[u8]) {
    let Ok(key) = SigningKey::from_secret_bytes(&[7; 32]) else {
        return;
    };
    let Ok(keys) = KeySet::from_keys([key.verifying_key().clone()]) else {
        return;
    };
    let verifier = Verifier {
        keys,
        issuer: "gatehouse".into(),
        audience: "gatehouse".into(),
        leeway_s: 5,
    };
    let token = String::from_utf8_lossy(data);
    assert!(
        verifier.verify(&token, 1_800_000_000).is_err(),
        "an arbitrary token was accepted"
    );
}

/// Stored event bytes are validated before use: arbitrary bytes never
/// panic the reader.
pub fn event_decode(data: &[u8]) {
    let _ = crate::event::decode(data);
}

/// The store's `events` entries are untrusted: arbitrary keys and values
/// never panic the run decoder, and whatever it splits is exactly the
/// run's framing (re-encoding the pieces gives the value back, numbered
/// from the key's first sequence number on).
///
/// Input format: a byte whose low bit chooses a run's key over a single
/// event's, the first and last sequence numbers (u64 BE each), then the
/// value.
pub fn event_runs(data: &[u8]) {
    use crate::event::runs::{count, length_prefix, run_key, seqs, split};
    let id = SessionId([7; 16]);
    let word = |at: usize| {
        data.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_be_bytes)
    };
    let (first, last) = (word(1), word(9));
    let run = data.first().is_some_and(|b| b & 1 == 1);
    let key = if run {
        run_key(id, first, last).to_vec()
    } else {
        crate::event::event_key(id, first).to_vec()
    };
    let value = data.get(17..).unwrap_or_default();
    let Ok(range) = seqs(&id, &key) else {
        assert!(run && first >= last, "a well-formed key was refused");
        assert!(split(&id, &key, value).is_err());
        return;
    };
    assert_eq!(*range.start(), first);
    let Ok(parts) = split(&id, &key, value) else {
        assert!(run, "a single event's value is whatever is stored");
        return;
    };
    assert_eq!(parts.len() as u64, count(&id, &key));
    if !run {
        assert_eq!(parts, [(first, 0..value.len())]);
        return;
    }
    let mut rebuilt = Vec::with_capacity(value.len());
    for (n, (seq, at)) in parts.iter().enumerate() {
        assert_eq!(*seq, first + n as u64);
        let Some(piece) = value.get(at.clone()) else {
            panic!("part #{seq} ({at:?}) is outside the value");
        };
        rebuilt.extend_from_slice(&length_prefix(piece.len()));
        rebuilt.extend_from_slice(piece);
    }
    assert_eq!(rebuilt, value, "the parts are not the run's framing");
}

/// Stored checkpoint bytes are untrusted: arbitrary bytes never panic the
/// decoder, whatever decodes encodes back to exactly the same bytes (one
/// canonical form), and checking its signature never panics either.
pub fn checkpoint_decode(data: &[u8]) {
    use crate::event::{SealKey, decode_checkpoint, verify_checkpoint};
    static KEY: OnceLock<crate::event::SealPublicKey> = OnceLock::new();
    let Ok(checkpoint) = decode_checkpoint(data) else {
        return;
    };
    assert_eq!(checkpoint.encode(), data, "decoding is not canonical");
    let key = KEY.get_or_init(|| SealKey::from_secret_bytes(&[0x42; 32]).public_key());
    let _ = verify_checkpoint(key, &checkpoint);
}

/// Stored prune records are untrusted: arbitrary bytes never panic the
/// decoder, and what decodes encodes back to the same bytes.
pub fn prune_decode(data: &[u8]) {
    use crate::event::{SealKey, decode_prune, verify_prune};
    static KEY: OnceLock<crate::event::SealPublicKey> = OnceLock::new();
    let Ok(record) = decode_prune(data) else {
        return;
    };
    assert_eq!(record.encode(), data, "decoding is not canonical");
    let key = KEY.get_or_init(|| SealKey::from_secret_bytes(&[0x42; 32]).public_key());
    let _ = verify_prune(key, &record);
}

/// A sealed archive is untrusted input (an auditor's file, a download):
/// arbitrary bytes never panic the decoder, and decoding the same bytes in
/// pieces (sizes taken from the input) gives the same items and the same
/// error as decoding them at once.
pub fn archive_read(data: &[u8]) {
    use crate::event::archive::{ArchiveError, Decoder, Item, decode_all};
    let whole = decode_all(data);
    let pieces = (|| -> Result<Vec<Item>, ArchiveError> {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        let mut rest = data;
        let mut step = data.first().map_or(1, |b| usize::from(*b % 17) + 1);
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(step.min(rest.len()));
            buf.extend_from_slice(piece);
            rest = tail;
            step = step % 7 + 1;
            while let Some(item) = decoder.decode(&mut buf)? {
                items.push(item);
            }
        }
        decoder.finish(&buf)?;
        Ok(items)
    })();
    assert_eq!(whole, pieces, "decoding in pieces differs");
}

/// The masking engine over arbitrary values: never a panic, and a value it
/// reports unchanged gets nothing written.
pub fn mask_value(data: &[u8]) {
    // Built once: compiling the rules costs far more than masking a value,
    // and the fuzzer is after the values.
    static MASKER: OnceLock<Option<Masker>> = OnceLock::new();
    let Some(masker) = MASKER.get_or_init(fuzz_masker) else {
        return;
    };
    let mut out = Vec::new();
    if masker.mask_value(data, &mut out).is_none() {
        assert!(out.is_empty(), "an unchanged value had output written");
    }
}

/// Every detector, a column rule and a dictionary.
fn fuzz_masker() -> Option<Masker> {
    let rules = MaskRules {
        columns: vec![ColumnRule {
            pattern: "*.ssn".into(),
            strategy: Strategy::Redact,
        }],
        detectors: Detector::ALL
            .iter()
            .map(|d| (*d, Strategy::Token))
            .collect(),
        dictionaries: vec![DictionaryRule {
            terms: vec!["Initech".into(), "db-7.internal".into()],
            case_insensitive: true,
            strategy: Strategy::Partial { keep_last: 2 },
        }],
    };
    Masker::new(rules, b"fuzzing secret, 32 bytes long..").ok()
}

/// SQL classification of arbitrary text: never a panic, a cached
/// classification equals a direct one, and every statement's accesses come
/// sorted and without duplicates.
pub fn classify(data: &[u8]) {
    static CACHE: OnceLock<ClassifierCache> = OnceLock::new();
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let direct = classify_sql(sql);
    if let Ok(classification) = &direct {
        for statement in &classification.statements {
            assert!(
                statement
                    .accesses
                    .windows(2)
                    .all(|w| matches!(w, [a, b] if a < b)),
                "accesses not sorted and unique: {:?}",
                statement.accesses
            );
        }
    }
    let cached = CACHE
        .get_or_init(|| ClassifierCache::new(1024))
        .classify(sql);
    // The cache keys by normalized text, so it may hold the classification
    // of another statement differing only in constants: constants never
    // change a classification.
    if let (Ok(direct), Ok(cached)) = (&direct, &*cached) {
        assert_eq!(direct, cached, "cached classification differs from direct");
    }
}

/// The WebSocket decoder on arbitrary bytes, both roles, fed whole and
/// split at an input-derived point: never a panic, the same messages either
/// way, at most one error and nothing after it, payloads within the limits,
/// and memory held within the limit plus a control payload plus a partial
/// header. Every message also goes through the Kubernetes channel view.
///
/// Input format: a byte choosing `max_message` (0–255), two bytes (big
/// endian) choosing the split point modulo the stream's length plus one,
/// then the stream.
pub fn ws_frames(data: &[u8]) {
    use crate::http::websocket::{Role, WsDecoder, WsLimits, WsMessage, k8s_channel, parse_resize};
    let (Some(&limit), Some(split), Some(stream)) = (data.first(), data.get(1..3), data.get(3..))
    else {
        return;
    };
    let limits = WsLimits {
        max_message: usize::from(limit),
    };
    let split = u16::from_be_bytes(split.try_into().unwrap_or_default());
    let split = usize::from(split) % (stream.len() + 1);
    let (head, tail) = stream.split_at(split);
    let check = |m: &WsMessage| {
        let kept = m.payload.len() as u64;
        assert!(kept <= m.len, "payload longer than the message");
        if m.opcode.is_control() {
            assert!(m.len <= 125 && !m.truncated, "control frame over 125 bytes");
        } else {
            assert!(
                m.payload.len() <= limits.max_message,
                "payload over the limit"
            );
            assert!(m.truncated == (kept < m.len) || m.notes.incomplete);
        }
        for protocol in [
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "base64.channel.k8s.io",
        ] {
            if let Some(frame) = k8s_channel(protocol, m)
                && frame.name == "resize"
            {
                let _ = parse_resize(&frame.data);
            }
        }
    };
    for role in [Role::Client, Role::Server] {
        let run = |chunks: &[&[u8]]| {
            let mut d = WsDecoder::new(role, limits);
            let mut out = Vec::new();
            for chunk in chunks {
                d.feed(chunk);
                while let Some(m) = d.next_message() {
                    assert!(
                        !matches!(out.last(), Some(Err(_))),
                        "a result after the error"
                    );
                    if let Ok(m) = &m {
                        check(m);
                    }
                    out.push(m);
                }
                // Drained: the input holds at most a partial header.
                assert!(
                    d.held() <= limits.max_message + 125 + 13,
                    "{} bytes held",
                    d.held()
                );
            }
            let tail = d.finish();
            if let Some(m) = &tail {
                check(m);
            }
            (out, tail)
        };
        assert_eq!(run(&[stream]), run(&[head, tail]), "split at {split}");
    }
}

/// JSON and text body masking on arbitrary bytes, fed whole and split at an
/// input-derived point: never a panic, the same output, hits and error
/// either way, and for a body serde_json reads as JSON values, masked
/// output that it reads too.
///
/// Input format: a byte choosing the split point (scaled to the body's
/// length), a byte whose low bit chooses small limits (64-byte values,
/// depth 8) over the defaults, then the body.
pub fn mask_json(data: &[u8]) {
    use crate::mask::{
        BodyLimits, BodyMaskError, JsonKeyRule, JsonKeys, JsonMaskStream, TextMaskStream,
    };
    static STATE: OnceLock<Option<(Arc<JsonKeys>, Arc<Masker>)>> = OnceLock::new();
    let Some((keys, masker)) = STATE.get_or_init(|| {
        let rule = |pattern: &str, strategy| JsonKeyRule {
            pattern: pattern.into(),
            strategy,
        };
        let rules = [
            rule("password", Strategy::Redact),
            rule("*token", Strategy::Token),
            rule("credentials", Strategy::Partial { keep_last: 2 }),
            rule("ssn", Strategy::Null),
        ];
        let keys = JsonKeys::new(&rules, b"fuzzing secret, 32 bytes long..").ok()?;
        Some((Arc::new(keys), Arc::new(fuzz_masker()?)))
    }) else {
        return;
    };
    let (Some(&at), Some(&flags), Some(body)) = (data.first(), data.get(1), data.get(2..)) else {
        return;
    };
    let limits = if flags & 1 == 1 {
        BodyLimits {
            max_value: 64,
            max_depth: 8,
        }
    } else {
        BodyLimits::default()
    };
    let split = usize::from(at) * body.len() / 255;
    let (head, tail) = body.split_at(split.min(body.len()));
    type Run = (
        BytesMut,
        Result<(), BodyMaskError>,
        Vec<crate::event::MaskHit>,
    );
    let json = |chunks: &[&[u8]]| -> Run {
        let mut s = JsonMaskStream::with_limits(keys.clone(), Some(masker.clone()), limits);
        let mut out = BytesMut::new();
        let result = chunks
            .iter()
            .try_for_each(|c| s.feed(c, &mut out))
            .and_then(|()| s.finish(&mut out));
        (out, result, s.hits())
    };
    let whole = json(&[body]);
    let split_run = json(&[head, tail]);
    assert_eq!(whole.1, split_run.1, "the error depends on the split");
    if whole.1.is_ok() {
        assert_eq!(whole.0, split_run.0, "the output depends on the split");
        assert_eq!(whole.2, split_run.2, "the hits depend on the split");
    }
    let values = |b: &[u8]| {
        serde_json::Deserializer::from_slice(b)
            .into_iter::<serde_json::Value>()
            .all(|v| v.is_ok())
    };
    if flags & 1 == 0 && values(body) {
        assert_eq!(whole.1, Ok(()), "valid JSON refused");
        assert!(values(&whole.0), "valid JSON masked into invalid JSON");
    }
    let text = |chunks: &[&[u8]]| {
        let mut s = TextMaskStream::with_limits(Some(masker.clone()), limits);
        let mut out = BytesMut::new();
        for c in chunks {
            let _ = s.feed(c, &mut out);
        }
        let _ = s.finish(&mut out);
        (out, s.hits())
    };
    assert_eq!(
        text(&[body]),
        text(&[head, tail]),
        "text masking depends on the split"
    );
}
