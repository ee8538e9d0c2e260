//! Client side of agent runs, through [`Remote`]: start a run, list runs, read the current or last
//! run, stop it, read and follow its transcript (resuming after a dropped connection from the last
//! complete line), and the AGENT column of `list`.
//!
//! Two ways to reach the pod ([`Access`]): kodama's own binary installed in the pod (`run-agent ...`,
//! robust: it settles stale "running" records and only ever sends whole lines), or plain POSIX `sh`,
//! `cat`, `tail` (for pods where our binary cannot run). Both use the same file layout.
//!
//! May import: error, remote, config (defaults), run (its own module).

use super::{RunMeta, RunStatus};
use crate::error::{Error, Result};
use crate::remote::Remote;
use std::io::Read;
use std::time::Duration;

/// How to reach the run records in the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// kodama's binary at this path in the pod (`<path> run-agent ...`).
    Binary(String),
    /// POSIX sh and coreutils only (the fallback).
    Shell,
}

/// What to start (everything but the prompt, which goes on stdin).
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// The claude home in the pod (holds `kodama/runs`).
    pub home: String,
    /// The working directory of the agent (normally /workspace).
    pub workspace: String,
    /// Agent argv (placeholders allowed, see [`super::PLACEHOLDERS`]).
    pub command: Vec<String>,
    /// Appended when `continue_` is set.
    pub continue_args: Vec<String>,
    pub continue_: bool,
    pub force: bool,
    pub idle_timeout_secs: u64,
    pub result_grace_secs: u64,
    pub kill_grace_secs: u64,
    /// A fixed run id (tests); normally generated in the pod.
    pub id: Option<String>,
}

impl StartRequest {
    /// Defaults: Claude Code, /workspace, default watchdog times.
    pub fn new(home: impl Into<String>) -> StartRequest {
        StartRequest {
            home: home.into(),
            workspace: super::WORKSPACE.into(),
            command: crate::config::settings::default_agent_command(),
            continue_args: super::default_continue_args(),
            continue_: false,
            force: false,
            idle_timeout_secs: super::DEFAULT_IDLE_TIMEOUT_SECS,
            result_grace_secs: super::DEFAULT_RESULT_GRACE_SECS,
            kill_grace_secs: super::DEFAULT_KILL_GRACE_SECS,
            id: None,
        }
    }
}

/// The sh fallback launcher (see the script's header for its arguments).
pub const LAUNCH_SH: &str = include_str!("launch.sh");

const FOLLOW_SH: &str = r#"d=$1 off=$2
while :; do
  case $(cat "$d/meta.json") in *'"status":"running"'*) done=0 ;; *) done=1 ;; esac
  size=$(wc -c <"$d/transcript.jsonl" | tr -d ' ')
  if [ "$size" -gt "$off" ]; then
    tail -c +$((off + 1)) "$d/transcript.jsonl" | head -c $((size - off)) || exit 1
    off=$size
    continue
  fi
  [ "$done" = 1 ] && exit 0
  sleep 1
done"#;

const LIST_SH: &str = r#"for d in "$1"/kodama/runs/*/; do
  [ -f "$d/meta.json" ] && { cat "$d/meta.json"; echo; }
done
exit 0"#;

fn runs_dir(home: &str) -> String {
    format!("{}/{}", home.trim_end_matches('/'), super::RUNS_SUBDIR)
}

fn s(v: &str) -> String {
    v.to_string()
}

/// The argv that starts a run (the prompt goes on its stdin).
pub fn start_argv(access: &Access, req: &StartRequest) -> Result<Vec<String>> {
    if req.command.first().is_none_or(|c| c.is_empty()) {
        return Err(Error::with_hint(
            "the agent command is empty",
            "set agent.command to a list such as [\"claude\", \"-p\", ...]",
        ));
    }
    let json = |v: &Vec<String>| serde_json::to_string(v).map_err(|e| Error::msg(e.to_string()));
    match access {
        Access::Binary(bin) => {
            let mut a = vec![
                bin.clone(),
                s("run-agent"),
                s("start"),
                s("--home"),
                req.home.clone(),
                s("--workspace"),
                req.workspace.clone(),
                s("--idle-timeout"),
                req.idle_timeout_secs.to_string(),
                s("--result-grace"),
                req.result_grace_secs.to_string(),
                s("--kill-grace"),
                req.kill_grace_secs.to_string(),
                s("--command-json"),
                json(&req.command)?,
                s("--continue-args-json"),
                json(&req.continue_args)?,
            ];
            if req.continue_ {
                a.push(s("--continue"));
            }
            if req.force {
                a.push(s("--force"));
            }
            if let Some(id) = &req.id {
                a.push(s("--id"));
                a.push(id.clone());
            }
            Ok(a)
        }
        Access::Shell => {
            if req.force {
                return Err(Error::msg(
                    "--force needs kodama's binary in the pod; the sh fallback cannot stop a run",
                ));
            }
            let id = req
                .id
                .clone()
                .unwrap_or_else(|| super::new_run_id(super::now_secs()));
            let mut command = req.command.clone();
            if req.continue_ {
                command.extend(req.continue_args.iter().cloned());
            }
            let mut a = vec![
                s("sh"),
                s("-c"),
                s(LAUNCH_SH),
                s("sh"),
                s(LAUNCH_SH),
                s("launch"),
                req.home.clone(),
                req.workspace.clone(),
                req.idle_timeout_secs.to_string(),
                req.result_grace_secs.to_string(),
                req.kill_grace_secs.max(1).to_string(),
                id.clone(),
                String::new(), // BASE, filled below once the command is final
                s("--"),
            ];
            let run_dir = format!("{}/{id}", runs_dir(&req.home));
            let expanded = super::runner::expand_command(
                &command,
                std::path::Path::new(&format!("{run_dir}/prompt.txt")),
                &id,
                std::path::Path::new(&run_dir),
            );
            let base = base_meta_json(&id, req, &expanded)?;
            a[12] = base;
            a.extend(expanded);
            Ok(a)
        }
    }
}

/// The leading part of meta.json for the sh launcher: every field the launcher does not write
/// itself, as a JSON object without its closing brace.
fn base_meta_json(id: &str, req: &StartRequest, command: &[String]) -> Result<String> {
    let v = serde_json::json!({
        "id": id,
        "command": command,
        "cwd": req.workspace,
        "continue": req.continue_,
        "launcher": "sh",
        "idleTimeoutSecs": req.idle_timeout_secs,
        "resultGraceSecs": req.result_grace_secs,
        "killGraceSecs": req.kill_grace_secs,
    });
    let mut t = serde_json::to_string(&v).map_err(|e| Error::msg(e.to_string()))?;
    t.pop(); // the closing brace
    Ok(t)
}

/// Start a run; returns its id. The prompt travels on the exec's stdin, byte for byte. An empty
/// prompt is refused before anything is sent.
pub fn start_run(
    remote: &dyn Remote,
    access: &Access,
    req: &StartRequest,
    prompt: &[u8],
) -> Result<String> {
    if prompt.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Error::usage(
            "the prompt is empty",
            Some("give a prompt with -p TEXT or --prompt-file FILE".into()),
        ));
    }
    let argv = start_argv(access, req)?;
    let out = remote.run(&argv, prompt)?;
    if out.code != 0 {
        let all = super::transcript::sanitize(&out.stderr_str());
        // The remote's own hint line (if any) is replaced by ours below.
        let msg = all
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("hint:") && !l.starts_with("nohup:"))
            .unwrap_or("the launcher failed without a message")
            .trim_start_matches("kubectl-kodama: error: ")
            .trim_start_matches("kodama: ");
        return Err(if out.code == 3 || msg.contains("still active") {
            Error::with_hint(
                format!("starting the agent: {msg}"),
                "wait for the active run (kubectl kodama logs -f), or pass --force to stop it",
            )
        } else {
            match all.lines().find_map(|l| l.trim().strip_prefix("hint:")) {
                Some(h) => Error::with_hint(format!("starting the agent: {msg}"), h.trim()),
                None => Error::msg(format!("starting the agent: {msg}")),
            }
        });
    }
    let id = out
        .stdout_str()
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_string();
    if !super::valid_run_id(&id) {
        return Err(Error::msg(format!(
            "starting the agent: unexpected reply {:?}",
            super::transcript::sanitize(&out.stdout_str())
        )));
    }
    Ok(id)
}

fn run_ok(remote: &dyn Remote, argv: &[String], what: &str) -> Result<Vec<u8>> {
    let out = remote.run(argv, b"")?;
    if out.code != 0 {
        return Err(Error::msg(format!(
            "{what}: {}",
            super::transcript::sanitize(&out.stderr_str())
        )));
    }
    Ok(out.stdout)
}

/// Every run of the session, oldest first.
pub fn list_runs(remote: &dyn Remote, access: &Access, home: &str) -> Result<Vec<RunMeta>> {
    match access {
        Access::Binary(bin) => {
            let out = run_ok(
                remote,
                &[
                    bin.clone(),
                    s("run-agent"),
                    s("list"),
                    s("--home"),
                    s(home),
                    s("--json"),
                ],
                "listing agent runs",
            )?;
            serde_json::from_slice(&out)
                .map_err(|e| Error::msg(format!("listing agent runs: bad reply: {e}")))
        }
        Access::Shell => {
            let out = run_ok(
                remote,
                &[s("sh"), s("-c"), s(LIST_SH), s("sh"), s(home)],
                "listing agent runs",
            )?;
            let mut all: Vec<RunMeta> = out
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(all)
        }
    }
}

/// The run `id`, or (with `None`) the current run, else the last one; `Ok(None)` when the session
/// has no runs.
pub fn run_status(
    remote: &dyn Remote,
    access: &Access,
    home: &str,
    id: Option<&str>,
) -> Result<Option<RunMeta>> {
    if let Some(id) = id {
        if !super::valid_run_id(id) {
            return Err(Error::usage(format!("{id:?} is not a run id"), None));
        }
    }
    match access {
        Access::Binary(bin) => {
            let mut argv = vec![
                bin.clone(),
                s("run-agent"),
                s("status"),
                s("--home"),
                s(home),
                s("--json"),
            ];
            if let Some(id) = id {
                argv.push(s("--run"));
                argv.push(s(id));
            }
            let out = remote.run(&argv, b"")?;
            if out.code != 0 {
                let e = out.stderr_str();
                if e.contains("no agent run") {
                    return Ok(None);
                }
                return Err(Error::msg(format!(
                    "reading the agent run: {}",
                    super::transcript::sanitize(&e)
                )));
            }
            serde_json::from_slice(&out.stdout)
                .map(Some)
                .map_err(|e| Error::msg(format!("reading the agent run: bad reply: {e}")))
        }
        Access::Shell => {
            let all = list_runs(remote, access, home)?;
            let found = match id {
                Some(id) => match all.into_iter().find(|m| m.id == id) {
                    Some(m) => Some(m),
                    None => return Err(Error::msg(format!("no run {id} in this session"))),
                },
                None => {
                    let current = all
                        .iter()
                        .rev()
                        .find(|m| m.status == RunStatus::Running)
                        .cloned();
                    current.or_else(|| all.last().cloned())
                }
            };
            // The sh launcher does not parse JSON: take the result from the transcript here.
            match found {
                Some(mut m) if m.result.is_none() && m.status != RunStatus::Running => {
                    let t = read_transcript(remote, home, &m.id)?;
                    m.result = t
                        .split(|b| *b == b'\n')
                        .filter_map(super::RunResult::from_event)
                        .next_back();
                    if m.status == RunStatus::Succeeded
                        && m.result.as_ref().is_some_and(|r| r.is_error)
                    {
                        m.status = RunStatus::Failed;
                        m.reason = Some("the agent reported an error in its result".into());
                    }
                    Ok(Some(m))
                }
                other => Ok(other),
            }
        }
    }
}

/// list's AGENT column: running, succeeded, failed, or "-" when there is no run.
pub fn agent_column(meta: Option<&RunMeta>) -> &'static str {
    meta.map(|m| m.status.as_str()).unwrap_or("-")
}

/// Stop the run `id` (or the current one). Needs the binary.
pub fn stop_run(remote: &dyn Remote, access: &Access, home: &str, id: Option<&str>) -> Result<()> {
    let Access::Binary(bin) = access else {
        return Err(Error::msg(
            "stopping a run needs kodama's binary in the pod",
        ));
    };
    let mut argv = vec![bin.clone(), s("run-agent"), s("stop"), s("--home"), s(home)];
    if let Some(id) = id {
        argv.push(s("--run"));
        argv.push(s(id));
    }
    run_ok(remote, &argv, "stopping the agent run").map(|_| ())
}

/// The whole transcript of run `id` (plain `cat`).
pub fn read_transcript(remote: &dyn Remote, home: &str, id: &str) -> Result<Vec<u8>> {
    if !super::valid_run_id(id) {
        return Err(Error::usage(format!("{id:?} is not a run id"), None));
    }
    let path = format!("{}/{id}/transcript.jsonl", runs_dir(home));
    run_ok(
        remote,
        &[s("cat"), path],
        &format!("reading the transcript of run {id}"),
    )
}

/// The argv that streams complete transcript lines of run `id` from byte `offset`.
pub fn follow_argv(access: &Access, home: &str, id: &str, offset: u64) -> Vec<String> {
    match access {
        Access::Binary(bin) => vec![
            bin.clone(),
            s("run-agent"),
            s("follow"),
            s("--home"),
            s(home),
            s("--run"),
            s(id),
            s("--offset"),
            offset.to_string(),
        ],
        Access::Shell => vec![
            s("sh"),
            s("-c"),
            s(FOLLOW_SH),
            s("sh"),
            format!("{}/{id}", runs_dir(home)),
            offset.to_string(),
        ],
    }
}

/// Retry policy for [`follow`].
#[derive(Debug, Clone)]
pub struct FollowOpts {
    /// Give up after this many consecutive drops that delivered no new line.
    pub max_retries: u32,
    /// Wait this long before reconnecting.
    pub backoff: Duration,
}

impl Default for FollowOpts {
    fn default() -> Self {
        FollowOpts {
            max_retries: 10,
            backoff: Duration::from_secs(1),
        }
    }
}

enum Round {
    Done,
    Dropped(String),
}

/// Follow run `id` from byte `offset`, calling `sink` once per complete line (newline included).
/// On a dropped stream it reconnects from the offset just after the last complete line, so no line is
/// repeated or lost. Returns the final offset once the run has ended and everything was delivered.
pub fn follow(
    remote: &dyn Remote,
    access: &Access,
    home: &str,
    id: &str,
    offset: u64,
    opts: &FollowOpts,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    if !super::valid_run_id(id) {
        return Err(Error::usage(format!("{id:?} is not a run id"), None));
    }
    let mut off = offset;
    let mut fails = 0u32;
    loop {
        let before = off;
        match follow_round(remote, &follow_argv(access, home, id, off), &mut off, sink) {
            Ok(Round::Done) => return Ok(off),
            Ok(Round::Dropped(why)) => {
                if off > before {
                    fails = 0;
                } else {
                    fails += 1;
                }
                if fails > opts.max_retries {
                    return Err(Error::Transport {
                        message: format!(
                            "following run {id}: the connection keeps dropping ({why})"
                        ),
                        hint: Some(format!(
                            "resume later with `kubectl kodama logs -f --run {id}`"
                        )),
                    });
                }
                std::thread::sleep(opts.backoff);
            }
            Err(e) => return Err(e),
        }
    }
}

fn follow_round(
    remote: &dyn Remote,
    argv: &[String],
    off: &mut u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<Round> {
    let mut p = match remote.exec(argv) {
        Ok(p) => p,
        Err(e) => return Ok(Round::Dropped(e.to_string())),
    };
    drop(p.take_stdin());
    let mut out = p
        .take_stdout()
        .ok_or_else(|| Error::msg("no stdout from the pod"))?;
    let err = p.take_stderr();
    let err_thread = std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(mut r) = err {
            let _ = r.read_to_end(&mut b);
        }
        b
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut dropped: Option<String> = None;
    loop {
        match out.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                pending.extend_from_slice(&chunk[..n]);
                let mut start = 0;
                while let Some(i) = pending[start..].iter().position(|b| *b == b'\n') {
                    let end = start + i + 1;
                    sink(&pending[start..end])?;
                    *off += (end - start) as u64;
                    start = end;
                }
                pending.drain(..start);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                dropped = Some(e.to_string());
                break;
            }
        }
    }
    drop(out);
    let stderr = err_thread.join().unwrap_or_default();
    let code = p.wait();
    if let Some(why) = dropped {
        return Ok(Round::Dropped(why));
    }
    match code {
        Ok(0) => {
            if !pending.is_empty() {
                // The run ended without a final newline: deliver the rest as a line.
                pending.push(b'\n');
                sink(&pending)?;
                *off += pending.len() as u64 - 1;
            }
            Ok(Round::Done)
        }
        Ok(c) => Err(Error::msg(format!(
            "following the transcript: exit code {c}: {}",
            super::transcript::sanitize(String::from_utf8_lossy(&stderr).trim())
        ))),
        Err(e) => Ok(Round::Dropped(e.to_string())),
    }
}

/// What `kubectl kodama logs` does: resolve the run (`run`, else the current, else the last one),
/// then print its transcript rendered (or raw, sanitised) to `out`; with `follow`, keep printing
/// until the run ends, resuming across dropped connections. Returns the run's final record.
pub fn logs(
    remote: &dyn Remote,
    access: &Access,
    home: &str,
    run: Option<&str>,
    follow_run: bool,
    raw: bool,
    out: &mut dyn std::io::Write,
) -> Result<RunMeta> {
    let meta = run_status(remote, access, home, run)?.ok_or_else(|| {
        Error::with_hint(
            "this session has no agent run yet",
            "start one with kubectl kodama prompt NAME -p TEXT",
        )
    })?;
    let mut renderer = super::transcript::Renderer::new(Default::default());
    let mut emit = |line: &[u8]| -> Result<()> {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let text = if raw {
            let mut t = super::transcript::sanitize_bytes(body);
            t.push('\n');
            t
        } else {
            renderer.render(body)
        };
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("<stdout>", e))
    };
    if follow_run {
        follow(
            remote,
            access,
            home,
            &meta.id,
            0,
            &FollowOpts::default(),
            &mut emit,
        )?;
        return Ok(run_status(remote, access, home, Some(&meta.id))?.unwrap_or(meta));
    }
    let data = read_transcript(remote, home, &meta.id)?;
    for line in data.split_inclusive(|b| *b == b'\n') {
        emit(line)?;
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_column_values() {
        assert_eq!(agent_column(None), "-");
        let mut m: RunMeta =
            serde_json::from_str(r#"{"id":"a","startedAt":"x","status":"running"}"#).expect("meta");
        assert_eq!(agent_column(Some(&m)), "running");
        m.status = RunStatus::Failed;
        assert_eq!(agent_column(Some(&m)), "failed");
    }

    #[test]
    fn sh_start_argv_keeps_the_prompt_out_and_builds_valid_meta() {
        let mut req = StartRequest::new("/home/kodama/.claude");
        req.id = Some("r1".into());
        req.continue_ = true;
        let a = start_argv(&Access::Shell, &req).expect("argv");
        assert_eq!(&a[..3], &["sh", "-c", LAUNCH_SH]);
        assert_eq!(a[5], "launch");
        let base = &a[12];
        let full = format!(
            "{base},\"startedAt\":\"t\",\"endedAt\":null,\"status\":\"running\",\"exitCode\":null,\"reason\":null,\"pid\":null,\"agentPid\":null}}"
        );
        let m: RunMeta = serde_json::from_str(&full).expect("meta parses");
        assert_eq!(m.launcher, "sh");
        assert_eq!(a.last().map(String::as_str), Some("--continue"));
        let b = start_argv(&Access::Binary("/k".into()), &req).expect("argv");
        assert_eq!(&b[..3], &["/k", "run-agent", "start"]);
        assert!(b.contains(&"--continue".to_string()));
    }
}
