//! Tests of body masking: every input is also fed split at every byte and
//! in one-byte chunks, and must give the same output, hits and errors.

mod json;
mod random;

mod text;

use std::sync::Arc;

use bytes::BytesMut;

use super::{BodyLimits, BodyMaskError, JsonKeyRule, JsonKeys, JsonMaskStream, TextMaskStream};
use crate::event::MaskHit;
use crate::mask::{Detector, DictionaryRule, MaskRules, Masker, Strategy};

const SECRET: &[u8] = b"0123456789abcdef-test-secret";

fn masker_with(detectors: &[(Detector, Strategy)]) -> Arc<Masker> {
    let rules = MaskRules {
        detectors: detectors.to_vec(),
        dictionaries: vec![DictionaryRule {
            terms: vec!["Initech".into()],
            case_insensitive: true,
            strategy: Strategy::Redact,
        }],
        ..MaskRules::default()
    };
    Arc::new(Masker::new(rules, SECRET).unwrap())
}

/// E-mail and card numbers redacted, SSNs nulled, a dictionary.
fn masker() -> Arc<Masker> {
    masker_with(&[
        (Detector::Email, Strategy::Redact),
        (Detector::CardNumber, Strategy::Partial { keep_last: 4 }),
        (Detector::UsSsn, Strategy::Null),
    ])
}

fn key_rules(rules: &[(&str, Strategy)]) -> Arc<JsonKeys> {
    let rules: Vec<JsonKeyRule> = rules
        .iter()
        .map(|&(pattern, strategy)| JsonKeyRule {
            pattern: pattern.into(),
            strategy,
        })
        .collect();
    Arc::new(JsonKeys::new(&rules, SECRET).unwrap())
}

/// `password`, `*token`, `credentials`, `pin` (partial), `ssn` (null).
fn keys() -> Arc<JsonKeys> {
    key_rules(&[
        ("password", Strategy::Redact),
        ("*token", Strategy::Redact),
        ("credentials", Strategy::Redact),
        ("pin", Strategy::Partial { keep_last: 2 }),
        ("ssn", Strategy::Null),
        ("apiKey", Strategy::Token),
    ])
}

type Run = (Vec<u8>, Result<(), BodyMaskError>, Vec<MaskHit>);

/// A stream under test: JSON or text.
trait Stream {
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), BodyMaskError>;
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BodyMaskError>;
    fn hits(&self) -> Vec<MaskHit>;
}

impl Stream for JsonMaskStream {
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), BodyMaskError> {
        JsonMaskStream::feed(self, chunk, out)
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BodyMaskError> {
        JsonMaskStream::finish(self, out)
    }
    fn hits(&self) -> Vec<MaskHit> {
        JsonMaskStream::hits(self)
    }
}

impl Stream for TextMaskStream {
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), BodyMaskError> {
        TextMaskStream::feed(self, chunk, out)
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), BodyMaskError> {
        TextMaskStream::finish(self, out)
    }
    fn hits(&self) -> Vec<MaskHit> {
        TextMaskStream::hits(self)
    }
}

/// Feeds `chunks` then finishes; stops at the first error.
fn run_chunks<S: Stream>(mut s: S, chunks: &[&[u8]]) -> Run {
    let mut out = BytesMut::new();
    let mut result = Ok(());
    for chunk in chunks {
        result = s.feed(chunk, &mut out);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = s.finish(&mut out);
    }
    (out.to_vec(), result, s.hits())
}

/// Runs `input` whole, split at every byte, and in one-byte chunks, with
/// streams from `make`; every run must agree (on errors: the error, not the
/// partial output). Returns the whole run.
fn check_splits<S: Stream>(make: impl Fn() -> S, input: &[u8]) -> Run {
    let whole = run_chunks(make(), &[input]);
    let agree = |run: Run, how: &str| {
        assert_eq!(
            run.1,
            whole.1,
            "{how}: {:?}",
            String::from_utf8_lossy(input)
        );
        if whole.1.is_ok() {
            assert_eq!(
                String::from_utf8_lossy(&run.0),
                String::from_utf8_lossy(&whole.0),
                "{how}"
            );
            assert_eq!(run.2, whole.2, "{how}");
        }
    };
    for k in 0..=input.len() {
        let (a, b) = input.split_at(k);
        agree(run_chunks(make(), &[a, b]), &format!("split at {k}"));
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    agree(run_chunks(make(), &bytes), "one-byte chunks");
    // An empty chunk anywhere changes nothing either.
    let (a, b) = input.split_at(input.len() / 2);
    agree(run_chunks(make(), &[a, b"", b]), "with an empty chunk");
    whole
}

fn json_stream(keys: &Arc<JsonKeys>, masker: &Arc<Masker>) -> impl Fn() -> JsonMaskStream {
    let (keys, masker) = (keys.clone(), masker.clone());
    move || JsonMaskStream::new(keys.clone(), Some(masker.clone()))
}

fn json_limited(limits: BodyLimits) -> impl Fn() -> JsonMaskStream {
    let (keys, masker) = (keys(), masker());
    move || JsonMaskStream::with_limits(keys.clone(), Some(masker.clone()), limits)
}

/// Masks `input` (checking every split) with [`keys`] and [`masker`];
/// asserts that it succeeds and that serde_json parses the output as a
/// sequence of values exactly when it parses the input.
fn mask_json(input: &str) -> (String, Vec<MaskHit>) {
    let (out, result, hits) = check_splits(json_stream(&keys(), &masker()), input.as_bytes());
    assert_eq!(result, Ok(()), "{input}");
    let out = String::from_utf8(out).unwrap();
    if parses(input.as_bytes()) {
        assert!(parses(out.as_bytes()), "{input} -> {out}");
    }
    (out, hits)
}

/// Whether serde_json reads `bytes` as zero or more values.
fn parses(bytes: &[u8]) -> bool {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde_json::Value>()
        .all(|v| v.is_ok())
}

fn hit(rule: &str, column: &str, count: u32) -> MaskHit {
    MaskHit {
        rule: rule.into(),
        column: column.into(),
        count,
    }
}

#[test]
fn content_types_choose_the_stream() {
    use super::BodyKind;
    for (value, kind) in [
        ("application/json", Some(BodyKind::Json)),
        ("Application/JSON; charset=utf-8", Some(BodyKind::Json)),
        ("application/json;stream=watch", Some(BodyKind::Json)),
        (
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            Some(BodyKind::Json),
        ),
        ("application/merge-patch+json", Some(BodyKind::Json)),
        ("application/x-ndjson", Some(BodyKind::Json)),
        ("text/plain", Some(BodyKind::Text)),
        (" text/plain ; charset=utf-8", Some(BodyKind::Text)),
        ("application/vnd.kubernetes.protobuf", None),
        ("application/octet-stream", None),
        ("application/jsonx", None),
        ("text/", None),
        ("json", None),
        ("", None),
    ] {
        assert_eq!(BodyKind::of_content_type(value), kind, "{value}");
    }
}
