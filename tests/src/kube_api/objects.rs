//! The Kubernetes JSON documents [`FakeKube`](super::FakeKube) serves:
//! discovery, pods, secrets, namespaces, `Status` errors, with the shapes
//! the real API server gives them (what kubectl decodes).

use serde_json::{Value, json};

/// The namespace the fixtures live in.
pub const NAMESPACE: &str = "billing";
/// The pods in [`NAMESPACE`] at start, in name order.
pub const PODS: [&str; 3] = ["db-0", "web-1", "web-2"];
/// The secret in [`NAMESPACE`] at start (see [`SECRET_DATA`]).
pub const SECRET: &str = "db";
/// The decoded `data` of secret [`SECRET`]: keys a masking policy hides.
pub const SECRET_DATA: [(&str, &str); 3] = [
    ("password", "hunter2-db"),
    ("token", "tok-5f2a9c7e"),
    ("username", "billing_app"),
];
/// The e-mail address in secret [`SECRET`]'s `owner-email` annotation.
pub const SECRET_OWNER_EMAIL: &str = "dba@example.com";
/// Every namespace that exists.
pub const NAMESPACES: [&str; 3] = ["billing", "default", "kube-system"];
/// The lines `kubectl logs <pod>` prints for any pod (then, with `-f`,
/// `tick N` lines keep coming).
pub const LOG_LINES: [&str; 3] = [
    "starting server on :8080",
    "user alice@example.com logged in",
    "GET /healthz 200",
];
/// When every fixture was created.
pub const CREATED: &str = "2026-01-01T00:00:00Z";

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-gatehouse-fake",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": CREATED, "goVersion": "go1.23.0", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `GET /api`: the legacy group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

/// `GET /apis`: the named groups (`apps/v1` only).
pub fn api_group_list() -> Value {
    let gv = json!({"groupVersion": "apps/v1", "version": "v1"});
    json!({
        "kind": "APIGroupList", "apiVersion": "v1",
        "groups": [{"name": "apps", "versions": [gv], "preferredVersion": gv}]
    })
}

fn resource(name: &str, kind: &str, namespaced: bool, verbs: &[&str], short: &[&str]) -> Value {
    let singular = if name.contains('/') {
        String::new()
    } else {
        kind.to_ascii_lowercase()
    };
    let mut r = json!({
        "name": name, "singularName": singular, "namespaced": namespaced,
        "kind": kind, "verbs": verbs
    });
    if !short.is_empty() {
        r["shortNames"] = json!(short);
    }
    r
}

const RW: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `GET /api/v1`.
pub fn core_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList", "groupVersion": "v1",
        "resources": [
            resource("namespaces", "Namespace", false, &["create", "delete", "get", "list", "patch", "update", "watch"], &["ns"]),
            resource("pods", "Pod", true, &RW, &["po"]),
            resource("pods/attach", "PodAttachOptions", true, &["create", "get"], &[]),
            resource("pods/exec", "PodExecOptions", true, &["create", "get"], &[]),
            resource("pods/log", "Pod", true, &["get"], &[]),
            resource("pods/status", "Pod", true, &["get", "patch", "update"], &[]),
            resource("secrets", "Secret", true, &RW, &[]),
        ]
    })
}

/// `GET /apis/apps/v1`.
pub fn apps_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1",
        "resources": [resource("deployments", "Deployment", true, &RW, &["deploy"])]
    })
}

/// A deterministic UID for the `n`th object.
fn uid(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A running pod with one container, as the API server returns it.
pub fn pod(namespace: &str, name: &str, resource_version: u64, n: usize) -> Value {
    let app = name.split('-').next().unwrap_or(name);
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid(n),
            "resourceVersion": resource_version.to_string(),
            "creationTimestamp": CREATED, "labels": {"app": app}
        },
        "spec": {
            "containers": [{"name": app, "image": "registry.example/app:1.0"}],
            "nodeName": "node-1", "restartPolicy": "Always"
        },
        "status": {
            "phase": "Running", "podIP": format!("10.0.0.{}", 10 + n),
            "startTime": CREATED,
            "containerStatuses": [{
                "name": app, "ready": true, "restartCount": 0, "started": true,
                "image": "registry.example/app:1.0", "imageID": "",
                "state": {"running": {"startedAt": CREATED}}
            }]
        }
    })
}

/// Secret [`SECRET`] (type `Opaque`, `data` base64 as the API server
/// sends it).
pub fn secret(resource_version: u64) -> Value {
    use base64::Engine as _;
    let data: serde_json::Map<String, Value> = SECRET_DATA
        .iter()
        .map(|(k, v)| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(v);
            ((*k).to_owned(), Value::String(b64))
        })
        .collect();
    json!({
        "kind": "Secret", "apiVersion": "v1", "type": "Opaque",
        "metadata": {
            "name": SECRET, "namespace": NAMESPACE, "uid": uid(100),
            "resourceVersion": resource_version.to_string(), "creationTimestamp": CREATED,
            "annotations": {"owner-email": SECRET_OWNER_EMAIL}
        },
        "data": data
    })
}

/// A namespace object.
pub fn namespace(name: &str) -> Value {
    json!({
        "kind": "Namespace", "apiVersion": "v1",
        "metadata": {"name": name, "uid": uid(200), "resourceVersion": "1", "creationTimestamp": CREATED},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}
    })
}

/// A `<kind>List` of `items` at `resource_version`.
pub fn list(kind: &str, api_version: &str, resource_version: u64, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{kind}List"), "apiVersion": api_version,
        "metadata": {"resourceVersion": resource_version.to_string()},
        "items": items
    })
}

/// A failure `Status` object, as the API server sends with 4xx/5xx.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code
    })
}

/// The `NotFound` status for `resource` `name`.
pub fn not_found(resource: &str, name: &str) -> Value {
    let mut s = status(404, "NotFound", &format!("{resource} \"{name}\" not found"));
    s["details"] = json!({"name": name, "kind": resource});
    s
}
