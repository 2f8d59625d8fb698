use clap::Parser as _;
use gatehouse_core::grant::{GrantError, check_target};

use super::grant::{GrantArgs, mint};
use super::keygen::{KeygenArgs, generate};
use super::{Cli, Command};
use crate::config::Config;

/// 2026-11-25T18:00:00Z
const NOW: i64 = 1_795_629_600;

/// `gatehouse grant` with `cli`; a plan allowing everything unless `cli`
/// names rules or a plan file (tests about the plan do).
fn grant_args(cli: &[&str]) -> GrantArgs {
    let mut argv = vec!["gatehouse", "grant"];
    argv.extend_from_slice(cli);
    if !cli
        .iter()
        .any(|a| matches!(*a, "--allow" | "--approve" | "--plan"))
    {
        argv.extend(["--allow", "*"]);
    }
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Grant(args) => args,
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn keygen_then_grant_then_verify() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let pair = generate(&KeygenArgs {
        out: keys.clone(),
        name: "grant".into(),
        force: false,
    })
    .unwrap();
    assert_eq!(pair.private_key, keys.join("grant.key"));
    assert_eq!(pair.public_key, keys.join("grant.pub"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&pair.private_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let private_pem = std::fs::read_to_string(&pair.private_key).unwrap();
    let public_pem = std::fs::read_to_string(&pair.public_key).unwrap();
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));

    let key = pair.private_key.to_str().unwrap();
    let args = grant_args(&[
        "--key",
        key,
        "--sub",
        "agent-7",
        "--target",
        "orders",
        "--target",
        "billing",
        "--ttl",
        "15m",
        "--uses",
        "3",
        "--purpose",
        "refund ticket 4411",
        "--ticket",
        "OPS-4411",
    ]);
    let jti = "0193a5e2-7c1e-7d3a-9b1f-2c4d5e6f7a8b".to_owned();
    let token = mint(&args, NOW, jti.clone()).unwrap();
    assert_eq!(token.split('.').count(), 3);

    // The gateway side: a config naming the public key.
    std::fs::write(
        dir.path().join("gatehouse.toml"),
        r#"
        [listener]
        allow_plaintext = true
        [[grants.keys]]
        public_key = "keys/grant.pub"
        [targets.orders]
        host = "127.0.0.1"
        user = "app"
        "#,
    )
    .unwrap();
    let config = Config::load_with_env(&dir.path().join("gatehouse.toml"), &|_| None).unwrap();
    let verifier = config.grants.verifier().unwrap();
    assert_eq!(verifier.keys.iter().next().unwrap().kid(), pair.kid);

    let claims = verifier.verify(&token, NOW + 60).unwrap();
    assert_eq!(claims.iss, "gatehouse");
    assert_eq!(claims.aud, "gatehouse");
    assert_eq!(claims.sub, "agent-7");
    assert_eq!(claims.iat, NOW);
    assert_eq!(claims.nbf, NOW);
    assert_eq!(claims.exp, NOW + 15 * 60);
    assert_eq!(claims.jti, jti);
    assert_eq!(claims.purpose, "refund ticket 4411");
    assert_eq!(claims.ticket.as_deref(), Some("OPS-4411"));
    assert_eq!(claims.plan.uses, Some(3));
    let targets: Vec<&str> = claims.plan.targets.keys().map(String::as_str).collect();
    assert_eq!(targets, ["billing", "orders"]);
    check_target(&claims, "orders").unwrap();
    assert!(matches!(
        check_target(&claims, "payroll"),
        Err(GrantError::WrongTarget { .. })
    ));
    // 15 minutes and the 5 s leeway later it has expired.
    assert!(matches!(
        verifier.verify(&token, NOW + 15 * 60 + 5),
        Err(GrantError::Expired { .. })
    ));
}

#[test]
fn grant_defaults_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate(&KeygenArgs {
        out: dir.path().to_owned(),
        name: "grant".into(),
        force: false,
    })
    .unwrap();
    let key = pair.private_key.to_str().unwrap();
    let args = grant_args(&[
        "--key",
        key,
        "--sub",
        "a",
        "--target",
        "orders",
        "--purpose",
        "p",
        "--not-before-in",
        "10m",
        "--iss",
        "planner",
        "--aud",
        "gw-1",
        "--kid",
        "k-1",
    ]);
    let token = mint(&args, NOW, "j".to_owned()).unwrap();
    let public = gatehouse_core::grant::VerifyingKey::from_spki_pem(
        &std::fs::read_to_string(&pair.public_key).unwrap(),
    )
    .unwrap()
    .with_kid("k-1")
    .unwrap();
    let verifier = gatehouse_core::grant::Verifier {
        keys: gatehouse_core::grant::KeySet::from_keys([public]).unwrap(),
        issuer: "planner".to_owned(),
        audience: "gw-1".to_owned(),
        leeway_s: 0,
    };
    assert!(matches!(
        verifier.verify(&token, NOW),
        Err(GrantError::NotYetValid { nbf }) if nbf == NOW + 600
    ));
    let claims = verifier.verify(&token, NOW + 600).unwrap();
    assert_eq!(claims.iat, NOW);
    assert_eq!(
        claims.exp,
        NOW + 600 + 15 * 60,
        "ttl counts from nbf; default 15m"
    );
    assert_eq!(claims.plan.uses, None);
    assert_eq!(claims.ticket, None);
}

#[test]
fn grant_refuses_nonsense() {
    for argv in [
        vec!["--key", "k", "--sub", "a", "--purpose", "p"], // no target
        vec![
            "--key",
            "k",
            "--sub",
            "a",
            "--target",
            "t",
            "--purpose",
            "p",
            "--uses",
            "0",
        ],
        vec![
            "--key",
            "k",
            "--sub",
            "a",
            "--target",
            "t",
            "--purpose",
            "p",
            "--ttl",
            "soon",
        ],
        vec!["--key", "k", "--sub", "a", "--target", "t"], // no purpose
    ] {
        let mut full = vec!["gatehouse", "grant"];
        full.extend(argv.iter().copied());
        assert!(Cli::try_parse_from(&full).is_err(), "{argv:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let pair = generate(&KeygenArgs {
        out: dir.path().to_owned(),
        name: "grant".into(),
        force: false,
    })
    .unwrap();
    let key = pair.private_key.to_str().unwrap();
    for (argv, words) in [
        (vec!["--purpose", " "], "--purpose"),
        (vec!["--purpose", "p", "--ttl", "0s"], "--ttl"),
        (vec!["--purpose", "p", "--kid", ""], "--kid"),
    ] {
        let mut full = vec!["--key", key, "--sub", "a", "--target", "t"];
        full.extend(argv.iter().copied());
        let err = mint(&grant_args(&full), NOW, "j".to_owned()).unwrap_err();
        assert!(format!("{err:#}").contains(words), "{argv:?}: {err:#}");
    }
    let err = mint(
        &grant_args(&[
            "--key",
            "/nonexistent/grant.key",
            "--sub",
            "a",
            "--target",
            "t",
            "--purpose",
            "p",
        ]),
        NOW,
        "j".to_owned(),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("--key: cannot read /nonexistent/grant.key"),
        "{err:#}"
    );
    // A public key is not a signing key.
    let err = mint(
        &grant_args(&[
            "--key",
            pair.public_key.to_str().unwrap(),
            "--sub",
            "a",
            "--target",
            "t",
            "--purpose",
            "p",
        ]),
        NOW,
        "j".to_owned(),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("not an Ed25519 private key"),
        "{err:#}"
    );
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let args = KeygenArgs {
        out: dir.path().to_owned(),
        name: "grant".into(),
        force: false,
    };
    let first = generate(&args).unwrap();
    let before = std::fs::read(&first.private_key).unwrap();
    let err = generate(&args).unwrap_err();
    assert!(
        format!("{err:#}").contains("already exists; pass --force"),
        "{err:#}"
    );
    assert_eq!(
        std::fs::read(&first.private_key).unwrap(),
        before,
        "untouched"
    );

    // Only the public key left over: still refused.
    std::fs::remove_file(&first.private_key).unwrap();
    assert!(generate(&args).is_err());
    assert!(!first.private_key.exists(), "nothing written when refusing");

    let second = generate(&KeygenArgs {
        out: dir.path().to_owned(),
        name: "grant".into(),
        force: true,
    })
    .unwrap();
    assert_ne!(second.kid, first.kid);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&second.private_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn serve_and_check_config_parse() {
    let cli =
        Cli::try_parse_from(["gatehouse", "serve", "--config", "g.toml", "--io", "tokio"]).unwrap();
    assert!(matches!(cli.command, Command::Serve(_)));
    assert!(
        Cli::try_parse_from([
            "gatehouse",
            "serve",
            "--config",
            "g.toml",
            "--io",
            "io_uring"
        ])
        .is_ok()
    );
    assert!(
        Cli::try_parse_from(["gatehouse", "serve", "--config", "g.toml", "--io", "fast"]).is_err()
    );
    let cli = Cli::try_parse_from(["gatehouse", "check-config", "--config", "g.toml"]).unwrap();
    assert!(matches!(cli.command, Command::CheckConfig(_)));
    let cli = Cli::try_parse_from(["gatehouse", "engines"]).unwrap();
    assert!(matches!(cli.command, Command::Engines));
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory as _;
    Cli::command().debug_assert();
}

#[test]
fn keygen_name_seal_writes_a_seal_key_pair_beside_the_grant_pair() {
    let dir = tempfile::tempdir().unwrap();
    let parse = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().command {
        Command::Keygen(args) => args,
        other => panic!("parsed as {other:?}"),
    };
    let out = dir.path().to_str().unwrap();
    let grant = generate(&parse(&["gatehouse", "keygen", "--out", out])).unwrap();
    let seal = generate(&parse(&[
        "gatehouse",
        "keygen",
        "--name",
        "seal",
        "--out",
        out,
    ]))
    .unwrap();
    assert!(grant.private_key.ends_with("grant.key"));
    assert_eq!(seal.private_key, dir.path().join("seal.key"));
    assert_eq!(seal.public_key, dir.path().join("seal.pub"));
    let key = gatehouse_core::event::SealKey::from_pkcs8_pem(
        &std::fs::read_to_string(&seal.private_key).unwrap(),
    )
    .unwrap();
    let public = gatehouse_core::event::SealPublicKey::from_spki_pem(
        &std::fs::read_to_string(&seal.public_key).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (key.kid(), public.kid()),
        (seal.kid.as_str(), seal.kid.as_str())
    );
    assert!(
        Cli::try_parse_from(["gatehouse", "keygen", "--name", "../x", "--out", out]).is_err(),
        "a name is a file name, not a path"
    );
}

#[test]
fn grant_plans_from_flags_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let pair = generate(&KeygenArgs {
        out: dir.path().to_owned(),
        name: "grant".into(),
        force: false,
    })
    .unwrap();
    let key = pair.private_key.to_str().unwrap();
    let base = ["--key", key, "--sub", "a", "--purpose", "p"];
    let claims = |extra: &[&str]| {
        let mut argv = base.to_vec();
        argv.extend_from_slice(extra);
        let token = mint(&grant_args(&argv), NOW, "j".to_owned())?;
        let payload = token.split('.').nth(1).unwrap().to_owned();
        use base64::Engine as _;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        anyhow::Ok(serde_json::from_slice::<serde_json::Value>(&json).unwrap())
    };

    let c = claims(&[
        "--target",
        "orders",
        "--allow",
        "select:public.invoices,public.payments",
        "--allow",
        "update:public.invoices",
        "--approve",
        "delete:public.invoices",
        "--max-statements",
        "100",
        "--max-rows",
        "5000",
        "--max-duration",
        "10m",
    ])
    .unwrap();
    let scope = &c["plan"]["targets"]["orders"];
    assert_eq!(scope["allow"][0]["relations"][1], "public.payments");
    assert_eq!(scope["allow"][1]["ops"][0], "update");
    assert_eq!(scope["approve"][0]["ops"][0], "delete");
    assert_eq!(scope["limits"]["statements"], 100);
    assert_eq!(scope["limits"]["rows"], 5000);
    assert_eq!(scope["limits"]["duration_s"], 600);

    // A plan file, with the flags applied to each of its targets.
    let file = dir.path().join("plan.toml");
    std::fs::write(
        &file,
        "uses = 1\n[targets.orders]\nallow = [{ ops = [\"select\"], relations = [\"public.*\"] }]\n[targets.billing]\n",
    )
    .unwrap();
    let c = claims(&[
        "--plan",
        file.to_str().unwrap(),
        "--approve",
        "update:public.*",
    ])
    .unwrap();
    assert_eq!(c["plan"]["uses"], 1);
    assert_eq!(
        c["plan"]["targets"]["billing"]["approve"][0]["ops"][0],
        "update"
    );
    assert_eq!(
        c["plan"]["targets"]["orders"]["allow"][0]["ops"][0],
        "select"
    );

    // A plan that allows nothing is refused, naming the fix.
    let err = claims(&["--target", "orders", "--plan", file.to_str().unwrap()]).unwrap_err();
    assert!(
        format!("{err:#}").contains("allows nothing on target \"billing\""),
        "{err:#}"
    );
}
