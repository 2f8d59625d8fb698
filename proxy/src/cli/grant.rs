//! `gatehouse grant`: mint a grant with the gateway's signing key.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use gatehouse_core::grant::{Claims, MaskColumn, Plan, Rule, SigningKey, sign};

use super::plan;

/// Longer than this and `grant` warns: grants are meant to be short-lived.
const LONG_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, clap::Args)]
pub struct GrantArgs {
    /// The signing key: PKCS#8 PEM, as written by `gatehouse keygen`.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The agent the grant is for (`sub`).
    #[arg(long, value_name = "AGENT")]
    pub sub: String,
    /// A target the grant allows: the database name a PostgreSQL client
    /// connects to, or an HTTP or Kubernetes target's name. Repeat for
    /// several. The rule and limit flags apply to each.
    #[arg(long = "target", value_name = "NAME", required_unless_present = "plan")]
    pub targets: Vec<String>,
    /// What the agent may run, as `OPS[:RELATIONS]` or `fn:FUNCTIONS`
    /// (`select:public.invoices,public.payments`, `update:public.invoices`,
    /// `select:reporting.*`, `do`, `fn:public.refresh_totals`, `*` for
    /// everything); on HTTP targets `http:METHODS PATH` (`http:GET,HEAD
    /// /v1/invoices/**`); on Kubernetes targets `kube:VERBS RESOURCES [in
    /// NAMESPACES]` (`kube:get,list,watch pods,pods/log in billing`).
    /// Repeat for several rules.
    #[arg(long = "allow", value_name = "RULE", value_parser = plan::parse_rule)]
    pub allow: Vec<Rule>,
    /// What the agent may run once a human approves it; same form as
    /// --allow.
    #[arg(long = "approve", value_name = "RULE", value_parser = plan::parse_rule)]
    pub approve: Vec<Rule>,
    /// Mask the columns matching PATTERN in what the agent receives, on top
    /// of the target's own masking: `PATTERN[=STRATEGY]` (`notes`,
    /// `*.phone=partial`; strategies redact (default), partial, partial:N,
    /// token, null). Repeat for several.
    #[arg(long = "mask-column", value_name = "PATTERN[=STRATEGY]", value_parser = plan::parse_mask)]
    pub mask_columns: Vec<(String, String)>,
    /// Turn on a content detector on top of the target's own masking:
    /// `NAME[=STRATEGY]` (`phone`, `iban=partial`). A detector the target
    /// already has keeps the target's strategy.
    #[arg(long = "mask-detector", value_name = "NAME[=STRATEGY]", value_parser = plan::parse_mask)]
    pub mask_detectors: Vec<(String, String)>,
    /// The plan from a file (TOML, or JSON if it ends in .json): the `plan`
    /// claim, with [targets.NAME] tables of allow, approve, limits and
    /// mask.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Statements each session may run.
    #[arg(long, value_name = "N")]
    pub max_statements: Option<u64>,
    /// Rows each session may receive.
    #[arg(long, value_name = "N")]
    pub max_rows: Option<u64>,
    /// How long each session may last (`10m`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub max_duration: Option<Duration>,
    /// How long the grant is valid, from its not-before time (`15m`, `2h`).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// How many sessions the grant may open (1 = single use). Unlimited
    /// until it expires if left out.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub uses: Option<u32>,
    /// Why the agent needs access; recorded with every session.
    #[arg(long, value_name = "TEXT")]
    pub purpose: String,
    /// A ticket or change-request reference; recorded.
    #[arg(long, value_name = "ID")]
    pub ticket: Option<String>,
    /// The issuer (`iss`); must match `[grants] issuer`.
    #[arg(long, value_name = "ISSUER", default_value = "gatehouse")]
    pub iss: String,
    /// The audience (`aud`); must match `[grants] audience`.
    #[arg(long, value_name = "AUDIENCE", default_value = "gatehouse")]
    pub aud: String,
    /// Make the grant valid only from this long after now.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub not_before_in: Duration,
    /// The key id to put in the header, when the gateway's config
    /// overrides it (`kid` under [[grants.keys]]); derived from the key
    /// otherwise.
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
}

pub fn run(args: &GrantArgs) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    let now_s = i64::try_from(now.as_secs()).context("the system clock is far in the future")?;
    let token = mint(args, now_s, uuid::Uuid::now_v7().to_string())?;
    println!("{token}");
    Ok(())
}

/// The plan: the file's, if any, with each `--target` added and the rule
/// and limit flags applied to every target.
fn build_plan(args: &GrantArgs) -> anyhow::Result<Plan> {
    let mut plan = match &args.plan {
        Some(path) => plan::read_plan(path)?,
        None => Plan::default(),
    };
    for t in &args.targets {
        plan.targets.entry(t.clone()).or_default();
    }
    for scope in plan.targets.values_mut() {
        scope.allow.extend(args.allow.iter().cloned());
        scope.approve.extend(args.approve.iter().cloned());
        for (pattern, strategy) in &args.mask_columns {
            scope.mask.columns.push(MaskColumn {
                pattern: pattern.clone(),
                strategy: strategy.clone(),
            });
        }
        for (name, strategy) in &args.mask_detectors {
            scope.mask.detectors.insert(name.clone(), strategy.clone());
        }
        if let Some(n) = args.max_statements {
            scope.limits.statements = Some(n);
        }
        if let Some(n) = args.max_rows {
            scope.limits.rows = Some(n);
        }
        if let Some(d) = args.max_duration {
            scope.limits.duration_s = Some(d.as_secs().max(1));
        }
    }
    if args.uses.is_some() {
        plan.uses = args.uses;
    }
    plan::check_plan(&plan)?;
    Ok(plan)
}

/// Signs a grant from `args`: `iat` = `now_s`, `nbf` = `now_s` +
/// `--not-before-in`, `exp` = `nbf` + `--ttl`, `jti` = `jti`.
pub fn mint(args: &GrantArgs, now_s: i64, jti: String) -> anyhow::Result<String> {
    if args.purpose.trim().is_empty() {
        anyhow::bail!("--purpose must say why the agent needs access; it is recorded");
    }
    if args.sub.trim().is_empty() {
        anyhow::bail!("--sub must name the agent");
    }
    if let Some(empty) = args.targets.iter().find(|t| t.is_empty()) {
        anyhow::bail!("--target {empty:?}: a target name cannot be empty");
    }
    let plan = build_plan(args)?;
    if args.ttl.is_zero() {
        anyhow::bail!("--ttl must be longer than 0s");
    }
    if args.ttl > LONG_TTL {
        tracing::warn!(
            "--ttl {} is long for a grant; grants are meant to be short-lived",
            humantime::format_duration(args.ttl)
        );
    }
    let secs = |d: Duration, flag: &str| {
        i64::try_from(d.as_secs()).with_context(|| format!("{flag} is too long"))
    };
    let nbf = now_s
        .checked_add(secs(args.not_before_in, "--not-before-in")?)
        .context("--not-before-in is too long")?;
    let exp = nbf
        .checked_add(secs(args.ttl, "--ttl")?)
        .context("--ttl is too long")?;

    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("--key: cannot read {}", args.key.display()))?;
    let mut key = SigningKey::from_pkcs8_pem(&pem)
        .with_context(|| format!("--key {}", args.key.display()))?;
    if let Some(kid) = &args.kid {
        key = key.with_kid(kid.clone()).context("--kid")?;
    }

    let claims = Claims {
        iss: args.iss.clone(),
        sub: args.sub.clone(),
        aud: args.aud.clone(),
        exp,
        nbf,
        iat: now_s,
        jti,
        purpose: args.purpose.clone(),
        ticket: args.ticket.clone(),
        plan,
    };
    Ok(sign(&claims, &key)?)
}
