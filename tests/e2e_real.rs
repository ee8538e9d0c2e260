//! End-to-end scenarios against a real cluster (kind, k3d, minikube, a dev cluster): the curated
//! subset of the simulated-cluster end-to-end tests that needs no fault injection, no request
//! journal and no host paths. Every test is `#[ignore]`d, so `cargo test` never runs them; run them
//! with `./build.sh e2e` (which sets the environment below) or by hand:
//!
//! ```text
//! KODAMA_E2E_KUBECONFIG=~/.kube/config cargo test --test e2e_real -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! - `KODAMA_E2E_KUBECONFIG` (required): the kubeconfig of the cluster (its current context).
//! - `KODAMA_E2E_IMAGE` (default `busybox:1.36`): the session image; it needs `sh`, `tar` and the
//!   usual coreutils. `python3` or busybox `httpd` serves the port-forward scenario.
//! - `KODAMA_E2E_REPO` (optional): a git URL the cluster can clone; enables the `--repo` scenario,
//!   which also needs an image with git (the kodama session image). Without it, that scenario says
//!   SKIPPED on stderr (never silently).
//!
//! Each test creates its own namespace `kodama-e2e-<random>` (refusing to run if it exists) and
//! deletes it at the end, with everything in it. The binary under test runs with a private kodama
//! config directory and HOME, like the simulated-cluster suites (`tests/common/mod.rs`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Out, TempDir};
use kodama::kube::resource::{NAMESPACES, PERSISTENT_VOLUME_CLAIMS, PODS};

/// The cluster under test plus a private kodama environment and a fresh namespace.
struct Real {
    kubeconfig: PathBuf,
    image: String,
    ns: String,
    client: kodama::kube::Client,
    config_dir: TempDir,
    home: TempDir,
    cwd: TempDir,
}

impl Real {
    /// Connects to `KODAMA_E2E_KUBECONFIG` and creates the test namespace; panics (never skips)
    /// when the variable is missing or the namespace cannot be created.
    fn new() -> Real {
        let kubeconfig = PathBuf::from(
            std::env::var("KODAMA_E2E_KUBECONFIG")
                .ok()
                .filter(|s| !s.is_empty())
                .expect("KODAMA_E2E_KUBECONFIG must name the kubeconfig of the cluster to test (see ./build.sh e2e)"),
        );
        assert!(
            kubeconfig.is_file(),
            "KODAMA_E2E_KUBECONFIG={} is not a file",
            kubeconfig.display()
        );
        let image = std::env::var("KODAMA_E2E_IMAGE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "busybox:1.36".to_string());
        let client = kodama::kube::Client::from_overrides(&kodama::kube::Overrides {
            kubeconfig: Some(kubeconfig.clone()),
            ..Default::default()
        })
        .expect("a client for KODAMA_E2E_KUBECONFIG");
        let ns = format!("kodama-e2e-{}", random_suffix());
        let existing = client
            .get_opt(&NAMESPACES, None, &ns)
            .expect("look up the test namespace");
        assert!(
            existing.is_none(),
            "namespace {ns} already exists: refusing to run in it (delete it or run again)"
        );
        client
            .create(
                &NAMESPACES,
                None,
                &serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "labels": {"app.kubernetes.io/created-by": "kodama-e2e"}}}),
            )
            .expect("create the test namespace");
        eprintln!("e2e: namespace {ns}, image {image}");
        let r = Real {
            kubeconfig,
            image,
            ns,
            client,
            config_dir: TempDir::new("realcfg"),
            home: TempDir::new("realhome"),
            cwd: TempDir::new("realcwd"),
        };
        r.write_config();
        r
    }

    fn write_config(&self) {
        let cfg = format!(
            "defaults:\n  namespace: {}\n  image: {}\n  resources:\n    cpu: \"250m\"\n    memory: \"256Mi\"\n  storage:\n    workspace: \"1Gi\"\n    claudeHome: \"1Gi\"\n",
            self.ns, self.image
        );
        common::write(self.config_dir.path(), "config.yaml", &cfg);
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(common::bin());
        c.args(args)
            .current_dir(self.cwd.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KODAMA_CONFIG_DIR", self.config_dir.path())
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str]) -> Out {
        to_out(self.cmd(args).output().expect("run kubectl-kodama"))
    }

    fn run_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().expect("spawn kubectl-kodama");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            let _ = stdin.write_all(input);
        }
        to_out(child.wait_with_output().expect("wait kubectl-kodama"))
    }

    /// `attach NAME --command CMD`: the way these tests look into the pod.
    fn sh(&self, name: &str, command: &str) -> Out {
        self.run(&["attach", name, "--command", command])
    }

    fn pod_exists(&self, name: &str) -> bool {
        self.client
            .get_opt(&PODS, Some(&self.ns), &format!("kodama-{name}"))
            .expect("get pod")
            .is_some()
    }

    /// The session's PVCs that exist and are not being deleted.
    fn live_pvcs(&self, name: &str) -> Vec<String> {
        [
            format!("kodama-workspace-{name}"),
            format!("kodama-claude-home-{name}"),
        ]
        .into_iter()
        .filter(|p| {
            self.client
                .get_opt(&PERSISTENT_VOLUME_CLAIMS, Some(&self.ns), p)
                .expect("get pvc")
                .is_some_and(|v| v["metadata"]["deletionTimestamp"].is_null())
        })
        .collect()
    }

    fn session_file(&self, name: &str) -> PathBuf {
        self.config_dir.join(&format!("sessions/{name}.yaml"))
    }
}

impl Drop for Real {
    fn drop(&mut self) {
        // Deleting the namespace removes every session object; the sync daemons exit once their
        // session files (in config_dir, removed right after) are gone.
        match self.client.delete(
            &NAMESPACES,
            None,
            &self.ns,
            &kodama::kube::request::DeleteOptions::default(),
        ) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return,
            Err(e) => {
                eprintln!(
                    "WARNING: could not delete namespace {}: {e}; delete it with: kubectl delete namespace {}",
                    self.ns, self.ns
                );
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            match self.client.get_opt(&NAMESPACES, None, &self.ns) {
                Ok(None) => return,
                Ok(Some(_)) | Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        eprintln!(
            "WARNING: namespace {} is still terminating after 120s (kubectl get namespace {})",
            self.ns, self.ns
        );
    }
}

fn to_out(out: std::process::Output) -> Out {
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Eight hex digits from the kernel's random source.
fn random_suffix() -> String {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Poll `f` every 250 ms (gentle on a real API server) until true; panics after `secs`.
fn poll(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn list_line(r: &Real, name: &str) -> Option<String> {
    let out = r.run(&["list"]);
    out.ok();
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .map(str::to_string)
}

#[test]
#[ignore = "real cluster: run with ./build.sh e2e and KODAMA_E2E_KUBECONFIG"]
fn real_start_list_attach_status_stop_resume_delete() {
    let r = Real::new();
    let out = r.run(&["start", "life", "--no-sync"]);
    out.ok().stdout_has("session \"life\" is running");
    assert!(r.session_file("life").exists());
    r.run(&["start", "life", "--no-sync"])
        .fails()
        .stderr_has("already exists");

    assert!(
        list_line(&r, "life").expect("listed").contains("Running"),
        "list shows the session Running"
    );
    r.run(&["status", "life"])
        .ok()
        .stdout_has("Session:    life")
        .stdout_has("Status:     Running");
    r.run(&["status", "nosuch"]).fails().stderr_has("not found");

    // attach --command: output, stderr, exit codes and stdin pass through.
    r.sh("life", "pwd; echo to-err >&2")
        .ok()
        .stdout_has("/workspace")
        .stderr_has("to-err");
    r.sh("life", "false").code(1);
    r.sh("life", "echo before; exit 42")
        .code(42)
        .stdout_has("before");
    r.run_stdin(&["attach", "life", "--command", "tr a-z A-Z"], b"hello\n")
        .ok()
        .stdout_has("HELLO");
    r.run(&["attach", "life"])
        .code(2)
        .stderr_has("needs a terminal");

    // stop keeps the volumes; resume brings the workspace back.
    r.sh("life", "echo precious > /workspace/keep.txt").ok();
    r.run(&["stop", "life"]).ok().stdout_has("resume");
    assert!(!r.pod_exists("life"), "stop waits until the pod is gone");
    assert_eq!(r.live_pvcs("life").len(), 2, "stop keeps both PVCs");
    assert!(
        list_line(&r, "life").expect("listed").contains("Stopped"),
        "list shows the session Stopped"
    );
    r.run(&["resume", "life"]).ok();
    r.sh("life", "cat /workspace/keep.txt")
        .ok()
        .stdout_has("precious");
    r.run(&["resume", "life"])
        .ok()
        .stdout_has("already running");

    // delete keeps the PVCs (and says how to remove them); --purge removes them.
    let out = r.run(&["delete", "life"]);
    out.fails().stderr_has("--force");
    r.run(&["delete", "life", "-f"])
        .ok()
        .stdout_has("kodama-workspace-life");
    assert!(!r.session_file("life").exists());
    assert_eq!(
        r.live_pvcs("life").len(),
        2,
        "delete without --purge keeps the PVCs"
    );
    poll("the pod to be gone", 120, || !r.pod_exists("life"));
    r.run(&["delete", "life", "-f"]).ok();
    r.run(&["delete", "life", "-f", "--purge"]).ok();
    assert!(r.live_pvcs("life").is_empty(), "--purge deletes the PVCs");
}

#[test]
#[ignore = "real cluster: run with ./build.sh e2e and KODAMA_E2E_KUBECONFIG"]
fn real_dry_run_creates_nothing() {
    let r = Real::new();
    let out = r.run(&["start", "dry", "--no-sync", "--dry-run"]);
    out.ok();
    for kind in [
        "kind: Pod",
        "kind: PersistentVolumeClaim",
        "kind: ConfigMap",
    ] {
        assert!(out.stdout.contains(kind), "{kind} missing\n{out}");
    }
    let json = r.run(&["start", "dry", "--no-sync", "--dry-run", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.ok().stdout).expect("dry-run JSON");
    assert_eq!(v["kind"], "List");
    assert!(!r.pod_exists("dry"));
    assert!(r.live_pvcs("dry").is_empty());
    assert!(!r.session_file("dry").exists());
}

#[test]
#[ignore = "real cluster: run with ./build.sh e2e and KODAMA_E2E_KUBECONFIG"]
fn real_sync_of_a_local_directory() {
    let r = Real::new();
    let src = TempDir::new("realsync");
    common::write(src.path(), "a.txt", "one\n");
    common::write(src.path(), "sub/b.txt", "bee\n");
    r.run(&["start", "sy", "--sync", src.path().to_str().expect("utf8")])
        .ok();
    // The initial sync happens before start returns.
    r.sh("sy", "cat /workspace/a.txt /workspace/sub/b.txt")
        .ok()
        .stdout_has("one\nbee\n");
    // One explicit pass (it pauses the background sync started by start, then restarts it).
    common::write(src.path(), "a.txt", "two!\n");
    common::write(src.path(), "c.txt", "sea\n");
    r.run(&["sync", "sy", "--once"]).ok().stdout_has("Synced");
    r.sh("sy", "cat /workspace/a.txt /workspace/c.txt")
        .ok()
        .stdout_has("two!\nsea\n");
    // The background sync carries a later edit on its own.
    common::write(src.path(), "d.txt", "dee\n");
    poll("the background sync to copy d.txt", 60, || {
        r.sh("sy", "cat /workspace/d.txt 2>/dev/null")
            .stdout
            .contains("dee")
    });
    r.run(&["delete", "sy", "-f", "--purge"]).ok();
    assert!(r.live_pvcs("sy").is_empty());
}

#[test]
#[ignore = "real cluster: run with ./build.sh e2e and KODAMA_E2E_KUBECONFIG"]
fn real_port_forward_reaches_a_server_in_the_pod() {
    let r = Real::new();
    r.run(&["start", "pf", "--no-sync"]).ok();
    // A free port here is also a fine port in the pod (and the simulator's pods share our network).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    r.sh(
        "pf",
        "mkdir -p /workspace/www && echo hello-from-the-pod > /workspace/www/index.html",
    )
    .ok();
    let server = format!(
        "cd /workspace/www && if command -v python3 >/dev/null 2>&1; then exec python3 -m http.server {port} --bind 127.0.0.1; else exec httpd -f -p 127.0.0.1:{port} -h /workspace/www; fi"
    );
    let mut srv = r
        .cmd(&["attach", "pf", "--command", &server])
        .spawn()
        .expect("start the web server in the pod");
    let mut fwd = r
        .cmd(&["port-forward", "pf", &format!(":{port}")])
        .spawn()
        .expect("start port-forward");
    let mut fout = std::io::BufReader::new(fwd.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut fout, &mut line).expect("read port-forward output");
    let local: u16 = line
        .trim()
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_once(" -> "))
        .and_then(|(l, _)| l.parse().ok())
        .unwrap_or_else(|| panic!("unexpected port-forward output {line:?}"));
    // Until the server listens, connections through the forward end without data.
    let mut body = String::new();
    poll("a page through port-forward", 60, || {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", local)) else {
            return false;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
        if c.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        body.clear();
        let _ = c.read_to_string(&mut body);
        body.contains("hello-from-the-pod")
    });
    assert!(body.starts_with("HTTP/1."), "{body}");
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(fwd.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(st) = fwd.try_wait().expect("wait") {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = fwd.kill();
            panic!("port-forward did not exit after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "port-forward exits 0 on Ctrl-C");
    let _ = srv.kill();
    let _ = srv.wait();
    r.run(&["delete", "pf", "-f", "--purge"]).ok();
}

#[test]
#[ignore = "real cluster: run with ./build.sh e2e and KODAMA_E2E_KUBECONFIG"]
fn real_start_with_a_repo_clones_it() {
    let Some(repo) = std::env::var("KODAMA_E2E_REPO")
        .ok()
        .filter(|s| !s.is_empty())
    else {
        eprintln!(
            "SKIPPED real_start_with_a_repo_clones_it: set KODAMA_E2E_REPO to a git URL the cluster can clone, and KODAMA_E2E_IMAGE to the kodama session image (it needs git)"
        );
        return;
    };
    let r = Real::new();
    r.run(&["start", "rp", "--no-sync", "--repo", &repo]).ok();
    r.sh("rp", "git -C /workspace rev-parse --is-inside-work-tree")
        .ok()
        .stdout_has("true");
    r.run(&["delete", "rp", "-f", "--purge"]).ok();
}
