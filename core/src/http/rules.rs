//! HTTP and Kubernetes requests held against a grant's plan: allow, hold
//! for a human's approval, or deny naming what the plan lacks. The HTTP
//! counterpart of [`crate::policy::check`].
//!
//! A scope's rules are compiled once per session ([`HttpPolicy::compile`]);
//! a bad entry refuses the session at login, naming it. Each request is
//! then checked ([`HttpPolicy::check`]): allowed if an `allow` rule covers
//! it, held if only an `approve` rule does, denied otherwise (fail closed).
//!
//! - On an HTTP target, a rule's `http` entries ([`HttpRule`]) are matched
//!   against the method and the normalised path ([`path`]); the query is
//!   ignored.
//! - On a Kubernetes target, the request is first read as the API server
//!   reads it ([`RequestInfo`]), then matched against `kube` entries
//!   ([`KubeRule`]). API discovery (`/api`, `/apis`, `/apis/GROUP[/VERSION]`,
//!   `/version`, `/openapi/**`, by GET or HEAD) is allowed without a rule:
//!   kubectl cannot work without it, and it shows no object. Non-resource
//!   URLs (`/healthz`) may also be allowed by `http` entries, matched
//!   against the raw method and path; resource requests only by `kube`
//!   entries, so that an `http` entry can never grant what the `kube`
//!   model would refuse.
//! - SQL entries (`ops`, `relations`, `functions`) allow nothing here.
//!
//! A path that does not normalise (`..`, `//`, `%2F`, a bad escape) is
//! denied, whatever the rules say.

pub mod http_rule;
pub mod kube_rule;
pub mod path;

pub use http_rule::HttpRule;
pub use kube_rule::KubeRule;
pub use path::{NormalPath, PathError};

use crate::grant::{Rule, TargetScope};
use crate::http::kube::RequestInfo;

/// What kind of target a session talks to: which entries of a rule apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// An HTTP API: `http` entries.
    Http,
    /// A Kubernetes API server: `kube` entries (and `http` entries for
    /// non-resource URLs).
    Kubernetes,
}

/// What the plan says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// An `allow` rule covers it (or it is Kubernetes API discovery):
    /// forward it.
    Allow,
    /// Only an `approve` rule covers it: it waits for a human's approval.
    Hold,
    /// No rule covers it, or it cannot be read: refuse it.
    Deny,
}

impl Decision {
    /// A short name for the record: `allow`, `hold`, `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Hold => "hold",
            Decision::Deny => "deny",
        }
    }
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpVerdict {
    /// Allow, hold or deny.
    pub decision: Decision,
    /// What was asked, in the words of a rule: `GET /v1/invoices` (the
    /// normalised path, no query) or `create pods/exec in billing`.
    pub operation: String,
    /// The rule that decided, by name or position (`allow[0]`,
    /// `approve[1]`, or its `name`); `None` when no rule did.
    pub rule: Option<String>,
    /// Why, in words an agent can act on; for a deny, what the plan lacks.
    pub reason: String,
}

/// A scope's rules compiled for one kind of target.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    kind: TargetKind,
    allow: Vec<Compiled>,
    approve: Vec<Compiled>,
}

/// One plan rule's HTTP and Kubernetes entries.
#[derive(Debug, Clone)]
struct Compiled {
    label: String,
    http: Vec<HttpRule>,
    kube: Vec<KubeRule>,
}

impl HttpPolicy {
    /// Compiles `scope`'s rules for a target of `kind`. Every `http` and
    /// `kube` entry is checked, whichever kind applies; the error names the
    /// first bad one (`allow[1] ("reads"): kube entry "...": ...`).
    pub fn compile(scope: &TargetScope, kind: TargetKind) -> Result<HttpPolicy, String> {
        Ok(HttpPolicy {
            kind,
            allow: compile_rules(&scope.allow, "allow")?,
            approve: compile_rules(&scope.approve, "approve")?,
        })
    }

    /// The kind of target this policy was compiled for.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// Holds a request (its method as sent, and its target:
    /// `/v1/invoices?page=2`) against the plan.
    pub fn check(&self, method: &str, path_and_query: &str) -> HttpVerdict {
        match self.kind {
            TargetKind::Http => self.check_http(method, path_and_query),
            TargetKind::Kubernetes => self.check_kube(method, path_and_query),
        }
    }

    fn check_http(&self, method: &str, path_and_query: &str) -> HttpVerdict {
        let path = match NormalPath::parse(path_and_query) {
            Ok(p) => p,
            Err(e) => return unreadable(method, path_and_query, &e.to_string(), true),
        };
        let operation = format!("{method} {path}");
        let covers = |r: &Compiled| r.http.iter().any(|h| h.matches(method, &path));
        let lacks = format!(
            "no rule of the plan allows `{operation}`: the grant needs an `http` rule covering it (e.g. \"{operation}\"), to allow it or to approve it"
        );
        self.decide(operation, covers, lacks)
    }

    fn check_kube(&self, method: &str, path_and_query: &str) -> HttpVerdict {
        let info = match RequestInfo::parse(method, path_and_query) {
            Ok(i) => i,
            Err(e) => {
                let is_path = matches!(e, crate::http::kube::KubeError::Path(_));
                return unreadable(method, path_and_query, &e.to_string(), is_path);
            }
        };
        let operation = info.describe();
        if info.is_discovery() {
            return HttpVerdict {
                decision: Decision::Allow,
                operation,
                rule: None,
                reason: "API discovery is open to every Kubernetes session".to_owned(),
            };
        }
        // Non-resource requests may also match `http` entries: the path
        // normalised again, as RequestInfo does not keep it.
        let raw = if info.is_resource_request {
            None
        } else {
            NormalPath::parse(path_and_query).ok()
        };
        let covers = |r: &Compiled| {
            r.kube.iter().any(|k| k.matches(&info))
                || raw
                    .as_ref()
                    .is_some_and(|p| r.http.iter().any(|h| h.matches(method, p)))
        };
        let lacks = if info.verb.is_empty() {
            format!(
                "the Kubernetes API has no verb for {method} on a resource, so no rule of the plan allows `{operation}`"
            )
        } else {
            format!(
                "no rule of the plan allows `{operation}`: the grant needs a `kube` rule covering it (e.g. \"{operation}\"), to allow it or to approve it"
            )
        };
        self.decide(operation, covers, lacks)
    }

    /// Allow rules first, then approve rules, else deny.
    fn decide(
        &self,
        operation: String,
        covers: impl Fn(&Compiled) -> bool,
        lacks: String,
    ) -> HttpVerdict {
        if let Some(r) = self.allow.iter().find(|r| covers(r)) {
            let reason = format!("allowed by the plan's rule {}", r.label);
            return verdict(Decision::Allow, operation, Some(&r.label), reason);
        }
        if let Some(r) = self.approve.iter().find(|r| covers(r)) {
            let reason = format!(
                "the plan's rule {} allows it once a human approves it",
                r.label
            );
            return verdict(Decision::Hold, operation, Some(&r.label), reason);
        }
        verdict(Decision::Deny, operation, None, lacks)
    }
}

fn verdict(
    decision: Decision,
    operation: String,
    rule: Option<&str>,
    reason: String,
) -> HttpVerdict {
    HttpVerdict {
        decision,
        operation,
        rule: rule.map(str::to_owned),
        reason,
    }
}

/// The verdict on a request whose path cannot be read.
fn unreadable(method: &str, path_and_query: &str, why: &str, is_path: bool) -> HttpVerdict {
    const SHOWN: usize = 200;
    let path = path_and_query.split('?').next().unwrap_or_default();
    let mut shown: String = path.chars().take(SHOWN).collect();
    if shown.len() < path.len() {
        shown.push('…');
    }
    let reason = if is_path {
        format!(
            "{why}; the gateway checks only paths it reads as the target does: send the path without `.` or `..` segments, `//`, or an encoded `/`"
        )
    } else {
        why.to_owned()
    };
    verdict(Decision::Deny, format!("{method} {shown}"), None, reason)
}

fn compile_rules(rules: &[Rule], list: &str) -> Result<Vec<Compiled>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let label = match &rule.name {
                Some(name) => name.clone(),
                None => format!("{list}[{i}]"),
            };
            let at = match &rule.name {
                Some(name) => format!("{list}[{i}] ({name:?})"),
                None => format!("{list}[{i}]"),
            };
            let http = rule
                .http
                .iter()
                .map(|e| HttpRule::parse(e))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{at}: {e}"))?;
            let kube = rule
                .kube
                .iter()
                .map(|e| KubeRule::parse(e))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{at}: {e}"))?;
            Ok(Compiled { label, http, kube })
        })
        .collect()
}

#[cfg(test)]
mod tests;
