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
    common::write(
        k.cwd.path(),
        ".env",
        &format!("GITHUB_TOKEN={token}\nAPP_MODE=dev\n"),
    );
    let out = k.run(&[
        "start",
        "dr",
        "--no-sync",
        "--env-file",
        ".env",
        "--dry-run",
    ]);
    out.ok();
    for kind in [
        "kind: Pod",
        "kind: PersistentVolumeClaim",
        "kind: ConfigMap",
        "kind: Secret",
    ] {
        assert!(out.stdout.contains(kind), "{kind} missing\n{out}");
    }
    assert!(out.stdout.contains("<redacted>"), "{out}");
    assert!(!out.all().contains(token), "token leaked in dry-run output");
    let json = k.run(&[
        "start",
        "dr",
        "--no-sync",
        "--env-file",
        ".env",
        "--dry-run",
        "-o",
        "json",
    ]);
    json.ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("dry-run JSON");
    assert_eq!(v["kind"], "List");
    assert!(v["items"].as_array().expect("items").len() >= 5, "{json}");
    assert!(!json.stdout.contains(token));
    let gpu = k.run(&[
        "start",
        "dr",
        "--no-sync",
        "--resource",
        "nvidia.com/gpu=1",
        "--cpu",
        "2",
        "--dry-run",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&gpu.ok().stdout).expect("json");
    let pod = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|o| o["kind"] == "Pod")
        .expect("pod")
        .clone();
    let res = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(res["limits"]["nvidia.com/gpu"], "1", "{res}");
    assert_eq!(res["limits"]["cpu"], "2");
    assert_ne!(res["requests"]["cpu"], "0", "never a zero CPU request");
    assert!(kodama::manifest::pss::check_restricted(&pod).is_empty());
    assert!(
        k.journal().is_empty(),
        "dry-run talked to the API server: {:?}",
        posts(&k)
    );
    assert!(!k.session_file("dr").exists());
}

#[test]
fn invalid_inputs_are_rejected_before_anything_is_created() {
    let k = Kodama::new();
    k.write_test_config("");
    common::write(k.cwd.path(), "bad.env", "lower=1\nGOOD=2\n9BAD=3\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["start", "Bad_Name", "--no-sync"], "Bad_Name"),
        (
            vec!["start", "e1", "--no-sync", "--env-file", "bad.env"],
            "bad.env:1",
        ),
        (
            vec!["start", "e2", "--no-sync", "--env-file", "missing.env"],
            "missing.env",
        ),
        (
            vec!["start", "e3", "--no-sync", "--prompt-file", "nope.txt"],
            "nope.txt",
        ),
        (
            vec!["start", "e4", "--no-sync", "--repo", "ht!tp://bad url"],
            "repo",
        ),
        (vec!["start", "e5", "--sync", "/"], "/"),
        (
            vec![
                "start",
                "e6",
                "--no-sync",
                "--secret-file",
                "nofile:/home/kodama/x",
            ],
            "nofile",
        ),
    ];
    for (args, needle) in cases {
        let out = k.run(&args);
        out.fails();
        assert!(
            out.stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}\n{out}"
        );
    }
    // Every offending env name in one error.
    let out = k.run(&["start", "e1", "--no-sync", "--env-file", "bad.env"]);
    out.stderr_has("bad.env:3");
    assert!(
        posts(&k).is_empty(),
        "something was created: {:?}",
        posts(&k)
    );
}

#[test]
fn list_uses_one_request_pair_per_namespace_and_shows_teammate_and_stopped_sessions() {
    let mut k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "l1", "--no-sync"]).ok();
    k.run(&["start", "l2", "--no-sync"]).ok();
    // A teammate's session: started from another config directory (no local file here).
    let mine = k.config_dir.0.clone();
    let other = common::TempDir::new("teammate");
    k.set_env("KODAMA_CONFIG_DIR", other.path().to_str().expect("utf8"));
    common::write(
        other.path(),
        "config.yaml",
        &std::fs::read_to_string(mine.join("config.yaml")).expect("cfg"),
    );
    k.run(&["start", "mate", "--no-sync"]).ok();
    k.set_env("KODAMA_CONFIG_DIR", mine.to_str().expect("utf8"));
    k.run(&["stop", "l2"]).ok();
    // A corrupt local file is a warning, not a failure.
    common::write(&mine, "sessions/broken.yaml", "name: [unclosed\n");

    k.sim.clear_journal();
    let out = k.run(&["list"]);
    out.ok();
    let line = |n: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .map(str::to_string)
    };
    assert!(out.stdout.starts_with("NAME "), "{out}");
    for h in ["STATUS", "NAMESPACE", "SYNC", "AGENT", "AGE"] {
        assert!(
            out.stdout.lines().next().expect("header").contains(h),
            "{out}"
        );
    }
    assert!(line("l1").expect("l1").contains("Running"), "{out}");
    assert!(line("l2").expect("l2").contains("Stopped"), "{out}");
    assert!(
        line("mate")
            .expect("teammate session listed")
            .contains("Running"),
        "{out}"
    );
    out.stderr_has("broken.yaml");
    let gets: Vec<_> = k
        .journal()
        .into_iter()
        .filter(|e| e.method == "GET")
        .collect();
    let pod_lists = gets
        .iter()
        .filter(|e| e.path == "/api/v1/namespaces/default/pods")
        .count();
    let pvc_lists = gets
        .iter()
        .filter(|e| e.path == "/api/v1/namespaces/default/persistentvolumeclaims")
        .count();
    assert_eq!(
        (pod_lists, pvc_lists),
        (1, 1),
        "journal: {:?}",
        gets.iter().map(|e| &e.path).collect::<Vec<_>>()
    );
    assert_eq!(
        gets.len(),
        2,
        "one list of pods and one of PVCs, nothing per session: {:?}",
        gets.iter().map(|e| &e.path).collect::<Vec<_>>()
    );

    // -o wide, -A and the session schema.
    let wide = k.run(&["list", "-o", "wide"]);
    wide.ok();
    for h in ["POD", "IMAGE", "BRANCH", "NODE"] {
        assert!(
            wide.stdout.lines().next().expect("header").contains(h),
            "{wide}"
        );
    }
    assert!(wide.stdout.contains("sim-node"), "{wide}");
    k.sim.clear_journal();
    let all = k.run(&["ls", "-A", "-o", "json"]);
    all.ok();
    let cluster_wide: Vec<_> = k
        .journal()
        .into_iter()
        .filter(|e| e.method == "GET")
        .map(|e| e.path)
        .collect();
    assert_eq!(
        cluster_wide,
        vec![
            "/api/v1/pods".to_string(),
            "/api/v1/persistentvolumeclaims".to_string()
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&all.stdout).expect("json");
    let names: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, vec!["l1", "l2", "mate"], "{all}");
    assert_eq!(v[0]["podName"], "kodama-l1");
    let yaml = k.run(&["list", "-o", "yaml"]);
    yaml.ok().stdout_has("name: mate");
}

#[test]
fn list_all_namespaces_without_cluster_rights_gives_one_clear_message() {
    let mut k = Kodama::new();
    k.use_user(common::RESTRICTED_USER);
    let out = k.run(&["list", "-A"]);
    out.fails()
        .stderr_has("all namespaces")
        .stderr_has("drop -A");
    assert_eq!(out.stderr.matches("forbidden").count(), 1, "{out}");
    // Its own namespace works.
    k.run(&["list"]).ok();
}

#[test]
fn delete_asks_keeps_volumes_and_is_idempotent() {
    let k = Kodama::new();
    k.write_test_config("");
    common::write(k.cwd.path(), ".env", "APP_MODE=dev\n");
    k.run(&["start", "d1", "--no-sync", "--env-file", ".env"])
        .ok();
    assert!(k.get("secrets", "default", "kodama-env-d1").is_some());

    // No terminal and no -f: an error, not a hang, and nothing deleted.
    let out = k.run(&["delete", "d1"]);
    out.fails().stderr_has("--force");
    assert_eq!(k.session_objects("default", "d1").len(), 5);

    k.sim.clear_journal();
    let out = k.run(&["delete", "d1", "-f"]);
    out.ok()
        .stdout_has("kubectl delete pvc -n default kodama-workspace-d1 kodama-claude-home-d1");
    assert!(
        k.requests("DELETE", "persistentvolumeclaims").is_empty(),
        "delete removed a PVC without --purge"
    );
    assert_eq!(
        k.session_objects("default", "d1")
            .into_iter()
            .filter(|o| !o.starts_with("pods/"))
            .collect::<Vec<_>>(),
        vec![
            "persistentvolumeclaims/kodama-workspace-d1",
            "persistentvolumeclaims/kodama-claude-home-d1"
        ]
    );
    assert!(!k.session_file("d1").exists());
    k.wait_pod_gone("default", "d1", 30);
    // Again: idempotent.
    k.run(&["delete", "d1", "-f"]).ok();
    // --purge -f removes the volumes too.
    k.run(&["delete", "d1", "-f", "--purge"]).ok();
    assert!(k.session_objects("default", "d1").is_empty());
    // Only a leftover ConfigMap: delete still cleans it up.
    k.run(&["start", "d1", "--no-sync"]).ok();
    k.sim
        .faults()
        .delete_pod("default", "kodama-d1", Some(0))
        .expect("delete pod");
    for p in ["kodama-workspace-d1", "kodama-claude-home-d1"] {
        kodama::kube::Client::delete(
            &k.client(),
            &kodama::kube::resource::PERSISTENT_VOLUME_CLAIMS,
            Some("default"),
            p,
            &Default::default(),
        )
        .expect("delete pvc");
    }
    std::fs::remove_file(k.session_file("d1")).expect("rm session file");
    k.wait_pod_gone("default", "d1", 30);
    k.run(&["delete", "d1", "-f"])
        .ok()
        .stdout_has("configmap/kodama-editor-config-d1");
    assert!(k.session_objects("default", "d1").is_empty());
    // Now it is unknown: a clear message with a way out.
    k.run(&["delete", "d1", "-f"])
        .fails()
        .stderr_has("not found")
        .stderr_has("list");
}

#[test]
fn delete_keep_config_and_from_a_teammates_machine() {
    let mut k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "d2", "--no-sync"]).ok();
    k.run(&["delete", "d2", "-f", "--keep-config"]).ok();
    let rec = std::fs::read_to_string(k.session_file("d2")).expect("kept");
    assert!(rec.contains("status: Stopped"), "{rec}");

    k.run(&["start", "d3", "-n", "team", "--no-sync"])
        .fails()
        .stderr_has("team");
    k.sim
        .create(
            "namespaces",
            "",
            serde_json::json!({"metadata": {"name": "team"}}),
        )
        .expect("ns");
    k.run(&["start", "d3", "-n", "team", "--no-sync"]).ok();
    // The teammate has no local file; -n and the name are enough.
    let other = common::TempDir::new("mate");
    k.set_env("KODAMA_CONFIG_DIR", other.path().to_str().expect("utf8"));
    k.run(&["delete", "d3", "-f"]).fails().stderr_has("-n team");
    k.run(&["delete", "d3", "-n", "team", "-f"]).ok();
    k.wait_pod_gone("team", "d3", 30);
    assert!(k
        .get("configmaps", "team", "kodama-editor-config-d3")
        .is_none());
}

#[test]
fn stop_and_resume_keep_workspace_files() {
    let k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "sr", "--no-sync"]).ok();
    let (code, _) = k.exec(
        "default",
        "sr",
        &["sh", "-c", "echo precious > /workspace/keep.txt"],
    );
    assert_eq!(code, 0);
    k.sim.clear_journal();
    k.run(&["stop", "sr"]).ok().stdout_has("resume");
    assert!(
        k.pod("default", "kodama-sr").is_none(),
        "stop waits until the pod is gone"
    );
    assert!(k.requests("DELETE", "persistentvolumeclaims").is_empty());
    assert_eq!(
        k.session_objects("default", "sr").len(),
        3,
        "PVCs and ConfigMap kept"
    );
    let rec = std::fs::read_to_string(k.session_file("sr")).expect("rec");
    assert!(rec.contains("status: Stopped"));
    let l = k.run(&["list"]);
    assert!(
        l.stdout
            .lines()
            .any(|x| x.starts_with("sr ") && x.contains("Stopped")),
        "{l}"
    );

    k.run(&["resume", "sr"]).ok();
    let (code, out) = k.exec("default", "sr", &["cat", "/workspace/keep.txt"]);
    assert_eq!((code, out.as_str()), (0, "precious\n"));
    let rec = std::fs::read_to_string(k.session_file("sr")).expect("rec");
    assert!(rec.contains("status: Running"));
    // Resuming a running session is a no-op.
    k.run(&["resume", "sr"]).ok().stdout_has("already running");
}

#[test]
fn resume_from_a_teammates_machine_uses_the_spec_on_the_volume() {
    let mut k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "tm", "--no-sync", "--cpu", "300m"]).ok();
    k.run(&["stop", "tm"]).ok();
    let other = common::TempDir::new("mate");
    k.set_env("KODAMA_CONFIG_DIR", other.path().to_str().expect("utf8"));
    k.run(&["resume", "tm"]).ok();
    let pod = k.pod("default", "kodama-tm").expect("pod recreated");
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["limits"]["cpu"],
        "300m"
    );
}

#[test]
fn pod_deleted_behind_kodamas_back_is_reported_clearly() {
    let k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "gone", "--no-sync"]).ok();
    k.sim
        .faults()
        .delete_pod("default", "kodama-gone", Some(0))
        .expect("delete pod");
    k.wait_pod_gone("default", "gone", 30);
    let l = k.run(&["list"]);
    assert!(
        l.stdout
            .lines()
            .any(|x| x.starts_with("gone ") && x.contains("PodDeleted")),
        "{l}"
    );
    let s = k.run(&["status", "gone"]);
    s.ok()
        .stdout_has("PodDeleted")
        .stdout_has("kubectl kodama resume gone");
    k.run(&["resume", "gone"]).ok();
    assert!(k.pod("default", "kodama-gone").is_some());
}

#[test]
fn delete_on_a_terminal_asks_and_purge_asks_again() {
    let k = Kodama::new();
    k.write_test_config("");
    // On a terminal the progress line is redrawn in place.
    let out = k.run_tty(&["start", "tty", "--no-sync"], b"");
    out.ok().stdout_has("\r\x1b[2Kwaiting for pod kodama-tty");
    // "n": nothing happens.
    let out = k.run_tty(&["delete", "tty"], b"n\n");
    out.ok().stdout_has("[y/N]").stdout_has("not deleted");
    assert_eq!(k.session_objects("default", "tty").len(), 4);
    // "y" to the first question, "n" to the purge question: volumes kept.
    let out = k.run_tty(&["delete", "tty", "--purge"], b"y\nn\n");
    out.ok()
        .stdout_has("Also delete the volumes")
        .stdout_has("kept the volumes");
    let left: Vec<String> = k
        .session_objects("default", "tty")
        .into_iter()
        .filter(|o| !o.starts_with("pods/"))
        .collect();
    assert_eq!(left.len(), 2, "{out}");
    // Both "y": volumes gone.
    let out = k.run_tty(&["delete", "tty", "--purge"], b"y\ny\n");
    out.ok();
    k.wait_pod_gone("default", "tty", 30);
    assert!(k.session_objects("default", "tty").is_empty(), "{out}");
}

#[test]
fn without_a_terminal_progress_is_plain_lines() {
    let k = Kodama::new();
    k.write_test_config("");
    let out = k.run(&["start", "plain", "--no-sync"]);
    out.ok().stderr_has("waiting for pod kodama-plain: ");
    assert!(
        !out.stderr.contains('\r') && !out.stderr.contains('\x1b'),
        "{out}"
    );
}

#[test]
fn list_shows_local_sessions_when_the_cluster_is_unreachable() {
    let mut k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "off", "--no-sync"]).ok();
    let kc = k.home.join("kubeconfig");
    std::fs::copy(&k.kubeconfig, &kc).expect("copy kubeconfig");
    k.set_env("KUBECONFIG", kc.to_str().expect("utf8"));
    k.sim.stop();
    let out = k.run(&["list", "--request-timeout", "2s"]);
    out.ok().stderr_has("cannot reach the cluster");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("off ") && l.contains("Unknown")),
        "{out}"
    );
}

#[test]
fn status_text_yaml_and_unknown_name() {
    let k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "st", "--no-sync"]).ok();
    let s = k.run(&["status", "st"]);
    s.ok();
    for f in [
        "Session:    st",
        "Status:     Running",
        "Pod:        kodama-st (phase Running, node sim-node)",
        "Sync:       Inactive",
        "Agent run:  -",
    ] {
        assert!(s.stdout.contains(f), "{f:?} missing\n{s}");
    }
    let y = k.run(&["status", "st", "-o", "yaml"]);
    y.ok().stdout_has("status: Running");
    k.run(&["status", "nosuch"]).fails().stderr_has("not found");
}
