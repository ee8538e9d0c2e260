//! Shared end-to-end harness: a simulated cluster started in-process, a private kodama config
//! directory and HOME, and a runner for the real `kubectl-kodama` binary with `KUBECONFIG` pointing
//! at the simulated cluster. Tests assert on stdout, stderr, exit code, cluster state (read straight
//! from the simulator's store) and the request journal.
//!
//! Usage:
//! ```ignore
//! mod common;
//! let k = common::Kodama::new();               // fails loudly without root
//! k.write_config("defaults:\n  image: busybox\n");
//! let out = k.run(&["start", "s1", "--no-sync"]);
//! out.ok();                                    // panics with stdout/stderr on failure
//! assert!(k.pod("default", "kodama-s1").is_some());
//! ```
//!
//! Pods of the simulated kubelet run on the host filesystem as uid 1000, so anything a pod must
//! read (bare repositories, fixtures) lives in world-readable directories; [`TempDir`] makes them 0755.
#![allow(dead_code, unused_imports)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use kodama_sim::{JournalEntry, SimCluster, SimOptions, ADMIN_USER, RESTRICTED_USER};
use serde_json::Value;

static N: AtomicUsize = AtomicUsize::new(0);

/// The path of the binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-kodama"))
}

/// The repository's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The fake Claude Code used as `agent.command` in tests.
pub fn fake_agent() -> PathBuf {
    fixtures().join("agent").join("fake-claude")
}

/// Fail loudly (never skip) when the simulated kubelet cannot run pods.
pub fn require_root() {
    // SAFETY-free check: read our effective uid from /proc.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    assert_eq!(
        euid, "0",
        "these end-to-end tests need root (the simulated kubelet creates mount namespaces); CI runs as root"
    );
}

/// A temporary directory (mode 0755, canonical path) removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::os::unix::fs::PermissionsExt;
        let p = std::env::temp_dir().join(format!(
            "kodama-e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        TempDir(std::fs::canonicalize(&p).expect("canonicalize temp dir"))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Write `content` to `root/rel`, creating parents.
pub fn write(root: &Path, rel: &str, content: &str) -> PathBuf {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("mkdir -p");
    }
    std::fs::write(&p, content).expect("write file");
    p
}

/// Poll `f` until it returns true or `secs` pass; panics with `what` on timeout.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What one run of the binary produced.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panic (showing everything) unless the exit code is 0. Returns self for chaining.
    #[track_caller]
    pub fn ok(&self) -> &Out {
        assert_eq!(self.code, 0, "expected success\n{self}");
        self
    }
    /// Panic unless the exit code is `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Out {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }
    /// Panic unless the command failed (non-zero exit).
    #[track_caller]
    pub fn fails(&self) -> &Out {
        assert_ne!(self.code, 0, "expected failure\n{self}");
        self
    }
    /// Panic unless stdout contains `s`.
    #[track_caller]
    pub fn stdout_has(&self, s: &str) -> &Out {
        assert!(self.stdout.contains(s), "stdout lacks {s:?}\n{self}");
        self
    }
    /// Panic unless stderr contains `s`.
    #[track_caller]
    pub fn stderr_has(&self, s: &str) -> &Out {
        assert!(self.stderr.contains(s), "stderr lacks {s:?}\n{self}");
        self
    }
    /// stdout + stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A simulated cluster plus a private kodama environment for running the real binary.
pub struct Kodama {
    pub sim: SimCluster,
    /// `KODAMA_CONFIG_DIR`.
    pub config_dir: TempDir,
    /// `HOME` of the kodama process (so no real ~/.kodama or ~/.gitconfig is read).
    pub home: TempDir,
    /// The working directory of the kodama process.
    pub cwd: TempDir,
    /// Extra environment for every run (`set_env`).
    pub env: Vec<(String, String)>,
    /// The kubeconfig used (admin unless `use_user`).
    pub kubeconfig: PathBuf,
}

impl Kodama {
    /// A fresh cluster (real simulated kubelet, 50 ms start delay) and environment.
    pub fn new() -> Kodama {
        Kodama::with_options(SimOptions {
            start_delay: Duration::from_millis(50),
            provision_delay: Duration::from_millis(20),
            ..SimOptions::default()
        })
    }

    /// A cluster with explicit options.
    pub fn with_options(opts: SimOptions) -> Kodama {
        if opts.kubelet == kodama_sim::KubeletKind::Real {
            require_root();
        }
        let sim = SimCluster::start(opts).expect("start the simulated cluster");
        let kubeconfig = sim.kubeconfig_path();
        Kodama {
            sim,
            config_dir: TempDir::new("cfg"),
            home: TempDir::new("home"),
            cwd: TempDir::new("cwd"),
            env: Vec::new(),
            kubeconfig,
        }
    }

    /// Use another simulated user's kubeconfig (e.g. `RESTRICTED_USER`) from now on.
    pub fn use_user(&mut self, user: &str) {
        self.kubeconfig = self.sim.kubeconfig_for(user).expect("kubeconfig for user");
    }

    /// Add an environment variable to every later run.
    pub fn set_env(&mut self, k: &str, v: &str) {
        self.env.retain(|(n, _)| n != k);
        self.env.push((k.to_string(), v.to_string()));
    }

    /// Write `config.yaml` in the config directory.
    pub fn write_config(&self, yaml: &str) {
        write(self.config_dir.path(), "config.yaml", yaml);
    }

    /// A config that makes sessions fast and hermetic in the simulator: an image name, the fake agent
    /// as `agent.command`, no auto branch prefix surprises. `extra` is appended verbatim.
    pub fn write_test_config(&self, extra: &str) {
        let cfg = format!(
            "defaults:\n  image: sim/kodama-session:test\n  resources:\n    cpu: \"500m\"\n    memory: \"512Mi\"\n  storage:\n    workspace: \"1Gi\"\n    claudeHome: \"100Mi\"\nagent:\n  command: [\"{}\"]\n{extra}",
            fake_agent().display()
        );
        self.write_config(&cfg);
    }

    /// A `Command` for the binary with this environment (stdin null unless changed).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args);
        self.configure(&mut c);
        c
    }

    /// Run the binary on a pseudo-terminal (util-linux `script`), typing `input`; stdout and stderr
    /// both arrive in `Out::stdout` (a terminal merges them), with CR LF line ends.
    pub fn run_tty(&self, args: &[&str], input: &[u8]) -> Out {
        let mut line = shell_quote(&bin().display().to_string());
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let mut c = Command::new("script");
        c.args(["-qec", &line, "/dev/null"]);
        self.configure(&mut c);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().expect("spawn script (util-linux)");
        let mut stdin = child.stdin.take().expect("stdin");
        let _ = stdin.write_all(input);
        let _ = stdin.flush();
        // Keep stdin open until the command ends, so `script` does not hang up early.
        let out = child.wait_with_output().expect("wait script");
        drop(stdin);
        to_out(out)
    }

    fn configure(&self, c: &mut Command) {
        c.current_dir(self.cwd.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KODAMA_CONFIG_DIR", self.config_dir.path())
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            c.env(k, v);
        }
    }

    /// Run the binary to completion with stdin closed.
    pub fn run(&self, args: &[&str]) -> Out {
        let out = self.cmd(args).output().expect("run kubectl-kodama");
        to_out(out)
    }

    /// Run the binary with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Out {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped());
        let mut child = c.spawn().expect("spawn kubectl-kodama");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            let _ = stdin.write_all(input);
        }
        to_out(child.wait_with_output().expect("wait kubectl-kodama"))
    }

    /// An object straight from the simulator's store (`resource` is e.g. "pods",
    /// "persistentvolumeclaims", "configmaps", "secrets").
    pub fn get(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        self.sim.get(resource, ns, name)
    }
    pub fn pod(&self, ns: &str, name: &str) -> Option<Value> {
        self.get("pods", ns, name)
    }
    pub fn pvc(&self, ns: &str, name: &str) -> Option<Value> {
        self.get("persistentvolumeclaims", ns, name)
    }

    /// Names of every kodama-relevant object of session `s` in `ns` that exists right now.
    pub fn session_objects(&self, ns: &str, s: &str) -> Vec<String> {
        let mut v = Vec::new();
        for (res, name) in [
            ("pods", format!("kodama-{s}")),
            ("persistentvolumeclaims", format!("kodama-workspace-{s}")),
            ("persistentvolumeclaims", format!("kodama-claude-home-{s}")),
            ("configmaps", format!("kodama-editor-config-{s}")),
            ("secrets", format!("kodama-env-{s}")),
            ("secrets", format!("kodama-files-{s}")),
        ] {
            if self.get(res, ns, &name).is_some() {
                v.push(format!("{res}/{name}"));
            }
        }
        v
    }

    /// The host directory backing a PVC (the simulator's local provisioner), e.g. to check that
    /// workspace files survive stop/resume.
    pub fn pvc_dir(&self, ns: &str, claim: &str) -> PathBuf {
        self.sim
            .data_dir()
            .join("kubelet")
            .join("pvc")
            .join(ns)
            .join(claim)
    }

    /// Wait until session `s`'s pod is gone from the store.
    pub fn wait_pod_gone(&self, ns: &str, s: &str, secs: u64) {
        let name = format!("kodama-{s}");
        wait_until(&format!("pod {ns}/{name} gone"), secs, || {
            self.pod(ns, &name).is_none()
        });
    }

    /// The session file path.
    pub fn session_file(&self, s: &str) -> PathBuf {
        self.config_dir.join(&format!("sessions/{s}.yaml"))
    }

    /// A kodama API client for this cluster (the current kubeconfig).
    pub fn client(&self) -> kodama::kube::Client {
        kodama::kube::Client::from_overrides(&kodama::kube::Overrides {
            kubeconfig: Some(self.kubeconfig.clone()),
            ..Default::default()
        })
        .expect("kube client for the sim")
    }

    /// Run `argv` in session `s`'s pod (container `session`): (exit code, stdout).
    pub fn exec(&self, ns: &str, s: &str, argv: &[&str]) -> (i32, String) {
        use kodama::remote::Remote;
        let client = self.client();
        let pod = format!("kodama-{s}");
        let r =
            kodama::session::podremote::PodRemote::new(client.clone(), ns, &pod, Some("session"));
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let out = r.run(&argv, b"").expect("exec in pod");
        (out.code, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The request journal.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.sim.journal()
    }

    /// Journal entries whose method is `method` and whose path contains `path_part`.
    pub fn requests(&self, method: &str, path_part: &str) -> Vec<JournalEntry> {
        self.journal()
            .into_iter()
            .filter(|e| e.method == method && e.path.contains(path_part))
            .collect()
    }

    /// Every place (journal entry or file under the config dir, home and cwd) containing `needle`.
    pub fn leaks(&self, needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        for e in self.journal() {
            let text = format!("{} {}?{} {}", e.method, e.path, e.query, e.body_text());
            if text.contains(needle) {
                found.push(format!("journal: {} {}", e.method, e.path));
            }
        }
        for d in [self.config_dir.path(), self.home.path(), self.cwd.path()] {
            found.extend(
                files_containing(d, needle)
                    .into_iter()
                    .map(|p| p.display().to_string()),
            );
        }
        found
    }
}

impl Default for Kodama {
    fn default() -> Self {
        Kodama::new()
    }
}

fn to_out(out: std::process::Output) -> Out {
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every regular file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                if let Ok(b) = std::fs::read(&p) {
                    if b.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        hits.push(p);
                    }
                }
            }
        }
    }
    hits
}

/// Run git with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        // The bare repositories belong to uid 1000 (the pod user); trust them here too (only the
        // global/system config may set safe.directory).
        .env("GIT_CONFIG_GLOBAL", test_gitconfig())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository (world-readable, so pods running as uid 1000 can clone it) with one commit on
/// `main` holding `files` (path, content). Returns the path of the bare repository.
pub fn bare_repo(root: &TempDir, files: &[(&str, &str)]) -> PathBuf {
    let work = root.join("repo-work");
    let bare = root.join("repo.git");
    std::fs::create_dir_all(&work).expect("mkdir work");
    git(&work, &["init", "-q", "-b", "main"]);
    for (p, c) in files {
        write(&work, p, c);
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "initial"]);
    git(
        root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().expect("utf8"),
            bare.to_str().expect("utf8"),
        ],
    );
    // Owned by the pod user (uid 1000): git refuses repositories owned by someone else
    // ("dubious ownership"), also as the source of a local clone.
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&bare)
        .status();
    let _ = Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(&bare)
        .status();
    bare
}

/// A global git config for the tests' own git commands: trusts every directory.
fn test_gitconfig() -> PathBuf {
    let p = std::env::temp_dir().join(format!("kodama-e2e-gitconfig-{}", std::process::id()));
    if !p.exists() {
        let tmp = p.with_extension(format!("tmp{}", N.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&tmp, "[safe]\n\tdirectory = *\n").expect("write test gitconfig");
        let _ = std::fs::rename(&tmp, &p);
    }
    p
}

/// Single-quote `s` for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
