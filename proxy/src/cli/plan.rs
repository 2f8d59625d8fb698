//! The plan of a grant from `gatehouse grant` flags and a plan file.
//!
//! A rule flag (`--allow`, `--approve`) reads `OPS[:RELATIONS]` or
//! `fn:FUNCTIONS`, lists comma-separated:
//!
//! - `select:public.invoices,public.payments`
//! - `select,update:public.invoices`
//! - `select:reporting.*`
//! - `do` (a command by its kind; no relation)
//! - `fn:public.refresh_totals,nextval`
//! - `*` (everything: every operation and command on every relation, and
//!   every function, every HTTP request and every Kubernetes request)
//!
//! or, for HTTP and Kubernetes targets, one entry of a rule's `http` or
//! `kube` list (the grammar is `gatehouse_core::http::rules`'s):
//!
//! - `http:METHODS PATH`: `http:GET /v1/invoices/**`, `http:GET,HEAD
//!   /v1/invoices/*`, `http:* /**` (`*` is one path segment, a final `/**`
//!   the rest)
//! - `kube:VERBS RESOURCES [in NAMESPACES]`: `kube:get,list,watch pods in
//!   billing`, `kube:create pods/exec in billing`, `kube:list nodes`
//!   (without `in`: cluster-scoped only), `kube:get /healthz`
//!
//! A plan file (`--plan`, TOML or JSON by its extension) is the `plan`
//! claim itself: `[targets.NAME]` tables with `allow`, `approve`,
//! `limits` and `mask`, and optionally `uses`.
//!
//! Masking flags add to the target's own masking, never less:
//! `--mask-column notes`, `--mask-column '*.phone=partial'`,
//! `--mask-detector phone=redact`.

use std::path::Path;

use anyhow::{Context as _, bail};
use gatehouse_core::grant::{Plan, Rule, TargetScope};
use gatehouse_core::http::rules::{HttpPolicy, HttpRule, KubeRule, TargetKind};

/// Parses one rule flag.
pub fn parse_rule(spec: &str) -> anyhow::Result<Rule> {
    let spec = spec.trim();
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if spec == "*" {
        return Ok(Rule::everything());
    }
    if let Some(entry) = spec.strip_prefix("http:") {
        HttpRule::parse(entry).map_err(anyhow::Error::msg)?;
        return Ok(Rule {
            http: vec![entry.trim().to_owned()],
            ..Rule::default()
        });
    }
    if let Some(entry) = spec.strip_prefix("kube:") {
        KubeRule::parse(entry).map_err(anyhow::Error::msg)?;
        return Ok(Rule {
            kube: vec![entry.trim().to_owned()],
            ..Rule::default()
        });
    }
    if let Some(functions) = spec.strip_prefix("fn:") {
        let functions = list(functions);
        if functions.is_empty() {
            bail!("{spec:?}: name the functions after `fn:`");
        }
        return Ok(Rule {
            functions,
            ..Rule::default()
        });
    }
    let (ops, relations) = match spec.split_once(':') {
        Some((ops, rels)) => (list(ops), list(rels)),
        None => (list(spec), Vec::new()),
    };
    if ops.is_empty() {
        bail!(
            "{spec:?}: expected OPS[:RELATIONS] (e.g. select:public.invoices), fn:NAMES, http:METHODS PATH or kube:VERBS RESOURCES [in NAMESPACES]"
        );
    }
    for op in &ops {
        if !op
            .chars()
            .all(|c| c == '*' || c == '_' || c.is_ascii_alphanumeric())
        {
            bail!("{spec:?}: {op:?} is not an operation or command name");
        }
    }
    Ok(Rule {
        ops,
        relations,
        ..Rule::default()
    })
}

/// Reads a plan file: JSON if it ends in `.json`, TOML otherwise.
pub fn read_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--plan: cannot read {}", path.display()))?;
    let plan: Plan = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("--plan {}", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("--plan {}", path.display()))?
    };
    Ok(plan)
}

/// Checks that every target's scope can allow something.
pub fn check_plan(plan: &Plan) -> anyhow::Result<()> {
    if plan.uses == Some(0) {
        bail!("`uses` is 0, so the grant would allow nothing");
    }
    if plan.targets.is_empty() {
        bail!("the plan names no target: give --target or a plan file with [targets.NAME]");
    }
    for (name, scope) in &plan.targets {
        if name.is_empty() {
            bail!("a target name cannot be empty");
        }
        if is_empty(scope) {
            bail!(
                "the plan allows nothing on target {name:?}: give --allow (e.g. --allow select:public.invoices, or --allow '*' for everything) or a plan file"
            );
        }
        if let Err(e) = scope.mask.rules() {
            bail!("target {name:?}: {e}");
        }
        // Every `http` and `kube` entry is checked whatever the kind.
        if let Err(e) = HttpPolicy::compile(scope, TargetKind::Http) {
            bail!("target {name:?}: {e}");
        }
    }
    Ok(())
}

/// Parses a masking flag's `WHAT[=STRATEGY]` (`redact` when left out).
pub fn parse_mask(spec: &str) -> anyhow::Result<(String, String)> {
    let (what, strategy) = match spec.rsplit_once('=') {
        Some((what, strategy)) => (what.trim(), strategy.trim()),
        None => (spec.trim(), "redact"),
    };
    if what.is_empty() {
        bail!("{spec:?}: expected WHAT[=STRATEGY], e.g. notes=redact");
    }
    strategy
        .parse::<gatehouse_core::mask::Strategy>()
        .map_err(|e| anyhow::anyhow!("{spec:?}: {e}"))?;
    Ok((what.to_owned(), strategy.to_owned()))
}

fn is_empty(scope: &TargetScope) -> bool {
    scope.allow.is_empty() && scope.approve.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_flags() {
        let r = parse_rule("select,update:public.invoices, public.payments").unwrap();
        assert_eq!(r.ops, ["select", "update"]);
        assert_eq!(r.relations, ["public.invoices", "public.payments"]);
        assert_eq!(parse_rule("do").unwrap().ops, ["do"]);
        assert_eq!(
            parse_rule("fn:public.f,nextval").unwrap().functions,
            ["public.f", "nextval"]
        );
        let all = parse_rule("*").unwrap();
        assert_eq!(
            (all.ops.len(), all.relations.len(), all.functions.len()),
            (1, 1, 1)
        );
        for bad in ["", ":public.x", "fn:", "sel ect:x", "select;drop:x"] {
            assert!(parse_rule(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_and_kube_rule_flags() {
        let r = parse_rule("http:GET,HEAD /v1/invoices/**").unwrap();
        assert_eq!(r.http, ["GET,HEAD /v1/invoices/**"]);
        assert!(r.ops.is_empty() && r.kube.is_empty());
        let r = parse_rule(" kube:get,list,watch pods in billing ").unwrap();
        assert_eq!(r.kube, ["get,list,watch pods in billing"]);
        assert!(r.ops.is_empty() && r.http.is_empty());
        assert_eq!(
            parse_rule("kube:create pods/exec in billing").unwrap().kube,
            ["create pods/exec in billing"]
        );
        assert_eq!(
            parse_rule("kube:get /healthz").unwrap().kube,
            ["get /healthz"]
        );
        let all = parse_rule("*").unwrap();
        assert!(!all.http.is_empty() && !all.kube.is_empty());
        for bad in [
            "http:",
            "http:/v1",
            "http:GET /v1/../admin",
            "http:GET /v1/inv*",
            "kube:",
            "kube:fetch pods in billing",
            "kube:get pods in",
            "kube:get /version in billing",
        ] {
            let e = parse_rule(bad).unwrap_err().to_string();
            assert!(e.contains("entry"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn plan_files_with_bad_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.toml");
        std::fs::write(
            &path,
            r#"
[targets.k8s]
allow = [{ name = "reads", kube = ["get,list,watch pods in billing"] }]
approve = [{ kube = ["create pods/exec in billing"], http = ["GET /healthz"] }]
"#,
        )
        .unwrap();
        let plan = read_plan(&path).unwrap();
        assert_eq!(
            plan.targets["k8s"].allow[0].kube,
            ["get,list,watch pods in billing"]
        );
        check_plan(&plan).unwrap();

        std::fs::write(
            &path,
            "[targets.api]\nallow = [{ http = [\"GET /v1/../admin\"] }]\n",
        )
        .unwrap();
        let e = check_plan(&read_plan(&path).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("target \"api\": allow[0]: http entry"), "{e}");
    }

    #[test]
    fn plan_files() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("plan.toml");
        std::fs::write(
            &toml_path,
            r#"
uses = 2
[targets.orders]
allow = [{ ops = ["select"], relations = ["public.*"] }]
approve = [{ name = "refunds", ops = ["update"], relations = ["public.invoices"] }]
[targets.orders.limits]
rows = 1000
"#,
        )
        .unwrap();
        let plan = read_plan(&toml_path).unwrap();
        assert_eq!(plan.uses, Some(2));
        let scope = &plan.targets["orders"];
        assert_eq!(scope.approve[0].name.as_deref(), Some("refunds"));
        assert_eq!(scope.limits.rows, Some(1000));
        check_plan(&plan).unwrap();

        let json_path = dir.path().join("plan.json");
        std::fs::write(&json_path, r#"{"targets":{"orders":{}}}"#).unwrap();
        let plan = read_plan(&json_path).unwrap();
        assert!(check_plan(&plan).is_err(), "an empty scope allows nothing");
    }
}
