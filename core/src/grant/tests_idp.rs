//! Tests of external-provider grants: ES256 and RS256, JWK sets, and named
//! policies. The keys are fixed test keys (made with `openssl genpkey`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::*;

const NOW: i64 = 1_795_629_600;

pub(crate) const EC1_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLOjjkKrg75UETejF
ui0UTAUCJqukxXoGjGh/UemiqVGhRANCAARcbSn6JbyyJYTsg58cwcS5xwI2Vn1N
M25XPe0BSmND/F1A3J9BvSJ7/3XOuNywNkvM/7xC96TfNQEgWm9zw9gA
-----END PRIVATE KEY-----
";
pub(crate) const EC1_X: &str = "XG0p-iW8siWE7IOfHMHEuccCNlZ9TTNuVz3tAUpjQ_w";
pub(crate) const EC1_Y: &str = "XUDcn0G9Inv_dc643LA2S8z_vEL3pN81ASBab3PD2AA";
pub(crate) const EC2_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4z+fUzsp1BvRQtm7
zt+ZGeAMcDuSrz/VGbfAb/mV2cKhRANCAASokr0tHPbXYRe6p/CwEwwpZ0ix5k8E
VL41aNeyN9uD6mGXbhFpjrdUHYS+mLS1eEDUYbpEt3o+Kk8wTmbGUF8t
-----END PRIVATE KEY-----
";
pub(crate) const EC2_X: &str = "qJK9LRz212EXuqfwsBMMKWdIseZPBFS-NWjXsjfbg-o";
pub(crate) const EC2_Y: &str = "YZduEWmOt1QdhL6YtLV4QNRhukS3ej4qTzBOZsZQXy0";
pub(crate) const RSA_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDNMYmS36jMwRky
Te1Vhej33D4vYTX3Ix9eivy7+RJOQElBRUgLk2uBTx/IYPOqTjoeH6UEKt6Jtlil
EFw7qvaAzp9p0PP+M1aVqarzoVIVkj4QL+oORVPOF9v9PKHexM7v2ePHHoylvNib
VycF5lS2QNbFbQRhQy1Uxg9MaQ/CKgDzt+7w8LoD1kVKbWnqJpapDOPyVLmrjM1u
1ITF1/QDFS8xrAm5tkp9SmmjRp/RgjKCsOjA9QWDBXS6J0dfg9Ow/iQWM+HIhp7x
+Kgni18yHSCOmdQAiIgdsZw9H8x/7nICavu3XsZjuNuV4UgG8jWyer3NBcb4okDj
NEAQm+ilAgMBAAECggEAWd9fGtnkZJ4U66APGfzXb6xi/jyNNuwGwtGMZcZvWp+0
liaCqjNNDGt8B7dTMh4mPWhtzdf69YVM6SszwpyccAlP8Dhpjcatn0qbii73tWQC
0/MwiEScMrHnlFCYs2ovGwWrytxaDQOcOdmfyWk7ZEIc74bSuskCE1XWgIipssgK
YF0/c0G+J1dR8YMcKY2qv7wnnQBWEA3KYwg776Wfw5S4+j/t9q/D2ZlHaxe4+Rtm
OKvi/Z9DH3tNlzJdeDfESXKr/XGoClkJTZIQiU+U2WvVxp0CWJIh6prrjeZkbU9u
PmqEm14S8GzWBhqtjDLh0cMbxSGda4UN9XokvjReFwKBgQD63KeET+Jx7Z3k+x5O
dAqmguIKdsOahJZ7zGDQR1afX+TU9pQnykgEvDJ76aI6RTggcLjRXM0wMv8f9mEh
61VhjkYKgd7u6gpomAqCKUQohEeVNO28Pg6waayGgNhqJ5W+rn4BBfYviUAClAzq
fd+qYM6VyCxY7JdS6bHTd5pXEwKBgQDRZW32w88vLB2C4js1aH3+btFqo1/4sl9X
3Z7Un71DcyLmAFACTcXNagoJt4b5XTbhLJFE24N6KMZ1/Y/DthGkxK3EuB7M5zTv
QuLaK2whUJlSFvo5Lk8sHUShycOX1zejp65cz3wFFepl418HPK6V/2MOTOg2NjkI
pSBj+G2gZwKBgQC1BCe0p9gkkWuP4UxbHAzbXjIxjsVSaD4WEsIBSJjO4+lBarQ5
ihMxp4NeOpYfKfd4IR6bpDVDhGjn7WbljOTNQlZ0GoZ9K1BbbOqYRaKzAdCNb+Xk
IXuD/JzLaYm//9RkBZFSt7SPVKBlu+MeCbotPTGUjx7BA+eloo/4oaMzFQKBgH6K
klKe8HTsbwUqnGdhN0rsQ2fzRUsw2EdsKdEKm8DIMp3WMIPD5jaFz30hyNKnj0Oy
wDNhiOno/E5PpnK6c50kMnMAZbSkQKwauqbnuNfFMnKWai7mGnhpU5GGMcpwCDLB
YbC6vpMANH/QURw5grQo+v6oYWhpijv8Nj/T4MQfAoGAD0l6UqCR/OPdad5mtmj/
StfBBbv5lIOZuRkVUG65gORJWhQr0lvyA3j1ceG/AsL6L4rR1wsuRgcxV6MsBBXs
mE8Q+1wSFhWmdMwP4MYk8PNBnV+Yo73/nnqRbB3gNWjp76PzrQw2bJE2P+9XIYjp
sKFS6UD1lTW9+5/m56QHQlY=
-----END PRIVATE KEY-----
";
pub(crate) const RSA_N: &str = "zTGJkt-ozMEZMk3tVYXo99w-L2E19yMfXor8u_kSTkBJQUVIC5NrgU8fyGDzqk46Hh-lBCreibZYpRBcO6r2gM6fadDz_jNWlamq86FSFZI-EC_qDkVTzhfb_Tyh3sTO79njxx6MpbzYm1cnBeZUtkDWxW0EYUMtVMYPTGkPwioA87fu8PC6A9ZFSm1p6iaWqQzj8lS5q4zNbtSExdf0AxUvMawJubZKfUppo0af0YIygrDowPUFgwV0uidHX4PTsP4kFjPhyIae8fioJ4tfMh0gjpnUAIiIHbGcPR_Mf-5yAmr7t17GY7jbleFIBvI1snq9zQXG-KJA4zRAEJvopQ";
const RSA1024_N: &str = "smgmE2fOrQ6_JsRufliSVe-trf8kRhKYfNog3OxwGnsRnhXhdTZotQVHBFADooaj6ehefUeS6PfbMd-s9h_0VKF-0z77-sP4sWa8nSp3OZyzPPBalMv5y4Sin6q-Mo0naMnTz-MjMfYusri3tBGWXBZs6Ij70Hpu76N-psBJruk";

fn jwks() -> Value {
    json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "alg": "ES256", "x": EC1_X, "y": EC1_Y},
        {"kty": "EC", "crv": "P-256", "kid": "ec2", "x": EC2_X, "y": EC2_Y},
        {"kty": "RSA", "kid": "rsa1", "alg": "RS256", "n": RSA_N, "e": "AQAB"},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed1",
         "x": "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"},
        {"kty": "RSA", "kid": "small", "n": RSA1024_N, "e": "AQAB"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
        {"kty": "RSA", "kid": "rs512", "alg": "RS512", "n": RSA_N, "e": "AQAB"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-384", "kid": "p384", "x": EC1_X, "y": EC1_Y},
        {"kty": "EC", "crv": "P-256", "x": EC1_X, "y": EC1_Y},
        {"kty": "EC", "crv": "P-256", "kid": "es-as-rs", "alg": "RS256", "x": EC1_X, "y": EC1_Y}
    ]})
}

fn key_set() -> KeySet {
    KeySet::from_jwks_json(&jwks().to_string()).unwrap().0
}

fn verifier(keys: KeySet) -> Verifier {
    Verifier {
        keys,
        issuer: "https://idp.example".to_owned(),
        audience: "gatehouse".to_owned(),
        leeway_s: 5,
    }
}

fn idp_payload() -> Value {
    json!({
        "iss": "https://idp.example",
        "sub": "svc-billing",
        "aud": ["other", "gatehouse"],
        "exp": NOW + 600,
        "iat": NOW - 10,
        "jti": "idp-1",
        "scope": "openid billing-read profile",
    })
}

fn with_plan(mut payload: Value) -> Value {
    let extra = json!({
        "aud": "gatehouse",
        "nbf": NOW - 10,
        "purpose": "p",
        "plan": {"targets": {"orders": {}}},
    });
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    payload
}

fn rule(ops: &[&str], relations: &[&str]) -> Rule {
    Rule {
        ops: ops.iter().map(|s| (*s).to_owned()).collect(),
        relations: relations.iter().map(|s| (*s).to_owned()).collect(),
        ..Rule::default()
    }
}

fn selector() -> PolicySelector {
    let read = NamedPolicy {
        targets: vec!["orders".to_owned()],
        scope: TargetScope {
            allow: vec![rule(&["select"], &["public.*"])],
            limits: Limits {
                rows: Some(100),
                ..Limits::default()
            },
            ..TargetScope::default()
        },
    };
    let write = NamedPolicy {
        targets: vec!["orders".to_owned(), "billing".to_owned()],
        scope: TargetScope {
            allow: vec![rule(&["insert"], &["public.refunds"])],
            approve: vec![rule(&["delete"], &["public.refunds"])],
            limits: Limits {
                rows: Some(500),
                statements: Some(10),
                ..Limits::default()
            },
            mask: Default::default(),
        },
    };
    let claim = |claim: &str, value: &str, policy: &str| PolicyClaim {
        claim: claim.to_owned(),
        value: value.to_owned(),
        policy: policy.to_owned(),
    };
    PolicySelector::new(
        BTreeMap::from([("read".to_owned(), read), ("write".to_owned(), write)]),
        vec![
            claim("scope", "billing-read", "read"),
            claim("groups", "billing-admins", "write"),
            claim("realm_access.roles", "writer", "write"),
        ],
    )
    .unwrap()
}

#[test]
fn jwks_keeps_usable_keys_and_says_why_it_skips_the_others() {
    let (set, skipped) = KeySet::from_jwks_json(&jwks().to_string()).unwrap();
    let kids: Vec<&str> = set.iter().map(VerifyingKey::kid).collect();
    assert_eq!(kids, ["ec1", "ec2", "ed1", "rsa1"]);
    let algs: Vec<KeyAlgorithm> = set.iter().map(VerifyingKey::algorithm).collect();
    use KeyAlgorithm::*;
    assert_eq!(algs, [Es256, Es256, EdDsa, Rs256]);
    let reasons: Vec<(Option<&str>, &str)> = skipped
        .iter()
        .map(|s| (s.kid.as_deref(), s.reason.as_str()))
        .collect();
    let expect: &[(Option<&str>, &str)] = &[
        (Some("small"), "1024 bits; at least 2048"),
        (Some("enc"), "use is \"enc\""),
        (Some("rs512"), "alg is \"RS512\""),
        (Some("hmac"), "symmetric"),
        (Some("p384"), "\"P-384\""),
        (None, "no kid"),
        (Some("es-as-rs"), "alg is \"RS256\""),
    ];
    assert_eq!(reasons.len(), expect.len(), "{reasons:?}");
    for ((kid, reason), (want_kid, want)) in reasons.iter().zip(expect) {
        assert_eq!(kid, want_kid);
        assert!(reason.contains(want), "{reason:?} should contain {want:?}");
    }
}

#[test]
fn jwks_errors() {
    let none = json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}).to_string();
    let e = KeySet::from_jwks_json(&none).unwrap_err();
    assert!(matches!(e, KeyError::NoUsableKeys(_)), "{e}");
    assert!(e.to_string().contains("symmetric"), "{e}");
    assert!(matches!(
        KeySet::from_jwks_json("{\"keys\": []}"),
        Err(KeyError::NoUsableKeys(_))
    ));
    assert!(matches!(
        KeySet::from_jwks_json("[]"),
        Err(KeyError::BadJwks(_))
    ));
    assert!(matches!(
        KeySet::from_jwks_json("not json"),
        Err(KeyError::BadJwks(_))
    ));
    let twice = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "a", "x": EC1_X, "y": EC1_Y},
        {"kty": "EC", "crv": "P-256", "kid": "a", "x": EC2_X, "y": EC2_Y}
    ]})
    .to_string();
    assert_eq!(
        KeySet::from_jwks_json(&twice).unwrap_err(),
        KeyError::DuplicateKid("a".to_owned())
    );
    let short =
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "a", "x": "AAAA", "y": EC1_Y}]});
    assert!(KeySet::from_jwks_json(&short.to_string()).is_err());
}

#[test]
fn es256_and_rs256_grants_verify_with_their_keys() {
    let v = verifier(key_set());
    let payload = with_plan(idp_payload());
    let es = sign_with_pem(&payload, KeyAlgorithm::Es256, "ec1", EC1_PEM).unwrap();
    let got = v.verify_with(&es, NOW, &PolicySelector::default()).unwrap();
    assert_eq!(got.kid, "ec1");
    assert_eq!(got.claims.sub, "svc-billing");
    let rs = sign_with_pem(&payload, KeyAlgorithm::Rs256, "rsa1", RSA_PEM).unwrap();
    assert_eq!(v.verify(&rs, NOW).unwrap().jti, "idp-1");
    // Signed with ec2's private key but naming ec1.
    let wrong = sign_with_pem(&payload, KeyAlgorithm::Es256, "ec1", EC2_PEM).unwrap();
    assert_eq!(v.verify(&wrong, NOW), Err(GrantError::BadSignature));
}

#[test]
fn a_key_verifies_only_its_own_algorithm() {
    let v = verifier(key_set());
    let payload = with_plan(idp_payload());
    // An RS256 token naming an EC key, an ES256 token naming an RSA key.
    let rs = sign_with_pem(&payload, KeyAlgorithm::Rs256, "ec1", RSA_PEM).unwrap();
    assert_eq!(
        v.verify(&rs, NOW),
        Err(GrantError::WrongKeyAlgorithm {
            kid: "ec1".to_owned(),
            key_alg: KeyAlgorithm::Es256,
            alg: KeyAlgorithm::Rs256,
        })
    );
    let es = sign_with_pem(&payload, KeyAlgorithm::Es256, "rsa1", EC1_PEM).unwrap();
    let e = v.verify(&es, NOW).unwrap_err();
    assert!(matches!(e, GrantError::WrongKeyAlgorithm { .. }), "{e}");
    assert_eq!(e.sqlstate(), SQLSTATE_INVALID_PASSWORD);
    // HS256 keyed with the RSA modulus: refused before any key is used.
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("rsa1".to_owned()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(RSA_N.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        v.verify(&hs, NOW),
        Err(GrantError::DisallowedAlgorithm { .. })
    ));
    for alg in ["ES384", "RS512", "PS256", "none", "es256"] {
        assert_eq!(KeyAlgorithm::from_jose(alg), None, "{alg}");
    }
}

#[test]
fn rsa_keys_under_2048_bits_are_refused() {
    use base64::Engine as _;
    let b = |s: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap()
    };
    let e = VerifyingKey::from_rsa_components(&b(RSA1024_N), &[1, 0, 1], "k").unwrap_err();
    assert!(e.to_string().contains("1024 bits"), "{e}");
    assert!(VerifyingKey::from_rsa_components(&b(RSA_N), &[1, 0, 1], "k").is_ok());
    // Leading zero bytes do not count.
    let mut padded = vec![0, 0];
    padded.extend(b(RSA_N));
    assert!(VerifyingKey::from_rsa_components(&padded, &[1, 0, 1], "k").is_ok());
    assert!(VerifyingKey::from_rsa_components(&b(RSA_N), &[2], "k").is_err());
}

#[test]
fn policies_are_selected_by_claims_and_merged_per_target() {
    let s = selector();
    let claims = |v: Value| -> Map<String, Value> { v.as_object().unwrap().clone() };
    let cases: &[(Value, &[&str])] = &[
        (json!({"scope": "billing-read"}), &["read"]),
        (json!({"scope": "openid billing-read"}), &["read"]),
        (json!({"scope": "openid billing-reader"}), &[]),
        (json!({"scope": ["billing-read"]}), &["read"]),
        (json!({"scope": 7}), &[]),
        (json!({"groups": ["x", "billing-admins"]}), &["write"]),
        (json!({"groups": "billing-admins other"}), &["write"]),
        (json!({"realm_access": {"roles": ["writer"]}}), &["write"]),
        (json!({"realm_access": "writer"}), &[]),
        (
            json!({"scope": "billing-read", "groups": ["billing-admins"]}),
            &["read", "write"],
        ),
        (json!({}), &[]),
    ];
    for (c, want) in cases {
        assert_eq!(s.select(&claims(c.clone())), *want, "{c}");
    }
    let plan = s.plan(&["read", "write"]);
    assert_eq!(plan.uses, None);
    let orders = plan.scope("orders").unwrap();
    assert_eq!(orders.allow.len(), 2);
    assert_eq!(orders.approve.len(), 1);
    assert_eq!(orders.limits.rows, Some(500));
    assert_eq!(orders.limits.statements, Some(10));
    let billing = plan.scope("billing").unwrap();
    assert_eq!(billing.allow, vec![rule(&["insert"], &["public.refunds"])]);
    assert_eq!(s.plan(&["read"]).targets.len(), 1);

    let bad = PolicySelector::new(
        BTreeMap::new(),
        vec![PolicyClaim {
            claim: "scope".into(),
            value: "x".into(),
            policy: "nope".into(),
        }],
    );
    assert_eq!(bad, Err(UnknownPolicy("nope".to_owned())));
}

#[test]
fn a_grant_without_a_plan_gets_the_plan_of_its_policies() {
    let v = verifier(key_set());
    let s = selector();
    let sign = |p: &Value| sign_with_pem(p, KeyAlgorithm::Es256, "ec1", EC1_PEM).unwrap();

    let got = v.verify_with(&sign(&idp_payload()), NOW, &s).unwrap();
    let c = got.claims;
    assert_eq!(c.aud, "gatehouse");
    assert_eq!(c.nbf, NOW - 10, "nbf defaults to iat");
    assert_eq!(c.purpose, "policies: read");
    assert!(c.plan.scope("orders").is_some());
    assert!(check_target(&c, "billing").is_err());

    // Selects nothing.
    let mut p = idp_payload();
    p["scope"] = json!("openid");
    let e = v.verify_with(&sign(&p), NOW, &s).unwrap_err();
    assert_eq!(e, GrantError::NoPolicy);
    assert!(
        e.to_string()
            .contains("the grant has no plan and its claims select no policy")
    );
    assert_eq!(e.sqlstate(), SQLSTATE_INVALID_AUTHORIZATION);

    // No policies configured: the plan is missing.
    assert_eq!(
        v.verify_with(&sign(&idp_payload()), NOW, &PolicySelector::default()),
        Err(GrantError::MissingClaim("plan"))
    );

    // No jti.
    let mut p = idp_payload();
    p.as_object_mut().unwrap().remove("jti");
    let e = v.verify_with(&sign(&p), NOW, &s).unwrap_err();
    assert_eq!(e, GrantError::MissingJti);
    assert!(e.to_string().contains("jti"));

    // An audience list without this gateway.
    let mut p = idp_payload();
    p["aud"] = json!(["other"]);
    assert!(matches!(
        v.verify_with(&sign(&p), NOW, &s),
        Err(GrantError::WrongAudience { .. })
    ));

    // Explicit purpose and nbf are kept; time is still checked.
    let mut p = idp_payload();
    p["purpose"] = json!("month end");
    p["nbf"] = json!(NOW + 100);
    let e = v.verify_with(&sign(&p), NOW, &s).unwrap_err();
    assert!(matches!(e, GrantError::NotYetValid { .. }));
    let c = v.verify_with(&sign(&p), NOW + 100, &s).unwrap().claims;
    assert_eq!(c.purpose, "month end");
}
