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

#[test]
fn start_creates_every_object_and_saves_the_session_last() {
    let k = Kodama::new();
    k.write_test_config("");
    let out = k.run(&["start", "s1", "--no-sync"]);
    out.ok().stdout_has("session \"s1\" is running");
    let objs = k.session_objects("default", "s1");
    for o in [
        "pods/kodama-s1",
        "persistentvolumeclaims/kodama-workspace-s1",
        "persistentvolumeclaims/kodama-claude-home-s1",
        "configmaps/kodama-editor-config-s1",
    ] {
        assert!(
            objs.contains(&o.to_string()),
            "{o} missing: {objs:?}\n{out}"
        );
    }
    let pod = k.pod("default", "kodama-s1").expect("pod");
    let violations = kodama::manifest::pss::check_restricted(&pod);
    assert!(violations.is_empty(), "restricted PSS: {violations:?}");
    let rec = std::fs::read_to_string(k.session_file("s1")).expect("session file");
    assert!(rec.contains("status: Running"), "{rec}");
    // A second start of the same name is refused and changes nothing.
    let again = k.run(&["start", "s1", "--no-sync"]);
    again.fails().stderr_has("already exists");
    assert!(k.pod("default", "kodama-s1").is_some());
}
