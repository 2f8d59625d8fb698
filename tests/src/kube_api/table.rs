//! Server-side printing: the `meta.k8s.io/v1` `Table` the API server
//! sends when the client's `Accept` asks `as=Table` (as `kubectl get`
//! does), so kubectl prints its usual columns (pods: NAME READY STATUS
//! RESTARTS AGE). Rows carry the object's metadata as
//! `PartialObjectMetadata` (`includeObject=Metadata`, the default) or the
//! whole object with `includeObject=Object`.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::HeaderMap;
use serde_json::{Value, json};

/// [`CREATED`](super::CREATED) as Unix seconds.
const CREATED_UNIX: u64 = 1_767_225_600;

/// Whether the request asked for a `Table`.
pub(crate) fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("as=Table") && v.contains("g=meta.k8s.io"))
}

/// The age column's text, as kubectl's `HumanDuration` shortens it.
fn age() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let secs = now.saturating_sub(CREATED_UNIX);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86_400 * 2 => format!("{}h", s / 3600),
        s if s < 86_400 * 365 * 2 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (86_400 * 365)),
    }
}

fn column(name: &str, format: &str, priority: u8) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": name, "priority": priority})
}

fn cells(object: &Value) -> Vec<Value> {
    let name = object["metadata"]["name"].clone();
    match object["kind"].as_str() {
        Some("Pod") => {
            let statuses = object["status"]["containerStatuses"].as_array();
            let total = object["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| s.iter().filter(|c| c["ready"] == true).count());
            let restarts: u64 = statuses.map_or(0, |s| {
                s.iter().filter_map(|c| c["restartCount"].as_u64()).sum()
            });
            vec![
                name,
                json!(format!("{ready}/{total}")),
                object["status"]["phase"].clone(),
                json!(restarts),
                json!(age()),
                object["status"]["podIP"].clone(),
                object["spec"]["nodeName"].clone(),
            ]
        }
        Some("Secret") => {
            let data = object["data"].as_object().map_or(0, |d| d.len());
            vec![name, object["type"].clone(), json!(data), json!(age())]
        }
        Some("Namespace") => vec![name, object["status"]["phase"].clone(), json!(age())],
        _ => vec![name, json!(age())],
    }
}

fn columns(kind: &str) -> Vec<Value> {
    match kind {
        "Pod" => vec![
            column("Name", "name", 0),
            column("Ready", "", 0),
            column("Status", "", 0),
            column("Restarts", "", 0),
            column("Age", "", 0),
            column("IP", "", 1),
            column("Node", "", 1),
        ],
        "Secret" => vec![
            column("Name", "name", 0),
            column("Type", "", 0),
            column("Data", "", 0),
            column("Age", "", 0),
        ],
        "Namespace" => vec![
            column("Name", "name", 0),
            column("Status", "", 0),
            column("Age", "", 0),
        ],
        _ => vec![column("Name", "name", 0), column("Age", "", 0)],
    }
}

/// A `Table` of `objects` (all of `kind`) at `resource_version`;
/// `whole_objects` for `includeObject=Object`.
pub(crate) fn table(
    kind: &str,
    objects: &[Value],
    resource_version: &str,
    whole_objects: bool,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = if whole_objects {
                o.clone()
            } else {
                json!({
                    "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                    "metadata": o["metadata"]
                })
            };
            json!({"cells": cells(o), "object": object})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns(kind),
        "rows": rows
    })
}

/// A list's `Table`: its `items`, its resource version.
pub(crate) fn of_list(list: &Value, kind: &str, whole_objects: bool) -> Value {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("");
    table(kind, &items, rv, whole_objects)
}

/// One object's `Table` (one row).
pub(crate) fn of_object(object: &Value, whole_objects: bool) -> Value {
    let kind = object["kind"].as_str().unwrap_or("");
    let rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("");
    table(kind, std::slice::from_ref(object), rv, whole_objects)
}

/// `value` as a `Table` when `print` is set (`Some(true)`: whole objects
/// in the rows), else as it is. Lists (`…List`) become one row per item.
pub(crate) fn maybe(print: Option<bool>, value: &Value) -> Value {
    let Some(whole) = print else {
        return value.clone();
    };
    match value["kind"].as_str().and_then(|k| k.strip_suffix("List")) {
        Some(kind) => of_list(value, kind, whole),
        None => of_object(value, whole),
    }
}
