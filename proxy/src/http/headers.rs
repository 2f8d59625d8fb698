//! Header hygiene on the way through: hop-by-hop headers end at the
//! gateway (RFC 9110 §7.6.1), the agent's grant never goes upstream, and
//! credentials are never recorded.

use gatehouse_core::event::HttpHeader;
use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop fields every message drops (RFC 9110 §7.6.1, and the
/// pre-standard ones proxies still meet).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes the hop-by-hop fields of `headers`: the fixed ones and every
/// field the `Connection` header names. With `keep_upgrade`, `Connection:
/// upgrade` and `Upgrade` stay (a WebSocket handshake passes through).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !(keep_upgrade && t == "upgrade"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Header names whose values are credentials: recorded as `[redacted]`.
fn is_secret(name: &str, extra: Option<&str>) -> bool {
    matches!(
        name,
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key"
    ) || extra == Some(name)
}

/// The WebSocket subprotocol prefix through which Kubernetes clients that
/// cannot set headers (browsers) send their bearer token.
pub const K8S_BEARER_PROTOCOL: &str = "base64url.bearer.authorization.k8s.io.";

/// The bearer token a `Sec-WebSocket-Protocol` offer carries, decoded.
pub fn websocket_bearer(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(K8S_BEARER_PROTOCOL))
        .and_then(|b64| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64.trim_end_matches('='))
                .ok()
        })
        .and_then(|t| String::from_utf8(t).ok())
}

/// Removes the bearer-token subprotocol from the offer, and the
/// extensions (the recording reads frames as sent, uncompressed).
pub fn strip_websocket_credentials(headers: &mut HeaderMap) {
    headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with(K8S_BEARER_PROTOCOL))
        .map(str::to_owned)
        .collect();
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if let Ok(v) = header::HeaderValue::from_str(&offered.join(", "))
        && !offered.is_empty()
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
}

/// `headers` for the record, in order, credentials redacted (`extra`
/// names one more secret header: the target's injected credential; a
/// bearer token offered as a WebSocket subprotocol is redacted too).
pub fn recorded(headers: &HeaderMap, extra: Option<&str>) -> Vec<HttpHeader> {
    headers
        .iter()
        .map(|(name, value)| HttpHeader {
            name: name.as_str().to_owned(),
            value: if is_secret(name.as_str(), extra) {
                "[redacted]".to_owned()
            } else if name == header::SEC_WEBSOCKET_PROTOCOL
                && value
                    .as_bytes()
                    .windows(K8S_BEARER_PROTOCOL.len())
                    .any(|w| w == K8S_BEARER_PROTOCOL.as_bytes())
            {
                let text = String::from_utf8_lossy(value.as_bytes());
                text.split(',')
                    .map(|p| match p.trim().strip_prefix(K8S_BEARER_PROTOCOL) {
                        Some(_) => format!("{K8S_BEARER_PROTOCOL}[redacted]"),
                        None => p.trim().to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            },
        })
        .collect()
}

/// The upgrade protocol a request asks for (`websocket`, `SPDY/3.1`), if
/// it asks for one.
pub fn upgrade_of(headers: &HeaderMap) -> Option<String> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
}

/// The grant from `Authorization: Bearer <grant>`.
/// Or, for a WebSocket upgrade from a client that cannot set headers, from
/// its `base64url.bearer.authorization.k8s.io.` subprotocol, as the
/// Kubernetes API server accepts it.
pub fn bearer<B>(req: &http::Request<B>) -> Option<String> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return websocket_bearer(req.headers());
    };
    let value = value.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-trace"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn an_upgrade_keeps_its_upgrade_fields() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert_eq!(upgrade_of(&h).as_deref(), Some("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn a_token_offered_as_a_subprotocol_is_taken_out_and_never_recorded() {
        let mut h = HeaderMap::new();
        // base64url("grant-xyz") without padding.
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(
                "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.Z3JhbnQteHl6",
            ),
        );
        h.insert(
            "sec-websocket-extensions",
            HeaderValue::from_static("permessage-deflate"),
        );
        assert_eq!(websocket_bearer(&h).as_deref(), Some("grant-xyz"));
        let r = recorded(&h, None);
        assert!(r.iter().all(|x| !x.value.contains("Z3JhbnQteHl6")), "{r:?}");
        strip_websocket_credentials(&mut h);
        assert_eq!(
            h.get("sec-websocket-protocol").unwrap(),
            "v5.channel.k8s.io"
        );
        assert!(h.get("sec-websocket-extensions").is_none());
    }

    #[test]
    fn credentials_are_redacted_in_the_record() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer secret"));
        h.insert("x-vault-token", HeaderValue::from_static("s.123"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        let r = recorded(&h, Some("x-vault-token"));
        assert!(
            r.iter()
                .all(|h| h.name == "accept" || h.value == "[redacted]")
        );
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn bearer_tokens() {
        let req = |v: &'static str| {
            http::Request::builder()
                .header("authorization", v)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer(&req("bearer  abc ")).as_deref(), Some("abc"));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bearer ")), None);
    }
}
