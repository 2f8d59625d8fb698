//! Signing and verifying grants.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Claims, GrantError, KeyAlgorithm, KeySet, PolicySelector, SigningKey};

/// The longest token [`Verifier::verify`] parses, in bytes. A grant with a
/// plan over a handful of targets is well under 1 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// How much of an untrusted string an error message repeats.
const ECHO_LEN: usize = 64;

/// Signs `claims` with `key`: a compact JWS with `alg: EdDSA`, `typ: JWT`
/// and `kid` set to the key's id.
pub fn sign(claims: &Claims, key: &SigningKey) -> Result<String, GrantError> {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid().to_owned());
    jsonwebtoken::encode(&header, claims, key.encoding_key())
        .map_err(|e| GrantError::Sign(e.to_string()))
}

/// Signs `payload` (any JSON claims) with a P-256 (`ES256`) or RSA (`RS256`)
/// private key in PEM (PKCS#8, SEC1 or PKCS#1), naming `kid`: what an
/// external identity provider does. For tests and tools; the gateway
/// itself mints grants with [`sign`].
pub fn sign_with_pem(
    payload: &Value,
    alg: KeyAlgorithm,
    kid: &str,
    private_pem: &str,
) -> Result<String, GrantError> {
    let pem = private_pem.trim().as_bytes();
    let key = match alg {
        KeyAlgorithm::Es256 => jsonwebtoken::EncodingKey::from_ec_pem(pem),
        KeyAlgorithm::Rs256 => jsonwebtoken::EncodingKey::from_rsa_pem(pem),
        KeyAlgorithm::EdDsa => jsonwebtoken::EncodingKey::from_ed_pem(pem),
    }
    .map_err(|e| GrantError::Sign(e.to_string()))?;
    let mut header = Header::new(alg.jwt());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, payload, &key).map_err(|e| GrantError::Sign(e.to_string()))
}

/// A verified grant: its claims and the id of the key that verified it
/// (so that a cached grant can be refused once its key is gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The claims.
    pub claims: Claims,
    /// The key id of the key whose signature checked.
    pub kid: String,
}

/// Verifies grants: signature, issuer, audience, time window, and the
/// presence and types of the claims.
///
/// Only EdDSA, ES256 and RS256 are accepted; a token whose header says
/// anything else (`none`, `HS256`, ...) is refused before any key is
/// touched, and a key verifies only tokens of its own algorithm (an ES256
/// token naming an RSA key is refused unverified), which rules out
/// algorithm confusion. `exp` and `nbf` are checked against the `now_s`
/// passed in, never against a clock. Uses and revocation are the caller's:
/// they need state.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// The keys grants may be signed with, by `kid`.
    pub keys: KeySet,
    /// The `iss` a grant must carry.
    pub issuer: String,
    /// The `aud` a grant must carry: this gateway's name.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// The header fields this gateway reads itself before handing the token to
/// jsonwebtoken.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Verifier {
    /// Verifies `token` at `now_s` (seconds since the Unix epoch) and
    /// returns its claims.
    ///
    /// Checks, in order: length, JWT shape and header, algorithm, key,
    /// signature, claims present and well-typed, issuer, audience, expiry,
    /// not-before. The first failure is returned. Leading and trailing
    /// whitespace around the token is ignored.
    ///
    /// A grant is valid while `nbf - leeway <= now_s < exp + leeway`.
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Claims, GrantError> {
        self.verify_with(token, now_s, &PolicySelector::default())
            .map(|v| v.claims)
    }

    /// [`verify`](Self::verify), where a token without a `plan` claim gets
    /// the plan of the `policies` its claims select (and may lack
    /// `purpose`, `nbf` and `iat`, and have an `aud` array that contains
    /// the audience: see [`Claims`]). Returns the claims
    /// with the id of the key that verified them.
    pub fn verify_with(
        &self,
        token: &str,
        now_s: i64,
        policies: &PolicySelector,
    ) -> Result<Verified, GrantError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(GrantError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let header = parse_header(token)?;
        let Some(alg) = KeyAlgorithm::from_jose(&header.alg) else {
            return Err(GrantError::DisallowedAlgorithm {
                alg: echo(&header.alg),
            });
        };
        if header.crit.is_some() {
            return Err(malformed(
                "the header lists critical extensions (`crit`) this gateway does not support",
            ));
        }
        let key = self.keys.select(header.kid.as_deref())?;
        if key.algorithm() != alg {
            return Err(GrantError::WrongKeyAlgorithm {
                kid: key.kid().to_owned(),
                key_alg: key.algorithm(),
                alg,
            });
        }

        let mut validation = Validation::new(alg.jwt());
        // jsonwebtoken checks the signature and nothing else: the claims are
        // checked below, against `now_s` rather than the system clock, with
        // errors that name the claim.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut payload =
            jsonwebtoken::decode::<Map<String, Value>>(token, key.decoding_key(), &validation)
                .map_err(decode_error)?
                .claims;
        // Identity providers may give `aud` as an array of audiences; a
        // grant with a plan is meant for one gateway and names it alone.
        let planless = matches!(payload.get("plan"), None | Some(Value::Null));
        if let Some(Value::Array(auds)) = payload.get("aud")
            && planless
        {
            let aud = if auds.iter().any(|a| a.as_str() == Some(&self.audience)) {
                Value::String(self.audience.clone())
            } else {
                auds.iter()
                    .find(|a| a.is_string())
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            payload.insert("aud".to_owned(), aud);
        }

        let claims = Claims::from_payload(payload, policies)?;
        if claims.iss != self.issuer {
            return Err(GrantError::WrongIssuer {
                iss: echo(&claims.iss),
            });
        }
        if claims.aud != self.audience {
            return Err(GrantError::WrongAudience {
                aud: echo(&claims.aud),
            });
        }
        self.check_time(&claims, now_s)?;
        Ok(Verified {
            claims,
            kid: key.kid().to_owned(),
        })
    }

    /// Checks only `exp` and `nbf` at `now_s`, with the leeway: for claims
    /// verified earlier and cached.
    pub fn check_time(&self, claims: &Claims, now_s: i64) -> Result<(), GrantError> {
        let leeway = i64::try_from(self.leeway_s).unwrap_or(i64::MAX);
        if now_s >= claims.exp.saturating_add(leeway) {
            return Err(GrantError::Expired { exp: claims.exp });
        }
        if now_s < claims.nbf.saturating_sub(leeway) {
            return Err(GrantError::NotYetValid { nbf: claims.nbf });
        }
        Ok(())
    }
}

/// Decodes the first part of a compact JWS, which must have exactly three.
fn parse_header(token: &str) -> Result<RawHeader, GrantError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three parts separated by dots"));
    };
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("the header is not base64url"))?;
    serde_json::from_slice(&json).map_err(|e| GrantError::Malformed {
        reason: format!("the header is not a JWT header: {e}"),
    })
}

fn decode_error(e: jsonwebtoken::errors::Error) -> GrantError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_) => GrantError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            GrantError::DisallowedAlgorithm {
                alg: "unknown".to_owned(),
            }
        }
        ErrorKind::Base64(_) => malformed("a part is not base64url"),
        ErrorKind::Json(e) => GrantError::Malformed {
            reason: format!("the payload is not a JSON object: {e}"),
        },
        ErrorKind::Utf8(_) => malformed("the payload is not UTF-8"),
        _ => GrantError::Malformed {
            reason: e.to_string(),
        },
    }
}

fn malformed(reason: &str) -> GrantError {
    GrantError::Malformed {
        reason: reason.to_owned(),
    }
}

/// At most [`ECHO_LEN`] characters of an untrusted string.
fn echo(s: &str) -> String {
    s.chars().take(ECHO_LEN).collect()
}
