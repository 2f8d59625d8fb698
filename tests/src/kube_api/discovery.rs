//! Aggregated discovery (`apidiscovery.k8s.io/v2`), what a 1.30+ API
//! server answers on `/api` and `/apis` when the client's `Accept` asks
//! for an `APIGroupDiscoveryList` (kubectl 1.32 does, then falls back to
//! the legacy documents when the answer is plain `application/json`).
//! Built from the same `APIResourceList`s the legacy paths serve.

use hyper::HeaderMap;
use serde_json::{Value, json};

use super::objects;

/// The content type of an aggregated discovery answer.
pub(crate) const CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the request asked for aggregated discovery v2.
pub(crate) fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            let params: Vec<&str> = v.split(';').map(str::trim).collect();
            params.contains(&"as=APIGroupDiscoveryList") && params.contains(&"v=v2")
        })
}

/// `resources` (an `APIResourceList`) as one discovery version entry,
/// subresources (`pods/exec`) folded into their resource.
fn version(resources: &Value, version: &str) -> Value {
    let list = resources["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Value> = Vec::new();
    for r in &list {
        let name = r["name"].as_str().unwrap_or("");
        let kind = json!({"group": "", "version": version, "kind": r["kind"]});
        let scope = if r["namespaced"] == true {
            "Namespaced"
        } else {
            "Cluster"
        };
        match name.split_once('/') {
            None => {
                let mut entry = json!({
                    "resource": name, "responseKind": kind, "scope": scope,
                    "singularResource": r["singularName"], "verbs": r["verbs"],
                    "subresources": []
                });
                if !r["shortNames"].is_null() {
                    entry["shortNames"] = r["shortNames"].clone();
                }
                out.push(entry);
            }
            Some((parent, sub)) => {
                if let Some(p) = out.iter_mut().find(|e| e["resource"] == parent)
                    && let Some(subs) = p["subresources"].as_array_mut()
                {
                    subs.push(
                        json!({"subresource": sub, "responseKind": kind, "verbs": r["verbs"]}),
                    );
                }
            }
        }
    }
    json!({"version": version, "resources": out, "freshness": "Current"})
}

fn list(items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {}, "items": items
    })
}

/// `GET /api`, aggregated: the legacy group, `v1`.
pub(crate) fn core() -> Value {
    list(vec![json!({
        "metadata": {"creationTimestamp": null},
        "versions": [version(&objects::core_v1_resources(), "v1")]
    })])
}

/// `GET /apis`, aggregated: `apps/v1`.
pub(crate) fn groups() -> Value {
    let mut apps = version(&objects::apps_v1_resources(), "v1");
    if let Some(resources) = apps["resources"].as_array_mut() {
        for r in resources {
            r["responseKind"]["group"] = json!("apps");
            r["responseKind"]["version"] = json!("v1");
        }
    }
    list(vec![json!({
        "metadata": {"name": "apps", "creationTimestamp": null},
        "versions": [apps]
    })])
}
