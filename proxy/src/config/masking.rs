//! `[targets.NAME.masking]`: which values of a target's results never leave
//! the gateway.
//!
//! ```toml
//! [targets.orders.masking]
//! token_secret_env = "GATEHOUSE_MASK_SECRET"   # only needed by "token"
//! detectors = { card_number = "partial", email = "token", pem_private_key = "redact" }
//! [[targets.orders.masking.columns]]
//! pattern = "*.ssn"
//! strategy = "null"
//! [[targets.orders.masking.dictionaries]]
//! terms = ["Initech", "db-prod-7.internal"]
//! case_insensitive = true
//! strategy = "redact"
//! ```
//!
//! Strategies: `redact` (`****`), `partial` (keeps the last 4 characters;
//! `partial:N` keeps N), `token` (a deterministic HMAC-SHA-256 token, so
//! equal values still join), `null`.

use std::path::Path;

use gatehouse_core::mask::{ColumnRule, Detector, DictionaryRule, MaskRules, Strategy};

use super::file::MaskingSection;
use super::target::{password_from_env, password_from_file};
use super::validate::{Env, Findings, path};
use super::{Masking, Secret};

pub(super) fn masking(
    f: &mut Findings,
    at: &str,
    s: MaskingSection,
    base: &Path,
    env: &Env<'_>,
) -> Option<Masking> {
    let mut rules = MaskRules::default();
    for (name, strategy) in &s.detectors {
        let key = format!("{at}.detectors.{name}");
        let detector = Detector::from_name(name);
        match (detector, strategy.parse::<Strategy>()) {
            (Some(d), Ok(st)) => rules.detectors.push((d, st)),
            (None, _) => {
                let known: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
                f.problem(
                    &key,
                    format!("unknown detector; known: {}", known.join(", ")),
                );
            }
            (_, Err(e)) => f.problem(&key, e),
        }
    }
    for (i, c) in s.columns.into_iter().enumerate() {
        match c.strategy.parse::<Strategy>() {
            Ok(strategy) => rules.columns.push(ColumnRule {
                pattern: c.pattern,
                strategy,
            }),
            Err(e) => f.problem(&format!("{at}.columns[{i}].strategy"), e),
        }
    }
    for (i, d) in s.dictionaries.into_iter().enumerate() {
        match d.strategy.parse::<Strategy>() {
            Ok(strategy) => rules.dictionaries.push(DictionaryRule {
                terms: d.terms,
                case_insensitive: d.case_insensitive,
                strategy,
            }),
            Err(e) => f.problem(&format!("{at}.dictionaries[{i}].strategy"), e),
        }
    }
    let mut keys = Vec::new();
    for (name, strategy) in &s.keys {
        match strategy.parse::<Strategy>() {
            Ok(st) if !name.is_empty() => keys.push((name.clone(), st)),
            Ok(_) => f.problem(&format!("{at}.keys"), "a key must not be empty"),
            Err(e) => f.problem(&format!("{at}.keys.{name}"), e),
        }
    }
    let token_secret: Option<Secret> = match (s.token_secret_env, s.token_secret_file) {
        (Some(_), Some(_)) => {
            f.problem(at, "set token_secret_env or token_secret_file, not both");
            None
        }
        (Some(var), None) => password_from_env(f, &format!("{at}.token_secret_env"), &var, env),
        (None, Some(file)) => {
            password_from_file(f, &format!("{at}.token_secret_file"), &path(base, &file))
        }
        (None, None) => None,
    };
    if rules.is_empty() && keys.is_empty() {
        f.warning(at, "no masking rules: nothing is masked for this target");
        return None;
    }
    let masking = Masking {
        rules,
        token_secret,
        keys,
    };
    if let Err(e) = masking.compile() {
        f.problem(at, e.to_string());
        return None;
    }
    Some(masking)
}
