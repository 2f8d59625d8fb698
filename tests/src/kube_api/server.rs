//! The accept loop and the routing of [`FakeKube`](super::FakeKube):
//! records each request, checks the bearer token, answers from the state.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use super::objects::{self, NAMESPACES, SECRET};
use super::state::{EventType, Shared};
use super::{RecordedRequest, discovery, exec, stream, table};
use crate::certs::TestCerts;

/// Every response body.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// A rustls server config for the test certificates, ALPN `http/1.1`.
pub(crate) fn tls_config(certs: &TestCerts) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.server_cert)
        .expect("FakeKube cert file")
        .collect::<Result<_, _>>()
        .expect("FakeKube cert PEM");
    let key = PrivateKeyDer::from_pem_file(&certs.server_key).expect("FakeKube key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("FakeKube TLS config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Accepts connections until `stop` fires (or its sender is dropped).
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("FakeKube listener");
    let tls = tls.map(TlsAcceptor::from);
    if let Some(every) = shared.options.watch_tick {
        tokio::spawn(stream::tick(shared.clone(), every));
    }
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, _)) = accepted else { continue };
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match tls {
                Some(tls) => match tls.accept(tcp).await {
                    Ok(stream) => {
                        http.serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await
                    }
                    Err(_) => return,
                },
                None => {
                    http.serve_connection(TokioIo::new(tcp), service)
                        .with_upgrades()
                        .await
                }
            };
        });
    }
}

/// A response with a fixed body.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(CONTENT_TYPE, v);
    }
    resp
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

/// A failure `Status` response.
pub(crate) fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &objects::status(code.as_u16(), reason, message))
}

/// The decoded query parameters, in order (`+` is a space).
pub(crate) fn query_params(uri: &hyper::Uri) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The first value of query parameter `name`.
pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn is_true(value: Option<&str>) -> bool {
    matches!(value, Some("true" | "1"))
}

async fn handle(shared: Arc<Shared>, mut req: Request<Incoming>) -> Response<Body> {
    let upgrade = req.headers().contains_key(hyper::header::UPGRADE);
    let upgrade_on = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let body = if upgrade {
        Bytes::new()
    } else {
        body.collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    };
    let uri = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    shared.lock().requests.push(RecordedRequest {
        method: parts.method.to_string(),
        uri,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    if let Some(token) = &shared.options.token {
        let expected = format!("Bearer {token}");
        let given = parts.headers.get(hyper::header::AUTHORIZATION);
        if given.map(|v| v.as_bytes()) != Some(expected.as_bytes()) {
            return status_response(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        }
    }
    let params = query_params(&parts.uri);
    let print =
        table::wanted(&parts.headers).then(|| param(&params, "includeObject") == Some("Object"));
    let ok = |value: &Value| json_response(StatusCode::OK, &table::maybe(print, value));
    let segments: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let method = parts.method.clone();
    let aggregated = shared.options.aggregated_discovery && discovery::wanted(&parts.headers);
    match (method, segments.as_slice()) {
        (Method::GET, ["version"]) => json_response(StatusCode::OK, &objects::version()),
        (Method::GET, ["api"]) if aggregated => respond(
            StatusCode::OK,
            discovery::CONTENT_TYPE,
            discovery::core().to_string(),
        ),
        (Method::GET, ["apis"]) if aggregated => respond(
            StatusCode::OK,
            discovery::CONTENT_TYPE,
            discovery::groups().to_string(),
        ),
        (Method::GET, ["api"]) => {
            json_response(StatusCode::OK, &objects::api_versions(&shared.address))
        }
        (Method::GET, ["apis"]) => json_response(StatusCode::OK, &objects::api_group_list()),
        (Method::GET, ["api", "v1"]) => {
            json_response(StatusCode::OK, &objects::core_v1_resources())
        }
        (Method::GET, ["apis", "apps", "v1"]) => {
            json_response(StatusCode::OK, &objects::apps_v1_resources())
        }
        (Method::GET, ["apis", "apps", "v1", "namespaces", _, "deployments"])
        | (Method::GET, ["apis", "apps", "v1", "deployments"]) => {
            let rv = shared.lock().resource_version;
            ok(&objects::list("Deployment", "apps/v1", rv, vec![]))
        }
        (Method::GET, ["api", "v1", "namespaces"]) => {
            let items = NAMESPACES.iter().map(|n| objects::namespace(n)).collect();
            let rv = shared.lock().resource_version;
            ok(&objects::list("Namespace", "v1", rv, items))
        }
        (Method::GET, ["api", "v1", "namespaces", ns]) => match NAMESPACES.contains(ns) {
            true => ok(&objects::namespace(ns)),
            false => json_response(StatusCode::NOT_FOUND, &objects::not_found("namespaces", ns)),
        },
        (Method::GET, ["api", "v1", "pods"]) => pods(&shared, None, &params, print),
        (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => {
            pods(&shared, Some(ns), &params, print)
        }
        (Method::POST, ["api", "v1", "namespaces", ns, "pods"]) => create_pod(&shared, ns, &body),
        (Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => {
            match shared.lock().pods.get(&(ns.to_string(), name.to_string())) {
                Some(pod) => ok(pod),
                None => json_response(StatusCode::NOT_FOUND, &objects::not_found("pods", name)),
            }
        }
        (Method::DELETE, ["api", "v1", "namespaces", ns, "pods", name]) => {
            let deleted = shared.change_pod(EventType::Deleted, ns, name, None, |_| {});
            match deleted {
                Some(pod) => json_response(StatusCode::OK, &pod),
                None => json_response(StatusCode::NOT_FOUND, &objects::not_found("pods", name)),
            }
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "pods", name, "log"]) => {
            let exists = shared
                .lock()
                .pods
                .contains_key(&(ns.to_string(), name.to_string()));
            match exists {
                true => stream::logs(&shared, is_true(param(&params, "follow"))),
                false => json_response(StatusCode::NOT_FOUND, &objects::not_found("pods", name)),
            }
        }
        (
            Method::GET | Method::POST,
            [
                "api",
                "v1",
                "namespaces",
                ns,
                "pods",
                name,
                sub @ ("exec" | "attach"),
            ],
        ) => {
            let exists = shared
                .lock()
                .pods
                .contains_key(&(ns.to_string(), name.to_string()));
            if !exists {
                return json_response(StatusCode::NOT_FOUND, &objects::not_found("pods", name));
            }
            let attach = *sub == "attach";
            exec::upgrade(shared.clone(), &parts.headers, upgrade_on, &params, attach)
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "secrets"]) => {
            let rv = shared.lock().secret_version;
            let items = if *ns == objects::NAMESPACE {
                vec![objects::secret(rv)]
            } else {
                vec![]
            };
            ok(&objects::list("Secret", "v1", rv, items))
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "secrets", name]) => {
            if *ns == objects::NAMESPACE && *name == SECRET {
                let rv = shared.lock().secret_version;
                ok(&objects::secret(rv))
            } else {
                json_response(StatusCode::NOT_FOUND, &objects::not_found("secrets", name))
            }
        }
        (_, path) => {
            let known = matches!(path.first(), Some(&("api" | "apis" | "version")));
            match known {
                true => status_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                ),
                false => status_response(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            }
        }
    }
}

/// List or watch pods, in one namespace or all.
fn pods(
    shared: &Arc<Shared>,
    ns: Option<&str>,
    params: &[(String, String)],
    print: Option<bool>,
) -> Response<Body> {
    let name = param(params, "fieldSelector").and_then(|s| s.strip_prefix("metadata.name="));
    if is_true(param(params, "watch")) {
        return stream::watch(shared, ns, name, params, print);
    }
    let state = shared.lock();
    let items = state
        .pods
        .iter()
        .filter(|((n, p), _)| ns.is_none_or(|ns| ns == n) && name.is_none_or(|name| name == p))
        .map(|(_, pod)| pod.clone())
        .collect();
    let list = objects::list("Pod", "v1", state.resource_version, items);
    json_response(StatusCode::OK, &table::maybe(print, &list))
}

fn create_pod(shared: &Arc<Shared>, ns: &str, body: &[u8]) -> Response<Body> {
    let Ok(pod) = serde_json::from_slice::<Value>(body) else {
        return status_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not a JSON object",
        );
    };
    let Some(name) = pod["metadata"]["name"].as_str().map(str::to_owned) else {
        return status_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value",
        );
    };
    match shared.change_pod(EventType::Added, ns, &name, Some(pod), |_| {}) {
        Some(pod) => json_response(StatusCode::CREATED, &pod),
        None => {
            let mut s = objects::status(
                409,
                "AlreadyExists",
                &format!("pods \"{name}\" already exists"),
            );
            s["details"] = json!({"name": name, "kind": "pods"});
            json_response(StatusCode::CONFLICT, &s)
        }
    }
}
