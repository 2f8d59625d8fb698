//! The gateway's configuration: one TOML file (see `examples/gatehouse.toml`),
//! loaded and validated at start, with secrets from the environment or from
//! files and never from the file itself.
//!
//! [`Config::load`] reads the file, parses it into [`ConfigFile`] (the file
//! as written, with defaults) and validates that into a [`Config`]: the
//! resolved values the server uses directly. Relative paths are resolved
//! against the config file's directory; key, certificate and password files
//! are read and parsed, so that a config that loads is one the server can
//! start with. Validation reports every mistake it finds, each prefixed
//! with the key it concerns (`targets.orders.password_env: …`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use gatehouse_core::event::SealKey;
use gatehouse_core::grant::{KeySet, PolicySelector, SkippedKey, VerifyingKey};
use serde::Deserialize;

mod admin;
mod file;
mod http;
mod masking;
mod target;
mod tls;
mod units;
mod validate;

#[cfg(test)]
mod tests;

pub use admin::{AdminSettings, AdminToken, ApprovalSettings};
pub use file::{ConfigFile, Durability};
pub use http::{Credential, HttpKind, HttpListener, HttpTarget};
pub use validate::Env;

/// The IO engine (`[gateway] io`, `gatehouse serve --io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IoEngine {
    /// io_uring where the kernel allows it, else tokio (with a log line
    /// saying why).
    Auto,
    /// io_uring, thread-per-core; the gateway refuses to start where the
    /// kernel does not allow it.
    #[serde(alias = "io_uring")]
    #[value(alias = "io_uring")]
    Uring,
    /// tokio, one current-thread runtime per worker.
    Tokio,
}

impl fmt::Display for IoEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoEngine::Auto => "auto",
            IoEngine::Uring => "uring",
            IoEngine::Tokio => "tokio",
        })
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from, absolute.
    pub source: PathBuf,
    /// `[gateway]`
    pub gateway: Gateway,
    /// `[listener]`
    pub listener: Listener,
    /// `[http]`; `None`: no HTTP listener.
    pub http: Option<HttpListener>,
    /// `[tls]`; `None`: the listener answers SSLRequest with `N` and every
    /// client is plaintext (which validation allows only with
    /// `allow_plaintext = true`).
    pub tls: Option<TlsFiles>,
    /// `[store]`
    pub store: Store,
    /// `[grants]`
    pub grants: GrantsConfig,
    /// `[targets.NAME]`, by name: the database name a client asks for.
    /// Never empty.
    pub targets: BTreeMap<String, Target>,
    /// `[admin]`; `None`: no admin API (held statements can only time out).
    pub admin: Option<AdminSettings>,
    /// `[approvals]`
    pub approvals: ApprovalSettings,
    /// `[limits]`
    pub limits: Limits,
    /// Things that are allowed but probably unwise (plaintext on a network
    /// address, a password file others can read). [`Config::load`] logs
    /// them; `check-config` prints them.
    pub warnings: Vec<String>,
}

/// `[gateway]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gateway {
    /// The engine asked for; never [`IoEngine::Uring`] while that is not
    /// built. [`IoEngine::Auto`] means tokio for now.
    pub io: IoEngine,
    /// Worker threads; `workers = 0` has been resolved to the number of
    /// cores.
    pub workers: NonZeroUsize,
}

/// `[listener]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// Where to listen.
    pub address: SocketAddr,
    /// Whether a client may go on without TLS. When false, a client that
    /// does not negotiate TLS is refused (there is always a [`TlsFiles`]
    /// then).
    pub allow_plaintext: bool,
    /// The largest frame a client may send, in bytes (1 KiB ..= 1 GiB).
    pub max_frame_bytes: usize,
    /// Client connections served at once (at least 1).
    pub max_connections: usize,
    /// How long a client has to finish startup (TLS, StartupMessage, grant
    /// check) before it is disconnected.
    pub startup_timeout: Duration,
    /// How long a logged-in client may take to send the rest of a message
    /// it started before it is disconnected (slowloris).
    pub message_timeout: Duration,
}

/// `[limits]`, resolved: per grant (`jti`), over all workers. 0 is
/// unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Sessions open at once with one grant.
    pub connections_per_grant: usize,
    /// Statements per second of one grant over all its sessions.
    pub statements_per_second_per_grant: u64,
}

/// `[tls]`: the listener's certificate chain and key, both PEM. Validation
/// has read and parsed both and checked that they match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files: `(cert_pem, key_pem)`.
    pub fn read(&self) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let cert = std::fs::read(&self.cert)
            .with_context(|| format!("tls.cert: cannot read {}", self.cert.display()))?;
        let key = std::fs::read(&self.key)
            .with_context(|| format!("tls.key: cannot read {}", self.key.display()))?;
        Ok((cert, key))
    }
}

/// `[store]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The store directory (may not exist yet).
    pub dir: PathBuf,
    /// How appends are made durable.
    pub durability: Durability,
    /// With [`Durability::Os`]: how often to fsync.
    pub os_sync_interval: Duration,
    /// The key that seals sessions (PKCS#8 PEM); `None`: sessions are
    /// recorded unsealed. Validation has read and parsed it.
    pub seal_key: Option<PathBuf>,
    /// With a seal key: how often a signed checkpoint is written.
    pub checkpoint_interval: Duration,
    /// `[store.retention] require_export`: `gatehouse store prune` removes
    /// only sessions a recorded export holds.
    pub require_export: bool,
}

impl Store {
    /// Reads and parses the seal key file, if one is configured.
    pub fn load_seal_key(&self) -> anyhow::Result<Option<SealKey>> {
        let Some(path) = &self.seal_key else {
            return Ok(None);
        };
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("store.seal_key: cannot read {}", path.display()))?;
        let key = SealKey::from_pkcs8_pem(&pem)
            .with_context(|| format!("store.seal_key: {}", path.display()))?;
        Ok(Some(key))
    }
}

/// `[grants]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantsConfig {
    /// The `iss` grants must carry.
    pub issuer: String,
    /// The `aud` grants must carry.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf` (at most 5 minutes).
    pub leeway: Duration,
    /// The public keys grants may be signed with. Validation has read and
    /// parsed each and checked their key ids differ. With neither of the
    /// JWKS sources, at least one.
    pub keys: Vec<GrantKey>,
    /// `jwks_file`: a JWK set file, read at start and re-read like the URL.
    pub jwks_file: Option<PathBuf>,
    /// `jwks_url`: an `http://` or `https://` URL of a JWK set, fetched at
    /// start (see [`crate::jwks`]).
    pub jwks_url: Option<String>,
    /// How often the JWK sets are re-read.
    pub jwks_refresh_interval: Duration,
    /// The least time between re-reads caused by an unknown `kid`.
    pub jwks_refresh_min_interval: Duration,
    /// `[policies.NAME]` and `[[grants.policy_claims]]`: plans for grants
    /// without one.
    pub policies: PolicySelector,
}

/// `[[grants.keys]]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantKey {
    /// An Ed25519 public key, SPKI PEM.
    pub public_key: PathBuf,
    /// The key id, if the config overrides the derived one.
    pub kid: Option<String>,
}

impl GrantKey {
    /// Reads and parses the key file (`index` is its position, for errors).
    pub fn load(&self, index: usize) -> anyhow::Result<VerifyingKey> {
        let at = format!("grants.keys[{index}]");
        let path = &self.public_key;
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("{at}.public_key: cannot read {}", path.display()))?;
        let key = VerifyingKey::from_spki_pem(&pem)
            .with_context(|| format!("{at}.public_key: {}", path.display()))?;
        match &self.kid {
            Some(kid) => key
                .with_kid(kid.clone())
                .with_context(|| format!("{at}.kid")),
            None => Ok(key),
        }
    }
}

/// Reads and parses a JWK set file: the usable keys and the skipped ones.
pub fn read_jwks_file(path: &Path) -> anyhow::Result<(KeySet, Vec<SkippedKey>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("grants.jwks_file: cannot read {}", path.display()))?;
    KeySet::from_jwks_json(&text).with_context(|| format!("grants.jwks_file: {}", path.display()))
}

impl GrantsConfig {
    /// Reads the `[[grants.keys]]` files into a [`KeySet`].
    pub fn static_key_set(&self) -> anyhow::Result<KeySet> {
        let mut set = KeySet::new();
        for (index, key) in self.keys.iter().enumerate() {
            let key = key.load(index)?;
            set.insert(key)
                .with_context(|| format!("grants.keys[{index}]"))?;
        }
        Ok(set)
    }

    /// Reads every key file, and the JWK set file if there is one, into a
    /// [`KeySet`] (without the keys of `jwks_url`, which is fetched by
    /// [`crate::jwks`]).
    pub fn key_set(&self) -> anyhow::Result<KeySet> {
        let mut set = self.static_key_set()?;
        if let Some(path) = &self.jwks_file {
            let (file, _skipped) = read_jwks_file(path)?;
            set.merge(file)
                .with_context(|| format!("grants.jwks_file: {}", path.display()))?;
        }
        Ok(set)
    }

    /// The grant verifier: the keys (read from their files now), issuer,
    /// audience and leeway. The server uses [`crate::jwks::LiveVerifier`],
    /// which also fetches `jwks_url`.
    #[cfg(test)]
    pub fn verifier(&self) -> anyhow::Result<gatehouse_core::grant::Verifier> {
        Ok(gatehouse_core::grant::Verifier {
            keys: self.key_set()?,
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            leeway_s: self.leeway.as_secs(),
        })
    }
}

/// `[targets.NAME]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The target's name: the database name clients ask for, and what
    /// grants name in their plan.
    pub name: String,
    /// The PostgreSQL server's host name or address.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The upstream database.
    pub database: String,
    /// The role the gateway logs in as.
    pub user: String,
    /// The role's password, read at load time from `password_env` or
    /// `password_file`; `None` when neither is set (trust, or a server that
    /// asks for no password).
    pub password: Option<Secret>,
    /// How long to wait for the server to accept the connection and login.
    pub connect_timeout: Duration,
    /// Logged-in connections kept idle per worker for reuse (0: none).
    pub pool_size: usize,
    /// Masking rules and the token secret, checked (compiled once) at load.
    pub masking: Option<Masking>,
    /// For `kind = "http"` and `"kubernetes"`: the upstream, its
    /// credential and routes (`host`, `database`, `user` are then unused).
    pub http: Option<HttpTarget>,
}

/// `[targets.NAME.masking]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Masking {
    /// The rules.
    pub rules: gatehouse_core::mask::MaskRules,
    /// The `token` strategy's HMAC secret, if configured.
    pub token_secret: Option<Secret>,
    /// JSON keys whose values are masked in HTTP bodies, each with its
    /// strategy.
    pub keys: Vec<(String, gatehouse_core::mask::Strategy)>,
}

impl Masking {
    /// Compiles the rules into a masker.
    pub fn compile(&self) -> anyhow::Result<gatehouse_core::mask::Masker> {
        let secret = self.token_secret.as_ref().map_or("", |s| s.expose());
        gatehouse_core::mask::Masker::new(self.rules.clone(), secret.as_bytes())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// A credential. Its `Debug` prints `***`, and it has no `Display`, so that
/// it cannot end up in a log by accident; [`Secret::expose`] is the one way
/// to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The credential itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Config {
    /// Reads, parses and validates the config file at `path`. Environment
    /// variables named by `password_env` are read from this process's
    /// environment. Warnings are logged.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let config = Config::load_with_env(path, &|name| std::env::var_os(name))?;
        for warning in &config.warnings {
            tracing::warn!("{}: {warning}", config.source.display());
        }
        Ok(config)
    }

    /// [`Config::load`] with the environment given as a lookup function,
    /// and without logging the warnings.
    pub fn load_with_env(path: &Path, env: &Env<'_>) -> anyhow::Result<Config> {
        let source =
            std::path::absolute(path).with_context(|| format!("config file {}", path.display()))?;
        let text = std::fs::read_to_string(&source)
            .with_context(|| format!("cannot read config file {}", source.display()))?;
        let file = ConfigFile::parse(&text)
            .with_context(|| format!("invalid config file {}", source.display()))?;
        file.validate(&source, env)
            .with_context(|| format!("invalid config file {}", source.display()))
    }

    /// One line for `check-config` and the startup log: targets, listener,
    /// engine, store and keys.
    pub fn summary(&self) -> String {
        let targets: Vec<&str> = self.targets.keys().map(String::as_str).collect();
        let tls = match (&self.tls, self.listener.allow_plaintext) {
            (Some(_), false) => "TLS required",
            (Some(_), true) => "TLS optional",
            (None, _) => "plaintext only",
        };
        let http = match &self.http {
            Some(h) if self.tls.is_some() => format!(", HTTP listener {} (TLS)", h.address),
            Some(h) => format!(", HTTP listener {} (plaintext)", h.address),
            None => String::new(),
        };
        format!(
            "{} target{} ({}), listener {} ({tls}){http}, engine {} with {} worker{}, \
             store {} ({}, {}), {} grant key{}",
            targets.len(),
            plural(targets.len()),
            targets.join(", "),
            self.listener.address,
            self.gateway.io,
            self.gateway.workers,
            plural(self.gateway.workers.get()),
            self.store.dir.display(),
            match self.store.durability {
                Durability::Fsync => "fsync".to_owned(),
                Durability::Os => format!(
                    "os, fsync every {}",
                    units::Human(self.store.os_sync_interval)
                ),
            },
            if self.store.seal_key.is_some() {
                format!(
                    "sealed, checkpoint every {}",
                    units::Human(self.store.checkpoint_interval)
                )
            } else {
                "unsealed".to_owned()
            },
            self.grants.keys.len(),
            plural(self.grants.keys.len()),
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl ConfigFile {
    /// Parses config text (TOML). Only types are checked here; see
    /// [`ConfigFile::validate`].
    pub fn parse(text: &str) -> anyhow::Result<ConfigFile> {
        Ok(toml::from_str(text)?)
    }
}
