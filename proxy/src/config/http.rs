//! `[http]` and the HTTP side of `[targets.NAME]`: where agents' HTTP and
//! Kubernetes clients connect, and for each HTTP or Kubernetes target where
//! it is, how it is reached, and the credential the gateway injects.
//!
//! ```toml
//! [http]
//! address = "127.0.0.1:18443"     # TLS with [tls]'s certificate (ALPN http/1.1)
//! max_header_bytes = "64KiB"      # a request head larger than this: 431
//! max_headers = 100               # more header fields: 431
//! max_body_bytes = "16MiB"        # a larger request body: 413
//! header_timeout = "30s"          # to send a whole request head
//! idle_timeout = "120s"           # a keep-alive connection with no request
//!
//! [targets.orders-api]
//! kind = "http"                   # or "kubernetes"
//! url = "https://orders.internal:8443/api"
//! ca_file = "certs/orders-ca.pem" # default: the system's CA store
//! path_prefix = "/orders-api"     # default: "/" + the target's name
//! hosts = ["orders-api.gatehouse.example"]  # chosen by Host / SNI too
//! response_timeout = "60s"        # for the response's head; bodies stream on
//! [targets.orders-api.credential]
//! bearer_env = "ORDERS_API_TOKEN" # or bearer_file; basic_user + password_env/_file;
//!                                 # header + value_env/_file; cert_file + key_file
//! ```
//!
//! Secrets are read from the environment or files at load, never from the
//! config itself.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;
use super::file::{HttpSection, TargetSection};
use super::target::{password_from_env, password_from_file};
use super::units::ByteSize;
use super::validate::{Env, Findings, path};

/// `[http]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListener {
    /// Where to listen.
    pub address: SocketAddr,
    /// Whether clients may connect without TLS.
    pub allow_plaintext: bool,
    /// The largest request head, in bytes.
    pub max_header_bytes: usize,
    /// The most header fields in a request.
    pub max_headers: usize,
    /// The largest request body, in bytes.
    pub max_body_bytes: u64,
    /// How long a client has to send a whole request head.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

/// What speaks behind an HTTP target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKind {
    /// Any HTTP API: plans name methods and paths.
    Http,
    /// A Kubernetes API server: plans name verbs, resources, namespaces.
    Kubernetes,
}

/// The HTTP side of a target, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// HTTP or Kubernetes.
    pub kind: HttpKind,
    /// The upstream speaks TLS (`https://`).
    pub tls: bool,
    /// The upstream's host name or address (also the TLS server name).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// The upstream URL's path, without a trailing `/` (empty for `/`):
    /// prepended to what follows the prefix.
    pub base_path: String,
    /// PEM certificates the upstream's chain must lead to; `None`: the
    /// system's CA store (the public web roots when it has none).
    pub ca_pem: Option<Vec<u8>>,
    /// What the gateway sends upstream in the agent's grant's place.
    pub credential: Credential,
    /// Kubernetes: send `Impersonate-User: <grant subject>`, so that the
    /// cluster's own audit log names the agent.
    pub impersonate: bool,
    /// Requests whose path starts with it (a whole segment) go here.
    pub path_prefix: String,
    /// Requests for these host names (Host, or TLS SNI) go here, whatever
    /// their path.
    pub hosts: Vec<String>,
    /// Let SPDY upgrades through as opaque, recorded tunnels (old
    /// `kubectl exec`); refused otherwise.
    pub allow_spdy: bool,
    /// How long connecting to the upstream (TCP and TLS) may take.
    pub connect_timeout: Duration,
    /// How long the upstream may take to send a response's head once the
    /// request is sent (a body may then stream as long as it likes).
    pub response_timeout: Duration,
}

/// The credential injected upstream.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// None: the upstream needs no credential.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
    /// A header of the target's choosing (`X-Api-Key: <value>`).
    Header {
        /// Its name, lower case.
        name: String,
        /// Its value.
        value: Secret,
    },
    /// A TLS client certificate.
    ClientCert {
        /// The PEM chain, leaf first.
        cert_pem: Vec<u8>,
        /// The PEM private key.
        key_pem: Secret,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credential::None => "None",
            Credential::Bearer(_) => "Bearer(***)",
            Credential::Basic { .. } => "Basic(***)",
            Credential::Header { .. } => "Header(***)",
            Credential::ClientCert { .. } => "ClientCert(***)",
        })
    }
}

impl Credential {
    /// The header it sets upstream (lower case), if any: recorded as
    /// `[redacted]`.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Credential::Bearer(_) | Credential::Basic { .. } => Some("authorization"),
            Credential::Header { name, .. } => Some(name),
            Credential::None | Credential::ClientCert { .. } => None,
        }
    }
}

/// `[targets.NAME.credential]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialSection {
    /// `bearer_env` / `bearer_file`: a bearer token.
    pub bearer_env: Option<String>,
    /// See `bearer_env`.
    pub bearer_file: Option<String>,
    /// `basic_user`, with `password_env` or `password_file`: basic auth.
    pub basic_user: Option<String>,
    /// See `basic_user`.
    pub password_env: Option<String>,
    /// See `basic_user`.
    pub password_file: Option<String>,
    /// `header`, with `value_env` or `value_file`: a header of its own.
    pub header: Option<String>,
    /// See `header`.
    pub value_env: Option<String>,
    /// See `header`.
    pub value_file: Option<String>,
    /// `cert_file` and `key_file`: a TLS client certificate (PEM).
    pub cert_file: Option<String>,
    /// See `cert_file`.
    pub key_file: Option<String>,
}

const DEFAULT_MAX_HEADER_BYTES: u64 = 64 << 10;
/// hyper's read buffer cannot be smaller.
const MIN_HEADER_BYTES: u64 = 8 << 10;
const MAX_HEADER_BYTES: u64 = 1 << 20;

pub(super) fn listener(f: &mut Findings, s: HttpSection, has_tls: bool) -> Option<HttpListener> {
    let address = match s.address.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            f.problem(
                "http.address",
                format!(
                    "{:?} is not an IP address with a port, e.g. \"127.0.0.1:18443\"",
                    s.address
                ),
            );
            None
        }
    };
    if !has_tls && !s.allow_plaintext {
        f.problem(
            "http.allow_plaintext",
            "there is no [tls] section, so HTTP clients could only connect without TLS, which \
             allow_plaintext = false forbids; add [tls], or set allow_plaintext = true (grants \
             then cross the network in clear text)",
        );
    }
    let size = |f: &mut Findings, key: &str, v: &ByteSize, min: u64, max: u64| match v.bytes() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        Ok(n) => {
            f.problem(key, format!("{n} bytes is outside {min}..={max}"));
            None
        }
        Err(e) => {
            f.problem(key, e);
            None
        }
    };
    let max_header_bytes = size(
        f,
        "http.max_header_bytes",
        &s.max_header_bytes,
        MIN_HEADER_BYTES,
        MAX_HEADER_BYTES,
    );
    let max_body_bytes = size(f, "http.max_body_bytes", &s.max_body_bytes, 0, 1 << 40);
    if !(1..=10_000).contains(&s.max_headers) {
        f.problem("http.max_headers", "must be within 1..=10000");
    }
    let header_timeout = f.duration(
        "http.header_timeout",
        &s.header_timeout,
        Duration::from_millis(10),
        Duration::from_secs(3600),
    );
    let idle_timeout = f.duration(
        "http.idle_timeout",
        &s.idle_timeout,
        Duration::from_millis(10),
        Duration::from_secs(86_400),
    );
    Some(HttpListener {
        address: address?,
        allow_plaintext: s.allow_plaintext,
        max_header_bytes: usize::try_from(max_header_bytes?).ok()?,
        max_headers: usize::try_from(s.max_headers).unwrap_or(100),
        max_body_bytes: max_body_bytes?,
        header_timeout,
        idle_timeout,
    })
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            address: "127.0.0.1:18443".to_owned(),
            allow_plaintext: false,
            max_header_bytes: ByteSize::Bytes(DEFAULT_MAX_HEADER_BYTES),
            max_headers: 100,
            max_body_bytes: ByteSize::Text("16MiB".to_owned()),
            header_timeout: "30s".to_owned(),
            idle_timeout: "120s".to_owned(),
        }
    }
}

/// The HTTP side of target `name` (`at` is its config key), for a section
/// whose `kind` is `kind`.
pub(super) fn target(
    f: &mut Findings,
    at: &str,
    name: &str,
    kind: HttpKind,
    s: &mut TargetSection,
    base: &Path,
    env: &Env<'_>,
) -> Option<HttpTarget> {
    for (key, set) in [
        ("host", s.host.is_some()),
        ("database", s.database.is_some()),
        ("user", s.user.is_some()),
        ("password_env", s.password_env.is_some()),
        ("password_file", s.password_file.is_some()),
    ] {
        if set {
            f.problem(
                &format!("{at}.{key}"),
                "is for PostgreSQL targets; an HTTP or Kubernetes target takes url and \
                 [credential]",
            );
        }
    }
    let url = f.required(
        &format!("{at}.url"),
        s.url.take(),
        "give the upstream's URL, e.g. \"https://api.internal:8443\"",
    );
    let (tls, host, port, base_path) = match parse_url(&url) {
        Ok(parts) => parts,
        Err(e) => {
            if !url.is_empty() {
                f.problem(&format!("{at}.url"), e);
            }
            return None;
        }
    };
    let ca_pem = s.ca_file.take().and_then(|file| {
        let p = path(base, &file);
        match std::fs::read(&p) {
            Ok(pem) => Some(pem),
            Err(e) => {
                f.problem(
                    &format!("{at}.ca_file"),
                    format!("cannot read {}: {e}", p.display()),
                );
                None
            }
        }
    });
    if ca_pem.is_some() && !tls {
        f.problem(
            &format!("{at}.ca_file"),
            "the url is http://; a CA needs https://",
        );
    }
    let path_prefix = s.path_prefix.take().unwrap_or_else(|| format!("/{name}"));
    let path_prefix = path_prefix.trim_end_matches('/').to_owned();
    if !path_prefix.starts_with('/') || path_prefix.contains(['?', '#']) {
        f.problem(
            &format!("{at}.path_prefix"),
            "must start with / and hold no ? or #, e.g. \"/orders-api\"",
        );
    }
    if s.impersonate && kind != HttpKind::Kubernetes {
        f.problem(
            &format!("{at}.impersonate"),
            "is for kind = \"kubernetes\" targets",
        );
    }
    let credential = credential(f, at, s.credential.take().unwrap_or_default(), base, env);
    if matches!(credential, Credential::ClientCert { .. }) && !tls {
        f.problem(
            &format!("{at}.credential.cert_file"),
            "a client certificate needs an https:// url",
        );
    }
    let connect_timeout = f.duration(
        &format!("{at}.connect_timeout"),
        &s.connect_timeout,
        Duration::from_millis(1),
        Duration::from_secs(600),
    );
    let response_timeout = f.duration(
        &format!("{at}.response_timeout"),
        &s.response_timeout,
        Duration::from_millis(10),
        Duration::from_secs(86_400),
    );
    Some(HttpTarget {
        kind,
        response_timeout,
        tls,
        host,
        port,
        base_path,
        ca_pem,
        credential,
        impersonate: s.impersonate,
        path_prefix,
        hosts: s.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
        allow_spdy: s.allow_spdy,
        connect_timeout,
    })
}

/// `(tls, host, port, base path)` of an `http://` or `https://` URL.
fn parse_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("{url:?}: the scheme must be http or https")),
    };
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    if uri.query().is_some() {
        return Err(format!("{url:?}: a target URL takes no query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok((tls, host, port, base_path))
}

fn credential(
    f: &mut Findings,
    at: &str,
    s: CredentialSection,
    base: &Path,
    env: &Env<'_>,
) -> Credential {
    let at = format!("{at}.credential");
    let secret =
        |f: &mut Findings, what: &str, var: Option<String>, file: Option<String>| match (var, file)
        {
            (Some(_), Some(_)) => {
                f.problem(&at, format!("set {what}_env or {what}_file, not both"));
                None
            }
            (Some(var), None) => password_from_env(f, &format!("{at}.{what}_env"), &var, env),
            (None, Some(file)) => {
                password_from_file(f, &format!("{at}.{what}_file"), &path(base, &file))
            }
            (None, None) => None,
        };
    let bearer = secret(f, "bearer", s.bearer_env, s.bearer_file);
    let password = secret(f, "password", s.password_env, s.password_file);
    let value = secret(f, "value", s.value_env, s.value_file);
    let cert = match (s.cert_file, s.key_file) {
        (Some(c), Some(k)) => {
            let read = |f: &mut Findings, key: &str, file: &str| {
                let p = path(base, file);
                std::fs::read(&p)
                    .map_err(|e| {
                        f.problem(
                            &format!("{at}.{key}"),
                            format!("cannot read {}: {e}", p.display()),
                        )
                    })
                    .ok()
            };
            match (read(f, "cert_file", &c), read(f, "key_file", &k)) {
                (Some(cert_pem), Some(key)) => match String::from_utf8(key) {
                    Ok(key) => Some((cert_pem, Secret::new(key))),
                    Err(_) => {
                        f.problem(&format!("{at}.key_file"), "is not PEM text");
                        None
                    }
                },
                _ => None,
            }
        }
        (None, None) => None,
        _ => {
            f.problem(&at, "cert_file and key_file go together");
            None
        }
    };
    let mut chosen = Vec::new();
    if let Some(token) = bearer {
        chosen.push(Credential::Bearer(token));
    }
    match (s.basic_user, password) {
        (Some(user), Some(password)) => chosen.push(Credential::Basic { user, password }),
        (None, None) => {}
        _ => f.problem(
            &at,
            "basic_user needs password_env or password_file, and they need it",
        ),
    }
    match (s.header, value) {
        (Some(name), Some(value)) => {
            let name = name.to_ascii_lowercase();
            if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                f.problem(
                    &format!("{at}.header"),
                    format!("{name:?} is not a header name"),
                );
            }
            chosen.push(Credential::Header { name, value });
        }
        (None, None) => {}
        _ => f.problem(
            &at,
            "header needs value_env or value_file, and they need it",
        ),
    }
    if let Some((cert_pem, key_pem)) = cert {
        chosen.push(Credential::ClientCert { cert_pem, key_pem });
    }
    match chosen.len() {
        0 => Credential::None,
        1 => chosen.pop().unwrap_or(Credential::None),
        _ => {
            f.problem(
                &at,
                "set one credential: bearer, basic, header or a client certificate",
            );
            Credential::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("https://api.internal:8443/v2/").unwrap(),
            (true, "api.internal".into(), 8443, "/v2".into())
        );
        assert_eq!(
            parse_url("http://127.0.0.1").unwrap(),
            (false, "127.0.0.1".into(), 80, String::new())
        );
        assert_eq!(
            parse_url("https://[::1]/").unwrap(),
            (true, "::1".into(), 443, String::new())
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("https://x/?a=b").is_err());
        assert!(parse_url("not a url").is_err());
    }
}
