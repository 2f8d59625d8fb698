//! Why a grant was refused, in words a human or an agent can act on.

use std::fmt;

use super::KeyAlgorithm;
use crate::event::Refusal;

/// SQLSTATE `28P01` (invalid_password): the password is not a valid grant
/// for this gateway.
pub const SQLSTATE_INVALID_PASSWORD: &str = "28P01";
/// SQLSTATE `28000` (invalid_authorization_specification): the grant is
/// genuine and current but does not allow this connection.
pub const SQLSTATE_INVALID_AUTHORIZATION: &str = "28000";

/// Why a grant was refused (or, for [`GrantError::Sign`], could not be
/// made).
///
/// The messages go to the client as they are: they say what is wrong and
/// what to do, and never echo more than a bounded piece of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The token is longer than [`MAX_TOKEN_LEN`](super::MAX_TOKEN_LEN); it
    /// is not parsed.
    #[error(
        "the password is {len} bytes, longer than any grant ({max} bytes at most); \
         pass the grant issued by the planner as the password"
    )]
    TooLong {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not a JWT (three base64url parts, JSON header and
    /// payload).
    #[error(
        "the password is not a grant ({reason}); pass the grant issued by the planner \
         as the password"
    )]
    Malformed {
        /// What did not parse.
        reason: String,
    },
    /// The header names an algorithm other than EdDSA, ES256 and RS256
    /// (`none`, HS256, ...).
    #[error(
        "grant uses signing algorithm {alg:?}, but this gateway accepts only EdDSA, ES256 and \
         RS256 grants; ask the planner for a grant signed with the gateway's key"
    )]
    DisallowedAlgorithm {
        /// The header's `alg`, at most 64 characters of it.
        alg: String,
    },
    /// The header's algorithm is not the one of the key its `kid` names
    /// (an ES256 token naming an RSA key, ...).
    #[error(
        "grant is signed with {alg}, but key {kid:?} is a {key_alg} key; \
         ask the planner for a grant signed the way its key says"
    )]
    WrongKeyAlgorithm {
        /// The key's id.
        kid: String,
        /// The key's algorithm.
        key_alg: KeyAlgorithm,
        /// The header's algorithm.
        alg: KeyAlgorithm,
    },
    /// No configured key has the header's `kid`, or the header has no `kid`
    /// and there is more than one key.
    #[error("{}", unknown_key_message(.kid.as_deref()))]
    UnknownKey {
        /// The header's `kid`, at most 64 characters of it.
        kid: Option<String>,
    },
    /// The signature does not verify with the key the header names.
    #[error(
        "grant signature is not valid (forged, altered, or signed with another key); \
         ask the planner for a new grant"
    )]
    BadSignature,
    /// A required claim is absent or `null`.
    #[error("grant has no `{0}` claim; ask the planner for a new grant")]
    MissingClaim(&'static str),
    /// A grant without a plan whose claims select none of the configured
    /// policies.
    #[error(
        "the grant has no plan and its claims select no policy; \
         ask for a token with a scope or group this gateway maps to a policy"
    )]
    NoPolicy,
    /// A grant without a plan (from an identity provider) has no `jti`.
    #[error(
        "grant has no `jti` claim, which this gateway needs to count uses and honour \
         revocations; have the identity provider put a unique `jti` in its tokens"
    )]
    MissingJti,
    /// A claim has the wrong type or an impossible value.
    #[error("grant claim `{claim}` is not valid ({reason}); ask the planner for a new grant")]
    InvalidClaim {
        /// The claim's name.
        claim: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `iss` is not the issuer this gateway trusts.
    #[error(
        "grant was issued by {iss:?}, which this gateway does not trust; \
         ask the planner for a grant issued for this gateway"
    )]
    WrongIssuer {
        /// The grant's `iss`, at most 64 characters of it.
        iss: String,
    },
    /// `aud` does not name this gateway.
    #[error(
        "grant is meant for {aud:?}, not for this gateway; \
         ask the planner for a grant for this gateway"
    )]
    WrongAudience {
        /// The grant's `aud`, at most 64 characters of it.
        aud: String,
    },
    /// `exp`, plus the leeway, has passed.
    #[error("grant expired at {}; ask the planner for a new grant", UnixTime(*.exp))]
    Expired {
        /// The grant's `exp`, seconds since the Unix epoch.
        exp: i64,
    },
    /// `nbf`, less the leeway, is still in the future.
    #[error(
        "grant is not valid before {}; wait until then or ask the planner for a grant valid now",
        UnixTime(*.nbf)
    )]
    NotYetValid {
        /// The grant's `nbf`, seconds since the Unix epoch.
        nbf: i64,
    },
    /// The plan does not name the target the client asked for.
    #[error(
        "grant does not allow target {target:?}; use a target the grant names (for \
         PostgreSQL, the database you connect to), or ask the planner for a grant that \
         includes {target:?}"
    )]
    WrongTarget {
        /// The target name the client asked for.
        target: String,
    },
    /// Every use the plan allows has been spent.
    #[error(
        "grant allowed {uses} session(s) and all have been used; \
         ask the planner for a new grant"
    )]
    UsedUp {
        /// The plan's `uses`.
        uses: u32,
    },
    /// The grant was revoked.
    #[error("grant has been revoked; ask the planner for a new grant")]
    Revoked,
    /// Only from [`sign`](super::sign): the claims could not be encoded or
    /// signed. Never produced while verifying.
    #[error("could not sign the grant: {0}")]
    Sign(String),
}

fn unknown_key_message(kid: Option<&str>) -> String {
    match kid {
        Some(kid) => format!(
            "grant is signed with key {kid:?}, which this gateway does not know; \
             ask the planner for a grant signed with a current key"
        ),
        None => "grant names no signing key (`kid` header) and this gateway has several; \
                 ask the planner for a grant with a `kid`"
            .to_owned(),
    }
}

impl GrantError {
    /// The refusal to record for this error.
    ///
    /// [`TooLong`](Self::TooLong) is recorded as
    /// [`Refusal::Malformed`], [`DisallowedAlgorithm`](Self::DisallowedAlgorithm)
    /// as [`Refusal::BadSignature`] (the token is not signed in a way this
    /// gateway accepts), [`InvalidClaim`](Self::InvalidClaim) as
    /// [`Refusal::MissingClaim`], and [`Sign`](Self::Sign), which never
    /// arises while verifying, as [`Refusal::Malformed`].
    pub fn refusal(&self) -> Refusal {
        match self {
            GrantError::TooLong { .. } | GrantError::Malformed { .. } | GrantError::Sign(_) => {
                Refusal::Malformed
            }
            GrantError::DisallowedAlgorithm { .. }
            | GrantError::WrongKeyAlgorithm { .. }
            | GrantError::BadSignature => Refusal::BadSignature,
            GrantError::UnknownKey { .. } => Refusal::UnknownKey,
            GrantError::MissingClaim(_)
            | GrantError::MissingJti
            | GrantError::InvalidClaim { .. }
            | GrantError::NoPolicy => Refusal::MissingClaim,
            GrantError::WrongIssuer { .. } => Refusal::WrongIssuer,
            GrantError::WrongAudience { .. } => Refusal::WrongAudience,
            GrantError::Expired { .. } => Refusal::Expired,
            GrantError::NotYetValid { .. } => Refusal::NotYetValid,
            GrantError::WrongTarget { .. } => Refusal::WrongTarget,
            GrantError::UsedUp { .. } => Refusal::UsedUp,
            GrantError::Revoked => Refusal::Revoked,
        }
    }

    /// The SQLSTATE of the PostgreSQL error the client gets.
    ///
    /// - [`SQLSTATE_INVALID_PASSWORD`] (`28P01`): the password is not a
    ///   valid grant for this gateway at this moment: too long, malformed,
    ///   wrong algorithm, unknown key, bad signature, missing or invalid
    ///   claim, wrong issuer or audience, expired, not yet valid. Clients
    ///   treat it like a wrong password: get a new one.
    /// - [`SQLSTATE_INVALID_AUTHORIZATION`] (`28000`): the grant is genuine
    ///   and current but does not allow this connection: wrong target, uses
    ///   spent, revoked.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            GrantError::WrongTarget { .. }
            | GrantError::UsedUp { .. }
            | GrantError::Revoked
            | GrantError::NoPolicy => SQLSTATE_INVALID_AUTHORIZATION,
            GrantError::TooLong { .. }
            | GrantError::Malformed { .. }
            | GrantError::DisallowedAlgorithm { .. }
            | GrantError::WrongKeyAlgorithm { .. }
            | GrantError::UnknownKey { .. }
            | GrantError::MissingJti
            | GrantError::BadSignature
            | GrantError::MissingClaim(_)
            | GrantError::InvalidClaim { .. }
            | GrantError::WrongIssuer { .. }
            | GrantError::WrongAudience { .. }
            | GrantError::Expired { .. }
            | GrantError::NotYetValid { .. }
            | GrantError::Sign(_) => SQLSTATE_INVALID_PASSWORD,
        }
    }
}

/// Seconds since the Unix epoch, displayed as RFC 3339 UTC
/// (`2026-11-25T18:00:00Z`); outside years 0000–9999 as `@<seconds>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixTime(pub i64);

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 0000-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z
        const MIN: i64 = -62_167_219_200;
        const MAX: i64 = 253_402_300_799;
        let secs = self.0;
        if !(MIN..=MAX).contains(&secs) {
            return write!(f, "@{secs}");
        }
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to a proleptic
/// Gregorian (year, month, day). Exact for the range [`UnixTime`] uses.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
