//! Agent runs end to end without a cluster: `LocalRemote` stands in for the pod, temp dirs for
//! /workspace and the claude home, and fixtures/agent/fake-claude for Claude Code.
//!
//! The in-pod runner is kodama's own `run-agent` subcommand, run from the real binary.

use kodama::remote::{LocalRemote, Remote, RemoteProcess};
use kodama::run::records::{self, Access, FollowOpts, StartRequest};
use kodama::run::{RunMeta, RunStatus};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct Pod {
    root: PathBuf,
    home: PathBuf,
    ws: PathBuf,
    remote: LocalRemote,
}

impl Pod {
    fn new(extra_env: &[(&str, &str)]) -> Pod {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("kodama-run-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let home = root.join("home/.claude");
        let ws = root.join("workspace");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&ws).expect("ws");
        let mut env: Vec<(String, String)> = vec![
            (
                "FAKE_CLAUDE_PROMPT_OUT".into(),
                root.join("prompt.out").to_string_lossy().into(),
            ),
            (
                "FAKE_CLAUDE_ARGS_OUT".into(),
                root.join("args.out").to_string_lossy().into(),
            ),
        ];
        for (k, v) in extra_env {
            env.push((k.to_string(), v.to_string()));
        }
        Pod {
            remote: LocalRemote { cwd: None, env },
            root,
            home,
            ws,
        }
    }

    fn req(&self) -> StartRequest {
        let mut r = StartRequest::new(self.home.to_string_lossy());
        r.workspace = self.ws.to_string_lossy().into();
        r.command = vec![fixture("fake-claude").to_string_lossy().into()];
        r.kill_grace_secs = 1;
        r
    }

    fn bin() -> Access {
        Access::Binary(env!("CARGO_BIN_EXE_kubectl-kodama").into())
    }

    fn home(&self) -> String {
        self.home.to_string_lossy().into()
    }

    /// Follow the run to its end (the runner's follow returns once the run has ended) and return
    /// the lines and the final record.
    fn wait_done(&self, access: &Access, id: &str) -> (Vec<Vec<u8>>, RunMeta) {
        let mut lines = Vec::new();
        records::follow(
            &self.remote,
            access,
            &self.home(),
            id,
            0,
            &FollowOpts::default(),
            &mut |l| {
                lines.push(l.to_vec());
                Ok(())
            },
        )
        .expect("follow");
        let m = records::run_status(&self.remote, access, &self.home(), Some(id))
            .expect("status")
            .expect("run");
        (lines, m)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/agent")
        .join(name)
}

const NASTY_PROMPT: &[u8] =
    "Fix the 'auth' \"timeout\" bug: $(rm -rf /) `id` $HOME \\n ; | & > x\n\
日本語のテキスト — émoji 🦀\n\ttabs and trailing spaces   \n\n-- --continue -p\n"
        .as_bytes();

#[test]
fn prompt_arrives_byte_identical_and_the_run_succeeds_with_its_result() {
    let pod = Pod::new(&[]);
    let access = Pod::bin();
    let id = records::start_run(&pod.remote, &access, &pod.req(), NASTY_PROMPT).expect("start");
    let (lines, m) = pod.wait_done(&access, &id);
    assert_eq!(
        std::fs::read(pod.root.join("prompt.out")).expect("prompt.out"),
        NASTY_PROMPT
    );
    let run_dir = pod.home.join("kodama/runs").join(&id);
    assert_eq!(
        std::fs::read(run_dir.join("prompt.txt")).expect("prompt.txt"),
        NASTY_PROMPT
    );
    assert_eq!(m.status, RunStatus::Succeeded, "{m:?}");
    assert_eq!(m.exit_code, Some(0));
    assert_eq!(m.prompt_bytes, NASTY_PROMPT.len() as u64);
    assert_eq!(m.prompt_sha256, kodama::run::sha256_hex(NASTY_PROMPT));
    assert!(m.prompt_first_line.starts_with("Fix the 'auth'"));
    assert!(m.ended_at.is_some());
    let r = m.result.expect("result");
    assert_eq!(r.cost, Some(0.0421));
    assert_eq!(r.turns, Some(3));
    assert_eq!(r.duration_ms, Some(8123));
    let want = std::fs::read(fixture("basic.jsonl")).expect("fixture");
    assert_eq!(lines.concat(), want);
    assert_eq!(
        std::fs::read(run_dir.join("transcript.jsonl")).expect("t"),
        want
    );
    // The args file shows no --continue for a first run, and the lock is released.
    let args = std::fs::read_to_string(pod.root.join("args.out")).expect("args");
    assert!(!args.contains("--continue"));
    assert!(!pod.home.join("kodama/runs/current").exists());
    let rendered = kodama::run::transcript::render_all(
        &records::read_transcript(&pod.remote, &pod.home(), &id).expect("cat"),
        false,
        Default::default(),
    );
    assert!(rendered.contains("[init] model claude-sonnet-4-5-20250929, cwd /workspace"));
    assert!(rendered.contains("→ Bash ls -la"));
    assert!(rendered.contains("← Read error\n  File does not exist."));
    assert!(rendered.contains("[result] success · 3 turns · 8.1s · $0.0421"));
    let mut shown = Vec::new();
    let m = records::logs(
        &pod.remote,
        &access,
        &pod.home(),
        None,
        false,
        false,
        &mut shown,
    )
    .expect("logs");
    assert_eq!(m.id, id);
    let shown = String::from_utf8(shown).expect("utf8");
    assert_eq!(shown, rendered);
    let mut raw = Vec::new();
    records::logs(
        &pod.remote,
        &access,
        &pod.home(),
        Some(&id),
        true,
        true,
        &mut raw,
    )
    .expect("logs -f --raw");
    assert_eq!(raw, std::fs::read(fixture("basic.jsonl")).expect("fixture"));
    // list and the AGENT column.
    let all = records::list_runs(&pod.remote, &access, &pod.home()).expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(records::agent_column(all.first()), "succeeded");
}

#[test]
fn exit_codes_and_error_results_are_recorded_as_failures() {
    let pod = Pod::new(&[("FAKE_CLAUDE_EXIT", "3")]);
    let access = Pod::bin();
    let id = records::start_run(&pod.remote, &access, &pod.req(), b"x").expect("start");
    let (_, m) = pod.wait_done(&access, &id);
    assert_eq!(m.status, RunStatus::Failed);
    assert_eq!(m.exit_code, Some(3));
    assert_eq!(m.reason.as_deref(), Some("the agent exited with code 3"));

    let err = fixture("error.jsonl");
    let pod = Pod::new(&[("FAKE_CLAUDE_TRANSCRIPT", &err.to_string_lossy())]);
    let id = records::start_run(&pod.remote, &access, &pod.req(), b"x").expect("start");
    let (_, m) = pod.wait_done(&access, &id);
    assert_eq!(m.status, RunStatus::Failed);
    assert!(m.result.expect("result").is_error);
}

#[test]
fn watchdog_stops_an_agent_that_hangs_after_its_result() {
    let pod = Pod::new(&[("FAKE_CLAUDE_MODE", "hang-after-result")]);
    let access = Pod::bin();
    let mut req = pod.req();
    req.result_grace_secs = 1;
    let t = Instant::now();
    let id = records::start_run(&pod.remote, &access, &req, b"x").expect("start");
    let (_, m) = pod.wait_done(&access, &id);
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(m.status, RunStatus::Failed);
    let reason = m.reason.clone().expect("reason");
    assert!(
        reason.contains("printed its final result but did not exit within 1s"),
        "{reason}"
    );
    assert_eq!(m.result.as_ref().and_then(|r| r.turns), Some(3));
    assert_agent_gone(&m);
}

#[test]
fn watchdog_stops_a_silent_agent() {
    let pod = Pod::new(&[("FAKE_CLAUDE_MODE", "silent")]);
    let access = Pod::bin();
    let mut req = pod.req();
    req.idle_timeout_secs = 1;
    let id = records::start_run(&pod.remote, &access, &req, b"x").expect("start");
    let (lines, m) = pod.wait_done(&access, &id);
    assert_eq!(lines.len(), 1);
    assert_eq!(m.status, RunStatus::Failed);
    assert_eq!(
        m.reason.as_deref(),
        Some("watchdog: no output for 1s; stopped")
    );
    assert_agent_gone(&m);
}

fn assert_agent_gone(m: &RunMeta) {
    let pid = m.agent_pid.expect("agent pid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "agent {pid} still alive: {stat}"
    );
}

#[test]
fn the_run_outlives_the_client_and_a_second_run_is_refused_until_forced() {
    let pod = Pod::new(&[]);
    let gate = pod.root.join("gate");
    let mut env = pod.remote.env.clone();
    env.push((
        "FAKE_CLAUDE_WAIT_FILE".into(),
        gate.to_string_lossy().into(),
    ));
    let remote = LocalRemote { cwd: None, env };
    let access = Pod::bin();
    // start returns (its exec process has exited) while the agent is still blocked on the gate.
    let id = records::start_run(&remote, &access, &pod.req(), b"first").expect("start");
    let m = records::run_status(&remote, &access, &pod.home(), None)
        .expect("status")
        .expect("run");
    assert_eq!((m.id.as_str(), m.status), (id.as_str(), RunStatus::Running));
    assert_eq!(records::agent_column(Some(&m)), "running");
    // A second run is refused while the first is active.
    let e = records::start_run(&remote, &access, &pod.req(), b"second").expect_err("refused");
    assert!(e.to_string().contains("still active"), "{e}");
    assert!(e.hint().unwrap_or_default().contains("--force"));
    // Open the gate: the detached run completes on its own.
    std::fs::write(&gate, b"").expect("gate");
    let (_, m) = pod.wait_done(&access, &id);
    assert_eq!(m.status, RunStatus::Succeeded);

    // --continue reaches the agent; --force stops an active run and records why.
    let _ = std::fs::remove_file(&gate);
    let mut req = pod.req();
    req.continue_ = true;
    let id2 = records::start_run(&remote, &access, &req, b"again").expect("start 2");
    let mut req3 = pod.req();
    req3.force = true;
    let id3 = records::start_run(&remote, &access, &req3, b"forced").expect("start 3");
    let m2 = records::run_status(&remote, &access, &pod.home(), Some(&id2))
        .expect("status")
        .expect("run");
    assert_eq!(m2.status, RunStatus::Failed);
    assert!(m2.reason.expect("reason").contains("superseded by run"));
    assert!(m2.command.contains(&"--continue".to_string()));
    std::fs::write(&gate, b"").expect("gate");
    let (_, m3) = pod.wait_done(&access, &id3);
    assert_eq!(m3.status, RunStatus::Succeeded);
    let all = records::list_runs(&remote, &access, &pod.home()).expect("list");
    assert_eq!(all.len(), 3);
}

#[test]
fn an_empty_prompt_or_missing_agent_is_a_clear_error() {
    let pod = Pod::new(&[]);
    let access = Pod::bin();
    assert!(records::start_run(&pod.remote, &access, &pod.req(), b" \n").is_err());
    let mut req = pod.req();
    req.command = vec!["/nonexistent/agent-xyz".into()];
    let e = records::start_run(&pod.remote, &access, &req, b"x").expect_err("missing agent");
    assert!(
        e.to_string().contains("cannot start the agent command"),
        "{e}"
    );
    // The failed run is recorded and the lock released, so the next run may start.
    let m = records::run_status(&pod.remote, &access, &pod.home(), None)
        .expect("status")
        .expect("run");
    assert_eq!(m.status, RunStatus::Failed);
    let id = records::start_run(&pod.remote, &access, &pod.req(), b"x").expect("start");
    assert_eq!(pod.wait_done(&access, &id).1.status, RunStatus::Succeeded);
}

/// A Remote whose follow streams fail after the next limit in `drops` (bytes of stdout each), until
/// the list is used up (`forever` keeps failing).
struct Flaky {
    inner: LocalRemote,
    drops: Mutex<Vec<usize>>,
    forever: bool,
    execs: AtomicUsize,
}

struct FlakyProc {
    inner: Box<dyn RemoteProcess>,
    limit: Option<usize>,
    child_out: Option<Box<dyn Read + Send>>,
}

struct Cut {
    r: Box<dyn Read + Send>,
    left: usize,
}

impl Read for Cut {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected drop",
            ));
        }
        let n = buf.len().min(self.left);
        let got = self.r.read(&mut buf[..n])?;
        self.left -= got;
        Ok(got)
    }
}

impl Remote for Flaky {
    fn exec(&self, argv: &[String]) -> kodama::Result<Box<dyn RemoteProcess>> {
        self.execs.fetch_add(1, Ordering::SeqCst);
        let mut p = self.inner.exec(argv)?;
        let mut d = self.drops.lock().expect("lock");
        let is_follow = argv.iter().any(|a| a == "follow" || a.contains("tail -c"));
        let limit = if !is_follow {
            None
        } else if self.forever {
            Some(0)
        } else if d.is_empty() {
            None
        } else {
            Some(d.remove(0))
        };
        let out = p.take_stdout();
        Ok(Box::new(FlakyProc {
            inner: p,
            limit,
            child_out: out,
        }))
    }
}

impl RemoteProcess for FlakyProc {
    fn take_stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        self.inner.take_stdin()
    }
    fn take_stdout(&mut self) -> Option<Box<dyn Read + Send>> {
        let r = self.child_out.take()?;
        Some(match self.limit {
            Some(left) => Box::new(Cut { r, left }),
            None => r,
        })
    }
    fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        self.inner.take_stderr()
    }
    fn wait(self: Box<Self>) -> kodama::Result<i32> {
        if self.limit.is_some() {
            // The connection is gone: the exit status never arrives. Kill the local stand-in.
            drop(self.inner);
            return Err(kodama::Error::Transport {
                message: "injected drop".into(),
                hint: None,
            });
        }
        self.inner.wait()
    }
}

#[test]
fn follow_resumes_after_dropped_connections_without_repeating_or_losing_lines() {
    for access in [Pod::bin(), Access::Shell] {
        let pod = Pod::new(&[("FAKE_CLAUDE_SLEEP", "0.05")]);
        let flaky = Flaky {
            inner: pod.remote.clone(),
            // Mid-line each time: within line 1, then within lines 2, 4 and 7 after resuming.
            drops: Mutex::new(vec![150, 700, 1200, 1600]),
            forever: false,
            execs: AtomicUsize::new(0),
        };
        let id = records::start_run(&pod.remote, &access, &pod.req(), b"go").expect("start");
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let opts = FollowOpts {
            max_retries: 5,
            backoff: Duration::from_millis(10),
        };
        let end = records::follow(&flaky, &access, &pod.home(), &id, 0, &opts, &mut |l| {
            lines.push(l.to_vec());
            Ok(())
        })
        .expect("follow");
        let want = std::fs::read(fixture("basic.jsonl")).expect("fixture");
        assert_eq!(lines.concat(), want, "{access:?}");
        assert_eq!(end, want.len() as u64);
        assert!(flaky.execs.load(Ordering::SeqCst) >= 5, "{access:?}");
        assert!(
            flaky.drops.lock().expect("lock").is_empty(),
            "every drop was injected"
        );
        assert!(lines.iter().all(|l| l.ends_with(b"\n")));
    }
}

#[test]
fn a_connection_that_never_comes_back_is_a_clear_error() {
    let pod = Pod::new(&[]);
    let access = Pod::bin();
    let id = records::start_run(&pod.remote, &access, &pod.req(), b"go").expect("start");
    let flaky = Flaky {
        inner: pod.remote.clone(),
        drops: Mutex::new(vec![]),
        forever: true,
        execs: AtomicUsize::new(0),
    };
    let opts = FollowOpts {
        max_retries: 2,
        backoff: Duration::from_millis(1),
    };
    let e = records::follow(&flaky, &access, &pod.home(), &id, 0, &opts, &mut |_| Ok(()))
        .expect_err("gives up");
    assert!(e.to_string().contains("keeps dropping"), "{e}");
    pod.wait_done(&access, &id);
}

#[test]
fn sh_fallback_launcher_has_the_same_layout_and_behaviour() {
    let pod = Pod::new(&[]);
    let access = Access::Shell;
    let id = records::start_run(&pod.remote, &access, &pod.req(), NASTY_PROMPT).expect("start");
    let (lines, m) = pod.wait_done(&access, &id);
    assert_eq!(
        std::fs::read(pod.root.join("prompt.out")).expect("prompt.out"),
        NASTY_PROMPT
    );
    assert_eq!(m.status, RunStatus::Succeeded, "{m:?}");
    assert_eq!(m.launcher, "sh");
    assert_eq!(m.result.as_ref().and_then(|r| r.cost), Some(0.0421));
    assert_eq!(m.exit_code, Some(0));
    assert_eq!(
        lines.concat(),
        std::fs::read(fixture("basic.jsonl")).expect("fixture")
    );
    // The binary reads records the sh launcher wrote.
    let b = records::run_status(&pod.remote, &Pod::bin(), &pod.home(), Some(&id))
        .expect("status")
        .expect("run");
    assert_eq!(b.status, RunStatus::Succeeded);

    let pod = Pod::new(&[("FAKE_CLAUDE_EXIT", "7")]);
    let id = records::start_run(&pod.remote, &access, &pod.req(), b"x").expect("start");
    let (_, m) = pod.wait_done(&access, &id);
    assert_eq!((m.status, m.exit_code), (RunStatus::Failed, Some(7)));
    assert_eq!(m.reason.as_deref(), Some("the agent exited with code 7"));

    let pod = Pod::new(&[("FAKE_CLAUDE_MODE", "silent")]);
    let mut req = pod.req();
    req.idle_timeout_secs = 1;
    let id = records::start_run(&pod.remote, &access, &req, b"x").expect("start");
    // Active: a second sh launch is refused.
    let e = records::start_run(&pod.remote, &access, &req, b"y").expect_err("refused");
    assert!(e.to_string().contains("still active"), "{e}");
    let (_, m) = pod.wait_done(&access, &id);
    assert_eq!(m.status, RunStatus::Failed);
    assert_eq!(
        m.reason.as_deref(),
        Some("watchdog: no output for 1s; stopped")
    );
}

#[test]
fn a_run_left_running_by_a_dead_supervisor_is_settled_and_does_not_block() {
    let pod = Pod::new(&[]);
    let access = Pod::bin();
    // What a pod restart leaves behind: a "running" record whose supervisor no longer exists.
    let mut dead = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = dead.id();
    dead.wait().expect("wait");
    let runs = pod.home.join("kodama/runs");
    let dir = runs.join("20250101-000000-dead");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("transcript.jsonl"), b"").expect("t");
    let stale: RunMeta = serde_json::from_value(serde_json::json!({
        "id": "20250101-000000-dead", "startedAt": "2025-01-01T00:00:00Z", "status": "running",
        "pid": dead_pid, "agentPid": dead_pid
    }))
    .expect("meta");
    kodama::run::runner::write_meta(&dir, &stale).expect("write");
    std::fs::write(runs.join("current"), "20250101-000000-dead\n").expect("lock");

    let id = records::start_run(&pod.remote, &access, &pod.req(), b"x").expect("not blocked");
    let old = records::run_status(
        &pod.remote,
        &access,
        &pod.home(),
        Some("20250101-000000-dead"),
    )
    .expect("status")
    .expect("run");
    assert_eq!(old.status, RunStatus::Failed);
    assert!(old.reason.expect("reason").contains("supervisor is gone"));
    assert_eq!(pod.wait_done(&access, &id).1.status, RunStatus::Succeeded);

    // An empty lock file (a start that crashed mid-write) older than a minute is stale too.
    std::fs::write(runs.join("current"), b"").expect("empty lock");
    let e = records::start_run(&pod.remote, &access, &pod.req(), b"x").expect_err("young lock");
    assert!(e.to_string().contains("still active"), "{e}");
    let old_time = std::time::SystemTime::now() - Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(runs.join("current"))
        .expect("open")
        .set_modified(old_time)
        .expect("mtime");
    let id =
        records::start_run(&pod.remote, &access, &pod.req(), b"x").expect("stale lock removed");
    assert_eq!(pod.wait_done(&access, &id).1.status, RunStatus::Succeeded);
}

#[test]
fn stop_ends_the_active_run_and_records_why() {
    let pod = Pod::new(&[("FAKE_CLAUDE_MODE", "silent")]);
    let access = Pod::bin();
    let id = records::start_run(&pod.remote, &access, &pod.req(), b"x").expect("start");
    records::stop_run(&pod.remote, &access, &pod.home(), None).expect("stop");
    let m = records::run_status(&pod.remote, &access, &pod.home(), Some(&id))
        .expect("status")
        .expect("run");
    assert_eq!(m.status, RunStatus::Failed);
    assert_eq!(m.reason.as_deref(), Some("stopped by the user"));
    assert_agent_gone(&m);
    assert!(records::stop_run(&pod.remote, &Access::Shell, &pod.home(), None).is_err());
    // The session is free again right away.
    let next = records::start_run(&pod.remote, &access, &pod.req(), b"y").expect("next run");
    records::stop_run(&pod.remote, &access, &pod.home(), Some(&next)).expect("stop next");
}
