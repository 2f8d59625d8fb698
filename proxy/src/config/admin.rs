//! `[admin]` (the admin API's listener and its approvers' tokens) and
//! `[approvals]` (how held statements wait, and the webhook), resolved.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::Secret;
use super::file::{AdminSection, ApprovalsSection};
use super::target::{password_from_env, password_from_file};
use super::validate::{Env, Findings, path};
use crate::approvals::{ApprovalMode, GATEWAY_APPROVER};

/// Bounds of `approvals.timeout`.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The shortest admin token accepted, in bytes.
const MIN_TOKEN_BYTES: usize = 16;

/// `[admin]`, resolved: the admin API is served only when the section is
/// there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where the admin API listens (loopback by default).
    pub listen: SocketAddr,
    /// Who may use it; at least one. Names and tokens are distinct.
    pub tokens: Vec<AdminToken>,
}

/// `[[admin.tokens]]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// The approver's identity, recorded with each decision.
    pub name: String,
    /// The bearer token, read at load time from `token_env` or
    /// `token_file`.
    pub token: Secret,
}

/// `[approvals]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long a held statement waits for a decision.
    pub timeout: Duration,
    /// Whether held statements wait, or are refused until approved.
    pub mode: ApprovalMode,
    /// Where each new request is POSTed, if anywhere (`http://` only).
    pub webhook_url: Option<hyper::Uri>,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            timeout: Duration::from_secs(300),
            mode: ApprovalMode::Wait,
            webhook_url: None,
        }
    }
}

pub(super) fn approvals(f: &mut Findings, s: ApprovalsSection) -> ApprovalSettings {
    let timeout = f.duration("approvals.timeout", &s.timeout, MIN_TIMEOUT, MAX_TIMEOUT);
    let mode = match s.mode.trim() {
        "wait" => ApprovalMode::Wait,
        "reject" => ApprovalMode::Reject,
        other => {
            f.problem(
                "approvals.mode",
                format!(
                    "{other:?} is not a mode; \"wait\" (the statement waits for a decision) or \
                     \"reject\" (it is refused, and passes once when retried after approval)"
                ),
            );
            ApprovalMode::Wait
        }
    };
    let webhook_url = s.webhook_url.and_then(|text| webhook_url(f, &text));
    ApprovalSettings {
        timeout,
        mode,
        webhook_url,
    }
}

fn webhook_url(f: &mut Findings, text: &str) -> Option<hyper::Uri> {
    const KEY: &str = "approvals.webhook_url";
    let uri: hyper::Uri = match text.trim().parse() {
        Ok(u) => u,
        Err(e) => {
            f.problem(
                KEY,
                format!("{text:?} is not a URL ({e}); write e.g. \"http://127.0.0.1:8080/hook\""),
            );
            return None;
        }
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            f.problem(
                KEY,
                "https webhooks are not supported yet; use an http:// URL (e.g. a relay on \
                 this machine)",
            );
            return None;
        }
        _ => {
            f.problem(
                KEY,
                format!("{text:?} is not an http:// URL, e.g. \"http://127.0.0.1:8080/hook\""),
            );
            return None;
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        f.problem(KEY, format!("{text:?} has no host"));
        return None;
    }
    Some(uri)
}

pub(super) fn admin(
    f: &mut Findings,
    s: AdminSection,
    base: &Path,
    env: &Env<'_>,
) -> Option<AdminSettings> {
    let listen = match s.listen.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            f.problem(
                "admin.listen",
                format!(
                    "{:?} is not an IP address with a port, e.g. \"127.0.0.1:15480\"",
                    s.listen
                ),
            );
            None
        }
    };
    if let Some(a) = listen
        && !a.ip().is_loopback()
    {
        f.warning(
            "admin.listen",
            format!(
                "the admin API listens on {a}, which is not a loopback address; it speaks plain \
                 HTTP, so its bearer tokens cross the network unencrypted"
            ),
        );
    }
    if s.tokens.is_empty() {
        f.problem(
            "admin.tokens",
            "no tokens, so nobody could use the admin API; add [[admin.tokens]] with name = \
             \"alice\" and token_file = \"secrets/alice.token\" (or token_env), or remove [admin]",
        );
    }
    let mut names = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    let mut tokens = Vec::with_capacity(s.tokens.len());
    for (index, t) in s.tokens.into_iter().enumerate() {
        let at = format!("admin.tokens[{index}]");
        let name = f.required(
            &format!("{at}.name"),
            t.name,
            "give the approver's name, recorded with each decision",
        );
        if name.chars().any(char::is_control) {
            f.problem(&format!("{at}.name"), "must not contain control characters");
        } else if name == GATEWAY_APPROVER {
            f.problem(
                &format!("{at}.name"),
                format!("{GATEWAY_APPROVER:?} is reserved for the gateway's own decisions"),
            );
        } else if !name.is_empty() && !names.insert(name.clone()) {
            f.problem(
                &format!("{at}.name"),
                format!("{name:?} is also an earlier token's name; names must differ"),
            );
        }
        if t.token.is_some() {
            f.problem(
                &format!("{at}.token"),
                "tokens must not be written in the config file; put it in a file and set \
                 token_file = \"path\", or in an environment variable and set token_env",
            );
        }
        let token = match (t.token_env, t.token_file) {
            (Some(_), Some(_)) => {
                f.problem(&at, "set token_env or token_file, not both");
                None
            }
            (Some(var), None) => password_from_env(f, &format!("{at}.token_env"), &var, env),
            (None, Some(file)) => {
                let key = format!("{at}.token_file");
                let file = f.required(&key, Some(file), "give the token file's path");
                if file.is_empty() {
                    None
                } else {
                    password_from_file(f, &key, &path(base, &file))
                }
            }
            (None, None) => {
                f.problem(&at, "give token_file or token_env");
                None
            }
        };
        let Some(token) = token else { continue };
        let value = token.expose();
        if value.len() < MIN_TOKEN_BYTES || value.chars().any(char::is_whitespace) {
            f.problem(
                &at,
                format!(
                    "the token must be at least {MIN_TOKEN_BYTES} bytes without spaces; make one \
                     with `openssl rand -hex 32`"
                ),
            );
            continue;
        }
        if !hashes.insert(*blake3::hash(value.as_bytes()).as_bytes()) {
            f.problem(
                &at,
                "the same token as an earlier one; each approver needs their own",
            );
            continue;
        }
        tokens.push(AdminToken { name, token });
    }
    Some(AdminSettings {
        listen: listen?,
        tokens,
    })
}
