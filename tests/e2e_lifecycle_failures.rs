//! End-to-end tests of start failures: the reason is shown with a way out, and exactly what this
//! start created is rolled back (volumes that held data are kept; a retry works).

mod common;

use std::time::Duration;

use common::{Kodama, SimOptions};

#[test]
fn image_that_cannot_be_pulled_fails_with_the_reason_and_rolls_back() {
    let k = Kodama::new();
    k.write_test_config("");
    let out = k.run(&[
        "start",
        "img",
        "--no-sync",
        "--image",
        "registry.example/does-not-exist:1",
    ]);
    out.fails()
        .stderr_has("ErrImagePull")
        .stderr_has("hint: the image cannot be pulled")
        .stderr_has("--image");
    assert!(
        k.session_objects("default", "img").is_empty(),
        "left behind: {:?}",
        k.session_objects("default", "img")
    );
    assert!(!k.session_file("img").exists());
    // Nothing blocks a retry.
    k.run(&["start", "img", "--no-sync"]).ok();
}

#[test]
fn unschedulable_pod_fails_with_the_reason() {
    let k = Kodama::new();
    k.write_test_config("");
    let out = k.run(&["start", "big", "--no-sync", "--cpu", "64"]);
    out.fails()
        .stderr_has("Insufficient cpu")
        .stderr_has("--cpu");
    assert!(k.session_objects("default", "big").is_empty());
}

#[test]
fn pvc_pending_without_default_storage_class_is_named() {
    let k = Kodama::with_options(SimOptions {
        start_delay: Duration::from_millis(50),
        default_storage_class: false,
        ..SimOptions::default()
    });
    k.write_test_config("");
    let out = k.run(&["start", "nosc", "--no-sync", "--timeout", "20s"]);
    out.fails()
        .stderr_has("StorageClass")
        .stderr_has("--storage-class");
    assert!(k.session_objects("default", "nosc").is_empty());
}

#[test]
fn a_failed_start_keeps_volumes_that_already_held_data() {
    let k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "keep", "--no-sync"]).ok();
    let (code, _) = k.exec(
        "default",
        "keep",
        &["sh", "-c", "echo mine > /workspace/data.txt"],
    );
    assert_eq!(code, 0);
    k.run(&["delete", "keep", "-f"]).ok();
    k.wait_pod_gone("default", "keep", 30);
    k.sim.clear_journal();
    let out = k.run(&["start", "keep", "--no-sync", "--image", "x/does-not-exist"]);
    out.fails()
        .stderr_has("reusing existing volume kodama-workspace-keep");
    assert!(
        k.requests("DELETE", "persistentvolumeclaims").is_empty(),
        "a volume with data was deleted"
    );
    assert!(k.pvc("default", "kodama-workspace-keep").is_some());
    // The retry reuses the volume and the data is there.
    k.run(&["start", "keep", "--no-sync"]).ok();
    let (_, out) = k.exec("default", "keep", &["cat", "/workspace/data.txt"]);
    assert_eq!(out, "mine\n");
}

#[test]
fn start_deadline_rolls_back() {
    let k = Kodama::with_options(SimOptions {
        start_delay: Duration::from_secs(30),
        ..SimOptions::default()
    });
    k.write_test_config("");
    let t = std::time::Instant::now();
    let out = k.run(&["start", "slow", "--no-sync", "--timeout", "2s"]);
    out.fails().stderr_has("--timeout");
    assert!(t.elapsed() < Duration::from_secs(20));
    assert!(
        k.session_objects("default", "slow").is_empty(),
        "{:?}",
        k.session_objects("default", "slow")
    );
}

#[test]
fn ctrl_c_during_start_rolls_back_and_exits_130() {
    let k = Kodama::with_options(SimOptions {
        start_delay: Duration::from_secs(30),
        ..SimOptions::default()
    });
    k.write_test_config("");
    let child = k
        .cmd(&["start", "intr", "--no-sync"])
        .spawn()
        .expect("spawn");
    common::wait_until("pod created", 20, || {
        k.pod("default", "kodama-intr").is_some()
    });
    // SIGINT, as a terminal's Ctrl-C would send.
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill")
        .success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    common::wait_until("rolled back", 20, || {
        k.session_objects("default", "intr").is_empty()
    });
    assert!(!k.session_file("intr").exists());
}
