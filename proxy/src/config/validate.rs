//! [`ConfigFile::validate`]: from the file as written to a [`Config`] the
//! server can start with.

use std::ffi::OsString;
use std::fmt::Display;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use gatehouse_core::grant::{KeySet, NamedPolicy, PolicyClaim, PolicySelector, TargetScope};

use super::file::{
    ConfigFile, GatewaySection, GrantsSection, LimitsSection, ListenerSection, PolicyClaimSection,
    PolicySection, StoreSection,
};
use super::units::{self, Human, Size};
use super::{Config, Gateway, GrantKey, GrantsConfig, Limits, Listener, Store};

/// Looks up an environment variable (`std::env::var_os` outside tests).
pub type Env<'a> = dyn Fn(&str) -> Option<OsString> + 'a;

/// The most worker threads a config may ask for.
const MAX_WORKERS: u32 = 1024;
/// Bounds of `listener.max_frame_bytes`. PostgreSQL itself refuses
/// messages over 1 GiB.
const MIN_FRAME_BYTES: u64 = 1 << 10;
const MAX_FRAME_BYTES: u64 = 1 << 30;
/// The most clock skew `grants.leeway` may forgive.
const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Bounds of `grants.jwks_refresh_interval`.
const MIN_JWKS_REFRESH: Duration = Duration::from_secs(1);
const MAX_JWKS_REFRESH: Duration = Duration::from_secs(7 * 24 * 3600);
/// Bounds of `grants.jwks_refresh_min_interval`.
const MAX_JWKS_MIN_REFRESH: Duration = Duration::from_secs(3600);
/// Bounds of `store.os_sync_interval`.
const MIN_OS_SYNC: Duration = Duration::from_millis(1);
const MAX_OS_SYNC: Duration = Duration::from_secs(10);
/// Bounds of `store.checkpoint_interval`. Checkpoints are small, but each
/// reads every listed session's count and last event; under 100ms that is
/// busy work, and over an hour a deleted session goes unnoticed too long.
const MIN_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);
const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);
/// Bounds of `listener.startup_timeout` and `listener.message_timeout`.
const MIN_STARTUP_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_STARTUP_TIMEOUT: Duration = Duration::from_secs(600);
/// The most `limits.statements_per_second_per_grant` may be.
const MAX_STATEMENT_RATE: u32 = 1_000_000;

/// What validation found wrong, and what it found unwise.
#[derive(Default)]
pub(super) struct Findings {
    problems: Vec<String>,
    warnings: Vec<String>,
}

impl Findings {
    pub(super) fn problem(&mut self, key: &str, message: impl Display) {
        self.problems.push(format!("{key}: {message}"));
    }

    pub(super) fn warning(&mut self, key: &str, message: impl Display) {
        self.warnings.push(format!("{key}: {message}"));
    }

    /// A duration at `key`, within `min..=max`.
    pub(super) fn duration(
        &mut self,
        key: &str,
        text: &str,
        min: Duration,
        max: Duration,
    ) -> Duration {
        match units::duration(text) {
            Ok(d) if d < min => {
                self.problem(
                    key,
                    format!("{} is shorter than the minimum {}", Human(d), Human(min)),
                );
                min
            }
            Ok(d) if d > max => {
                self.problem(
                    key,
                    format!("{} is longer than the maximum {}", Human(d), Human(max)),
                );
                max
            }
            Ok(d) => d,
            Err(e) => {
                self.problem(key, e);
                min
            }
        }
    }

    /// A required, non-empty string at `key`.
    pub(super) fn required(&mut self, key: &str, value: Option<String>, what: &str) -> String {
        match value {
            Some(v) if !v.trim().is_empty() => v,
            Some(_) => {
                self.problem(key, format!("is empty; {what}"));
                String::new()
            }
            None => {
                self.problem(key, format!("is missing; {what}"));
                String::new()
            }
        }
    }
}

impl ConfigFile {
    /// Checks everything and resolves it into a [`Config`]: parses
    /// addresses, sizes and durations; resolves paths against the directory
    /// of `source` (the config file's path); reads and parses grant keys and
    /// TLS files; reads target passwords from `env` or their files.
    ///
    /// Every problem found is reported, one per line, each starting with
    /// the key it concerns.
    pub fn validate(mut self, source: &Path, env: &Env<'_>) -> anyhow::Result<Config> {
        let base = source.parent().unwrap_or(Path::new("/"));
        let mut f = Findings::default();

        let gateway = gateway(&mut f, self.gateway);
        let tls = self.tls.map(|tls| super::tls::tls_files(&mut f, tls, base));
        let listener = listener(&mut f, self.listener, tls.is_some());
        let http = self
            .http
            .and_then(|h| super::http::listener(&mut f, h, tls.is_some()));
        let store = store(&mut f, self.store, base);
        let target_names: BTreeSet<String> = self.targets.keys().cloned().collect();
        let policy_claims = std::mem::take(&mut self.grants.policy_claims);
        let mut grants = grants(&mut f, self.grants, base);
        grants.policies = policies(&mut f, self.policies, policy_claims, &target_names);
        let admin = self
            .admin
            .and_then(|a| super::admin::admin(&mut f, a, base, env));
        let approvals = super::admin::approvals(&mut f, self.approvals);
        let limits = limits(&mut f, self.limits);
        if self.targets.is_empty() {
            f.problem(
                "targets",
                "no targets; add a [targets.NAME] section for each database agents may reach \
                 (NAME is the database name clients connect to)",
            );
        }
        let targets = self
            .targets
            .into_iter()
            .map(|(name, section)| {
                let target = super::target::target(&mut f, &name, section, base, env);
                (name, target)
            })
            .collect();

        let Findings { problems, warnings } = f;
        match problems.as_slice() {
            [] => {}
            [one] => anyhow::bail!("{one}"),
            many => anyhow::bail!("{} problems:\n  - {}", many.len(), many.join("\n  - ")),
        }
        Ok(Config {
            source: source.to_owned(),
            gateway,
            // `None` only with a problem reported above.
            listener: listener.ok_or_else(|| anyhow::anyhow!("listener: invalid"))?,
            http,
            tls,
            store,
            grants,
            targets,
            admin,
            approvals,
            limits,
            warnings,
        })
    }
}

/// `text` as a path: relative to `base` (the config file's directory)
/// unless absolute.
pub(super) fn path(base: &Path, text: &str) -> PathBuf {
    base.join(text)
}

fn gateway(f: &mut Findings, s: GatewaySection) -> Gateway {
    let workers = if s.workers == 0 {
        std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN)
    } else if s.workers > MAX_WORKERS {
        f.problem(
            "gateway.workers",
            format!(
                "{} is more than {MAX_WORKERS}; 0 means one per core",
                s.workers
            ),
        );
        NonZeroUsize::MIN
    } else {
        usize::try_from(s.workers)
            .ok()
            .and_then(NonZeroUsize::new)
            .unwrap_or(NonZeroUsize::MIN)
    };
    Gateway { io: s.io, workers }
}

fn listener(f: &mut Findings, s: ListenerSection, has_tls: bool) -> Option<Listener> {
    let address = match s.address.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            f.problem(
                "listener.address",
                format!(
                    "{:?} is not an IP address with a port, e.g. \"127.0.0.1:15432\" or \
                     \"[::]:15432\"",
                    s.address
                ),
            );
            None
        }
    };
    let max_frame_bytes = match s.max_frame_bytes.bytes() {
        Ok(n) if (MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&n) => usize::try_from(n).ok(),
        Ok(n) => {
            f.problem(
                "listener.max_frame_bytes",
                format!(
                    "{} is outside {}..={}",
                    Size(n),
                    Size(MIN_FRAME_BYTES),
                    Size(MAX_FRAME_BYTES)
                ),
            );
            None
        }
        Err(e) => {
            f.problem("listener.max_frame_bytes", e);
            None
        }
    };
    if !has_tls && !s.allow_plaintext {
        f.problem(
            "listener.allow_plaintext",
            "there is no [tls] section, so clients could only connect without TLS, which \
             allow_plaintext = false forbids; add [tls] with cert and key, or set \
             allow_plaintext = true (grants then cross the network in clear text)",
        );
    }
    if let Some(address) = address
        && s.allow_plaintext
        && !address.ip().is_loopback()
    {
        f.warning(
            "listener.allow_plaintext",
            format!(
                "plaintext is allowed on {address}, which is not a loopback address: grants and \
                 data cross the network unencrypted"
            ),
        );
    }
    if s.max_connections == 0 {
        f.problem(
            "listener.max_connections",
            "0 would refuse every client; give at least 1",
        );
    }
    let startup_timeout = f.duration(
        "listener.startup_timeout",
        &s.startup_timeout,
        MIN_STARTUP_TIMEOUT,
        MAX_STARTUP_TIMEOUT,
    );
    let message_timeout = f.duration(
        "listener.message_timeout",
        &s.message_timeout,
        MIN_STARTUP_TIMEOUT,
        MAX_STARTUP_TIMEOUT,
    );
    Some(Listener {
        startup_timeout,
        message_timeout,
        address: address?,
        allow_plaintext: s.allow_plaintext,
        max_frame_bytes: max_frame_bytes?,
        max_connections: usize::try_from(s.max_connections.max(1)).unwrap_or(usize::MAX),
    })
}

fn limits(f: &mut Findings, s: LimitsSection) -> Limits {
    if s.statements_per_second_per_grant > MAX_STATEMENT_RATE {
        f.problem(
            "limits.statements_per_second_per_grant",
            format!(
                "{} is more than {MAX_STATEMENT_RATE}; 0 means unlimited",
                s.statements_per_second_per_grant
            ),
        );
    }
    Limits {
        connections_per_grant: usize::try_from(s.connections_per_grant).unwrap_or(usize::MAX),
        statements_per_second_per_grant: u64::from(s.statements_per_second_per_grant),
    }
}

fn store(f: &mut Findings, s: StoreSection, base: &Path) -> Store {
    let dir = f.required("store.dir", Some(s.dir), "give the store directory");
    let dir = path(base, &dir);
    if dir.exists() && !dir.is_dir() {
        f.problem(
            "store.dir",
            format!("{} exists and is not a directory", dir.display()),
        );
    }
    let seal_key = match s.seal_key {
        Some(text) if text.trim().is_empty() => {
            f.problem(
                "store.seal_key",
                "is empty; give an Ed25519 private key file (PKCS#8 PEM), or remove the key",
            );
            None
        }
        Some(text) => Some(path(base, &text)),
        None => {
            f.warning(
                "store.seal_key",
                "not set: sessions are recorded unsealed and no checkpoints are written, so an \
                 altered or removed last event of a session, or a deleted session, goes \
                 undetected; `gatehouse keygen --name seal --out keys` makes a key \
                 (seal_key = \"keys/seal.key\")",
            );
            None
        }
    };
    let store = Store {
        dir,
        seal_key,
        durability: s.durability,
        os_sync_interval: f.duration(
            "store.os_sync_interval",
            &s.os_sync_interval,
            MIN_OS_SYNC,
            MAX_OS_SYNC,
        ),
        checkpoint_interval: f.duration(
            "store.checkpoint_interval",
            &s.checkpoint_interval,
            MIN_CHECKPOINT_INTERVAL,
            MAX_CHECKPOINT_INTERVAL,
        ),
        require_export: s.retention.require_export,
    };
    if let Err(e) = store.load_seal_key() {
        f.problems.push(format!("{e:#}"));
    }
    store
}

fn grants(f: &mut Findings, s: GrantsSection, base: &Path) -> GrantsConfig {
    let issuer = f.required(
        "grants.issuer",
        Some(s.issuer),
        "give the `iss` grants must carry",
    );
    let audience = f.required(
        "grants.audience",
        Some(s.audience),
        "give the `aud` grants must carry",
    );
    let leeway = f.duration("grants.leeway", &s.leeway, Duration::ZERO, MAX_LEEWAY);
    if s.keys.is_empty() && s.jwks_file.is_none() && s.jwks_url.is_none() {
        f.problem(
            "grants.keys",
            "no grant keys; add a [[grants.keys]] section with public_key = \"keys/grant.pub\" \
             (`gatehouse keygen --out keys` makes a key pair), or an identity provider's \
             jwks_file or jwks_url",
        );
    }
    let mut set = KeySet::new();
    let mut keys = Vec::with_capacity(s.keys.len());
    for (index, k) in s.keys.into_iter().enumerate() {
        let at = format!("grants.keys[{index}].public_key");
        let public_key = f.required(
            &at,
            k.public_key,
            "give an Ed25519 public key file (SPKI PEM)",
        );
        let key = GrantKey {
            public_key: path(base, &public_key),
            kid: k.kid,
        };
        if !public_key.is_empty() {
            match key.load(index) {
                Ok(loaded) => {
                    let kid = loaded.kid().to_owned();
                    if set.insert(loaded).is_err() {
                        f.problem(
                            &format!("grants.keys[{index}]"),
                            format!(
                                "key id {kid:?} is also the key id of an earlier key; list each \
                                 key once, or give one a different kid"
                            ),
                        );
                    }
                }
                Err(e) => f.problems.push(format!("{e:#}")),
            }
        }
        keys.push(key);
    }
    let jwks_file = match s.jwks_file {
        Some(text) if text.trim().is_empty() => {
            f.problem(
                "grants.jwks_file",
                "is empty; give a JWK set file, or remove the key",
            );
            None
        }
        Some(text) => {
            let file = path(base, &text);
            match super::read_jwks_file(&file) {
                Ok((keys, skipped)) => {
                    for skip in skipped {
                        f.warning(
                            "grants.jwks_file",
                            format!("{}: {skip} (skipped)", file.display()),
                        );
                    }
                    for key in keys.iter() {
                        if set.insert(key.clone()).is_err() {
                            f.problem(
                                "grants.jwks_file",
                                format!(
                                    "{}: key id {:?} is also the key id of another grant key; \
                                     each kid may be configured once",
                                    file.display(),
                                    key.kid()
                                ),
                            );
                        }
                    }
                }
                Err(e) => f.problems.push(format!("{e:#}")),
            }
            Some(file)
        }
        None => None,
    };
    let jwks_url = s
        .jwks_url
        .and_then(|url| match crate::jwks::check_url(&url) {
            Ok(_) => Some(url),
            Err(e) => {
                f.problem("grants.jwks_url", e);
                None
            }
        });
    let jwks_refresh_interval = f.duration(
        "grants.jwks_refresh_interval",
        &s.jwks_refresh_interval,
        MIN_JWKS_REFRESH,
        MAX_JWKS_REFRESH,
    );
    let jwks_refresh_min_interval = f.duration(
        "grants.jwks_refresh_min_interval",
        &s.jwks_refresh_min_interval,
        Duration::ZERO,
        MAX_JWKS_MIN_REFRESH,
    );
    GrantsConfig {
        issuer,
        audience,
        leeway,
        keys,
        jwks_file,
        jwks_url,
        jwks_refresh_interval,
        jwks_refresh_min_interval,
        policies: PolicySelector::default(),
    }
}

fn policies(
    f: &mut Findings,
    sections: BTreeMap<String, PolicySection>,
    claims: Vec<PolicyClaimSection>,
    targets: &BTreeSet<String>,
) -> PolicySelector {
    let mut policies = BTreeMap::new();
    for (name, p) in sections {
        let at = format!("policies.{name}.targets");
        if p.targets.is_empty() {
            f.problem(&at, "is empty; name the targets this policy opens");
        }
        for t in &p.targets {
            if !targets.contains(t) {
                f.problem(&at, format!("{t:?} is not a [targets.NAME]"));
            }
        }
        let scope = TargetScope {
            allow: p.allow,
            approve: p.approve,
            limits: p.limits,
            mask: Default::default(),
        };
        policies.insert(
            name,
            NamedPolicy {
                targets: p.targets,
                scope,
            },
        );
    }
    let mut selectors = Vec::with_capacity(claims.len());
    for (index, c) in claims.into_iter().enumerate() {
        let at = format!("grants.policy_claims[{index}]");
        let claim = f.required(
            &format!("{at}.claim"),
            c.claim,
            "give a claim name, e.g. \"scope\"",
        );
        let value = f.required(
            &format!("{at}.value"),
            c.value,
            "give the claim value that selects the policy",
        );
        let policy = f.required(&format!("{at}.policy"), c.policy, "give a [policies.NAME]");
        if !policy.is_empty() && !policies.contains_key(&policy) {
            f.problem(
                &format!("{at}.policy"),
                format!("{policy:?} is not a [policies.NAME]"),
            );
            continue;
        }
        selectors.push(PolicyClaim {
            claim,
            value,
            policy,
        });
    }
    if selectors.is_empty() && !policies.is_empty() {
        f.warning(
            "policies",
            "no [[grants.policy_claims]] selects any policy, so the policies are never used",
        );
    }
    // Every selector names a policy (checked above).
    PolicySelector::new(policies, selectors).unwrap_or_default()
}
