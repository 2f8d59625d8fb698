use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use ed25519_dalek::pkcs8::spki::EncodePublicKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use gatehouse_core::grant::{Claims, Plan, SigningKey, TargetScope, sign};

use super::*;

const EXAMPLE: &str = include_str!("../../../examples/gatehouse.toml");

/// A small config that validates against [`Fixture`].
const GOOD: &str = r#"
[gateway]
io = "tokio"
workers = 2

[listener]
address = "127.0.0.1:15432"

[tls]
cert = "certs/gatehouse.crt"
key = "certs/gatehouse.key"

[store]
dir = "data/store"
seal_key = "keys/seal.key"

[grants]
leeway = "5s"

[[grants.keys]]
public_key = "keys/grant.pub"

[targets.orders]
host = "127.0.0.1"
user = "app"
password_env = "GATEHOUSE_ORDERS_PASSWORD"
"#;

/// A directory with everything a config refers to: a grant key pair, a TLS
/// certificate and key, a second unrelated TLS key, and password files.
struct Fixture {
    dir: tempfile::TempDir,
    signing: SigningKey,
}

fn write(path: &Path, contents: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();

        let seed = [7u8; 32];
        let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public_pem = dalek
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        write(&root.join("keys/grant.pub"), &public_pem, 0o644);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let other_pem = other
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        write(&root.join("keys/other.pub"), &other_pem, 0o644);
        {
            use ed25519_dalek::pkcs8::EncodePrivateKey as _;
            let seal = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
            let pem = seal.to_pkcs8_pem(LineEnding::LF).unwrap();
            write(&root.join("keys/seal.key"), &pem, 0o600);
        }

        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        write(&root.join("certs/gatehouse.crt"), &cert.cert.pem(), 0o644);
        write(
            &root.join("certs/gatehouse.key"),
            &cert.key_pair.serialize_pem(),
            0o600,
        );
        let unrelated = rcgen::KeyPair::generate().unwrap();
        write(
            &root.join("certs/unrelated.key"),
            &unrelated.serialize_pem(),
            0o600,
        );

        write(&root.join("secrets/orders.password"), "s3cret\n", 0o600);
        write(&root.join("secrets/open.password"), "s3cret\n", 0o644);
        write(&root.join("secrets/empty.password"), "\n", 0o600);

        Fixture {
            dir,
            signing: SigningKey::from_secret_bytes(&seed).unwrap(),
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` as `gatehouse.toml` and loads it with `env`.
    fn load_env(&self, text: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let path = self.root().join("gatehouse.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, OsString)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        Config::load_with_env(&path, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    /// [`Self::load_env`] with `GATEHOUSE_ORDERS_PASSWORD` set.
    fn load(&self, text: &str) -> anyhow::Result<Config> {
        self.load_env(text, &[("GATEHOUSE_ORDERS_PASSWORD", "pw-from-env")])
    }
}

#[test]
fn the_example_config_is_valid() {
    let fx = Fixture::new();
    let config = fx.load(EXAMPLE).unwrap();
    assert_eq!(config.targets.len(), 1);
    let orders = &config.targets["orders"];
    assert_eq!(orders.host, "127.0.0.1");
    assert_eq!(orders.port, 5432);
    assert_eq!(orders.database, "orders");
    assert_eq!(orders.user, "app");
    assert_eq!(
        orders.password.as_ref().map(Secret::expose),
        Some("pw-from-env")
    );
    assert_eq!(orders.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.gateway.io, IoEngine::Auto);
    assert_eq!(config.listener.max_frame_bytes, 64 << 20);
    assert!(!config.listener.allow_plaintext);
    assert_eq!(config.store.durability, Durability::Fsync);
    assert_eq!(config.store.os_sync_interval, Duration::from_millis(5));
    assert_eq!(config.store.checkpoint_interval, Duration::from_secs(60));
    assert!(!config.store.require_export);
    assert!(config.store.load_seal_key().unwrap().is_some());
    assert_eq!(config.listener.startup_timeout, Duration::from_secs(30));
    assert_eq!(config.limits, Limits::default());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn good_config_resolves_paths_against_the_config_directory() {
    let fx = Fixture::new();
    let config = fx.load(GOOD).unwrap();
    let root = std::path::absolute(fx.root()).unwrap();
    assert_eq!(config.source, root.join("gatehouse.toml"));
    let tls = config.tls.as_ref().unwrap();
    assert_eq!(tls.cert, root.join("certs/gatehouse.crt"));
    assert_eq!(tls.key, root.join("certs/gatehouse.key"));
    assert_eq!(config.store.dir, root.join("data/store"));
    assert_eq!(
        config.grants.keys[0].public_key,
        root.join("keys/grant.pub")
    );
    assert_eq!(config.gateway.workers.get(), 2);
    let (cert, key) = tls.read().unwrap();
    assert!(!cert.is_empty() && !key.is_empty());
}

#[test]
fn defaults() {
    let fx = Fixture::new();
    let text = r#"
        [listener]
        allow_plaintext = true
        [[grants.keys]]
        public_key = "keys/grant.pub"
        [targets.orders]
        host = "db"
        user = "app"
    "#;
    let config = fx.load(text).unwrap();
    assert_eq!(config.gateway.io, IoEngine::Auto);
    assert!(config.gateway.workers.get() >= 1);
    assert_eq!(
        config.listener.address,
        SocketAddr::from(([127, 0, 0, 1], 15432))
    );
    assert_eq!(config.listener.max_frame_bytes, 64 << 20);
    assert!(config.tls.is_none());
    assert_eq!(
        config.store.dir,
        std::path::absolute(fx.root().join("data/store")).unwrap()
    );
    assert_eq!(config.store.durability, Durability::Fsync);
    assert_eq!(config.grants.issuer, "gatehouse");
    assert_eq!(config.grants.audience, "gatehouse");
    assert_eq!(config.grants.leeway, Duration::from_secs(5));
    let orders = &config.targets["orders"];
    assert_eq!(orders.port, 5432);
    assert_eq!(
        orders.database, "orders",
        "database defaults to the target name"
    );
    assert_eq!(orders.password, None, "neither env nor file: no password");
    assert_eq!(orders.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.listener.startup_timeout, Duration::from_secs(30));
    assert_eq!(config.limits.connections_per_grant, 0, "unlimited");
    assert_eq!(
        config.limits.statements_per_second_per_grant, 0,
        "unlimited"
    );
    // Plaintext on loopback is not worth a warning; unsealed sessions are.
    assert_eq!(config.store.seal_key, None);
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(
        config.warnings[0].starts_with("store.seal_key: not set"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn startup_timeout_and_limits_resolve_and_mistakes_name_the_key() {
    let fx = Fixture::new();
    let with = |listener: &str, limits: &str| {
        let text = GOOD.replace("[listener]\n", &format!("[listener]\n{listener}\n"));
        fx.load(&format!("{text}\n[limits]\n{limits}\n"))
    };
    let config = with(
        r#"startup_timeout = "1s""#,
        "connections_per_grant = 2\nstatements_per_second_per_grant = 5",
    )
    .unwrap();
    assert_eq!(config.listener.startup_timeout, Duration::from_secs(1));
    assert_eq!(
        config.limits,
        Limits {
            connections_per_grant: 2,
            statements_per_second_per_grant: 5,
        }
    );
    let cases = [
        (
            r#"startup_timeout = "10ms""#,
            "",
            "listener.startup_timeout: 10ms is shorter than the minimum 100ms",
        ),
        (
            r#"startup_timeout = "2h""#,
            "",
            "listener.startup_timeout: 2h is longer than the maximum 10m",
        ),
        (
            r#"startup_timeout = "soon""#,
            "",
            "listener.startup_timeout: \"soon\" is not a duration",
        ),
        (
            "",
            "statements_per_second_per_grant = 2000000",
            "limits.statements_per_second_per_grant: 2000000 is more than 1000000",
        ),
        ("", "connections_per_grant = -1", "connections_per_grant"),
        (
            "",
            "sessions_per_grant = 1",
            "unknown field `sessions_per_grant`",
        ),
    ];
    for (listener, limits, expected) in cases {
        let err = format!("{:#}", with(listener, limits).unwrap_err());
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
}

#[test]
fn password_file_is_read_and_trimmed_and_never_printed() {
    let fx = Fixture::new();
    let text = GOOD.replace(
        r#"password_env = "GATEHOUSE_ORDERS_PASSWORD""#,
        r#"password_file = "secrets/orders.password""#,
    );
    let config = fx.load(&text).unwrap();
    let password = config.targets["orders"].password.as_ref().unwrap();
    assert_eq!(password.expose(), "s3cret");
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("***"));
}

#[test]
fn verifier_from_config_accepts_a_grant_signed_with_the_key() {
    let fx = Fixture::new();
    let config = fx.load(GOOD).unwrap();
    let verifier = config.grants.verifier().unwrap();
    assert_eq!(verifier.leeway_s, 5);
    assert_eq!(verifier.issuer, "gatehouse");
    let claims = Claims {
        iss: "gatehouse".to_owned(),
        sub: "agent-7".to_owned(),
        aud: "gatehouse".to_owned(),
        exp: 2_000,
        nbf: 1_000,
        iat: 1_000,
        jti: "j".to_owned(),
        purpose: "test".to_owned(),
        ticket: None,
        plan: Plan {
            targets: [("orders".to_owned(), TargetScope::default())].into(),
            uses: None,
        },
    };
    let token = sign(&claims, &fx.signing).unwrap();
    assert_eq!(verifier.verify(&token, 1_500).unwrap(), claims);
}

#[test]
fn kid_override_applies() {
    let fx = Fixture::new();
    let text = GOOD.replace(
        r#"public_key = "keys/grant.pub""#,
        "public_key = \"keys/grant.pub\"\nkid = \"planner-1\"",
    );
    let keys = fx.load(&text).unwrap().grants.key_set().unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k.kid()).collect();
    assert_eq!(kids, ["planner-1"]);
}

#[test]
fn warnings() {
    let fx = Fixture::new();
    let text = GOOD
        .replace("127.0.0.1:15432", "0.0.0.0:15432")
        .replace("[tls]", "[tls]\n# tls kept")
        .replace(r#"[listener]"#, "[listener]\nallow_plaintext = true")
        .replace(
            r#"password_env = "GATEHOUSE_ORDERS_PASSWORD""#,
            r#"password_file = "secrets/open.password""#,
        );
    let config = fx.load(&text).unwrap();
    let all = config.warnings.join("\n");
    assert!(
        all.contains("listener.allow_plaintext: plaintext is allowed on 0.0.0.0:15432"),
        "{all}"
    );
    assert!(
        all.contains("targets.orders.password_file: ") && all.contains("mode 644"),
        "{all}"
    );
}

/// Each mistake, and the words its error must contain.
#[test]
fn mistakes_name_the_key() {
    let fx = Fixture::new();
    let root = std::path::absolute(fx.root()).unwrap();
    let env_line = r#"password_env = "GATEHOUSE_ORDERS_PASSWORD""#;
    let key_line = r#"public_key = "keys/grant.pub""#;
    let tls_section = "[tls]\ncert = \"certs/gatehouse.crt\"\nkey = \"certs/gatehouse.key\"\n";
    let targets_section = "[targets.orders]\nhost = \"127.0.0.1\"\nuser = \"app\"\n";

    let r = |from: &str, to: &str| GOOD.replace(from, to);
    let cases: Vec<(&str, String, Vec<&str>, Vec<String>)> = vec![
        (
            "password in the config",
            r(env_line, r#"password = "hunter2""#),
            vec![],
            vec![
                "targets.orders.password: passwords must not be written in the config file"
                    .to_owned(),
            ],
        ),
        (
            "seal key missing",
            r(r#"seal_key = "keys/seal.key""#, r#"seal_key = "keys/nope.key""#),
            vec![],
            vec![format!(
                "store.seal_key: cannot read {}",
                root.join("keys/nope.key").display()
            )],
        ),
        (
            "seal key is a public key",
            r(r#"seal_key = "keys/seal.key""#, r#"seal_key = "keys/grant.pub""#),
            vec![],
            vec![
                "store.seal_key: ".to_owned(),
                "not an Ed25519 private key in PKCS#8 PEM".to_owned(),
            ],
        ),
        (
            "seal key empty",
            r(r#"seal_key = "keys/seal.key""#, "seal_key = \"\""),
            vec![],
            vec!["store.seal_key: is empty".to_owned()],
        ),
        (
            "env var not set",
            GOOD.to_owned(),
            vec!["unset"],
            vec![
                "targets.orders.password_env: environment variable GATEHOUSE_ORDERS_PASSWORD is not set"
                    .to_owned(),
            ],
        ),
        (
            "env var empty",
            GOOD.to_owned(),
            vec!["empty"],
            vec!["environment variable GATEHOUSE_ORDERS_PASSWORD is set but empty".to_owned()],
        ),
        (
            "env and file",
            r(env_line, &format!("{env_line}\npassword_file = \"secrets/orders.password\"")),
            vec![],
            vec!["targets.orders: set password_env or password_file, not both".to_owned()],
        ),
        (
            "password file missing",
            r(env_line, r#"password_file = "secrets/nope.password""#),
            vec![],
            vec![format!(
                "targets.orders.password_file: cannot read {}",
                root.join("secrets/nope.password").display()
            )],
        ),
        (
            "password file empty",
            r(env_line, r#"password_file = "secrets/empty.password""#),
            vec![],
            vec!["targets.orders.password_file: ".to_owned(), "is empty".to_owned()],
        ),
        (
            "no targets",
            r(targets_section, "").replace(env_line, ""),
            vec![],
            vec!["targets: no targets".to_owned()],
        ),
        (
            "target without user",
            r("user = \"app\"\n", ""),
            vec![],
            vec!["targets.orders.user: is missing".to_owned()],
        ),
        (
            "target without host",
            r("host = \"127.0.0.1\"\n", ""),
            vec![],
            vec!["targets.orders.host: is missing".to_owned()],
        ),
        (
            "quoted target name",
            r("[targets.orders]", "[targets.\"my.db\"]").replace(env_line, ""),
            vec![],
            vec![], // valid: checked below that it loads
        ),
        (
            "key file missing",
            r(key_line, r#"public_key = "keys/missing.pub""#),
            vec![],
            vec![format!(
                "grants.keys[0].public_key: cannot read {}",
                root.join("keys/missing.pub").display()
            )],
        ),
        (
            "key file is not a public key",
            r(key_line, r#"public_key = "certs/gatehouse.crt""#),
            vec![],
            vec![
                "grants.keys[0].public_key: ".to_owned(),
                "not an Ed25519 public key".to_owned(),
            ],
        ),
        (
            "no keys",
            r(&format!("[[grants.keys]]\n{key_line}\n"), ""),
            vec![],
            vec!["grants.keys: no grant keys".to_owned()],
        ),
        (
            "duplicate keys",
            r(key_line, &format!("{key_line}\n[[grants.keys]]\n{key_line}")),
            vec![],
            vec!["grants.keys[1]: key id".to_owned()],
        ),
        (
            "two keys are fine",
            r(key_line, &format!("{key_line}\n[[grants.keys]]\npublic_key = \"keys/other.pub\"")),
            vec![],
            vec![],
        ),
        (
            "bad kid",
            r(key_line, &format!("{key_line}\nkid = \"has space\"")),
            vec![],
            vec!["grants.keys[0].kid: key id \"has space\"".to_owned()],
        ),
        (
            "bad leeway",
            r(r#"leeway = "5s""#, r#"leeway = "5 parsecs""#),
            vec![],
            vec!["grants.leeway: \"5 parsecs\" is not a duration".to_owned()],
        ),
        (
            "leeway too long",
            r(r#"leeway = "5s""#, r#"leeway = "1h""#),
            vec![],
            vec!["grants.leeway: 1h is longer than the maximum 5m".to_owned()],
        ),
        (
            "empty issuer",
            r("[grants]", "[grants]\nissuer = \"\""),
            vec![],
            vec!["grants.issuer: is empty".to_owned()],
        ),
        (
            "address without port",
            r("127.0.0.1:15432", "127.0.0.1"),
            vec![],
            vec!["listener.address: \"127.0.0.1\" is not an IP address with a port".to_owned()],
        ),
        (
            "host name as address",
            r("127.0.0.1:15432", "localhost:15432"),
            vec![],
            vec!["listener.address: \"localhost:15432\"".to_owned()],
        ),
        (
            "no tls and no plaintext",
            r(tls_section, ""),
            vec![],
            vec!["listener.allow_plaintext: there is no [tls] section".to_owned()],
        ),
        (
            "no tls with plaintext is fine",
            r(tls_section, "").replace("[listener]", "[listener]\nallow_plaintext = true"),
            vec![],
            vec![],
        ),
        (
            "tls cert missing",
            r("certs/gatehouse.crt", "certs/nope.crt"),
            vec![],
            vec![format!("tls.cert: cannot read {}", root.join("certs/nope.crt").display())],
        ),
        (
            "tls cert is not a certificate",
            r("certs/gatehouse.crt", "keys/grant.pub"),
            vec![],
            vec!["tls.cert: ".to_owned(), "holds no PEM certificate".to_owned()],
        ),
        (
            "tls key is not a key",
            r("certs/gatehouse.key", "certs/gatehouse.crt"),
            vec![],
            vec!["tls.key: ".to_owned(), "holds no PEM private key".to_owned()],
        ),
        (
            "tls key does not match",
            r("certs/gatehouse.key", "certs/unrelated.key"),
            vec![],
            vec!["tls: the key ".to_owned(), "cannot serve the certificate".to_owned()],
        ),
        (
            "tls without key",
            r("key = \"certs/gatehouse.key\"\n", ""),
            vec![],
            vec!["tls.key: is missing".to_owned()],
        ),
        (
            "uring",
            r(r#"io = "tokio""#, r#"io = "uring""#),
            vec![],
            vec![],
        ),
        (
            "io_uring alias",
            r(r#"io = "tokio""#, r#"io = "io_uring""#),
            vec![],
            vec![],
        ),
        (
            "unknown engine",
            r(r#"io = "tokio""#, r#"io = "threads""#),
            vec![],
            vec!["unknown variant `threads`".to_owned()],
        ),
        (
            "too many workers",
            r("workers = 2", "workers = 100000"),
            vec![],
            vec!["gateway.workers: 100000 is more than 1024".to_owned()],
        ),
        (
            "misspelt key",
            r("[listener]", "[listener]\nalow_plaintext = true"),
            vec![],
            vec!["unknown field `alow_plaintext`".to_owned()],
        ),
        (
            "unknown section",
            format!("{GOOD}\n[listner]\naddress = \"127.0.0.1:1\"\n"),
            vec![],
            vec!["unknown field `listner`".to_owned()],
        ),
        (
            "frame size not a size",
            r("[listener]", "[listener]\nmax_frame_bytes = \"64 parsecs\""),
            vec![],
            vec!["listener.max_frame_bytes: \"64 parsecs\" is not a size".to_owned()],
        ),
        (
            "frame size too small",
            r("[listener]", "[listener]\nmax_frame_bytes = 10"),
            vec![],
            vec!["listener.max_frame_bytes: 10B is outside 1KiB..=1GiB".to_owned()],
        ),
        (
            "frame size as integer",
            r("[listener]", "[listener]\nmax_frame_bytes = 65536"),
            vec![],
            vec![],
        ),
        (
            "os sync interval zero",
            r("[store]", "[store]\nos_sync_interval = \"0ms\""),
            vec![],
            vec!["store.os_sync_interval: 0s is shorter than the minimum 1ms".to_owned()],
        ),
        (
            "checkpoint interval too short",
            r("[store]", "[store]\ncheckpoint_interval = \"10ms\""),
            vec![],
            vec![
                "store.checkpoint_interval: 10ms is shorter than the minimum 100ms".to_owned(),
            ],
        ),
        (
            "checkpoint interval too long",
            r("[store]", "[store]\ncheckpoint_interval = \"2h\""),
            vec![],
            vec!["store.checkpoint_interval: 2h is longer than the maximum 1h".to_owned()],
        ),
        (
            "checkpoint interval not a duration",
            r("[store]", "[store]\ncheckpoint_interval = \"often\""),
            vec![],
            vec!["store.checkpoint_interval: ".to_owned()],
        ),
        (
            "retention: prune after export",
            format!("{GOOD}\n[store.retention]\nrequire_export = true\n"),
            vec![],
            vec![],
        ),
        (
            "retention: not a boolean",
            format!("{GOOD}\n[store.retention]\nrequire_export = \"yes\"\n"),
            vec![],
            vec!["invalid type: string \"yes\", expected a boolean".to_owned()],
        ),
        (
            "retention: misspelt key",
            format!("{GOOD}\n[store.retention]\nrequire_exports = true\n"),
            vec![],
            vec!["unknown field `require_exports`".to_owned()],
        ),
        (
            "durability unknown",
            r("[store]", "[store]\ndurability = \"sometimes\""),
            vec![],
            vec!["unknown variant `sometimes`".to_owned()],
        ),
        (
            "store dir is a file",
            r("dir = \"data/store\"", "dir = \"keys/grant.pub\""),
            vec![],
            vec!["store.dir: ".to_owned(), "exists and is not a directory".to_owned()],
        ),
        (
            "connect timeout",
            r(env_line, &format!("{env_line}\nconnect_timeout = \"soon\"")),
            vec![],
            vec!["targets.orders.connect_timeout: \"soon\" is not a duration".to_owned()],
        ),
        (
            "port out of range",
            r("user = \"app\"", "user = \"app\"\nport = 70000"),
            vec![],
            vec!["invalid value: integer `70000`".to_owned()],
        ),
        (
            "not TOML",
            "[gateway\n".to_owned(),
            vec![],
            vec!["TOML parse error".to_owned()],
        ),
        (
            "several problems at once",
            r(r#"leeway = "5s""#, r#"leeway = "1h""#).replace(env_line, r#"password = "x""#),
            vec![],
            vec![
                "2 problems:".to_owned(),
                "  - grants.leeway: ".to_owned(),
                "  - targets.orders.password: ".to_owned(),
            ],
        ),
    ];

    for (name, text, env_mode, expected) in cases {
        let env: Vec<(&str, &str)> = match env_mode.first().copied() {
            Some("unset") => vec![],
            Some("empty") => vec![("GATEHOUSE_ORDERS_PASSWORD", "")],
            _ => vec![("GATEHOUSE_ORDERS_PASSWORD", "pw-from-env")],
        };
        let result = fx.load_env(&text, &env);
        if expected.is_empty() {
            if let Err(e) = result {
                panic!("case {name:?} should load: {e:#}");
            }
            continue;
        }
        let err = match result {
            Ok(_) => panic!("case {name:?} should fail"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains(&format!(
                "config file {}",
                root.join("gatehouse.toml").display()
            )),
            "case {name:?}: the error names the file: {err}"
        );
        for words in &expected {
            assert!(
                err.contains(words.as_str()),
                "case {name:?}: {words:?} not in:\n{err}"
            );
        }
        assert!(
            !err.contains("hunter2"),
            "case {name:?}: the error repeats a password: {err}"
        );
    }
}

#[test]
fn missing_config_file() {
    let err =
        Config::load_with_env(Path::new("/nonexistent/gatehouse.toml"), &|_| None).unwrap_err();
    assert!(
        format!("{err:#}").starts_with("cannot read config file /nonexistent/gatehouse.toml"),
        "{err:#}"
    );
}

/// `[admin]` with one token from a file and one from the environment.
const ADMIN: &str = r#"
[admin]
listen = "127.0.0.1:15480"
[[admin.tokens]]
name = "alice"
token_file = "secrets/alice.token"
[[admin.tokens]]
name = "bob"
token_env = "GATEHOUSE_BOB_TOKEN"

[approvals]
timeout = "90s"
mode = "reject"
webhook_url = "http://127.0.0.1:8080/hooks/approvals"
"#;

const ALICE_TOKEN: &str = "alice-0123456789abcdef0123456789";
const BOB_TOKEN: &str = "bob-0123456789abcdef0123456789";

fn admin_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("GATEHOUSE_ORDERS_PASSWORD", "pw-from-env"),
        ("GATEHOUSE_BOB_TOKEN", BOB_TOKEN),
    ]
}

#[test]
fn admin_and_approvals_default_to_off_and_wait() {
    let fx = Fixture::new();
    let config = fx.load(GOOD).unwrap();
    assert_eq!(config.admin, None, "no [admin]: no admin API");
    assert_eq!(config.approvals, ApprovalSettings::default());
    assert_eq!(config.approvals.timeout, Duration::from_secs(300));
    assert_eq!(config.approvals.mode, crate::approvals::ApprovalMode::Wait);
    assert_eq!(config.approvals.webhook_url, None);

    // An [admin] section with only tokens listens on loopback.
    write(&fx.root().join("secrets/alice.token"), ALICE_TOKEN, 0o600);
    let text = format!(
        "{GOOD}\n[[admin.tokens]]\nname = \"alice\"\ntoken_file = \"secrets/alice.token\"\n"
    );
    let config = fx.load(&text).unwrap();
    let admin = config.admin.unwrap();
    assert_eq!(admin.listen, SocketAddr::from(([127, 0, 0, 1], 15480)));
    assert_eq!(admin.tokens.len(), 1);
}

#[test]
fn admin_and_approvals_resolve() {
    let fx = Fixture::new();
    write(
        &fx.root().join("secrets/alice.token"),
        &format!("{ALICE_TOKEN}\n"),
        0o600,
    );
    let config = fx
        .load_env(&format!("{GOOD}{ADMIN}"), &admin_env())
        .unwrap();
    let admin = config.admin.as_ref().unwrap();
    assert_eq!(admin.listen, SocketAddr::from(([127, 0, 0, 1], 15480)));
    let tokens: Vec<(&str, &str)> = admin
        .tokens
        .iter()
        .map(|t| (t.name.as_str(), t.token.expose()))
        .collect();
    assert_eq!(tokens, [("alice", ALICE_TOKEN), ("bob", BOB_TOKEN)]);
    assert_eq!(config.approvals.timeout, Duration::from_secs(90));
    assert_eq!(
        config.approvals.mode,
        crate::approvals::ApprovalMode::Reject
    );
    assert_eq!(
        config
            .approvals
            .webhook_url
            .as_ref()
            .map(ToString::to_string),
        Some("http://127.0.0.1:8080/hooks/approvals".to_owned())
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let debug = format!("{config:?}");
    assert!(!debug.contains(ALICE_TOKEN) && !debug.contains(BOB_TOKEN));

    let open = format!("{GOOD}{ADMIN}").replace("127.0.0.1:15480", "0.0.0.0:15480");
    let config = fx.load_env(&open, &admin_env()).unwrap();
    let all = config.warnings.join("\n");
    assert!(
        all.contains("admin.listen: the admin API listens on 0.0.0.0:15480"),
        "{all}"
    );
}

#[test]
fn admin_and_approvals_mistakes_name_the_key() {
    let fx = Fixture::new();
    write(&fx.root().join("secrets/alice.token"), ALICE_TOKEN, 0o600);
    write(&fx.root().join("secrets/short.token"), "short", 0o600);
    let full = format!("{GOOD}{ADMIN}");
    let r = |from: &str, to: &str| {
        assert!(full.contains(from), "{from:?}");
        full.replace(from, to)
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "no tokens",
            format!("{GOOD}\n[admin]\nlisten = \"127.0.0.1:15480\"\n"),
            "admin.tokens: no tokens",
        ),
        (
            "bad listen address",
            r("127.0.0.1:15480", "localhost"),
            "admin.listen: \"localhost\" is not an IP address",
        ),
        (
            "unknown admin key",
            r("[admin]\n", "[admin]\nport = 1\n"),
            "unknown field `port`",
        ),
        (
            "unknown approvals key",
            r("[approvals]\n", "[approvals]\nwebhook = \"x\"\n"),
            "unknown field `webhook`",
        ),
        (
            "token in the config",
            r(
                "token_file = \"secrets/alice.token\"",
                "token = \"alice-0123456789abcdef\"",
            ),
            "admin.tokens[0].token: tokens must not be written in the config file",
        ),
        (
            "no token source",
            r("token_file = \"secrets/alice.token\"\n", ""),
            "admin.tokens[0]: give token_file or token_env",
        ),
        (
            "both token sources",
            r(
                "token_file = \"secrets/alice.token\"",
                "token_file = \"secrets/alice.token\"\ntoken_env = \"X\"",
            ),
            "admin.tokens[0]: set token_env or token_file, not both",
        ),
        (
            "token file missing",
            r("secrets/alice.token", "secrets/nope.token"),
            "admin.tokens[0].token_file: cannot read",
        ),
        (
            "token env unset",
            r("GATEHOUSE_BOB_TOKEN", "GATEHOUSE_UNSET_TOKEN"),
            "admin.tokens[1].token_env: environment variable GATEHOUSE_UNSET_TOKEN is not set",
        ),
        (
            "short token",
            r("secrets/alice.token", "secrets/short.token"),
            "admin.tokens[0]: the token must be at least 16 bytes",
        ),
        (
            "duplicate names",
            r("name = \"bob\"", "name = \"alice\""),
            "admin.tokens[1].name: \"alice\" is also an earlier token's name",
        ),
        (
            "reserved name",
            r("name = \"bob\"", "name = \"gatehouse\""),
            "admin.tokens[1].name: \"gatehouse\" is reserved",
        ),
        (
            "missing name",
            r("name = \"bob\"\n", ""),
            "admin.tokens[1].name: is missing",
        ),
        (
            "bad mode",
            r("mode = \"reject\"", "mode = \"queue\""),
            "approvals.mode: \"queue\" is not a mode",
        ),
        (
            "bad timeout",
            r("timeout = \"90s\"", "timeout = \"soon\""),
            "approvals.timeout: \"soon\" is not a duration",
        ),
        (
            "timeout too long",
            r("timeout = \"90s\"", "timeout = \"2days\""),
            "approvals.timeout: 2days is longer than the maximum 1day",
        ),
        (
            "https webhook",
            r("http://127.0.0.1:8080", "https://hooks.example.com"),
            "approvals.webhook_url: https webhooks are not supported yet",
        ),
        (
            "not a URL",
            r("http://127.0.0.1:8080/hooks/approvals", "hooks approvals"),
            "approvals.webhook_url: \"hooks approvals\" is not a URL",
        ),
        (
            "not http",
            r("http://127.0.0.1:8080/hooks/approvals", "ftp://x/y"),
            "approvals.webhook_url: \"ftp://x/y\" is not an http:// URL",
        ),
    ];
    for (name, text, expected) in cases {
        let err = match fx.load_env(&text, &admin_env()) {
            Ok(_) => panic!("case {name:?} should fail"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains(expected),
            "case {name:?}: {expected:?} not in:\n{err}"
        );
        assert!(
            !err.contains(ALICE_TOKEN),
            "case {name:?} repeats a token: {err}"
        );
    }

    // The same token twice.
    let env = vec![
        ("GATEHOUSE_ORDERS_PASSWORD", "pw-from-env"),
        ("GATEHOUSE_BOB_TOKEN", ALICE_TOKEN),
    ];
    let err = format!("{:#}", fx.load_env(&full, &env).unwrap_err());
    assert!(
        err.contains("admin.tokens[1]: the same token as an earlier one"),
        "{err}"
    );
}

#[test]
fn the_examples_commented_admin_section_is_valid() {
    let fx = Fixture::new();
    write(&fx.root().join("secrets/alice.token"), ALICE_TOKEN, 0o600);
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| {
            let keep = [
                "[admin]",
                "[[admin.tokens]]",
                "listen = ",
                "name = ",
                "token_file = ",
                "token_env = ",
                "webhook_url = ",
            ];
            match line.strip_prefix("# ") {
                Some(rest) if keep.iter().any(|k| rest.starts_with(k)) => rest,
                _ => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.contains("\n[admin]\n"), "{uncommented}");
    let env = [
        ("GATEHOUSE_ORDERS_PASSWORD", "pw"),
        ("GATEHOUSE_ADMIN_TOKEN_BOB", BOB_TOKEN),
    ];
    let config = fx.load_env(&uncommented, &env).unwrap();
    let admin = config.admin.unwrap();
    assert_eq!(admin.listen, SocketAddr::from(([127, 0, 0, 1], 15480)));
    let names: Vec<&str> = admin.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(config.approvals.webhook_url.is_some());
}

#[test]
fn jwks_and_policies_resolve_and_mistakes_name_the_key() {
    let fx = Fixture::new();
    let jwks = r#"{"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "idp-1", "x": "XG0p-iW8siWE7IOfHMHEuccCNlZ9TTNuVz3tAUpjQ_w", "y": "XUDcn0G9Inv_dc643LA2S8z_vEL3pN81ASBab3PD2AA"},
        {"kty": "oct", "kid": "shared", "k": "c2VjcmV0"}
    ]}"#;
    write(&fx.root().join("keys/idp.json"), jwks, 0o644);
    let extra = r#"
[policies.read]
targets = ["orders"]
allow = [{ ops = ["select"], relations = ["public.*"] }]
limits = { rows = 10 }
"#;
    let grants = "[grants]\nleeway = \"5s\"\njwks_file = \"keys/idp.json\"\n\
                  jwks_url = \"https://idp.example/jwks.json\"\njwks_refresh_min_interval = \"10s\"\n\
                  [[grants.policy_claims]]\nclaim = \"scope\"\nvalue = \"read\"\npolicy = \"read\"\n";
    let text = format!(
        "{}{extra}",
        GOOD.replace("[grants]\nleeway = \"5s\"\n", grants)
    );
    let config = fx.load(&text).unwrap();
    let g = &config.grants;
    assert_eq!(g.jwks_url.as_deref(), Some("https://idp.example/jwks.json"));
    assert_eq!(g.jwks_refresh_interval, Duration::from_secs(900));
    assert_eq!(g.jwks_refresh_min_interval, Duration::from_secs(10));
    assert!(g.key_set().unwrap().contains("idp-1"));
    assert!(
        config.warnings.iter().any(|w| w.contains("\"shared\"")),
        "{:?}",
        config.warnings
    );
    let claims = serde_json::json!({"scope": "openid read"});
    assert_eq!(g.policies.select(claims.as_object().unwrap()), ["read"]);
    assert_eq!(
        g.policies
            .plan(&["read"])
            .scope("orders")
            .unwrap()
            .limits
            .rows,
        Some(10)
    );

    let bad = |from: &str, to: &str, want: &str| {
        let text = format!(
            "{}{extra}",
            GOOD.replace("[grants]\nleeway = \"5s\"\n", grants)
        )
        .replace(from, to);
        let e = format!("{:#}", fx.load(&text).unwrap_err());
        assert!(e.contains(want), "{want:?} not in {e}");
    };
    bad(
        "jwks_url = \"https://idp.example/jwks.json\"",
        "jwks_url = \"ftp://x/\"",
        "grants.jwks_url: ",
    );
    bad(
        "policy = \"read\"",
        "policy = \"nope\"",
        "grants.policy_claims[0].policy: \"nope\" is not a [policies.NAME]",
    );
    bad(
        "targets = [\"orders\"]",
        "targets = [\"billing\"]",
        "policies.read.targets: \"billing\" is not a [targets.NAME]",
    );
    bad(
        "jwks_refresh_min_interval = \"10s\"",
        "jwks_refresh_min_interval = \"2h\"",
        "grants.jwks_refresh_min_interval: 2h is longer",
    );
    bad(
        "keys/idp.json",
        "keys/none.json",
        "grants.jwks_file: cannot read",
    );
    bad(
        "limits = { rows = 10 }",
        "limit = 3",
        "unknown field `limit`",
    );
}

/// An HTTP listener and an HTTP and a Kubernetes target beside `orders`.
const HTTP: &str = r#"
[http]
address = "127.0.0.1:18443"
max_body_bytes = "1MiB"

[targets.orders-api]
kind = "http"
url = "https://orders.internal:8443/api/"
hosts = ["Orders-API.example"]
[targets.orders-api.credential]
header = "X-Api-Key"
value_env = "ORDERS_API_KEY"
[targets.orders-api.masking]
keys = { password = "redact", "*token" = "partial" }

[targets.prod]
kind = "kubernetes"
url = "http://127.0.0.1:6443"
path_prefix = "/k8s/prod/"
impersonate = true
response_timeout = "5s"
[targets.prod.credential]
bearer_env = "PROD_TOKEN"
"#;

#[test]
fn http_targets_resolve() {
    let fx = Fixture::new();
    let config = fx
        .load_env(
            &format!("{GOOD}{HTTP}"),
            &[
                ("GATEHOUSE_ORDERS_PASSWORD", "pw"),
                ("ORDERS_API_KEY", "k-123"),
                ("PROD_TOKEN", "t-456"),
            ],
        )
        .unwrap();
    let http = config.http.as_ref().unwrap();
    assert_eq!(http.address.port(), 18443);
    assert_eq!(http.max_body_bytes, 1 << 20);
    assert_eq!(http.max_headers, 100);
    let api = config.targets["orders-api"].http.as_ref().unwrap();
    assert_eq!(api.kind, HttpKind::Http);
    assert!(api.tls);
    assert_eq!((api.host.as_str(), api.port), ("orders.internal", 8443));
    assert_eq!(api.base_path, "/api");
    assert_eq!(api.path_prefix, "/orders-api");
    assert_eq!(api.hosts, ["orders-api.example"]);
    assert_eq!(api.credential.header_name(), Some("x-api-key"));
    assert!(format!("{:?}", api.credential).contains("***"));
    assert!(!format!("{:?}", api.credential).contains("k-123"));
    assert_eq!(
        config.targets["orders-api"]
            .masking
            .as_ref()
            .unwrap()
            .keys
            .len(),
        2
    );
    let prod = config.targets["prod"].http.as_ref().unwrap();
    assert_eq!(prod.kind, HttpKind::Kubernetes);
    assert_eq!(prod.path_prefix, "/k8s/prod");
    assert!(prod.impersonate && !prod.tls);
    assert_eq!(prod.response_timeout, Duration::from_secs(5));
    assert_eq!(api.response_timeout, Duration::from_secs(60));
    assert_eq!(prod.credential.header_name(), Some("authorization"));
    assert!(config.targets["orders"].http.is_none());
    assert!(
        config
            .summary()
            .contains("HTTP listener 127.0.0.1:18443 (TLS)")
    );
}

#[test]
fn http_mistakes_name_the_key() {
    let fx = Fixture::new();
    let env = [
        ("GATEHOUSE_ORDERS_PASSWORD", "pw"),
        ("ORDERS_API_KEY", "k"),
        ("PROD_TOKEN", "t"),
    ];
    let cases = [
        (
            HTTP.replace("kind = \"http\"", "kind = \"grpc\""),
            "targets.orders-api.kind: \"grpc\" is not a kind",
        ),
        (
            HTTP.replace("https://orders.internal:8443/api/", "ftp://x"),
            "targets.orders-api.url: \"ftp://x\": the scheme must be http or https",
        ),
        (
            HTTP.replace("impersonate = true", "impersonate = true\ndatabase = \"x\""),
            "targets.prod.database: is for PostgreSQL targets",
        ),
        (
            HTTP.replace("value_env = \"ORDERS_API_KEY\"", ""),
            "targets.orders-api.credential: header needs value_env or value_file",
        ),
        (
            HTTP.replace(
                "bearer_env = \"PROD_TOKEN\"",
                "bearer_env = \"PROD_TOKEN\"\nheader = \"x\"\nvalue_env = \"ORDERS_API_KEY\"",
            ),
            "targets.prod.credential: set one credential",
        ),
        (
            HTTP.replace("max_body_bytes = \"1MiB\"", "max_headers = 0"),
            "http.max_headers: must be within 1..=10000",
        ),
        (
            HTTP.replace("\"password\" = \"redact\"", "password = \"scramble\"")
                .replace("password = \"redact\"", "password = \"scramble\""),
            "targets.orders-api.masking.keys.password:",
        ),
    ];
    for (http, expected) in cases {
        let err = fx
            .load_env(&format!("{GOOD}{http}"), &env)
            .expect_err(expected);
        assert!(format!("{err:#}").contains(expected), "{expected}\n{err:#}");
    }
    let pg_with_url = GOOD.replace("user = \"app\"", "user = \"app\"\nurl = \"http://x\"");
    let err = fx.load_env(&pg_with_url, &env).unwrap_err();
    assert!(
        format!("{err:#}").contains("targets.orders.url: is for kind = \"http\""),
        "{err:#}"
    );
}

#[test]
fn the_examples_commented_http_section_is_valid() {
    let fx = Fixture::new();
    let cert = std::fs::read_to_string(fx.root().join("certs/gatehouse.crt")).unwrap();
    write(&fx.root().join("certs/orders-ca.pem"), &cert, 0o644);
    write(&fx.root().join("certs/prod-ca.pem"), &cert, 0o644);
    write(&fx.root().join("secrets/prod-sa.token"), "sa-token", 0o600);
    let mut inside = false;
    let uncommented: String = EXAMPLE
        .lines()
        .map(|line| {
            if line == "# --- begin HTTP example ---" {
                inside = true;
            } else if line == "# --- end HTTP example ---" {
                inside = false;
            }
            match line.strip_prefix("# ") {
                Some(rest) if inside && !rest.starts_with("---") => rest.to_owned(),
                _ if line == "#" => String::new(),
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.contains("\n[http]\n"), "{uncommented}");
    let env = [
        ("GATEHOUSE_ORDERS_PASSWORD", "pw"),
        ("ORDERS_API_KEY", "key-1"),
    ];
    let config = fx.load_env(&uncommented, &env).unwrap();
    assert_eq!(config.http.unwrap().address.port(), 18443);
    assert_eq!(
        config.targets["prod"].http.as_ref().unwrap().kind,
        HttpKind::Kubernetes
    );
    assert_eq!(
        config.targets["orders-api"]
            .masking
            .as_ref()
            .unwrap()
            .keys
            .len(),
        3
    );
}
