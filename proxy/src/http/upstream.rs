//! The upstream side of an HTTP target: its TLS client configuration,
//! built once at load, and a connection per client connection, with the
//! target's credential in the agent's grant's place.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderValue};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::ProxyBody;
use crate::config::{Credential, HttpKind, HttpTarget, Masking};
use crate::serve::{Io, Socket};
use gatehouse_core::mask::{JsonKeyRule, JsonKeys};

/// An HTTP or Kubernetes target, ready to connect to.
pub struct HttpUpstream {
    /// What the config says.
    pub target: HttpTarget,
    /// With `https://`: the TLS client and the name to verify.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The credential's header, ready to insert.
    header: Option<(header::HeaderName, HeaderValue)>,
    /// JSON keys masked in its responses, compiled.
    pub keys: Arc<JsonKeys>,
    /// The same, as configured (a grant may add to them).
    pub key_rules: Vec<JsonKeyRule>,
    /// The `token` strategy's secret (empty without one).
    pub token_secret: String,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl HttpUpstream {
    /// Builds the TLS client and the credential header of `target`.
    pub fn new(target: HttpTarget, masking: Option<&Masking>) -> Result<HttpUpstream> {
        let key_rules: Vec<JsonKeyRule> = masking
            .map(|m| {
                m.keys
                    .iter()
                    .map(|(pattern, strategy)| JsonKeyRule {
                        pattern: pattern.clone(),
                        strategy: *strategy,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let token_secret = masking
            .and_then(|m| m.token_secret.as_ref())
            .map(|s| s.expose().to_owned())
            .unwrap_or_default();
        let keys = Arc::new(
            JsonKeys::new(&key_rules, token_secret.as_bytes())
                .map_err(|e| anyhow::anyhow!("masking keys: {e}"))?,
        );
        let tls = if target.tls {
            let name = ServerName::try_from(target.host.clone())
                .with_context(|| format!("{:?} is not a TLS server name", target.host))?;
            Some((TlsConnector::from(Arc::new(client_config(&target)?)), name))
        } else {
            None
        };
        let header = match &target.credential {
            Credential::None | Credential::ClientCert { .. } => None,
            Credential::Bearer(token) => Some((
                header::AUTHORIZATION,
                secret_value(&format!("Bearer {}", token.expose()))?,
            )),
            Credential::Basic { user, password } => {
                let pair = format!("{user}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Some((
                    header::AUTHORIZATION,
                    secret_value(&format!("Basic {encoded}"))?,
                ))
            }
            Credential::Header { name, value } => Some((
                header::HeaderName::from_bytes(name.as_bytes())
                    .context("the credential's header name")?,
                secret_value(value.expose())?,
            )),
        };
        Ok(HttpUpstream {
            target,
            tls,
            header,
            keys,
            key_rules,
            token_secret,
        })
    }

    /// Whether this is a Kubernetes API server.
    pub fn is_kubernetes(&self) -> bool {
        self.target.kind == HttpKind::Kubernetes
    }

    /// Puts the target's credential into `headers` (the agent's
    /// `Authorization` is already gone), and for Kubernetes with
    /// `impersonate`, `Impersonate-User: subject` (any impersonation the
    /// agent asked for itself was removed first). `Err` (the request must
    /// not go) when the subject cannot be a header value (a CR or LF, a
    /// control character, empty): without the header the request would
    /// run as the gateway's own identity.
    pub fn inject(&self, headers: &mut HeaderMap, subject: &str) -> Result<(), String> {
        if let Some((name, value)) = &self.header {
            headers.insert(name.clone(), value.clone());
        }
        if self.is_kubernetes() {
            let asked: Vec<_> = headers
                .keys()
                .filter(|k| k.as_str().starts_with("impersonate-"))
                .cloned()
                .collect();
            for k in asked {
                headers.remove(k);
            }
            if self.target.impersonate {
                let value = HeaderValue::from_str(subject)
                    .ok()
                    .filter(|v| !subject.trim().is_empty() && !v.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "gatehouse: the grant's subject {subject:?} cannot be sent as \
                             Impersonate-User, so the request was not forwarded; ask the planner \
                             for a grant with a plain subject"
                        )
                    })?;
                headers.insert("impersonate-user", value);
            }
        }
        Ok(())
    }

    /// Opens a connection: TCP, TLS for `https://`, then HTTP/1.1.
    pub async fn connect(&self) -> std::io::Result<SendRequest<ProxyBody>> {
        let t = &self.target;
        let deadline = tokio::time::Instant::now() + t.connect_timeout;
        let tcp = Socket::connect(&t.host, t.port, deadline).await?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => {
                let tls = tokio::time::timeout_at(deadline, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

/// A header value that is never logged by `http`'s Debug.
fn secret_value(text: &str) -> Result<HeaderValue> {
    let mut v =
        HeaderValue::from_str(text).context("the credential is not a valid header value")?;
    v.set_sensitive(true);
    Ok(v)
}

fn client_config(target: &HttpTarget) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match &target.ca_pem {
        Some(pem) => {
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                roots
                    .add(cert.context("reading ca_file")?)
                    .context("a ca_file certificate")?;
            }
            anyhow::ensure!(!roots.is_empty(), "ca_file holds no certificate");
        }
        None => {
            // The system's store (SSL_CERT_FILE / SSL_CERT_DIR honoured), so
            // that a private CA the host trusts works; the public web roots
            // compiled in when the system has none.
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::debug!("reading the system's CA certificates: {e}");
            }
            let (added, _) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let mut config = match &target.credential {
        Credential::ClientCert { cert_pem, key_pem } => {
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
                .collect::<Result<_, _>>()
                .context("reading the client certificate")?;
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut key_pem.expose().as_bytes())
                    .context("reading the client key")?
                    .context("the client key file holds no private key")?;
            builder
                .with_client_auth_cert(certs, key)
                .context("the client certificate does not match its key")?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HttpKind;

    fn kube(impersonate: bool) -> HttpUpstream {
        let target = HttpTarget {
            kind: HttpKind::Kubernetes,
            tls: false,
            host: "127.0.0.1".into(),
            port: 6443,
            base_path: String::new(),
            ca_pem: None,
            credential: Credential::None,
            impersonate,
            path_prefix: "/k8s".into(),
            hosts: Vec::new(),
            allow_spdy: false,
            connect_timeout: std::time::Duration::from_secs(1),
            response_timeout: std::time::Duration::from_secs(1),
        };
        HttpUpstream::new(target, None).unwrap()
    }

    #[test]
    fn the_subject_is_impersonated_and_the_agents_own_impersonation_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "impersonate-group",
            HeaderValue::from_static("system:masters"),
        );
        kube(true).inject(&mut h, "agent-7").unwrap();
        assert_eq!(h.get("impersonate-user").unwrap(), "agent-7");
        assert!(h.get("impersonate-group").is_none());
    }

    #[test]
    fn a_subject_that_cannot_be_a_header_value_stops_the_request() {
        // Without Impersonate-User the request would run as the gateway's
        // own service account: it must not go at all.
        for subject in [
            "agent\r\nImpersonate-Group: system:masters",
            "a\nb",
            "",
            " ",
        ] {
            let mut h = HeaderMap::new();
            let err = kube(true).inject(&mut h, subject).unwrap_err();
            assert!(err.contains("Impersonate-User"), "{err}");
            assert!(h.get("impersonate-user").is_none());
            assert!(h.get("impersonate-group").is_none());
        }
        // Without impersonation the subject is not sent anywhere.
        let mut h = HeaderMap::new();
        kube(false).inject(&mut h, "a\nb").unwrap();
        assert!(h.is_empty());
    }
}
