//! The listener's TLS configuration (rustls).

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// ALPN protocol id PostgreSQL 17 clients send with direct TLS.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// Builds the acceptor from PEM certificate chain and key files.
pub fn acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor> {
    // Direct TLS requires ALPN `postgresql`; SSLRequest clients may send it
    // or nothing. rustls refuses a client that offers ALPN without a match,
    // which is what PostgreSQL does too.
    acceptor_with_alpn(cert_pem, key_pem, vec![ALPN_POSTGRESQL.to_vec()])
}

/// An acceptor of the same certificate offering `alpn`.
pub fn acceptor_with_alpn(
    cert_pem: &[u8],
    key_pem: &[u8],
    alpn: Vec<Vec<u8>>,
) -> Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .context("reading the TLS certificate chain")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .context("reading the TLS private key")?
        .context("the TLS key file holds no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS certificate does not match its key")?;
    config.alpn_protocols = alpn;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
