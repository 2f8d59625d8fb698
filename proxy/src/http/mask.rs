//! Which response bodies are masked, and how: JSON bodies by key and by
//! content, text bodies line by line by content. A body the gateway
//! cannot read (compressed despite `Accept-Encoding: identity`, or
//! Kubernetes protobuf) is refused when masking applies (fail closed);
//! other types (images, archives) pass as they are.

use std::sync::Arc;

use bytes::BytesMut;
use gatehouse_core::event::{Body as EventBody, MaskHit};
use gatehouse_core::mask::{JsonKeyRule, JsonKeys, JsonMaskStream, Masker, TextMaskStream};
use gatehouse_core::pg::Authorized;
use http::header::{self, HeaderMap};
use http::{Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::body::{StreamMask, Tap};
use super::respond::Problem;
use super::session::{SessionLog, record_head};
use super::{HttpUpstream, ProxyBody, headers, now_us};

/// The masking of one session's responses.
#[derive(Clone)]
pub struct MaskPlan {
    keys: Arc<JsonKeys>,
    masker: Option<Arc<Masker>>,
}

/// The plan for a session of `auth` on `upstream`, or `None` when nothing
/// is masked. The grant's `mask.columns` patterns that name no table are
/// JSON keys too: a grant can add keys, never remove the target's.
pub fn for_response(auth: &Authorized, upstream: &HttpUpstream) -> Option<MaskPlan> {
    let masker = auth.masker.clone().filter(|m| m.has_content_rules());
    let extra: Vec<JsonKeyRule> = auth
        .policy
        .scope
        .mask
        .columns
        .iter()
        .filter(|c| !c.pattern.contains('.'))
        .filter_map(|c| {
            Some(JsonKeyRule {
                pattern: c.pattern.clone(),
                strategy: c.strategy.parse().ok()?,
            })
        })
        .collect();
    let keys = if extra.is_empty() {
        Arc::clone(&upstream.keys)
    } else {
        let mut rules = upstream.key_rules.clone();
        rules.extend(extra);
        match JsonKeys::new(&rules, upstream.token_secret.as_bytes()) {
            Ok(k) => Arc::new(k),
            // The grant's strategies were checked at login; a `token` key
            // on a target without a secret falls back to the target's.
            Err(_) => Arc::clone(&upstream.keys),
        }
    };
    if keys.is_empty() && masker.is_none() {
        return None;
    }
    Some(MaskPlan { keys, masker })
}

struct Json(JsonMaskStream);
struct Text(TextMaskStream);

impl StreamMask for Json {
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), String> {
        self.0.feed(chunk, out).map_err(|e| e.to_string())
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), String> {
        self.0.finish(out).map_err(|e| e.to_string())
    }
    fn take_hits(&mut self) -> Vec<MaskHit> {
        self.0.take_hits()
    }
}

impl StreamMask for Text {
    fn feed(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<(), String> {
        self.0.feed(chunk, out).map_err(|e| e.to_string())
    }
    fn finish(&mut self, out: &mut BytesMut) -> Result<(), String> {
        self.0.finish(out).map_err(|e| e.to_string())
    }
    fn take_hits(&mut self) -> Vec<MaskHit> {
        self.0.take_hits()
    }
}

/// How a body of these headers is masked under `plan`: `Ok(None)` when it
/// passes as it is, `Err` when it cannot be masked.
fn masker_for(headers: &HeaderMap, plan: &MaskPlan) -> Result<Option<Box<dyn StreamMask>>, String> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    // JSON lines (`application/x-ndjson`, `jsonl`) are JSON values one
    // after another, as a Kubernetes watch is: masked by key too.
    let json = media == "application/json"
        || media.ends_with("+json")
        || matches!(
            media.as_str(),
            "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
                | "application/json-seq"
        );
    let text = media.starts_with("text/") || media.is_empty();
    // YAML carries the same objects as JSON (the Kubernetes API serves
    // it on request) but its keys cannot be masked here: refused too.
    let unreadable = media.contains("protobuf") || media.contains("yaml");
    if unreadable {
        return Err(format!("a {media} body cannot be masked; ask for JSON"));
    }
    if !(json || text) {
        return Ok(None);
    }
    if !encoding.is_empty() && encoding != "identity" {
        return Err(format!(
            "a body with content-encoding {encoding} cannot be masked"
        ));
    }
    if json {
        return Ok(Some(Box::new(Json(JsonMaskStream::new(
            Arc::clone(&plan.keys),
            plan.masker.clone(),
        )))));
    }
    Ok(plan
        .masker
        .clone()
        .map(|m| Box::new(Text(TextMaskStream::new(Some(m)))) as Box<dyn StreamMask>))
}

/// How long a masked response's head waits for its body's first piece
/// (see [`Tap::read_ahead`]).
const READ_AHEAD: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether a response has no body whatever its header fields say (RFC
/// 9110 §6.4.1, §9.3.2): one to HEAD, 1xx, 204 and 304. Its
/// Content-Length describes another response, so it is kept as it is and
/// nothing is masked.
fn bodiless(head: bool, status: StatusCode) -> bool {
    head || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// The upstream's response as the client gets it: hop-by-hop fields
/// dropped, the body masked and recorded as it streams. `head`: the
/// request was HEAD.
pub async fn respond(
    log: &Arc<SessionLog>,
    exchange: u32,
    response: Response<Incoming>,
    head: bool,
    plan: Option<MaskPlan>,
    credential_header: Option<&str>,
    kube: bool,
) -> Response<ProxyBody> {
    let plan = plan.filter(|_| !bodiless(head, response.status()));
    let (mut parts, body) = response.into_parts();
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        // Transfer-Encoding framed the body, not Content-Length, which an
        // intermediary removes before forwarding (RFC 9112 §6.3): left in,
        // it cut the client's copy short without an error.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(&mut parts.headers, false);
    // The gateway speaks HTTP/1.1 to the client whatever the target spoke.
    parts.version = http::Version::HTTP_11;
    let withheld = |why: String| {
        let problem = Problem::new(
            StatusCode::BAD_GATEWAY,
            "BadGateway",
            format!("gatehouse: the target's response was withheld: {why}"),
        );
        let (response, body) = problem.answer(kube);
        log.record(
            now_us(),
            EventBody::Error(gatehouse_core::event::ErrorInfo {
                severity: "ERROR".into(),
                code: "502".into(),
                message: format!("the response was withheld: {why}"),
                from_gateway: true,
            }),
        );
        record_head(log, exchange, &response, credential_header, true);
        super::session::record_body(
            log,
            exchange,
            gatehouse_core::event::Direction::ToClient,
            &body,
        );
        response
    };
    let partial = parts.status == StatusCode::PARTIAL_CONTENT;
    let mask = match plan.as_ref().map(|p| masker_for(&parts.headers, p)) {
        // A part cannot be masked as a whole body (a value cut by the
        // range's start would pass as it is); none was asked for.
        Some(Ok(Some(_))) if partial => {
            return withheld("a partial (206) body cannot be masked".to_owned());
        }
        None | Some(Ok(None)) => None,
        Some(Ok(Some(m))) => Some(m),
        Some(Err(why)) => return withheld(why),
    };
    let masked = mask.is_some();
    let mut tap = Tap::new(body, Arc::clone(log), exchange, mask);
    if masked {
        // Masking changes lengths: the body goes chunked. Digests of the
        // target's bytes would be wrong, and would let a client confirm a
        // guess of a masked value: they go too.
        parts.headers.remove(header::CONTENT_LENGTH);
        for digest in ["content-digest", "repr-digest", "digest", "content-md5"] {
            parts.headers.remove(digest);
        }
        if let Err(why) = tap.read_ahead(READ_AHEAD).await {
            return withheld(why);
        }
    }
    let response = Response::from_parts(parts, ());
    record_head(log, exchange, &response, credential_header, false);
    let (parts, ()) = response.into_parts();
    Response::from_parts(parts, tap.boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_masking_cannot_read_are_refused() {
        let plan = MaskPlan {
            keys: Arc::new(JsonKeys::new(&[], b"").unwrap()),
            masker: None,
        };
        let with = |ct: &'static str, ce: Option<&'static str>| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
            if let Some(ce) = ce {
                h.insert(header::CONTENT_ENCODING, http::HeaderValue::from_static(ce));
            }
            masker_for(&h, &plan).map(|m| m.is_some())
        };
        assert!(with("application/yaml", None).is_err());
        assert!(with("text/yaml; charset=utf-8", None).is_err());
        assert!(with("application/vnd.kubernetes.protobuf", None).is_err());
        assert!(with("application/json", Some("gzip")).is_err());
        assert_eq!(with("application/json", None), Ok(true));
        assert_eq!(with("application/x-ndjson", None), Ok(true));
        assert_eq!(with("application/jsonl; charset=utf-8", None), Ok(true));
        assert_eq!(with("image/png", None), Ok(false));
    }

    #[test]
    fn json_lines_are_masked_line_by_line() {
        let rules = [JsonKeyRule {
            pattern: "password".into(),
            strategy: gatehouse_core::mask::Strategy::Redact,
        }];
        let plan = MaskPlan {
            keys: Arc::new(JsonKeys::new(&rules, b"").unwrap()),
            masker: None,
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-ndjson"),
        );
        let mut m = masker_for(&h, &plan).unwrap().unwrap();
        let mut out = BytesMut::new();
        m.feed(b"{\"password\":\"pw-1\"}\n{\"password\":", &mut out)
            .unwrap();
        m.feed(b"\"pw-2\"}\n", &mut out).unwrap();
        m.finish(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("pw-1") && !text.contains("pw-2"), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
    }

    #[test]
    fn responses_without_a_body_are_not_masked() {
        assert!(bodiless(true, StatusCode::OK));
        assert!(bodiless(false, StatusCode::NO_CONTENT));
        assert!(bodiless(false, StatusCode::NOT_MODIFIED));
        assert!(bodiless(false, StatusCode::CONTINUE));
        assert!(!bodiless(false, StatusCode::OK));
        assert!(!bodiless(false, StatusCode::NOT_FOUND));
    }
}
