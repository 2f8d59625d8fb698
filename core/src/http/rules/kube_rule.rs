//! One `kube` entry of a plan rule, `"VERBS RESOURCES [in NAMESPACES]"`,
//! parsed and matched against a [`RequestInfo`].

use std::fmt;

use crate::http::kube::RequestInfo;

/// One `kube` entry: verbs, and resources in namespaces or non-resource
/// URLs.
///
/// - Verbs are comma-separated: `get`, `list`, `watch`, `create`,
///   `update`, `patch`, `delete`, `deletecollection`, `proxy`, or `*` (any
///   verb). For non-resource URLs they are lowercase methods: `get`,
///   `head`, `post`, `put`, `patch`, `delete`, `options`, or `*`.
/// - Resources are comma-separated `RESOURCE[.GROUP][/SUBRESOURCE]`:
///   `pods`, `pods/exec`, `pods/log`, `deployments.apps`,
///   `ingresses.networking.k8s.io/status`. No group is the core group.
///   `pods` does not cover `pods/exec`; `pods/*` covers every subresource
///   of pods (but not pods themselves); `*.apps` every resource of the
///   `apps` group, `*.*` every resource of every group, and `*` alone every
///   resource and subresource of every group.
/// - `in NAMESPACES`, comma-separated or `*` (every namespace), limits the
///   rule to requests within those namespaces (the namespace object
///   itself, `get namespaces in billing`, included). Without `in` the rule
///   covers only requests without a namespace: cluster-scoped resources
///   (`list nodes`) and lists across all namespaces (`list pods`, which is
///   `kubectl get pods -A`). `in *` does not cover those.
/// - Non-resource URLs instead of resources: `get /version`, `get
///   /healthz,/livez`; a final `*` matches any rest (`get /healthz/*`,
///   as in RBAC). They take no `in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeRule {
    text: String,
    /// `None` is any verb.
    verbs: Option<Vec<String>>,
    target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Resources {
        resources: Vec<Resource>,
        /// `None` is cluster-scoped only; `Some(None)` every namespace.
        namespaces: Option<Option<Vec<String>>>,
    },
    /// `(path, is_prefix)`.
    Urls(Vec<(String, bool)>),
}

/// `None` in a field is `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    All,
    Named {
        resource: Option<String>,
        group: Option<String>,
        /// `None` no subresource; `Some(None)` any subresource.
        subresource: Option<Option<String>>,
    },
}

const RESOURCE_VERBS: [&str; 9] = [
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
];
const URL_VERBS: [&str; 7] = ["get", "head", "post", "put", "patch", "delete", "options"];

impl KubeRule {
    /// Parses an entry, saying what is wrong with it.
    pub fn parse(entry: &str) -> Result<KubeRule, String> {
        let err = |e: String| format!("kube entry {entry:?}: {e}");
        let words: Vec<&str> = entry.split_whitespace().collect();
        let (verbs, what, namespaces) = match words.as_slice() {
            [verbs, what] => (*verbs, *what, None),
            [verbs, what, kw, ns] if kw.eq_ignore_ascii_case("in") => (*verbs, *what, Some(*ns)),
            _ => {
                return Err(err(
                    "expected VERBS RESOURCES [in NAMESPACES], e.g. \"get,list,watch pods in billing\", or VERBS /URL".to_owned(),
                ));
            }
        };
        let urls = what.starts_with('/');
        let allowed: &[&str] = if urls { &URL_VERBS } else { &RESOURCE_VERBS };
        let verbs = parse_list(verbs, |v| {
            let v = v.to_ascii_lowercase();
            if allowed.contains(&v.as_str()) {
                Ok(v)
            } else {
                Err(format!(
                    "{v:?} is not a verb here (one of {}, or *)",
                    allowed.join(", ")
                ))
            }
        })
        .map_err(err)?;
        let target = if urls {
            if namespaces.is_some() {
                return Err(err("non-resource URLs take no `in NAMESPACES`".to_owned()));
            }
            let urls = what
                .split(',')
                .map(parse_url)
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            Target::Urls(urls)
        } else {
            let resources = what
                .split(',')
                .map(parse_resource)
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            let namespaces = namespaces
                .map(|ns| parse_list(ns, |n| name(n, "namespace").map(str::to_owned)))
                .transpose()
                .map_err(err)?;
            Target::Resources {
                resources,
                namespaces,
            }
        };
        Ok(KubeRule {
            text: words.join(" "),
            verbs,
            target,
        })
    }

    /// Whether the rule covers `info`.
    pub fn matches(&self, info: &RequestInfo) -> bool {
        let verb_ok = self.verbs.as_ref().is_none_or(|vs| vs.contains(&info.verb));
        if !verb_ok {
            return false;
        }
        match &self.target {
            Target::Urls(urls) => {
                !info.is_resource_request
                    && urls.iter().any(|(url, prefix)| {
                        if *prefix {
                            info.path.starts_with(url.as_str())
                        } else {
                            info.path == *url
                        }
                    })
            }
            Target::Resources {
                resources,
                namespaces,
            } => {
                let ns_ok = match namespaces {
                    None => info.namespace.is_empty(),
                    Some(None) => !info.namespace.is_empty(),
                    Some(Some(list)) => list.contains(&info.namespace),
                };
                info.is_resource_request && ns_ok && resources.iter().any(|r| r.matches(info))
            }
        }
    }
}

impl Resource {
    fn matches(&self, info: &RequestInfo) -> bool {
        let Resource::Named {
            resource,
            group,
            subresource,
        } = self
        else {
            return true;
        };
        let is = |p: &Option<String>, v: &str| p.as_deref().is_none_or(|p| p == v);
        is(resource, &info.resource)
            && is(group, &info.api_group)
            && match subresource {
                None => info.subresource.is_empty(),
                Some(None) => !info.subresource.is_empty(),
                Some(Some(s)) => *s == info.subresource,
            }
    }
}

impl fmt::Display for KubeRule {
    /// The entry as the plan spells it (blanks collapsed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A comma-separated list, `None` when it holds `*`.
fn parse_list(
    spec: &str,
    item: impl Fn(&str) -> Result<String, String>,
) -> Result<Option<Vec<String>>, String> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        if part == "*" {
            return Ok(None);
        }
        out.push(item(part)?);
    }
    Ok(Some(out))
}

fn parse_resource(spec: &str) -> Result<Resource, String> {
    if spec == "*" {
        return Ok(Resource::All);
    }
    let (main, sub) = match spec.split_once('/') {
        Some((main, sub)) => (main, Some(sub)),
        None => (spec, None),
    };
    let (resource, group) = match main.split_once('.') {
        Some((r, g)) => (r, Some(g)),
        None => (main, None),
    };
    let star = |s: &str, what: &str| -> Result<Option<String>, String> {
        if s == "*" {
            Ok(None)
        } else {
            name(s, what).map(|n| Some(n.to_owned()))
        }
    };
    Ok(Resource::Named {
        resource: star(resource, "resource")?,
        group: match group {
            None => Some(String::new()),
            Some("*") => None,
            Some(g) if !g.is_empty() && g.split('.').all(|l| name(l, "group").is_ok()) => {
                Some(g.to_owned())
            }
            Some(g) => return Err(format!("{g:?} is not an API group")),
        },
        subresource: sub.map(|s| star(s, "subresource")).transpose()?,
    })
}

/// A name of a resource, subresource or namespace: letters, digits, `-`
/// and `_`.
fn name<'a>(s: &'a str, what: &str) -> Result<&'a str, String> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s)
    } else {
        Err(format!("{s:?} is not a {what} name (or *)"))
    }
}

fn parse_url(spec: &str) -> Result<(String, bool), String> {
    let (path, prefix) = match spec.strip_suffix('*') {
        Some(p) => (p, true),
        None => (spec, false),
    };
    if !path.starts_with('/') || path.contains('*') || path.contains('?') {
        return Err(format!(
            "{spec:?} is not a non-resource URL (a path such as /version, or /healthz/*)"
        ));
    }
    Ok((path.to_owned(), prefix))
}
