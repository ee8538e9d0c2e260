//! The background sync process of a session: spawning and stopping it, its pid/status/log files in the
//! config directory, the `sync` command and the hidden `sync-daemon` entry point.
//!
//! Files, all under `<config>/sync/` (directory 0700, files 0600):
//! - `<name>.pid`    pid of the running daemon (written by the launcher, rewritten by the daemon);
//! - `<name>.status` JSON status, replaced atomically on every state change, batch and keepalive;
//! - `<name>.log`    the daemon's stdout/stderr (rotated to `.log.1` past 5 MiB at spawn);
//! - `<name>.json`   the sync engine's agreed state (`sync::engine::save_known`), so a restarted
//!   daemon can tell a local deletion from a file the pod made.
//!
//! Process model: [`spawn_daemon`] runs `kubectl-kodama [global flags] sync-daemon <name>` as a short
//! launcher and waits for it; the launcher starts the real daemon in a new session (setsid, stdin
//! /dev/null, output to the log), writes its pid file and exits. The daemon is thus orphaned at once
//! and reaped by init: no zombie, whatever the spawning process does next. The daemon builds the sync
//! engine with a reconnect factory that resolves the session's pod again on every attempt, so it
//! survives dropped streams, API server restarts and pod restarts; it exits on SIGTERM/SIGINT/SIGHUP
//! (`stop_daemon`) or on a safety stop (mass deletion, sync directory gone), which it records as
//! an Error with the reason.
//!
//! May import: session::{ctx, resolve, podremote}, config, kube, sync, agent, term (incl. sys),
//! error.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::ctx::Ctx;
use super::resolve;
use crate::cli::{GlobalFlags, NameArgs, SyncArgs};
use crate::config::{self, time as ktime, Layer, SessionRecord};
use crate::error::{Error, Result};
use crate::manifest::WORKSPACE_DIR;
use crate::remote::Remote;
use crate::sync::engine::{self as eng, StopHandle, SyncEngine, SyncOptions, SyncStatus};
use crate::sync::ignore::{IgnoreOptions, IgnoreRules};
use crate::term::sys;
use crate::term::{self, SignalPipe};

/// Environment variable that selects the stage of `sync-daemon` (internal).
const STAGE_ENV: &str = "KODAMA_SYNC_DAEMON_STAGE";
/// A live daemon that has not written its status for this long is reported as not responding.
const STALE_AFTER: Duration = Duration::from_secs(120);
/// How often a running daemon refreshes `updatedAt` in its status file.
const HEARTBEAT: Duration = Duration::from_secs(30);
/// How long `stop_daemon` waits for a clean exit before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Log rotation threshold.
const LOG_MAX: u64 = 5 << 20;

/// The sync state of a session, for list's SYNC column and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncState {
    /// The sync process runs; `last_sync` is when the pod last matched local (None: not yet).
    Active { last_sync: Option<SystemTime> },
    /// Not syncing, with the reason (a safety stop, a lost connection being retried, a crash).
    Error { reason: String },
    /// No sync process (never started, stopped, or --no-sync).
    Inactive,
}

impl SyncState {
    /// The SYNC column: `Active (5s)`, `Active`, `Error` or `Inactive`.
    pub fn column(&self) -> String {
        match self {
            SyncState::Active {
                last_sync: Some(t), ..
            } => {
                let age = SystemTime::now().duration_since(*t).unwrap_or_default();
                format!("Active ({})", ktime::format_age(age))
            }
            SyncState::Active { last_sync: None } => "Active".into(),
            SyncState::Error { .. } => "Error".into(),
            SyncState::Inactive => "Inactive".into(),
        }
    }

    /// Why sync is in Error.
    pub fn reason(&self) -> Option<&str> {
        match self {
            SyncState::Error { reason } => Some(reason),
            _ => None,
        }
    }
}

/// Where a session's sync files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPaths {
    pub dir: PathBuf,
    pub pid: PathBuf,
    pub status: PathBuf,
    pub log: PathBuf,
    /// The engine's agreed state (what `start` saves after the initial sync).
    pub state: PathBuf,
}

/// The sync files of session `name` under `config_dir`.
pub fn paths(config_dir: &Path, name: &str) -> SyncPaths {
    let dir = config_dir.join("sync");
    SyncPaths {
        pid: dir.join(format!("{name}.pid")),
        status: dir.join(format!("{name}.status")),
        log: dir.join(format!("{name}.log")),
        state: dir.join(format!("{name}.json")),
        dir,
    }
}

/// The engine state file of session `name` (for `sync::engine::save_known` after the initial sync).
pub fn state_file(ctx: &Ctx, name: &str) -> Result<PathBuf> {
    Ok(paths(&ctx.config_dir()?, name).state)
}

/// The status file's content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusFile {
    /// connecting, active, error or stopped.
    pub state: String,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub files_sent: u64,
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub deletes: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub reconnects: u64,
    #[serde(default)]
    pub transport: String,
}

impl StatusFile {
    fn from_engine(s: &SyncStatus, pid: u32) -> StatusFile {
        StatusFile {
            state: state_word(s.state).into(),
            pid,
            last_sync: s.last_sync.map(ktime::format_rfc3339),
            reason: s.reason.clone(),
            updated_at: ktime::now_rfc3339(),
            files_sent: s.files_sent,
            bytes_sent: s.bytes_sent,
            deletes: s.deletes,
            failed: s.failed,
            reconnects: s.reconnects,
            transport: s.transport.clone(),
        }
    }
}

fn state_word(s: eng::SyncState) -> &'static str {
    match s {
        eng::SyncState::Connecting => "connecting",
        eng::SyncState::Active => "active",
        eng::SyncState::Error => "error",
        eng::SyncState::Stopped => "stopped",
    }
}

/// Read the status file of session `name` (None when there is none or it does not parse).
pub fn read_status(config_dir: &Path, name: &str) -> Option<StatusFile> {
    let data = fs::read(paths(config_dir, name).status).ok()?;
    serde_json::from_slice(&data).ok()
}

fn write_status(p: &SyncPaths, st: &StatusFile) -> Result<()> {
    let data = serde_json::to_vec_pretty(st)
        .map_err(|e| Error::msg(format!("encoding the sync status: {e}")))?;
    write_atomic(&p.status, &data)
}

/// Write `data` to `path` through a 0600 temp file in the same directory and a rename. The directory
/// must exist: a daemon whose config directory was removed must not recreate it.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::msg(format!("{} has no parent directory", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let res = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

fn ensure_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// The pid in the pid file, if any.
fn read_pid(p: &SyncPaths) -> Option<u32> {
    fs::read_to_string(&p.pid).ok()?.trim().parse().ok()
}

/// The command line of `pid`, argument by argument (None when the process is gone or a zombie).
fn cmdline(pid: u32) -> Option<Vec<String>> {
    if Path::new("/proc/self/cmdline").exists() {
        if !sys::pid_alive(pid, None) {
            return None;
        }
        let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        return Some(
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect(),
        );
    }
    // No /proc (macOS): ask ps; arguments come back joined by spaces.
    let out = Command::new("ps")
        .args(["-o", "stat=", "-o", "command=", "-p", &pid.to_string()])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() || text.starts_with('Z') {
        return None;
    }
    Some(
        text.split_whitespace()
            .skip(1)
            .map(str::to_string)
            .collect(),
    )
}

/// True when `pid` is a live `sync-daemon <name>` process (never some other process that reused the
/// pid).
fn is_our_daemon(pid: u32, name: &str) -> bool {
    if pid <= 1 {
        return false;
    }
    cmdline(pid).is_some_and(|args| {
        args.windows(2)
            .any(|w| w[0] == "sync-daemon" && w[1] == name)
    })
}

/// The pid of the running daemon of session `name`, if one runs.
pub fn daemon_pid(ctx: &Ctx, name: &str) -> Option<u32> {
    let dir = ctx.config_dir().ok()?;
    read_pid(&paths(&dir, name)).filter(|pid| is_our_daemon(*pid, name))
}

/// The sync state of session `name` (see [`SyncState`]), from the status file and the pid.
pub fn sync_state(ctx: &Ctx, name: &str) -> SyncState {
    match ctx.config_dir() {
        Ok(dir) => state_from(&dir, name),
        Err(_) => SyncState::Inactive,
    }
}

fn state_from(dir: &Path, name: &str) -> SyncState {
    let p = paths(dir, name);
    let Some(st) = read_status(dir, name) else {
        return SyncState::Inactive;
    };
    let pid = read_pid(&p).unwrap_or(st.pid);
    let alive = is_our_daemon(pid, name);
    let last_sync = st.last_sync.as_deref().and_then(ktime::parse_rfc3339);
    let restart = format!(
        "restart it with `kubectl kodama sync {name}`; its log is {}",
        p.log.display()
    );
    if !alive {
        return match st.state.as_str() {
            "error" => SyncState::Error {
                reason: st
                    .reason
                    .unwrap_or_else(|| "the sync process stopped with an error".into()),
            },
            "active" | "connecting" => SyncState::Error {
                reason: format!(
                    "the sync process (pid {pid}) is gone without a clean stop; {restart}"
                ),
            },
            _ => SyncState::Inactive,
        };
    }
    let updated = ktime::parse_rfc3339(&st.updated_at);
    if updated
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AFTER)
    {
        return SyncState::Error {
            reason: format!(
                "the sync process (pid {pid}) has not reported for over {}s; {restart}",
                STALE_AFTER.as_secs()
            ),
        };
    }
    match st.state.as_str() {
        "active" => SyncState::Active { last_sync },
        "connecting" => match st.reason {
            Some(r) => SyncState::Error { reason: r },
            None => SyncState::Active { last_sync },
        },
        "error" => SyncState::Error {
            reason: st.reason.unwrap_or_else(|| "sync failed".into()),
        },
        _ => SyncState::Inactive,
    }
}

/// The global flags as arguments, so the daemon talks to the same cluster as its parent.
fn global_args(g: &GlobalFlags) -> Vec<String> {
    let mut a = Vec::new();
    if let Some(k) = &g.kubeconfig {
        let abs = std::path::absolute(k).unwrap_or_else(|_| k.clone());
        a.push("--kubeconfig".into());
        a.push(abs.display().to_string());
    }
    for (flag, v) in [
        ("--context", &g.context),
        ("--cluster", &g.cluster),
        ("--user", &g.user),
        ("--namespace", &g.namespace),
    ] {
        if let Some(v) = v {
            a.push(flag.into());
            a.push(v.clone());
        }
    }
    if let Some(t) = g.request_timeout {
        a.push("--request-timeout".into());
        a.push(config::format_duration(t));
    }
    a
}

/// Start the background sync process of session `name` (stopping a running one first). Returns once
/// the daemon runs and its pid file is written.
pub fn spawn_daemon(ctx: &Ctx, name: &str) -> Result<()> {
    config::validate_session_name(name)
        .map_err(|e| Error::usage(format!("invalid session name \"{name}\": {e}"), None))?;
    let dir = std::path::absolute(ctx.config_dir()?).map_err(|e| Error::io("config dir", e))?;
    let p = paths(&dir, name);
    ensure_dir(&p.dir)?;
    stop_daemon(ctx, name)?;
    let exe = std::env::current_exe().map_err(|e| Error::io("current executable", e))?;
    let out = Command::new(exe)
        .args(global_args(&ctx.global))
        .arg("sync-daemon")
        .arg(name)
        .env(STAGE_ENV, "launch")
        .env("KODAMA_CONFIG_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::io("kubectl-kodama sync-daemon", e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Error::msg(format!(
            "starting the background sync of session \"{name}\": {}",
            msg.trim_start_matches("kubectl-kodama: error: ")
        )));
    }
    Ok(())
}

/// Stop the background sync of session `name`: SIGTERM (SIGKILL after 5 s) to the pid in its pid
/// file, only once that pid is verified to be this session's `sync-daemon`. Returns whether a daemon
/// was running.
pub fn stop_daemon(ctx: &Ctx, name: &str) -> Result<bool> {
    let dir = ctx.config_dir()?;
    let p = paths(&dir, name);
    let Some(pid) = read_pid(&p) else {
        return Ok(false);
    };
    if !is_our_daemon(pid, name) {
        let _ = fs::remove_file(&p.pid);
        return Ok(false);
    }
    // The daemon leads its own session and process group (setsid), so its pgid is its pid.
    sys::kill_group(pid, sys::SIGTERM)
        .map_err(|e| Error::io("", e).context(format!("stopping the sync process {pid}")))?;
    let deadline = Instant::now() + STOP_GRACE;
    while is_our_daemon(pid, name) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if is_our_daemon(pid, name) {
        let _ = sys::kill_group(pid, sys::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while is_our_daemon(pid, name) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    if is_our_daemon(pid, name) {
        return Err(Error::msg(format!(
            "the sync process {pid} of session \"{name}\" does not stop"
        )));
    }
    let _ = fs::remove_file(&p.pid);
    // A daemon that was killed could not record its stop.
    if let Some(mut st) = read_status(&dir, name) {
        if st.state != "stopped" && st.state != "error" {
            st.state = "stopped".into();
            st.reason = None;
            st.updated_at = ktime::now_rfc3339();
            let _ = write_status(&p, &st);
        }
    }
    Ok(true)
}

/// The session's local record, which must have sync enabled with a local path.
fn synced_record(ctx: &Ctx, name: &str) -> Result<(SessionRecord, PathBuf)> {
    let rec = ctx.store()?.load(name)?.ok_or_else(|| {
        Error::with_hint(
            format!("session \"{name}\" has no local session file, so there is nothing to sync from this machine"),
            "sync runs on the machine that started the session; use `kubectl kodama pull` to copy files from the pod",
        )
    })?;
    let path =
        match (&rec.sync.local_path, rec.sync.enabled) {
            (Some(p), true) if !p.is_empty() => PathBuf::from(p),
            _ => return Err(Error::with_hint(
                format!("session \"{name}\" was started without sync"),
                "start a session with --sync DIR to keep a local directory in step with the pod",
            )),
        };
    if !path.is_dir() {
        return Err(Error::with_hint(
            format!(
                "the sync directory {} of session \"{name}\" does not exist",
                path.display()
            ),
            "restore it (or get the files back with `kubectl kodama pull`), then run `kubectl kodama sync` again",
        ));
    }
    Ok((rec, path))
}

/// The ignore rules for `local` from the config (global + the template found from `local`).
pub fn sync_rules(ctx: &Ctx, local: &Path) -> Result<IgnoreRules> {
    let dir = ctx.config_dir().ok();
    let tmpl = config::find_template(None, Some(local), local).unwrap_or(None);
    let loaded = config::load(dir.as_deref(), tmpl.as_deref(), &Layer::default())?;
    let s = &loaded.settings.sync;
    let rules = IgnoreRules::new(
        local,
        IgnoreOptions::new(s.use_gitignore, s.exclude_patterns.clone()),
    )?;
    for w in rules.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(rules)
}

/// `sync <name> [--foreground | --once]`.
pub fn sync_cmd(ctx: &Ctx, args: &SyncArgs) -> Result<()> {
    let name = &args.name;
    if args.foreground && args.once {
        return Err(Error::usage(
            "--foreground and --once cannot be used together",
            None,
        ));
    }
    synced_record(ctx, name)?;
    if args.once {
        let was_running = stop_daemon(ctx, name)?;
        let res = sync_once(ctx, name);
        if was_running {
            spawn_daemon(ctx, name)?;
        }
        return res;
    }
    if args.foreground {
        stop_daemon(ctx, name)?;
        return run_engine(ctx, name, true);
    }
    spawn_daemon(ctx, name)?;
    let dir = ctx.config_dir()?;
    let p = paths(&dir, name);
    // Report the first outcome: connected, or why not.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = read_status(&dir, name);
        let pid = daemon_pid(ctx, name);
        let alive = pid.is_some();
        let ours = st.as_ref().is_some_and(|s| Some(s.pid) == pid);
        match st.as_ref().map(|s| s.state.as_str()) {
            Some("active") if alive && ours => {
                let pid = pid.unwrap_or_default();
                return super::print(&format!(
                    "Sync of session \"{name}\" is running in the background (pid {pid}); log: {}\n",
                    p.log.display()
                ));
            }
            Some("error") | Some("stopped") if !alive => {
                return Err(Error::with_hint(
                    format!(
                        "the background sync of session \"{name}\" stopped: {}",
                        st.and_then(|s| s.reason).unwrap_or_default()
                    ),
                    format!("see its log: {}", p.log.display()),
                ));
            }
            _ if !alive && Instant::now() > deadline - Duration::from_secs(25) => {
                return Err(Error::with_hint(
                    format!("the background sync of session \"{name}\" exited at once"),
                    format!("see its log: {}", p.log.display()),
                ));
            }
            _ => {}
        }
        if Instant::now() > deadline {
            let why = st.and_then(|s| s.reason).unwrap_or_default();
            return super::print(&format!(
                "Sync of session \"{name}\" started in the background but has not connected yet{}; it keeps retrying. Log: {}\n",
                if why.is_empty() { String::new() } else { format!(" ({why})") },
                p.log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sync_once(ctx: &Ctx, name: &str) -> Result<()> {
    let (_, local) = synced_record(ctx, name)?;
    let rules = sync_rules(ctx, &local)?;
    let mut opts = SyncOptions::new(WORKSPACE_DIR);
    opts.install = super::agentcmds::install_options();
    opts.state_file = Some(state_file(ctx, name)?);
    let mut engine = SyncEngine::new(rules, opts);
    let found = resolve::find(ctx, name)?;
    let remote = resolve::remote_for(ctx, &found)?;
    let st = engine
        .sync_once(&remote)
        .map_err(|e| e.context(format!("syncing session \"{name}\"")))?;
    super::print(&format!(
        "Synced {} into session \"{name}\": {} files ({} bytes) sent, {} deleted{}\n",
        local.display(),
        st.files,
        st.bytes,
        st.deletes,
        if st.failed > 0 {
            format!(", {} refused by the pod", st.failed)
        } else {
            String::new()
        }
    ))
}

/// The hidden `sync-daemon <name>`: the launcher stage (detach, write the pid file) or the daemon.
pub fn daemon(ctx: &Ctx, args: &NameArgs) -> Result<()> {
    config::validate_session_name(&args.name)
        .map_err(|e| Error::usage(format!("invalid session name \"{}\": {e}", args.name), None))?;
    match std::env::var(STAGE_ENV).as_deref() {
        Ok("launch") => launch(ctx, &args.name),
        _ => run_engine(ctx, &args.name, false),
    }
}

/// Launcher stage: start the daemon detached, record its pid, and return at once.
fn launch(ctx: &Ctx, name: &str) -> Result<()> {
    let dir = std::path::absolute(ctx.config_dir()?).map_err(|e| Error::io("config dir", e))?;
    let p = paths(&dir, name);
    ensure_dir(&p.dir)?;
    if let Ok(m) = fs::metadata(&p.log) {
        if m.len() > LOG_MAX {
            let _ = fs::rename(&p.log, p.log.with_extension("log.1"));
        }
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&p.log)
        .map_err(|e| Error::io(&p.log, e))?;
    let log2 = log.try_clone().map_err(|e| Error::io(&p.log, e))?;
    let exe = std::env::current_exe().map_err(|e| Error::io("current executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(STAGE_ENV, "run")
        .env("KODAMA_CONFIG_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    sys::detach_session(&mut cmd);
    let child = cmd
        .spawn()
        .map_err(|e| Error::io("kubectl-kodama sync-daemon", e))?;
    // The child is never waited for here: this launcher exits now, so init adopts and reaps it.
    write_atomic(&p.pid, format!("{}\n", child.id()).as_bytes())?;
    Ok(())
}

/// Live status lines for `sync --foreground`.
struct Foreground {
    tty: bool,
    last: std::sync::Mutex<String>,
}

impl Foreground {
    fn show(&self, s: &SyncStatus) {
        let line = match s.state {
            eng::SyncState::Active => format!(
                "sync: active ({}) · {} files, {} sent, {} deleted{}",
                s.transport,
                s.files_sent,
                eng::human_bytes(s.bytes_sent as f64),
                s.deletes,
                s.reason
                    .as_deref()
                    .map(|r| format!(" · last refusal: {r}"))
                    .unwrap_or_default()
            ),
            eng::SyncState::Connecting => format!(
                "sync: connecting{}",
                s.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            eng::SyncState::Error => format!("sync: error: {}", s.reason.as_deref().unwrap_or("")),
            eng::SyncState::Stopped => "sync: stopped".into(),
        };
        let line = term::sanitize_for_tty(&line);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if *last == line {
            return;
        }
        if self.tty && s.state == eng::SyncState::Active {
            eprint!("\r\x1b[K{line}");
        } else if self.tty {
            eprint!("\r\x1b[K{line}\n");
        } else {
            eprintln!("{line}");
        }
        *last = line;
    }
}

/// Run the sync engine for session `name` until stopped by a signal (Ok) or a safety stop (Err),
/// keeping the pid and status files current. `foreground`: also show live status lines.
fn run_engine(ctx: &Ctx, name: &str, foreground: bool) -> Result<()> {
    let dir = ctx.config_dir()?;
    let p = paths(&dir, name);
    ensure_dir(&p.dir)?;
    let me = std::process::id();
    if let Some(other) = read_pid(&p).filter(|pid| *pid != me && is_our_daemon(*pid, name)) {
        return Err(Error::with_hint(
            format!("the sync of session \"{name}\" already runs (pid {other})"),
            format!("restart it with `kubectl kodama sync {name}`"),
        ));
    }
    write_atomic(&p.pid, format!("{me}\n").as_bytes())?;
    let log = |msg: &str| {
        if !foreground {
            eprintln!("{} {}", ktime::now_rfc3339(), term::sanitize_for_tty(msg));
        }
    };
    let result = (|| -> Result<()> {
        let (_, local) = synced_record(ctx, name)?;
        let rules = sync_rules(ctx, &local)?;
        let mut opts = SyncOptions::new(WORKSPACE_DIR);
        opts.install = super::agentcmds::install_options();
        opts.state_file = Some(p.state.clone());
        let mut engine = SyncEngine::new(rules, opts);
        log(&format!(
            "sync of session \"{name}\" starting: {} -> {WORKSPACE_DIR} (pid {me})",
            local.display()
        ));

        let stop = StopHandle::new();
        let done = Arc::new(AtomicBool::new(false));
        let session_file = ctx.store()?.path_for(name)?;
        let session_exists = {
            let f = session_file.clone();
            move || f.exists()
        };
        // The last status, shared with the watcher thread's heartbeat (the engine reports nothing
        // while idle without the agent, and a silent status must not look like a hung process).
        let shared: Arc<std::sync::Mutex<Option<StatusFile>>> = Arc::default();
        let heartbeat = {
            let shared = Arc::clone(&shared);
            let p = p.clone();
            let session_exists = session_exists.clone();
            Box::new(move || {
                let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                if !session_exists() {
                    return;
                }
                if let Some(st) = g.as_mut() {
                    st.updated_at = ktime::now_rfc3339();
                    let _ = write_status(&p, st);
                }
            }) as Box<dyn Fn() + Send>
        };
        let watcher = spawn_watcher(stop.clone(), Arc::clone(&done), session_file, heartbeat)?;

        let fg = Foreground {
            tty: term::stderr_is_tty(),
            last: std::sync::Mutex::new(String::new()),
        };
        let prev = std::sync::Mutex::new((String::new(), 0u64, 0u64));
        let status = |s: &SyncStatus| {
            {
                let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
                let st = StatusFile::from_engine(s, me);
                // Never write into a deleted session's (or a removed config directory's) files.
                if session_exists() {
                    let _ = write_status(&p, &st);
                }
                *g = Some(st);
            }
            if foreground {
                fg.show(s);
            }
            let mut prev = prev.lock().unwrap_or_else(|p| p.into_inner());
            let word = format!(
                "{}|{}",
                state_word(s.state),
                s.reason.as_deref().unwrap_or("")
            );
            if prev.0 != word || prev.1 != s.files_sent || prev.2 != s.deletes {
                log(&format!(
                    "{}{} · {} files sent, {} deleted, {} reconnects{}",
                    state_word(s.state),
                    s.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default(),
                    s.files_sent,
                    s.deletes,
                    s.reconnects,
                    if s.transport.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", s.transport)
                    }
                ));
                *prev = (word, s.files_sent, s.deletes);
            }
        };
        let factory = || -> Result<Box<dyn Remote>> {
            // The session was deleted (its file removed): nothing left to sync to.
            if matches!(ctx.store().and_then(|st| st.load(name)), Ok(None)) {
                log("the session file is gone (session deleted); stopping");
                stop.stop();
                return Err(Error::msg(format!("session \"{name}\" was deleted")));
            }
            let found = resolve::find(ctx, name)?;
            let remote = resolve::remote_for(ctx, &found)?;
            Ok(Box::new(remote))
        };
        let res = engine.run(&factory, &stop, &status);
        done.store(true, Ordering::SeqCst);
        let _ = watcher.join();
        if foreground && term::stderr_is_tty() {
            eprintln!();
        }
        res
    })();
    match &result {
        Ok(()) => log("sync stopped"),
        Err(e) => {
            log(&format!("sync stopped with an error: {}", e.render()));
            // Record the error unless the engine already did (it reports its own safety stops).
            let st = read_status(&dir, name);
            if st
                .as_ref()
                .is_none_or(|s| s.pid != me || s.state != "error")
            {
                let mut s = st.filter(|s| s.pid == me).unwrap_or_default();
                s.state = "error".into();
                s.pid = me;
                s.reason = Some(e.to_string());
                s.updated_at = ktime::now_rfc3339();
                let _ = write_status(&p, &s);
            }
        }
    }
    if read_pid(&p) == Some(me) {
        let _ = fs::remove_file(&p.pid);
    }
    // A deleted session leaves no sync files behind.
    if matches!(ctx.store().and_then(|st| st.path_for(name)), Ok(f) if !f.exists()) {
        for f in [&p.status, &p.state] {
            let _ = fs::remove_file(f);
        }
    }
    result
}

/// A thread that turns SIGTERM/SIGINT/SIGHUP into `stop.stop()`, and also stops the engine when the
/// session file disappears (the session was deleted, or the whole config directory removed); it ends
/// when `done` is set.
fn spawn_watcher(
    stop: StopHandle,
    done: Arc<AtomicBool>,
    session_file: PathBuf,
    heartbeat: Box<dyn Fn() + Send>,
) -> Result<std::thread::JoinHandle<()>> {
    let mut pipes = Vec::new();
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        pipes.push(SignalPipe::new(sig)?);
    }
    std::thread::Builder::new()
        .name("sync signals".into())
        .spawn(move || {
            let fds: Vec<_> = pipes.iter().map(SignalPipe::fd).collect();
            let mut checked = Instant::now();
            let mut beat = Instant::now();
            while !done.load(Ordering::SeqCst) {
                let ready = term::poll_readable(&fds, Duration::from_millis(100))
                    .unwrap_or_else(|_| vec![false; fds.len()]);
                if ready.iter().any(|r| *r) || pipes.iter().any(SignalPipe::take) {
                    stop.stop();
                }
                if beat.elapsed() >= HEARTBEAT {
                    beat = Instant::now();
                    heartbeat();
                }
                if checked.elapsed() >= Duration::from_secs(2) {
                    checked = Instant::now();
                    if !stop.is_stopped()
                        && matches!(fs::symlink_metadata(&session_file), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
                    {
                        eprintln!(
                            "{} the session file {} is gone (session deleted); stopping",
                            ktime::now_rfc3339(),
                            session_file.display()
                        );
                        stop.stop();
                    }
                }
            }
        })
        .map_err(|e| Error::io("", e).context("starting the signal thread"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kodama-syncd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn status(state: &str, pid: u32, reason: Option<&str>) -> StatusFile {
        StatusFile {
            state: state.into(),
            pid,
            last_sync: Some(ktime::now_rfc3339()),
            reason: reason.map(str::to_string),
            updated_at: ktime::now_rfc3339(),
            ..Default::default()
        }
    }

    #[test]
    fn status_file_is_private_and_replaced_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("atomic");
        let p = paths(&d, "s1");
        ensure_dir(&p.dir).expect("mkdir");
        write_status(&p, &status("active", 7, None)).expect("write");
        let mode = fs::metadata(&p.status).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_status(&d, "s1").map(|s| s.pid), Some(7));
        let leftovers: Vec<_> = fs::read_dir(&p.dir)
            .expect("ls")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn states_from_status_file_and_pid() {
        let d = tmpdir("states");
        // No file: Inactive.
        assert_eq!(state_from(&d, "s"), SyncState::Inactive);
        let p = paths(&d, "s");
        ensure_dir(&p.dir).expect("mkdir");
        // A dead pid (or one that is not our daemon) that claims Active: loud Error.
        let dead = u32::MAX - 7;
        write_status(&p, &status("active", dead, None)).expect("write");
        match state_from(&d, "s") {
            SyncState::Error { reason } => {
                assert!(reason.contains("gone without a clean stop"), "{reason}");
                assert!(reason.contains("kubectl kodama sync s"), "{reason}");
            }
            other => panic!("expected Error, got {other:?}"),
        }
        // This test process is alive but is not a sync-daemon: same.
        write_status(&p, &status("active", std::process::id(), None)).expect("write");
        assert!(matches!(state_from(&d, "s"), SyncState::Error { .. }));
        // A recorded safety stop keeps its reason.
        write_status(&p, &status("error", dead, Some("mass deletion"))).expect("write");
        assert_eq!(
            state_from(&d, "s"),
            SyncState::Error {
                reason: "mass deletion".into()
            }
        );
        assert_eq!(state_from(&d, "s").column(), "Error");
        // A clean stop: Inactive.
        write_status(&p, &status("stopped", dead, None)).expect("write");
        assert_eq!(state_from(&d, "s"), SyncState::Inactive);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn column_shows_the_age_of_the_last_sync() {
        let t = SystemTime::now() - Duration::from_secs(5);
        let c = SyncState::Active { last_sync: Some(t) }.column();
        assert!(c == "Active (5s)" || c == "Active (6s)", "{c}");
        assert_eq!(SyncState::Inactive.column(), "Inactive");
        assert_eq!(SyncState::Inactive.reason(), None);
    }

    #[test]
    fn only_a_matching_sync_daemon_counts() {
        // Our own test process is alive but its cmdline is not `sync-daemon <name>`.
        assert!(!is_our_daemon(std::process::id(), "s"));
        assert!(!is_our_daemon(1, "s"));
        assert!(!is_our_daemon(0, "s"));
    }

    #[test]
    fn global_flags_are_forwarded_with_an_absolute_kubeconfig() {
        let g = GlobalFlags {
            kubeconfig: Some(PathBuf::from("kc.yaml")),
            namespace: Some("team".into()),
            request_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        let a = global_args(&g);
        assert_eq!(a[0], "--kubeconfig");
        assert!(Path::new(&a[1]).is_absolute());
        assert_eq!(
            &a[2..],
            &["--namespace", "team", "--request-timeout", "30s"]
        );
    }
}
