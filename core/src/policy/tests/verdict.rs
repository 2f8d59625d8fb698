//! Verdicts of plans over classifications.

use crate::grant::{Rule, TargetScope};
use crate::policy::{Access, Classification, ClassifyError, Op, StatementClass, Verdict, check};

fn rule(ops: &[&str], relations: &[&str], functions: &[&str]) -> Rule {
    Rule {
        name: None,
        ops: ops.iter().map(|s| s.to_string()).collect(),
        relations: relations.iter().map(|s| s.to_string()).collect(),
        functions: functions.iter().map(|s| s.to_string()).collect(),
        ..Rule::default()
    }
}

fn rel(op: Op, relation: &str) -> Access {
    Access::Relation {
        op,
        relation: relation.into(),
    }
}

fn cmd(name: &str, relation: Option<&str>) -> Access {
    Access::Command {
        name: name.into(),
        relation: relation.map(Into::into),
    }
}

fn one(accesses: Vec<Access>) -> Result<Classification, ClassifyError> {
    Ok(Classification {
        statements: vec![StatementClass {
            kind: "select".into(),
            accesses,
        }],
    })
}

fn scope() -> TargetScope {
    TargetScope {
        allow: vec![
            rule(&["select"], &["public.invoices", "payments"], &[]),
            rule(
                &["update"],
                &["public.invoices"],
                &["public.refresh_totals"],
            ),
            rule(&["SELECT"], &["reporting.*"], &[]),
            rule(&["create_table"], &["scratch.*"], &[]),
            rule(&["do"], &[], &[]),
        ],
        approve: vec![rule(&["delete"], &["public.invoices"], &["nextval"])],
        ..TargetScope::default()
    }
}

#[test]
fn verdicts() {
    let s = scope();
    let cases: Vec<(Vec<Access>, Verdict)> = vec![
        (vec![], Verdict::Allow),
        (vec![rel(Op::Select, "public.invoices")], Verdict::Allow),
        // A bare name in a rule is in `public`.
        (vec![rel(Op::Select, "public.payments")], Verdict::Allow),
        (vec![rel(Op::Select, "reporting.daily")], Verdict::Allow),
        // `reporting.*` is that schema only.
        (
            vec![rel(Op::Select, "reportingx.daily")],
            Verdict::Deny {
                access: rel(Op::Select, "reportingx.daily"),
            },
        ),
        (
            vec![
                rel(Op::Select, "public.invoices"),
                rel(Op::Update, "public.payments"),
            ],
            Verdict::Deny {
                access: rel(Op::Update, "public.payments"),
            },
        ),
        (
            vec![
                rel(Op::Update, "public.invoices"),
                Access::Function("public.refresh_totals".into()),
            ],
            Verdict::Allow,
        ),
        // A qualified pattern does not cover an unqualified call.
        (
            vec![Access::Function("refresh_totals".into())],
            Verdict::Deny {
                access: Access::Function("refresh_totals".into()),
            },
        ),
        (
            vec![
                rel(Op::Delete, "public.invoices"),
                rel(Op::Select, "public.invoices"),
            ],
            Verdict::Hold {
                needs: vec![rel(Op::Delete, "public.invoices")],
            },
        ),
        (
            vec![Access::Function("nextval".into())],
            Verdict::Hold {
                needs: vec![Access::Function("nextval".into())],
            },
        ),
        // Deny wins over hold.
        (
            vec![
                rel(Op::Delete, "public.invoices"),
                rel(Op::Truncate, "public.invoices"),
            ],
            Verdict::Deny {
                access: rel(Op::Truncate, "public.invoices"),
            },
        ),
        (vec![cmd("do", None)], Verdict::Allow),
        (vec![cmd("create_table", Some("scratch.t"))], Verdict::Allow),
        // A command on a relation needs the relation named.
        (
            vec![cmd("create_table", Some("public.t"))],
            Verdict::Deny {
                access: cmd("create_table", Some("public.t")),
            },
        ),
        (
            vec![cmd("set_role", None)],
            Verdict::Deny {
                access: cmd("set_role", None),
            },
        ),
    ];
    for (accesses, want) in cases {
        let got = check(&one(accesses.clone()), &s);
        assert_eq!(got, want, "{accesses:?}");
    }
}

#[test]
fn empty_scope_allows_only_what_needs_nothing() {
    let s = TargetScope::default();
    assert_eq!(check(&one(vec![]), &s), Verdict::Allow);
    assert!(matches!(
        check(&one(vec![rel(Op::Select, "public.t")]), &s),
        Verdict::Deny { .. }
    ));
}

#[test]
fn star_allows_everything_named() {
    let s = TargetScope {
        allow: vec![rule(&["*"], &["*"], &["*"])],
        ..TargetScope::default()
    };
    for a in [
        rel(Op::Truncate, "x.y"),
        cmd("set_role", None),
        cmd("drop", Some("public.t")),
        Access::Function("pg_catalog.set_config".into()),
    ] {
        assert_eq!(check(&one(vec![a]), &s), Verdict::Allow);
    }
}

#[test]
fn unclassifiable_is_denied() {
    let v = check(
        &Err(ClassifyError::Syntax(
            "syntax error at or near \"SELEC\"".into(),
        )),
        &TargetScope::default(),
    );
    assert_eq!(v.decision(), "deny");
}

#[test]
fn plan_json_round_trips() {
    let json = r#"{"allow":[{"ops":["select"],"relations":["public.invoices"]}],
        "approve":[{"name":"cleanup","ops":["delete"],"relations":["public.invoices"]}],
        "limits":{"statements":10,"rows":1000,"duration_s":600},"future_field":1}"#;
    let s: TargetScope = serde_json::from_str(json).unwrap();
    assert_eq!(s.allow.len(), 1);
    assert_eq!(s.approve[0].name.as_deref(), Some("cleanup"));
    assert_eq!(s.limits.rows, Some(1000));
    let back: TargetScope = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);
}
