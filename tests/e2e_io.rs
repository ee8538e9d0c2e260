//! End-to-end tests of the session I/O commands against the simulated cluster, through the real
//! binary: attach (--command exit codes and output, a TTY under a pty, a teammate without a session
//! file, a stopped session), port-forward, the background sync process (propagation, a dropped
//! stream, an API server restart, status file, stop), pull, logs (-f across a dropped stream),
//! prompt, diff and push.
//!
//! Pods of the simulated kubelet run on the host filesystem (host network, uid 1000), so a PVC's
//! content can be checked directly in its host directory (`Kodama::pvc_dir`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{wait_until, Kodama, TempDir};

const NS: &str = "default";

/// A started session with no sync, using the test config (fake agent). `extra` goes into the config.
fn session(k: &Kodama, name: &str, extra: &str) {
    k.write_test_config(extra);
    k.run(&["start", name, "--no-sync"]).ok();
}

/// The host directory of session `name`'s workspace PVC (the simulated kubelet keeps PVCs under
/// `<data dir>/kubelet/pvc/<namespace>/<claim>`).
fn workspace(k: &Kodama, name: &str) -> std::path::PathBuf {
    k.sim
        .data_dir()
        .join("kubelet/pvc")
        .join(NS)
        .join(format!("kodama-workspace-{name}"))
}

#[test]
fn attach_command_passes_output_and_exit_codes_through() {
    let k = Kodama::new();
    session(&k, "at1", "");
    let out = k.run(&["attach", "at1", "--command", "pwd; echo to-err >&2"]);
    out.ok().stdout_has("/workspace").stderr_has("to-err");
    k.run(&["attach", "at1", "--command", "exit 0"]).code(0);
    k.run(&["attach", "at1", "--command", "false"]).code(1);
    k.run(&["attach", "at1", "--command", "echo before; exit 42"])
        .code(42)
        .stdout_has("before");
    // A shell line with && and quotes, as in the README.
    k.run(&[
        "attach",
        "at1",
        "--command",
        "echo 'a b' > f.txt && cat f.txt",
    ])
    .ok()
    .stdout_has("a b");
    assert_eq!(
        std::fs::read_to_string(workspace(&k, "at1").join("f.txt")).expect("file in workspace"),
        "a b\n"
    );
    // stdin reaches the command.
    let out = k.run_stdin(&["attach", "at1", "--command", "tr a-z A-Z"], b"hello\n");
    out.ok().stdout_has("HELLO");

    // A teammate: another config dir (no session file), only -n and the name.
    let mate_cfg = TempDir::new("matecfg");
    let st = k
        .cmd(&["attach", "at1", "-n", NS, "--command", "exit 7"])
        .env("KODAMA_CONFIG_DIR", mate_cfg.path())
        .status()
        .expect("run as a teammate");
    assert_eq!(st.code(), Some(7));
    assert!(!mate_cfg.join("sessions/at1.yaml").exists());

    // No TTY and no --command: a clear usage error, not a hang.
    k.run(&["attach", "at1"])
        .code(2)
        .stderr_has("needs a terminal");

    // A session whose pod is gone: resolve's clear error.
    k.sim
        .faults()
        .delete_pod(NS, "kodama-at1", Some(0))
        .expect("delete pod");
    k.wait_pod_gone(NS, "at1", 30);
    k.run(&["attach", "at1", "--command", "true"])
        .fails()
        .stderr_has("has no pod")
        .stderr_has("kubectl kodama resume at1");
}

/// Run the binary with a pty as its terminal; returns everything it wrote until it exits.
fn run_on_pty(k: &Kodama, args: &[&str], input: &[u8], cols: u16, rows: u16) -> (i32, String) {
    use std::os::fd::AsRawFd;
    let (master, slave) = kodama::term::open_pty().expect("open a pty");
    kodama::term::set_window_size(slave.as_raw_fd(), cols, rows).expect("set pty size");
    let mut cmd = k.cmd(args);
    cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
        .stdout(Stdio::from(slave.try_clone().expect("dup")))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().expect("spawn on pty");
    let mfd = master.as_raw_fd();
    let mut io = kodama::term::FdIo(mfd);
    let mut seen = Vec::new();
    let mut sent = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "attach on a pty did not finish; output so far:\n{}",
                String::from_utf8_lossy(&seen)
            );
        }
        let ready = kodama::term::poll_readable(&[mfd], Duration::from_millis(100)).expect("poll");
        if ready[0] {
            let mut buf = [0u8; 4096];
            match io.read(&mut buf) {
                Ok(0) | Err(_) => {}
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        // Type once the remote shell has printed something (its prompt): raw mode is on by then.
        if !sent && !seen.is_empty() {
            io.write_all(input).expect("type into the pty");
            sent = true;
        }
        if let Some(st) = child.try_wait().expect("wait") {
            // Drain what is left.
            while kodama::term::poll_readable(&[mfd], Duration::from_millis(50)).expect("poll")[0] {
                let mut buf = [0u8; 4096];
                match io.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            return (
                st.code().unwrap_or(-1),
                String::from_utf8_lossy(&seen).into_owned(),
            );
        }
    }
}

#[test]
fn attach_gives_an_interactive_shell_in_the_workspace_with_the_terminal_size() {
    let k = Kodama::new();
    session(&k, "tty1", "");
    let (code, out) = run_on_pty(
        &k,
        &["attach", "tty1"],
        b"stty size; pwd; echo shell=${BASH_VERSION:+bash}; exit 3\r",
        101,
        37,
    );
    assert!(out.contains("37 101"), "terminal size not seen:\n{out}");
    assert!(out.contains("/workspace"), "not in /workspace:\n{out}");
    // The host has no zellij, so the picker chose bash.
    assert!(out.contains("shell=bash"), "not bash:\n{out}");
    assert_eq!(code, 3, "exit code of the shell passes through:\n{out}");
    // --command on a terminal gets a TTY too (so editors work).
    let (code, out) = run_on_pty(
        &k,
        &["attach", "tty1", "--command", "stty size"],
        b"",
        80,
        24,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("24 80"), "{out}");
}

#[test]
fn port_forward_reaches_a_server_in_the_pod_until_interrupted() {
    let k = Kodama::new();
    session(&k, "pf1", "");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    // A tiny TCP echo server running in the pod, for as long as this attach runs.
    let server = format!(
        "exec python3 -c 'import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind((\"127.0.0.1\", {port}))\ns.listen(4)\nprint(\"listening\", flush=True)\nwhile True:\n  c,_=s.accept()\n  d=c.recv(65536)\n  c.sendall(b\"echo:\"+d)\n  c.close()\n'"
    );
    let mut srv = k
        .cmd(&["attach", "pf1", "--command", &server])
        .spawn()
        .expect("start the echo server");
    let mut srv_out = srv.stdout.take().expect("stdout");
    let mut first = [0u8; 10];
    srv_out
        .read_exact(&mut first)
        .expect("server says listening");
    assert_eq!(&first, b"listening\n");

    let mut fwd = k
        .cmd(&["port-forward", "pf1", &format!(":{port}")])
        .spawn()
        .expect("start port-forward");
    let mut fout = fwd.stdout.take().expect("stdout");
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\n") {
        let n = fout.read(&mut b).expect("read port-forward output");
        if n == 0 {
            let mut err = String::new();
            let _ = fwd.stderr.take().expect("stderr").read_to_string(&mut err);
            panic!("port-forward ended early: {err}");
        }
        line.push(b[0]);
    }
    let line = String::from_utf8(line).expect("utf8");
    let rest = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let (local, remote) = rest.trim().split_once(" -> ").expect("L -> R");
    assert_eq!(remote, port.to_string());
    let local: u16 = local.parse().expect("local port");
    for i in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", local)).expect("connect to the forward");
        c.write_all(format!("ping{i}").as_bytes()).expect("send");
        let mut got = String::new();
        c.read_to_string(&mut got).expect("read echo");
        assert_eq!(got, format!("echo:ping{i}"));
    }
    // Ctrl-C ends it cleanly.
    let pid = fwd.id() as i32;
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let st = wait_child(&mut fwd, 10);
    assert_eq!(st, Some(0), "port-forward exit after Ctrl-C");
    let _ = srv.kill();
    let _ = srv.wait();
}

fn wait_child(c: &mut std::process::Child, secs: u64) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(st) = c.try_wait().expect("wait") {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    panic!("child did not exit within {secs}s");
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let st = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            !matches!(st, Some("Z") | Some("X"))
        })
        .unwrap_or(false)
}

fn status_json(k: &Kodama, name: &str) -> Option<serde_json::Value> {
    let p = k.config_dir.join(&format!("sync/{name}.status"));
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

fn wait_file(path: &Path, content: &str, secs: u64) {
    wait_until(
        &format!("{} to hold {content:?}", path.display()),
        secs,
        || std::fs::read_to_string(path).is_ok_and(|c| c == content),
    );
}

#[test]
fn background_sync_propagates_edits_through_drops_and_api_restarts_and_stops_cleanly() {
    let k = Kodama::new();
    k.write_test_config("");
    let src = TempDir::new("syncsrc");
    common::write(src.path(), "a.txt", "one\n");
    k.run(&["start", "bs1", "--sync", src.path().to_str().expect("utf8")])
        .ok();
    let ws = workspace(&k, "bs1");
    wait_file(&ws.join("a.txt"), "one\n", 10);

    // (Re)start the background sync.
    let out = k.run(&["sync", "bs1"]);
    out.ok().stdout_has("running in the background");
    let st = status_json(&k, "bs1").expect("status file");
    assert_eq!(st["state"], "active");
    let pid = st["pid"].as_u64().expect("pid") as u32;
    assert!(pid_alive(pid));
    // Detached: it leads its own session (no controlling terminal) and was handed to init by the
    // launcher, so it never becomes a zombie of whoever started it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .expect("fields")
        .split_whitespace()
        .collect();
    let (ppid, sid): (u32, u32) = (
        fields[1].parse().expect("ppid"),
        fields[3].parse().expect("sid"),
    );
    assert_eq!(sid, pid, "the daemon leads its own session");
    assert_ne!(
        ppid,
        std::process::id(),
        "the test process is not its parent"
    );
    let status_path = k.config_dir.join("sync/bs1.status");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&status_path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(k.config_dir.join("sync/bs1.log").exists());

    // An edit reaches the pod.
    common::write(src.path(), "a.txt", "two!\n");
    common::write(src.path(), "dir/b.txt", "bee\n");
    wait_file(&ws.join("a.txt"), "two!\n", 20);
    wait_file(&ws.join("dir/b.txt"), "bee\n", 20);

    // A dropped stream: the next exec to the pod is cut after a few bytes.
    k.sim.faults().drop_stream_after("/exec", 40);
    common::write(src.path(), "a.txt", "three\n");
    wait_file(&ws.join("a.txt"), "three\n", 30);

    // An API server restart (every connection closed).
    k.sim.restart_api().expect("restart the API server");
    common::write(src.path(), "c.txt", "after restart\n");
    wait_file(&ws.join("c.txt"), "after restart\n", 30);
    // Edits made while the API server is failing every exec are not lost either.
    k.sim.faults().fail_next(None, "/exec", 3, 503);
    common::write(src.path(), "d.txt", "during outage\n");
    wait_file(&ws.join("d.txt"), "during outage\n", 30);
    // The pod's processes crash and the container restarts.
    k.sim.faults().kill_pod_processes(NS, "kodama-bs1");
    common::write(src.path(), "e.txt", "after a pod restart\n");
    wait_file(&ws.join("e.txt"), "after a pod restart\n", 30);
    assert!(pid_alive(pid), "the same daemon survived every fault");
    wait_until("the status to be active again", 30, || {
        status_json(&k, "bs1").is_some_and(|s| s["state"] == "active")
    });
    assert!(
        status_json(&k, "bs1").expect("status")["reconnects"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "the faults caused reconnects"
    );

    let col = sync_state_in(&k, "bs1").column();
    assert!(col.starts_with("Active ("), "{col}");

    // stop_daemon (what stop/delete call) ends it: SIGTERM, no process left, status stopped.
    let stopped = stop_daemon_in(&k, "bs1");
    assert!(stopped, "a daemon was running");
    assert!(!pid_alive(pid), "daemon process {pid} still alive");
    assert_eq!(status_json(&k, "bs1").expect("status")["state"], "stopped");
    assert!(!k.config_dir.join("sync/bs1.pid").exists());
    assert!(!stop_daemon_in(&k, "bs1"), "second stop finds nothing");
    assert_eq!(
        sync_state_in(&k, "bs1"),
        kodama::session::syncd::SyncState::Inactive
    );
}

static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run `f` with a `Ctx` for this harness's config dir (the env var is process-wide: serialised).
fn with_ctx<T>(k: &Kodama, f: impl FnOnce(&kodama::session::Ctx) -> T) -> T {
    let _g = ENV.lock().unwrap_or_else(|p| p.into_inner());
    std::env::set_var("KODAMA_CONFIG_DIR", k.config_dir.path());
    let ctx = kodama::session::Ctx::new(Default::default());
    let r = f(&ctx);
    std::env::remove_var("KODAMA_CONFIG_DIR");
    r
}

/// Call `syncd::stop_daemon` the way stop/delete do, for this harness's config dir.
fn stop_daemon_in(k: &Kodama, name: &str) -> bool {
    with_ctx(k, |ctx| {
        kodama::session::syncd::stop_daemon(ctx, name).expect("stop_daemon")
    })
}

/// `syncd::sync_state` (what list's SYNC column and status show).
fn sync_state_in(k: &Kodama, name: &str) -> kodama::session::syncd::SyncState {
    with_ctx(k, |ctx| kodama::session::syncd::sync_state(ctx, name))
}

#[test]
fn sync_daemon_records_a_safety_stop_as_an_error_with_its_reason() {
    let k = Kodama::new();
    k.write_test_config("");
    let src = TempDir::new("syncgone");
    common::write(src.path(), "a.txt", "one\n");
    k.run(&["start", "sg1", "--sync", src.path().to_str().expect("utf8")])
        .ok();
    k.run(&["sync", "sg1"]).ok();
    let pid = status_json(&k, "sg1").expect("status")["pid"]
        .as_u64()
        .expect("pid") as u32;
    // The whole local tree disappears: the mass-deletion guard stops sync instead of mirroring it.
    std::fs::remove_dir_all(src.path()).expect("remove the sync dir");
    wait_until("the daemon to exit", 30, || !pid_alive(pid));
    let st = status_json(&k, "sg1").expect("status");
    assert_eq!(st["state"], "error", "{st}");
    assert!(st["reason"].as_str().is_some_and(|r| !r.is_empty()), "{st}");
    let state = sync_state_in(&k, "sg1");
    assert_eq!(state.column(), "Error");
    assert_eq!(state.reason(), st["reason"].as_str());
    // The pod's files are untouched.
    assert_eq!(
        std::fs::read_to_string(workspace(&k, "sg1").join("a.txt")).expect("pod file kept"),
        "one\n"
    );
    // `sync` refuses clearly now.
    k.run(&["sync", "sg1"]).fails().stderr_has("does not exist");
}

#[test]
fn pull_copies_pod_files_back_without_overwriting_newer_local_files() {
    let k = Kodama::new();
    session(&k, "pl1", "");
    k.run(&[
        "attach",
        "pl1",
        "--command",
        "mkdir -p out && echo pod-a > out/a.txt && echo pod-b > out/b.txt && echo skip > out/x.log",
    ])
    .ok();
    let dest = TempDir::new("pulldest");
    common::write(dest.path(), ".kodamaignore", "*.log\n");
    // b.txt exists locally and is newer than the pod's copy.
    let b = common::write(dest.path(), "out/b.txt", "local-b\n");
    let later = std::time::SystemTime::now() + Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&b)
        .expect("open")
        .set_modified(later)
        .expect("set mtime");
    let d = dest.path().to_str().expect("utf8");
    let out = k.run(&["pull", "pl1", "out", d]);
    out.ok()
        .stdout_has("Pulled")
        .stderr_has("out/b.txt")
        .stderr_has("--force");
    assert_eq!(
        std::fs::read_to_string(dest.join("out/a.txt")).expect("a"),
        "pod-a\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("out/b.txt")).expect("b"),
        "local-b\n"
    );
    assert!(!dest.join("out/x.log").exists(), "ignored file was pulled");
    // --force overwrites.
    k.run(&["pull", "pl1", "out", d, "--force"]).ok();
    assert_eq!(
        std::fs::read_to_string(dest.join("out/b.txt")).expect("b"),
        "pod-b\n"
    );
}

fn transcript_fixture() -> String {
    std::fs::read_to_string(common::fixtures().join("agent/basic.jsonl")).expect("fixture")
}

#[test]
fn prompt_runs_the_agent_byte_for_byte_refuses_while_running_and_logs_follow_across_a_drop() {
    let k = Kodama::new();
    let gate = TempDir::new("gate");
    let gate_file = gate.join("go");
    // The fake agent prints a line every 0.1 s and waits for the gate before its result.
    k.write_config(&format!(
        "defaults:\n  image: sim/kodama-session:test\n  resources:\n    cpu: \"500m\"\n    memory: \"512Mi\"\n  storage:\n    workspace: \"1Gi\"\n    claudeHome: \"100Mi\"\nagent:\n  command: [\"env\", \"FAKE_CLAUDE_SLEEP=0.1\", \"FAKE_CLAUDE_WAIT_FILE={}\", \"{}\"]\n",
        gate_file.display(),
        common::fake_agent().display()
    ));
    k.run(&["start", "ag1", "--no-sync"]).ok();
    // No run yet: a clear message.
    k.run(&["logs", "ag1"]).fails().stderr_has("no agent run");
    let prompt = "Fix \"it\" $(rm -rf /) `id` ünïcødé\nsecond line\n";
    let out = k.run(&["prompt", "ag1", "-p", prompt]);
    out.ok().stdout_has("Started agent run");
    // Byte for byte (the fake agent writes its stdin to ./fake-claude-prompt.out in /workspace).
    let ws = workspace(&k, "ag1");
    wait_until("the prompt to reach the agent", 20, || {
        std::fs::read(ws.join("fake-claude-prompt.out")).is_ok_and(|b| b == prompt.as_bytes())
    });
    // A second prompt while the run is active is refused.
    k.run(&["prompt", "ag1", "-p", "again"])
        .fails()
        .stderr_has("--force");

    // Follow the live run; the first follow stream is cut after a few hundred bytes.
    k.sim.clear_journal();
    k.sim.faults().drop_stream_after("transcript.jsonl", 700);
    let follower = k
        .cmd(&["logs", "ag1", "-f", "--raw"])
        .spawn()
        .expect("start logs -f");
    // Let the transcript grow past the drop point, then open the gate.
    wait_until(
        "the follower to reconnect after its stream was cut",
        30,
        || {
            k.journal()
                .iter()
                .filter(|e| e.query.contains("transcript.jsonl"))
                .count()
                >= 2
        },
    );
    std::fs::write(&gate_file, "").expect("open the gate");
    let out = follower
        .wait_with_output()
        .expect("logs -f ends with the run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, transcript_fixture(), "every line exactly once");

    // Rendered logs of the finished run.
    k.run(&["logs", "ag1"])
        .ok()
        .stdout_has("I'll look at the repository layout first.")
        .stdout_has("[result]");
}

#[test]
fn diff_shows_workspace_edits_and_push_sends_the_branch_to_origin() {
    let mut k = Kodama::new();
    // A token in the session (from the local environment): it must never show up in an exec's
    // argv or in push's output.
    let token = "ghp_e2eIoSecretToken0123456789abcdef";
    k.set_env("GITHUB_TOKEN", token);
    k.write_test_config("");
    let root = TempDir::new("gitroot");
    let bare = common::bare_repo(&root, &[("README.md", "hello\n")]);
    // The pod user (uid 1000) owns the "remote" it pushes into, as on a real git server.
    let st = std::process::Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(&bare)
        .status()
        .expect("chown");
    assert!(st.success());
    k.run(&["start", "gd1", "--no-sync"]).ok();
    // The session has the token (through its Secret).
    k.run(&["attach", "gd1", "--command", "test -n \"$GITHUB_TOKEN\""])
        .ok();
    // A clone in /workspace whose base commit is the repository's first commit; then a committed
    // change and uncommitted ones. (The volume root belongs to root, as on real clusters, so git in
    // the pod needs /workspace marked safe for these setup commands.)
    let safe = "export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0=/workspace; \
                git config --global user.name t 2>/dev/null; export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@e GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@e;";
    k.run(&[
        "attach",
        "gd1",
        "--command",
        &format!(
            "{safe} git clone -q {} . && git checkout -q -b kodama/gd1 && git config kodama.baseCommit \"$(git rev-parse HEAD)\" && \
             echo committed > c.txt && git add c.txt && git commit -qm step1 && \
             echo changed >> README.md && echo new > added.txt",
            bare.display()
        ),
    ])
    .ok();
    let out = k.run(&["diff", "gd1"]);
    out.ok()
        .stdout_has("+committed")
        .stdout_has("+changed")
        .stdout_has("added.txt")
        .stdout_has("+new");
    assert!(!out.stdout.contains("\x1b["), "no colour when not a TTY");

    k.run(&[
        "attach",
        "gd1",
        "--command",
        &format!("{safe} git add -A && git commit -qm work"),
    ])
    .ok();
    let out = k.run(&["push", "gd1"]);
    out.ok().stdout_has("Pushed branch");
    assert!(!out.all().contains(token), "token in push output");
    for e in k.journal() {
        if e.path.ends_with("/exec") {
            assert!(!e.query.contains(token), "token in exec argv: {}", e.query);
        }
    }
    let branch = out
        .stdout
        .split_whitespace()
        .nth(2)
        .expect("branch name")
        .to_string();
    let log = common::git(
        &bare,
        &["-c", "safe.directory=*", "log", "--format=%s", &branch],
    );
    assert!(log.starts_with("work"), "{log}");
}

#[test]
fn sync_once_foreground_and_a_deleted_session_file() {
    let k = Kodama::new();
    k.write_test_config("");
    let src = TempDir::new("synconce");
    common::write(src.path(), "a.txt", "one\n");
    k.run(&["start", "so1", "--sync", src.path().to_str().expect("utf8")])
        .ok();
    let ws = workspace(&k, "so1");
    wait_file(&ws.join("a.txt"), "one\n", 10);

    // --once: one reconcile pass, then exit. (A different size on purpose: see the report on
    // same-size edits within the same second in the tar fallback.)
    common::write(src.path(), "a.txt", "two!\n");
    common::write(src.path(), "b.txt", "bee\n");
    k.run(&["sync", "so1", "--once"]).ok().stdout_has("Synced");
    assert_eq!(
        std::fs::read_to_string(ws.join("a.txt")).expect("a"),
        "two!\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("b.txt")).expect("b"),
        "bee\n"
    );

    // --foreground: runs in this terminal with status lines until Ctrl-C.
    let mut fg = k
        .cmd(&["sync", "so1", "--foreground"])
        .spawn()
        .expect("sync --foreground");
    wait_until("foreground sync to be active", 30, || {
        status_json(&k, "so1").is_some_and(|s| s["state"] == "active" && s["pid"] == fg.id())
    });
    common::write(src.path(), "c.txt", "sea\n");
    wait_file(&ws.join("c.txt"), "sea\n", 20);
    // SAFETY: plain kill(2) of our own child.
    unsafe {
        libc::kill(fg.id() as i32, libc::SIGINT);
    }
    assert_eq!(wait_child(&mut fg, 10), Some(0));
    let mut err = String::new();
    fg.stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(err.contains("sync: active"), "{err}");
    assert_eq!(status_json(&k, "so1").expect("status")["state"], "stopped");

    // A background daemon whose session file disappears (session deleted) stops by itself.
    k.run(&["sync", "so1"]).ok();
    let pid = status_json(&k, "so1").expect("status")["pid"]
        .as_u64()
        .expect("pid") as u32;
    std::fs::remove_file(k.session_file("so1")).expect("remove the session file");
    // The daemon checks for its session file every 2 s, idle or not.
    wait_until("the daemon to exit", 30, || !pid_alive(pid));
    // ... and leaves no sync files of the deleted session behind.
    for f in ["so1.status", "so1.pid", "so1.json"] {
        let p = k.config_dir.join(&format!("sync/{f}"));
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

/// The simulator's pods run on this machine, so kodama's own (dynamically linked) test binary can
/// serve as the in-pod helper: sync then uses one long-lived agent connection, and runs use
/// `run-agent` (which supports `prompt --force`).
#[test]
fn with_kodamas_binary_in_the_pod_sync_keeps_one_connection_and_prompt_force_supersedes() {
    let mut k = Kodama::new();
    k.set_env("KODAMA_AGENT_ALLOW_DYNAMIC", "1");
    let gate = TempDir::new("gate2");
    let gate_file = gate.join("go");
    k.write_config(&format!(
        "defaults:\n  image: sim/kodama-session:test\n  resources:\n    cpu: \"500m\"\n    memory: \"512Mi\"\n  storage:\n    workspace: \"1Gi\"\n    claudeHome: \"100Mi\"\nagent:\n  command: [\"env\", \"FAKE_CLAUDE_WAIT_FILE={}\", \"{}\"]\n",
        gate_file.display(),
        common::fake_agent().display()
    ));
    let src = TempDir::new("agentsync");
    common::write(src.path(), "a.txt", "one\n");
    k.run(&["start", "ab1", "--sync", src.path().to_str().expect("utf8")])
        .ok();
    let ws = workspace(&k, "ab1");
    k.run(&["sync", "ab1"]).ok();
    wait_until("the agent transport", 30, || {
        status_json(&k, "ab1").is_some_and(|s| s["transport"] == "agent" && s["state"] == "active")
    });
    let pid = status_json(&k, "ab1").expect("status")["pid"]
        .as_u64()
        .expect("pid") as u32;
    common::write(src.path(), "a.txt", "two!\n");
    wait_file(&ws.join("a.txt"), "two!\n", 20);
    // Cut the next stream that names the agent, then restart the API server (which closes the
    // live agent connection): edits still arrive.
    k.sim.faults().drop_stream_after("agent", 64);
    common::write(src.path(), "b.txt", "bee\n");
    wait_file(&ws.join("b.txt"), "bee\n", 30);
    k.sim.restart_api().expect("restart the API server");
    common::write(src.path(), "c.txt", "sea\n");
    wait_file(&ws.join("c.txt"), "sea\n", 30);
    wait_until("reconnected and active", 30, || {
        status_json(&k, "ab1").is_some_and(|s| {
            s["state"] == "active" && s["reconnects"].as_u64().is_some_and(|n| n >= 1)
        })
    });
    assert!(pid_alive(pid));

    // Runs through kodama's binary: a second prompt is refused, --force supersedes the first.
    k.run(&["prompt", "ab1", "-p", "first"]).ok();
    k.run(&["prompt", "ab1", "-p", "second"])
        .fails()
        .stderr_has("--force");
    k.run(&["prompt", "ab1", "-p", "third", "--force"]).ok();
    std::fs::write(&gate_file, "").expect("open the gate");
    wait_until("the forced run to finish", 30, || {
        std::fs::read(ws.join("fake-claude-prompt.out")).is_ok_and(|b| b == b"third")
            && k.run(&["logs", "ab1"]).stdout.contains("[result]")
    });
    k.run(&["logs", "ab1", "-f", "--raw"])
        .ok()
        .stderr_has("succeeded");
    assert!(stop_daemon_in(&k, "ab1"));
    assert!(!pid_alive(pid));
}

#[test]
fn dev_starts_then_attaches_and_passes_the_exit_code_through() {
    let k = Kodama::new();
    k.write_test_config("");
    k.run(&["dev", "dv1", "--no-sync", "--command", "pwd; exit 5"])
        .code(5)
        .stdout_has("/workspace");
    assert!(k.pod(NS, "kodama-dv1").is_some(), "the session stays");
}

#[test]
fn a_daemon_left_behind_exits_once_its_session_and_cluster_are_gone() {
    let pid;
    // The sync directory stays; only the cluster and the kodama config go away.
    let src = TempDir::new("leftbehind");
    common::write(src.path(), "a.txt", "one\n");
    {
        let k = Kodama::new();
        k.write_test_config("");
        k.run(&["start", "lb1", "--sync", src.path().to_str().expect("utf8")])
            .ok();
        k.run(&["sync", "lb1"]).ok();
        pid = status_json(&k, "lb1").expect("status")["pid"]
            .as_u64()
            .expect("pid") as u32;
        assert!(pid_alive(pid));
        // Dropping the harness stops the cluster and removes the config directory.
    }
    wait_until("the orphaned daemon to exit", 40, || !pid_alive(pid));
    assert!(src.join("a.txt").exists(), "the local files are untouched");
}

#[test]
fn an_idle_daemon_keeps_its_status_fresh() {
    let k = Kodama::new();
    k.write_test_config("");
    let src = TempDir::new("idle");
    common::write(src.path(), "a.txt", "one\n");
    k.run(&["start", "id1", "--sync", src.path().to_str().expect("utf8")])
        .ok();
    k.run(&["sync", "id1"]).ok();
    let first = status_json(&k, "id1").expect("status")["updatedAt"].clone();
    // Nothing changes locally; the daemon still refreshes its status (every 30 s).
    wait_until("a heartbeat in the status file", 45, || {
        status_json(&k, "id1").is_some_and(|s| s["updatedAt"] != first && s["state"] == "active")
    });
    let col = sync_state_in(&k, "id1").column();
    assert!(col.starts_with("Active"), "{col}");
    assert!(stop_daemon_in(&k, "id1"));
}

#[test]
fn diff_and_push_of_a_session_started_with_repo() {
    let k = Kodama::new();
    k.write_test_config("");
    let root = TempDir::new("gitroot2");
    let bare = common::bare_repo(&root, &[("README.md", "hello\n")]);
    let st = std::process::Command::new("chown")
        .args(["-R", "1000:1000"])
        .arg(&bare)
        .status()
        .expect("chown");
    assert!(st.success());
    k.run(&[
        "start",
        "gr1",
        "--no-sync",
        "--repo",
        bare.to_str().expect("utf8"),
    ])
    .ok();
    let ident = "export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@e GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@e;";
    k.run(&[
        "attach",
        "gr1",
        "--command",
        &format!(
            "{ident} echo committed > c.txt && git add c.txt && git commit -qm step1 && echo dirty >> README.md"
        ),
    ])
    .ok();
    // Against the clone's base commit: the new commit and the uncommitted edit.
    k.run(&["diff", "gr1"])
        .ok()
        .stdout_has("+committed")
        .stdout_has("+dirty");
    let rec = std::fs::read_to_string(k.session_file("gr1")).expect("session file");
    let branch = rec
        .lines()
        .find_map(|l| l.strip_prefix("branch: "))
        .expect("branch in the session file")
        .trim()
        .trim_matches('"')
        .to_string();
    k.run(&["push", "gr1"])
        .ok()
        .stdout_has(&format!("Pushed branch {branch} "));
    let log = common::git(
        &bare,
        &["-c", "safe.directory=*", "log", "--format=%s", &branch],
    );
    assert!(log.starts_with("step1"), "{log}");
}
