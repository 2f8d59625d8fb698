//! A small HTTP/1.1 client (hyper's connection-level client): one request
//! per connection, plain `http://` only. Used by `gatehouse approvals`, the
//! approval webhook and the admin API's tests; nothing here needs pooling.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;

/// Why a request failed before a response came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not one this client can use.
    #[error("{0}")]
    Url(String),
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The connection was made but HTTP failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// No response in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// `base` (`http://host:port`, maybe with a path prefix) joined with
/// `path` (`/approvals`).
pub fn join(base: &str, path: &str) -> Result<Uri, ClientError> {
    let text = format!("{}{path}", base.trim_end_matches('/'));
    text.parse()
        .map_err(|e| ClientError::Url(format!("{text:?} is not a URL: {e}")))
}

/// Sends one request to `uri` and returns the response once its head has
/// arrived; the body streams from a connection task on the current tokio
/// runtime. `timeout` bounds connecting and waiting for the head.
pub async fn send(
    uri: &Uri,
    method: Method,
    bearer: Option<&str>,
    json: Option<Bytes>,
    timeout: Duration,
) -> Result<Response<Incoming>, ClientError> {
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(ClientError::Url(format!(
                "{uri}: only http:// is supported, not {other}://"
            )));
        }
        None => return Err(ClientError::Url(format!("{uri}: give a URL with http://"))),
    }
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::Url(format!("{uri}: no host")))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());

    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority.as_str())
        .header(USER_AGENT, concat!("gatehouse/", env!("CARGO_PKG_VERSION")));
    if let Some(token) = bearer {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    if json.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(json.unwrap_or_default()))
        .map_err(|e| ClientError::Url(format!("{uri}: {e}")))?;

    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|source| ClientError::Connect {
                addr: authority.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("HTTP client connection: {e}");
            }
        });
        Ok::<_, ClientError>(sender.send_request(request).await?)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// Reads a whole response body, at most `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> anyhow::Result<Bytes> {
    Ok(Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the response: {e}"))?
        .to_bytes())
}
