//! Masking a grant adds to its target's: a planner can hide more from an
//! agent than the gateway's config does, never less.
//!
//! In the plan, per target (`plan.targets.NAME.mask`), in the config's
//! words:
//!
//! ```json
//! "mask": {
//!   "columns": [{"pattern": "*.notes", "strategy": "redact"}],
//!   "detectors": {"phone": "partial", "email": "token"},
//!   "dictionaries": [{"terms": ["Project Falcon"], "case_insensitive": true, "strategy": "redact"}]
//! }
//! ```
//!
//! The gateway applies the target's rules first ([`MaskRules::narrowed`]):
//! a column or detector the target already masks keeps the target's
//! strategy. A grant whose rules do not compile (an unknown detector or
//! strategy, a `token` strategy on a target without a token secret) opens
//! no session.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::mask::{ColumnRule, Detector, DictionaryRule, MaskRules, Strategy};

/// What a grant masks on one target, beyond the target's own rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaskScope {
    /// Whole-column rules.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<MaskColumn>,
    /// Content detectors by name (`card_number`, `email`, …), each with
    /// its strategy.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub detectors: BTreeMap<String, String>,
    /// Literal terms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dictionaries: Vec<MaskDictionary>,
}

/// A grant's column rule: a pattern as in the config
/// ([`ColumnRule::pattern`]) and a strategy (`redact` unless given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskColumn {
    /// The column pattern (`ssn`, `*.card_number`, `users.email`).
    pub pattern: String,
    /// `redact`, `partial`, `partial:N`, `token` or `null`.
    #[serde(default = "redact")]
    pub strategy: String,
}

/// A grant's dictionary rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskDictionary {
    /// The terms.
    pub terms: Vec<String>,
    /// Match ASCII letters in any case.
    #[serde(default)]
    pub case_insensitive: bool,
    /// `redact`, `partial`, `partial:N`, `token` or `null`.
    #[serde(default = "redact")]
    pub strategy: String,
}

fn redact() -> String {
    "redact".to_owned()
}

impl MaskScope {
    /// True when the grant adds nothing.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.detectors.is_empty() && self.dictionaries.is_empty()
    }

    /// The rules it adds; an error names the first one that is not valid.
    pub fn rules(&self) -> Result<MaskRules, String> {
        let strategy =
            |at: String, s: &str| s.parse::<Strategy>().map_err(|e| format!("mask.{at}: {e}"));
        let mut rules = MaskRules::default();
        for (i, c) in self.columns.iter().enumerate() {
            if c.pattern.trim().is_empty() {
                return Err(format!("mask.columns[{i}]: the pattern is empty"));
            }
            rules.columns.push(ColumnRule {
                pattern: c.pattern.clone(),
                strategy: strategy(format!("columns[{i}]"), &c.strategy)?,
            });
        }
        for (name, s) in &self.detectors {
            let detector = Detector::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
                format!(
                    "mask.detectors: unknown detector {name:?}; known: {}",
                    known.join(", ")
                )
            })?;
            rules
                .detectors
                .push((detector, strategy(format!("detectors.{name}"), s)?));
        }
        for (i, d) in self.dictionaries.iter().enumerate() {
            if d.terms.iter().all(|t| t.trim().is_empty()) {
                return Err(format!("mask.dictionaries[{i}]: no terms"));
            }
            rules.dictionaries.push(DictionaryRule {
                terms: d.terms.clone(),
                case_insensitive: d.case_insensitive,
                strategy: strategy(format!("dictionaries[{i}]"), &d.strategy)?,
            });
        }
        Ok(rules)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_grant_adds_rules_and_never_loosens_the_targets() {
        let scope: MaskScope = serde_json::from_value(serde_json::json!({
            "columns": [{"pattern": "notes"}, {"pattern": "ssn", "strategy": "partial"}],
            "detectors": {"phone": "partial:2", "email": "partial"},
            "dictionaries": [{"terms": ["Falcon"], "case_insensitive": true, "strategy": "null"}],
        }))
        .unwrap();
        let target = MaskRules {
            columns: vec![ColumnRule {
                pattern: "ssn".into(),
                strategy: Strategy::Null,
            }],
            detectors: vec![(Detector::Email, Strategy::Token)],
            dictionaries: vec![],
        };
        let rules = target.narrowed(&scope.rules().unwrap());
        // The target's ssn rule comes first, so it wins; notes is added.
        assert_eq!(rules.columns[0].strategy, Strategy::Null);
        assert_eq!(rules.columns[1].pattern, "notes");
        assert_eq!(rules.columns[1].strategy, Strategy::Redact);
        // email keeps the target's strategy; phone is added.
        assert_eq!(
            rules.detectors,
            vec![
                (Detector::Email, Strategy::Token),
                (Detector::Phone, Strategy::Partial { keep_last: 2 })
            ]
        );
        assert_eq!(rules.dictionaries[0].strategy, Strategy::Null);
    }

    #[test]
    fn invalid_grant_rules_say_which() {
        for (mask, expected) in [
            (
                serde_json::json!({"detectors": {"dna": "redact"}}),
                "unknown detector \"dna\"",
            ),
            (
                serde_json::json!({"columns": [{"pattern": "x", "strategy": "hide"}]}),
                "columns[0]",
            ),
            (
                serde_json::json!({"columns": [{"pattern": " "}]}),
                "pattern is empty",
            ),
            (
                serde_json::json!({"dictionaries": [{"terms": []}]}),
                "no terms",
            ),
        ] {
            let scope: MaskScope = serde_json::from_value(mask).unwrap();
            let err = scope.rules().unwrap_err();
            assert!(err.contains(expected), "{err}");
        }
    }
}
