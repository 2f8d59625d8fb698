//! The PostgreSQL wire protocol (version 3.0), sans-IO.
//!
//! - [`frame`]: incremental, zero-copy framing with capped lengths.
//! - [`frontend`] / [`backend`]: borrowed views of client and server messages.
//! - [`encode`]: the messages the gateway writes itself.
//! - [`upstream`]: logging in to the target with the real credential.
//! - [`session`]: one client connection through the gateway.
//! - [`mask`], [`shape`], [`catalog`]: masking the target's frames, matching
//!   rows to their columns, and resolving column rules to table columns.

pub mod backend;
pub mod catalog;
pub mod copy_out;
pub mod encode;
pub mod enforce;
pub mod frame;
pub mod frontend;
pub mod mask;
pub mod reset;
pub mod session;
pub mod shape;
pub mod upstream;
mod wire;

pub use enforce::{
    ApprovalDecision, ApprovalRequest, ApprovedStatements, HoldMode, Policy, StatementRate,
};
pub use session::{Action, Authorized, Rejection, Session, SessionConfig, Transmit};
pub use upstream::{LoggedIn, UpstreamLogin};

#[cfg(test)]
mod tests;
