//! What [`FakeKube`](super::FakeKube) holds: the objects, the resource
//! version counter, the history watches replay from, and the record of
//! every request and exec frame. Shared between the test's thread and the
//! server's runtime behind one mutex; watch events are broadcast while it
//! is held, so a new watch never misses or repeats an event.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::objects::{self, NAMESPACE, PODS};
use super::{ExecFrame, FakeKubeOptions, RecordedRequest};

/// The kind of a watch event, as the `type` field spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change to a pod, as a watch delivers it.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    /// What happened.
    pub kind: EventType,
    /// The pod after the change (before it, for `DELETED`), with the new
    /// `metadata.resourceVersion`.
    pub object: Value,
    /// The resource version of the change.
    pub resource_version: u64,
}

impl WatchEvent {
    /// The event as one line of a watch stream (`{"type":…,"object":…}\n`);
    /// with `print`, the object as a one-row `Table` (`Some(true)`: rows
    /// carry the whole object).
    pub(crate) fn to_line(&self, print: Option<bool>) -> String {
        let object = match print {
            Some(whole) => super::table::of_object(&self.object, whole),
            None => self.object.clone(),
        };
        let mut line = json!({"type": self.kind.as_str(), "object": object}).to_string();
        line.push('\n');
        line
    }

    /// The namespace of the pod.
    pub fn namespace(&self) -> &str {
        self.object["metadata"]["namespace"].as_str().unwrap_or("")
    }

    /// The name of the pod.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }
}

/// What the broadcast channel carries to open watch streams.
#[derive(Clone, Debug)]
pub(crate) enum Broadcast {
    /// A change to deliver.
    Event(WatchEvent),
    /// Every open watch ends now (as at the API server's timeout).
    EndWatches,
}

pub(crate) struct State {
    pub(crate) pods: BTreeMap<(String, String), Value>,
    pub(crate) resource_version: u64,
    pub(crate) secret_version: u64,
    next_uid: usize,
    pub(crate) history: Vec<WatchEvent>,
    pub(crate) requests: Vec<RecordedRequest>,
    pub(crate) exec_frames: Vec<ExecFrame>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) events: broadcast::Sender<Broadcast>,
    pub(crate) options: FakeKubeOptions,
    pub(crate) open_watches: AtomicUsize,
    /// `127.0.0.1:<port>`.
    pub(crate) address: String,
}

impl Shared {
    pub(crate) fn new(options: FakeKubeOptions, address: String) -> Shared {
        let mut pods = BTreeMap::new();
        let mut rv = 10;
        for (n, name) in PODS.iter().enumerate() {
            rv += 1;
            pods.insert(
                (NAMESPACE.to_owned(), (*name).to_owned()),
                objects::pod(NAMESPACE, name, rv, n + 1),
            );
        }
        rv += 1;
        let state = State {
            pods,
            secret_version: rv,
            resource_version: rv,
            next_uid: PODS.len() + 1,
            history: Vec::new(),
            requests: Vec::new(),
            exec_frames: Vec::new(),
        };
        Shared {
            state: Mutex::new(state),
            events: broadcast::channel(1024).0,
            options,
            open_watches: AtomicUsize::new(0),
            address,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a change to pod `namespace/name` and tells the watches:
    /// `Added` stores `object` (a fresh pod when `None`), `Modified` runs
    /// `edit` on the stored pod, `Deleted` removes it. `None` when the pod
    /// to modify or delete does not exist (or the one to add does).
    pub(crate) fn change_pod(
        &self,
        kind: EventType,
        namespace: &str,
        name: &str,
        object: Option<Value>,
        edit: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut state = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        state.resource_version += 1;
        let rv = state.resource_version;
        let mut pod = match kind {
            EventType::Added => {
                if state.pods.contains_key(&key) {
                    return None;
                }
                state.next_uid += 1;
                let uid = state.next_uid;
                let mut pod = object.unwrap_or_else(|| objects::pod(namespace, name, rv, uid));
                pod["metadata"]["namespace"] = json!(namespace);
                pod["metadata"]["name"] = json!(name);
                if pod["metadata"]["uid"].is_null() {
                    pod["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{uid:012}"));
                }
                if pod["metadata"]["creationTimestamp"].is_null() {
                    pod["metadata"]["creationTimestamp"] = json!(objects::CREATED);
                }
                pod["kind"] = json!("Pod");
                pod["apiVersion"] = json!("v1");
                pod
            }
            EventType::Modified => {
                let mut pod = state.pods.get(&key)?.clone();
                edit(&mut pod);
                pod
            }
            EventType::Deleted => state.pods.remove(&key)?,
        };
        pod["metadata"]["resourceVersion"] = json!(rv.to_string());
        if kind != EventType::Deleted {
            state.pods.insert(key, pod.clone());
        }
        let event = WatchEvent {
            kind,
            object: pod.clone(),
            resource_version: rv,
        };
        state.history.push(event.clone());
        // No receiver is fine: nobody watches.
        let _ = self.events.send(Broadcast::Event(event));
        Some(pod)
    }
}
