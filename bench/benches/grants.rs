//! Grant checks at login and per statement.
//!
//! - `verify`: `Verifier::verify` of a grant signed with EdDSA (what
//!   `gatehouse grant` mints), ES256 and RS256 (2048-bit; external identity
//!   providers): base64, JSON, signature, claims.
//! - `grant cache`: what the gateway pays on a cache hit instead:
//!   `grant::VerifiedCache::verify` (the proxy's cache) of a token verified
//!   before, among 1003 cached grants, beside the first check of a token
//!   (verify and insert), the parts a hit is made of alone (hashing the
//!   signature segment, a `HashMap` lookup, comparing the whole token,
//!   `check_time`) and BLAKE3 of the token, the key the cache used before.
//! - `policy check`: `policy::check` of a classified statement (two
//!   relations) against a scope of 10 and 100 rules, the covering rules
//!   last (allowed), and a statement no rule covers (denied: every rule
//!   tried).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse_core::grant::{
    Claims, KeyAlgorithm, KeySet, Limits, Plan, PolicySelector, Rule, SigningKey, TargetScope,
    VerifiedCache, Verifier, sign, sign_with_pem,
};
use gatehouse_core::policy::{Verdict, check, classify};

const NOW: i64 = 1_795_629_600;

// Fixed test keys (made with `openssl genpkey`), the same as core's
// grant tests use.
const EC_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLOjjkKrg75UETejF
ui0UTAUCJqukxXoGjGh/UemiqVGhRANCAARcbSn6JbyyJYTsg58cwcS5xwI2Vn1N
M25XPe0BSmND/F1A3J9BvSJ7/3XOuNywNkvM/7xC96TfNQEgWm9zw9gA
-----END PRIVATE KEY-----
";
const EC_X: &str = "XG0p-iW8siWE7IOfHMHEuccCNlZ9TTNuVz3tAUpjQ_w";
const EC_Y: &str = "XUDcn0G9Inv_dc643LA2S8z_vEL3pN81ASBab3PD2AA";
const RSA_PEM: &str = "-----BEGIN PRIVATE KEY-----
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
const RSA_N: &str = "zTGJkt-ozMEZMk3tVYXo99w-L2E19yMfXor8u_kSTkBJQUVIC5NrgU8fyGDzqk46Hh-lBCreibZYpRBcO6r2gM6fadDz_jNWlamq86FSFZI-EC_qDkVTzhfb_Tyh3sTO79njxx6MpbzYm1cnBeZUtkDWxW0EYUMtVMYPTGkPwioA87fu8PC6A9ZFSm1p6iaWqQzj8lS5q4zNbtSExdf0AxUvMawJubZKfUppo0af0YIygrDowPUFgwV0uidHX4PTsP4kFjPhyIae8fioJ4tfMh0gjpnUAIiIHbGcPR_Mf-5yAmr7t17GY7jbleFIBvI1snq9zQXG-KJA4zRAEJvopQ";

/// A scope of `n` rules; the last two cover `public.customers` and
/// `public.orders`, the others tables the statement does not touch.
fn scope(n: usize) -> TargetScope {
    let mut allow: Vec<Rule> = (0..n - 2)
        .map(|i| Rule {
            name: Some(format!("rule {i}")),
            ops: vec!["select".into(), "insert".into(), "update".into()],
            relations: vec![format!("app.table_{i}"), format!("app.table_{i}_archive")],
            functions: vec![format!("app.fn_{i}")],
            ..Rule::default()
        })
        .collect();
    for table in ["public.customers", "public.orders"] {
        allow.push(Rule {
            name: Some(table.into()),
            ops: vec!["select".into()],
            relations: vec![table.into()],
            functions: Vec::new(),
            ..Rule::default()
        });
    }
    TargetScope {
        allow,
        approve: Vec::new(),
        limits: Limits::default(),
        mask: Default::default(),
    }
}

/// A grant's claims, with a plan of 10 rules on one target (a realistic
/// token size: ~1.3 KiB signed).
fn claims() -> Claims {
    Claims {
        iss: "gatehouse".into(),
        sub: "agent:support-bot".into(),
        aud: "gw-prod".into(),
        exp: NOW + 900,
        nbf: NOW - 60,
        iat: NOW - 60,
        jti: "01J9ZQ3V6W8X2Y4Z6A8B0C2D4E".into(),
        purpose: "answer ticket 4711: refund status".into(),
        ticket: Some("SUP-4711".into()),
        plan: Plan {
            targets: BTreeMap::from([("orders".to_owned(), scope(10))]),
            uses: Some(3),
        },
    }
}

fn verify(c: &mut Criterion) {
    let claims = claims();
    let ed = SigningKey::from_secret_bytes(&[7; 32]).expect("ed25519 key");
    let jwks = serde_json::json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec1", "alg": "ES256", "x": EC_X, "y": EC_Y},
        {"kty": "RSA", "kid": "rsa1", "alg": "RS256", "n": RSA_N, "e": "AQAB"},
    ]});
    let (mut keys, skipped) = KeySet::from_jwks_json(&jwks.to_string()).expect("jwks");
    assert!(skipped.is_empty());
    keys.insert(ed.verifying_key().clone())
        .expect("ed25519 key");
    let verifier = Verifier {
        keys,
        issuer: "gatehouse".into(),
        audience: "gw-prod".into(),
        leeway_s: 30,
    };
    let payload = serde_json::to_value(&claims).expect("claims as JSON");
    let tokens = [
        ("EdDSA", sign(&claims, &ed).expect("sign")),
        (
            "ES256",
            sign_with_pem(&payload, KeyAlgorithm::Es256, "ec1", EC_PEM).expect("sign"),
        ),
        (
            "RS256",
            sign_with_pem(&payload, KeyAlgorithm::Rs256, "rsa1", RSA_PEM).expect("sign"),
        ),
    ];

    let mut g = c.benchmark_group("grant");
    for (alg, token) in &tokens {
        assert_eq!(verifier.verify(token, NOW).expect(alg), claims);
        g.bench_with_input(BenchmarkId::new("verify", alg), token, |b, token| {
            b.iter(|| verifier.verify(black_box(token), NOW))
        });
    }
    eprintln!("EdDSA token: {} bytes", tokens[0].1.len());

    g.finish();
    cached(c, &verifier, &tokens, &claims, &ed);
}

/// The gateway's cache of verified grants (`grant::VerifiedCache`, the one
/// the proxy uses), with 1000 other grants cached, beside its parts.
fn cached(
    c: &mut Criterion,
    verifier: &Verifier,
    tokens: &[(&str, String)],
    claims: &Claims,
    ed: &SigningKey,
) {
    let policies = PolicySelector::default();
    let cache = VerifiedCache::new();
    for i in 0..1000 {
        let other = Claims {
            jti: format!("other-{i}"),
            ..claims.clone()
        };
        let token = sign(&other, ed).expect("sign");
        cache
            .verify(verifier, &policies, &token, NOW)
            .expect("verifies");
    }
    let mut g = c.benchmark_group("grant cache");
    for (alg, token) in tokens {
        cache.verify(verifier, &policies, token, NOW).expect(alg);
        g.bench_with_input(BenchmarkId::new("hit", alg), token, |b, token| {
            b.iter(|| cache.verify(verifier, &policies, black_box(token), NOW))
        });
    }
    assert_eq!(cache.len(), 1003);
    let token = &tokens[0].1;
    let cold = VerifiedCache::new();
    g.bench_function("first check (verify + insert), EdDSA", |b| {
        b.iter(|| {
            cold.clear();
            cold.verify(verifier, &policies, black_box(token), NOW)
        })
    });

    // The parts of a hit, alone: its floor.
    let signature = token.rsplit_once('.').expect("a JWT").1;
    let state = RandomState::new();
    g.bench_function("part: SipHash of the signature segment", |b| {
        b.iter(|| state.hash_one(black_box(signature).as_bytes()))
    });
    let map: HashMap<u64, u32> = (0..1003u32)
        .map(|i| (state.hash_one(i.to_be_bytes()), i))
        .collect();
    let probe = state.hash_one(1002u32.to_be_bytes());
    g.bench_function("part: HashMap<u64> lookup among 1003", |b| {
        b.iter(|| map.get(black_box(&probe)).copied())
    });
    let copy = token.clone();
    g.bench_function("part: memcmp of the whole token", |b| {
        b.iter(|| black_box(token.as_bytes()) == black_box(copy.as_bytes()))
    });
    g.bench_function("part: check_time", |b| {
        b.iter(|| verifier.check_time(black_box(claims), NOW))
    });
    g.bench_function("before: BLAKE3 of the token (the old key)", |b| {
        b.iter(|| blake3::hash(black_box(token).as_bytes()))
    });
    g.finish();
}

fn policy(c: &mut Criterion) {
    let allowed = classify(
        "SELECT c.id, c.name, sum(o.total) AS spent FROM customers c \
         JOIN orders o ON o.customer_id = c.id WHERE c.id = 42 GROUP BY c.id, c.name",
    );
    let denied = classify("DELETE FROM invoices WHERE id = 42");
    let mut g = c.benchmark_group("policy check");
    for n in [10, 100] {
        let scope = scope(n);
        assert_eq!(check(&allowed, &scope), Verdict::Allow);
        assert!(matches!(check(&denied, &scope), Verdict::Deny { .. }));
        g.bench_with_input(
            BenchmarkId::new("allowed by the last rules", n),
            &scope,
            |b, scope| b.iter(|| check(black_box(&allowed), scope)),
        );
        g.bench_with_input(BenchmarkId::new("denied", n), &scope, |b, scope| {
            b.iter(|| check(black_box(&denied), scope))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = verify, policy
}
criterion_main!(benches);
