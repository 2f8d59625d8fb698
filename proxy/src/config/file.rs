//! The config file as written: serde structs with the documented defaults.
//! Nothing here is checked beyond TOML types; [`ConfigFile::validate`]
//! (in `validate.rs`) turns it into a [`Config`](super::Config).
//!
//! Unknown keys are errors, so that a misspelt `alow_plaintext` does not
//! silently leave the default in place.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::IoEngine;
use super::units::ByteSize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[gateway]`
    #[serde(default)]
    pub gateway: GatewaySection,
    /// `[listener]`
    #[serde(default)]
    pub listener: ListenerSection,
    /// `[http]`; without it there is no HTTP listener.
    #[serde(default)]
    pub http: Option<HttpSection>,
    /// `[tls]`; without it the listener speaks plaintext only.
    #[serde(default)]
    pub tls: Option<TlsSection>,
    /// `[store]`
    #[serde(default)]
    pub store: StoreSection,
    /// `[grants]`
    #[serde(default)]
    pub grants: GrantsSection,
    /// `[targets.NAME]`
    #[serde(default)]
    pub targets: BTreeMap<String, TargetSection>,
    /// `[admin]`; without it there is no admin API.
    #[serde(default)]
    pub admin: Option<AdminSection>,
    /// `[approvals]`
    #[serde(default)]
    pub approvals: ApprovalsSection,
    /// `[limits]`
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[policies.NAME]`: plans for grants without one (from identity
    /// providers), chosen by `[[grants.policy_claims]]`.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicySection>,
}

/// `[policies.NAME]`: a target scope (as in a grant's plan) and the targets
/// it applies to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySection {
    /// `targets`: target names.
    pub targets: Vec<String>,
    /// `allow`: rules allowed as they come.
    pub allow: Vec<gatehouse_core::grant::Rule>,
    /// `approve`: rules that run once approved.
    pub approve: Vec<gatehouse_core::grant::Rule>,
    /// `limits`.
    pub limits: gatehouse_core::grant::Limits,
}

/// `[[grants.policy_claims]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyClaimSection {
    /// `claim`: the claim's name (dots reach into nested objects).
    pub claim: Option<String>,
    /// `value`: the value selecting the policy.
    pub value: Option<String>,
    /// `policy`: a `[policies.NAME]`.
    pub policy: Option<String>,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// `listen`: `ip:port` of the admin API. Default `127.0.0.1:15480`.
    pub listen: String,
    /// `[[admin.tokens]]`: who may use it.
    pub tokens: Vec<AdminTokenSection>,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: "127.0.0.1:15480".to_owned(),
            tokens: Vec::new(),
        }
    }
}

/// `[[admin.tokens]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenSection {
    /// `name`: the approver's identity.
    pub name: Option<String>,
    /// `token_file`: file holding the bearer token.
    pub token_file: Option<String>,
    /// `token_env`: environment variable holding it.
    pub token_env: Option<String>,
    /// `token`: never allowed; present only so that the error can say what
    /// to do instead.
    pub token: Option<toml::Value>,
}

/// `[approvals]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalsSection {
    /// `timeout`: how long a held statement waits. Default 5m.
    pub timeout: String,
    /// `mode`: `wait` (default) or `reject`.
    pub mode: String,
    /// `webhook_url`: where new requests are POSTed (http only).
    pub webhook_url: Option<String>,
}

impl Default for ApprovalsSection {
    fn default() -> Self {
        ApprovalsSection {
            timeout: "5m".to_owned(),
            mode: "wait".to_owned(),
            webhook_url: None,
        }
    }
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySection {
    /// `io`: the IO engine. Default `auto`.
    pub io: IoEngine,
    /// `workers`: worker threads; 0 (the default) is one per core.
    pub workers: u32,
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            io: IoEngine::Auto,
            workers: 0,
        }
    }
}

/// `[listener]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenerSection {
    /// `address`: `ip:port`. Default `127.0.0.1:15432`.
    pub address: String,
    /// `allow_plaintext`: whether clients may connect without TLS.
    /// Default false.
    pub allow_plaintext: bool,
    /// `max_frame_bytes`: the largest client frame. Default 64 MiB.
    pub max_frame_bytes: ByteSize,
    /// `max_connections`: client connections served at once; past it a
    /// client is refused with SQLSTATE 53300. Default 10000.
    pub max_connections: u32,
    /// `startup_timeout`: how long a client has for TLS, the
    /// StartupMessage and the grant check. Default 30s.
    pub startup_timeout: String,
    /// `message_timeout`: how long a logged-in client may take to send
    /// the rest of a message it started (slowloris). Default 60s.
    pub message_timeout: String,
}

impl Default for ListenerSection {
    fn default() -> Self {
        ListenerSection {
            address: "127.0.0.1:15432".to_owned(),
            allow_plaintext: false,
            max_frame_bytes: ByteSize::Text("64MiB".to_owned()),
            max_connections: 10_000,
            startup_timeout: "30s".to_owned(),
            message_timeout: "60s".to_owned(),
        }
    }
}

/// `[limits]`: per-grant limits, over all the gateway's workers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// `connections_per_grant`: sessions open at once with one grant
    /// (`jti`); past it a new one is refused with SQLSTATE 53300.
    /// Default 0: unlimited.
    pub connections_per_grant: u32,
    /// `statements_per_second_per_grant`: statements per second of one
    /// grant over all its sessions (a token bucket, burst = the rate);
    /// past it a statement is refused with SQLSTATE 53400. Default 0:
    /// unlimited.
    pub statements_per_second_per_grant: u32,
}

/// `[tls]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// `cert`: PEM certificate chain, leaf first.
    pub cert: Option<String>,
    /// `key`: PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
}

/// How the store makes appends durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Fsynced before the command is forwarded (group commit).
    #[default]
    Fsync,
    /// Written to the OS before forwarding, fsynced every
    /// `os_sync_interval`.
    Os,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// `dir`: the store directory. Default `data/store`.
    pub dir: String,
    /// `durability`: `fsync` (default) or `os`.
    pub durability: Durability,
    /// `os_sync_interval`: how often `os` durability fsyncs. Default 5ms.
    pub os_sync_interval: String,
    /// `seal_key`: the Ed25519 private key (PKCS#8 PEM) that seals each
    /// session's Closed event. Optional: without it sessions are unsealed.
    pub seal_key: Option<String>,
    /// `checkpoint_interval`: how often, with a seal key, the gateway
    /// writes a signed checkpoint over the sessions active since the last
    /// one. Default 60s.
    pub checkpoint_interval: String,
    /// `[store.retention]`: what `gatehouse store prune` must respect.
    pub retention: RetentionSection,
}

/// `[store.retention]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// `require_export`: `gatehouse store prune` refuses to remove a
    /// session no recorded `gatehouse store export` holds. Default false.
    pub require_export: bool,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            dir: "data/store".to_owned(),
            durability: Durability::Fsync,
            os_sync_interval: "5ms".to_owned(),
            seal_key: None,
            checkpoint_interval: "60s".to_owned(),
            retention: RetentionSection::default(),
        }
    }
}

/// `[grants]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrantsSection {
    /// `issuer`: the `iss` grants must carry. Default `gatehouse`.
    pub issuer: String,
    /// `audience`: the `aud` grants must carry. Default `gatehouse`.
    pub audience: String,
    /// `leeway`: clock skew tolerated on `exp`/`nbf`. Default 5s.
    pub leeway: String,
    /// `[[grants.keys]]`: the public keys grants may be signed with.
    pub keys: Vec<GrantKeySection>,
    /// `jwks_file`: a JWK set file (an identity provider's keys).
    pub jwks_file: Option<String>,
    /// `jwks_url`: where an identity provider publishes its JWK set.
    pub jwks_url: Option<String>,
    /// `jwks_refresh_interval`: how often the JWK set is re-read. Default
    /// 15m.
    pub jwks_refresh_interval: String,
    /// `jwks_refresh_min_interval`: the least time between re-reads caused
    /// by grants naming an unknown key. Default 30s.
    pub jwks_refresh_min_interval: String,
    /// `[[grants.policy_claims]]`: which claims select which policy.
    pub policy_claims: Vec<PolicyClaimSection>,
}

impl Default for GrantsSection {
    fn default() -> Self {
        GrantsSection {
            issuer: "gatehouse".to_owned(),
            audience: "gatehouse".to_owned(),
            leeway: "5s".to_owned(),
            keys: Vec::new(),
            jwks_file: None,
            jwks_url: None,
            jwks_refresh_interval: "15m".to_owned(),
            jwks_refresh_min_interval: "30s".to_owned(),
            policy_claims: Vec::new(),
        }
    }
}

/// `[[grants.keys]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantKeySection {
    /// `public_key`: an Ed25519 public key, SPKI PEM.
    pub public_key: Option<String>,
    /// `kid`: overrides the key id derived from the key.
    pub kid: Option<String>,
}

/// `[http]`: the listener of HTTP and Kubernetes clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// `address`: `ip:port`. Default `127.0.0.1:18443`.
    pub address: String,
    /// `allow_plaintext`: whether clients may connect without TLS.
    pub allow_plaintext: bool,
    /// `max_header_bytes`. Default 64 KiB.
    pub max_header_bytes: ByteSize,
    /// `max_headers`. Default 100.
    pub max_headers: u32,
    /// `max_body_bytes`: the largest request body. Default 16 MiB.
    pub max_body_bytes: ByteSize,
    /// `header_timeout`. Default 30s.
    pub header_timeout: String,
    /// `idle_timeout`. Default 120s.
    pub idle_timeout: String,
}

/// `[targets.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetSection {
    /// `kind`: `postgres` (default), `http` or `kubernetes`.
    pub kind: String,
    /// `url`: an HTTP or Kubernetes target's upstream.
    pub url: Option<String>,
    /// `ca_file`: PEM CA certificates for an `https://` upstream.
    pub ca_file: Option<String>,
    /// `path_prefix`: HTTP requests under it go to this target.
    pub path_prefix: Option<String>,
    /// `hosts`: HTTP requests for these host names go to this target.
    pub hosts: Vec<String>,
    /// `allow_spdy`: let SPDY upgrades through as recorded tunnels.
    pub allow_spdy: bool,
    /// `impersonate`: Kubernetes `Impersonate-User` = the grant's subject.
    pub impersonate: bool,
    /// `response_timeout`: how long an HTTP target may take to answer a
    /// request with its response's head. Default 60s.
    pub response_timeout: String,
    /// `[targets.NAME.credential]`: what an HTTP target gets instead of
    /// the grant.
    pub credential: Option<super::http::CredentialSection>,
    /// `host`: name or address of the PostgreSQL server.
    pub host: Option<String>,
    /// `port`. Default 5432.
    pub port: u16,
    /// `database`: the upstream database. Default: the target's name.
    pub database: Option<String>,
    /// `user`: the role the gateway logs in as.
    pub user: Option<String>,
    /// `password_env`: environment variable holding the password.
    pub password_env: Option<String>,
    /// `password_file`: file holding the password.
    pub password_file: Option<String>,
    /// `password`: never allowed; present only so that the error can say
    /// what to do instead.
    pub password: Option<toml::Value>,
    /// `connect_timeout`: bounds TCP connect and login together. Default 5s.
    pub connect_timeout: String,
    /// `pool_size`: logged-in connections kept per worker for the next
    /// session (reset with DISCARD ALL first). Default 0: no pool.
    pub pool_size: u32,
    /// `[targets.NAME.masking]`: what to mask in this target's results.
    pub masking: Option<MaskingSection>,
}

/// `[targets.NAME.masking]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskingSection {
    /// `token_secret_env`: environment variable holding the HMAC secret of
    /// the `token` strategy.
    pub token_secret_env: Option<String>,
    /// `token_secret_file`: file holding that secret.
    pub token_secret_file: Option<String>,
    /// `detectors`: detector name → strategy.
    pub detectors: BTreeMap<String, String>,
    /// `[[…masking.columns]]`.
    pub columns: Vec<ColumnSection>,
    /// `[[…masking.dictionaries]]`.
    pub dictionaries: Vec<DictionarySection>,
    /// `keys`: JSON key → strategy, for HTTP and Kubernetes targets.
    pub keys: BTreeMap<String, String>,
}

/// `[[targets.NAME.masking.columns]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSection {
    /// `pattern`: glob over `column` or `table.column`.
    pub pattern: String,
    /// `strategy`.
    pub strategy: String,
}

/// `[[targets.NAME.masking.dictionaries]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DictionarySection {
    /// `terms`.
    pub terms: Vec<String>,
    /// `case_insensitive`. Default false.
    #[serde(default)]
    pub case_insensitive: bool,
    /// `strategy`.
    pub strategy: String,
}

impl Default for TargetSection {
    fn default() -> Self {
        TargetSection {
            kind: "postgres".to_owned(),
            url: None,
            ca_file: None,
            path_prefix: None,
            hosts: Vec::new(),
            allow_spdy: false,
            impersonate: false,
            response_timeout: "60s".to_owned(),
            credential: None,
            host: None,
            port: 5432,
            database: None,
            user: None,
            password_env: None,
            password_file: None,
            password: None,
            connect_timeout: "5s".to_owned(),
            pool_size: 0,
            masking: None,
        }
    }
}
