//! RequestInfo against the API server's own reading of the paths kubectl
//! sends (cases after `requestinfo_test.go` of k8s.io/apiserver).

use super::*;

/// `(method, target, verb, api_prefix, group, version, namespace, resource,
/// subresource, name)`.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

#[rustfmt::skip]
const RESOURCE_CASES: &[Case] = &[
    // Lists, gets, watches of pods (kubectl get pods [-w] [-A]).
    ("GET", "/api/v1/namespaces/billing/pods", "list", "api", "", "v1", "billing", "pods", "", ""),
    ("GET", "/api/v1/namespaces/billing/pods?limit=500", "list", "api", "", "v1", "billing", "pods", "", ""),
    ("GET", "/api/v1/namespaces/billing/pods/web-1", "get", "api", "", "v1", "billing", "pods", "", "web-1"),
    ("HEAD", "/api/v1/namespaces/billing/pods/web-1", "get", "api", "", "v1", "billing", "pods", "", "web-1"),
    ("GET", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/api/v1/namespaces/billing/pods?watch=true&resourceVersion=10", "watch", "api", "", "v1", "billing", "pods", "", ""),
    ("GET", "/api/v1/namespaces/billing/pods?watch=1", "watch", "api", "", "v1", "billing", "pods", "", ""),
    ("GET", "/api/v1/namespaces/billing/pods?watch", "watch", "api", "", "v1", "billing", "pods", "", ""),
    ("GET", "/api/v1/namespaces/billing/pods?watch=false", "list", "api", "", "v1", "billing", "pods", "", ""),
    ("GET", "/api/v1/namespaces/billing/pods?watch=0", "list", "api", "", "v1", "billing", "pods", "", ""),
    ("GET", "/api/v1/namespaces/billing/pods?watch=FALSE", "list", "api", "", "v1", "billing", "pods", "", ""),
    // The first `watch` counts, as Go's Query()["watch"][0].
    ("GET", "/api/v1/namespaces/billing/pods?watch=false&watch=true", "list", "api", "", "v1", "billing", "pods", "", ""),
    // kubectl get pod web-1 -w: a field selector on the name.
    ("GET", "/api/v1/namespaces/billing/pods?fieldSelector=metadata.name%3Dweb-1&watch=true", "watch", "api", "", "v1", "billing", "pods", "", "web-1"),
    ("GET", "/api/v1/namespaces/billing/pods?fieldSelector=metadata.name%3D%3Dweb-1", "list", "api", "", "v1", "billing", "pods", "", "web-1"),
    ("GET", "/api/v1/namespaces/billing/pods?fieldSelector=metadata.name%21%3Dweb-1", "list", "api", "", "v1", "billing", "pods", "", ""),
    // Legacy watch prefix.
    ("GET", "/api/v1/watch/namespaces/billing/pods", "watch", "api", "", "v1", "billing", "pods", "", ""),
    ("GET", "/api/v1/watch/namespaces/billing/pods/web-1", "watch", "api", "", "v1", "billing", "pods", "", "web-1"),
    ("GET", "/api/v1/watch/pods", "watch", "api", "", "v1", "", "pods", "", ""),
    ("GET", "/apis/apps/v1/watch/namespaces/billing/deployments", "watch", "apis", "apps", "v1", "billing", "deployments", "", ""),
    // Legacy proxy verb: no subresource.
    ("GET", "/api/v1/proxy/namespaces/billing/pods/web-1/metrics", "proxy", "api", "", "v1", "billing", "pods", "", "web-1"),
    // The proxy subresource is an ordinary subresource.
    ("GET", "/api/v1/namespaces/billing/services/web:80/proxy/status", "get", "api", "", "v1", "billing", "services", "proxy", "web:80"),
    // Exec, attach, port-forward: POST (SPDY) and GET (WebSocket) both create.
    ("POST", "/api/v1/namespaces/billing/pods/web-1/exec?command=sh&stdin=true&tty=true", "create", "api", "", "v1", "billing", "pods", "exec", "web-1"),
    ("GET", "/api/v1/namespaces/billing/pods/web-1/exec?command=sh&stdin=true&tty=true", "create", "api", "", "v1", "billing", "pods", "exec", "web-1"),
    ("GET", "/api/v1/namespaces/billing/pods/web-1/attach?stdin=true", "create", "api", "", "v1", "billing", "pods", "attach", "web-1"),
    ("GET", "/api/v1/namespaces/billing/pods/web-1/portforward?ports=8080", "create", "api", "", "v1", "billing", "pods", "portforward", "web-1"),
    // Logs are a get.
    ("GET", "/api/v1/namespaces/billing/pods/web-1/log?follow=true&container=app", "get", "api", "", "v1", "billing", "pods", "log", "web-1"),
    // Groups.
    ("GET", "/apis/apps/v1/namespaces/billing/deployments", "list", "apis", "apps", "v1", "billing", "deployments", "", ""),
    ("PATCH", "/apis/apps/v1/namespaces/billing/deployments/api", "patch", "apis", "apps", "v1", "billing", "deployments", "", "api"),
    ("PUT", "/apis/apps/v1/namespaces/billing/deployments/api/scale", "update", "apis", "apps", "v1", "billing", "deployments", "scale", "api"),
    ("GET", "/apis/networking.k8s.io/v1/ingresses", "list", "apis", "networking.k8s.io", "v1", "", "ingresses", "", ""),
    ("POST", "/apis/apps/v1/namespaces/billing/deployments", "create", "apis", "apps", "v1", "billing", "deployments", "", ""),
    // Deletes.
    ("DELETE", "/api/v1/namespaces/billing/pods/web-1", "delete", "api", "", "v1", "billing", "pods", "", "web-1"),
    ("DELETE", "/api/v1/namespaces/billing/pods", "deletecollection", "api", "", "v1", "billing", "pods", "", ""),
    ("DELETE", "/api/v1/namespaces/billing/pods?labelSelector=app%3Dweb", "deletecollection", "api", "", "v1", "billing", "pods", "", ""),
    // Namespaces themselves.
    ("GET", "/api/v1/namespaces", "list", "api", "", "v1", "", "namespaces", "", ""),
    ("GET", "/api/v1/namespaces/billing", "get", "api", "", "v1", "billing", "namespaces", "", "billing"),
    ("DELETE", "/api/v1/namespaces/billing", "delete", "api", "", "v1", "billing", "namespaces", "", "billing"),
    ("PUT", "/api/v1/namespaces/billing/status", "update", "api", "", "v1", "billing", "namespaces", "status", "billing"),
    ("PUT", "/api/v1/namespaces/billing/finalize", "update", "api", "", "v1", "billing", "namespaces", "finalize", "billing"),
    ("POST", "/api/v1/namespaces", "create", "api", "", "v1", "", "namespaces", "", ""),
    // Cluster-scoped.
    ("GET", "/api/v1/nodes/node-1", "get", "api", "", "v1", "", "nodes", "", "node-1"),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", "list", "apis", "rbac.authorization.k8s.io", "v1", "", "clusterroles", "", ""),
    // A trailing slash changes nothing (the API server trims slashes).
    ("GET", "/api/v1/namespaces/billing/pods/", "list", "api", "", "v1", "billing", "pods", "", ""),
    // Percent-encoded unreserved characters are decoded first.
    ("GET", "/api/v1/namespaces/bill%69ng/pods", "list", "api", "", "v1", "billing", "pods", "", ""),
    // Unknown methods have no verb.
    ("OPTIONS", "/api/v1/namespaces/billing/pods", "", "api", "", "v1", "billing", "pods", "", ""),
];

#[test]
fn resource_requests_read_as_the_api_server_does() {
    for &(method, target, verb, prefix, group, version, ns, resource, sub, name) in RESOURCE_CASES {
        let info = RequestInfo::parse(method, target).unwrap_or_else(|e| panic!("{target}: {e}"));
        let got = (
            info.is_resource_request,
            info.verb.as_str(),
            info.api_prefix.as_str(),
            info.api_group.as_str(),
            info.api_version.as_str(),
            info.namespace.as_str(),
            info.resource.as_str(),
            info.subresource.as_str(),
            info.name.as_str(),
        );
        let want = (true, verb, prefix, group, version, ns, resource, sub, name);
        assert_eq!(got, want, "{method} {target}");
    }
}

#[test]
fn non_resource_requests_keep_the_lowercase_method() {
    let cases = [
        ("GET", "/", "get", "/"),
        ("GET", "/version", "get", "/version"),
        ("GET", "/version?timeout=32s", "get", "/version"),
        ("GET", "/healthz", "get", "/healthz"),
        ("HEAD", "/healthz/etcd", "head", "/healthz/etcd"),
        ("GET", "/api", "get", "/api"),
        ("GET", "/api/v1", "get", "/api/v1"),
        ("GET", "/apis", "get", "/apis"),
        ("GET", "/apis/apps", "get", "/apis/apps"),
        ("GET", "/apis/apps/v1", "get", "/apis/apps/v1"),
        (
            "GET",
            "/openapi/v3/apis/apps/v1?hash=abc",
            "get",
            "/openapi/v3/apis/apps/v1",
        ),
        ("POST", "/logs/x", "post", "/logs/x"),
        // Not an API prefix: a non-resource URL, however deep.
        (
            "GET",
            "/other/v1/namespaces/billing/pods",
            "get",
            "/other/v1/namespaces/billing/pods",
        ),
    ];
    for (method, target, verb, path) in cases {
        let info = RequestInfo::parse(method, target).unwrap();
        assert!(!info.is_resource_request, "{target}");
        assert_eq!(
            (info.verb.as_str(), info.path.as_str()),
            (verb, path),
            "{target}"
        );
        assert_eq!(info.describe(), format!("{verb} {path}"));
    }
}

#[test]
fn discovery_is_recognised_only_for_reads_of_discovery_paths() {
    let yes = [
        "/api",
        "/api/v1",
        "/api/v1/",
        "/apis",
        "/apis/apps",
        "/apis/apps/v1",
        "/version",
        "/openapi/v2",
        "/openapi/v3/apis/apps/v1?hash=1",
    ];
    for path in yes {
        assert!(
            RequestInfo::parse("GET", path).unwrap().is_discovery(),
            "{path}"
        );
        assert!(
            RequestInfo::parse("HEAD", path).unwrap().is_discovery(),
            "{path}"
        );
    }
    let no = [
        ("POST", "/api/v1"),
        ("DELETE", "/apis/apps"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/pods"),
        ("GET", "/api/v1/namespaces"),
        ("GET", "/versions"),
        ("GET", "/version/x"),
    ];
    for (method, path) in no {
        assert!(
            !RequestInfo::parse(method, path).unwrap().is_discovery(),
            "{method} {path}"
        );
    }
}

#[test]
fn describe_speaks_the_words_of_a_rule() {
    let cases = [
        (
            "GET",
            "/api/v1/namespaces/billing/pods/web-1/exec?command=sh&stdin=true",
            "create pods/exec in billing",
        ),
        (
            "POST",
            "/api/v1/namespaces/billing/pods/web-1/exec?command=sh",
            "create pods/exec in billing",
        ),
        (
            "GET",
            "/api/v1/namespaces/billing/pods",
            "list pods in billing",
        ),
        (
            "GET",
            "/api/v1/namespaces/billing/pods/web-1/log",
            "get pods/log in billing",
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/billing/deployments",
            "list deployments.apps in billing",
        ),
        (
            "PUT",
            "/apis/apps/v1/namespaces/billing/deployments/api/scale",
            "update deployments.apps/scale in billing",
        ),
        ("GET", "/api/v1/nodes", "list nodes"),
        ("GET", "/api/v1/pods?watch=true", "watch pods"),
        ("GET", "/version", "get /version"),
        ("OPTIONS", "/api/v1/pods", "(no verb) pods"),
    ];
    for (method, target, want) in cases {
        assert_eq!(
            RequestInfo::parse(method, target).unwrap().describe(),
            want,
            "{target}"
        );
    }
}

#[test]
fn unreadable_requests_are_errors() {
    assert_eq!(
        RequestInfo::parse("GET", "/api/v1/watch"),
        Err(KubeError::NoResource)
    );
    assert_eq!(
        RequestInfo::parse("GET", "/apis/apps/v1/proxy/"),
        Err(KubeError::NoResource)
    );
    let bad = [
        "/api/v1/namespaces/billing/pods/../../kube-system/secrets",
        "/api/v1/namespaces/billing/pods/%2E%2E/x",
        "/api/v1/namespaces/billing%2Fkube-system/pods",
        "/api//v1/pods",
        "/api/v1/pods/%zz",
        "api/v1/pods",
        "",
    ];
    for target in bad {
        assert!(
            matches!(RequestInfo::parse("GET", target), Err(KubeError::Path(_))),
            "{target:?}"
        );
    }
}

#[test]
fn query_values_decode_as_go_does() {
    assert_eq!(query_unescape("a+b%20c"), Some("a b c".to_owned()));
    assert_eq!(query_unescape("%+1"), None);
    assert_eq!(query_unescape("%4"), None);
    assert_eq!(query_unescape("%ff"), None, "not UTF-8");
    // A pair Go's ParseQuery rejects (`;`, bad escape) is skipped.
    assert_eq!(list_options(Some("watch=%zz")), (false, None));
    assert_eq!(list_options(Some("a;b&watch=true")), (true, None));
    assert_eq!(exact_name("metadata.name=..").as_deref(), None);
    assert_eq!(
        exact_name("status.phase=Running,metadata.name=web").as_deref(),
        Some("web")
    );
}
