//! kodama's Kubernetes client against the full simulated cluster (HTTPS API server + the real
//! simulated kubelet running pods as processes; needs root, fails loudly without it):
//! `wait_for_pod` on a watch (Ready, image pull failure, unschedulable, deadline; no polling),
//! exec stdin close on v5, a dropped exec stream and an API server restart under a running exec
//! (clear errors, never a hang), upgrade retries after 429/503, credential refresh for streams,
//! logs follow with tailLines/sinceSeconds/timestamps, attach (output, stdinOnce), TTY stdin
//! close, and port-forward closing a connection whose stream cannot start.
//! Exit codes, the 100 MB round trip and TTY resize are in `kube_stream_sim.rs`.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kodama::kube::client::Client;
use kodama::kube::exec::{ExecProcess, ExecRequest};
use kodama::kube::load::{load_with, LoadEnv, Overrides};
use kodama::kube::logs::{stream_logs, LogOptions};
use kodama::kube::resource::PODS;
use kodama::kube::watch::wait_for_pod;
use kodama::kube::ws::codec::Protocol;
use kodama::remote::RemoteProcess;
use kodama_sim::{JournalEntry, SimCluster, SimOptions};
use serde_json::{json, Value};

fn require_root() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "these tests run pods with the simulated kubelet, which needs root (CI runs as root)"
    );
}

fn start(delay_ms: u64) -> (SimCluster, Client) {
    require_root();
    let sim = SimCluster::start(SimOptions {
        start_delay: Duration::from_millis(delay_ms),
        ..SimOptions::default()
    })
    .expect("start the simulated cluster");
    let cfg = load_with(
        &Overrides {
            kubeconfig: Some(sim.kubeconfig_path()),
            ..Overrides::default()
        },
        &LoadEnv::default(),
    )
    .expect("kubeconfig");
    (sim, Client::new(cfg).expect("client"))
}

fn pod(name: &str, containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": containers}})
}

fn sleeper(name: &str) -> Value {
    pod(
        name,
        json!([{"name": "main", "image": "busybox", "command": ["sleep", "300"]}]),
    )
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Pod GETs for `name` that are not watches (a poller would make many of these).
fn plain_pod_gets(j: &[JournalEntry], name: &str) -> usize {
    j.iter()
        .filter(|e| {
            e.method == "GET"
                && e.path.contains("/pods")
                && !e.path.contains("/log")
                && e.query_param("watch").is_none()
                && (e.path.ends_with(&format!("/pods/{name}"))
                    || e.query_param("fieldSelector").as_deref()
                        == Some(&format!("metadata.name={name}")))
        })
        .count()
}

fn pod_watches(j: &[JournalEntry], name: &str) -> usize {
    j.iter()
        .filter(|e| {
            e.method == "GET"
                && e.path.ends_with("/pods")
                && e.query_param("watch").is_some()
                && e.query_param("fieldSelector").as_deref()
                    == Some(&format!("metadata.name={name}"))
        })
        .count()
}

#[test]
fn wait_for_pod_ready_fail_fast_and_deadline_on_a_watch() {
    let (sim, c) = start(400);
    let ns = Some("default");

    // Ready.
    c.create(&PODS, ns, &sleeper("ok")).expect("create ok");
    let mut phases = Vec::new();
    let t = Instant::now();
    let p = wait_for_pod(
        &c,
        "default",
        "ok",
        Instant::now() + Duration::from_secs(30),
        &mut |p| phases.push((p.phase.clone(), p.ready)),
    )
    .expect("ready");
    assert_eq!(p["status"]["phase"], "Running");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "returned before the kubelet started it"
    );
    assert_eq!(phases.last().map(|p| p.1), Some(true), "{phases:?}");
    assert!(
        phases.len() >= 2,
        "progress reported along the way: {phases:?}"
    );
    let j = sim.journal();
    assert!(plain_pod_gets(&j, "ok") <= 1, "polled: {j:?}");
    assert!(pod_watches(&j, "ok") >= 1, "no watch: {j:?}");

    // An image that cannot be pulled fails fast with the reason and the pod's events.
    c.create(
        &PODS,
        ns,
        &pod("badimg", json!([{"name": "main", "image": "registry.example/does-not-exist:1", "command": ["sleep", "300"]}])),
    )
    .expect("create badimg");
    let t = Instant::now();
    let e = wait_for_pod(
        &c,
        "default",
        "badimg",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect_err("image pull must fail");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "not fast: {:?}",
        t.elapsed()
    );
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(
        text.contains("pod \"badimg\" in namespace \"default\""),
        "{text}"
    );
    assert!(
        text.contains("ErrImagePull") || text.contains("ImagePullBackOff"),
        "{text}"
    );
    assert!(text.contains("does-not-exist"), "{text}");
    assert!(text.contains("hint:"), "{text}");

    // Requests above the node's capacity (4 CPUs) → Unschedulable, with the scheduler's words.
    c.create(
        &PODS,
        ns,
        &pod(
            "huge",
            json!([{"name": "main", "image": "busybox", "command": ["sleep", "300"],
            "resources": {"requests": {"cpu": "64"}}}]),
        ),
    )
    .expect("create huge");
    let t = Instant::now();
    let e = wait_for_pod(
        &c,
        "default",
        "huge",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect_err("unschedulable must fail");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "not fast: {:?}",
        t.elapsed()
    );
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(text.contains("Unschedulable"), "{text}");
    assert!(text.contains("Insufficient cpu"), "{text}");

    // A missing Secret → CreateContainerConfigError, at once, with the kubelet's message.
    c.create(
        &PODS,
        ns,
        &pod("nosecret", json!([{"name": "main", "image": "busybox", "command": ["sleep", "300"],
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "t"}}}]}])),
    )
    .expect("create nosecret");
    let e = wait_for_pod(
        &c,
        "default",
        "nosecret",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect_err("config error must fail");
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(text.contains("CreateContainerConfigError"), "{text}");
    assert!(text.contains("secret \"absent\" not found"), "{text}");
    // A pod that stays in its init container: the deadline ends the wait, with where it stuck.
    let mut slow = sleeper("slow");
    slow["spec"]["initContainers"] =
        json!([{"name": "init", "image": "busybox", "command": ["sleep", "60"]}]);
    c.create(&PODS, ns, &slow).expect("create slow");
    sim.clear_journal();
    let t = Instant::now();
    let e = wait_for_pod(
        &c,
        "default",
        "slow",
        Instant::now() + Duration::from_millis(2500),
        &mut |_| {},
    )
    .expect_err("deadline");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2400) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(
        text.contains("did not become ready before the deadline"),
        "{text}"
    );
    assert!(text.contains("Pending"), "{text}");
    // 2.5 s of waiting: one list, then a watch; no stream of GETs.
    let j = sim.journal();
    assert!(plain_pod_gets(&j, "slow") <= 1, "polled: {j:?}");
    assert!(pod_watches(&j, "slow") >= 1, "no watch: {j:?}");
}

fn ready_box(sim: &SimCluster, c: &Client, name: &str) {
    c.create(&PODS, Some("default"), &sleeper(name))
        .expect("create pod");
    wait_for_pod(
        c,
        "default",
        name,
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect("pod ready");
    assert!(sim.get("pods", "default", name).is_some());
}

/// Runs `f` on a thread and fails the test if it does not finish within `limit` (a hang).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} hung for more than {limit:?}"))
}

#[test]
fn exec_stdin_close_dropped_stream_and_api_restart() {
    let (sim, c) = start(50);
    ready_box(&sim, &c, "box");

    // Every argv element arrives intact (own percent-encoded `command=` parameter).
    let weird = "a&command=b; $(id) ünï\t'\"%2F+x";
    let mut r = ExecRequest::new(
        "default",
        "box",
        &argv(&["sh", "-c", "printf %s \"$1\"", "_", weird]),
    );
    r.stdin = false;
    let mut p = ExecProcess::spawn(&c, &r).expect("exec printf");
    let mut s = String::new();
    p.take_stdout()
        .expect("stdout")
        .read_to_string(&mut s)
        .expect("read");
    assert_eq!(s, weird);
    assert_eq!(p.wait_code().expect("code"), 0);

    // v5 stdin close: `cat` sees EOF and ends.
    let mut p = ExecProcess::spawn(&c, &ExecRequest::new("default", "box", &argv(&["cat"])))
        .expect("exec cat");
    assert_eq!(p.protocol(), Protocol::V5);
    let mut stdin = p.take_stdin().expect("stdin");
    let mut stdout = p.take_stdout().expect("stdout");
    let out = within(
        Duration::from_secs(20),
        "cat after stdin close",
        move || {
            stdin.write_all(b"one\0two\n").expect("write");
            drop(stdin);
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).expect("read");
            (out, p.wait_code())
        },
    );
    assert_eq!(out.0, b"one\0two\n");
    assert_eq!(out.1.expect("exit code"), 0);

    // A stream cut by the network after a few KB: a clear error, not a hang, not success.
    sim.faults().drop_stream_after("/exec", 4096);
    let mut r = ExecRequest::new(
        "default",
        "box",
        &argv(&[
            "sh",
            "-c",
            "head -c 200000 /dev/zero | tr '\\0' x; sleep 30",
        ]),
    );
    r.stdin = false;
    let mut p = ExecProcess::spawn(&c, &r).expect("exec");
    let mut stdout = p.take_stdout().expect("stdout");
    let t = Instant::now();
    let (n, code) = within(
        Duration::from_secs(20),
        "a dropped exec stream",
        move || {
            let mut buf = Vec::new();
            let _ = stdout.read_to_end(&mut buf);
            (buf.len(), p.wait_code())
        },
    );
    assert!(n < 200_000, "got all {n} bytes despite the drop");
    let e = code.expect_err("a dropped stream is not a success");
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(
        text.contains("without reporting an exit status") || text.contains("closed"),
        "{text}"
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    sim.faults().clear();

    // The API server restarts under a long exec: a clear error; then a new exec works.
    let mut r = ExecRequest::new(
        "default",
        "box",
        &argv(&["sh", "-c", "echo started; sleep 60"]),
    );
    r.stdin = false;
    let mut p = ExecProcess::spawn(&c, &r).expect("exec long");
    let mut stdout = p.take_stdout().expect("stdout");
    let mut first = [0u8; 8];
    stdout.read_exact(&mut first).expect("started");
    assert_eq!(&first, b"started\n");
    sim.restart_api().expect("restart the API server");
    let t = Instant::now();
    let code = within(
        Duration::from_secs(20),
        "exec across an API restart",
        move || {
            let mut rest = Vec::new();
            let _ = stdout.read_to_end(&mut rest);
            p.wait_code()
        },
    );
    let e = code.expect_err("the stream died with the API server");
    eprintln!("{}\n---", e.render());
    assert!(!e.render().is_empty());
    assert!(t.elapsed() < Duration::from_secs(15));
    let mut r = ExecRequest::new("default", "box", &argv(&["sh", "-c", "echo again; exit 7"]));
    r.stdin = false;
    let mut p = ExecProcess::spawn(&c, &r).expect("exec after restart");
    let mut out = String::new();
    p.take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert_eq!(out, "again\n");
    assert_eq!(p.wait_code().expect("code"), 7);
    // REST works again too (the kept-alive connection died with the old server).
    c.get(&PODS, Some("default"), "box")
        .expect("get after restart");
}

fn logs(c: &Client, o: &LogOptions) -> String {
    let mut out = Vec::new();
    stream_logs(c, "default", "talker", o, &mut out).expect("logs");
    String::from_utf8(out).expect("utf-8 logs")
}

/// A writer other threads can read while `stream_logs` is still writing.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("buffer")).into_owned()
    }
}

fn is_rfc3339_prefixed(line: &str) -> bool {
    let ts = line.split(' ').next().unwrap_or("");
    ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.as_bytes()[10] == b'T' && ts.ends_with('Z')
}

#[test]
fn logs_follow_with_tail_since_and_timestamps() {
    let (sim, c) = start(50);
    let gate = sim.data_dir().join("logs-gate");
    let script = format!(
        "for i in 1 2 3 4 5; do echo line-$i; done; while [ ! -e {g} ]; do sleep 0.05; done; echo after-gate",
        g = gate.display()
    );
    c.create(
        &PODS,
        Some("default"),
        &pod(
            "talker",
            json!([{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]),
        ),
    )
    .expect("create talker");
    wait_for_pod(
        &c,
        "default",
        "talker",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect("ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs(&c, &LogOptions::default()).contains("line-5") {
        assert!(Instant::now() < deadline, "no logs");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen_at = Instant::now();

    // Follow the last 2 lines with timestamps; it ends when the container ends.
    let buf = Shared::default();
    let mut w = buf.clone();
    let c2 = c.clone();
    let h = std::thread::spawn(move || {
        let o = LogOptions {
            follow: true,
            tail_lines: Some(2),
            timestamps: true,
            ..LogOptions::default()
        };
        stream_logs(&c2, "default", "talker", &o, &mut w)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !buf.text().contains("line-5") {
        assert!(
            Instant::now() < deadline,
            "follow printed nothing: {:?}",
            buf.text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!buf.text().contains("after-gate"));
    // Lines 1-5 must be more than 2 s old for the sinceSeconds check below.
    while seen_at.elapsed() < Duration::from_millis(2300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    write_gate(&gate);
    within(
        Duration::from_secs(20),
        "logs follow after the container ended",
        move || h.join().expect("follow thread"),
    )
    .expect("follow ended cleanly");
    let text = buf.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    assert!(lines.iter().all(|l| is_rfc3339_prefixed(l)), "{text:?}");
    assert!(
        lines[0].ends_with(" line-4") && lines[1].ends_with(" line-5"),
        "{text:?}"
    );
    assert!(lines[2].ends_with(" after-gate"), "{text:?}");
    let req = sim
        .journal()
        .into_iter()
        .find(|e| e.path.ends_with("/talker/log") && e.query_param("follow").is_some())
        .expect("follow request");
    assert_eq!(req.query_param("follow").as_deref(), Some("true"));
    assert_eq!(req.query_param("tailLines").as_deref(), Some("2"));
    assert_eq!(req.query_param("timestamps").as_deref(), Some("true"));

    // sinceSeconds=2: only the line written after the gate, without timestamps.
    let recent = logs(
        &c,
        &LogOptions {
            since_seconds: Some(2),
            ..LogOptions::default()
        },
    );
    assert_eq!(recent, "after-gate\n");
    let all = logs(&c, &LogOptions::default());
    assert_eq!(all, "line-1\nline-2\nline-3\nline-4\nline-5\nafter-gate\n");

    // A follow cut by an API server restart is an error, never a silent end of the logs.
    c.create(
        &PODS,
        Some("default"),
        &pod("chatty", json!([{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hi; sleep 300"]}])),
    )
    .expect("create chatty");
    wait_for_pod(
        &c,
        "default",
        "chatty",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect("ready");
    let buf = Shared::default();
    let mut w = buf.clone();
    let c2 = c.clone();
    let h = std::thread::spawn(move || {
        let o = LogOptions {
            follow: true,
            wait_for_start: Duration::from_secs(10),
            ..LogOptions::default()
        };
        stream_logs(&c2, "default", "chatty", &o, &mut w)
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !buf.text().contains("hi") {
        assert!(Instant::now() < deadline, "follow printed nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    sim.restart_api().expect("restart");
    let r = within(
        Duration::from_secs(20),
        "follow across a restart",
        move || h.join().expect("follow thread"),
    );
    let e = r.expect_err("a cut follow is an error");
    assert!(
        e.render().contains("the log stream broke"),
        "{}",
        e.render()
    );
}

fn write_gate(p: &Path) {
    std::fs::write(p, b"go").expect("gate");
}

#[test]
fn exec_and_logs_refresh_credentials_after_rotation() {
    let (sim, admin) = start(50);
    ready_box(&sim, &admin, "box");
    // A client whose token comes from a token file (re-read after a 401).
    use base64::Engine;
    let kc = sim.data_dir().join("tokenfile-kubeconfig.json");
    let cfg = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "sim", "cluster": {"server": sim.server_url(),
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(sim.ca_pem())}}],
        "users": [{"name": "u", "user": {"tokenFile": sim.token_file_for(kodama_sim::ADMIN_USER).display().to_string()}}],
        "contexts": [{"name": "c", "context": {"cluster": "sim", "user": "u"}}],
        "current-context": "c",
    });
    std::fs::write(&kc, cfg.to_string()).expect("kubeconfig");
    let c = Client::new(
        load_with(
            &Overrides {
                kubeconfig: Some(kc),
                ..Overrides::default()
            },
            &LoadEnv::default(),
        )
        .expect("load"),
    )
    .expect("client");
    c.get(&PODS, Some("default"), "box")
        .expect("cache the token");
    sim.faults()
        .rotate_token(kodama_sim::ADMIN_USER)
        .expect("rotate");
    sim.clear_journal();
    let mut r = ExecRequest::new("default", "box", &argv(&["echo", "hi"]));
    r.stdin = false;
    let mut p = ExecProcess::spawn(&c, &r).expect("exec after rotation");
    let mut out = String::new();
    p.take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert_eq!(out, "hi\n");
    assert_eq!(p.wait_code().expect("code"), 0);
    let execs: Vec<u16> = sim
        .journal()
        .iter()
        .filter(|e| e.path.ends_with("/box/exec"))
        .map(|e| e.code)
        .collect();
    assert_eq!(execs, vec![401, 101]);

    sim.faults()
        .rotate_token(kodama_sim::ADMIN_USER)
        .expect("rotate again");
    let mut out = Vec::new();
    stream_logs(&c, "default", "box", &LogOptions::default(), &mut out)
        .expect("logs after rotation");
}

#[test]
fn exec_errors_name_the_denied_permission_and_say_things_once() {
    let (sim, admin) = start(50);
    ready_box(&sim, &admin, "box");
    // The restricted user may not exec outside its namespace: the hint names the permission the
    // API server checked (get pods/exec), so the suggested `kubectl auth can-i` is the right one.
    let r = Client::new(
        load_with(
            &Overrides {
                kubeconfig: Some(
                    sim.kubeconfig_for(kodama_sim::RESTRICTED_USER)
                        .expect("restricted kubeconfig"),
                ),
                ..Overrides::default()
            },
            &LoadEnv::default(),
        )
        .expect("load"),
    )
    .expect("client");
    let mut req = ExecRequest::new("default", "box", &argv(&["true"]));
    req.stdin = false;
    let e = ExecProcess::spawn(&r, &req).err().expect("403");
    let text = e.render();
    eprintln!("{text}\n---");
    assert_eq!(e.api().map(|a| a.code), Some(403), "{text}");
    assert!(text.contains("cannot get resource \"pods/exec\""), "{text}");
    assert!(
        text.contains("hint: you may not get pods/exec in namespace \"default\"")
            && text.contains("kubectl auth can-i get pods/exec -n default"),
        "{text}"
    );
    // A command that does not exist: the server's message once, not repeated as a cause.
    let mut req = ExecRequest::new("default", "box", &argv(&["no-such-binary-xyz"]));
    req.stdin = false;
    let e = ExecProcess::spawn(&admin, &req)
        .and_then(|p| p.wait_code())
        .expect_err("missing binary");
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(text.contains("no-such-binary-xyz"), "{text}");
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
}

#[test]
fn exec_upgrade_retried_after_throttling_never_after_500() {
    let (sim, c) = start(50);
    ready_box(&sim, &c, "box");
    let run = || {
        let mut r = ExecRequest::new("default", "box", &argv(&["echo", "ran"]));
        r.stdin = false;
        let mut p = ExecProcess::spawn(&c, &r)?;
        let mut s = String::new();
        p.take_stdout()
            .expect("stdout")
            .read_to_string(&mut s)
            .expect("read");
        p.wait_code().map(|code| (code, s))
    };
    let execs = |sim: &SimCluster| -> Vec<u16> {
        sim.journal()
            .iter()
            .filter(|e| e.path.ends_with("/box/exec"))
            .map(|e| e.code)
            .collect()
    };
    // 503 twice: refused before anything started, so sent again with backoff.
    sim.clear_journal();
    sim.faults().fail_next(None, "/exec", 2, 503);
    assert_eq!(run().expect("exec after 503s"), (0, "ran\n".to_string()));
    assert_eq!(execs(&sim), vec![503, 503, 101]);
    // 429 with Retry-After: 1 is honoured.
    sim.clear_journal();
    sim.faults().throttle_next(None, "/exec", 1, 1);
    let t = Instant::now();
    assert_eq!(run().expect("exec after 429"), (0, "ran\n".to_string()));
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(execs(&sim), vec![429, 101]);
    // A 500 before the upgrade is a definite answer: one request, the server's message.
    sim.clear_journal();
    sim.faults().fail_next(None, "/exec", 1, 500);
    let e = run().expect_err("500");
    assert_eq!(e.api().map(|a| a.code), Some(500), "{e}");
    assert_eq!(execs(&sim), vec![500]);
}

#[test]
fn port_forward_closes_a_local_connection_whose_stream_cannot_start() {
    use kodama::kube::portforward::{PortForwarder, PortMapping};
    let (sim, c) = start(50);
    let py = "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('127.0.0.1',18093));s.listen(8)\nwhile True:\n  c,_=s.accept();d=c.recv(100);c.sendall(b'echo:'+d);c.close()\n";
    c.create(
        &PODS,
        Some("default"),
        &pod(
            "web",
            json!([{"name": "main", "image": "python", "command": ["python3", "-c", py]}]),
        ),
    )
    .expect("create web");
    wait_for_pod(
        &c,
        "default",
        "web",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect("web ready");
    let msgs = Arc::new(Mutex::new(Vec::<String>::new()));
    let m2 = Arc::clone(&msgs);
    let fwd = PortForwarder::start(
        Arc::new(c.clone()),
        "default",
        "web",
        &[PortMapping {
            local: 0,
            remote: 18093,
        }],
        Arc::new(move |s: &str| m2.lock().expect("messages").push(s.to_string())),
    )
    .expect("port-forward");
    let addr = fwd.bound()[0].1[0];
    let echo = |tag: &str| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(tag.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    // The pod's server may need a moment to listen.
    let deadline = Instant::now() + Duration::from_secs(20);
    while echo("a").ok().as_deref() != Some("echo:a") {
        assert!(
            Instant::now() < deadline,
            "port-forward never worked: {:?}",
            msgs.lock()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The upgrade fails (500 from the API server): the local connection is closed at once and
    // the error is reported; no hang until some later connection.
    sim.faults().fail_next(None, "/portforward", 1, 500);
    let before = msgs.lock().expect("messages").len();
    let t = Instant::now();
    let r = echo("b");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "local connection left hanging: {r:?}"
    );
    assert!(!matches!(&r, Ok(s) if s == "echo:b"), "{r:?}");
    // Reported before the local connection is closed.
    let reported = msgs.lock().expect("messages")[before..].join("\n");
    assert!(reported.contains("500"), "{reported}");
    // The listener keeps serving.
    assert_eq!(echo("c").expect("next connection"), "echo:c");
    fwd.stop();
}

#[test]
fn attach_follows_a_running_container_until_it_ends() {
    use kodama::kube::attach::{attach_on, AttachRequest};
    use kodama::kube::exec::TerminalIo;
    use kodama::kube::ws::session::SessionConfig;
    use std::io::BufRead;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    let (sim, c) = start(50);
    let gate = sim.data_dir().join("attach-gate");
    let script = format!(
        "while [ ! -e {g} ]; do echo tick; sleep 0.05; done; echo bye; exit 0",
        g = gate.display()
    );
    c.create(
        &PODS,
        Some("default"),
        &pod(
            "att",
            json!([{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}]),
        ),
    )
    .expect("create att");
    wait_for_pod(
        &c,
        "default",
        "att",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect("ready");
    let (out_w, out_r) = UnixStream::pair().expect("pair");
    let (err_w, _err_r) = UnixStream::pair().expect("pair");
    let (in_r, _in_w) = UnixStream::pair().expect("pair");
    let c2 = c.clone();
    let h = std::thread::spawn(move || {
        let io = TerminalIo {
            input: in_r.as_raw_fd(),
            output: out_w.as_raw_fd(),
            error: err_w.as_raw_fd(),
        };
        let req = AttachRequest {
            namespace: "default".into(),
            pod: "att".into(),
            container: Some("main".into()),
            stdin: false,
            tty: false,
        };
        let r = attach_on(&c2, &req, io, SessionConfig::default());
        drop((out_w, err_w, in_r));
        r
    });
    out_r
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut lines = std::io::BufReader::new(out_r).lines();
    let first = lines.next().expect("a line").expect("read");
    assert_eq!(first, "tick");
    write_gate(&gate);
    let rest: Vec<String> = lines.map(|l| l.expect("read")).collect();
    assert_eq!(rest.last().map(String::as_str), Some("bye"), "{rest:?}");
    let code = within(
        Duration::from_secs(20),
        "attach after the container ended",
        move || h.join().expect("attach thread"),
    );
    assert_eq!(code.expect("attach"), 0);
    let j = sim.journal();
    assert!(
        j.iter()
            .any(|e| e.path.ends_with("/att/attach") && e.code == 101),
        "{j:?}"
    );
}

#[test]
fn attach_stdin_once_and_tty_exec_stdin_close() {
    use kodama::kube::attach::{attach_on, AttachRequest};
    use kodama::kube::exec::TerminalIo;
    use kodama::kube::ws::session::SessionConfig;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    let (sim, c) = start(50);
    // Attach with stdin to a container with stdin + stdinOnce: closing our input closes the
    // container's stdin (v5), so its `cat` ends and the container with it.
    let mut p = pod(
        "cat",
        json!([{"name": "main", "image": "busybox", "stdin": true, "stdinOnce": true,
            "command": ["sh", "-c", "cat; echo cat-ended"]}]),
    );
    p["spec"]["restartPolicy"] = json!("Never");
    c.create(&PODS, Some("default"), &p).expect("create cat");
    wait_for_pod(
        &c,
        "default",
        "cat",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect("ready");
    let (out_w, mut out_r) = UnixStream::pair().expect("pair");
    let (err_w, _err_r) = UnixStream::pair().expect("pair");
    let (in_r, mut in_w) = UnixStream::pair().expect("pair");
    in_w.write_all(b"hello\n").expect("write input");
    drop(in_w);
    let c2 = c.clone();
    let h = std::thread::spawn(move || {
        let io = TerminalIo {
            input: in_r.as_raw_fd(),
            output: out_w.as_raw_fd(),
            error: err_w.as_raw_fd(),
        };
        let req = AttachRequest {
            namespace: "default".into(),
            pod: "cat".into(),
            container: None,
            stdin: true,
            tty: false,
        };
        let r = attach_on(&c2, &req, io, SessionConfig::default());
        drop((out_w, err_w, in_r));
        r
    });
    out_r
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut out = String::new();
    out_r.read_to_string(&mut out).expect("attach output");
    assert_eq!(out, "hello\ncat-ended\n");
    let code = within(Duration::from_secs(20), "attach", move || {
        h.join().expect("attach thread")
    });
    assert_eq!(code.expect("attach"), 0);

    // TTY exec: closing stdin sends ^D, so `cat` on the pty ends too.
    ready_box(&sim, &c, "box");
    let mut r = ExecRequest::new("default", "box", &argv(&["cat"]));
    r.tty = true;
    let mut p = ExecProcess::spawn(&c, &r).expect("exec tty cat");
    let mut stdin = p.take_stdin().expect("stdin");
    let mut stdout = p.take_stdout().expect("stdout");
    let (out, code) = within(
        Duration::from_secs(20),
        "tty cat after stdin close",
        move || {
            stdin.write_all(b"typed\n").expect("write");
            drop(stdin);
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).expect("read");
            (out, p.wait_code())
        },
    );
    // The pty echoes the line, then cat prints it.
    assert_eq!(String::from_utf8_lossy(&out), "typed\r\ntyped\r\n");
    assert_eq!(code.expect("exit code"), 0);
}

#[test]
fn creating_in_a_terminating_namespace_says_so() {
    use kodama::kube::request::DeleteOptions;
    use kodama::kube::resource::{CONFIG_MAPS, NAMESPACES};
    let (_sim, c) = start(50);
    c.create(
        &NAMESPACES,
        None,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}),
    )
    .expect("create namespace");
    // A pod that ignores SIGTERM keeps the namespace Terminating for its grace period.
    let mut p = pod(
        "stubborn",
        json!([{"name": "main", "image": "busybox",
            "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}]),
    );
    p["spec"]["terminationGracePeriodSeconds"] = json!(60);
    c.create(&PODS, Some("doomed"), &p).expect("create pod");
    wait_for_pod(
        &c,
        "doomed",
        "stubborn",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect("ready");
    c.delete(&NAMESPACES, None, "doomed", &DeleteOptions::default())
        .expect("delete namespace");
    let e = c
        .create(
            &CONFIG_MAPS,
            Some("doomed"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}),
        )
        .expect_err("terminating namespace");
    let text = e.render();
    eprintln!("{text}\n---");
    assert_eq!(e.api().map(|a| a.code), Some(403), "{text}");
    assert!(
        text.contains("hint: namespace \"doomed\" is being deleted"),
        "{text}"
    );
}

#[test]
fn keepalive_pings_keep_a_silent_exec_alive() {
    use kodama::kube::ws::session::SessionConfig;
    let (sim, c) = start(50);
    ready_box(&sim, &c, "box");
    // Silent for 1.5 s, with a 600 ms silence limit: only the kubelet's pongs to our 100 ms
    // pings keep the session alive.
    let cfg = SessionConfig {
        ping_interval: Duration::from_millis(100),
        silence_limit: Duration::from_millis(600),
        ..SessionConfig::default()
    };
    let mut r = ExecRequest::new(
        "default",
        "box",
        &argv(&["sh", "-c", "sleep 1.5; echo woke"]),
    );
    r.stdin = false;
    let mut p = ExecProcess::spawn_with(&c, &r, cfg.clone()).expect("exec");
    let mut out = String::new();
    p.take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert_eq!(out, "woke\n");
    assert_eq!(p.wait_code().expect("code"), 0);
    // Without pings the same silence fails clearly instead of hanging.
    let quiet = SessionConfig {
        ping_interval: Duration::from_secs(3600),
        ..cfg
    };
    let mut p = ExecProcess::spawn_with(&c, &r, quiet).expect("exec");
    let mut stdout = p.take_stdout().expect("stdout");
    let e = within(
        Duration::from_secs(10),
        "a silent exec without pings",
        move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            p.wait_code()
        },
    )
    .expect_err("silence limit");
    assert!(
        e.render().contains("no data and no answer to pings"),
        "{}",
        e.render()
    );
}

#[test]
fn logs_wait_for_a_starting_container_with_backoff() {
    let (sim, c) = start(1000);
    c.create(
        &PODS,
        Some("default"),
        &pod("late", json!([{"name": "a", "image": "busybox", "command": ["sh", "-c", "echo from-a; sleep 300"]},
            {"name": "b", "image": "busybox", "command": ["sleep", "300"]}])),
    )
    .expect("create");
    // Asked while the containers are still being created: retried until they run.
    let mut out = Vec::new();
    stream_logs(
        &c,
        "default",
        "late",
        &LogOptions {
            container: Some("a".into()),
            wait_for_start: Duration::from_secs(20),
            ..LogOptions::default()
        },
        &mut out,
    )
    .expect("logs once started");
    assert_eq!(String::from_utf8_lossy(&out), "from-a\n");
    let tries: Vec<JournalEntry> = sim
        .journal()
        .into_iter()
        .filter(|e| e.path.ends_with("/late/log"))
        .collect();
    assert_eq!(tries.last().map(|e| e.code), Some(200));
    assert!(
        tries.len() >= 2 && tries.len() <= 8,
        "{} tries",
        tries.len()
    );
    assert!(tries
        .iter()
        .all(|e| e.query_param("container").as_deref() == Some("a")));
    // Two containers and none named: the server's choice list reaches the user.
    let e = stream_logs(
        &c,
        "default",
        "late",
        &LogOptions::default(),
        &mut Vec::new(),
    )
    .expect_err("container required");
    assert!(
        e.render().contains("choose one of: [a b]"),
        "{}",
        e.render()
    );
}
