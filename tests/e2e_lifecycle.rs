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

fn posts(k: &Kodama) -> Vec<String> {
    k.journal()
        .into_iter()
        .filter(|e| e.method != "GET")
        .map(|e| format!("{} {}", e.method, e.path))
        .collect()
}

#[test]
fn dry_run_prints_every_manifest_redacted_and_sends_no_request() {
    let k = Kodama::new();
    k.write_test_config("");
    let token = "ghp_PLANTEDdryrun0123456789";
    common::write(k.cwd.path(), ".env", &format!("GITHUB_TOKEN={token}\nAPP_MODE=dev\n"));
    let out = k.run(&["start", "dr", "--no-sync", "--env-file", ".env", "--dry-run"]);
    out.ok();
    for kind in ["kind: Pod", "kind: PersistentVolumeClaim", "kind: ConfigMap", "kind: Secret"] {
        assert!(out.stdout.contains(kind), "{kind} missing\n{out}");
    }
    assert!(out.stdout.contains("<redacted>"), "{out}");
    assert!(!out.all().contains(token), "token leaked in dry-run output");
    let json = k.run(&["start", "dr", "--no-sync", "--env-file", ".env", "--dry-run", "-o", "json"]);
    json.ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("dry-run JSON");
    assert_eq!(v["kind"], "List");
    assert!(v["items"].as_array().expect("items").len() >= 5, "{json}");
    assert!(!json.stdout.contains(token));
    assert!(k.journal().is_empty(), "dry-run talked to the API server: {:?}", posts(&k));
    assert!(!k.session_file("dr").exists());
}

#[test]
fn invalid_inputs_are_rejected_before_anything_is_created() {
    let k = Kodama::new();
    k.write_test_config("");
    common::write(k.cwd.path(), "bad.env", "lower=1\nGOOD=2\n9BAD=3\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["start", "Bad_Name", "--no-sync"], "Bad_Name"),
        (vec!["start", "e1", "--no-sync", "--env-file", "bad.env"], "bad.env:1"),
        (vec!["start", "e2", "--no-sync", "--env-file", "missing.env"], "missing.env"),
        (vec!["start", "e3", "--no-sync", "--prompt-file", "nope.txt"], "nope.txt"),
        (vec!["start", "e4", "--no-sync", "--repo", "ht!tp://bad url"], "repo"),
        (vec!["start", "e5", "--sync", "/"], "/"),
        (vec!["start", "e6", "--no-sync", "--secret-file", "nofile:/home/kodama/x"], "nofile"),
    ];
    for (args, needle) in cases {
        let out = k.run(&args);
        out.fails();
        assert!(out.stderr.contains(needle), "{args:?}: stderr lacks {needle:?}\n{out}");
    }
    // Every offending env name in one error.
    let out = k.run(&["start", "e1", "--no-sync", "--env-file", "bad.env"]);
    out.stderr_has("bad.env:3");
    assert!(posts(&k).is_empty(), "something was created: {:?}", posts(&k));
}
