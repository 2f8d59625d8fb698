//! Path normalisation, entry parsing and matching, and verdicts.

use super::*;
use crate::grant::Plan;

fn rule(http: &[&str], kube: &[&str]) -> Rule {
    Rule {
        http: http.iter().map(|s| (*s).to_owned()).collect(),
        kube: kube.iter().map(|s| (*s).to_owned()).collect(),
        ..Rule::default()
    }
}

fn scope(allow: Vec<Rule>, approve: Vec<Rule>) -> TargetScope {
    TargetScope {
        allow,
        approve,
        ..TargetScope::default()
    }
}

#[test]
fn paths_normalise_or_are_refused() {
    let ok = [
        ("/", "/"),
        ("/v1/invoices", "/v1/invoices"),
        ("/v1/invoices/", "/v1/invoices/"),
        ("/v1/invoices?x=../..&y=%2F", "/v1/invoices"),
        ("/v1/%69nvoices", "/v1/invoices"),
        ("/v1/a%20b", "/v1/a b"),
        ("/v1/%7Euser", "/v1/~user"),
        ("/v1/caf%C3%A9", "/v1/café"),
        ("/v1/a.b/..c/.d", "/v1/a.b/..c/.d"),
    ];
    for (raw, want) in ok {
        assert_eq!(NormalPath::parse(raw).unwrap().to_string(), want, "{raw}");
    }
    let bad = [
        ("/v1/invoices/../admin", PathError::DotSegment),
        ("/v1/invoices/./x", PathError::DotSegment),
        ("/v1/invoices/..", PathError::DotSegment),
        ("/v1/invoices/%2e%2e/admin", PathError::DotSegment),
        ("/v1/invoices/.%2E/admin", PathError::DotSegment),
        ("/v1/invoices/..;x/admin", PathError::DotSegment),
        ("/v1/invoices%2F..%2Fadmin", PathError::EncodedSlash),
        ("/v1/invoices%2fadmin", PathError::EncodedSlash),
        ("/v1/invoices%5C..", PathError::EncodedSlash),
        ("/v1/invoices\\..\\admin", PathError::EncodedSlash),
        ("/v1/invoices/%252E%252E/admin", PathError::DoubleEncoded),
        ("/v1/invoices%252Fadmin", PathError::DoubleEncoded),
        ("/v1/invoices%25%32%46admin", PathError::DoubleEncoded),
        ("/v1/%25%32e%25%32e/admin", PathError::DoubleEncoded),
        ("/v1//invoices", PathError::EmptySegment),
        ("//v1/invoices", PathError::EmptySegment),
        ("/v1/invoices%", PathError::BadEscape),
        ("/v1/invoices%4", PathError::BadEscape),
        ("/v1/invoices%zz", PathError::BadEscape),
        ("/v1/invoices%00", PathError::ControlChar),
        ("/v1/in\u{7f}voices", PathError::ControlChar),
        ("/v1/invoices%23x", PathError::ControlChar),
        ("/v1/invoices%FF", PathError::NotUtf8),
        ("v1/invoices", PathError::NotOriginForm),
        ("*", PathError::NotOriginForm),
        ("http://x/v1", PathError::NotOriginForm),
    ];
    for (raw, want) in bad {
        assert_eq!(NormalPath::parse(raw), Err(want), "{raw}");
    }
}

#[test]
fn http_patterns_match_segments() {
    // (pattern, method, path, matches)
    let cases = [
        ("GET /v1/invoices", "GET", "/v1/invoices", true),
        ("GET /v1/invoices", "GET", "/v1/invoices?page=2", true),
        ("GET /v1/invoices", "GET", "/v1/invoices/", false),
        ("GET /v1/invoices", "POST", "/v1/invoices", false),
        ("GET /v1/invoices", "get", "/v1/invoices", false),
        ("GET /v1/invoices", "HEAD", "/v1/invoices", false),
        ("get,head /v1/invoices", "HEAD", "/v1/invoices", true),
        ("* /v1/invoices", "DELETE", "/v1/invoices", true),
        ("GET /v1/invoices/*", "GET", "/v1/invoices/7", true),
        ("GET /v1/invoices/*", "GET", "/v1/invoices", false),
        ("GET /v1/invoices/*", "GET", "/v1/invoices/7/lines", false),
        ("GET /v1/*/lines", "GET", "/v1/7/lines", true),
        ("GET /v1/invoices/**", "GET", "/v1/invoices", true),
        ("GET /v1/invoices/**", "GET", "/v1/invoices/", true),
        ("GET /v1/invoices/**", "GET", "/v1/invoices/7/lines/3", true),
        ("GET /v1/invoices/**", "GET", "/v1/invoicesx", false),
        ("GET /v1/invoices/**", "GET", "/v1/admin", false),
        ("GET /v1/invoices/**", "GET", "/v1", false),
        ("* /**", "PATCH", "/", true),
        ("* /**", "PATCH", "/a/b/c/", true),
        ("GET /", "GET", "/", true),
        ("GET /", "GET", "/a", false),
        ("GET /v1/%7Euser", "GET", "/v1/~user", true),
        ("GET /v1/~user", "GET", "/v1/%7euser", true),
        ("GET /files/a%20b", "GET", "/files/a b", true),
    ];
    for (pattern, method, path, want) in cases {
        let rule = HttpRule::parse(pattern).unwrap();
        let path = NormalPath::parse(path).unwrap();
        assert_eq!(
            rule.matches(method, &path),
            want,
            "{pattern} vs {method} {path}"
        );
    }
}

#[test]
fn bad_http_entries_are_refused() {
    for bad in [
        "",
        "GET",
        "/v1/invoices",
        "GET /v1 extra",
        "GET v1/invoices",
        "GET /v1/inv*",
        "GET /v1/**/x",
        "GET /**/**",
        "GET /v1/../x",
        "GET /v1?x=1",
        "G(T /v1",
        "GET, /v1",
    ] {
        let e = HttpRule::parse(bad).unwrap_err();
        assert!(e.contains("http entry"), "{bad:?}: {e}");
    }
}

#[test]
fn kube_entries_match_requests() {
    // (entry, method, target, matches)
    #[rustfmt::skip]
    let cases = [
        ("get,list,watch pods in billing", "GET", "/api/v1/namespaces/billing/pods", true),
        ("get,list,watch pods in billing", "GET", "/api/v1/namespaces/billing/pods/web-1", true),
        ("get,list,watch pods in billing", "GET", "/api/v1/namespaces/billing/pods?watch=1", true),
        ("get,list,watch pods in billing", "GET", "/api/v1/watch/namespaces/billing/pods", true),
        ("get,list,watch pods in billing", "GET", "/api/v1/namespaces/other/pods", false),
        ("get,list,watch pods in billing", "GET", "/api/v1/pods", false),
        ("get,list,watch pods in billing", "DELETE", "/api/v1/namespaces/billing/pods/web-1", false),
        ("get,list,watch pods in billing", "GET", "/api/v1/namespaces/billing/pods/web-1/log", false),
        ("get,list,watch pods in billing", "GET", "/api/v1/namespaces/billing/pods/web-1/exec", false),
        ("get,list,watch pods in billing", "GET", "/apis/apps/v1/namespaces/billing/pods", false),
        ("get pods/log in billing", "GET", "/api/v1/namespaces/billing/pods/web-1/log", true),
        ("create pods/exec in billing", "GET", "/api/v1/namespaces/billing/pods/web-1/exec?command=sh", true),
        ("create pods/exec in billing", "POST", "/api/v1/namespaces/billing/pods/web-1/exec?command=sh", true),
        ("get pods/exec in billing", "GET", "/api/v1/namespaces/billing/pods/web-1/exec?command=sh", false),
        ("get pods/* in billing", "GET", "/api/v1/namespaces/billing/pods/web-1/log", true),
        ("get pods/* in billing", "GET", "/api/v1/namespaces/billing/pods/web-1", false),
        ("list pods in *", "GET", "/api/v1/namespaces/any/pods", true),
        ("list pods in *", "GET", "/api/v1/pods", false),
        ("list pods", "GET", "/api/v1/pods", true),
        ("list pods", "GET", "/api/v1/namespaces/billing/pods", false),
        ("list,get nodes", "GET", "/api/v1/nodes/n1", true),
        ("get namespaces in billing", "GET", "/api/v1/namespaces/billing", true),
        ("get namespaces in billing", "GET", "/api/v1/namespaces/other", false),
        ("list namespaces", "GET", "/api/v1/namespaces", true),
        ("patch deployments.apps in billing", "PATCH", "/apis/apps/v1/namespaces/billing/deployments/api", true),
        ("patch deployments.apps in billing", "PATCH", "/api/v1/namespaces/billing/deployments/api", false),
        ("patch deployments in billing", "PATCH", "/apis/apps/v1/namespaces/billing/deployments/api", false),
        ("update deployments.apps/scale in billing", "PUT", "/apis/apps/v1/namespaces/billing/deployments/api/scale", true),
        ("* *.apps in billing", "DELETE", "/apis/apps/v1/namespaces/billing/statefulsets/db", true),
        ("* *.apps in billing", "DELETE", "/api/v1/namespaces/billing/pods/db", false),
        ("* *.* in billing", "DELETE", "/api/v1/namespaces/billing/pods/db", true),
        ("* * in billing", "GET", "/api/v1/namespaces/billing/pods/db/exec", true),
        ("delete pods in billing", "DELETE", "/api/v1/namespaces/billing/pods", false),
        ("deletecollection pods in billing", "DELETE", "/api/v1/namespaces/billing/pods", true),
        ("get /healthz", "GET", "/healthz", true),
        ("get /healthz", "GET", "/healthz/etcd", false),
        ("get /healthz/*", "GET", "/healthz/etcd", true),
        ("get /healthz/*", "GET", "/healthz", false),
        ("get /healthz,/livez", "GET", "/livez", true),
        ("* /*", "POST", "/anything", true),
        ("* /*", "GET", "/api/v1/pods", false),
    ];

    for (entry, method, target, want) in cases {
        let rule = KubeRule::parse(entry).unwrap();
        let info = crate::http::kube::RequestInfo::parse(method, target).unwrap();
        assert_eq!(rule.matches(&info), want, "{entry:?} vs {method} {target}");
    }
}

#[test]
fn bad_kube_entries_are_refused() {
    for bad in [
        "",
        "get",
        "get pods in",
        "get pods on billing",
        "get pods in billing extra",
        "fetch pods in billing",
        "post pods in billing",
        "get po%ds in billing",
        "get pods.apps..x in billing",
        "get pods in bill/ing",
        "get /version in billing",
        "create /version",
        "get /heal*thz",
        "get pods,/version",
    ] {
        let e = KubeRule::parse(bad).unwrap_err();
        assert!(e.contains("kube entry"), "{bad:?}: {e}");
    }
}

#[test]
fn allow_then_approve_then_deny() {
    let mut approve = rule(&[], &["create pods/exec in billing"]);
    approve.name = Some("shell".to_owned());
    let scope = scope(
        vec![rule(&[], &["get,list,watch pods in billing"])],
        vec![approve],
    );
    let policy = HttpPolicy::compile(&scope, TargetKind::Kubernetes).unwrap();
    let v = policy.check("GET", "/api/v1/namespaces/billing/pods?watch=true");
    assert_eq!(
        (v.decision, v.operation.as_str(), v.rule.as_deref()),
        (Decision::Allow, "watch pods in billing", Some("allow[0]"))
    );
    let v = policy.check(
        "GET",
        "/api/v1/namespaces/billing/pods/web-1/exec?command=sh&stdin=true",
    );
    assert_eq!(
        (v.decision, v.operation.as_str(), v.rule.as_deref()),
        (Decision::Hold, "create pods/exec in billing", Some("shell"))
    );
    let v = policy.check("DELETE", "/api/v1/namespaces/billing/pods/web-1");
    assert_eq!((v.decision, v.rule), (Decision::Deny, None));
    assert_eq!(v.operation, "delete pods in billing");
    assert!(
        v.reason.contains("\"delete pods in billing\""),
        "{}",
        v.reason
    );
    // Discovery needs no rule; other non-resource URLs do.
    assert_eq!(
        policy.check("GET", "/apis/apps/v1").decision,
        Decision::Allow
    );
    assert_eq!(policy.check("GET", "/openapi/v3").decision, Decision::Allow);
    assert_eq!(policy.check("GET", "/healthz").decision, Decision::Deny);
    // Traversal is denied before any rule is looked at.
    let v = policy.check(
        "GET",
        "/api/v1/namespaces/billing/pods/../../kube-system/secrets",
    );
    assert_eq!(v.decision, Decision::Deny);
    assert!(v.reason.contains("`..`"), "{}", v.reason);
    assert_eq!(
        policy.check("GET", "/api/v1/watch").decision,
        Decision::Deny
    );
}

#[test]
fn allow_wins_over_approve() {
    let scope = scope(
        vec![rule(&["GET /v1/**"], &[])],
        vec![rule(&["* /v1/**"], &[])],
    );
    let policy = HttpPolicy::compile(&scope, TargetKind::Http).unwrap();
    let v = policy.check("GET", "/v1/invoices/7?expand=lines");
    assert_eq!(
        (v.decision, v.operation.as_str(), v.rule.as_deref()),
        (Decision::Allow, "GET /v1/invoices/7", Some("allow[0]"))
    );
    let v = policy.check("POST", "/v1/refunds");
    assert_eq!(
        (v.decision, v.rule.as_deref()),
        (Decision::Hold, Some("approve[0]"))
    );
    let v = policy.check("POST", "/v2/refunds");
    assert_eq!(v.decision, Decision::Deny);
    assert!(v.reason.contains("\"POST /v2/refunds\""), "{}", v.reason);
}

#[test]
fn http_traversal_cannot_reach_past_a_pattern() {
    let scope = scope(vec![rule(&["GET /v1/invoices/**"], &[])], vec![]);
    let policy = HttpPolicy::compile(&scope, TargetKind::Http).unwrap();
    for path in [
        "/v1/invoices/../admin",
        "/v1/invoices/%2e%2e/admin",
        "/v1/invoices/..%2Fadmin",
        "/v1/invoices%2F..%2Fadmin",
        "/v1/invoices/..;/admin",
        "/v1/invoices/%252e%252e/admin",
        "/v1/invoices/..\\admin",
        "/v1/invoices//../admin",
    ] {
        let v = policy.check("GET", path);
        assert_eq!(v.decision, Decision::Deny, "{path}");
        assert!(!v.reason.is_empty());
    }
    assert_eq!(
        policy.check("GET", "/v1/invoices/7").decision,
        Decision::Allow
    );
}

#[test]
fn entries_apply_to_their_kind_of_target() {
    let sql_only = scope(
        vec![Rule {
            ops: vec!["*".into()],
            relations: vec!["*".into()],
            ..Rule::default()
        }],
        vec![],
    );
    for kind in [TargetKind::Http, TargetKind::Kubernetes] {
        let policy = HttpPolicy::compile(&sql_only, kind).unwrap();
        assert_eq!(policy.check("GET", "/api/v1/pods").decision, Decision::Deny);
    }
    let both = scope(
        vec![rule(&["GET /healthz", "GET /api/**"], &["list pods"])],
        vec![],
    );
    let http = HttpPolicy::compile(&both, TargetKind::Http).unwrap();
    let kube = HttpPolicy::compile(&both, TargetKind::Kubernetes).unwrap();
    assert_eq!(http.check("GET", "/api/v1/pods").decision, Decision::Allow);
    assert_eq!(kube.check("GET", "/api/v1/pods").decision, Decision::Allow);
    assert_eq!(http.check("GET", "/api/v1/nodes").decision, Decision::Allow);
    // `http` entries never cover a resource request on a Kubernetes target...
    assert_eq!(kube.check("GET", "/api/v1/nodes").decision, Decision::Deny);
    // ...but do cover its non-resource URLs.
    assert_eq!(kube.check("GET", "/healthz").decision, Decision::Allow);
}

#[test]
fn everything_allows_every_request() {
    let all = scope(vec![Rule::everything()], vec![]);
    let http = HttpPolicy::compile(&all, TargetKind::Http).unwrap();
    let kube = HttpPolicy::compile(&all, TargetKind::Kubernetes).unwrap();
    for (method, path) in [
        ("DELETE", "/"),
        ("POST", "/v1/x/y/"),
        ("GET", "/api/v1/nodes"),
        ("DELETE", "/api/v1/namespaces/a/pods"),
        ("GET", "/api/v1/namespaces/a/pods/p/exec"),
        ("GET", "/healthz"),
        ("OPTIONS", "/api/v1/pods"),
    ] {
        assert_eq!(http.check(method, path).decision, Decision::Allow, "{path}");
        assert_eq!(kube.check(method, path).decision, Decision::Allow, "{path}");
    }
}

#[test]
fn compile_names_the_bad_entry() {
    let mut named = rule(&[], &["get pods in billing", "fetch pods"]);
    named.name = Some("reads".to_owned());
    let scope = scope(vec![rule(&["GET /ok"], &[]), named], vec![]);
    // Checked whatever the kind.
    let e = HttpPolicy::compile(&scope, TargetKind::Http).unwrap_err();
    assert!(
        e.starts_with("allow[1] (\"reads\"): kube entry \"fetch pods\""),
        "{e}"
    );
    let bad = self::scope(vec![], vec![rule(&["GET /v1/../x"], &[])]);
    let e = HttpPolicy::compile(&bad, TargetKind::Kubernetes).unwrap_err();
    assert!(e.starts_with("approve[0]: http entry"), "{e}");
}

#[test]
fn plans_round_trip_with_http_and_kube_rules() {
    let json = r#"{"targets":{"k8s":{"allow":[{"name":"reads","kube":["get,list,watch pods in billing"]}],"approve":[{"http":["GET /healthz"],"kube":["create pods/exec in billing"]}]},"orders":{"allow":[{"ops":["select"],"relations":["public.*"]}]}}}"#;
    let plan: Plan = serde_json::from_str(json).unwrap();
    let k8s = plan.scope("k8s").unwrap();
    assert_eq!(k8s.allow[0].kube, ["get,list,watch pods in billing"]);
    assert_eq!(k8s.approve[0].http, ["GET /healthz"]);
    assert!(plan.scope("orders").unwrap().allow[0].http.is_empty());
    // Empty lists are left out, so SQL-only plans serialise as before.
    assert_eq!(serde_json::to_string(&plan).unwrap(), json);
    let everything = serde_json::to_value(Rule::everything()).unwrap();
    let back: Rule = serde_json::from_value(everything).unwrap();
    assert_eq!(back, Rule::everything());
}
