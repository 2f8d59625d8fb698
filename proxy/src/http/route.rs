//! Which target a request is for, and the path it has there.

use http::Request;
use http::header;

/// The host a request names: the authority of an absolute-form target
/// (which RFC 9112 §3.2.2 says wins over Host), else its Host header
/// (HTTP/1.1 requires one), lower case, without a port; the TLS SNI name
/// when neither is there.
pub fn host_of<B>(req: &Request<B>, sni: Option<&str>) -> Option<String> {
    let from_header = || {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.host().to_owned())
        .or_else(from_header)
        .or_else(|| sni.map(str::to_owned))?;
    Some(strip_port(&host).to_ascii_lowercase())
}

fn strip_port(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// The path and query of `req` after the first `prefix_len` bytes of its
/// path, always starting with `/`.
pub fn rest_of<B>(req: &Request<B>, prefix_len: usize) -> String {
    let path = req.uri().path();
    let rest = path.get(prefix_len..).unwrap_or("");
    let mut out = String::with_capacity(rest.len() + 1);
    if !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if let Some(q) = req.uri().query() {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port() {
        let req = Request::builder()
            .uri("/x")
            .header("host", "Orders.Example:18443")
            .body(())
            .unwrap();
        assert_eq!(host_of(&req, None).as_deref(), Some("orders.example"));
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("example"), "example");
    }

    #[test]
    fn an_absolute_form_target_names_the_host_not_the_host_header() {
        let req = Request::builder()
            .uri("https://Orders.Example:18443/v1/x")
            .header("host", "other.example")
            .body(())
            .unwrap();
        assert_eq!(host_of(&req, None).as_deref(), Some("orders.example"));
        let req = Request::builder()
            .uri("http://[::1]:8080/x")
            .body(())
            .unwrap();
        assert_eq!(host_of(&req, None).as_deref(), Some("::1"));
    }

    #[test]
    fn the_rest_keeps_its_query() {
        let req = Request::builder()
            .uri("/k8s/prod/api/v1/pods?watch=true")
            .body(())
            .unwrap();
        assert_eq!(rest_of(&req, 9), "/api/v1/pods?watch=true");
        let req = Request::builder().uri("/orders-api").body(()).unwrap();
        assert_eq!(rest_of(&req, 11), "/");
    }
}
