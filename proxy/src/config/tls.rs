//! `[tls]`: the listener's certificate and key, checked the way the
//! listener will use them.

use std::path::Path;
use std::sync::Arc;

use super::TlsFiles;
use super::file::TlsSection;
use super::validate::{Findings, path};

pub(super) fn tls_files(f: &mut Findings, s: TlsSection, base: &Path) -> TlsFiles {
    let cert = f.required(
        "tls.cert",
        s.cert,
        "give the PEM certificate chain, leaf first",
    );
    let key = f.required("tls.key", s.key, "give the certificate's PEM private key");
    let files = TlsFiles {
        cert: path(base, &cert),
        key: path(base, &key),
    };
    if !cert.is_empty() && !key.is_empty() {
        check_tls(f, &files);
    }
    files
}

/// Reads and parses both TLS files and checks that the key matches the
/// certificate, the way the listener will.
fn check_tls(f: &mut Findings, files: &TlsFiles) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs: Option<Vec<CertificateDer<'static>>> = match std::fs::read(&files.cert) {
        Err(e) => {
            f.problem(
                "tls.cert",
                format!("cannot read {}: {e}", files.cert.display()),
            );
            None
        }
        Ok(pem) => {
            match rustls_pemfile::certs(&mut pem.as_slice()).collect::<Result<Vec<_>, _>>() {
                Ok(certs) if certs.is_empty() => {
                    f.problem(
                        "tls.cert",
                        format!(
                            "{} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")",
                            files.cert.display()
                        ),
                    );
                    None
                }
                Ok(certs) => Some(certs),
                Err(e) => {
                    f.problem(
                        "tls.cert",
                        format!("{}: not valid PEM: {e}", files.cert.display()),
                    );
                    None
                }
            }
        }
    };
    let key: Option<PrivateKeyDer<'static>> = match std::fs::read(&files.key) {
        Err(e) => {
            f.problem(
                "tls.key",
                format!("cannot read {}: {e}", files.key.display()),
            );
            None
        }
        Ok(pem) => match rustls_pemfile::private_key(&mut pem.as_slice()) {
            Ok(Some(key)) => Some(key),
            Ok(None) => {
                f.problem(
                    "tls.key",
                    format!(
                        "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                        files.key.display()
                    ),
                );
                None
            }
            Err(e) => {
                f.problem(
                    "tls.key",
                    format!("{}: not valid PEM: {e}", files.key.display()),
                );
                None
            }
        },
    };
    let (Some(certs), Some(key)) = (certs, key) else {
        return;
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let built = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key));
    if let Err(e) = built {
        f.problem(
            "tls",
            format!(
                "the key {} cannot serve the certificate {}: {e}",
                files.key.display(),
                files.cert.display()
            ),
        );
    }
}
