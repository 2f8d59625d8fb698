//! `gatehouse-loadtest`, the SRE harness: not built yet.
//!
//! It will drive N concurrent simulated agents through a gateway to a real
//! target (closed and open loop, connect-per-task, denied and masked
//! workloads), side by side with direct connections, report HDR-histogram
//! latencies and throughput ratios, and check afterwards that every
//! statement it sent is in the store exactly once. Until then this crate
//! holds nothing, so that nothing here pretends to measure.
