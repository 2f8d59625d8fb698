//! Every way a grant is refused: the client gets a FATAL error with the
//! SQLSTATE of the refusal (`28P01` when the password is not a valid grant,
//! `28000` when a genuine grant does not allow this connection) and a
//! message that says why — through psql and through tokio-postgres, never
//! with a Rust panic or backtrace — and every refusal is recorded in the
//! store with its reason.
//!
//! Needs the gateway binary: `cargo build --workspace --bins` first.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::event::{CloseReason, Refusal};
use gatehouse_core::grant::{Claims, Plan, SigningKey, TargetScope, sign};
use gatehouse_store::{Reader, SessionSummary};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{
    APP_PASSWORD, DATABASE, Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, Target, User,
};

/// A second configured target, on the same database.
const OTHER_TARGET: &str = "billing";
/// A database name that names no target.
const NO_SUCH_TARGET: &str = "nowhere";

/// Words that would mean a Rust panic or backtrace reached the client.
const PANIC_MARKERS: [&str; 5] = [
    "panicked",
    "backtrace",
    "RUST_BACKTRACE",
    ".rs:",
    "called `Option::unwrap()`",
];

/// One way to be refused.
struct Case {
    name: &'static str,
    /// The password the client sends.
    token: String,
    /// The database (target) the client asks for.
    dbname: &'static str,
    sqlstate: &'static str,
    reason: Refusal,
    /// Each must appear in the message the client gets.
    words: Vec<String>,
    /// The grant's `jti`, when the refusal comes after the signature was
    /// checked (so the gateway knows whose grant it was).
    known_jti: Option<String>,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Claims for `orders` that the gateway would accept, valid from `now`
/// for 15 minutes; each test case changes what it is about.
fn valid_claims(now: i64, jti: &str) -> Claims {
    Claims {
        iss: "gatehouse".to_owned(),
        sub: "agent-7".to_owned(),
        aud: "gatehouse".to_owned(),
        exp: now + 900,
        nbf: now,
        iat: now,
        jti: jti.to_owned(),
        purpose: "grant refusal test".to_owned(),
        ticket: None,
        plan: Plan {
            targets: BTreeMap::from([(DATABASE.to_owned(), TargetScope::default())]),
            uses: None,
        },
    }
}

fn b64_json(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("JSON"))
}

fn jti_of(token: &str) -> String {
    decode_claims(token).expect("a JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned()
}

fn assert_no_panic_text(what: &str, text: &str) {
    for marker in PANIC_MARKERS {
        assert!(
            !text.contains(marker),
            "{what} shows Rust internals ({marker:?}):\n{text}"
        );
    }
}

/// Builds every case against `gw`, minting what it needs.
fn cases(gw: &Gateway) -> Vec<Case> {
    let key_pem = std::fs::read_to_string(gw.signing_key()).expect("signing key");
    let key = SigningKey::from_pkcs8_pem(&key_pem).expect("the gateway's signing key");
    let now = now_s();
    let signed = |claims: &Claims| sign(claims, &key).expect("sign");
    let words = |ws: &[&str]| ws.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let mut cases = Vec::new();

    // Expired long enough ago that the leeway (5s) does not save it.
    let mut expired = valid_claims(now - 3600, "refusal-expired");
    expired.exp = now - 600;
    cases.push(Case {
        name: "expired",
        token: signed(&expired),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::Expired,
        words: words(&["expired"]),
        known_jti: None,
    });

    // Not valid for another two hours (the CLI case below makes one hour,
    // so the messages differ).
    let mut early = valid_claims(now, "refusal-not-yet-valid");
    early.nbf = now + 7200;
    early.exp = now + 9000;
    cases.push(Case {
        name: "not yet valid",
        token: signed(&early),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::NotYetValid,
        words: words(&["not valid before"]),
        known_jti: None,
    });

    // The same through the CLI: `--not-before-in`.
    cases.push(Case {
        name: "not yet valid (gatehouse grant --not-before-in)",
        token: gw.grant(&GrantArgs {
            extra: vec!["--not-before-in".into(), "1h".into()],
            ..GrantArgs::default()
        }),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::NotYetValid,
        words: words(&["not valid before"]),
        known_jti: None,
    });

    cases.push(Case {
        name: "wrong audience",
        token: gw.grant(&GrantArgs {
            extra: vec!["--aud".into(), "another-gateway".into()],
            ..GrantArgs::default()
        }),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::WrongAudience,
        words: words(&["meant for", "another-gateway", "not for this gateway"]),
        known_jti: None,
    });

    cases.push(Case {
        name: "wrong issuer",
        token: gw.grant(&GrantArgs {
            extra: vec!["--iss".into(), "someone-else".into()],
            ..GrantArgs::default()
        }),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::WrongIssuer,
        words: words(&["issued by", "someone-else", "does not trust"]),
        known_jti: None,
    });

    // Signed with a key pair the gateway has never heard of.
    let other_keys = gw.dir().join("other-keys");
    let out = Gateway::cli(["keygen".as_ref(), "--out".as_ref(), other_keys.as_os_str()]);
    assert!(out.status.success(), "keygen: {out:?}");
    let other_pem = std::fs::read_to_string(other_keys.join("grant.key")).expect("other key");
    let other = SigningKey::from_pkcs8_pem(&other_pem).expect("other key");
    assert_ne!(other.kid(), key.kid());
    cases.push(Case {
        name: "unknown key",
        token: sign(&valid_claims(now, "refusal-unknown-key"), &other).expect("sign"),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::UnknownKey,
        words: words(&["signed with key", other.kid(), "does not know"]),
        known_jti: None,
    });

    // A genuine grant whose payload was edited afterwards (to another agent
    // and more uses), signature kept.
    let genuine = gw.grant(&GrantArgs {
        uses: Some(1),
        ..GrantArgs::default()
    });
    let parts: Vec<&str> = genuine.split('.').collect();
    assert_eq!(parts.len(), 3);
    let mut payload = decode_claims(&genuine).expect("claims");
    payload["sub"] = "agent-evil".into();
    payload["plan"]["uses"] = 1000.into();
    let forged = format!("{}.{}.{}", parts[0], b64_json(&payload), parts[2]);
    cases.push(Case {
        name: "forged signature",
        token: forged,
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::BadSignature,
        words: words(&["signature is not valid"]),
        known_jti: None,
    });

    // `alg: none`, no signature at all.
    let header = serde_json::json!({"alg": "none", "typ": "JWT"});
    let claims = serde_json::to_value(valid_claims(now, "refusal-alg-none")).expect("JSON");
    cases.push(Case {
        name: "alg none",
        token: format!("{}.{}.", b64_json(&header), b64_json(&claims)),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::BadSignature,
        words: words(&["\"none\"", "only EdDSA"]),
        known_jti: None,
    });

    // A grant for `orders`, used on the other configured target.
    let for_orders = gw.grant(&GrantArgs::default());
    cases.push(Case {
        name: "wrong target (another configured target)",
        known_jti: Some(jti_of(&for_orders)),
        token: for_orders,
        dbname: OTHER_TARGET,
        sqlstate: "28000",
        reason: Refusal::WrongTarget,
        words: words(&["does not allow target", OTHER_TARGET]),
    });

    // A grant for a target name that is not `orders`, used on `orders`.
    let for_other_name = gw.grant(&GrantArgs {
        target: "orders_archive".to_owned(),
        ..GrantArgs::default()
    });
    cases.push(Case {
        name: "wrong target (grant names another target)",
        known_jti: Some(jti_of(&for_other_name)),
        token: for_other_name,
        dbname: DATABASE,
        sqlstate: "28000",
        reason: Refusal::WrongTarget,
        words: words(&["does not allow target", DATABASE]),
    });

    cases.push(Case {
        name: "unknown target",
        token: gw.grant(&GrantArgs::default()),
        dbname: NO_SUCH_TARGET,
        sqlstate: "28000",
        reason: Refusal::UnknownTarget,
        words: words(&["names no target", NO_SUCH_TARGET]),
        known_jti: None,
    });

    // Longer than any grant, but a valid password message.
    cases.push(Case {
        name: "oversized password",
        token: "x".repeat(9_000),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::Malformed,
        words: words(&["9000 bytes", "longer than any grant"]),
        known_jti: None,
    });

    // Longer than a startup-phase message may be: refused before it is
    // read whole.
    cases.push(Case {
        name: "huge password",
        token: "y".repeat(20_000),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::Malformed,
        words: words(&["too long"]),
        known_jti: None,
    });

    cases.push(Case {
        name: "garbage password",
        token: "hunter2".to_owned(),
        dbname: DATABASE,
        sqlstate: "28P01",
        reason: Refusal::Malformed,
        words: words(&["not a grant"]),
        known_jti: None,
    });

    cases
}

/// What the refused client saw, to find the refusal in the store.
struct Seen {
    message: String,
}

/// Connects with psql and with tokio-postgres; both must be refused as
/// `case` says. Returns the message tokio-postgres got.
async fn expect_refused(gw: &Gateway, case: &Case) -> Seen {
    // psql: exits non-zero with the FATAL message on stderr.
    let out = Psql::new(gw.conn_string_to(case.dbname, &case.token))
        .command("select 1")
        .run();
    let stderr = out.assert_failure();
    assert!(
        stderr.contains("FATAL"),
        "{}: psql did not get a FATAL error:\n{out}",
        case.name
    );
    for word in &case.words {
        assert!(
            stderr.contains(word.as_str()),
            "{}: psql's error does not say {word:?}:\n{out}",
            case.name
        );
    }
    assert_no_panic_text(case.name, stderr);
    assert!(
        out.stdout.is_empty(),
        "{}: psql printed rows:\n{out}",
        case.name
    );

    // tokio-postgres: the error carries the SQLSTATE.
    let mut config = gw.pg_config(&case.token);
    config.dbname(case.dbname);
    let err = match gw.try_connect_with(&config).await {
        Ok(_) => panic!("{}: tokio-postgres was let in", case.name),
        Err(e) => e,
    };
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{}: not a server error: {err:?}", case.name));
    assert_eq!(db.severity(), "FATAL", "{}: {db:?}", case.name);
    assert_eq!(db.code().code(), case.sqlstate, "{}: {db:?}", case.name);
    for word in &case.words {
        assert!(
            db.message().contains(word.as_str()),
            "{}: the message does not say {word:?}: {:?}",
            case.name,
            db.message()
        );
    }
    assert_no_panic_text(case.name, db.message());
    assert!(
        stderr.contains(db.message()),
        "{}: psql and tokio-postgres got different messages:\npsql: {stderr}\ntokio-postgres: {}",
        case.name,
        db.message()
    );
    Seen {
        message: db.message().to_owned(),
    }
}

#[tokio::test]
async fn every_refusal_says_why_with_the_right_sqlstate_and_is_recorded() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(
        &pg,
        GatewayOptions {
            extra_targets: vec![Target {
                name: OTHER_TARGET.to_owned(),
                database: DATABASE.to_owned(),
                user: User::App.name().to_owned(),
                password: Some(APP_PASSWORD.to_owned()),
            }],
            ..GatewayOptions::default()
        },
    );

    let mut cases = cases(&gw);

    // Used up: a single-use grant, used once.
    let single = gw.grant(&GrantArgs {
        uses: Some(1),
        ..GrantArgs::default()
    });
    let (client, _conn) = gw.connect(&single).await;
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);
    cases.push(Case {
        name: "used up",
        known_jti: Some(jti_of(&single)),
        token: single,
        dbname: DATABASE,
        sqlstate: "28000",
        reason: Refusal::UsedUp,
        words: vec!["used".to_owned(), "new grant".to_owned()],
    });

    let mut seen = Vec::new();
    for case in &cases {
        seen.push(expect_refused(&gw, case).await);
    }

    // None of it hurt the gateway: a good grant still works.
    let token = gw.grant(&GrantArgs::default());
    let out = Psql::new(gw.conn_string(&token)).command("select 42").run();
    assert_eq!(out.assert_success(), "42");
    let log = gw.log();
    assert!(!log.contains("panicked"), "the gateway panicked:\n{log}");

    // Every refusal is in the store, with its reason.
    gw.stop();
    let reader = Reader::open(&gw.store_dir()).expect("open the store");
    let summaries: Vec<SessionSummary> = reader
        .sessions()
        .collect::<Result<_, _>>()
        .expect("read summaries");
    let refused: Vec<&SessionSummary> = summaries.iter().filter(|s| s.refused.is_some()).collect();
    for (case, seen) in cases.iter().zip(&seen) {
        let matching: Vec<&SessionSummary> = refused
            .iter()
            .copied()
            .filter(|s| {
                let r = s.refused.as_ref().expect("refused");
                r.message == seen.message && r.target == case.dbname
            })
            .collect();
        assert_eq!(
            matching.len(),
            2,
            "{}: expected the psql and the tokio-postgres refusal in the store, found {matching:#?}",
            case.name
        );
        for s in matching {
            let r = s.refused.as_ref().expect("refused");
            assert_eq!(r.reason, case.reason, "{}: {s:#?}", case.name);
            assert!(
                s.opened.is_none(),
                "{}: refused and opened: {s:#?}",
                case.name
            );
            assert_eq!(s.statements, 0, "{}: {s:#?}", case.name);
            assert_eq!(
                s.closed.as_ref().map(|c| c.reason),
                Some(CloseReason::Refused),
                "{}: {s:#?}",
                case.name
            );
            assert!(
                r.client_addr.starts_with("127.0.0.1:"),
                "{}: {r:?}",
                case.name
            );
            if let Some(jti) = &case.known_jti {
                assert_eq!(r.jti.as_ref(), Some(jti), "{}: {r:?}", case.name);
                assert_eq!(
                    r.subject.as_deref(),
                    Some("agent-7"),
                    "{}: {r:?}",
                    case.name
                );
            }
            // The recorded events decode.
            let events: Vec<_> = reader
                .events(s.id)
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{}: events of {}: {e}", case.name, s.id));
            assert_eq!(events.len() as u64, s.events, "{}", case.name);
        }
    }
    assert_eq!(
        refused.len(),
        2 * cases.len(),
        "refusals that no case accounts for: {refused:#?}"
    );
    // The used-up grant's one use, and the final check, opened sessions.
    let opened = summaries.iter().filter(|s| s.opened.is_some()).count();
    assert_eq!(opened, 2, "{summaries:#?}");
}

/// `[grants] leeway = "5s"`: a grant that expired a moment ago, or becomes
/// valid in a moment, is accepted; one well outside the leeway is not.
#[tokio::test]
async fn the_leeway_forgives_small_clock_differences() {
    let pg = PgCluster::start();
    let gw = Gateway::start(&pg, GatewayOptions::default());
    let key_pem = std::fs::read_to_string(gw.signing_key()).expect("signing key");
    let key = SigningKey::from_pkcs8_pem(&key_pem).expect("the gateway's signing key");
    let now = now_s();

    let mut just_expired = valid_claims(now - 600, "leeway-just-expired");
    just_expired.exp = now - 1;
    let mut almost_valid = valid_claims(now, "leeway-almost-valid");
    almost_valid.nbf = now + 1;
    for claims in [&just_expired, &almost_valid] {
        let token = sign(claims, &key).expect("sign");
        let (client, _conn) = gw.connect(&token).await;
        let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1, "{}", claims.jti);
    }

    let mut long_expired = valid_claims(now - 600, "leeway-long-expired");
    long_expired.exp = now - 30;
    let token = sign(&long_expired, &key).expect("sign");
    let err = match gw.try_connect(&token).await {
        Ok(_) => panic!("a grant expired 30s ago was accepted with a 5s leeway"),
        Err(e) => e,
    };
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "28P01", "{db:?}");
    assert!(db.message().contains("expired"), "{db:?}");
}
