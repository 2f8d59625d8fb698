//! A classification held against a plan.

use crate::grant::{Rule, TargetScope};

use super::{Access, Classification, ClassifyError};

/// What the plan says about a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every access is allowed: forward it.
    Allow,
    /// Every access is allowed or approvable; these need a human's approval.
    Hold {
        /// The accesses only an `approve` rule covers.
        needs: Vec<Access>,
    },
    /// No rule covers `access` (the first such, in statement order).
    Deny {
        /// What the plan lacks.
        access: Access,
    },
    /// The SQL could not be classified: denied.
    Unclassifiable(ClassifyError),
}

impl Verdict {
    /// A short name for the record: `allow`, `hold`, `deny`.
    pub fn decision(&self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Hold { .. } => "hold",
            Verdict::Deny { .. } | Verdict::Unclassifiable(_) => "deny",
        }
    }
}

/// Holds what `classified` does against `scope`: denied if any access is
/// covered by no rule, held if some are covered only by `approve` rules,
/// allowed otherwise.
pub fn check(classified: &Result<Classification, ClassifyError>, scope: &TargetScope) -> Verdict {
    let classification = match classified {
        Ok(c) => c,
        Err(e) => return Verdict::Unclassifiable(e.clone()),
    };
    let mut needs = Vec::new();
    for access in classification.statements.iter().flat_map(|s| &s.accesses) {
        if scope.allow.iter().any(|r| covers(r, access)) {
            continue;
        }
        if scope.approve.iter().any(|r| covers(r, access)) {
            if !needs.contains(access) {
                needs.push(access.clone());
            }
            continue;
        }
        return Verdict::Deny {
            access: access.clone(),
        };
    }
    if needs.is_empty() {
        Verdict::Allow
    } else {
        Verdict::Hold { needs }
    }
}

/// Whether `rule` covers `access`.
pub fn covers(rule: &Rule, access: &Access) -> bool {
    match access {
        Access::Relation { op, relation } => {
            names_op(rule, op.name())
                && rule.relations.iter().any(|p| relation_matches(p, relation))
        }
        Access::Function(name) => rule.functions.iter().any(|p| function_matches(p, name)),
        Access::Command { name, relation } => {
            names_op(rule, name)
                && relation
                    .as_ref()
                    .is_none_or(|rel| rule.relations.iter().any(|p| relation_matches(p, rel)))
        }
    }
}

fn names_op(rule: &Rule, op: &str) -> bool {
    rule.ops
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(op))
}

/// `*`, `schema.*`, or `schema.name`; a bare `name` is `public.name`.
fn relation_matches(pattern: &str, relation: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let qualified;
    let pattern = if pattern.contains('.') {
        pattern
    } else {
        qualified = format!("public.{pattern}");
        &qualified
    };
    match pattern.strip_suffix(".*") {
        Some(schema) => relation
            .strip_prefix(schema)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern == relation,
    }
}

/// `*`, `schema.*` (qualified calls only), or the name as the SQL spells it.
fn function_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(schema) => name
            .strip_prefix(schema)
            .is_some_and(|rest| rest.starts_with('.')),
        None => pattern.eq_ignore_ascii_case(name),
    }
}
