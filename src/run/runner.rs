//! The in-pod run launcher and watchdog: the hidden `kubectl-kodama run-agent <sub> ...` subcommand.
//!
//! `start` reads the prompt (stdin or `--prompt-file`, byte for byte), takes the `current` lock,
//! creates the run record, and starts `run-agent supervise <run-dir>` as a new session (setsid, stdin
//! /dev/null, stderr to supervisor.log); it returns the run id as soon as the supervisor reports that
//! the agent process has been spawned, so the exec connection may drop at any time afterwards.
//! `supervise` runs the agent in the workspace with the prompt on stdin, tees its stdout line by line
//! into transcript.jsonl, and stops it (SIGTERM to its process group, SIGKILL after a grace) when it
//! printed its final `result` event but does not exit, or prints nothing for the idle timeout.
//! `status`, `list`, `follow` and `stop` serve the client (`run::records`).
//!
//! Usage (all paths absolute in the pod):
//! ```text
//! run-agent start  [--home DIR] [--workspace DIR] [--prompt-file F] [--continue] [--force]
//!                  [--idle-timeout S] [--result-grace S] [--kill-grace S] [--id ID]
//!                  [--command-json '["claude","-p",...]'] [--continue-args-json '["--continue"]']
//! run-agent status [--home DIR] [--run ID] [--json]     current run, else the last one
//! run-agent list   [--home DIR] [--json]
//! run-agent follow [--home DIR] [--run ID] [--offset N] [--poll-ms MS]
//! run-agent stop   [--home DIR] [--run ID] [--reason TEXT]
//! ```
//!
//! May import: error, run (its own module).

use super::{RunMeta, RunResult, RunStatus};
use crate::error::{Error, IoResultExt, Result};
use crate::term::sys;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Entry point of `kubectl-kodama run-agent ...`; `args` are the words after `run-agent`.
pub fn main(args: Vec<OsString>) -> Result<()> {
    let mut it = args.into_iter();
    let sub = it
        .next()
        .and_then(|s| s.into_string().ok())
        .ok_or_else(|| usage("missing subcommand"))?;
    let rest: Vec<OsString> = it.collect();
    match sub.as_str() {
        "start" => {
            let o = StartOpts::parse(rest)?;
            let id = start(&o, &mut std::io::stdin().lock())?;
            println!("{id}");
            Ok(())
        }
        "supervise" => {
            let dir = rest
                .into_iter()
                .next()
                .ok_or_else(|| usage("supervise needs the run directory"))?;
            supervise(Path::new(&dir))
        }
        "status" | "list" | "follow" | "stop" => {
            let q = QueryOpts::parse(rest)?;
            let mut out = std::io::stdout().lock();
            match sub.as_str() {
                "status" => cmd_status(&q, &mut out),
                "list" => cmd_list(&q, &mut out),
                "follow" => follow(&q, &mut out),
                _ => cmd_stop(&q, &mut out),
            }
        }
        other => Err(usage(&format!("unknown subcommand {other:?}"))),
    }
}

fn usage(msg: &str) -> Error {
    Error::usage(
        format!("run-agent: {msg}"),
        Some("usage: run-agent start|status|list|follow|stop [options] (see run/runner.rs)".into()),
    )
}

fn default_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/home/kodama"))
        .join(".claude")
}

/// Options of `run-agent start`.
#[derive(Debug, Clone)]
pub struct StartOpts {
    pub home: PathBuf,
    pub workspace: PathBuf,
    pub prompt_file: Option<PathBuf>,
    pub continue_: bool,
    pub force: bool,
    pub idle_timeout_secs: u64,
    pub result_grace_secs: u64,
    pub kill_grace_secs: u64,
    pub id: Option<String>,
    pub command: Vec<String>,
    pub continue_args: Vec<String>,
}

impl Default for StartOpts {
    fn default() -> Self {
        StartOpts {
            home: default_home(),
            workspace: PathBuf::from(super::WORKSPACE),
            prompt_file: None,
            continue_: false,
            force: false,
            idle_timeout_secs: super::DEFAULT_IDLE_TIMEOUT_SECS,
            result_grace_secs: super::DEFAULT_RESULT_GRACE_SECS,
            kill_grace_secs: super::DEFAULT_KILL_GRACE_SECS,
            id: None,
            command: super::DEFAULT_AGENT_COMMAND
                .iter()
                .map(|s| s.to_string())
                .collect(),
            continue_args: super::DEFAULT_CONTINUE_ARGS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

fn os_string(v: OsString, flag: &str) -> Result<String> {
    v.into_string()
        .map_err(|_| usage(&format!("{flag}: value is not UTF-8")))
}

fn parse_secs(v: OsString, flag: &str) -> Result<u64> {
    os_string(v, flag)?
        .parse()
        .map_err(|_| usage(&format!("{flag}: expected a number of seconds")))
}

fn parse_list(v: OsString, flag: &str) -> Result<Vec<String>> {
    serde_json::from_str(&os_string(v, flag)?)
        .map_err(|e| usage(&format!("{flag}: expected a JSON list of strings: {e}")))
}

fn lex_err(e: lexopt::Error) -> Error {
    usage(&e.to_string())
}

impl StartOpts {
    /// Parse the words after `run-agent start`.
    pub fn parse(args: Vec<OsString>) -> Result<StartOpts> {
        use lexopt::prelude::*;
        let mut o = StartOpts::default();
        let mut p = lexopt::Parser::from_args(args);
        while let Some(arg) = p.next().map_err(lex_err)? {
            match arg {
                Long("home") => o.home = p.value().map_err(lex_err)?.into(),
                Long("workspace") => o.workspace = p.value().map_err(lex_err)?.into(),
                Long("prompt-file") => o.prompt_file = Some(p.value().map_err(lex_err)?.into()),
                Long("continue") => o.continue_ = true,
                Long("force") => o.force = true,
                Long("idle-timeout") => {
                    o.idle_timeout_secs = parse_secs(p.value().map_err(lex_err)?, "--idle-timeout")?
                }
                Long("result-grace") => {
                    o.result_grace_secs = parse_secs(p.value().map_err(lex_err)?, "--result-grace")?
                }
                Long("kill-grace") => {
                    o.kill_grace_secs = parse_secs(p.value().map_err(lex_err)?, "--kill-grace")?
                }
                Long("id") => {
                    let id = os_string(p.value().map_err(lex_err)?, "--id")?;
                    if !super::valid_run_id(&id) {
                        return Err(usage(&format!(
                            "--id {id:?}: use letters, digits, '-', '_', '.'"
                        )));
                    }
                    o.id = Some(id);
                }
                Long("command-json") => {
                    o.command = parse_list(p.value().map_err(lex_err)?, "--command-json")?;
                    if o.command.is_empty() || o.command[0].is_empty() {
                        return Err(usage("--command-json: the agent command must not be empty"));
                    }
                }
                Long("continue-args-json") => {
                    o.continue_args =
                        parse_list(p.value().map_err(lex_err)?, "--continue-args-json")?
                }
                _ => return Err(lex_err(arg.unexpected())),
            }
        }
        Ok(o)
    }
}

/// Options of status/list/follow/stop.
#[derive(Debug, Clone)]
struct QueryOpts {
    home: PathBuf,
    run: Option<String>,
    offset: u64,
    poll: Duration,
    reason: Option<String>,
}

impl QueryOpts {
    fn parse(args: Vec<OsString>) -> Result<QueryOpts> {
        use lexopt::prelude::*;
        let mut o = QueryOpts {
            home: default_home(),
            run: None,
            offset: 0,
            poll: Duration::from_millis(250),
            reason: None,
        };
        let mut p = lexopt::Parser::from_args(args);
        while let Some(arg) = p.next().map_err(lex_err)? {
            match arg {
                Long("home") => o.home = p.value().map_err(lex_err)?.into(),
                Long("run") => {
                    let id = os_string(p.value().map_err(lex_err)?, "--run")?;
                    if !super::valid_run_id(&id) {
                        return Err(usage(&format!("--run {id:?}: not a run id")));
                    }
                    o.run = Some(id);
                }
                Long("offset") => {
                    o.offset = os_string(p.value().map_err(lex_err)?, "--offset")?
                        .parse()
                        .map_err(|_| usage("--offset: expected a byte offset"))?
                }
                Long("poll-ms") => {
                    let ms: u64 = os_string(p.value().map_err(lex_err)?, "--poll-ms")?
                        .parse()
                        .map_err(|_| usage("--poll-ms: expected milliseconds"))?;
                    o.poll = Duration::from_millis(ms.max(10));
                }
                Long("reason") => {
                    o.reason = Some(os_string(p.value().map_err(lex_err)?, "--reason")?)
                }
                Long("json") => {}
                _ => return Err(lex_err(arg.unexpected())),
            }
        }
        Ok(o)
    }
}

/// `<home>/kodama/runs`.
pub fn runs_dir(home: &Path) -> PathBuf {
    home.join(super::RUNS_SUBDIR)
}

/// Read meta.json of the run in `dir`.
pub fn read_meta(dir: &Path) -> Result<RunMeta> {
    let p = dir.join("meta.json");
    let data = fs::read(&p).path_context(&p)?;
    serde_json::from_slice(&data).map_err(|e| Error::file(&p, None, format!("bad run record: {e}")))
}

/// Write meta.json atomically (temp file + rename) in compact JSON (the sh tools grep it).
pub fn write_meta(dir: &Path, m: &RunMeta) -> Result<()> {
    let tmp = dir.join(".meta.json.tmp");
    let data =
        serde_json::to_vec(m).map_err(|e| Error::msg(format!("encoding run record: {e}")))?;
    fs::write(&tmp, data).path_context(&tmp)?;
    fs::rename(&tmp, dir.join("meta.json")).path_context(dir.join("meta.json"))
}

fn read_id_file(p: &Path) -> Option<String> {
    let s = fs::read_to_string(p).ok()?;
    let id = s.trim().to_string();
    super::valid_run_id(&id).then_some(id)
}

/// True when the run described by `m` (in `dir`) still has a live supervisor.
fn run_alive(dir: &Path, m: &RunMeta) -> bool {
    if m.status != RunStatus::Running {
        return false;
    }
    match m.pid {
        // The sh launcher's watchdog loop runs with the run dir in its argv as well.
        Some(pid) => sys::pid_alive(pid, Some(&dir.to_string_lossy())),
        // Not yet reported (start in progress): treat as alive for a short while.
        None => true,
    }
}

/// Correct a record that says "running" but whose supervisor is gone (the pod restarted, or the
/// supervisor was killed): mark it failed on disk and return the corrected meta.
fn settle(dir: &Path, mut m: RunMeta) -> RunMeta {
    // A record without a supervisor pid older than two minutes belongs to a start that died.
    let orphan = m.pid.is_none()
        && fs::metadata(dir.join("meta.json"))
            .and_then(|md| md.modified())
            .map(|t| t.elapsed().map(|e| e.as_secs() > 120).unwrap_or(false))
            .unwrap_or(false);
    if m.status == RunStatus::Running && ((m.pid.is_some() && !run_alive(dir, &m)) || orphan) {
        m.status = RunStatus::Failed;
        m.reason = Some("the run's supervisor is gone (pod restarted or process killed)".into());
        m.ended_at
            .get_or_insert_with(|| super::rfc3339(super::now_secs()));
        if m.result.is_none() {
            m.result = result_from_transcript(&dir.join("transcript.jsonl"));
        }
        let _ = write_meta(dir, &m);
    }
    m
}

/// The last `result` event of a transcript file, if any.
pub fn result_from_transcript(p: &Path) -> Option<RunResult> {
    let f = File::open(p).ok()?;
    let mut last = None;
    for line in BufReader::new(f).split(b'\n').map_while(|l| l.ok()) {
        if let Some(r) = RunResult::from_event(&line) {
            last = Some(r);
        }
    }
    last
}

/// The id of the active run, with stale locks removed.
fn active_run(runs: &Path) -> Option<(String, RunMeta)> {
    let cur = runs.join("current");
    if !cur.exists() {
        return None;
    }
    // An unreadable or empty lock (a start that crashed between creating and writing it) is
    // handled like a lock without a record: stale after a minute.
    let id = read_id_file(&cur).unwrap_or_default();
    let dir = runs.join(&id);
    let meta = if id.is_empty() {
        Err(Error::msg("no id in the lock"))
    } else {
        read_meta(&dir)
    };
    match meta {
        Ok(m) => {
            let m = settle(&dir, m);
            if m.status == RunStatus::Running {
                return Some((id, m));
            }
            remove_current_if(runs, &id);
            None
        }
        Err(_) => {
            // A lock without a record older than a minute is stale (a crashed start).
            let old = fs::metadata(&cur)
                .and_then(|md| md.modified())
                .map(|t| t.elapsed().map(|e| e.as_secs() > 60).unwrap_or(false))
                .unwrap_or(true);
            if old {
                if id.is_empty() {
                    let _ = fs::remove_file(&cur);
                } else {
                    remove_current_if(runs, &id);
                }
                None
            } else {
                Some((id.clone(), placeholder_meta(&id)))
            }
        }
    }
}

fn placeholder_meta(id: &str) -> RunMeta {
    RunMeta {
        id: id.to_string(),
        prompt_sha256: String::new(),
        prompt_first_line: String::new(),
        prompt_bytes: 0,
        command: vec![],
        cwd: String::new(),
        continue_: false,
        started_at: String::new(),
        ended_at: None,
        exit_code: None,
        status: RunStatus::Running,
        reason: None,
        result: None,
        launcher: String::new(),
        pid: None,
        agent_pid: None,
        idle_timeout_secs: 0,
        result_grace_secs: 0,
        kill_grace_secs: 0,
    }
}

fn remove_current_if(runs: &Path, id: &str) {
    let cur = runs.join("current");
    if read_id_file(&cur).as_deref() == Some(id) {
        let _ = fs::remove_file(cur);
    }
}

/// Take the `current` lock for `id` (O_EXCL create). Refuses while another run is active unless
/// `force`, in which case the active run is stopped first.
fn take_lock(runs: &Path, id: &str, force: bool, kill_grace: Duration) -> Result<()> {
    let cur = runs.join("current");
    for _ in 0..3 {
        match OpenOptions::new().write(true).create_new(true).open(&cur) {
            Ok(mut f) => {
                f.write_all(format!("{id}\n").as_bytes())
                    .path_context(&cur)?;
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if let Some((other, _)) = active_run(runs) {
                    if !force {
                        return Err(Error::with_hint(
                            format!("run {other} is still active in this session"),
                            "wait for it (kubectl kodama logs -f), or pass --force to stop it and start a new run",
                        ));
                    }
                    stop_run(
                        runs,
                        &other,
                        &format!("stopped: superseded by run {id} (--force)"),
                        kill_grace,
                    )?;
                    remove_current_if(runs, &other);
                }
            }
            Err(e) => return Err(Error::io(&cur, e)),
        }
    }
    Err(Error::msg(format!(
        "could not take the run lock {}: another run keeps taking it",
        cur.display()
    )))
}

/// Substitute the documented placeholders inside each argv element.
pub fn expand_command(
    cmd: &[String],
    prompt_file: &Path,
    run_id: &str,
    run_dir: &Path,
) -> Vec<String> {
    cmd.iter()
        .map(|a| {
            a.replace("{prompt_file}", &prompt_file.to_string_lossy())
                .replace("{run_id}", run_id)
                .replace("{run_dir}", &run_dir.to_string_lossy())
        })
        .collect()
}

/// `run-agent start`: returns the new run id once the agent has been spawned.
pub fn start(o: &StartOpts, stdin: &mut dyn Read) -> Result<String> {
    let mut prompt = Vec::new();
    match &o.prompt_file {
        Some(p) => {
            prompt = fs::read(p).path_context(p)?;
        }
        None => {
            stdin
                .read_to_end(&mut prompt)
                .map_err(|e| Error::io("<stdin>", e))?;
        }
    }
    if prompt.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::usage("the prompt is empty", None));
    }
    if !o.workspace.is_dir() {
        return Err(Error::msg(format!(
            "the workspace {} does not exist in the pod",
            o.workspace.display()
        )));
    }
    let runs = runs_dir(&o.home);
    fs::create_dir_all(&runs).path_context(&runs)?;
    let now = super::now_secs();
    let id = o.id.clone().unwrap_or_else(|| super::new_run_id(now));
    let dir = runs.join(&id);
    if dir.exists() {
        return Err(Error::msg(format!(
            "run {id} already exists in {}",
            runs.display()
        )));
    }
    take_lock(&runs, &id, o.force, Duration::from_secs(o.kill_grace_secs))?;
    let r = create_and_launch(o, &runs, &dir, &id, &prompt, now);
    if let Err(e) = &r {
        // Never leave a record that claims to be running without a supervisor.
        if let Ok(mut m) = read_meta(&dir) {
            if m.status == RunStatus::Running {
                m.status = RunStatus::Failed;
                m.reason.get_or_insert_with(|| e.to_string());
                m.ended_at = Some(super::rfc3339(super::now_secs()));
                let _ = write_meta(&dir, &m);
            }
        }
        remove_current_if(&runs, &id);
    }
    r.map(|()| id)
}

fn create_and_launch(
    o: &StartOpts,
    runs: &Path,
    dir: &Path,
    id: &str,
    prompt: &[u8],
    now: u64,
) -> Result<()> {
    fs::create_dir(dir).path_context(dir)?;
    let prompt_path = dir.join("prompt.txt");
    fs::write(&prompt_path, prompt).path_context(&prompt_path)?;
    File::create(dir.join("transcript.jsonl")).path_context(dir.join("transcript.jsonl"))?;
    let mut command = expand_command(&o.command, &prompt_path, id, dir);
    if o.continue_ {
        command.extend(o.continue_args.iter().cloned());
    }
    let meta = RunMeta {
        id: id.to_string(),
        prompt_sha256: super::sha256_hex(prompt),
        prompt_first_line: super::first_line(prompt),
        prompt_bytes: prompt.len() as u64,
        command,
        cwd: o.workspace.to_string_lossy().into_owned(),
        continue_: o.continue_,
        started_at: super::rfc3339(now),
        ended_at: None,
        exit_code: None,
        status: RunStatus::Running,
        reason: None,
        result: None,
        launcher: "binary".into(),
        pid: None,
        agent_pid: None,
        idle_timeout_secs: o.idle_timeout_secs,
        result_grace_secs: o.result_grace_secs,
        kill_grace_secs: o.kill_grace_secs,
    };
    write_meta(dir, &meta)?;
    fs::write(runs.join("last"), format!("{id}\n")).path_context(runs.join("last"))?;

    let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
    let log = File::create(dir.join("supervisor.log")).path_context(dir.join("supervisor.log"))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("run-agent")
        .arg("supervise")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    sys::detach_session(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| Error::io(&exe, e))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| Error::msg("supervisor stdout missing"))?;
    // The supervisor writes one line once the agent is spawned (or could not be); we do not wait for
    // the supervisor itself, which lives on after we return.
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| Error::io("supervisor handshake", e))?;
    drop(child);
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix("error ") {
        return Err(Error::msg(format!("run {id}: {rest}")));
    }
    if !line.starts_with("ok") {
        let m = read_meta(dir).ok();
        let why = m.and_then(|m| m.reason).unwrap_or_else(|| {
            "the supervisor exited without reporting (see supervisor.log)".into()
        });
        return Err(Error::msg(format!("run {id}: {why}")));
    }
    Ok(())
}

enum Ev {
    Line(Option<RunResult>),
    Eof,
    Exited(std::io::Result<ExitStatus>),
}

/// `run-agent supervise <dir>`: run the agent and watch it. Writes the handshake line on stdout.
pub fn supervise(dir: &Path) -> Result<()> {
    sys::ignore_sigpipe();
    let mut meta = read_meta(dir)?;
    let runs = dir
        .parent()
        .ok_or_else(|| Error::msg("run dir has no parent"))?
        .to_path_buf();
    meta.pid = Some(std::process::id());
    let mut handshake = std::io::stdout();

    let spawned = spawn_agent(dir, &meta);
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            meta.status = RunStatus::Failed;
            meta.reason = Some(e.to_string());
            meta.ended_at = Some(super::rfc3339(super::now_secs()));
            write_meta(dir, &meta)?;
            remove_current_if(&runs, &meta.id);
            let _ = writeln!(handshake, "error {e}");
            return Err(e);
        }
    };
    meta.agent_pid = Some(child.id());
    write_meta(dir, &meta)?;
    let _ = writeln!(handshake, "ok {}", child.id());
    let _ = handshake.flush();

    let (tx, rx) = mpsc::channel::<Ev>();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::msg("agent stdout missing"))?;
    let tpath = dir.join("transcript.jsonl");
    let mut transcript = OpenOptions::new()
        .append(true)
        .open(&tpath)
        .path_context(&tpath)?;
    let txl = tx.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() != Some(&b'\n') {
                        buf.push(b'\n');
                    }
                    let _ = transcript.write_all(&buf);
                    let _ = transcript.flush();
                    let res = RunResult::from_event(&buf[..buf.len() - 1]);
                    if txl.send(Ev::Line(res)).is_err() {
                        // Keep draining so the agent never blocks on a full pipe.
                        continue;
                    }
                }
            }
        }
        let _ = txl.send(Ev::Eof);
    });
    let txw = tx;
    std::thread::spawn(move || {
        let st = child.wait();
        let _ = txw.send(Ev::Exited(st));
    });

    let pgid = meta.agent_pid.unwrap_or(0);
    let idle = Duration::from_secs(meta.idle_timeout_secs);
    let grace = Duration::from_secs(meta.result_grace_secs);
    let kill_grace = Duration::from_secs(meta.kill_grace_secs.max(1));
    let mut last_output = Instant::now();
    let mut result_at: Option<Instant> = None;
    let mut result: Option<RunResult> = None;
    let mut stopping: Option<(String, Instant, bool)> = None;
    let mut exited: Option<(std::io::Result<ExitStatus>, Instant)> = None;
    let mut eof = false;
    loop {
        if let Some((_, at)) = &exited {
            // A grandchild may hold stdout open; give it a moment, then finish anyway.
            if eof || at.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        let now = Instant::now();
        let mut deadline = now + Duration::from_secs(1);
        if exited.is_none() {
            match &mut stopping {
                Some((_, at, killed)) => {
                    if !*killed {
                        let d = *at + kill_grace;
                        if now >= d {
                            let _ = sys::kill_group(pgid, sys::SIGKILL);
                            *killed = true;
                        } else {
                            deadline = deadline.min(d);
                        }
                    }
                }
                None => {
                    let mut why = None;
                    if let Some(r) = result_at {
                        let d = r + grace;
                        if now >= d {
                            why = Some(format!(
                                "watchdog: the agent printed its final result but did not exit within {}s; stopped",
                                grace.as_secs()
                            ));
                        } else {
                            deadline = deadline.min(d);
                        }
                    }
                    if why.is_none() && !idle.is_zero() {
                        let d = last_output + idle;
                        if now >= d {
                            why = Some(format!(
                                "watchdog: no output for {}s; stopped",
                                idle.as_secs()
                            ));
                        } else {
                            deadline = deadline.min(d);
                        }
                    }
                    if let Some(why) = why {
                        eprintln!("{why}");
                        let _ = sys::kill_group(pgid, sys::SIGTERM);
                        stopping = Some((why, Instant::now(), false));
                        continue;
                    }
                }
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Ev::Line(r)) => {
                last_output = Instant::now();
                if let Some(r) = r {
                    result = Some(r);
                    result_at.get_or_insert_with(Instant::now);
                }
            }
            Ok(Ev::Eof) => eof = true,
            Ok(Ev::Exited(st)) => exited = Some((st, Instant::now())),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Make sure nothing of the agent's group survives us.
    let _ = sys::kill_group(pgid, sys::SIGKILL);

    let st = exited.map(|(s, _)| s);
    let stop_request = fs::read_to_string(dir.join("stop-request"))
        .ok()
        .map(|s| s.trim().to_string());
    finish(
        &mut meta,
        st,
        result,
        stopping.map(|s| s.0).or(stop_request),
    );
    write_meta(dir, &meta)?;
    remove_current_if(&runs, &meta.id);
    Ok(())
}

fn finish(
    meta: &mut RunMeta,
    st: Option<std::io::Result<ExitStatus>>,
    result: Option<RunResult>,
    stopped: Option<String>,
) {
    use std::os::unix::process::ExitStatusExt;
    meta.ended_at = Some(super::rfc3339(super::now_secs()));
    let (code, sig) = match &st {
        Some(Ok(s)) => (s.code(), s.signal()),
        _ => (None, None),
    };
    meta.exit_code = code.or(sig.map(|s| 128 + s));
    let failed_result = result.as_ref().is_some_and(|r| r.is_error);
    meta.result = result;
    let (status, reason) = if let Some(why) = stopped {
        (RunStatus::Failed, Some(why))
    } else if let Some(s) = sig {
        (
            RunStatus::Failed,
            Some(format!("the agent was killed by signal {s}")),
        )
    } else if let Some(c) = code {
        if c != 0 {
            (
                RunStatus::Failed,
                Some(format!("the agent exited with code {c}")),
            )
        } else if failed_result {
            (
                RunStatus::Failed,
                Some("the agent reported an error in its result".into()),
            )
        } else {
            (RunStatus::Succeeded, None)
        }
    } else {
        (
            RunStatus::Failed,
            Some("could not collect the agent's exit status".into()),
        )
    };
    meta.status = status;
    meta.reason = reason;
}

fn spawn_agent(dir: &Path, meta: &RunMeta) -> Result<std::process::Child> {
    let (prog, args) = meta
        .command
        .split_first()
        .ok_or_else(|| Error::msg("the agent command is empty"))?;
    let prompt = File::open(dir.join("prompt.txt")).path_context(dir.join("prompt.txt"))?;
    let err = File::create(dir.join("stderr.log")).path_context(dir.join("stderr.log"))?;
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .current_dir(&meta.cwd)
        .stdin(Stdio::from(prompt))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .env("KODAMA_RUN_ID", &meta.id)
        .process_group(0);
    cmd.spawn().map_err(|e| {
        Error::with_hint(
            format!(
                "cannot start the agent command {prog:?} in {}: {e}",
                meta.cwd
            ),
            "check agent.command in the config and that the image has the agent installed",
        )
    })
}

/// Resolve `--run` or the current run or the last run to (id, dir).
fn resolve(q: &QueryOpts) -> Result<(String, PathBuf)> {
    let runs = runs_dir(&q.home);
    let id = match &q.run {
        Some(id) => id.clone(),
        None => read_id_file(&runs.join("current"))
            .filter(|id| runs.join(id).join("meta.json").exists())
            .or_else(|| read_id_file(&runs.join("last")))
            .or_else(|| list_ids(&runs).pop())
            .ok_or_else(|| Error::msg("no agent run in this session yet"))?,
    };
    let dir = runs.join(&id);
    if !dir.join("meta.json").exists() {
        return Err(Error::msg(format!("no run {id} in this session")));
    }
    Ok((id, dir))
}

fn list_ids(runs: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(runs)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("meta.json").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|id| super::valid_run_id(id))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn cmd_status(q: &QueryOpts, out: &mut dyn Write) -> Result<()> {
    let (_, dir) = resolve(q)?;
    let m = settle(&dir, read_meta(&dir)?);
    let s = serde_json::to_string(&m).map_err(|e| Error::msg(e.to_string()))?;
    writeln!(out, "{s}").map_err(|e| Error::io("<stdout>", e))
}

fn cmd_list(q: &QueryOpts, out: &mut dyn Write) -> Result<()> {
    let runs = runs_dir(&q.home);
    let mut all = Vec::new();
    for id in list_ids(&runs) {
        let dir = runs.join(&id);
        if let Ok(m) = read_meta(&dir) {
            all.push(settle(&dir, m));
        }
    }
    let s = serde_json::to_string(&all).map_err(|e| Error::msg(e.to_string()))?;
    writeln!(out, "{s}").map_err(|e| Error::io("<stdout>", e))
}

fn cmd_stop(q: &QueryOpts, out: &mut dyn Write) -> Result<()> {
    let (id, dir) = resolve(q)?;
    let m = read_meta(&dir)?;
    let runs = runs_dir(&q.home);
    let reason = q
        .reason
        .clone()
        .unwrap_or_else(|| "stopped by the user".into());
    stop_run(
        &runs,
        &id,
        &reason,
        Duration::from_secs(m.kill_grace_secs.max(1)),
    )?;
    writeln!(out, "{id}").map_err(|e| Error::io("<stdout>", e))
}

/// Ask the supervisor of run `id` to end it: record the reason, SIGTERM the agent's group, SIGKILL
/// after `grace`, and wait (bounded) for the record to leave "running".
fn stop_run(runs: &Path, id: &str, reason: &str, grace: Duration) -> Result<()> {
    let dir = runs.join(id);
    let m = settle(&dir, read_meta(&dir)?);
    if m.status != RunStatus::Running {
        return Ok(());
    }
    fs::write(dir.join("stop-request"), reason).path_context(dir.join("stop-request"))?;
    let Some(pgid) = m.agent_pid else {
        return Err(Error::msg(format!(
            "run {id} has not reported its agent process yet; try again"
        )));
    };
    sys::kill_group(pgid, sys::SIGTERM).map_err(|e| Error::io(format!("signal run {id}"), e))?;
    let deadline = Instant::now() + grace + Duration::from_secs(5);
    let mut killed = false;
    let term_at = Instant::now();
    while Instant::now() < deadline {
        let m = settle(&dir, read_meta(&dir)?);
        if m.status != RunStatus::Running {
            return Ok(());
        }
        if !killed && term_at.elapsed() >= grace {
            let _ = sys::kill_group(pgid, sys::SIGKILL);
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::msg(format!(
        "run {id} did not stop within {}s",
        (grace + Duration::from_secs(5)).as_secs()
    )))
}

/// `run-agent follow`: copy complete transcript lines from `offset` to `out` until the run has
/// ended and everything was copied. Only whole lines are written, so a client may resume from the
/// byte offset of the last line it received.
fn follow(q: &QueryOpts, out: &mut dyn Write) -> Result<()> {
    let (_, dir) = resolve(q)?;
    let tpath = dir.join("transcript.jsonl");
    let mut f = File::open(&tpath).path_context(&tpath)?;
    let mut pos = q.offset;
    let mut buf = Vec::new();
    loop {
        // Check the status before reading, so data written before the run ended is never missed.
        let done = settle(&dir, read_meta(&dir)?).status != RunStatus::Running;
        f.seek(SeekFrom::Start(pos)).path_context(&tpath)?;
        buf.clear();
        f.read_to_end(&mut buf).path_context(&tpath)?;
        if let Some(end) = buf.iter().rposition(|b| *b == b'\n') {
            out.write_all(&buf[..=end])
                .map_err(|e| Error::io("<stdout>", e))?;
            out.flush().map_err(|e| Error::io("<stdout>", e))?;
            pos += end as u64 + 1;
            continue;
        }
        if done {
            return Ok(());
        }
        std::thread::sleep(q.poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_inside_single_argv_elements() {
        let cmd = vec![
            "agent".to_string(),
            "--message-file={prompt_file}".into(),
            "{run_id}".into(),
        ];
        let got = expand_command(&cmd, Path::new("/h/r/prompt.txt"), "r1", Path::new("/h/r"));
        assert_eq!(got, vec!["agent", "--message-file=/h/r/prompt.txt", "r1"]);
    }

    #[test]
    fn start_options_parse_and_reject_bad_values() {
        let o = StartOpts::parse(vec![
            "--home".into(),
            "/h".into(),
            "--idle-timeout".into(),
            "5".into(),
            "--command-json".into(),
            r#"["a","b c"]"#.into(),
            "--continue".into(),
        ])
        .expect("parse");
        assert_eq!(o.home, PathBuf::from("/h"));
        assert_eq!(o.idle_timeout_secs, 5);
        assert_eq!(o.command, vec!["a", "b c"]);
        assert!(o.continue_);
        assert!(StartOpts::parse(vec!["--command-json".into(), "[]".into()]).is_err());
        assert!(StartOpts::parse(vec!["--id".into(), "../x".into()]).is_err());
        assert!(StartOpts::parse(vec!["--bogus".into()]).is_err());
    }

    #[test]
    fn finish_classifies_outcomes() {
        use std::os::unix::process::ExitStatusExt;
        let mut m = placeholder_meta("x");
        finish(&mut m, Some(Ok(ExitStatus::from_raw(0))), None, None);
        assert_eq!(m.status, RunStatus::Succeeded);
        finish(&mut m, Some(Ok(ExitStatus::from_raw(3 << 8))), None, None);
        assert_eq!((m.status, m.exit_code), (RunStatus::Failed, Some(3)));
        finish(
            &mut m,
            Some(Ok(ExitStatus::from_raw(0))),
            Some(RunResult {
                is_error: true,
                ..Default::default()
            }),
            None,
        );
        assert_eq!(m.status, RunStatus::Failed);
        finish(
            &mut m,
            Some(Ok(ExitStatus::from_raw(15))),
            None,
            Some("watchdog: x".into()),
        );
        assert_eq!(m.reason.as_deref(), Some("watchdog: x"));
        assert_eq!(m.exit_code, Some(143));
    }
}
