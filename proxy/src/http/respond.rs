//! The gateway's own answers: a denial, a refused grant, an unknown
//! target, an unreachable upstream. HTTP targets get a JSON object;
//! Kubernetes targets get the API server's own `Status` object, so that
//! `kubectl` prints the message as it prints the cluster's.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use serde_json::json;

use super::ProxyBody;

/// What went wrong, for the client.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The status code.
    pub status: StatusCode,
    /// A short machine-readable reason (`Forbidden`, `Unauthorized`).
    pub reason: &'static str,
    /// What happened and what to do next, in words.
    pub message: String,
    /// The plan rule or check involved, if any.
    pub rule: Option<String>,
    /// The grant's `jti`, if known.
    pub jti: Option<String>,
}

impl Problem {
    /// A problem with no rule and no grant.
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            status,
            reason,
            message: message.into(),
            rule: None,
            jti: None,
        }
    }

    /// The JSON body: a Kubernetes `Status` when `kubernetes`.
    pub fn body(&self, kubernetes: bool) -> Bytes {
        let value = if kubernetes {
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": self.message,
                "reason": self.reason,
                "details": {
                    "causes": [{
                        "reason": "GatehousePolicy",
                        "message": self.rule.clone().unwrap_or_default(),
                        "field": self.jti.clone().map(|j| format!("grant {j}")).unwrap_or_default(),
                    }]
                },
                "code": self.status.as_u16(),
            })
        } else {
            json!({
                "error": self.reason,
                "status": self.status.as_u16(),
                "message": self.message,
                "rule": self.rule,
                "jti": self.jti,
                "gateway": "gatehouse",
            })
        };
        let mut text = value.to_string();
        text.push('\n');
        Bytes::from(text)
    }

    /// The whole response.
    pub fn response(&self, kubernetes: bool) -> Response<ProxyBody> {
        self.answer(kubernetes).0
    }

    /// The whole response, and its body's bytes for the record.
    pub fn answer(&self, kubernetes: bool) -> (Response<ProxyBody>, Bytes) {
        let body = self.body(kubernetes);
        let mut response = Response::new(full(body.clone()));
        *response.status_mut() = self.status;
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gatehouse\""),
            );
        }
        (response, body)
    }
}

/// A denial the agent can act on.
pub fn denial(
    verdict: &gatehouse_core::http::rules::HttpVerdict,
    jti: &str,
    kube: bool,
) -> Problem {
    let next = if kube {
        "ask the planner for a grant whose plan allows it (e.g. --allow 'kube:VERBS RESOURCES in NAMESPACE')"
    } else {
        "ask the planner for a grant whose plan allows it (e.g. --allow 'http:METHOD /path/**')"
    };
    Problem {
        rule: verdict.rule.clone(),
        jti: Some(jti.to_owned()),
        ..Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "gatehouse denied {} under grant {jti}: {}; {next}",
                verdict.operation, verdict.reason
            ),
        )
    }
}

/// A body of these bytes.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubernetes_denial_is_a_status_object() {
        let p = Problem {
            rule: Some("no rule allows create pods/exec in billing".into()),
            jti: Some("j-1".into()),
            ..Problem::new(StatusCode::FORBIDDEN, "Forbidden", "denied")
        };
        let v: serde_json::Value = serde_json::from_slice(&p.body(true)).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["code"], 403);
        assert_eq!(v["reason"], "Forbidden");
        let v: serde_json::Value = serde_json::from_slice(&p.body(false)).unwrap();
        assert_eq!(v["jti"], "j-1");
        assert_eq!(v["status"], 403);
    }
}
