//! A throwaway certificate authority and a server certificate for the
//! gateway's TLS listener, plus the client side that trusts them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// PEM files of a fresh CA and of a server certificate it signed for
/// [`SERVER_NAMES`].
#[derive(Clone, Debug)]
pub struct TestCerts {
    /// The CA certificate (`ca.crt`): what a verifying client trusts.
    pub ca_cert: PathBuf,
    /// The server certificate chain (`gatehouse.crt`): leaf, then CA.
    pub server_cert: PathBuf,
    /// The server's PKCS#8 private key (`gatehouse.key`).
    pub server_key: PathBuf,
    ca_der: CertificateDer<'static>,
}

impl TestCerts {
    /// Generates the CA and the server certificate and writes them into
    /// `dir` (which must exist).
    pub fn generate(dir: &Path) -> TestCerts {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Gatehouse test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");

        let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "gatehouse test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("server certificate");

        let certs = TestCerts {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("gatehouse.crt"),
            server_key: dir.join("gatehouse.key"),
            ca_der: ca.der().clone(),
        };
        write(&certs.ca_cert, &ca.pem());
        write(&certs.server_cert, &format!("{}{}", cert.pem(), ca.pem()));
        write(&certs.server_key, &key.serialize_pem());
        certs
    }

    /// A root store holding only the test CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("the test CA is a valid trust anchor");
        roots
    }

    /// A rustls client config (ring provider) that trusts only the test CA
    /// and verifies the server name.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(self.root_store())
            .with_no_client_auth()
    }

    /// The TLS connector for tokio-postgres, built on
    /// [`client_config`](Self::client_config).
    pub fn make_tls_connect(&self) -> MakeRustlsConnect {
        MakeRustlsConnect::new(self.client_config())
    }
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{PrivateKeyDer, ServerName};
    use rustls::{ClientConnection, ServerConfig, ServerConnection};

    fn server_config(certs: &TestCerts) -> Arc<ServerConfig> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
            .expect("cert file")
            .collect::<Result<_, _>>()
            .expect("cert PEM");
        let key = PrivateKeyDer::from_pem_file(&certs.server_key).expect("key PEM");
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("server config");
        Arc::new(config)
    }

    /// Runs a TLS handshake in memory; the client's error, if any.
    fn handshake(
        client: ClientConfig,
        server: Arc<ServerConfig>,
        name: &str,
    ) -> Result<(), String> {
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let mut client = ClientConnection::new(Arc::new(client), name).expect("client");
        let mut server = ServerConnection::new(server).expect("server");
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).expect("client write");
            server.read_tls(&mut &buf[..]).expect("server read");
            if let Err(e) = server.process_new_packets() {
                return Err(format!("server: {e}"));
            }
            buf.clear();
            server.write_tls(&mut buf).expect("server write");
            client.read_tls(&mut &buf[..]).expect("client read");
            client.process_new_packets().map_err(|e| e.to_string())?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        Err("handshake did not finish".to_owned())
    }

    #[test]
    fn client_verifies_the_server_by_name_and_address() {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = TestCerts::generate(dir.path());
        let server = server_config(&certs);
        for name in SERVER_NAMES {
            handshake(certs.client_config(), server.clone(), name).expect(name);
        }
        let err = handshake(certs.client_config(), server, "example.com").unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
    }

    #[test]
    fn another_ca_is_not_trusted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).expect("mkdir");
        std::fs::create_dir(&b).expect("mkdir");
        let ours = TestCerts::generate(&a);
        let theirs = TestCerts::generate(&b);
        let err = handshake(theirs.client_config(), server_config(&ours), "localhost").unwrap_err();
        // Both CAs share a name, so the chain is found and its signature fails.
        assert!(
            err.contains("BadSignature") || err.contains("UnknownIssuer"),
            "{err}"
        );
    }
}
