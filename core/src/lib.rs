//! Gatehouse's pure logic: everything that never touches a socket, a file or
//! a clock.
//!
//! - [`event`]: the recorded event model (rkyv-archived, hash-chained).
//! - [`grant`]: grant (JWT) claims and plans, signing, and validation
//!   against a key set (Ed25519 keys, JWKS: EdDSA, ES256, RS256), and plans
//!   chosen from named policies by a token's claims.
//! - [`mask`]: the masking engine: column rules, content detectors (cards,
//!   e-mail, national ids, cloud keys and tokens, private keys) and literal
//!   dictionaries, compiled once into a prefiltered matcher.
//! - [`policy`]: SQL classified by PostgreSQL's own parser and held against
//!   a plan: allow, hold for approval, or deny.
//! - [`pg`]: the PostgreSQL wire protocol: incremental frame decoding, message
//!   views and encoders, upstream login, the plan enforced on the wire
//!   (`pg::enforce`), and the sans-IO session state machine the IO engine
//!   drives (the tokio engine today; the io_uring
//!   engine will drive the same one).
//!
//! What this crate is not: it opens no connection, reads no file and asks no
//! clock. Time comes in as arguments, bytes come in as buffers, and what to
//! send or record goes out as values for the caller to act on.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![cfg_attr(
    test,
    allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod errors;
pub mod event;
pub mod fuzzing;
pub mod grant;
pub mod http;
pub mod mask;
pub mod pg;
pub mod policy;
