//! What a Kubernetes API request asks for: its verb, resource,
//! subresource, namespace and name, derived from the method and path the
//! way the API server's `RequestInfoFactory`
//! (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`) derives them,
//! so that a plan's `kube` rules mean what the cluster's RBAC would.
//!
//! - Resource requests are `/api/VERSION/...` (the core group) and
//!   `/apis/GROUP/VERSION/...`; then optionally the special verb `watch` or
//!   `proxy` (the legacy `/watch/` prefix), then `namespaces/NS/` (unless
//!   what follows is a namespace's own subresource, `status` or
//!   `finalize`), then `RESOURCE[/NAME[/SUBRESOURCE]]`. A namespace object
//!   itself (`/api/v1/namespaces/billing`) has resource `namespaces`,
//!   namespace and name `billing`.
//! - The verb comes from the method: POST `create`, GET and HEAD `get`, or
//!   `list` without a name, or `watch` when the query says `watch` (any
//!   value but `false` and `0`, as the API server reads it), PUT `update`,
//!   PATCH `patch`, DELETE `delete`, or `deletecollection` without a name;
//!   any other method has no verb (empty).
//! - Everything else (`/version`, `/healthz`, `/api`, `/apis/apps`) is a
//!   non-resource request whose verb is the lowercase method.
//!
//! One deliberate addition: a GET of `pods/exec`, `pods/attach` or
//! `pods/portforward` (a WebSocket upgrade, as kubectl sends them since
//! 1.31) has verb `create`, as the API server requires since 1.35
//! (`AuthorizePodWebsocketUpgradeCreatePermission`): it runs a command as
//! surely as the POST of the SPDY upgrade does.
//!
//! The path is normalised first ([`NormalPath`]): a path the gateway could
//! read differently from the API server is refused.

use crate::http::rules::path::{NormalPath, PathError};

/// What a Kubernetes API request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// Whether the request is for a resource or subresource (else it is a
    /// non-resource URL such as `/version`).
    pub is_resource_request: bool,
    /// The Kubernetes verb (`get`, `list`, `watch`, `create`, …); for a
    /// non-resource request the lowercase method.
    pub verb: String,
    /// `api` or `apis`; empty for a non-resource request.
    pub api_prefix: String,
    /// The API group; empty for the core group.
    pub api_group: String,
    /// The API version (`v1`).
    pub api_version: String,
    /// The namespace; empty for cluster-scoped and all-namespace requests.
    pub namespace: String,
    /// The resource (`pods`, `deployments`, `namespaces`).
    pub resource: String,
    /// The subresource (`exec`, `log`, `status`, `scale`), if any.
    pub subresource: String,
    /// The object's name, if the path names one.
    pub name: String,
    /// The decoded, normalised path (no query).
    pub path: String,
}

/// Why a request could not be read as a Kubernetes request (denied).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// The path does not normalise.
    #[error(transparent)]
    Path(#[from] PathError),
    /// `/watch/` or `/proxy/` with nothing after it (the API server fails
    /// such a request too).
    #[error("unable to determine kind and namespace from the path")]
    NoResource,
}

/// Special verbs that take the place of a path segment.
const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];
/// Subresources of a namespace (else the segment is a namespaced resource).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];
/// Pod subresources that run something in the pod.
const POD_STREAMS: [&str; 3] = ["exec", "attach", "portforward"];

impl RequestInfo {
    /// Reads a request's `method` (as sent, `GET`) and target
    /// (`/api/v1/namespaces/billing/pods?watch=true`).
    pub fn parse(method: &str, path_and_query: &str) -> Result<RequestInfo, KubeError> {
        let path = NormalPath::parse(path_and_query)?;
        let query = path_and_query.split_once('?').map(|(_, q)| q);
        let mut info = RequestInfo {
            verb: method.to_ascii_lowercase(),
            path: path.to_string(),
            ..RequestInfo::default()
        };
        let mut parts: &[String] = &path.segments;
        let Some((prefix, rest)) = parts.split_first() else {
            return Ok(info);
        };
        if parts.len() < 3 || (prefix != "api" && prefix != "apis") {
            return Ok(info);
        }
        parts = rest;
        if prefix == "apis" {
            let (Some((group, rest)), true) = (parts.split_first(), parts.len() >= 3) else {
                return Ok(info);
            };
            info.api_group = group.clone();
            parts = rest;
        }
        info.api_prefix = prefix.clone();
        info.is_resource_request = true;
        if let Some((version, rest)) = parts.split_first() {
            info.api_version = version.clone();
            parts = rest;
        }
        match parts.split_first() {
            Some((special, rest)) if SPECIAL_VERBS.contains(&special.as_str()) => {
                if rest.is_empty() {
                    return Err(KubeError::NoResource);
                }
                info.verb = special.clone();
                parts = rest;
            }
            _ => info.verb = verb_of(method).to_owned(),
        }
        if let Some((first, rest)) = parts.split_first()
            && first == "namespaces"
            && let Some((namespace, after)) = rest.split_first()
        {
            info.namespace = namespace.clone();
            if after
                .first()
                .is_some_and(|s| !NAMESPACE_SUBRESOURCES.contains(&s.as_str()))
            {
                parts = after;
            }
        }
        let mut it = parts.iter();
        info.resource = it.next().cloned().unwrap_or_default();
        info.name = it.next().cloned().unwrap_or_default();
        if info.verb != "proxy" {
            info.subresource = it.next().cloned().unwrap_or_default();
        }
        if info.name.is_empty() && info.verb == "get" {
            let (watch, name) = list_options(query);
            info.verb = if watch { "watch" } else { "list" }.to_owned();
            info.name = name.unwrap_or_default();
        }
        if info.name.is_empty() && info.verb == "delete" {
            info.verb = "deletecollection".to_owned();
        }
        if info.verb == "get"
            && info.api_group.is_empty()
            && info.resource == "pods"
            && POD_STREAMS.contains(&info.subresource.as_str())
        {
            info.verb = "create".to_owned();
        }
        Ok(info)
    }

    /// The request in the words of a `kube` rule, for messages and the
    /// record: `create pods/exec in billing`, `list deployments.apps in
    /// billing`, `list nodes`, `get /version`.
    pub fn describe(&self) -> String {
        let verb = if self.verb.is_empty() {
            "(no verb)"
        } else {
            &self.verb
        };
        if !self.is_resource_request {
            return format!("{verb} {}", self.path);
        }
        let mut s = format!("{verb} {}", self.resource);
        if !self.api_group.is_empty() {
            s.push('.');
            s.push_str(&self.api_group);
        }
        if !self.subresource.is_empty() {
            s.push('/');
            s.push_str(&self.subresource);
        }
        if !self.namespace.is_empty() {
            s.push_str(" in ");
            s.push_str(&self.namespace);
        }
        s
    }

    /// Whether the request is API discovery, which every Kubernetes session
    /// may read without a rule (kubectl cannot work without it): a GET or
    /// HEAD of `/api`, `/api/VERSION`, `/apis`, `/apis/GROUP`,
    /// `/apis/GROUP/VERSION`, `/version`, or under `/openapi/`. It says
    /// which APIs and resources the cluster serves, never an object.
    pub fn is_discovery(&self) -> bool {
        if self.is_resource_request || !(self.verb == "get" || self.verb == "head") {
            return false;
        }
        let segments: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        matches!(
            segments.as_slice(),
            ["api" | "apis" | "version"] | ["api" | "apis", _] | ["apis", _, _] | ["openapi", ..]
        )
    }
}

/// The verb of a resource request by its method, before list, watch and
/// deletecollection are told apart.
fn verb_of(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

/// From a list's query: whether it watches, and the name an exact
/// `metadata.name` field selector names (as the API server reads them).
fn list_options(query: Option<&str>) -> (bool, Option<String>) {
    let mut watch = None;
    let mut field_selector = None;
    for pair in query.unwrap_or_default().split('&') {
        if pair.is_empty() || pair.contains(';') {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(key), Some(value)) = (query_unescape(key), query_unescape(value)) else {
            continue;
        };
        if key == "watch" && watch.is_none() {
            watch = Some(value);
        } else if key == "fieldSelector" && field_selector.is_none() {
            field_selector = Some(value);
        }
    }
    let watch = watch.is_some_and(|v| {
        let v = v.to_ascii_lowercase();
        v != "false" && v != "0"
    });
    (watch, field_selector.and_then(|s| exact_name(&s)))
}

/// The name an `metadata.name=NAME` (or `==`) term of a field selector
/// requires, if it is a valid path segment name.
fn exact_name(selector: &str) -> Option<String> {
    if selector.contains('\\') {
        return None;
    }
    let name = selector.split(',').find_map(|term| {
        let term = term.trim();
        if term.contains("!=") {
            return None;
        }
        let (field, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        (field.trim() == "metadata.name").then(|| value.trim().to_owned())
    })?;
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('%');
    valid.then_some(name)
}

/// Decodes a query key or value as Go's `url.QueryUnescape` does (`+` is
/// a space); `None` on a bad escape or bytes that are not UTF-8.
fn query_unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
