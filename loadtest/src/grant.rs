//! The grants agents present: one given with `--grant`, shared, or one
//! minted per agent with `--signing-key`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use gatehouse_core::grant::{Claims, Plan, Rule, SigningKey, TargetScope, sign};

/// What minted grants say, beyond the key.
#[derive(Debug, Clone)]
pub struct MintOptions<'a> {
    /// `sub`.
    pub sub: &'a str,
    /// The targets the plan names.
    pub targets: &'a [String],
    /// Validity from now.
    pub ttl: Duration,
    /// `plan.uses`; `None` is unlimited.
    pub uses: Option<u32>,
    /// `purpose`.
    pub purpose: &'a str,
    /// `iss`.
    pub iss: &'a str,
    /// `aud`.
    pub aud: &'a str,
    /// A `kid` overriding the derived one.
    pub kid: Option<&'a str>,
    /// The mix has the denied workload: the plan denies `delete` (see
    /// [`target_scope`]).
    pub deny_delete: bool,
}

/// The relation operations a plan with `deny_delete` allows on every
/// relation: all of them but `delete`.
pub const OPS_BUT_DELETE: [&str; 5] = ["select", "insert", "update", "truncate", "lock"];

/// The scope minted plans give every target.
///
/// The harness's statements are its own: it measures the gateway,
/// classification included, not a plan, so the plan allows everything
/// ([`Rule::everything`]). Except with the denied workload
/// (`deny_delete`), whose [`DENIED_SQL`](crate::workload::DENIED_SQL) the
/// plan must deny: a plan cannot allow every relation but one, so it then
/// allows every relation operation but `delete` on every relation
/// ([`OPS_BUT_DELETE`]), every command that acts on no relation (`DO`,
/// `SET`, …), and every function. Commands on a relation (`CREATE TABLE`,
/// `DROP`, `COPY`, …) and every `DELETE` are then denied, a script's too.
pub fn target_scope(deny_delete: bool) -> TargetScope {
    if !deny_delete {
        return TargetScope {
            allow: vec![Rule::everything()],
            ..TargetScope::default()
        };
    }
    let all = || vec!["*".to_owned()];
    TargetScope {
        allow: vec![
            Rule {
                name: Some("loadtest: relations, no delete".to_owned()),
                ops: OPS_BUT_DELETE.iter().map(|&op| op.to_owned()).collect(),
                relations: all(),
                functions: all(),
                ..Rule::default()
            },
            Rule {
                name: Some("loadtest: commands on no relation".to_owned()),
                ops: all(),
                relations: Vec::new(),
                functions: all(),
                ..Rule::default()
            },
        ],
        ..TargetScope::default()
    }
}

/// The agents' grants.
#[derive(Debug, Clone)]
pub struct Grants {
    /// One shared token, or one per agent.
    tokens: Vec<String>,
    /// The user name sent with them.
    user: String,
    /// Their `jti`s (readable ones), for finding refusals in the store.
    jtis: Vec<String>,
}

impl Grants {
    /// One token for every agent. Its claims are read without verifying
    /// (the gateway verifies) for the user name and the `jti`.
    pub fn shared(token: &str, user: Option<&str>) -> anyhow::Result<Grants> {
        let token = token.trim();
        if token.is_empty() {
            bail!("--grant is empty");
        }
        let claims = decode_claims(token);
        let claim = |name: &str| {
            claims
                .as_ref()
                .and_then(|c| c.get(name)?.as_str().map(str::to_owned))
        };
        Ok(Grants {
            user: user
                .map(str::to_owned)
                .or_else(|| claim("sub"))
                .unwrap_or_else(|| "agent".to_owned()),
            jtis: claim("jti").into_iter().collect(),
            tokens: vec![token.to_owned()],
        })
    }

    /// Mints one grant per agent with the key in `key_path`.
    pub fn mint(
        key_path: &Path,
        opts: &MintOptions<'_>,
        agents: u32,
        user: Option<&str>,
    ) -> anyhow::Result<Grants> {
        let pem = std::fs::read_to_string(key_path)
            .with_context(|| format!("--signing-key: cannot read {}", key_path.display()))?;
        let mut key = SigningKey::from_pkcs8_pem(&pem)
            .with_context(|| format!("--signing-key {}", key_path.display()))?;
        if let Some(kid) = opts.kid {
            key = key.with_kid(kid).context("--kid")?;
        }
        if opts.targets.iter().any(String::is_empty) {
            bail!("--target cannot be empty");
        }
        let now_s = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("the system clock is before 1970")?
                .as_secs(),
        )
        .context("the system clock is far in the future")?;
        let ttl = i64::try_from(opts.ttl.as_secs().max(1)).context("--ttl is too long")?;
        let exp = now_s.checked_add(ttl).context("--ttl is too long")?;
        let mut tokens = Vec::with_capacity(agents as usize);
        let mut jtis = Vec::with_capacity(agents as usize);
        for _ in 0..agents {
            let jti = uuid::Uuid::now_v7().to_string();
            let claims = Claims {
                iss: opts.iss.to_owned(),
                sub: opts.sub.to_owned(),
                aud: opts.aud.to_owned(),
                exp,
                nbf: now_s,
                iat: now_s,
                jti: jti.clone(),
                purpose: opts.purpose.to_owned(),
                ticket: None,
                plan: Plan {
                    targets: opts
                        .targets
                        .iter()
                        .map(|t| (t.clone(), target_scope(opts.deny_delete)))
                        .collect::<BTreeMap<_, _>>(),
                    uses: opts.uses,
                },
            };
            tokens.push(sign(&claims, &key).context("cannot sign a grant")?);
            jtis.push(jti);
        }
        Ok(Grants {
            tokens,
            user: user.unwrap_or(opts.sub).to_owned(),
            jtis,
        })
    }

    /// The token agent `agent` presents.
    pub fn token(&self, agent: u32) -> &str {
        let i = agent as usize % self.tokens.len().max(1);
        self.tokens.get(i).map_or("", String::as_str)
    }

    /// The user name sent to the gateway.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The grants' `jti`s.
    pub fn jtis(&self) -> &[String] {
        &self.jtis
    }
}

/// A JWT's payload as JSON, unverified; `None` if it is not a JWT.
fn decode_claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::grant::{KeySet, Verifier};

    const SECRET: [u8; 32] = [7; 32];

    /// Writes the PKCS#8 PEM of the Ed25519 seed [`SECRET`] (RFC 8410
    /// layout), so the test needs no key-generation dependency.
    fn key_file(dir: &Path) -> std::path::PathBuf {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&SECRET);
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let path = dir.join("grant.key");
        std::fs::write(
            &path,
            format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
        )
        .expect("write key");
        path
    }

    #[test]
    fn minted_grants_verify_and_differ_per_agent() {
        let dir = tempfile::tempdir().expect("temp dir");
        let targets = vec!["orders".to_owned()];
        let opts = MintOptions {
            sub: "lt",
            targets: &targets,
            ttl: Duration::from_secs(600),
            uses: None,
            purpose: "load test",
            iss: "gatehouse",
            aud: "gatehouse",
            kid: None,
            deny_delete: false,
        };
        let grants = Grants::mint(&key_file(dir.path()), &opts, 3, None).expect("mint");
        assert_eq!(grants.user(), "lt");
        assert_eq!(grants.jtis().len(), 3);
        assert_ne!(grants.token(0), grants.token(1));

        let key = SigningKey::from_secret_bytes(&SECRET).expect("key");
        let verifier = Verifier {
            keys: KeySet::from_keys([key.verifying_key().clone()]).expect("key set"),
            issuer: "gatehouse".into(),
            audience: "gatehouse".into(),
            leeway_s: 5,
        };
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
        )
        .expect("now");
        let claims = verifier.verify(grants.token(2), now).expect("verifies");
        assert_eq!(claims.plan.uses, None);
        assert!(claims.plan.targets.contains_key("orders"));
        assert_eq!(claims.jti, grants.jtis()[2]);

        let shared = Grants::shared(grants.token(1), None).expect("shared");
        assert_eq!(shared.user(), "lt");
        assert_eq!(shared.jtis(), &grants.jtis()[1..2]);
        assert_eq!(shared.token(41), grants.token(1));
        assert_eq!(
            claims.plan.targets["orders"].allow,
            [Rule::everything()],
            "without the denied workload the plan allows everything"
        );

        let opts = MintOptions {
            deny_delete: true,
            ..opts
        };
        let grants = Grants::mint(&key_file(dir.path()), &opts, 1, None).expect("mint");
        let claims = verifier.verify(grants.token(0), now).expect("verifies");
        assert_eq!(claims.plan.targets["orders"], target_scope(true));
    }

    /// What the plan with `deny_delete` allows, by the gateway's own
    /// classifier and rule matching: the harness's statements, yes; the
    /// denied workload's, no.
    #[test]
    fn the_denied_workloads_plan_denies_delete_alone() {
        use crate::workload::{DENIED_SQL, POINT_SQL, RANGE_SQL, WRITE_SQL};
        use gatehouse_core::policy::{Verdict, check, classify};

        let judge = |scope: &TargetScope, sql: &str| check(&classify(sql), scope);
        let scope = target_scope(true);
        for sql in [
            POINT_SQL,
            RANGE_SQL,
            WRITE_SQL,
            "BEGIN",
            "COMMIT",
            "ROLLBACK",
            "INSERT INTO gatehouse_lt_items (id) VALUES (1)",
            "SELECT now(), count(*) FROM other.t",
            "SET statement_timeout = 1000",
        ] {
            assert_eq!(judge(&scope, sql), Verdict::Allow, "{sql}");
        }
        for sql in [
            DENIED_SQL,
            "DELETE FROM other.t",
            "DROP TABLE gatehouse_lt_items",
        ] {
            assert!(
                matches!(judge(&scope, sql), Verdict::Deny { .. }),
                "{sql}: {:?}",
                judge(&scope, sql)
            );
        }
        assert_eq!(judge(&target_scope(false), DENIED_SQL), Verdict::Allow);
        assert_eq!(target_scope(false).allow, [Rule::everything()]);
    }
}
