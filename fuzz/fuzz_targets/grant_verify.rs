//! Grant verification of arbitrary strings: never a panic, never accepted.
#![no_main]

use gatehouse_core::grant::{KeySet, SigningKey, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = SigningKey::from_secret_bytes(&[7; 32]) else {
        return;
    };
    let Ok(keys) = KeySet::from_keys([key.verifying_key().clone()]) else {
        return;
    };
    let verifier = Verifier {
        keys,
        issuer: "gatehouse".into(),
        audience: "gatehouse".into(),
        leeway_s: 5,
    };
    let token = String::from_utf8_lossy(data);
    assert!(verifier.verify(&token, 1_800_000_000).is_err());
});
