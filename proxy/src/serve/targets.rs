//! Where each target lives and how to log in to it.

use std::time::Duration;

use std::sync::Arc;

use gatehouse_core::mask::Masker;
use gatehouse_core::pg::UpstreamLogin;

/// The network address of a target.
#[derive(Debug, Clone)]
pub struct TargetAddr {
    /// Host name or IP.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How long opening a session may take: TCP connect, login and the
    /// catalog read together.
    pub connect_timeout: Duration,
    /// Connections kept for reuse per worker (0: none).
    pub pool_size: usize,
}

/// A configured target, resolved for serving.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where it is.
    pub addr: TargetAddr,
    /// Who the gateway logs in as.
    pub login: UpstreamLogin,
    /// The target's masking rules, compiled once at load.
    pub masker: Option<Arc<Masker>>,
    /// The same rules and token secret as configured, for grants that
    /// mask more (`plan.targets.NAME.mask`).
    pub masking: Option<crate::config::Masking>,
    /// An HTTP or Kubernetes target's upstream; `None` for PostgreSQL.
    pub http: Option<Arc<crate::http::HttpUpstream>>,
}
