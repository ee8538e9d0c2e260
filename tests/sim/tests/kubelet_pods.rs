//! Pod lifecycle of the simulated kubelet with real processes: phases, statuses, events, logs,
//! restart policies, init containers, graceful deletion, crash injection and shutdown.

mod kubelet_support;

use kodama_sim::contract::LogOptions;
use kubelet_support::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn pod_runs_to_completion_with_status_events_and_logs() {
    let h = H::new("complete");
    h.create(pod(
        "done",
        &["sh", "-c", "echo hello; echo oops >&2; echo $HOSTNAME"],
    ));
    let p = h.wait_phase("done", "Succeeded");
    let cs = ctr_status(&p, "main");
    assert_eq!(cs["state"]["terminated"]["exitCode"], 0, "{p}");
    assert_eq!(cs["state"]["terminated"]["reason"], "Completed");
    assert!(cs["state"]["terminated"]["startedAt"].is_string());
    assert!(cs["state"]["terminated"]["finishedAt"].is_string());
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["image"], "busybox:1.36");
    assert!(cs["containerID"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(p["status"]["podIP"], "127.0.0.1");
    assert_eq!(p["status"]["hostIP"], "127.0.0.1");
    assert_eq!(condition(&p, "PodScheduled")["status"], "True");
    assert_eq!(condition(&p, "Ready")["reason"], "PodCompleted");
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(h.has_event("done", reason, ""), "missing event {reason}");
    }
    assert!(h.has_event(
        "done",
        "Scheduled",
        "Successfully assigned default/done to sim-node"
    ));
    let all = h.logs("done", &LogOptions::default());
    // stdout and stderr interleave in the log, both present, hostname = pod name.
    assert!(
        all.contains("hello\n") && all.contains("oops\n") && all.contains("done\n"),
        "{all:?}"
    );
    let tail = h.logs(
        "done",
        &LogOptions {
            tail_lines: Some(1),
            ..Default::default()
        },
    );
    assert_eq!(tail.lines().count(), 1, "{tail:?}");
    let ts = h.logs(
        "done",
        &LogOptions {
            timestamps: true,
            ..Default::default()
        },
    );
    for line in ts.lines() {
        let (t, _) = line.split_once(' ').expect("timestamp prefix");
        assert!(
            t.ends_with('Z') && t.contains('T') && t.contains('.'),
            "{line}"
        );
    }
    let since = h.logs(
        "done",
        &LogOptions {
            since_seconds: Some(3600),
            ..Default::default()
        },
    );
    assert_eq!(since, all);
}

#[test]
fn running_pod_is_ready_and_failed_pod_reports_exit_code() {
    let h = H::new("ready");
    h.create(pod("sleeper", &["sleep", "300"]));
    let p = h.wait_ready("sleeper");
    assert_eq!(p["status"]["phase"], "Running");
    let cs = ctr_status(&p, "main");
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    for t in [
        "Initialized",
        "ContainersReady",
        "PodScheduled",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(condition(&p, t)["status"], "True", "{t}");
    }
    h.create(pod("failing", &["sh", "-c", "exit 3"]));
    let p = h.wait_phase("failing", "Failed");
    let t = &ctr_status(&p, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
}

#[test]
fn restart_policies_and_crash_loop() {
    let h = H::new("restart");
    let mut always = pod("always", &["sh", "-c", "echo run; exit 1"]);
    always["spec"]["restartPolicy"] = json!("Always");
    h.create(always);
    let p = h.wait_pod("always", "2 restarts", |p| {
        ctr_status(p, "main")["restartCount"].as_u64() >= Some(2)
    });
    assert_eq!(p["status"]["phase"], "Running");
    assert_eq!(
        ctr_status(&p, "main")["lastState"]["terminated"]["exitCode"],
        1
    );
    h.wait_pod("always", "CrashLoopBackOff", |p| {
        ctr_status(p, "main")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    // The previous instance's log is kept.
    let prev = h.logs(
        "always",
        &LogOptions {
            previous: true,
            ..Default::default()
        },
    );
    assert_eq!(prev, "run\n");

    let mut on_failure = pod("onfailure", &["sh", "-c", "exit 0"]);
    on_failure["spec"]["restartPolicy"] = json!("OnFailure");
    h.create(on_failure);
    let p = h.wait_phase("onfailure", "Succeeded");
    assert_eq!(ctr_status(&p, "main")["restartCount"], 0);

    // OnFailure restarts a failing container until it succeeds (marker file in a world-writable dir).
    let marker = h.path("onfailure-marker");
    let mut retry = pod(
        "retry",
        &[
            "sh",
            "-c",
            &format!("if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 7"),
        ],
    );
    retry["spec"]["restartPolicy"] = json!("OnFailure");
    h.create(retry);
    let p = h.wait_phase("retry", "Succeeded");
    assert_eq!(ctr_status(&p, "main")["restartCount"], 1);
    assert_eq!(
        ctr_status(&p, "main")["lastState"]["terminated"]["exitCode"],
        7
    );
}

#[test]
fn init_containers_run_first_in_order() {
    let h = H::new("init");
    let out = h.path("init-out");
    let spec = json!({
        "metadata": {"name": "withinit"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "work", "emptyDir": {}}],
            "initContainers": [
                {"name": "one", "image": "busybox", "command": ["sh", "-c", format!("echo one >> {out}/order")],
                 "volumeMounts": [{"name": "work", "mountPath": out}]},
                {"name": "two", "image": "busybox", "command": ["sh", "-c", format!("sleep 0.2; echo two >> {out}/order")],
                 "volumeMounts": [{"name": "work", "mountPath": out}]},
            ],
            "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", format!("cat {out}/order")],
                "volumeMounts": [{"name": "work", "mountPath": out}]}],
        }
    });
    h.create(spec);
    let seen_pending_init = h.wait_pod("withinit", "init running", |p| {
        p["status"]["phase"] == "Pending"
            && condition(p, "Initialized")["reason"] == "ContainersNotInitialized"
    });
    assert_eq!(
        ctr_status(&seen_pending_init, "main")["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    let p = h.wait_phase("withinit", "Succeeded");
    let inits = p["status"]["initContainerStatuses"]
        .as_array()
        .expect("init statuses");
    assert_eq!(inits.len(), 2);
    for i in inits {
        assert_eq!(i["state"]["terminated"]["reason"], "Completed");
    }
    assert_eq!(h.logs("withinit", &LogOptions::default()), "one\ntwo\n");

    // A failing init container with restartPolicy Never fails the pod; main never starts.
    let bad = json!({
        "metadata": {"name": "badinit"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "boom", "image": "busybox", "command": ["sh", "-c", "exit 2"]}],
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
        }
    });
    h.create(bad);
    let p = h.wait_phase("badinit", "Failed");
    let i = &p["status"]["initContainerStatuses"][0];
    assert_eq!(i["state"]["terminated"]["exitCode"], 2);
    assert_eq!(i["state"]["terminated"]["reason"], "Error");
    assert!(
        ctr_status(&p, "main")["state"]["waiting"].is_object(),
        "{p}"
    );
}

#[test]
fn graceful_deletion_sends_sigterm_then_sigkill() {
    let h = H::new("delete");
    let flag = h.path("term-flag");
    let script = format!(
        "trap 'echo term > {flag}; exit 0' TERM; echo started; while true; do sleep 0.05; done"
    );
    h.create(pod("graceful", &["sh", "-c", &script]));
    h.wait_log("graceful", "started\n");
    let t0 = Instant::now();
    h.delete("graceful", 20);
    h.wait_deleted("graceful", Duration::from_secs(10));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "SIGTERM handler should end it early"
    );
    assert_eq!(std::fs::read_to_string(&flag).expect("flag").trim(), "term");
    assert!(h.has_event("graceful", "Killing", "Stopping container main"));

    // A process ignoring SIGTERM is killed after the grace period.
    let marker = "kodama-ignore-term-marker";
    h.create(pod(
        "stubborn",
        &[
            "sh",
            "-c",
            "trap '' TERM; echo trapped; while true; do sleep 0.05; done",
            marker,
        ],
    ));
    h.wait_log("stubborn", "trapped\n");
    let t0 = Instant::now();
    h.delete("stubborn", 1);
    h.wait_deleted("stubborn", Duration::from_secs(10));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "grace period not honoured: {took:?}"
    );
    assert!(pids_with(marker).is_empty(), "process survived deletion");
}

#[test]
fn kill_pod_processes_is_a_crash_and_restarts() {
    let h = H::new("kill");
    let mut p = pod("victim", &["sleep", "300"]);
    p["spec"]["restartPolicy"] = json!("Always");
    h.create(p);
    h.wait_ready("victim");
    h.kubelet.kill_pod_processes(NS, "victim");
    let p = h.wait_pod("victim", "restart after kill", |p| {
        ctr_status(p, "main")["restartCount"] == 1
            && ctr_status(p, "main")["state"]["running"].is_object()
    });
    let last = &ctr_status(&p, "main")["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{p}");
    assert_eq!(last["reason"], "Error");
}

#[test]
fn shutdown_leaves_no_processes() {
    let h = H::new("shutdown");
    let marker = "300.4242";
    h.create(pod(
        "bg",
        &["sh", "-c", "sleep 300.4242 & sleep 300.4242; true"],
    ));
    h.wait_ready("bg");
    h.state
        .wait_for(TIMEOUT, |_| (pids_with(marker).len() >= 2).then_some(()))
        .expect("both processes run");
    h.kubelet.shutdown();
    let gone = h.state.wait_for(Duration::from_secs(5), |_| {
        pids_with(marker).is_empty().then_some(())
    });
    assert!(gone.is_some(), "stray processes: {:?}", pids_with(marker));
    assert!(
        !h.state.was_deleted(NS, "bg"),
        "shutdown must not delete pods"
    );
}

#[test]
fn without_namespaces_pods_report_a_clear_error() {
    use kodama_sim::contract::{ClusterState, KubeletConfig};
    use kodama_sim::kubelet::fake::MemState;
    let dir = std::env::temp_dir().join(format!("kodama-kubelet-nons-{}", std::process::id()));
    let state = MemState::new();
    let kubelet = kodama_sim::kubelet::new_without_namespaces(
        state.clone(),
        KubeletConfig {
            data_dir: dir.clone(),
            start_delay: Duration::from_millis(10),
            cpu_millis: 1000,
            memory_bytes: 1 << 30,
            extended: vec![],
            node_name: "n".into(),
        },
    );
    let mut p = pod("p", &["true"]);
    p["metadata"]["namespace"] = json!(NS);
    p["metadata"]["uid"] = json!("u1");
    state.put("pods", p.clone());
    kubelet.pod_changed(&p);
    let got = state.wait_for(TIMEOUT, |s| {
        let p = s.get("pods", NS, "p")?;
        let w = &ctr_status(&p, "main")["state"]["waiting"];
        (w["reason"] == "ContainerCreating"
            && w["message"]
                .as_str()
                .is_some_and(|m| m.contains("needs root")))
        .then_some(p)
    });
    assert!(
        got.is_some(),
        "no clear error in the status: {:?}",
        state.get("pods", NS, "p")
    );
    assert!(state
        .events("p")
        .iter()
        .any(|e| e.reason == "FailedCreatePodSandBox"
            && e.type_ == "Warning"
            && e.message.contains("needs root")));
    assert_eq!(
        state.get("pods", NS, "p").expect("pod")["status"]["phase"],
        "Pending"
    );
    kubelet.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pods_removed_from_the_store_are_cleaned_up() {
    let h = H::new("orphan");
    let marker = "301.777";
    h.create(pod("orphan", &["sleep", marker]));
    h.wait_ready("orphan");
    assert!(!pids_with(marker).is_empty());
    // Removed behind the kubelet's back (no deletionTimestamp): its processes still go away.
    h.state.remove("pods", NS, "orphan");
    let gone = h
        .state
        .wait_for(TIMEOUT, |_| pids_with(marker).is_empty().then_some(()));
    assert!(
        gone.is_some(),
        "orphaned pod processes survive: {:?}",
        pids_with(marker)
    );
    assert!(
        !h.state.was_deleted(NS, "orphan"),
        "an orphan is not finished through the API"
    );
}
