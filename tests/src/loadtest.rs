//! The load-test harness, `gatehouse-loadtest`, as the tests run it.

use std::path::PathBuf;

use crate::gateway::Gateway;

/// `$GATEHOUSE_LOADTEST_BIN`, else `gatehouse-loadtest` next to the
/// gateway binary (`cargo build --workspace --bins` builds both). Panics
/// with what to do when it is not there.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GATEHOUSE_LOADTEST_BIN") {
        return PathBuf::from(path);
    }
    let path = Gateway::binary().with_file_name("gatehouse-loadtest");
    assert!(
        path.is_file(),
        "{} does not exist: run `cargo build --workspace --bins` first \
         (or set GATEHOUSE_LOADTEST_BIN)",
        path.display()
    );
    path
}
