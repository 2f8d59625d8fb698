//! Grants as a test asks for them (`gatehouse grant …` arguments) and reads
//! them back (the JWT's claims, unverified).

use base64::Engine as _;

/// The arguments of `gatehouse grant`. Start from [`Default`] and change what
/// the test is about:
///
/// ```
/// # use gatehouse_tests::grant::GrantArgs;
/// let args = GrantArgs { uses: Some(1), ..GrantArgs::default() };
/// assert_eq!(args.target, "orders");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantArgs {
    /// `--sub`: the agent.
    pub sub: String,
    /// `--target`.
    pub target: String,
    /// `--ttl`, humantime (`15m`, `30s`).
    pub ttl: String,
    /// `--uses`; omitted when `None`.
    pub uses: Option<u32>,
    /// `--purpose`.
    pub purpose: String,
    /// `--ticket`; omitted when `None`.
    pub ticket: Option<String>,
    /// `--allow` rules, one flag each. Everything (`*`) by default: tests
    /// about the plan say what they allow.
    pub allow: Vec<String>,
    /// Further arguments, appended as given.
    pub extra: Vec<String>,
}

impl Default for GrantArgs {
    fn default() -> GrantArgs {
        GrantArgs {
            sub: "agent-7".to_owned(),
            target: "orders".to_owned(),
            ttl: "15m".to_owned(),
            uses: None,
            purpose: "integration test".to_owned(),
            ticket: None,
            allow: vec!["*".to_owned()],
            extra: Vec::new(),
        }
    }
}

impl GrantArgs {
    /// The command-line arguments after `gatehouse grant --key FILE`.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--sub".to_owned(),
            self.sub.clone(),
            "--target".to_owned(),
            self.target.clone(),
            "--ttl".to_owned(),
            self.ttl.clone(),
        ];
        if let Some(uses) = self.uses {
            args.extend(["--uses".to_owned(), uses.to_string()]);
        }
        args.extend(["--purpose".to_owned(), self.purpose.clone()]);
        if let Some(ticket) = &self.ticket {
            args.extend(["--ticket".to_owned(), ticket.clone()]);
        }
        for rule in &self.allow {
            args.extend(["--allow".to_owned(), rule.clone()]);
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

/// The claims of a JWT, decoded without checking its signature; `None` when
/// the token is not three dot-separated base64url parts with a JSON middle.
pub fn decode_claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_in_cli_order() {
        let args = GrantArgs {
            uses: Some(1),
            ticket: Some("OPS-1".to_owned()),
            ..GrantArgs::default()
        };
        assert_eq!(
            args.to_args().join(" "),
            "--sub agent-7 --target orders --ttl 15m --uses 1 --purpose integration test --ticket OPS-1 --allow *"
        );
    }

    #[test]
    fn claims_decode() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.sig", b64("{}"), b64(r#"{"sub":"agent-7"}"#));
        assert_eq!(decode_claims(&token).unwrap()["sub"], "agent-7");
        assert!(decode_claims("nonsense").is_none());
    }
}
