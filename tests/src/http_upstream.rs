//! Small HTTP upstreams that misbehave on purpose, for the HTTP fault
//! tests: a scripted HTTP/1.1 server whose answers are raw bytes (bodies
//! cut short, invalid JSON, compressed JSON), optionally behind TLS that
//! requires a client certificate signed by a CA of the test's own.
//!
//! Each server runs on threads of its own (one per connection), answers
//! keep-alive requests in turn, and stops on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

use crate::TestCerts;

/// What the server sends for one request.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The raw bytes: status line, head and (part of) a body.
    pub bytes: Vec<u8>,
    /// Close the connection after sending them.
    pub close: bool,
}

impl Reply {
    /// A complete `200 OK` with this content type and body, keep-alive.
    pub fn ok(content_type: &str, body: &[u8]) -> Reply {
        let mut bytes = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        Reply {
            bytes,
            close: false,
        }
    }

    /// These bytes as they are, then the connection closes.
    pub fn raw_then_close(bytes: &[u8]) -> Reply {
        Reply {
            bytes: bytes.to_vec(),
            close: true,
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The request line (`GET /ok HTTP/1.1`).
    pub line: String,
    /// The common name of the client's TLS certificate, if it sent one.
    pub client_cn: Option<String>,
}

/// The server's answer to a request: `(request line, client CN)` → reply.
pub type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A scripted HTTP/1.1 server on 127.0.0.1.
pub struct ScriptedServer {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    /// Plain TCP.
    pub fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> ScriptedServer {
        ScriptedServer::spawn(None, Arc::new(script))
    }

    /// TLS with `tls`'s certificate.
    pub fn start_tls(
        tls: Arc<ServerConfig>,
        script: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> ScriptedServer {
        ScriptedServer::spawn(Some(tls), Arc::new(script))
    }

    fn spawn(tls: Option<Arc<ServerConfig>>, script: Arc<Script>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                for tcp in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = tcp else { continue };
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(20)));
                    let (seen, script, tls) = (seen.clone(), script.clone(), tls.clone());
                    std::thread::spawn(move || match tls {
                        None => serve(tcp, &*script, &seen, |_| None),
                        Some(config) => {
                            let Ok(conn) = ServerConnection::new(config) else {
                                return;
                            };
                            let stream = StreamOwned::new(conn, tcp);
                            serve(stream, &*script, &seen, |s| {
                                s.conn
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .and_then(|c| common_name(c))
                            });
                        }
                    });
                }
            })
        };
        ScriptedServer {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The requests it has read so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers requests on one connection until it closes or a reply closes it.
fn serve<S: Read + Write>(
    mut s: S,
    script: &Script,
    seen: &Mutex<Vec<Seen>>,
    client_cn: impl Fn(&S) -> Option<String>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(raw) = read_request(&mut s, &mut buf) else {
            return;
        };
        let head = String::from_utf8_lossy(&raw);
        let request = Seen {
            line: head.lines().next().unwrap_or("").to_owned(),
            client_cn: client_cn(&s),
        };
        seen.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(request.clone());
        let reply = script(&request);
        if s.write_all(&reply.bytes).and_then(|()| s.flush()).is_err() || reply.close {
            return;
        }
    }
}

/// Reads one request from `s` — its head and a `Content-Length` body (the
/// gateway always sends one) — with `buf` holding what was read beyond
/// the previous one. `None` when the peer closed first.
pub fn read_request(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut fill = |buf: &mut Vec<u8>| {
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    };
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        fill(buf)?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let body_len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + body_len {
        fill(buf)?;
    }
    Some(buf.drain(..head_end + body_len).collect())
}

/// The subject's common name of a DER certificate: the last CN attribute
/// (the issuer's comes first in the certificate), good enough for the
/// short UTF8String/PrintableString names these tests make.
fn common_name(der: &CertificateDer<'_>) -> Option<String> {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let bytes: &[u8] = der.as_ref();
    let at = bytes.windows(5).rposition(|w| w == CN_OID)? + 5;
    let len = usize::from(*bytes.get(at + 1)?);
    let value = bytes.get(at + 2..at + 2 + len)?;
    Some(String::from_utf8_lossy(value).into_owned())
}

/// A client CA and a client certificate it signed, as PEM files.
#[derive(Clone, Debug)]
pub struct ClientPki {
    /// The client CA's certificate: what the server trusts.
    pub ca_cert: PathBuf,
    /// The client's certificate.
    pub cert: PathBuf,
    /// The client's private key (PKCS#8).
    pub key: PathBuf,
}

impl ClientPki {
    /// Generates a client CA and a certificate for `cn` into `dir`.
    pub fn generate(dir: &Path, cn: &str) -> ClientPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Gatehouse test client CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &ca, &ca_key)
            .expect("client certificate");
        let pki = ClientPki {
            ca_cert: dir.join("client-ca.crt"),
            cert: dir.join("client.crt"),
            key: dir.join("client.key"),
        };
        std::fs::write(&pki.ca_cert, ca.pem()).expect("write");
        std::fs::write(&pki.cert, cert.pem()).expect("write");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write");
        pki
    }
}

/// A TLS server config with `server`'s certificate that requires a client
/// certificate leading to `client_ca` (a PEM file).
pub fn mtls_server_config(server: &TestCerts, client_ca: &Path) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(client_ca).expect("client CA") {
        roots.add(cert.expect("client CA PEM")).expect("client CA");
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .expect("client verifier");
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&server.server_cert)
        .expect("server cert")
        .collect::<Result<_, _>>()
        .expect("server cert PEM");
    let key = PrivateKeyDer::from_pem_file(&server.server_key).expect("server key");
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_common_name_not_the_issuers() {
        let dir = tempfile::tempdir().expect("dir");
        let pki = ClientPki::generate(dir.path(), "agent-client-1");
        let cert = CertificateDer::from_pem_file(&pki.cert).expect("PEM");
        assert_eq!(common_name(&cert).as_deref(), Some("agent-client-1"));
        let ca = CertificateDer::from_pem_file(&pki.ca_cert).expect("PEM");
        assert_eq!(
            common_name(&ca).as_deref(),
            Some("Gatehouse test client CA")
        );
        assert_eq!(common_name(&CertificateDer::from(vec![1, 2, 3])), None);
    }
}
