//! Grants: the short-lived, purpose-bound JWTs agents present as their
//! password.
//!
//! A grant is a compact JWS signed with Ed25519 (`alg: EdDSA`), or, from an
//! external identity provider, with P-256 (`ES256`) or RSA (`RS256`); its
//! header names the signing key (`kid`) and its payload is [`Claims`]: who
//! issued it and to whom, for which gateway, when it is valid, why, and the
//! [`Plan`] of what it allows. A provider that cannot put a plan in its
//! tokens gets one from the gateway's named policies ([`PolicySelector`]).
//!
//! - [`sign`] mints a grant with a [`SigningKey`] (used by `gatehouse grant`).
//! - [`Verifier::verify`] checks one against a [`KeySet`], the trusted issuer
//!   and audience, and a `now` passed in; [`check_target`] checks that its
//!   plan allows a target.
//! - [`KeySet::from_jwks_json`] reads a provider's JWK set.
//! - [`GrantError`] says why a grant was refused, maps to the recorded
//!   [`Refusal`](crate::event::Refusal) and to a SQLSTATE, and its message is
//!   what the client is told.
//! - [`VerifiedCache`] remembers grants whose signature verified, so that
//!   an agent reconnecting with the same token pays for the signature once.
//!
//! Key ids are derived from the public key ([`key_id`]), so that a key pair
//! made by `gatehouse keygen` needs no further configuration.
//!
//! What this module is not: it reads no key file and no clock, and keeps no
//! state but that cache. Counting uses and honouring revocations need the
//! store and are the caller's; [`GrantError::UsedUp`] and
//! [`GrantError::Revoked`] are here so that every refusal reads the same way.

mod cache;
mod claims;
mod error;
mod jwks;
mod key;
mod mask;
mod policies;
mod verify;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_idp;

pub use cache::{VERIFIED_CACHE_MAX, VerifiedCache};
pub use claims::{Claims, Limits, Plan, Rule, TargetScope, check_target};
pub use error::{GrantError, SQLSTATE_INVALID_AUTHORIZATION, SQLSTATE_INVALID_PASSWORD, UnixTime};
pub use jwks::{MAX_JWKS_KEYS, SkippedKey};
pub use key::{
    ED25519_KEY_LEN, KeyAlgorithm, KeyError, KeySet, MAX_RSA_BITS, MIN_RSA_BITS, SigningKey,
    VerifyingKey, key_id,
};
pub use mask::{MaskColumn, MaskDictionary, MaskScope};
pub use policies::{NamedPolicy, PolicyClaim, PolicySelector, UnknownPolicy};
pub use verify::{MAX_TOKEN_LEN, Verified, Verifier, sign, sign_with_pem};
