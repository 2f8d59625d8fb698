//! Support for Gatehouse's integration tests: real PostgreSQL clusters, real
//! gateway processes, real clients.
//!
//! Each test builds what it needs and owns it: a [`PgCluster`] (its own temp
//! dir and port, copied from a template so it starts in well under a
//! second), a [`Gateway`] in front of it (the `gatehouse` binary from
//! `cargo build --workspace --bins`), and clients — [`Psql`] runs the real
//! `psql`, [`Gateway::connect`] gives a tokio-postgres client over TLS,
//! [`messages`] one whose notices and notifications the test receives,
//! and [`wire::RawConn`] speaks the protocol by hand (direct TLS, malformed
//! input, hand-built batches). [`values`] compares results byte for byte.
//! The HTTP and Kubernetes tests' upstreams are a real nginx
//! ([`nginx::Nginx`]) and a small Kubernetes API server
//! ([`kube_api::FakeKube`]) that kubectl talks to as to a cluster.
//! Everything is stopped and removed on drop, so tests run in parallel and
//! leave no processes behind; a test that panics gets the tails of the
//! server and gateway logs printed. Every wait is bounded. What a killed
//! test process leaves behind is swept by the next one (see `janitor.rs`).
//!
//! This crate is not the gateway's unit tests (those live beside the code)
//! and starts nothing shared between tests.
//!
//! Environment: `GATEHOUSE_BIN` overrides the gateway binary,
//! `GATEHOUSE_TEST_IO` chooses the IO engine (`tokio` by default;
//! `scripts/test` runs the suite again with `uring`),
//! `GATEHOUSE_TEST_KEEP=1` keeps the temp dirs for inspection,
//! `GATEHOUSE_TEST_PG_DIR` moves the clusters off `/dev/shm`.

pub mod certs;
pub mod command;
pub mod gateway;
pub mod gateway_config;
pub mod grant;
pub mod http_client;
pub mod http_upstream;
mod janitor;
pub mod kube_api;
pub mod loadtest;
pub mod logs;
pub mod messages;
pub mod nginx;
mod pg_template;
pub mod ports;
pub mod postgres;
pub mod psql;
pub mod tamper;
pub mod values;
pub mod wire;

pub use certs::TestCerts;
pub use gateway::Gateway;
pub use gateway_config::{Durability, GatewayOptions, Target};
pub use grant::GrantArgs;
pub use postgres::{
    APP_PASSWORD, CLEAR_PASSWORD, DATABASE, INVOICES, MD5_PASSWORD, PgCluster, User,
};
pub use psql::{Psql, PsqlOutput};
