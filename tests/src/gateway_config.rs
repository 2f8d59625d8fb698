//! What a test can choose about a gateway, and the TOML config file written
//! from it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::postgres::{APP_PASSWORD, DATABASE, User};

/// `[store] durability`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Fsynced before a command is forwarded (group commit).
    #[default]
    Fsync,
    /// Written to the OS before forwarding, fsynced every few milliseconds.
    Os,
}

impl Durability {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Os => "os",
        }
    }
}

/// One `[targets.NAME]` section: an upstream database and the credential the
/// gateway logs in with. The password reaches the gateway through the
/// environment variable [`password_env`](Self::password_env).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The target's name, as grants and clients name it.
    pub name: String,
    /// The upstream database.
    pub database: String,
    /// The upstream role.
    pub user: String,
    /// The upstream password; `None` for a trusted role (the variable is
    /// still set, to a value the server never asks for).
    pub password: Option<String>,
}

impl Target {
    /// The target for an upstream role of the test cluster: `orders` for
    /// [`User::App`], `orders_<role>` for the others (`orders_md5user`, …).
    pub fn for_user(user: User) -> Target {
        let name = match user {
            User::App => DATABASE.to_owned(),
            other => format!("{DATABASE}_{}", other.name()),
        };
        Target {
            name,
            database: DATABASE.to_owned(),
            user: user.name().to_owned(),
            password: user.password().map(str::to_owned),
        }
    }

    /// `GATEHOUSE_<NAME>_PASSWORD`, the name upper-cased with every
    /// non-alphanumeric character turned into `_`.
    pub fn password_env(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("GATEHOUSE_{name}_PASSWORD")
    }

    /// The value the password variable is set to.
    pub fn password_value(&self) -> &str {
        self.password.as_deref().unwrap_or("unused-by-trust-auth")
    }
}

/// What a test can choose about the gateway it starts.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// `[store] durability`.
    pub durability: Durability,
    /// Targets besides `orders` (which logs in as `app` with
    /// [`APP_PASSWORD`]).
    pub extra_targets: Vec<Target>,
    /// Whether to write a `[tls]` section (certificate for `localhost` and
    /// 127.0.0.1 from a fresh test CA).
    pub tls: bool,
    /// `[listener] allow_plaintext`.
    pub allow_plaintext: bool,
    /// `[gateway] io`. Defaults to `$GATEHOUSE_TEST_IO`, else `"tokio"`
    /// (`scripts/test` runs the whole suite on each engine).
    pub io: String,
    /// `[gateway] workers`.
    pub workers: u32,
    /// `[targets.NAME.masking]` sections: target name and the section's
    /// content (see [`with_masking`](Self::with_masking)).
    pub masking: Vec<(String, toml::Table)>,
    /// Raw TOML appended to the config (policy, limits …).
    pub extra_config: String,
    /// `[listener] max_connections`; the gateway's default when `None`.
    pub max_connections: Option<u32>,
    /// `pool_size` of every target; no pool when `None`.
    pub pool_size: Option<u32>,
    /// Raw TOML lines written inside `[listener]`, e.g.
    /// `startup_timeout = "1s"`.
    pub listener_config: String,
    /// Raw TOML lines written inside `[grants]` (after `leeway`, before
    /// the gateway's own `[[grants.keys]]`), e.g. `jwks_url = "…"`.
    pub grants_config: String,
    /// Extra environment variables for the gateway process.
    pub env: Vec<(String, String)>,
    /// `[store] dir`, when not `store` in the gateway's temp dir (e.g. on
    /// a small tmpfs). The test owns this directory; it is not removed.
    pub store_dir: Option<PathBuf>,
    /// Raw TOML lines written inside `[store]`, e.g.
    /// `checkpoint_interval = "200ms"`.
    pub store_config: String,
    /// With `Some`, an `[http]` listener on a port of its own
    /// ([`Gateway::http_port`](crate::Gateway::http_port)), with these raw
    /// TOML lines inside; plaintext when the gateway has no TLS. HTTP
    /// targets go in [`extra_config`](Self::extra_config).
    pub http: Option<String>,
}

impl Default for GatewayOptions {
    fn default() -> GatewayOptions {
        GatewayOptions {
            durability: Durability::Fsync,
            extra_targets: Vec::new(),
            tls: true,
            allow_plaintext: false,
            io: std::env::var("GATEHOUSE_TEST_IO").unwrap_or_else(|_| "tokio".to_owned()),
            workers: 2,
            masking: Vec::new(),
            extra_config: String::new(),
            max_connections: None,
            pool_size: None,
            listener_config: String::new(),
            grants_config: String::new(),
            env: Vec::new(),
            store_dir: None,
            store_config: String::new(),
            http: None,
        }
    }
}

impl GatewayOptions {
    /// Adds one target per other upstream authentication method:
    /// `orders_md5user` (md5), `orders_clearuser` (password),
    /// `orders_trustuser` (trust).
    pub fn with_auth_targets(mut self) -> GatewayOptions {
        for user in [User::Md5, User::Clear, User::Trust] {
            self.extra_targets.push(Target::for_user(user));
        }
        self
    }

    /// Masking rules for `target`: `section` is the content of its
    /// `[targets.NAME.masking]` table written on its own (keys and arrays
    /// of tables relative to it), e.g.
    ///
    /// ```
    /// # use gatehouse_tests::GatewayOptions;
    /// let options = GatewayOptions::default().with_masking(
    ///     "orders",
    ///     r#"
    ///     detectors = { card_number = "partial" }
    ///     [[columns]]
    ///     pattern = "ssn"
    ///     strategy = "redact"
    ///     "#,
    /// );
    /// assert_eq!(options.masking[0].1["columns"][0]["pattern"].as_str(), Some("ssn"));
    /// ```
    ///
    /// Panics when `section` is not valid TOML. A secret it names by
    /// `token_secret_env` goes in [`env`](Self::env).
    pub fn with_masking(mut self, target: &str, section: &str) -> GatewayOptions {
        let table: toml::Table = toml::from_str(section)
            .unwrap_or_else(|e| panic!("invalid masking TOML for {target}: {e}\n{section}"));
        self.masking.push((target.to_owned(), table));
        self
    }

    /// Every target: `orders` first, then the extra ones.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = vec![Target::for_user(User::App)];
        targets.extend(self.extra_targets.iter().cloned());
        debug_assert_eq!(targets[0].password.as_deref(), Some(APP_PASSWORD));
        targets
    }
}

/// Paths the config refers to.
pub(crate) struct ConfigPaths<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub store: &'a Path,
    pub public_key: &'a Path,
    pub seal_key: &'a Path,
}

/// The gateway's config file for `options`, listening on 127.0.0.1:`port`
/// and forwarding to 127.0.0.1:`upstream_port`.
pub(crate) fn render(
    options: &GatewayOptions,
    port: u16,
    http_port: u16,
    upstream_port: u16,
    paths: &ConfigPaths<'_>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[gateway]");
    let _ = writeln!(s, "io = {}", q(&options.io));
    let _ = writeln!(s, "workers = {}", options.workers);
    let _ = writeln!(s, "\n[listener]");
    let _ = writeln!(s, "address = {}", q(&format!("127.0.0.1:{port}")));
    let _ = writeln!(s, "allow_plaintext = {}", options.allow_plaintext);
    if let Some(n) = options.max_connections {
        let _ = writeln!(s, "max_connections = {n}");
    }
    if !options.listener_config.is_empty() {
        let _ = writeln!(s, "{}", options.listener_config);
    }
    if let Some(http) = &options.http {
        let _ = writeln!(s, "\n[http]");
        let _ = writeln!(s, "address = {}", q(&format!("127.0.0.1:{http_port}")));
        let _ = writeln!(s, "allow_plaintext = {}", !options.tls);
        let _ = writeln!(s, "{http}");
    }
    if options.tls {
        let _ = writeln!(s, "\n[tls]");
        let _ = writeln!(s, "cert = {}", qp(paths.cert));
        let _ = writeln!(s, "key = {}", qp(paths.key));
    }
    let _ = writeln!(s, "\n[store]");
    let _ = writeln!(s, "dir = {}", qp(paths.store));
    let _ = writeln!(s, "durability = {}", q(options.durability.as_str()));
    let _ = writeln!(s, "seal_key = {}", qp(paths.seal_key));
    if !options.store_config.is_empty() {
        let _ = writeln!(s, "{}", options.store_config);
    }
    let _ = writeln!(s, "\n[grants]");
    let _ = writeln!(s, "issuer = \"gatehouse\"");
    let _ = writeln!(s, "audience = \"gatehouse\"");
    let _ = writeln!(s, "leeway = \"5s\"");
    if !options.grants_config.is_empty() {
        let _ = writeln!(s, "{}", options.grants_config);
    }
    let _ = writeln!(s, "\n[[grants.keys]]");
    let _ = writeln!(s, "public_key = {}", qp(paths.public_key));
    for target in options.targets() {
        let _ = writeln!(s, "\n[targets.{}]", q(&target.name));
        let _ = writeln!(s, "host = \"127.0.0.1\"");
        let _ = writeln!(s, "port = {upstream_port}");
        let _ = writeln!(s, "database = {}", q(&target.database));
        let _ = writeln!(s, "user = {}", q(&target.user));
        let _ = writeln!(s, "password_env = {}", q(&target.password_env()));
        if let Some(n) = options.pool_size {
            let _ = writeln!(s, "pool_size = {n}");
        }
        for (_, section) in options.masking.iter().filter(|(t, _)| *t == target.name) {
            let _ = writeln!(s, "\n[targets.{}.masking]", q(&target.name));
            // Every value inline (arrays of tables as arrays of inline
            // tables), so the section needs no further headers.
            for (key, value) in section {
                let _ = writeln!(s, "{} = {value}", q(key));
            }
        }
    }
    if !options.extra_config.is_empty() {
        let _ = writeln!(s, "\n{}", options.extra_config);
    }
    s
}

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn qp(p: &Path) -> String {
    q(&p.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_env_names() {
        assert_eq!(
            Target::for_user(User::App).password_env(),
            "GATEHOUSE_ORDERS_PASSWORD"
        );
        assert_eq!(
            Target::for_user(User::Md5).password_env(),
            "GATEHOUSE_ORDERS_MD5USER_PASSWORD"
        );
    }

    #[test]
    fn config_parses_and_names_every_target() {
        let options = GatewayOptions::default().with_auth_targets();
        let p = Path::new("/tmp/x \"y\"");
        let paths = ConfigPaths {
            cert: p,
            key: p,
            store: p,
            public_key: p,
            seal_key: p,
        };
        let options = options.with_masking(
            "orders_md5user",
            r#"
            token_secret_env = "SECRET"
            detectors = { card_number = "partial", "e-mail" = "token" }
            [[columns]]
            pattern = "*.ssn"
            strategy = "null"
            [[dictionaries]]
            terms = ["Initech", "x\"y"]
            case_insensitive = true
            strategy = "redact"
            "#,
        );
        let text = render(&options, 7000, 7001, 5432, &paths);
        let value: toml::Table = toml::from_str(&text).expect("valid TOML");
        let targets = value["targets"].as_table().expect("targets");
        assert_eq!(targets.len(), 4);
        let masking = &targets["orders_md5user"]["masking"];
        assert_eq!(masking, &toml::Value::Table(options.masking[0].1.clone()));
        assert_eq!(masking["detectors"]["e-mail"].as_str(), Some("token"));
        assert_eq!(
            masking["dictionaries"][0]["terms"][1].as_str(),
            Some("x\"y")
        );
        assert!(targets["orders"].get("masking").is_none());
        assert_eq!(targets["orders_md5user"]["user"].as_str(), Some("md5user"));
        assert_eq!(value["tls"]["cert"].as_str(), Some("/tmp/x \"y\""));
        assert_eq!(
            value["listener"]["address"].as_str(),
            Some("127.0.0.1:7000")
        );
        assert_eq!(
            value["grants"]["keys"][0]["public_key"].as_str(),
            Some("/tmp/x \"y\"")
        );
        assert_eq!(value["store"]["seal_key"].as_str(), Some("/tmp/x \"y\""));
    }
}
