//! The streamed responses of [`FakeKube`](super::FakeKube): watches
//! (newline-delimited JSON events over a chunked body) and `logs -f`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::objects::{LOG_LINES, NAMESPACE};
use super::server::{Body, param, respond};
use super::state::{Broadcast, EventType, Shared, WatchEvent};

/// A response whose body is whatever is sent on the returned channel, as
/// it is sent (chunked); it ends when the sender is dropped.
fn channel_response(content_type: &str) -> (Response<Body>, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
    *resp.status_mut() = StatusCode::OK;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    (resp, tx)
}

/// Counts an open watch for as long as it lives.
struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `?watch=true` on pods: the events after `resourceVersion` (or every
/// pod as `ADDED` without one), then each change as it happens.
pub(crate) fn watch(
    shared: &Arc<Shared>,
    ns: Option<&str>,
    name: Option<&str>,
    params: &[(String, String)],
    print: Option<bool>,
) -> Response<Body> {
    let since = param(params, "resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|v| *v != 0);
    let timeout = param(params, "timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(3600), Duration::from_secs);
    let ns = ns.map(str::to_owned);
    let name = name.map(str::to_owned);
    let wanted = move |e: &WatchEvent| {
        ns.as_deref().is_none_or(|ns| ns == e.namespace())
            && name.as_deref().is_none_or(|n| n == e.name())
    };
    let (mut events, initial) = {
        // Subscribing and reading the past under the lock: no event is
        // missed or sent twice.
        let state = shared.lock();
        let events = shared.events.subscribe();
        let initial: Vec<WatchEvent> = match since {
            Some(rv) => state
                .history
                .iter()
                .filter(|e| e.resource_version > rv)
                .cloned()
                .collect(),
            None => state
                .pods
                .values()
                .map(|pod| WatchEvent {
                    kind: EventType::Added,
                    object: pod.clone(),
                    resource_version: state.resource_version,
                })
                .collect(),
        };
        (events, initial)
    };
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    let open = OpenWatch(shared.clone());
    let (resp, tx) = channel_response("application/json");
    tokio::spawn(async move {
        let _open = open;
        for event in initial.iter().filter(|e| wanted(e)) {
            if tx.send(Bytes::from(event.to_line(print))).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let msg = tokio::select! {
                msg = events.recv() => msg,
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            };
            match msg {
                Ok(Broadcast::Event(event)) if wanted(&event) => {
                    if tx.send(Bytes::from(event.to_line(print))).await.is_err() {
                        return;
                    }
                }
                Ok(Broadcast::Event(_)) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(Broadcast::EndWatches) | Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    resp
}

/// `pods/<pod>/log`: [`LOG_LINES`], then with `follow` a `tick N` line
/// every `log_interval` until the client leaves.
pub(crate) fn logs(shared: &Arc<Shared>, follow: bool) -> Response<Body> {
    let mut text = LOG_LINES.join("\n");
    text.push('\n');
    if !follow {
        return respond(StatusCode::OK, "text/plain", text);
    }
    let every = shared.options.log_interval;
    let (resp, tx) = channel_response("text/plain");
    tokio::spawn(async move {
        if tx.send(Bytes::from(text)).await.is_err() {
            return;
        }
        for n in 1u64.. {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = tx.closed() => return,
            }
            if tx.send(Bytes::from(format!("tick {n}\n"))).await.is_err() {
                return;
            }
        }
    });
    resp
}

/// Modifies pod `billing/web-1` every `every` while a watch is open.
pub(crate) async fn tick(shared: Arc<Shared>, every: Duration) {
    for n in 1u64.. {
        tokio::time::sleep(every).await;
        if shared.open_watches.load(Ordering::SeqCst) > 0 {
            shared.change_pod(EventType::Modified, NAMESPACE, "web-1", None, |pod| {
                pod["metadata"]["annotations"]["gatehouse.test/tick"] = json!(n.to_string());
            });
        }
    }
}
