//! The sync engine: the initial upload (one tar stream over one exec) and continuous sync (a notify
//! watcher, burst coalescing, changes applied through one long-lived agent connection), with
//! reconnects, rescans, keepalives, the mass-deletion guard and status reporting.
//!
//! Continuous sync is state-based: watcher events only say which paths are dirty; each batch re-reads
//! those paths locally and plans against `known` (what the pod was last confirmed to have), so event
//! order never matters and a lost event is repaired by the next rescan. After every (re)connect the
//! pod's tree is listed and reconciled three-way (see `sync::plan`), so edits made while disconnected
//! are sent and nothing the pod created on its own is deleted.
//!
//! May import: error, remote, agent::{client, install}, sync::{ignore, scan, plan, archive}.

use crate::agent::client::{AgentClient, ApplyStats, Outcome};
use crate::agent::install::{self, AgentMode, InstallOptions};
use crate::error::{Error, Result};
use crate::remote::Remote;
use crate::sync::archive::{self, ArchiveStats};
use crate::sync::ignore::IgnoreRules;
use crate::sync::plan::{self, Change, DeletionGuard};
use crate::sync::scan::{self, Entry, Kind, Snapshot};
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Progress of the initial upload, for a TTY progress line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub elapsed: Duration,
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl Progress {
    /// A one-line rendering for a TTY: `1200/20000 files, 45.2 MiB/200.0 MiB, 12.3 MiB/s`.
    pub fn line(&self) -> String {
        format!(
            "{}/{} files, {}/{}, {}/s",
            self.files_done,
            self.files_total,
            human_bytes(self.bytes_done as f64),
            human_bytes(self.bytes_total as f64),
            human_bytes(self.rate())
        )
    }

    /// Bytes per second so far.
    pub fn rate(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s <= 0.0 {
            0.0
        } else {
            self.bytes_done as f64 / s
        }
    }
}

/// What the initial upload sent.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub archive: ArchiveStats,
    pub elapsed: Duration,
    /// Local entries that could not be read (with the reason).
    pub skipped: Vec<String>,
    /// The tree that was sent: seed [`SyncEngine::with_known`] with it.
    pub sent: Snapshot,
    /// "agent", or "fallback: <why>" when the pod's tar did the extraction.
    pub transport: String,
}

/// The shell command used to extract a tar into `root` when the agent is not available.
fn fallback_extract_argv(root: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "mkdir -p -- \"$1\" && exec tar -x -f - -C \"$1\"".into(),
        "sh".into(),
        root.into(),
    ]
}

/// Upload the local tree (the rules' root) to `root` in the pod as one tar stream through one exec:
/// `agent extract` or, in fallback mode, `tar -x`. Nothing is written to a temporary file; files are
/// streamed from disk. `progress` is called at most every 100 ms and once at the end.
pub fn initial_sync(
    remote: &dyn Remote,
    mode: &AgentMode,
    rules: &IgnoreRules,
    root: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Stats> {
    let start = Instant::now();
    let scanned = scan::scan(rules, "")?;
    let snap = scanned.snapshot;
    let files_total = snap.len() as u64;
    let bytes_total: u64 = snap
        .values()
        .filter(|e| e.kind == Kind::File)
        .map(|e| e.size)
        .sum();
    let (argv, mut transport) = match mode {
        AgentMode::Agent { path } => (
            install::agent_argv(path, "extract", root, &[]),
            "agent".to_string(),
        ),
        AgentMode::Fallback { reason } => {
            (fallback_extract_argv(root), format!("fallback: {reason}"))
        }
    };
    let mut send = |argv: &[String]| {
        stream_tar(remote, argv, rules.root(), &snap, &mut |a| {
            progress(&Progress {
                files_done: a.entries(),
                files_total,
                bytes_done: a.bytes,
                bytes_total,
                elapsed: start.elapsed(),
            })
        })
    };
    let mut result = send(&argv);
    // The agent could not run at all (exec failure 126/127, a crash 128+n): extraction is
    // idempotent, so send the same stream to the pod's own tar instead. A refusal (exit 1) is final.
    if let AgentMode::Agent { .. } = mode {
        let crashed = match &result {
            Ok((code, _, _)) => *code >= 126,
            Err(_) => true,
        };
        if crashed {
            let why = match &result {
                Ok((code, stderr, _)) => format!("the agent exited {code}: {stderr}"),
                Err(e) => e.to_string(),
            };
            result = send(&fallback_extract_argv(root));
            transport = format!("fallback: {why}");
        }
    }
    let (code, stderr, stats) = result?;
    if code != 0 {
        return Err(Error::with_hint(
            format!("uploading {} to {root} in the pod failed (exit {code}): {stderr}", rules.root().display()),
            "check the pod's free space and that the workspace is writable; `kubectl kodama sync <name> --once` retries",
        ));
    }
    // What could not be read was not sent: it is not part of the agreed state.
    let mut sent = snap;
    let mut skipped = scanned.skipped;
    for (path, why) in &stats.skipped {
        sent.remove(path);
        skipped.push(format!("{path}: {why}"));
    }
    let st = Stats {
        archive: stats,
        elapsed: start.elapsed(),
        skipped,
        sent,
        transport,
    };
    progress(&Progress {
        files_done: st.archive.entries(),
        files_total,
        bytes_done: st.archive.bytes,
        bytes_total,
        elapsed: st.elapsed,
    });
    Ok(st)
}

/// Run `argv`, stream a tar of `snap` into its stdin, collect stderr; returns (exit code, stderr).
fn stream_tar(
    remote: &dyn Remote,
    argv: &[String],
    local_root: &Path,
    snap: &Snapshot,
    progress: &mut dyn FnMut(&ArchiveStats),
) -> Result<(i32, String, ArchiveStats)> {
    let mut p = remote.exec(argv)?;
    let stdin = p
        .take_stdin()
        .ok_or_else(|| Error::msg("remote tar has no stdin"))?;
    let out = p.take_stdout();
    let err = p.take_stderr();
    let drain_out = std::thread::spawn(move || {
        if let Some(mut o) = out {
            let _ = std::io::copy(&mut o, &mut std::io::sink());
        }
    });
    let drain_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut e) = err {
            let _ = e.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).trim().to_string()
    });
    let mut last = Instant::now();
    let mut w = std::io::BufWriter::with_capacity(256 * 1024, stdin);
    let res = archive::write_tar(&mut w, local_root, snap, &mut |a| {
        if last.elapsed() >= Duration::from_millis(100) {
            last = Instant::now();
            progress(a);
        }
    });
    let flushed = w.flush();
    drop(w);
    let _ = drain_out.join();
    let stderr = drain_err.join().unwrap_or_default();
    let code = p.wait()?;
    match res {
        Ok(stats) => {
            flushed.map_err(|e| Error::io("", e).context("sending the tar stream"))?;
            Ok((code, stderr, stats))
        }
        Err(e) if code != 0 => Err(e.context(format!("remote side exited {code}: {stderr}"))),
        Err(e) => Err(e),
    }
}

/// Tells a running engine to stop; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn new() -> StopHandle {
        StopHandle::default()
    }
    /// Ask the engine to stop; it returns within about 100 ms.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The engine's state for `list`/`status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SyncState {
    /// Connecting or reconnecting to the pod.
    Connecting,
    /// Connected and in sync as of `last_sync`.
    Active,
    /// Not syncing: see `reason`.
    Error,
    /// Stopped on request.
    Stopped,
}

/// A status report, sent on every state change, after every batch and after every keepalive.
/// Serializable, for the status file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyncStatus {
    pub state: SyncState,
    /// When the pod last matched local (end of the last successful batch or rescan).
    pub last_sync: Option<SystemTime>,
    /// Why the state is Error or Connecting, or the last refused change while Active.
    pub reason: Option<String>,
    pub files_sent: u64,
    pub bytes_sent: u64,
    pub deletes: u64,
    /// Changes the pod refused (each reported in `reason` when it happens).
    pub failed: u64,
    pub reconnects: u64,
    /// "agent" or "fallback: <why>".
    pub transport: String,
}

impl SyncStatus {
    fn new() -> SyncStatus {
        SyncStatus {
            state: SyncState::Connecting,
            last_sync: None,
            reason: None,
            files_sent: 0,
            bytes_sent: 0,
            deletes: 0,
            failed: 0,
            reconnects: 0,
            transport: String::new(),
        }
    }
}

/// Tuning of the continuous sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The pod-side root, e.g. `/workspace`.
    pub root: String,
    /// How to get the agent into the pod.
    pub install: InstallOptions,
    pub guard: DeletionGuard,
    /// Mirror mass deletions anyway (`--force`).
    pub allow_mass_delete: bool,
    /// Quiet time that ends a burst of events.
    pub coalesce: Duration,
    /// Longest a burst is held before it is sent anyway.
    pub max_batch_wait: Duration,
    /// Ping the agent after this much idle time.
    pub keepalive: Duration,
    /// Longest pause between reconnect attempts.
    pub backoff_max: Duration,
    /// Where to keep the agreed state between runs (see [`save_known`]); None = memory only. Without
    /// it, a restarted engine cannot tell a local deletion from a file the pod made, so it deletes
    /// nothing until it has seen a deletion happen.
    pub state_file: Option<PathBuf>,
}

impl SyncOptions {
    /// Defaults for the pod root `root`.
    pub fn new(root: &str) -> SyncOptions {
        SyncOptions {
            root: root.to_string(),
            install: InstallOptions::default(),
            guard: DeletionGuard::default(),
            allow_mass_delete: false,
            coalesce: Duration::from_millis(10),
            max_batch_wait: Duration::from_millis(250),
            keepalive: Duration::from_secs(15),
            backoff_max: Duration::from_secs(10),
            state_file: None,
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StateFile {
    version: u32,
    local: PathBuf,
    root: String,
    entries: Snapshot,
}

/// Write the agreed state for (`local`, `root`) to `path` atomically (temp file + rename).
pub fn save_known(path: &Path, local: &Path, root: &str, known: &Snapshot) -> Result<()> {
    let st = StateFile {
        version: 1,
        local: local.to_path_buf(),
        root: root.to_string(),
        entries: known.clone(),
    };
    let data =
        serde_json::to_vec(&st).map_err(|e| Error::msg(format!("encoding sync state: {e}")))?;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Read the agreed state saved by [`save_known`]; None when there is none, it is unreadable, or it
/// belongs to another local directory or pod root (a stale state is never trusted).
pub fn load_known(path: &Path, local: &Path, root: &str) -> Option<Snapshot> {
    let data = std::fs::read(path).ok()?;
    let st: StateFile = serde_json::from_slice(&data).ok()?;
    (st.version == 1 && st.local == local && st.root == root).then_some(st.entries)
}

enum WatchMsg {
    Paths(Vec<PathBuf>),
    Rename(PathBuf, PathBuf),
    /// The watcher lost track (queue overflow, error): everything is re-read.
    Rescan,
}

/// How a connected session ended.
enum End {
    Stopped,
    Lost(Error),
    Fatal(Error),
}

enum Conn {
    Agent(AgentClient),
    /// tar/sh over the session's remote, one exec per batch.
    Fallback,
}

/// Continuous one-way sync of a local tree into the pod.
pub struct SyncEngine {
    rules: IgnoreRules,
    opts: SyncOptions,
    known: Option<Snapshot>,
    status: SyncStatus,
    watched: HashSet<String>,
    recent_deletes: VecDeque<(Instant, usize)>,
    /// The last change the pod refused in the current batch (reported with the next status).
    refusal: Option<String>,
    /// Consecutive agent start failures, and the reason once we gave up on the agent.
    agent_failures: u32,
    agent_broken: Option<String>,
    /// The agreed state changed since it was last saved, and when that was.
    unsaved: bool,
    saved_at: Instant,
}

impl SyncEngine {
    /// An engine for the rules' root (the local directory) and the pod root in `opts`.
    /// When `opts.state_file` holds a state for this local directory and pod root, it is loaded.
    pub fn new(rules: IgnoreRules, opts: SyncOptions) -> SyncEngine {
        let known = opts
            .state_file
            .as_deref()
            .and_then(|f| load_known(f, rules.root(), &opts.root));
        SyncEngine {
            rules,
            opts,
            known,
            status: SyncStatus::new(),
            watched: HashSet::new(),
            recent_deletes: VecDeque::new(),
            refusal: None,
            agent_failures: 0,
            agent_broken: None,
            unsaved: false,
            saved_at: Instant::now(),
        }
    }

    /// Save the agreed state to `opts.state_file` (if any): always when `now`, else at most every 5 s.
    fn persist(&mut self, now: bool) {
        self.unsaved = true;
        let Some(f) = self.opts.state_file.clone() else {
            return;
        };
        if !now && self.saved_at.elapsed() < Duration::from_secs(5) {
            return;
        }
        if let Some(k) = &self.known {
            if save_known(&f, self.rules.root(), &self.opts.root, k).is_ok() {
                self.unsaved = false;
                self.saved_at = Instant::now();
            }
        }
    }

    /// Start from a known agreed state (e.g. [`Stats::sent`] of the initial sync), so local deletions
    /// made before the first connect are propagated.
    pub fn with_known(mut self, known: Snapshot) -> SyncEngine {
        self.known = Some(known);
        self
    }

    /// The last state the pod was confirmed to have (local paths only).
    pub fn known(&self) -> Option<&Snapshot> {
        self.known.as_ref()
    }

    /// One reconcile pass over an existing connection: list both sides, send what differs. For
    /// `sync --once`.
    pub fn sync_once(&mut self, remote: &dyn Remote) -> Result<ApplyStats> {
        let mut conn = self.connect(remote)?;
        let r = self.rescan(remote, &mut conn);
        if self.unsaved {
            self.persist(true);
        }
        if let Conn::Agent(c) = conn {
            let _ = c.close();
        }
        r
    }

    /// Run until stopped (Ok) or a safety stop / unrecoverable local error (Err). Connection losses
    /// are retried with backoff through `factory`, each followed by a rescan.
    pub fn run(
        &mut self,
        factory: &dyn Fn() -> Result<Box<dyn Remote>>,
        stop: &StopHandle,
        status: &dyn Fn(&SyncStatus),
    ) -> Result<()> {
        let (tx, rx) = mpsc::channel::<WatchMsg>();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let msg = match res {
                Ok(ev) => {
                    if ev.kind.is_access() {
                        return;
                    }
                    if ev.need_rescan() {
                        WatchMsg::Rescan
                    } else if let (
                        EventKind::Modify(notify::event::ModifyKind::Name(
                            notify::event::RenameMode::Both,
                        )),
                        [a, b],
                    ) = (&ev.kind, ev.paths.as_slice())
                    {
                        WatchMsg::Rename(a.clone(), b.clone())
                    } else {
                        WatchMsg::Paths(ev.paths)
                    }
                }
                Err(_) => WatchMsg::Rescan,
            };
            let _ = tx.send(msg);
        })
        .map_err(|e| Error::msg(format!("starting the file watcher: {e}")));
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                self.set(status, SyncState::Error, Some(e.to_string()));
                return Err(e);
            }
        };
        if let Err(e) = self.watch_tree(&mut watcher, "") {
            self.set(status, SyncState::Error, Some(e.to_string()));
            return Err(e);
        }
        self.set(status, SyncState::Connecting, None);

        let mut backoff = Duration::from_millis(100);
        loop {
            if stop.is_stopped() {
                self.set(status, SyncState::Stopped, None);
                return Ok(());
            }
            let connected = factory().and_then(|remote| {
                let conn = self.connect(&*remote)?;
                Ok((remote, conn))
            });
            let end = match connected {
                Ok((remote, conn)) => {
                    backoff = Duration::from_millis(100);
                    self.session(&*remote, conn, &rx, &mut watcher, stop, status)
                }
                Err(e) => End::Lost(e),
            };
            match end {
                End::Stopped => {
                    if self.unsaved {
                        self.persist(true);
                    }
                    self.set(status, SyncState::Stopped, None);
                    return Ok(());
                }
                End::Fatal(e) => {
                    if self.unsaved {
                        self.persist(true);
                    }
                    self.set(status, SyncState::Error, Some(e.to_string()));
                    return Err(e);
                }
                End::Lost(e) => {
                    self.status.reconnects += 1;
                    self.set(
                        status,
                        SyncState::Connecting,
                        Some(format!("{e}; reconnecting in {} ms", backoff.as_millis())),
                    );
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !stop.is_stopped() {
                        std::thread::sleep(Duration::from_millis(20).min(backoff));
                    }
                    backoff = (backoff * 2).min(self.opts.backoff_max);
                }
            }
        }
    }

    /// Report a state. Active means the pod matches local as of now (a change the pod refused is
    /// reported in `reason` and counted in `failed`).
    fn set(&mut self, status: &dyn Fn(&SyncStatus), state: SyncState, reason: Option<String>) {
        self.status.state = state;
        self.status.reason = reason;
        if state == SyncState::Active {
            self.status.last_sync = Some(SystemTime::now());
        }
        status(&self.status);
    }

    fn connect(&mut self, remote: &dyn Remote) -> Result<Conn> {
        let mode = match &self.agent_broken {
            Some(why) => AgentMode::Fallback {
                reason: why.clone(),
            },
            None => install::ensure_agent(remote, &self.opts.install)?,
        };
        match mode {
            AgentMode::Agent { path } => {
                self.status.transport = "agent".into();
                let argv = install::agent_argv(&path, "serve", &self.opts.root, &[]);
                match AgentClient::connect(remote, &argv) {
                    Ok(c) => {
                        self.agent_failures = 0;
                        Ok(Conn::Agent(c))
                    }
                    Err(e) => {
                        // The pod answered the probe, yet the agent keeps failing to start (a
                        // crashing binary, a noexec mount): stop insisting and use tar/sh instead.
                        self.agent_failures += 1;
                        if self.agent_failures >= 3 {
                            self.agent_broken =
                                Some(format!("the in-pod agent failed to start 3 times: {e}"));
                        }
                        Err(e)
                    }
                }
            }
            AgentMode::Fallback { reason } => {
                self.status.transport = format!("fallback: {reason}");
                Ok(Conn::Fallback)
            }
        }
    }

    fn watch_tree(&mut self, w: &mut notify::RecommendedWatcher, sub: &str) -> Result<()> {
        let root = self.rules.root().to_path_buf();
        let mut dirs: Vec<String> = Vec::new();
        if sub.is_empty() {
            dirs.push(String::new());
        }
        let scanned = scan::scan(&self.rules, sub)?;
        dirs.extend(
            scanned
                .snapshot
                .iter()
                .filter(|(_, e)| e.kind == Kind::Dir)
                .map(|(p, _)| p.clone()),
        );
        for d in dirs {
            if self.watched.contains(&d) {
                continue;
            }
            let abs = if d.is_empty() {
                root.clone()
            } else {
                root.join(&d)
            };
            match w.watch(&abs, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d);
                }
                Err(e) => {
                    let text = e.to_string();
                    if text.contains("No space left")
                        || text.contains("max_user_watches")
                        || text.contains("limit")
                    {
                        return Err(Error::with_hint(
                            format!("watching {}: {text}", abs.display()),
                            "raise fs.inotify.max_user_watches (sysctl) or add large directories to .kodamaignore",
                        ));
                    }
                    // The directory vanished meanwhile: the next event or rescan deals with it.
                }
            }
        }
        Ok(())
    }

    fn rel_of(&self, p: &Path) -> Option<String> {
        let rel = p.strip_prefix(self.rules.root()).ok()?;
        let s = rel.to_str()?;
        Some(s.trim_matches('/').to_string())
    }

    /// Full reconcile: list the pod, plan three-way, guard, apply.
    fn rescan(&mut self, remote_io: &dyn Remote, conn: &mut Conn) -> Result<ApplyStats> {
        let local = self.local_full()?;
        let remote = match conn {
            Conn::Agent(c) => {
                let listed = c.list(
                    "",
                    self.rules.options().use_gitignore,
                    self.rules.pod_patterns(),
                )?;
                listed
                    .into_iter()
                    .filter(|(p, e)| !self.rules.is_ignored(p, e.kind == Kind::Dir))
                    .collect()
            }
            // Without the agent: find + stat, or (no such tools) what was last confirmed.
            Conn::Fallback => match fallback_list(remote_io, &self.opts.root) {
                Some(listed) => listed
                    .into_iter()
                    .filter(|(p, e)| !self.rules.is_ignored(p, e.kind == Kind::Dir))
                    .collect(),
                None => self.known.clone().unwrap_or_default(),
            },
        };
        let changes = plan::plan(&local, &remote, self.known.as_ref());
        let total = scan::count_files(self.known.as_ref().unwrap_or(&remote));
        self.guard(&changes, total, scan::count_files(&local))?;
        let (outcomes, stats) = self.apply(remote_io, conn, &changes)?;
        let mut after = remote;
        for (c, o) in changes.iter().zip(&outcomes) {
            apply_to_known(&mut after, c, o);
        }
        after.retain(|p, _| local.contains_key(p));
        self.known = Some(after);
        self.persist(true);
        Ok(stats)
    }

    fn local_full(&self) -> Result<Snapshot> {
        let root = self.rules.root();
        if !root.is_dir() {
            return Err(stopped(root_gone(root)));
        }
        Ok(scan::scan(&self.rules, "")?.snapshot)
    }

    fn guard(&mut self, changes: &[Change], total: usize, local_files: usize) -> Result<()> {
        if self.opts.allow_mass_delete {
            return Ok(());
        }
        let deleted = plan::count_file_deletes(changes);
        let now = Instant::now();
        while self
            .recent_deletes
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(5))
        {
            self.recent_deletes.pop_front();
        }
        let recent: usize = self.recent_deletes.iter().map(|(_, n)| n).sum();
        if let Some(why) = self
            .opts
            .guard
            .check(deleted + recent, total + recent, local_files)
        {
            return Err(stopped(Error::with_hint(
                format!("safety stop: {why}; these deletions were not sent to the pod"),
                "if the deletion was intended, run `kubectl kodama sync <name> --once --force`; \
                 otherwise restore the files (the pod still has them: `kubectl kodama pull <name>`)",
            )));
        }
        if deleted > 0 {
            self.recent_deletes.push_back((now, deleted));
        }
        Ok(())
    }

    fn apply(
        &mut self,
        remote: &dyn Remote,
        conn: &mut Conn,
        changes: &[Change],
    ) -> Result<(Vec<Outcome>, ApplyStats)> {
        if changes.is_empty() {
            return Ok((Vec::new(), ApplyStats::default()));
        }
        let (outcomes, stats) = match conn {
            Conn::Agent(c) => c.apply(self.rules.root(), changes)?,
            Conn::Fallback => fallback_apply(remote, self.rules.root(), &self.opts.root, changes)?,
        };
        self.status.files_sent += stats.files;
        self.status.bytes_sent += stats.bytes;
        self.status.deletes += stats.deletes;
        self.status.failed += stats.failed;
        for o in &outcomes {
            if let Outcome::Failed(why) = o {
                self.refusal = Some(format!("the pod refused a change: {why}"));
            }
        }
        Ok((outcomes, stats))
    }

    fn session(
        &mut self,
        remote: &dyn Remote,
        mut conn: Conn,
        rx: &Receiver<WatchMsg>,
        watcher: &mut notify::RecommendedWatcher,
        stop: &StopHandle,
        status: &dyn Fn(&SyncStatus),
    ) -> End {
        // Events so far are covered by the rescan.
        while rx.try_recv().is_ok() {}
        if let Err(e) = self.rescan_classified(remote, &mut conn) {
            return e;
        }
        let refused = self.refusal.take();
        self.set(status, SyncState::Active, refused);
        let mut idle_since = Instant::now();
        loop {
            if stop.is_stopped() {
                if let Conn::Agent(c) = conn {
                    let _ = c.close();
                }
                return End::Stopped;
            }
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    if idle_since.elapsed() >= self.opts.keepalive {
                        idle_since = Instant::now();
                        if let Conn::Agent(c) = &mut conn {
                            if let Err(e) = c.ping() {
                                return End::Lost(e);
                            }
                            // Connected and nothing pending: still in sync as of now.
                            self.set(status, SyncState::Active, None);
                        }
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return End::Fatal(Error::msg("the file watcher stopped"));
                }
            };
            // Coalesce the burst: keep collecting until it is quiet for `coalesce`.
            let started = Instant::now();
            let mut batch = vec![first];
            while started.elapsed() < self.opts.max_batch_wait {
                match rx.recv_timeout(self.opts.coalesce) {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let res = self.process_batch(remote, &mut conn, batch, watcher);
            idle_since = Instant::now();
            match res {
                Ok(()) => {
                    self.persist(false);
                    let refused = self.refusal.take();
                    self.set(status, SyncState::Active, refused);
                }
                Err(e) => return e,
            }
        }
    }

    fn rescan_classified(
        &mut self,
        remote: &dyn Remote,
        conn: &mut Conn,
    ) -> std::result::Result<(), End> {
        self.rescan(remote, conn).map(|_| ()).map_err(classify)
    }

    fn process_batch(
        &mut self,
        remote: &dyn Remote,
        conn: &mut Conn,
        batch: Vec<WatchMsg>,
        watcher: &mut notify::RecommendedWatcher,
    ) -> std::result::Result<(), End> {
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        let mut event_paths: BTreeSet<String> = BTreeSet::new();
        let mut renames: Vec<(String, String)> = Vec::new();
        let mut rescan = false;
        for m in batch {
            match m {
                WatchMsg::Paths(ps) => {
                    for p in ps {
                        match self.rel_of(&p) {
                            Some(r) => {
                                event_paths.insert(r.clone());
                                dirty.insert(r);
                            }
                            None => rescan = true,
                        }
                    }
                }
                WatchMsg::Rename(a, b) => match (self.rel_of(&a), self.rel_of(&b)) {
                    (Some(a), Some(b)) => {
                        dirty.insert(a.clone());
                        dirty.insert(b.clone());
                        renames.push((a, b));
                    }
                    _ => rescan = true,
                },
                WatchMsg::Rescan => rescan = true,
            }
        }
        if !self.rules.root().is_dir() {
            return Err(End::Fatal(stopped(root_gone(self.rules.root()))));
        }
        if dirty.iter().any(|p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            IgnoreRules::is_rules_file(name)
        }) {
            self.rules.invalidate();
            // New rules can un-ignore anything below the changed file's directory.
            let dirs: Vec<String> = dirty
                .iter()
                .filter(|p| IgnoreRules::is_rules_file(p.rsplit('/').next().unwrap_or(p)))
                .map(|p| {
                    p.rsplit_once('/')
                        .map(|(d, _)| d.to_string())
                        .unwrap_or_default()
                })
                .collect();
            dirty.extend(dirs);
        }
        if rescan || dirty.contains("") {
            // The root itself changed (or the watcher lost track): it may be a new directory by
            // now (rm -rf && git clone), so every watch is set up again.
            self.watched.clear();
            self.watch_tree(watcher, "").map_err(End::Fatal)?;
            return self.rescan_classified(remote, conn);
        }
        let known = self.known.get_or_insert_with(Snapshot::new);
        // 1. Renames the watcher paired up, when the old path is known and the new one is new.
        let mut rename_changes = Vec::new();
        for (a, b) in renames {
            let Some(ke) = known.get(&a) else { continue };
            if known.contains_key(&b) || self.rules.is_ignored(&a, ke.kind == Kind::Dir) {
                continue;
            }
            let la = scan::stat_path(&self.rules.root().join(&a)).ok().flatten();
            let lb = scan::stat_path(&self.rules.root().join(&b)).ok().flatten();
            if la.is_none()
                && lb.as_ref().is_some_and(|e| e.kind == ke.kind)
                && !self.rules.is_ignored(&b, ke.kind == Kind::Dir)
            {
                rename_changes.push(Change::Rename { from: a, to: b });
            }
        }
        if !rename_changes.is_empty() {
            let (outcomes, _) = self
                .apply(remote, conn, &rename_changes)
                .map_err(classify)?;
            let known = self.known.get_or_insert_with(Snapshot::new);
            for (c, o) in rename_changes.iter().zip(&outcomes) {
                apply_to_known(known, c, o);
            }
        }
        // 2. Everything dirty, re-read and planned against what the pod has.
        // Only the topmost dirty paths: a dirty directory is re-read whole. O(paths × depth).
        let mut top: Vec<String> = Vec::new();
        let mut top_set: HashSet<&str> = HashSet::new();
        for p in &dirty {
            let mut covered = false;
            let mut anc = p.as_str();
            while let Some((parent, _)) = anc.rsplit_once('/') {
                if top_set.contains(parent) {
                    covered = true;
                    break;
                }
                anc = parent;
            }
            if !covered {
                top_set.insert(p.as_str());
                top.push(p.clone());
            }
        }
        // Watch new directories before reading them, so nothing created meanwhile is missed; forget
        // watches of directories that are gone (renamed or deleted), so a new one of that name is
        // watched again.
        for p in &top {
            match std::fs::symlink_metadata(self.rules.root().join(p)) {
                Ok(m) if m.is_dir() => self.watch_tree(watcher, p).map_err(End::Fatal)?,
                Ok(_) => {}
                Err(_) => self.watched.retain(|w| !scan::is_at_or_under(w, p)),
            }
        }
        let mut local = Snapshot::new();
        let mut base = Snapshot::new();
        let empty = Snapshot::new();
        let known = self.known.as_ref().unwrap_or(&empty);
        for p in &top {
            let s = scan::scan(&self.rules, p).map_err(End::Fatal)?;
            local.extend(s.snapshot);
            // Ignored paths are left alone in the pod: drop them from both sides.
            for (k, e) in scan::subtree(known, p) {
                if !self.rules.is_ignored(k, e.kind == Kind::Dir) {
                    base.insert(k.clone(), e.clone());
                }
            }
            // Parents the pod does not have yet.
            let mut anc = p.as_str();
            while let Some((parent, _)) = anc.rsplit_once('/') {
                if !known.contains_key(parent) {
                    if let Ok(Some(e)) = scan::stat_path(&self.rules.root().join(parent)) {
                        if e.kind == Kind::Dir {
                            local.insert(parent.to_string(), e);
                        }
                    }
                }
                anc = parent;
            }
        }
        let mut changes = plan::plan(&local, &base, Some(&base));
        // The watcher said these files changed: file times are only as fine as the kernel's tick, so
        // a same-size edit within one tick looks unchanged. Send them anyway.
        let planned: HashSet<&str> = changes.iter().map(Change::path).collect();
        let forced: Vec<Change> = event_paths
            .iter()
            .filter(|p| !planned.contains(p.as_str()))
            .filter_map(|p| match (local.get(p), base.get(p)) {
                (Some(l), Some(b)) if l.kind == Kind::File && l.same(b) => Some(Change::Write {
                    path: p.clone(),
                    entry: l.clone(),
                }),
                _ => None,
            })
            .collect();
        drop(planned);
        let at = changes
            .iter()
            .position(|c| matches!(c, Change::Delete { .. }))
            .unwrap_or(changes.len());
        changes.splice(at..at, forced);
        if changes.is_empty() {
            return Ok(());
        }
        let deletes = plan::count_file_deletes(&changes);
        let creates = changes
            .iter()
            .filter(|c| matches!(c, Change::Write { .. } | Change::Symlink { .. }))
            .count();
        let total = scan::count_files(known);
        let local_files = (total + creates).saturating_sub(deletes);
        self.guard(&changes, total, local_files)
            .map_err(End::Fatal)?;
        let (outcomes, _) = self.apply(remote, conn, &changes).map_err(classify)?;
        let known = self.known.get_or_insert_with(Snapshot::new);
        for (c, o) in changes.iter().zip(&outcomes) {
            apply_to_known(known, c, o);
            if let (
                Change::Delete {
                    path,
                    kind: Kind::Dir,
                },
                Outcome::Done(_),
            ) = (c, o)
            {
                self.watched.remove(path);
            }
        }
        Ok(())
    }
}

fn root_gone(root: &Path) -> Error {
    Error::with_hint(
        format!(
            "the sync directory {} is gone; nothing was deleted in the pod",
            root.display()
        ),
        "restore the directory, then run `kubectl kodama sync <name>`",
    )
}

/// The context that marks an error as a deliberate stop (safety guard, sync root gone): never retried.
const STOPPED: &str = "sync stopped";

fn stopped(e: Error) -> Error {
    e.context(STOPPED)
}

fn classify(e: Error) -> End {
    let mut cur = &e;
    loop {
        match cur {
            Error::Context { context, .. } if context == STOPPED => return End::Fatal(e),
            Error::Context { source, .. } => cur = source,
            _ => return End::Lost(e),
        }
    }
}

/// Update the agreed state with one applied change.
fn apply_to_known(known: &mut Snapshot, c: &Change, o: &Outcome) {
    let Outcome::Done(sent) = o else { return };
    match c {
        Change::Mkdir { path } => {
            known.insert(path.clone(), Entry::dir());
        }
        Change::Write { path, entry } => {
            known.insert(path.clone(), sent.clone().unwrap_or_else(|| entry.clone()));
        }
        Change::Chmod { path, exec } => {
            if let Some(e) = known.get_mut(path) {
                e.exec = *exec;
            }
        }
        Change::Symlink { path, target } => {
            known.insert(
                path.clone(),
                Entry {
                    kind: Kind::Symlink,
                    size: 0,
                    mtime: 0,
                    mtime_nsec: 0,
                    exec: false,
                    target: Some(target.clone()),
                },
            );
        }
        Change::Delete { path, .. } => {
            known.remove(path);
        }
        Change::Rename { from, to } => {
            let moved: Vec<(String, Entry)> = scan::subtree(known, from)
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect();
            for (k, e) in moved {
                known.remove(&k);
                let nk = format!("{to}{}", &k[from.len()..]);
                known.insert(nk, e);
            }
        }
    }
}

/// List the pod's tree with `find` and `stat` (fallback mode). Symlink targets are not listed (they
/// are re-sent on a rescan). None when the tools are missing or the output cannot be read.
fn fallback_list(remote: &dyn Remote, root: &str) -> Option<Snapshot> {
    let script = "cd -- \"$1\" 2>/dev/null || exit 0\n\
                  find . -name .git -prune -o ! -name . -exec stat -c '%F|%s|%Y|%a|%n' {} +";
    let argv: Vec<String> = vec![
        "sh".into(),
        "-c".into(),
        script.into(),
        "sh".into(),
        root.into(),
    ];
    let out = remote.run(&argv, b"").ok()?;
    if out.code != 0 {
        return None;
    }
    parse_stat_listing(&String::from_utf8_lossy(&out.stdout))
}

/// Parse `stat -c '%F|%s|%Y|%a|%n'` lines (pure).
fn parse_stat_listing(text: &str) -> Option<Snapshot> {
    let mut snap = Snapshot::new();
    for line in text.lines() {
        let mut f = line.splitn(5, '|');
        let (Some(t), Some(size), Some(mtime), Some(mode), Some(name)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let kind = match t {
            "regular file" | "regular empty file" => Kind::File,
            "directory" => Kind::Dir,
            "symbolic link" => Kind::Symlink,
            _ => continue,
        };
        let Some(rel) = name.strip_prefix("./") else {
            continue;
        };
        if rel.is_empty() || crate::sync::safefs::check_rel(rel).is_err() {
            continue;
        }
        if rel
            .rsplit('/')
            .next()
            .is_some_and(crate::sync::safefs::is_tmp_name)
        {
            continue;
        }
        let mode = u32::from_str_radix(mode, 8).ok()?;
        snap.insert(
            rel.to_string(),
            Entry {
                kind,
                size: if kind == Kind::File {
                    size.parse().ok()?
                } else {
                    0
                },
                mtime: if kind == Kind::Dir {
                    0
                } else {
                    mtime.parse().ok()?
                },
                mtime_nsec: 0,
                exec: kind == Kind::File && mode & 0o111 != 0,
                target: None,
            },
        );
    }
    Some(snap)
}

/// Single-quote a string for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Apply a batch without the agent: one `sh` exec per batch, file data as a tar on its stdin.
fn fallback_apply(
    remote: &dyn Remote,
    local_root: &Path,
    root: &str,
    changes: &[Change],
) -> Result<(Vec<Outcome>, ApplyStats)> {
    let mut pre = Vec::new();
    let mut post = Vec::new();
    let mut tar_snap = Snapshot::new();
    let mut stats = ApplyStats::default();
    for c in changes {
        let seen_write = !tar_snap.is_empty();
        let list = if seen_write { &mut post } else { &mut pre };
        for p in [
            Some(c.path()),
            if let Change::Rename { from, .. } = c {
                Some(from.as_str())
            } else {
                None
            },
        ]
        .into_iter()
        .flatten()
        {
            crate::sync::safefs::check_rel(p)?;
        }
        match c {
            Change::Mkdir { path } => list.push(format!("mkdir -p -- {}", sh_quote(path))),
            Change::Rename { from, to } => list.push(format!(
                "mkdir -p -- \"$(dirname -- {t})\" && mv -f -- {f} {t}",
                f = sh_quote(from),
                t = sh_quote(to)
            )),
            Change::Chmod { path, exec } => post.push(format!(
                "chmod {} -- {}",
                if *exec { "755" } else { "644" },
                sh_quote(path)
            )),
            Change::Delete { path, kind } => {
                stats.deletes += 1;
                if *kind == Kind::Dir {
                    list.push(format!("rmdir -- {} 2>/dev/null || true", sh_quote(path)));
                } else {
                    list.push(format!("rm -f -- {}", sh_quote(path)));
                }
            }
            Change::Write { path, entry } => {
                stats.files += 1;
                stats.bytes += entry.size;
                tar_snap.insert(path.clone(), entry.clone());
            }
            Change::Symlink { path, target } => {
                tar_snap.insert(
                    path.clone(),
                    Entry {
                        kind: Kind::Symlink,
                        size: 0,
                        mtime: 0,
                        mtime_nsec: 0,
                        exec: false,
                        target: Some(target.clone()),
                    },
                );
            }
        }
    }
    let mut script = String::from("set -e\ncd -- \"$1\"\n");
    for l in &pre {
        script.push_str(l);
        script.push('\n');
    }
    if !tar_snap.is_empty() {
        script.push_str("tar -x -f -\n");
    }
    for l in &post {
        script.push_str(l);
        script.push('\n');
    }
    let argv = vec![
        "sh".into(),
        "-c".into(),
        script,
        "sh".into(),
        root.to_string(),
    ];
    let (code, stderr, _) = stream_tar(remote, &argv, local_root, &tar_snap, &mut |_| {})?;
    stats.changes = changes.len() as u64;
    if code != 0 {
        stats.failed = changes.len() as u64;
        let why = format!("sh/tar in the pod exited {code}: {stderr}");
        return Ok((vec![Outcome::Failed(why); changes.len()], stats));
    }
    Ok((vec![Outcome::Done(None); changes.len()], stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_listing_parses_kinds_modes_and_odd_names() {
        let text = "regular file|5|1700000000|755|./bin/run.sh\n\
                    regular empty file|0|1700000001|644|./a|b.txt\n\
                    directory|4096|1700000002|755|./bin\n\
                    symbolic link|11|1700000003|777|./ln\n\
                    fifo|0|1|644|./pipe\n\
                    regular file|1|1|644|./x/.y.kodama-tmp-1-2\n\
                    garbage line\n";
        let s = parse_stat_listing(text).unwrap();
        let keys: Vec<&str> = s.keys().map(String::as_str).collect();
        assert_eq!(keys, ["a|b.txt", "bin", "bin/run.sh", "ln"]);
        assert!(s["bin/run.sh"].exec && s["bin/run.sh"].size == 5);
        assert_eq!(s["bin"].kind, Kind::Dir);
        assert_eq!(s["ln"].kind, Kind::Symlink);
        assert_eq!(s["a|b.txt"].mtime, 1700000001);
    }

    #[test]
    fn progress_line_is_human() {
        let p = Progress {
            files_done: 3,
            files_total: 10,
            bytes_done: 3 << 20,
            bytes_total: 10 << 20,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(p.line(), "3/10 files, 3.0 MiB/10.0 MiB, 1.5 MiB/s");
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(Progress::default().rate(), 0.0);
    }

    #[test]
    fn sh_quote_survives_quotes() {
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
