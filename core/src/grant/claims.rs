//! What a grant says: its claims and its plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{GrantError, MaskScope, PolicySelector};

/// The claims of a grant.
///
/// The registered claims (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`)
/// are all required, as are `purpose` and `plan`; `ticket` is optional. A
/// token without `plan` may still verify when the gateway's named policies
/// give it one (see [`PolicySelector`]); its claims are then filled in as
/// [`Verifier::verify_with`](super::Verifier::verify_with) describes.
/// Times are seconds since the Unix epoch. `aud` is a single string: a grant
/// is meant for one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who issued the grant (the planner, or `gatehouse grant`).
    pub iss: String,
    /// The agent the grant was issued to.
    pub sub: String,
    /// The gateway the grant is meant for.
    pub aud: String,
    /// Expiry: the grant is refused from this second on.
    pub exp: i64,
    /// Not before: the grant is refused before this second.
    pub nbf: i64,
    /// When the grant was issued.
    pub iat: i64,
    /// The grant's unique id; uses and revocations are tracked by it.
    pub jti: String,
    /// Why the agent needs access, in free text. Recorded with the session.
    pub purpose: String,
    /// A reference to a ticket or change request, if any. Recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    /// What the grant allows.
    pub plan: Plan,
}

/// What a grant allows: which targets, and how many times.
///
/// Fields this version does not know are ignored when parsing, so that
/// grants minted by a newer planner still verify here; what they would have
/// restricted is then not enforced by this version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The targets the grant may open, by target name (the database name a
    /// client asks for), each with its scope.
    pub targets: BTreeMap<String, TargetScope>,
    /// How many sessions the grant may open in all; `None` is unlimited
    /// until `exp`. `Some(1)` is a single-use grant. Zero is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<u32>,
}

/// What a grant allows on one target: the operations it may run, those it
/// may run once a human approves them, and limits.
///
/// An empty scope allows only what every plan allows (transaction control,
/// `SHOW`, harmless `SET`s): fail closed. Unknown fields are ignored (see
/// [`Plan`]); a misspelt field therefore allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetScope {
    /// Operations allowed as they come.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Rule>,
    /// Operations that may run once a human approves them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approve: Vec<Rule>,
    /// Limits on each session.
    #[serde(skip_serializing_if = "Limits::is_unlimited")]
    pub limits: Limits,
    /// Masking beyond the target's own rules (never less).
    #[serde(skip_serializing_if = "MaskScope::is_empty")]
    pub mask: MaskScope,
}

/// One rule of a plan: operations, on relations, and functions; HTTP and
/// Kubernetes requests.
///
/// - `ops`: relation operations (`select`, `insert`, `update`, `delete`,
///   `truncate`, `lock`) and commands named by their kind (`do`,
///   `set_role`, `copy_program`, `create_table`, `drop`, `notify`, …);
///   `*` is every operation and command.
/// - `relations`: `schema.name`, `schema.*` or `*`; a name without a schema
///   is in `public`. A relation operation, or a command acting on a
///   relation, is allowed only on relations listed here.
/// - `functions`: functions the statements may call beyond the
///   side-effect-free built-ins, as the SQL spells them
///   (`public.refresh_totals` does not cover an unqualified
///   `refresh_totals`); `schema.*` and `*` too.
/// - `http`: HTTP requests, `"METHODS PATH"` (`GET /v1/invoices/**`), on
///   HTTP targets (and non-resource URLs of Kubernetes targets).
/// - `kube`: Kubernetes requests, `"VERBS RESOURCES [in NAMESPACES]"`
///   (`get,list,watch pods in billing`), on Kubernetes targets.
///
/// The grammar and matching of `http` and `kube` entries are
/// [`crate::http::rules`]'s. SQL rules (`ops`, `relations`, `functions`)
/// allow nothing on HTTP and Kubernetes targets, and `http`/`kube` entries
/// nothing on SQL targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rule {
    /// A name for messages and the record; the rule's position otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Operations and commands.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ops: Vec<String>,
    /// Relation patterns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<String>,
    /// Function patterns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
    /// HTTP request patterns, `"METHODS PATH"`: methods comma-separated
    /// (`GET`, `GET,HEAD`, `*`); in the path `*` is one non-empty segment
    /// and a trailing `/**` the rest (zero or more segments). See
    /// [`crate::http::rules::HttpRule`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<String>,
    /// Kubernetes request patterns, `"VERBS RESOURCES [in NAMESPACES]"`
    /// (`create pods/exec in billing`, `list nodes`, `get /healthz`); without
    /// `in` only cluster-scoped requests. See
    /// [`crate::http::rules::KubeRule`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kube: Vec<String>,
}

impl Rule {
    /// A rule that allows every operation and command on every relation,
    /// and every function, every HTTP request, and every Kubernetes request
    /// (in every namespace, cluster-scoped, and non-resource URLs): a plan
    /// that trusts the agent fully (what it does is still classified and
    /// recorded).
    pub fn everything() -> Rule {
        Rule {
            name: None,
            ops: vec!["*".to_owned()],
            relations: vec!["*".to_owned()],
            functions: vec!["*".to_owned()],
            http: vec!["* /**".to_owned()],
            kube: vec!["* * in *".to_owned(), "* *".to_owned(), "* /*".to_owned()],
        }
    }
}

/// Limits on one session of a grant; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Statements the session may run; the next one is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statements: Option<u64>,
    /// Rows the session may receive; the session ends at the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// How long the session may last, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
}

impl Limits {
    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.statements.is_none() && self.rows.is_none() && self.duration_s.is_none()
    }
}

impl Plan {
    /// The scope for `target`, if the plan names it.
    pub fn scope(&self, target: &str) -> Option<&TargetScope> {
        self.targets.get(target)
    }
}

/// Checks that `claims` allow opening `target` (a target name, as the
/// client asked for it). Names are compared exactly.
pub fn check_target(claims: &Claims, target: &str) -> Result<(), GrantError> {
    match claims.plan.scope(target) {
        Some(_) => Ok(()),
        None => Err(GrantError::WrongTarget {
            target: target.to_owned(),
        }),
    }
}

impl Claims {
    /// Builds claims from a decoded (and already signature-checked) JSON
    /// payload, naming the first claim that is missing or of the wrong type.
    ///
    /// A payload without `plan` gets the plan of the policies its claims
    /// select (see [`PolicySelector`]); it is refused when `policies` has no
    /// selector (as missing its `plan`) or when its claims select none.
    /// Such a grant, typically from an external identity provider, may also
    /// lack `purpose` (the selected policies' names stand in), `nbf`
    /// (defaults to `iat`) and `iat` (defaults to `nbf`, else 0); it still
    /// needs a `jti`, by which uses and revocations are tracked.
    pub(super) fn from_payload(
        mut payload: Map<String, Value>,
        policies: &PolicySelector,
    ) -> Result<Claims, GrantError> {
        let plan: Option<Plan> = optional(&mut payload, "plan")?;
        let Some(plan) = plan else {
            return Claims::from_policies(payload, policies);
        };
        let claims = Claims {
            iss: required(&mut payload, "iss")?,
            sub: required(&mut payload, "sub")?,
            aud: required(&mut payload, "aud")?,
            exp: required(&mut payload, "exp")?,
            nbf: required(&mut payload, "nbf")?,
            iat: required(&mut payload, "iat")?,
            jti: required(&mut payload, "jti")?,
            purpose: required(&mut payload, "purpose")?,
            ticket: optional(&mut payload, "ticket")?,
            plan,
        };
        if claims.plan.uses == Some(0) {
            return Err(GrantError::InvalidClaim {
                claim: "plan",
                reason: "`uses` is 0, so the grant allows nothing".to_owned(),
            });
        }
        Ok(claims)
    }

    fn from_policies(
        mut payload: Map<String, Value>,
        policies: &PolicySelector,
    ) -> Result<Claims, GrantError> {
        if policies.is_empty() {
            return Err(GrantError::MissingClaim("plan"));
        }
        let names = policies.select(&payload);
        if names.is_empty() {
            return Err(GrantError::NoPolicy);
        }
        let plan = policies.plan(&names);
        let purpose = format!("policies: {}", names.join(", "));
        let iss = required(&mut payload, "iss")?;
        let sub = required(&mut payload, "sub")?;
        let aud = required(&mut payload, "aud")?;
        let exp = required(&mut payload, "exp")?;
        let iat: Option<i64> = optional(&mut payload, "iat")?;
        let nbf: Option<i64> = optional(&mut payload, "nbf")?;
        let jti: String = optional(&mut payload, "jti")?.ok_or(GrantError::MissingJti)?;
        Ok(Claims {
            iss,
            sub,
            aud,
            exp,
            nbf: nbf.or(iat).unwrap_or(0),
            iat: iat.or(nbf).unwrap_or(0),
            jti,
            purpose: optional(&mut payload, "purpose")?.unwrap_or(purpose),
            ticket: optional(&mut payload, "ticket")?,
            plan,
        })
    }
}

/// Takes claim `name` out of `payload`; absent or `null` is missing.
fn required<T: serde::de::DeserializeOwned>(
    payload: &mut Map<String, Value>,
    name: &'static str,
) -> Result<T, GrantError> {
    optional(payload, name)?.ok_or(GrantError::MissingClaim(name))
}

/// Takes claim `name` out of `payload` if it is there and not `null`.
fn optional<T: serde::de::DeserializeOwned>(
    payload: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<T>, GrantError> {
    match payload.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            serde_json::from_value(value)
                .map(Some)
                .map_err(|e| GrantError::InvalidClaim {
                    claim: name,
                    reason: e.to_string(),
                })
        }
    }
}
