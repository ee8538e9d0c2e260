//! End-to-end tests of the session lifecycle (start, list, status, stop, resume, delete, dry-run)
//! driving the real binary against the simulated cluster. See `tests/common/mod.rs`.

mod common;

use common::Kodama;

#[test]
fn harness_runs_the_binary_against_the_sim() {
    let k = Kodama::new();
    k.run(&["version"])
        .ok()
        .stdout_has("kubectl-kodama version");
}
