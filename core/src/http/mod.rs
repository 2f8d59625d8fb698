//! HTTP and Kubernetes, the parts that are pure logic: what a request asks
//! for and whether a plan allows it, and the WebSocket frames of upgraded
//! connections (`kubectl exec`), read for the record.
//!
//! HTTP/1.1 framing itself (request heads, chunked bodies, keep-alive,
//! upgrades) is `hyper`'s, in the proxy: a hand-written HTTP/1.1 parser in
//! front of production APIs is where request smuggling comes from, and
//! hyper is the well-kept one made for the job.
//!
//! - [`kube`] derives a Kubernetes request's verb, resource, subresource,
//!   namespace and name from its method and path, the way the API server
//!   does.
//! - [`rules`] holds a request against a grant's plan: allow, hold for
//!   approval, or deny naming what the plan lacks.
//! - [`websocket`] decodes RFC 6455 frames from a byte stream, and the
//!   Kubernetes stream channels (`v5.channel.k8s.io`) inside them.

pub mod kube;
pub mod rules;
pub mod websocket;
