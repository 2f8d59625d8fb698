//! Session-level tests: a client, the session and a scripted target in
//! memory.

mod mask;
mod robustness;
mod session;
