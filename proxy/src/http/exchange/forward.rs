//! The request as the target gets it, its sending on the session's
//! upstream connection, and the gateway's own answers.

use super::*;
use gatehouse_core::errors::chain;

impl Conn {
    /// The request as the target gets it.
    pub(super) fn upstream_request(
        &self,
        active: &Active,
        mut parts: http::request::Parts,
        rest: &str,
        body: Bytes,
        masking: bool,
        upgrade: bool,
    ) -> Result<Request<ProxyBody>, Box<Problem>> {
        let t = &active.upstream.target;
        let uri: Uri = format!("{}{rest}", t.base_path).parse().map_err(|e| {
            Box::new(Problem::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("gatehouse: the request path cannot be forwarded: {e}"),
            ))
        })?;
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h, upgrade);
        // The grant may come as a WebSocket subprotocol on any request
        // ([`headers::bearer`]): it never goes upstream.
        headers::strip_websocket_credentials(h);
        h.remove(header::AUTHORIZATION);
        h.remove(header::EXPECT);
        h.remove(header::CONTENT_LENGTH);
        if let Ok(v) = HeaderValue::from_str(&host_header(&t.host, t.port, t.tls)) {
            h.insert(header::HOST, v);
        }
        if masking {
            // Masking reads bodies as they are: no compression, and no
            // Kubernetes protobuf or YAML (which it cannot read) where JSON
            // will do.
            h.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
            if let Some(accept) = without_unreadable(h.get(header::ACCEPT)) {
                h.insert(header::ACCEPT, accept);
            }
            // A range of a body starts and ends anywhere: masking reads
            // whole bodies, so the target sends the whole representation
            // (a 200 is a valid answer to a Range request, RFC 9110 §14.2).
            h.remove(header::RANGE);
            h.remove(header::IF_RANGE);
        }
        if !body.is_empty() || !matches!(parts.method, http::Method::GET | http::Method::HEAD) {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        active
            .upstream
            .inject(h, &active.auth.subject)
            .map_err(|why| {
                Box::new(Problem {
                    jti: Some(active.auth.jti.clone()),
                    ..Problem::new(StatusCode::FORBIDDEN, "Forbidden", why)
                })
            })?;
        parts.uri = uri;
        parts.version = http::Version::HTTP_11;
        Ok(Request::from_parts(parts, full(body)))
    }

    /// Sends on the session's upstream connection, opening one when there
    /// is none or it closed. A kept-alive connection the target closed
    /// just as the request went out (nothing of it written: hyper hands it
    /// back) is retried once on a new connection, as RFC 9112 §9.3.1
    /// allows for a request never sent.
    pub(super) async fn send(
        &self,
        active: &mut Active,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, String> {
        let reusable = match active.sender.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let (mut sender, mut fresh) = match reusable {
            Some(s) => (s, false),
            None => (
                active.upstream.connect().await.map_err(|e| chain(&e))?,
                true,
            ),
        };
        let mut req = req;
        loop {
            match sender.try_send_request(req).await {
                Ok(response) => {
                    active.sender = Some(sender);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => {
                        tracing::debug!("the target closed a kept-alive connection; retrying");
                        req = unsent;
                        sender = active.upstream.connect().await.map_err(|e| chain(&e))?;
                        fresh = true;
                    }
                    _ => return Err(chain(e.error())),
                },
            }
        }
    }

    /// Answers with the gateway's own response, recorded (and durable)
    /// before the client sees it.
    pub(super) async fn refuse(
        &self,
        log: &SessionLog,
        exchange: u32,
        problem: Problem,
        kube: bool,
    ) -> Response<ProxyBody> {
        let (response, body) = problem.answer(kube);
        record_head(log, exchange, &response, None, true);
        record_body(log, exchange, Direction::ToClient, &body);
        log.count(0, 0, body.len() as u64);
        if let Err(e) = log.flush_durable().await {
            tracing::error!("store refused events: {e}");
        }
        response
    }
}

/// The Host field for the target at `host`:`port` (RFC 9110 §7.2): the
/// port only when it is not the scheme's default, an IPv6 literal always
/// in brackets.
fn host_header(host: &str, port: u16, tls: bool) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == if tls { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Whether a media type or range is one masking cannot read.
fn unreadable(media: &str) -> bool {
    let media = media.to_ascii_lowercase();
    media.contains("protobuf") || media.contains("yaml")
}

/// An `Accept` value without its protobuf and YAML media ranges (JSON when
/// nothing else is left), or `None` when it names neither.
fn without_unreadable(accept: Option<&HeaderValue>) -> Option<HeaderValue> {
    let text = accept?.to_str().ok()?;
    if !unreadable(text) {
        return None;
    }
    let kept: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty() && !unreadable(r))
        .collect();
    let value = if kept.is_empty() {
        "application/json".to_owned()
    } else {
        kept.join(", ")
    };
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_field_brackets_ipv6_literals_and_drops_default_ports() {
        assert_eq!(host_header("::1", 443, true), "[::1]");
        assert_eq!(host_header("::1", 80, false), "[::1]");
        assert_eq!(host_header("::1", 8443, true), "[::1]:8443");
        assert_eq!(host_header("api.example", 443, true), "api.example");
        assert_eq!(host_header("api.example", 443, false), "api.example:443");
        assert_eq!(host_header("10.0.0.1", 8080, false), "10.0.0.1:8080");
    }

    #[test]
    fn protobuf_is_not_asked_for_when_masking() {
        let v = |s: &'static str| Some(HeaderValue::from_static(s));
        assert_eq!(
            without_unreadable(v("application/vnd.kubernetes.protobuf, application/json").as_ref()),
            v("application/json")
        );
        assert_eq!(
            without_unreadable(
                v("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io").as_ref()
            ),
            v("application/json")
        );
        assert_eq!(
            without_unreadable(v("application/yaml, application/json;q=0.9").as_ref()),
            v("application/json;q=0.9")
        );
        assert_eq!(
            without_unreadable(v("Application/YAML").as_ref()),
            v("application/json")
        );
        assert_eq!(without_unreadable(v("application/json").as_ref()), None);
        assert_eq!(without_unreadable(None), None);
    }
}
