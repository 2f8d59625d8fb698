//! Named policies: plans for grants that carry none.
//!
//! An external identity provider mints tokens with its own claims (`scope`,
//! `groups`, `roles`) but no `plan`. The gateway's configuration names
//! policies ([`NamedPolicy`]: a target scope for some targets) and says
//! which claim values select them ([`PolicyClaim`]); [`PolicySelector`]
//! turns a token's claims into the plan of the policies they select.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{Limits, Plan, TargetScope};

/// A policy: what a grant that selects it may do on each of its targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedPolicy {
    /// The targets it opens.
    pub targets: Vec<String>,
    /// The scope on each of them.
    pub scope: TargetScope,
}

/// A selector: tokens whose `claim` holds `value` get `policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyClaim {
    /// The claim's name. A name with dots (`realm_access.roles`) that is
    /// not itself a claim is a path into nested objects.
    pub claim: String,
    /// The value: the claim equals it, is a space-separated list containing
    /// it (OAuth `scope`), or is an array containing it.
    pub value: String,
    /// The policy it selects.
    pub policy: String,
}

/// A selector names a policy that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {0:?} is not defined")]
pub struct UnknownPolicy(pub String);

/// The configured policies and the selectors that choose among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySelector {
    policies: BTreeMap<String, NamedPolicy>,
    selectors: Vec<PolicyClaim>,
}

impl PolicySelector {
    /// Policies by name and their selectors; every selector must name one
    /// of the policies.
    pub fn new(
        policies: BTreeMap<String, NamedPolicy>,
        selectors: Vec<PolicyClaim>,
    ) -> Result<PolicySelector, UnknownPolicy> {
        if let Some(s) = selectors.iter().find(|s| !policies.contains_key(&s.policy)) {
            return Err(UnknownPolicy(s.policy.clone()));
        }
        Ok(PolicySelector {
            policies,
            selectors,
        })
    }

    /// Whether no selector is configured: then a grant without a plan is
    /// refused as missing its `plan` claim.
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    /// The names of the policies `claims` select, sorted, each once.
    pub fn select(&self, claims: &Map<String, Value>) -> Vec<&str> {
        let names: BTreeSet<&str> = self
            .selectors
            .iter()
            .filter(|s| lookup(claims, &s.claim).is_some_and(|v| holds(v, &s.value)))
            .map(|s| s.policy.as_str())
            .collect();
        names.into_iter().collect()
    }

    /// The plan of the policies `names`: per target, the rules of every
    /// policy that names it, in the order of `names`. A limit set by any of
    /// them applies; where several set the same limit, the largest.
    /// `uses` is unlimited (until `exp`).
    pub fn plan(&self, names: &[&str]) -> Plan {
        let mut targets: BTreeMap<String, TargetScope> = BTreeMap::new();
        for policy in names.iter().filter_map(|n| self.policies.get(*n)) {
            for target in &policy.targets {
                let merged = targets.entry(target.clone()).or_default();
                merged.allow.extend(policy.scope.allow.iter().cloned());
                merged.approve.extend(policy.scope.approve.iter().cloned());
                merged.limits = merge_limits(&merged.limits, &policy.scope.limits);
            }
        }
        Plan {
            targets,
            uses: None,
        }
    }
}

fn merge_limits(a: &Limits, b: &Limits) -> Limits {
    fn larger(a: Option<u64>, b: Option<u64>) -> Option<u64> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
    Limits {
        statements: larger(a.statements, b.statements),
        rows: larger(a.rows, b.rows),
        duration_s: larger(a.duration_s, b.duration_s),
    }
}

/// The claim `name`, or the nested member its dotted path names.
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = claims.get(parts.next()?)?;
    for part in parts {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

/// Whether claim value `v` holds `wanted`: equal, a word of a
/// space-separated string, or an element of an array of strings.
fn holds(v: &Value, wanted: &str) -> bool {
    match v {
        Value::String(s) => s == wanted || s.split_ascii_whitespace().any(|w| w == wanted),
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(wanted)),
        _ => false,
    }
}
