//! JSON bodies: table-driven cases, each checked at every split.

use super::*;

#[test]
fn unmatched_input_passes_byte_for_byte() {
    for input in [
        "",
        "  \n",
        "{}",
        "[]",
        " { \"a\" : [ 1 , -2.5e+3 , 0 , true , false , null , \"x\\u00e9\\/\\n\" ] } ",
        "{\"name\":\"caf\u{e9} \u{1F389}\",\"n\":[[],{}],\"id\":\"550e8400-e29b-41d4-a716-446655440000\"}",
        "1 2 3",
        "\"just a string\"",
        "[\"\\ud83d\\ude00\", \"\\ud800 lone\", \"\\\"quoted\\\"\"]",
        "{\"token_count\": 3}",
    ] {
        let (out, hits) = mask_json(input);
        assert_eq!(out, input);
        assert!(hits.is_empty(), "{input}: {hits:?}");
    }
}

#[test]
fn key_rules_mask_values_by_type() {
    let cases = [
        (
            r#"{"password":"hunter2","user":"bob"}"#,
            r#"{"password":"****","user":"bob"}"#,
        ),
        (r#"{"Pass\u0077ORD": "x"}"#, r#"{"Pass\u0077ORD": "****"}"#),
        (
            r#"{"access_token": 12345678}"#,
            r#"{"access_token": "****"}"#,
        ),
        (r#"{"pin": 12345678}"#, r#"{"pin": "****78"}"#),
        (r#"{"pin": "1234\u00e9x"}"#, r#"{"pin": "****éx"}"#),
        (
            r#"{"password": true, "token": false}"#,
            r#"{"password": "****", "token": "****"}"#,
        ),
        (r#"{"password": null}"#, r#"{"password": null}"#),
        (
            r#"{"ssn": "123-45-6789", "ssn": 7}"#,
            r#"{"ssn": null, "ssn": null}"#,
        ),
        (
            r#"{"credentials": {"user": "a", "list": [1, {"deep": "y"}, null]}, "other": "z"}"#,
            r#"{"credentials": {"user": "****", "list": ["****", {"deep": "****"}, null]}, "other": "z"}"#,
        ),
        (
            r#"{"credentials": [], "password": {}}"#,
            r#"{"credentials": [], "password": {}}"#,
        ),
        (
            r#"[{"password":"a"},{"password":"b"}]"#,
            r#"[{"password":"****"},{"password":"****"}]"#,
        ),
        // The key is not masked, and a key rule does not look at values.
        (r#"{"note": "password"}"#, r#"{"note": "password"}"#),
    ];
    for (input, want) in cases {
        assert_eq!(mask_json(input).0, want, "{input}");
    }
}

#[test]
fn the_outermost_key_decides() {
    // `credentials` redacts; the `pin` (partial) inside it redacts too.
    let (out, hits) = mask_json(r#"{"credentials": {"pin": 12345678}}"#);
    assert_eq!(out, r#"{"credentials": {"pin": "****"}}"#);
    assert_eq!(hits, vec![hit("key:credentials", "credentials.pin", 1)]);
}

#[test]
fn token_strategy_is_deterministic() {
    let (out, hits) = mask_json(r#"{"apikey": "k1", "nested": {"ApiKey": "k1"}, "apiKey": "k2"}"#);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let a = v["apikey"].as_str().unwrap();
    assert!(a.starts_with("tok_"), "{out}");
    assert_eq!(v["nested"]["ApiKey"], a);
    // One hit per place, all charged to the one rule.
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.iter().all(|h| h.rule == "key:apiKey" && h.count == 1));
}

#[test]
fn detectors_see_decoded_strings() {
    let cases = [
        (
            r#"{"note":"mail bob@example.com now"}"#,
            r#"{"note":"mail **** now"}"#,
        ),
        (r#"{"note":"bob\u0040example.com"}"#, r#"{"note":"****"}"#),
        (
            r#"["\ud83d\ude00 bob@example.com"]"#,
            "[\"\u{1F600} ****\"]",
        ),
        (
            "[\"\u{e9} bob@example.com \u{fc}\"]",
            "[\"\u{e9} **** \u{fc}\"]",
        ),
        (
            r#"{"q":"say \"hi\"\n to bob@example.com\t\u0001"}"#,
            r#"{"q":"say \"hi\"\n to ****\t\u0001"}"#,
        ),
        (
            r#"{"card": "4111 1111 1111 1111"}"#,
            r#"{"card": "****1111"}"#,
        ),
        (r#"{"card": 4111111111111111}"#, r#"{"card": "****1111"}"#),
        (r#"{"ssn_text": "id 123-45-6789"}"#, r#"{"ssn_text": null}"#),
        (r#"{"org": "INITECH corp"}"#, r#"{"org": "**** corp"}"#),
        (r#""top@example.com""#, r#""****""#),
        // Keys are never masked.
        (r#"{"bob@example.com": 1}"#, r#"{"bob@example.com": 1}"#),
    ];
    for (input, want) in cases {
        assert_eq!(mask_json(input).0, want, "{input}");
    }
}

#[test]
fn hits_name_rule_and_path() {
    let (_, hits) = mask_json(
        r#"{"items":[{"spec":{"token":"a","mail":"x@example.com"}},{"spec":{"token":"b"}}],"password":"p"} "y@example.com""#,
    );
    assert_eq!(
        hits,
        vec![
            hit("key:password", "password", 1),
            hit("key:*token", "items[].spec.token", 2),
            hit("detector:email", "$", 1),
            hit("detector:email", "items[].spec.mail", 1),
        ]
    );
}

#[test]
fn watch_streams_are_masked_object_by_object() {
    let input = concat!(
        r#"{"type":"ADDED","object":{"kind":"Secret","data":{"token":"dG9rZW4="},"note":"a@example.com"}}"#,
        "\n",
        r#"{"type":"MODIFIED","object":{"kind":"Secret","data":{"token":"eA=="}}}"#,
        "\n",
        r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"12345"}}}"#,
        "\n",
    );
    let (out, hits) = mask_json(input);
    assert_eq!(
        out,
        concat!(
            r#"{"type":"ADDED","object":{"kind":"Secret","data":{"token":"****"},"note":"****"}}"#,
            "\n",
            r#"{"type":"MODIFIED","object":{"kind":"Secret","data":{"token":"****"}}}"#,
            "\n",
            r#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"12345"}}}"#,
            "\n",
        )
    );
    assert_eq!(
        hits,
        vec![
            hit("key:*token", "object.data.token", 2),
            hit("detector:email", "object.note", 1),
        ]
    );
}

#[test]
fn each_object_is_sent_before_the_next_arrives() {
    let mut s = JsonMaskStream::new(keys(), Some(masker()));
    let mut out = BytesMut::new();
    s.feed(b"{\"a\":1}\n{\"password\":\"x", &mut out).unwrap();
    assert_eq!(&out[..], b"{\"a\":1}\n{\"password\":");
    s.feed(b"y\"}\n", &mut out).unwrap();
    assert_eq!(&out[..], b"{\"a\":1}\n{\"password\":\"****\"}\n");
    // A number is held until something ends it.
    s.feed(b"[12", &mut out).unwrap();
    assert!(out.ends_with(b"\n["));
    s.feed(b"3]", &mut out).unwrap();
    assert!(out.ends_with(b"[123]"));
    s.finish(&mut out).unwrap();
}

#[test]
fn a_top_level_number_is_completed_by_finish() {
    let (out, _) = mask_json("4111111111111111");
    assert_eq!(out, "\"****1111\"");
    let (out, _) = mask_json("-0.5e-7");
    assert_eq!(out, "-0.5e-7");
}

#[test]
fn invalid_json_is_an_error_at_every_split() {
    let syntax = |offset| move |e: &BodyMaskError| matches!(e, BodyMaskError::Syntax { offset: o, .. } if *o == offset);
    let cases: &[(&[u8], Option<u64>)] = &[
        (b"{", None),
        (b"[1,2", None),
        (b"\"abc", None),
        (b"\"abc\\", None),
        (b"{\"a\"}", Some(4)),
        (b"[1,]", Some(3)),
        (b"{\"a\":1,}", Some(7)),
        (b"[1 2]", Some(3)),
        (b"\"\\x\"", Some(0)),
        (b"\"\\u12\"", Some(0)),
        (b"[\"\\u12g4\"]", Some(1)),
        (b"tru", Some(0)),
        (b"[trUe]", Some(1)),
        (b"nul l", Some(0)),
        (b"01", Some(0)),
        (b"[1.]", Some(1)),
        (b"-", Some(0)),
        (b"1e", Some(0)),
        (b"{\"a\":1]", Some(6)),
        (b"]", Some(0)),
        (b"{\"a\" 1}", Some(5)),
        (b"{1:2}", Some(1)),
        (b"\"a\x01b\"", Some(0)),
        (b"[\"\xff\"]", Some(1)),
        (b"{\"k\xc3\":1}", Some(1)),
        (b",", Some(0)),
        (b"[1}", Some(2)),
        (b"'a'", Some(0)),
        (b"{\"a\":1}}", Some(7)),
    ];
    for &(input, offset) in cases {
        let (_, result, _) = check_splits(json_stream(&keys(), &masker()), input);
        let err = result.expect_err(&String::from_utf8_lossy(input));
        match offset {
            None => assert_eq!(
                err,
                BodyMaskError::Truncated,
                "{:?}",
                String::from_utf8_lossy(input)
            ),
            Some(at) => assert!(
                syntax(at)(&err),
                "{:?}: {err:?}",
                String::from_utf8_lossy(input)
            ),
        }
        assert!(!parses(input) || input.is_empty());
    }
}

#[test]
fn after_an_error_nothing_more_is_written() {
    let mut s = JsonMaskStream::new(keys(), Some(masker()));
    let mut out = BytesMut::new();
    assert!(s.feed(b"[1,,\"a@example.com\"]", &mut out).is_err());
    assert_eq!(&out[..], b"");
    assert_eq!(s.feed(b"{}", &mut out), Err(BodyMaskError::Poisoned));
    assert_eq!(s.finish(&mut out), Err(BodyMaskError::Poisoned));
    assert_eq!(&out[..], b"");
}

#[test]
fn strings_past_the_limit_are_replaced_unscanned() {
    let limits = BodyLimits {
        max_value: 16,
        max_depth: 8,
    };
    // 16 raw bytes (quotes included) pass; 17 do not.
    let ok = format!("[\"{}\"]", "a".repeat(14));
    let (out, result, hits) = check_splits(json_limited(limits), ok.as_bytes());
    assert_eq!(
        (String::from_utf8(out).unwrap(), result),
        (ok.clone(), Ok(()))
    );
    assert!(hits.is_empty());
    let long = format!(
        "{{\"a\":\"{}\\\"\",\"b\":\"{}\"}}",
        "x".repeat(40),
        "y".repeat(15)
    );
    let (out, result, hits) = check_splits(json_limited(limits), long.as_bytes());
    assert_eq!(result, Ok(()));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"a":"****","b":"****"}"#
    );
    assert_eq!(
        hits,
        vec![
            hit("limit:max_value", "a", 1),
            hit("limit:max_value", "b", 1)
        ]
    );
    let key = format!("{{\"{}\":1}}", "k".repeat(20));
    let (_, result, _) = check_splits(json_limited(limits), key.as_bytes());
    assert_eq!(result, Err(BodyMaskError::TooLong { offset: 1 }));
    let number = format!("[{}]", "1".repeat(20));
    let (_, result, _) = check_splits(json_limited(limits), number.as_bytes());
    assert_eq!(result, Err(BodyMaskError::TooLong { offset: 1 }));
}

#[test]
fn a_held_string_stays_within_the_limit() {
    let limits = BodyLimits {
        max_value: 1000,
        max_depth: 8,
    };
    let mut s = json_limited(limits)();
    let mut out = BytesMut::new();
    s.feed(b"{\"a\":\"", &mut out).unwrap();
    for _ in 0..100 {
        s.feed(&[b'x'; 100], &mut out).unwrap();
    }
    assert_eq!(&out[..], b"{\"a\":\"****\"");
    assert!(format!("{s:?}").contains("held: 0"), "{s:?}");
    s.feed(b"\"}", &mut out).unwrap();
    s.finish(&mut out).unwrap();
    assert_eq!(&out[..], b"{\"a\":\"****\"}");
}

#[test]
fn nesting_is_limited() {
    let limits = BodyLimits {
        max_value: 100,
        max_depth: 3,
    };
    let (_, result, _) = check_splits(json_limited(limits), b"[[[]]]");
    assert_eq!(result, Ok(()));
    let (_, result, _) = check_splits(json_limited(limits), b"[[{\"a\":[]}]]");
    assert_eq!(result, Err(BodyMaskError::TooDeep { offset: 7 }));
}

#[test]
fn without_a_masker_only_keys_mask() {
    let keys = keys();
    let make = || JsonMaskStream::new(keys.clone(), None);
    let (out, result, hits) =
        check_splits(make, br#"{"password":"a@example.com","x":"b@example.com"}"#);
    assert_eq!(result, Ok(()));
    assert_eq!(out, br#"{"password":"****","x":"b@example.com"}"#);
    assert_eq!(hits, vec![hit("key:password", "password", 1)]);
}

#[test]
fn take_hits_forgets() {
    let mut s = JsonMaskStream::new(keys(), Some(masker()));
    let mut out = BytesMut::new();
    s.feed(br#"{"password":"a"}"#, &mut out).unwrap();
    assert_eq!(s.take_hits(), vec![hit("key:password", "password", 1)]);
    assert!(s.hits().is_empty());
}

#[test]
fn key_rules_are_validated() {
    use super::super::KeyRuleError;
    let rule = |pattern: &str, strategy| JsonKeyRule {
        pattern: pattern.into(),
        strategy,
    };
    assert_eq!(
        JsonKeys::new(&[rule("", Strategy::Redact)], SECRET).unwrap_err(),
        KeyRuleError::EmptyPattern { index: 0 }
    );
    assert_eq!(
        JsonKeys::new(&[rule("a", Strategy::Token)], b"short").unwrap_err(),
        KeyRuleError::WeakTokenSecret { len: 5 }
    );
    let keys = JsonKeys::new(
        &[
            rule("x-*-key", Strategy::Redact),
            rule("x*", Strategy::Null),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(keys.find(b"X-API-Key"), Some((0, Strategy::Redact)));
    assert_eq!(keys.find(b"xy"), Some((1, Strategy::Null)));
    assert_eq!(keys.find(b"y"), None);
    assert_eq!(keys.rule_name(0), "key:x-*-key");
}

#[test]
fn streams_are_send() {
    fn send<T: Send + 'static>() {}
    send::<JsonMaskStream>();
    send::<TextMaskStream>();
}

#[test]
fn hit_places_are_bounded() {
    // Deep paths are cut; many distinct places fold into `*`.
    let deep = format!(
        "{}\"a@example.com\"{}",
        "{\"kkkkkkkkkk\":".repeat(100),
        "}".repeat(100)
    );
    let (_, hits) = mask_json(&deep);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].column.len(), 512);
    let mut wide = String::from("{");
    for i in 0..1100 {
        wide.push_str(&format!("\"k{i}\":{{\"password\":1}},"));
    }
    wide.push_str("\"end\":0}");
    let keys = keys();
    let mut s = JsonMaskStream::new(keys, None);
    let mut out = BytesMut::new();
    s.feed(wide.as_bytes(), &mut out).unwrap();
    s.finish(&mut out).unwrap();
    let hits = s.hits();
    assert_eq!(hits.len(), 1025);
    assert_eq!(hits.iter().map(|h| h.count).sum::<u32>(), 1100);
    assert!(hits.contains(&hit("key:password", "*", 76)));
}
