use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::pkcs8::spki::EncodePublicKey as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::event::Refusal;

/// 2026-11-25T18:00:00Z
const NOW: i64 = 1_795_629_600;
const LEEWAY: u64 = 5;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_secret_bytes(&[seed; 32]).unwrap()
}

fn verifier_for(keys: &[&SigningKey]) -> Verifier {
    Verifier {
        keys: KeySet::from_keys(keys.iter().map(|k| k.verifying_key().clone())).unwrap(),
        issuer: "gatehouse".to_owned(),
        audience: "gatehouse".to_owned(),
        leeway_s: LEEWAY,
    }
}

fn claims() -> Claims {
    Claims {
        iss: "gatehouse".to_owned(),
        sub: "agent-7".to_owned(),
        aud: "gatehouse".to_owned(),
        exp: NOW + 900,
        nbf: NOW,
        iat: NOW,
        jti: "0193a5e2-7c1e-7d3a-9b1f-2c4d5e6f7a8b".to_owned(),
        purpose: "refund ticket 4411".to_owned(),
        ticket: Some("OPS-4411".to_owned()),
        plan: Plan {
            targets: BTreeMap::from([("orders".to_owned(), TargetScope::default())]),
            uses: Some(1),
        },
    }
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// A token whose header and payload are given as JSON, signed by `key`
/// with EdDSA whatever the header says.
fn signed_raw(header: &Value, payload: &Value, key: &SigningKey) -> String {
    use ed25519_dalek::Signer as _;
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let der = key.encoding_key().inner().to_vec();
    let dalek =
        <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(&der)
            .unwrap();
    let sig = dalek.sign(message.as_bytes());
    format!("{message}.{}", b64(&sig.to_bytes()))
}

/// `claims()` as JSON, changed by `edit`, signed by `key` with its kid.
fn signed_payload(
    key: &SigningKey,
    edit: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> String {
    let mut payload = serde_json::to_value(claims()).unwrap();
    edit(payload.as_object_mut().unwrap());
    signed_raw(
        &json!({"alg": "EdDSA", "typ": "JWT", "kid": key.kid()}),
        &payload,
        key,
    )
}

fn with_claims(edit: impl FnOnce(&mut Claims)) -> String {
    let mut c = claims();
    edit(&mut c);
    sign(&c, &key(1)).unwrap()
}

#[test]
fn verify_table() {
    let k1 = key(1);
    let k2 = key(2);
    let v = verifier_for(&[&k1]);
    let v2 = verifier_for(&[&k1, &k2]);
    let pub_raw = k1.verifying_key().to_bytes().unwrap();
    let pub_pem = ed25519_dalek::VerifyingKey::from_bytes(&pub_raw)
        .unwrap()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let payload = serde_json::to_value(claims()).unwrap();

    let forged = sign(&claims(), &key(3).with_kid(k1.kid()).unwrap()).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(payload.to_string().as_bytes())
    );
    let hs256 = |secret: &[u8]| {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(k1.kid().to_owned());
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(secret)).unwrap()
    };
    let tampered = {
        let good = sign(&claims(), &k1).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = claims();
        c.plan
            .targets
            .insert("billing".to_owned(), TargetScope::default());
        let p = b64(serde_json::to_string(&c).unwrap().as_bytes());
        format!("{}.{p}.{}", parts[0], parts[2])
    };
    let no_kid = signed_raw(&json!({"alg": "EdDSA", "typ": "JWT"}), &payload, &k1);
    let huge = with_claims(|c| c.purpose = "x".repeat(MAX_TOKEN_LEN));
    let leeway = LEEWAY as i64;

    type Expect = Result<(), GrantError>;
    let cases: Vec<(&str, &Verifier, String, Expect)> = vec![
        ("valid", &v, sign(&claims(), &k1).unwrap(), Ok(())),
        (
            "valid with whitespace",
            &v,
            format!(" {}\n", sign(&claims(), &k1).unwrap()),
            Ok(()),
        ),
        (
            "second key of two",
            &v2,
            sign(&claims(), &k2).unwrap(),
            Ok(()),
        ),
        ("no ticket", &v, with_claims(|c| c.ticket = None), Ok(())),
        ("no kid, one key", &v, no_kid.clone(), Ok(())),
        (
            "forged signature (other key, same kid)",
            &v,
            forged,
            Err(GrantError::BadSignature),
        ),
        (
            "tampered payload",
            &v,
            tampered,
            Err(GrantError::BadSignature),
        ),
        (
            "alg none",
            &v,
            alg_none,
            Err(GrantError::DisallowedAlgorithm {
                alg: "none".to_owned(),
            }),
        ),
        (
            "HS256 keyed with the raw public key",
            &v,
            hs256(&pub_raw),
            Err(GrantError::DisallowedAlgorithm {
                alg: "HS256".to_owned(),
            }),
        ),
        (
            "HS256 keyed with the public key PEM",
            &v,
            hs256(pub_pem.as_bytes()),
            Err(GrantError::DisallowedAlgorithm {
                alg: "HS256".to_owned(),
            }),
        ),
        (
            "expired 1s beyond leeway",
            &v,
            with_claims(|c| c.exp = NOW - leeway - 1),
            Err(GrantError::Expired {
                exp: NOW - leeway - 1,
            }),
        ),
        (
            "expired exactly at exp + leeway",
            &v,
            with_claims(|c| c.exp = NOW - leeway),
            Err(GrantError::Expired { exp: NOW - leeway }),
        ),
        (
            "expired but within leeway",
            &v,
            with_claims(|c| c.exp = NOW - leeway + 1),
            Ok(()),
        ),
        (
            "nbf 1s beyond leeway",
            &v,
            with_claims(|c| c.nbf = NOW + leeway + 1),
            Err(GrantError::NotYetValid {
                nbf: NOW + leeway + 1,
            }),
        ),
        (
            "nbf within leeway",
            &v,
            with_claims(|c| c.nbf = NOW + leeway),
            Ok(()),
        ),
        (
            "wrong aud",
            &v,
            with_claims(|c| c.aud = "other-gateway".to_owned()),
            Err(GrantError::WrongAudience {
                aud: "other-gateway".to_owned(),
            }),
        ),
        (
            "wrong iss",
            &v,
            with_claims(|c| c.iss = "mallory".to_owned()),
            Err(GrantError::WrongIssuer {
                iss: "mallory".to_owned(),
            }),
        ),
        (
            "unknown kid",
            &v,
            sign(&claims(), &k2).unwrap(),
            Err(GrantError::UnknownKey {
                kid: Some(k2.kid().to_owned()),
            }),
        ),
        (
            "no kid, two keys",
            &v2,
            no_kid,
            Err(GrantError::UnknownKey { kid: None }),
        ),
        (
            "missing purpose",
            &v,
            signed_payload(&k1, |p| {
                p.remove("purpose");
            }),
            Err(GrantError::MissingClaim("purpose")),
        ),
        (
            "null exp",
            &v,
            signed_payload(&k1, |p| {
                p.insert("exp".to_owned(), Value::Null);
            }),
            Err(GrantError::MissingClaim("exp")),
        ),
        (
            "exp is a string",
            &v,
            signed_payload(&k1, |p| {
                p.insert("exp".to_owned(), json!("tomorrow"));
            }),
            Err(GrantError::InvalidClaim {
                claim: "exp",
                reason: "invalid type: string \"tomorrow\", expected i64".to_owned(),
            }),
        ),
        (
            "aud is a list",
            &v,
            signed_payload(&k1, |p| {
                p.insert("aud".to_owned(), json!(["gatehouse"]));
            }),
            Err(GrantError::InvalidClaim {
                claim: "aud",
                reason: "invalid type: sequence, expected a string".to_owned(),
            }),
        ),
        (
            "uses 0",
            &v,
            with_claims(|c| c.plan.uses = Some(0)),
            Err(GrantError::InvalidClaim {
                claim: "plan",
                reason: "`uses` is 0, so the grant allows nothing".to_owned(),
            }),
        ),
        (
            "unknown plan and claim fields are ignored",
            &v,
            signed_payload(&k1, |p| {
                p.insert("scope".to_owned(), json!("later"));
                p.insert(
                    "plan".to_owned(),
                    json!({
                        "targets": {"orders": {"operations": ["select"], "max_rows": 10}},
                        "uses": 1,
                        "approvable": ["update"],
                    }),
                );
            }),
            Ok(()),
        ),
        (
            "huge token",
            &v,
            huge.clone(),
            Err(GrantError::TooLong {
                len: huge.len(),
                max: MAX_TOKEN_LEN,
            }),
        ),
        (
            "not a JWT",
            &v,
            "hunter2".to_owned(),
            Err(GrantError::Malformed {
                reason: "a JWT has three parts separated by dots".to_owned(),
            }),
        ),
        (
            "four parts",
            &v,
            format!("{}.x", sign(&claims(), &k1).unwrap()),
            Err(GrantError::Malformed {
                reason: "a JWT has three parts separated by dots".to_owned(),
            }),
        ),
        (
            "header not base64",
            &v,
            "!!.e30.e30".to_owned(),
            Err(GrantError::Malformed {
                reason: "the header is not base64url".to_owned(),
            }),
        ),
        (
            "critical header extension",
            &v,
            signed_raw(
                &json!({"alg": "EdDSA", "kid": k1.kid(), "crit": ["exp"]}),
                &payload,
                &k1,
            ),
            Err(GrantError::Malformed {
                reason:
                    "the header lists critical extensions (`crit`) this gateway does not support"
                        .to_owned(),
            }),
        ),
    ];

    for (name, verifier, token, expected) in cases {
        let got = verifier.verify(&token, NOW).map(|_| ());
        assert_eq!(got, expected, "case {name:?}");
    }
}

#[test]
fn header_json_errors_are_malformed() {
    let v = verifier_for(&[&key(1)]);
    for token in [
        format!("{}.e30.e30", b64(b"not json")),
        format!("{}.e30.e30", b64(br#"{"typ":"JWT"}"#)),
        format!("{}.{}.AAAA", b64(br#"{"alg":"EdDSA"}"#), b64(b"[1,2]")),
        format!("{}.e30.***", b64(br#"{"alg":"EdDSA"}"#)),
    ] {
        let err = v.verify(&token, NOW).unwrap_err();
        assert!(
            matches!(err, GrantError::Malformed { .. } | GrantError::BadSignature),
            "{token}: {err:?}"
        );
    }
}

#[test]
fn valid_token_round_trips_the_claims() {
    let k = key(1);
    let token = sign(&claims(), &k).unwrap();
    let got = verifier_for(&[&k]).verify(&token, NOW).unwrap();
    assert_eq!(got, claims());
    check_target(&got, "orders").unwrap();

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some(k.kid()));
}

#[test]
fn wrong_target() {
    let err = check_target(&claims(), "billing").unwrap_err();
    assert_eq!(
        err,
        GrantError::WrongTarget {
            target: "billing".to_owned()
        }
    );
    assert_eq!(err.refusal(), Refusal::WrongTarget);
    assert_eq!(err.sqlstate(), "28000");
    // Names are exact.
    assert!(check_target(&claims(), "Orders").is_err());
}

#[test]
fn pem_keys_round_trip_and_agree_on_the_kid() {
    let dalek = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let private_pem = dalek.to_pkcs8_pem(LineEnding::LF).unwrap();
    let public_pem = dalek
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();

    let signing = SigningKey::from_pkcs8_pem(&private_pem).unwrap();
    let verifying = VerifyingKey::from_spki_pem(&public_pem).unwrap();
    assert_eq!(signing.kid(), verifying.kid());
    assert_eq!(verifying.kid(), key_id(&dalek.verifying_key().to_bytes()));
    assert_eq!(verifying.kid().len(), 16);
    assert!(verifying.kid().bytes().all(|b| b.is_ascii_hexdigit()));

    let token = sign(&claims(), &signing).unwrap();
    let v = Verifier {
        keys: KeySet::from_keys([verifying]).unwrap(),
        ..verifier_for(&[])
    };
    v.verify(&token, NOW).unwrap();
}

#[test]
fn bad_key_files() {
    assert!(matches!(
        SigningKey::from_pkcs8_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        Err(KeyError::BadPrivateKey(_))
    ));
    let public_pem =
        ed25519_dalek::VerifyingKey::from_bytes(&key(1).verifying_key().to_bytes().unwrap())
            .unwrap()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
    assert!(matches!(
        SigningKey::from_pkcs8_pem(&public_pem),
        Err(KeyError::BadPrivateKey(_))
    ));
    assert!(matches!(
        VerifyingKey::from_spki_pem("hello"),
        Err(KeyError::BadPublicKey(_))
    ));
    // The identity point has small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        VerifyingKey::from_public_bytes(&identity).unwrap_err(),
        KeyError::WeakKey
    );
}

#[test]
fn kid_override_and_duplicates() {
    let k = key(1).with_kid("2026-q4").unwrap();
    assert_eq!(k.kid(), "2026-q4");
    assert_eq!(k.verifying_key().kid(), "2026-q4");
    let token = sign(&claims(), &k).unwrap();
    verifier_for(&[&k]).verify(&token, NOW).unwrap();

    assert!(matches!(key(1).with_kid(""), Err(KeyError::BadKid(_))));
    assert!(matches!(
        key(1).with_kid("has space"),
        Err(KeyError::BadKid(_))
    ));

    let dup = KeySet::from_keys([
        key(1).verifying_key().clone(),
        key(2)
            .verifying_key()
            .clone()
            .with_kid(key(1).kid())
            .unwrap(),
    ]);
    assert!(matches!(dup, Err(KeyError::DuplicateKid(_))));
}

#[test]
fn empty_key_set_refuses_everything() {
    let v = verifier_for(&[]);
    let err = v
        .verify(&sign(&claims(), &key(1)).unwrap(), NOW)
        .unwrap_err();
    assert!(matches!(err, GrantError::UnknownKey { .. }));
}

#[test]
fn untrusted_strings_are_echoed_bounded() {
    let long = "k".repeat(1000);
    let token = signed_raw(
        &json!({"alg": "EdDSA", "kid": long}),
        &serde_json::to_value(claims()).unwrap(),
        &key(1),
    );
    let err = verifier_for(&[&key(1)]).verify(&token, NOW).unwrap_err();
    assert_eq!(
        err,
        GrantError::UnknownKey {
            kid: Some("k".repeat(64))
        }
    );

    let token = with_claims(|c| c.iss = "i".repeat(1000));
    let err = verifier_for(&[&key(1)]).verify(&token, NOW).unwrap_err();
    assert_eq!(
        err,
        GrantError::WrongIssuer {
            iss: "i".repeat(64)
        }
    );
}

#[test]
fn refusal_and_sqlstate_table() {
    let cases: Vec<(GrantError, Refusal, &str)> = vec![
        (
            GrantError::TooLong {
                len: 9000,
                max: MAX_TOKEN_LEN,
            },
            Refusal::Malformed,
            "28P01",
        ),
        (
            GrantError::Malformed {
                reason: String::new(),
            },
            Refusal::Malformed,
            "28P01",
        ),
        (
            GrantError::DisallowedAlgorithm {
                alg: "none".to_owned(),
            },
            Refusal::BadSignature,
            "28P01",
        ),
        (
            GrantError::UnknownKey { kid: None },
            Refusal::UnknownKey,
            "28P01",
        ),
        (GrantError::BadSignature, Refusal::BadSignature, "28P01"),
        (
            GrantError::MissingClaim("jti"),
            Refusal::MissingClaim,
            "28P01",
        ),
        (
            GrantError::InvalidClaim {
                claim: "exp",
                reason: String::new(),
            },
            Refusal::MissingClaim,
            "28P01",
        ),
        (
            GrantError::WrongIssuer { iss: String::new() },
            Refusal::WrongIssuer,
            "28P01",
        ),
        (
            GrantError::WrongAudience { aud: String::new() },
            Refusal::WrongAudience,
            "28P01",
        ),
        (GrantError::Expired { exp: 0 }, Refusal::Expired, "28P01"),
        (
            GrantError::NotYetValid { nbf: 0 },
            Refusal::NotYetValid,
            "28P01",
        ),
        (
            GrantError::WrongTarget {
                target: String::new(),
            },
            Refusal::WrongTarget,
            "28000",
        ),
        (GrantError::UsedUp { uses: 1 }, Refusal::UsedUp, "28000"),
        (GrantError::Revoked, Refusal::Revoked, "28000"),
        (GrantError::Sign(String::new()), Refusal::Malformed, "28P01"),
    ];
    for (err, refusal, sqlstate) in cases {
        assert_eq!(err.refusal(), refusal, "{err:?}");
        assert_eq!(err.sqlstate(), sqlstate, "{err:?}");
    }
}

#[test]
fn messages_say_what_to_do() {
    let cases: Vec<(GrantError, &str)> = vec![
        (
            GrantError::Expired { exp: NOW },
            "grant expired at 2026-11-25T18:00:00Z; ask the planner for a new grant",
        ),
        (
            GrantError::NotYetValid { nbf: NOW },
            "grant is not valid before 2026-11-25T18:00:00Z; wait until then or ask the planner for a grant valid now",
        ),
        (
            GrantError::WrongTarget {
                target: "billing".to_owned(),
            },
            "grant does not allow target \"billing\"; use a target the grant names (for PostgreSQL, the database you connect to), or ask the planner for a grant that includes \"billing\"",
        ),
        (
            GrantError::UnknownKey {
                kid: Some("abc".to_owned()),
            },
            "grant is signed with key \"abc\", which this gateway does not know; ask the planner for a grant signed with a current key",
        ),
        (
            GrantError::MissingClaim("purpose"),
            "grant has no `purpose` claim; ask the planner for a new grant",
        ),
    ];
    for (err, message) in cases {
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn unix_time_formats_as_rfc3339() {
    let cases = [
        (0, "1970-01-01T00:00:00Z"),
        (-1, "1969-12-31T23:59:59Z"),
        (NOW, "2026-11-25T18:00:00Z"),
        (951_827_696, "2000-02-29T12:34:56Z"),
        (-2_203_891_200, "1900-03-01T00:00:00Z"),
        (253_402_300_799, "9999-12-31T23:59:59Z"),
        (-62_167_219_200, "0000-01-01T00:00:00Z"),
        (253_402_300_800, "@253402300800"),
        (i64::MIN, "@-9223372036854775808"),
    ];
    for (secs, text) in cases {
        assert_eq!(UnixTime(secs).to_string(), text, "{secs}");
    }
}

#[test]
fn extreme_times_do_not_overflow() {
    let k = key(1);
    let mut v = verifier_for(&[&k]);
    v.leeway_s = u64::MAX;
    let token = with_claims(|c| {
        c.exp = i64::MAX;
        c.nbf = i64::MIN;
    });
    v.verify(&token, NOW).unwrap();
    v.verify(&token, i64::MIN).unwrap();
}
