//! The standalone `kodama-sim serve` process: prints the kubeconfig path first, serves, and
//! cleans up on SIGTERM.

use kodama_sim::SimClient;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_prints_kubeconfig_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kodama-sim"))
        .args([
            "serve",
            "--fake-kubelet",
            "--start-delay-ms",
            "10",
            "--namespace",
            "demo",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kodama-sim");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("first line");
    let kubeconfig = PathBuf::from(first.trim());
    assert!(
        kubeconfig.is_file(),
        "first stdout line must be the kubeconfig path: {first:?}"
    );
    let dir = kubeconfig.parent().expect("dir").to_path_buf();

    let client = SimClient::from_kubeconfig(&kubeconfig).expect("client");
    let r = client.get("/api/v1/namespaces/demo").expect("get ns");
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["status"]["phase"], "Active");

    // SAFETY: sending SIGTERM to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "kodama-sim did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "data directory {dir:?} not cleaned up");
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    let o = Command::new(env!("CARGO_BIN_EXE_kodama-sim"))
        .args(["serve", "--port", "x"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--port must be a number"));
}
