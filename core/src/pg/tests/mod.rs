//! Session-level tests: a client, the session and a scripted target in
//! memory.

mod mask;
mod policy;
mod robustness;
mod session;

use std::sync::Arc;

use crate::grant::{Rule, TargetScope};
use crate::pg::Policy;
use crate::policy::ClassifierCache;

/// A policy whose plan allows everything.
pub(crate) fn allow_all() -> Policy {
    with_scope(TargetScope {
        allow: vec![Rule::everything()],
        ..TargetScope::default()
    })
}

/// A policy with `scope`, for grant `j1`.
pub(crate) fn with_scope(scope: TargetScope) -> Policy {
    Policy {
        scope: Arc::new(scope),
        classifier: Arc::new(ClassifierCache::default()),
        jti: "j1".into(),
        hold: crate::pg::HoldMode::Wait,
        approvals: None,
    }
}

/// A scope that allows reading `public`, and nothing else: most input is
/// denied, which exercises the denial paths.
pub(crate) fn select_only() -> TargetScope {
    TargetScope {
        allow: vec![Rule {
            name: None,
            ops: vec!["select".into()],
            relations: vec!["public.*".into()],
            functions: Vec::new(),
            ..Rule::default()
        }],
        ..TargetScope::default()
    }
}
