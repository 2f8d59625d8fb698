//! `gatehouse check-config` accepts the repository's example config (once
//! the files it refers to exist) and refuses configs with mistakes, exiting
//! non-zero with a message that names the key at fault.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gatehouse_tests::TestCerts;
use gatehouse_tests::command::{DEFAULT_TIMEOUT, render, run, run_ok};
use gatehouse_tests::{Gateway, Target, User};
use tempfile::TempDir;

/// The password variable the example's `orders` target names.
const PASSWORD_ENV: &str = "GATEHOUSE_ORDERS_PASSWORD";

/// The repository's example config.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("gatehouse.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example()).expect("examples/gatehouse.toml")
}

/// A temp dir holding `config` as `gatehouse.toml`, with the files the
/// example refers to (relative to the config file): `keys/grant.pub` and
/// `keys/seal.key` from `gatehouse keygen`, and `certs/gatehouse.{crt,key}`.
struct ExampleDir {
    dir: TempDir,
    kid: String,
}

impl ExampleDir {
    fn new(config: &str) -> ExampleDir {
        let dir = tempfile::Builder::new()
            .prefix("gatehouse-check-config-")
            .tempdir()
            .expect("temp dir");
        let out = run_ok(
            Command::new(Gateway::binary())
                .arg("keygen")
                .arg("--out")
                .arg(dir.path().join("keys")),
            DEFAULT_TIMEOUT,
        );
        run_ok(
            Command::new(Gateway::binary())
                .arg("keygen")
                .args(["--name", "seal", "--out"])
                .arg(dir.path().join("keys")),
            DEFAULT_TIMEOUT,
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kid = stdout
            .lines()
            .find_map(|l| l.strip_prefix("kid: "))
            .unwrap_or_else(|| panic!("keygen printed no kid:\n{}", render(&out)))
            .trim()
            .to_owned();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).expect("mkdir certs");
        TestCerts::generate(&certs);
        std::fs::write(dir.path().join("gatehouse.toml"), config).expect("write config");
        ExampleDir { dir, kid }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("gatehouse.toml")
    }

    /// `gatehouse check-config --config <dir>/gatehouse.toml`, run from `/`
    /// (relative paths are the config file's, not the working
    /// directory's), with the password variable set.
    fn check(&self) -> Output {
        check_config(&self.config(), &[(PASSWORD_ENV, "not-the-real-one")])
    }
}

fn check_config(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(Gateway::binary());
    cmd.arg("check-config")
        .arg("--config")
        .arg(config)
        .current_dir("/")
        .env_remove("GATEHOUSE_CONFIG")
        .env_remove(PASSWORD_ENV)
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, DEFAULT_TIMEOUT)
}

/// The check must fail, and its stderr must name each of `words`; returns
/// the stderr.
fn assert_refused(what: &str, out: &Output, words: &[&str]) -> String {
    assert!(
        !out.status.success(),
        "{what}: check-config accepted it\n{}",
        render(out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    for word in words {
        assert!(
            stderr.contains(word),
            "{what}: the error does not name {word:?}\n{}",
            render(out)
        );
    }
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{what}: {}",
        render(out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("config OK"),
        "{what}: {}",
        render(out)
    );
    stderr
}

/// `text` with `from` (which must be there) replaced by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example no longer has {from:?}");
    text.replacen(from, to, 1)
}

#[test]
fn the_example_config_checks_out() {
    // The example names the variable the test support would set for the
    // `orders` target.
    assert_eq!(Target::for_user(User::App).password_env(), PASSWORD_ENV);
    let text = example_text();
    assert!(text.contains(PASSWORD_ENV));

    let dir = ExampleDir::new(&text);
    let out = dir.check();
    assert!(
        out.status.success(),
        "check-config refused the example\n{}",
        render(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("config OK"), "{}", render(&out));
    assert!(stdout.contains("orders"), "{}", render(&out));
    // The key id a grant's `kid` must name: the one keygen printed.
    assert!(stdout.contains(&dir.kid), "{}", render(&out));
    // Relative paths resolve against the config file's directory.
    let store = dir.dir.path().join("data").join("store");
    assert!(
        stdout.contains(&*store.to_string_lossy()),
        "the store is not {}\n{}",
        store.display(),
        render(&out)
    );
    // Checking starts nothing and writes nothing.
    assert!(
        !store.exists(),
        "check-config created the store {}",
        store.display()
    );
}

#[test]
fn the_example_without_its_password_variable_names_it() {
    let dir = ExampleDir::new(&example_text());
    let out = check_config(&dir.config(), &[]);
    assert_refused(
        "no password variable",
        &out,
        &["targets.orders.password_env", PASSWORD_ENV],
    );
}

#[test]
fn mistakes_are_refused_and_named() {
    let text = example_text();
    let secret = "hunter2-written-in-the-file";
    let target_start = text
        .find("[targets.orders]")
        .expect("the example has [targets.orders]");

    struct Mistake {
        what: &'static str,
        config: String,
        words: Vec<&'static str>,
    }
    let mistakes = vec![
        Mistake {
            what: "no targets",
            // Everything from the only target on is comments and that
            // target's keys.
            config: text[..target_start].to_owned(),
            words: vec!["targets"],
        },
        Mistake {
            what: "a password in the file",
            config: edit(
                &text,
                "password_env = \"GATEHOUSE_ORDERS_PASSWORD\"",
                &format!("password_env = \"GATEHOUSE_ORDERS_PASSWORD\"\npassword = \"{secret}\""),
            ),
            words: vec!["targets.orders.password", "password_env"],
        },
        Mistake {
            what: "a missing key file",
            config: edit(
                &text,
                "public_key = \"keys/grant.pub\"",
                "public_key = \"keys/rotated-away.pub\"",
            ),
            words: vec!["grants.keys", "public_key", "rotated-away.pub"],
        },
        Mistake {
            what: "a bad durability value",
            config: edit(
                &text,
                "durability = \"fsync\"",
                "durability = \"eventually\"",
            ),
            words: vec!["durability", "eventually", "fsync"],
        },
        Mistake {
            what: "a missing certificate",
            config: edit(
                &text,
                "cert = \"certs/gatehouse.crt\"",
                "cert = \"certs/expired.crt\"",
            ),
            words: vec!["tls.cert", "expired.crt"],
        },
        Mistake {
            what: "a seal key that is a public key",
            config: edit(
                &text,
                "seal_key = \"keys/seal.key\"",
                "seal_key = \"keys/seal.pub\"",
            ),
            words: vec!["store.seal_key", "seal.pub", "PKCS#8"],
        },
        Mistake {
            what: "a misspelt key",
            config: edit(&text, "connect_timeout = \"5s\"", "conect_timeout = \"5s\""),
            words: vec!["conect_timeout"],
        },
    ];

    for m in &mistakes {
        let dir = ExampleDir::new(&m.config);
        let out = dir.check();
        let stderr = assert_refused(m.what, &out, &m.words);
        assert!(
            !stderr.contains(secret),
            "{}: the error repeats the password\n{}",
            m.what,
            render(&out)
        );
        assert_eq!(out.status.code(), Some(1), "{}: {}", m.what, render(&out));
    }
}

#[test]
fn without_a_seal_key_the_config_checks_out_with_a_warning() {
    let text = edit(&example_text(), "seal_key = \"keys/seal.key\"", "");
    let dir = ExampleDir::new(&text);
    let out = dir.check();
    assert!(out.status.success(), "{}", render(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("unsealed"), "{}", render(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: store.seal_key: not set"),
        "{}",
        render(&out)
    );
}

/// `gatehouse engines` says which IO engines can run here: tokio always,
/// io_uring with the reason when not, and its exit status says which.
#[test]
fn engines_says_which_io_engines_can_run() {
    let out = run(
        Command::new(Gateway::binary()).arg("engines"),
        DEFAULT_TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tokio: available"), "{}", render(&out));
    if out.status.success() {
        assert!(stdout.contains("uring: available"), "{}", render(&out));
    } else {
        assert!(stdout.contains("uring: unavailable: "), "{}", render(&out));
    }
}
