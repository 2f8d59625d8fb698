//! Grant keys that change at runtime: an identity provider's JWK set, from
//! a file or an `http(s)://` URL, merged with the `[[grants.keys]]`.
//!
//! [`LiveVerifier`] holds the current [`Verifier`] behind an `RwLock<Arc<…>>`
//! (a connection clones the `Arc` and lets go of the lock). A thread of its
//! own, with a current-thread tokio runtime, re-reads the sources every
//! `jwks_refresh_interval`, and when a grant names a key id no current key
//! has: then the connection that asked waits for the re-read (at most the
//! fetch timeout), and such re-reads are rate-limited to one per
//! `jwks_refresh_min_interval`, so that a flood of made-up key ids cannot
//! turn the gateway into a load generator against the provider. A re-read
//! that fails keeps the keys it had. A key removed from the set is refused
//! from the next re-read on.
//!
//! What this is not: the JWKS parsing (`gatehouse_core::grant`), or a
//! general HTTP client.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use gatehouse_core::grant::{KeySet, PolicySelector, SkippedKey, Verifier};
use http_body_util::Empty;
use hyper::Uri;

use crate::config::GrantsConfig;

/// How long one fetch of a JWK set (connect, TLS, request, body) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWK set accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Checks a `jwks_url`: `http://` or `https://` with a host.
pub fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url:?}: give an http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url:?}: the URL has no host"));
    }
    Ok(uri)
}

/// Allows an on-demand re-read at most once per `min_interval`. Pure: the
/// caller passes `now`.
#[derive(Debug)]
pub struct RefreshLimiter {
    min_interval: Duration,
    last: Option<Instant>,
}

impl RefreshLimiter {
    /// A limiter that has not allowed anything yet.
    pub fn new(min_interval: Duration) -> RefreshLimiter {
        RefreshLimiter {
            min_interval,
            last: None,
        }
    }

    /// Whether a re-read may start at `now`; if so, it counts from `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let ok = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.min_interval);
        if ok {
            self.last = Some(now);
        }
        ok
    }
}

/// Where the keys come from.
#[derive(Debug, Clone)]
struct Sources {
    fixed: KeySet,
    file: Option<PathBuf>,
    url: Option<Uri>,
}

impl Sources {
    /// Reads every source and merges the keys; a key id present twice is
    /// an error.
    async fn load(&self) -> anyhow::Result<(KeySet, Vec<SkippedKey>)> {
        let mut keys = self.fixed.clone();
        let mut skipped = Vec::new();
        if let Some(path) = &self.file {
            let (file, skip) = crate::config::read_jwks_file(path)?;
            keys.merge(file)
                .with_context(|| format!("grants.jwks_file: {}", path.display()))?;
            skipped.extend(skip);
        }
        if let Some(url) = &self.url {
            let text = tokio::time::timeout(FETCH_TIMEOUT, fetch(url))
                .await
                .map_err(|_| anyhow::anyhow!("no answer within {FETCH_TIMEOUT:?}"))
                .and_then(|r| r)
                .with_context(|| format!("grants.jwks_url: cannot fetch the JWK set from {url}"))?;
            let (set, skip) =
                KeySet::from_jwks_json(&text).with_context(|| format!("grants.jwks_url: {url}"))?;
            keys.merge(set)
                .with_context(|| format!("grants.jwks_url: {url}"))?;
            skipped.extend(skip);
        }
        Ok((keys, skipped))
    }
}

/// GETs `url` and returns the body of a 200 answer.
async fn fetch(url: &Uri) -> anyhow::Result<String> {
    let response = match url.scheme_str() {
        Some("https") => https_get(url).await?,
        _ => crate::admin::client::send(url, hyper::Method::GET, None, None, FETCH_TIMEOUT).await?,
    };
    let status = response.status();
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    let body = crate::admin::client::read_body(response.into_body(), MAX_JWKS_BYTES).await?;
    String::from_utf8(body.to_vec()).context("the JWK set is not UTF-8")
}

/// One GET over TLS (certificates checked against the webpki roots).
async fn https_get(url: &Uri) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    use hyper::header::{HOST, USER_AGENT};
    let authority = url.authority().context("the URL has no host")?.clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = authority.port_u16().unwrap_or(443);
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS setup")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .with_context(|| format!("{host:?} is not a server name"))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS with {authority}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(tls))
            .await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("JWKS connection: {e}");
        }
    });
    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = hyper::Request::get(path)
        .header(HOST, authority.as_str())
        .header(USER_AGENT, concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .body(Empty::new())?;
    Ok(sender.send_request(request).await?)
}

/// Asks the refresh thread for re-reads and waits for them.
#[derive(Debug)]
struct Refresher {
    limiter: Mutex<RefreshLimiter>,
    trigger: Mutex<mpsc::Sender<()>>,
    /// Re-reads finished so far, and a condvar signalled after each.
    done: Arc<(Mutex<u64>, Condvar)>,
}

/// The grant verifier as it is now, and how to renew it.
#[derive(Debug)]
pub struct LiveVerifier {
    current: Arc<RwLock<Arc<Verifier>>>,
    policies: PolicySelector,
    refresher: Option<Refresher>,
}

impl LiveVerifier {
    /// A verifier whose keys never change.
    pub fn fixed(verifier: Verifier, policies: PolicySelector) -> LiveVerifier {
        LiveVerifier {
            current: Arc::new(RwLock::new(Arc::new(verifier))),
            policies,
            refresher: None,
        }
    }

    /// Reads every key source of `grants` now (a JWK set URL that cannot be
    /// fetched is an error) and, if there is a JWK set, starts the thread
    /// that re-reads them.
    pub fn start(grants: &GrantsConfig) -> anyhow::Result<LiveVerifier> {
        let fixed = grants.static_key_set()?;
        let template = Verifier {
            keys: KeySet::new(),
            issuer: grants.issuer.clone(),
            audience: grants.audience.clone(),
            leeway_s: grants.leeway.as_secs(),
        };
        if grants.jwks_file.is_none() && grants.jwks_url.is_none() {
            let verifier = Verifier {
                keys: fixed,
                ..template
            };
            return Ok(LiveVerifier::fixed(verifier, grants.policies.clone()));
        }
        let url = match &grants.jwks_url {
            Some(url) => Some(check_url(url).map_err(|e| anyhow::anyhow!("grants.jwks_url: {e}"))?),
            None => None,
        };
        let sources = Sources {
            fixed,
            file: grants.jwks_file.clone(),
            url,
        };
        Self::spawn(
            sources,
            template,
            grants.policies.clone(),
            grants.jwks_refresh_interval,
            grants.jwks_refresh_min_interval,
        )
    }

    fn spawn(
        sources: Sources,
        template: Verifier,
        policies: PolicySelector,
        interval: Duration,
        min_interval: Duration,
    ) -> anyhow::Result<LiveVerifier> {
        let (trigger, requests) = mpsc::channel::<()>();
        let (first_tx, first_rx) = mpsc::sync_channel(1);
        let done = Arc::new((Mutex::new(0u64), Condvar::new()));
        let thread_done = Arc::clone(&done);
        std::thread::Builder::new()
            .name("gatehouse-jwks".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = first_tx.send(Err(anyhow::anyhow!("JWKS runtime: {e}")));
                        return;
                    }
                };
                let first = runtime.block_on(sources.load());
                let current = match first {
                    Ok((keys, skipped)) => {
                        for skip in &skipped {
                            tracing::warn!("JWK set: {skip} (skipped)");
                        }
                        tracing::info!(keys = keys.len(), "grant keys loaded");
                        let current = Arc::new(RwLock::new(Arc::new(Verifier {
                            keys,
                            ..template.clone()
                        })));
                        let _ = first_tx.send(Ok(Arc::clone(&current)));
                        current
                    }
                    Err(e) => {
                        let _ = first_tx.send(Err(e));
                        return;
                    }
                };
                refresh_loop(
                    &runtime,
                    &sources,
                    &template,
                    &current,
                    &requests,
                    &thread_done,
                    interval,
                );
            })
            .context("spawning the JWKS thread")?;
        let current = first_rx.recv().context("the JWKS thread stopped")??;
        Ok(LiveVerifier {
            current,
            policies,
            refresher: Some(Refresher {
                limiter: Mutex::new(RefreshLimiter::new(min_interval)),
                trigger: Mutex::new(trigger),
                done,
            }),
        })
    }

    /// The verifier now.
    pub fn current(&self) -> Arc<Verifier> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The named policies for grants without a plan.
    pub fn policies(&self) -> &PolicySelector {
        &self.policies
    }

    /// A grant named a key no current key has: re-reads the key sources if
    /// the rate limit allows, waiting at most the fetch timeout. Returns
    /// whether a re-read finished (then verifying again may succeed).
    pub fn refresh_for_unknown_kid(&self) -> bool {
        let Some(r) = &self.refresher else {
            return false;
        };
        let allowed = r
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(Instant::now());
        if !allowed {
            return false;
        }
        let (count, signal) = &*r.done;
        let mut finished = count.lock().unwrap_or_else(|e| e.into_inner());
        let before = *finished;
        let sent = r
            .trigger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(())
            .is_ok();
        if !sent {
            return false;
        }
        let deadline = Instant::now() + FETCH_TIMEOUT + Duration::from_secs(1);
        while *finished == before {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            finished = signal
                .wait_timeout(finished, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// The refresh thread's loop: re-reads on request and every `interval`,
/// until the [`LiveVerifier`] is dropped.
fn refresh_loop(
    runtime: &tokio::runtime::Runtime,
    sources: &Sources,
    template: &Verifier,
    current: &RwLock<Arc<Verifier>>,
    requests: &mpsc::Receiver<()>,
    done: &(Mutex<u64>, Condvar),
    interval: Duration,
) {
    loop {
        match requests.recv_timeout(interval) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while requests.try_recv().is_ok() {}
        match runtime.block_on(sources.load()) {
            Ok((keys, skipped)) => {
                for skip in &skipped {
                    tracing::debug!("JWK set: {skip} (skipped)");
                }
                let verifier = Arc::new(Verifier {
                    keys,
                    ..template.clone()
                });
                *current.write().unwrap_or_else(|e| e.into_inner()) = verifier;
            }
            Err(e) => {
                tracing::warn!("re-reading the grant keys failed, keeping the old ones: {e:#}")
            }
        }
        let (count, signal) = done;
        *count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        signal.notify_all();
    }
}

#[cfg(test)]
mod tests;
