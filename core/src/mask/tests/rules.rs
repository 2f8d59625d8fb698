//! Strategies, column globs, dictionaries, rule ids and load errors.

use super::{SECRET, check, dictionary, mask, with_detectors};
use crate::mask::{
    Applied, ColumnRule, Detector, DictionaryRule, MaskError, MaskRules, Masker, Strategy,
};

fn masker_with(strategy: Strategy, secret: &[u8]) -> Masker {
    let rules = MaskRules {
        detectors: vec![
            (Detector::CardNumber, strategy),
            (Detector::Email, strategy),
        ],
        ..MaskRules::default()
    };
    Masker::new(rules, secret).unwrap()
}

#[test]
fn partial_keeps_the_last_characters() {
    let m = masker_with(Strategy::Partial { keep_last: 4 }, SECRET);
    check(
        &m,
        &[
            ("card 4111 1111 1111 1111.", Some("card ****1111.")),
            ("4111111111111111", Some("****1111")),
            ("me@example.io", Some("****e.io")),
            ("a@b.co", Some("****")),
        ],
    );
    let cases: &[(usize, &str, &str)] = &[
        (4, "12345678", "****5678"),
        (4, "1234567", "****"),
        (4, "ñandú-12345678", "****5678"),
        (2, "añejo", "****jo"),
        (4, "señor", "****"),
        (0, "secret", "****"),
    ];
    for &(keep_last, value, expected) in cases {
        let mut out = Vec::new();
        let applied = m.apply(Strategy::Partial { keep_last }, value.as_bytes(), &mut out);
        assert_eq!(applied, Applied::Written);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "{value:?}");
    }
    // Not UTF-8: bytes.
    let mut out = Vec::new();
    let _ = m.apply(
        Strategy::Partial { keep_last: 2 },
        b"\xff\xfe\xfd\xfc",
        &mut out,
    );
    assert_eq!(out, b"****\xfd\xfc");
}

fn token(m: &Masker, value: &str) -> String {
    let mut out = Vec::new();
    assert_eq!(
        m.apply(Strategy::Token, value.as_bytes(), &mut out),
        Applied::Written
    );
    String::from_utf8(out).unwrap()
}

#[test]
fn tokens_are_deterministic_per_secret() {
    let a = masker_with(Strategy::Token, SECRET);
    let a2 = masker_with(Strategy::Token, SECRET);
    let b = masker_with(Strategy::Token, b"another secret of 32 bytes......");
    let t = token(&a, "4111111111111111");
    assert!(t.starts_with("tok_"), "{t}");
    assert_eq!(t.len(), 4 + 22);
    assert!(
        t[4..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_eq!(t, token(&a, "4111111111111111"));
    assert_eq!(t, token(&a2, "4111111111111111"));
    assert_ne!(t, token(&b, "4111111111111111"));
    assert_ne!(t, token(&a, "5555555555554444"));
    // Inside text, equal values give equal tokens: they still join.
    let row1 = mask(&a, "paid with 4111 1111 1111 1111").unwrap();
    let row2 = mask(&a, "refund to 4111 1111 1111 1111").unwrap();
    assert_eq!(
        row1.strip_prefix("paid with "),
        row2.strip_prefix("refund to ")
    );
    assert_eq!(
        row1,
        format!("paid with {}", token(&a, "4111 1111 1111 1111"))
    );
}

#[test]
fn null_nulls_the_whole_value() {
    let m = masker_with(Strategy::Null, SECRET);
    let mut out = b"kept".to_vec();
    let outcome = m
        .mask_value(b"write to user@example.com", &mut out)
        .unwrap();
    assert!(outcome.nulled());
    assert_eq!(outcome.hits().total(), 1);
    assert_eq!(out, b"kept");
    assert_eq!(m.apply(Strategy::Null, b"x", &mut out), Applied::Null);
    assert_eq!(out, b"kept");
    assert_eq!(m.mask_value(b"nothing here", &mut out), None);
}

#[test]
fn redact_writes_stars() {
    let m = masker_with(Strategy::Redact, b"");
    let mut out = Vec::new();
    assert_eq!(
        m.apply(Strategy::Redact, b"anything", &mut out),
        Applied::Written
    );
    assert_eq!(out, b"****");
}

#[test]
fn column_globs() {
    let cases: &[(&str, Option<&str>, &str, bool)] = &[
        ("ssn", None, "ssn", true),
        ("ssn", None, "SSN", true),
        ("ssn", Some("users"), "ssn", true),
        ("ssn", None, "ssn_hash", false),
        ("*.card_number", None, "card_number", true),
        ("*.card_number", Some("payments"), "Card_Number", true),
        ("*.card_number", None, "card_numbers", false),
        ("email*", None, "email_address", true),
        ("email*", None, "user_email", false),
        ("*email*", None, "user_email", true),
        ("users.email", Some("users"), "email", true),
        ("users.email", Some("USERS"), "EMAIL", true),
        ("users.email", None, "email", false),
        ("users.email", Some("orders"), "email", false),
        ("public.*.token", Some("public.sessions"), "token", true),
        ("c?l", None, "col", true),
        ("c?l", None, "cl", false),
        ("*_at*", None, "created_at", true),
        ("a*b*c", None, "axxbyyc", true),
        ("a*b*c", None, "axxbyy", false),
    ];
    for &(pattern, table, column, expected) in cases {
        let rules = MaskRules {
            columns: vec![ColumnRule {
                pattern: pattern.to_owned(),
                strategy: Strategy::Redact,
            }],
            ..MaskRules::default()
        };
        let m = Masker::new(rules, b"").unwrap();
        assert_eq!(
            m.column_strategy(table, column).is_some(),
            expected,
            "{pattern:?} vs {table:?}.{column:?}"
        );
    }
}

#[test]
fn first_column_rule_wins_and_names_rules() {
    let rules = MaskRules {
        columns: vec![
            ColumnRule {
                pattern: "*.card_number".to_owned(),
                strategy: Strategy::Partial { keep_last: 4 },
            },
            ColumnRule {
                pattern: "card*".to_owned(),
                strategy: Strategy::Null,
            },
        ],
        detectors: vec![(Detector::Email, Strategy::Redact)],
        dictionaries: vec![dictionary(&["Acme"], false)],
    };
    let m = Masker::new(rules, b"").unwrap();
    let (id, strategy) = m.column_strategy(None, "card_number").unwrap();
    assert_eq!(strategy, Strategy::Partial { keep_last: 4 });
    assert_eq!(m.rule_name(id), "column:*.card_number");
    let (id, strategy) = m.column_strategy(Some("t"), "card_holder").unwrap();
    assert_eq!(strategy, Strategy::Null);
    assert_eq!(m.rule_name(id), "column:card*");
    assert_eq!(m.column_strategy(None, "name"), None);

    let mut out = Vec::new();
    let outcome = m.mask_value(b"Acme: ops@acme.example", &mut out).unwrap();
    let mut names: Vec<_> = outcome.hits().iter().map(|(r, _)| m.rule_name(r)).collect();
    names.sort_unstable();
    assert_eq!(names, ["detector:email", "dictionary:0"]);
    let (unknown, strategy) = m.unknown_column_rule();
    assert_eq!(
        (m.rule_name(unknown), strategy),
        ("column:<unknown>", Strategy::Null)
    );
    assert!(m.has_column_rules() && m.has_content_rules());
}

#[test]
fn dictionaries() {
    let rules = MaskRules {
        dictionaries: vec![
            dictionary(&["Acme Corp", "db-prod-7.internal"], true),
            dictionary(&["Zed"], false),
        ],
        detectors: vec![(Detector::AwsAccessKey, Strategy::Redact)],
        ..MaskRules::default()
    };
    let m = Masker::new(rules, b"").unwrap();
    check(
        &m,
        &[
            ("ACME CORP signed", Some("**** signed")),
            ("acme corp's deal", Some("****'s deal")),
            ("«Acme Corp»", Some("«****»")),
            ("host=db-prod-7.internal:5432", Some("host=****:5432")),
            ("DB-PROD-7.INTERNAL", Some("****")),
            ("acme corporation", None),
            ("xacme corp", None),
            // Case-sensitive beside a case-insensitive dictionary.
            ("ask Zed", Some("ask ****")),
            ("ask zed", None),
            ("Zedd", None),
            // Detector keywords stay case-sensitive when the automaton folds.
            ("akiaiosfodnn7example", None),
            ("AKIAIOSFODNN7EXAMPLE", Some("****")),
        ],
    );
}

#[test]
fn overlapping_matches_merge() {
    let rules = MaskRules {
        detectors: vec![(Detector::Email, Strategy::Redact)],
        dictionaries: vec![dictionary(&["example.com mail"], false)],
        ..MaskRules::default()
    };
    let m = Masker::new(rules, b"").unwrap();
    // The e-mail and the term overlap: both are covered.
    assert_eq!(
        mask(&m, "to user@example.com mail it").as_deref(),
        Some("to **** it")
    );
}

#[test]
fn load_errors() {
    let weak = Masker::new(
        MaskRules {
            detectors: vec![(Detector::Email, Strategy::Token)],
            ..MaskRules::default()
        },
        b"short",
    );
    assert_eq!(weak.unwrap_err(), MaskError::WeakTokenSecret { len: 5 });
    let dup = Masker::new(
        MaskRules {
            detectors: vec![
                (Detector::Email, Strategy::Redact),
                (Detector::Email, Strategy::Null),
            ],
            ..MaskRules::default()
        },
        b"",
    );
    assert_eq!(
        dup.unwrap_err(),
        MaskError::DuplicateDetector(Detector::Email)
    );
    let empty = Masker::new(
        MaskRules {
            dictionaries: vec![dictionary(&["ok", ""], true)],
            ..MaskRules::default()
        },
        b"",
    );
    assert_eq!(
        empty.unwrap_err(),
        MaskError::BadTerm {
            dictionary: 0,
            term: 1
        }
    );
    for bad in ["a\0b".to_owned(), "x".repeat(1025)] {
        let err = Masker::new(
            MaskRules {
                dictionaries: vec![dictionary(&[&bad], false)],
                ..MaskRules::default()
            },
            b"",
        );
        assert_eq!(
            err.unwrap_err(),
            MaskError::BadTerm {
                dictionary: 0,
                term: 0
            }
        );
    }
    let column = Masker::new(
        MaskRules {
            columns: vec![ColumnRule {
                pattern: String::new(),
                strategy: Strategy::Redact,
            }],
            ..MaskRules::default()
        },
        b"",
    );
    assert_eq!(
        column.unwrap_err(),
        MaskError::EmptyColumnPattern { index: 0 }
    );
    // Nothing configured: nothing ever rewritten.
    let none = Masker::new(MaskRules::default(), b"").unwrap();
    assert!(!none.has_content_rules());
    assert_eq!(mask(&none, "user@example.com 4111111111111111"), None);
}

#[test]
fn rules_deserialize_from_config() {
    let rules: MaskRules = serde_json::from_str(
        r#"{
            "columns": [{"pattern": "*.ssn", "strategy": "null"}],
            "detectors": [["card_number", {"partial": {"keep_last": 4}}], ["email", "token"]],
            "dictionaries": [{"terms": ["Acme"], "case_insensitive": true, "strategy": "redact"}]
        }"#,
    )
    .unwrap();
    assert_eq!(
        rules.detectors[0],
        (Detector::CardNumber, Strategy::Partial { keep_last: 4 })
    );
    assert_eq!(
        rules.dictionaries[0],
        DictionaryRule {
            terms: vec!["Acme".to_owned()],
            case_insensitive: true,
            strategy: Strategy::Redact
        }
    );
    let m = with_detectors(&[Detector::Email]);
    assert_eq!(m.rule_name(crate::mask::RuleId(0)), "detector:email");
}
