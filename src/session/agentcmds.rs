//! Agent-run commands: `logs`, `prompt`, `diff` and `push`, plus starting a run (used by start) and
//! list's AGENT column.
//!
//! Runs are reached through `run::records` with an [`Access`]: kodama's own binary in the pod when it
//! can run there (installed by `agent::install`, shared with sync), else plain `sh`. The prompt goes
//! on the exec's stdin, byte for byte. `diff` and `push` run git in the pod's /workspace and stream
//! its output; git never sees a token in argv (pushes use the clone's credential helper, which reads
//! the token from the session Secret's environment).
//!
//! May import: session::{ctx, resolve, podremote}, config, git, run, agent, term, error.

use std::io::{Read, Write};

use super::ctx::Ctx;
use super::resolve::{self, Found};
use crate::agent::install::{ensure_agent, AgentMode, InstallOptions};
use crate::cli::{LogsArgs, NameArgs, PromptArgs, PromptSource};
use crate::config::settings::AgentSettings;
use crate::config::{self, Layer};
use crate::error::{Error, Result};
use crate::manifest::{annotations, CLAUDE_HOME_DIR, WORKSPACE_DIR};
use crate::remote::Remote;
use crate::run::records::{self, Access, StartRequest};
use crate::run::{RunMeta, RunStatus};
use crate::term::{self, sanitize_for_tty};

/// Environment switch for the simulated cluster and demos, whose pods run on this very machine: also
/// copy a dynamically linked kodama binary into the pod (normally only a static build is used).
pub const ALLOW_DYNAMIC_ENV: &str = "KODAMA_AGENT_ALLOW_DYNAMIC";

/// How the in-pod helper is installed (defaults, plus [`ALLOW_DYNAMIC_ENV`]).
pub fn install_options() -> InstallOptions {
    InstallOptions {
        allow_dynamic: std::env::var(ALLOW_DYNAMIC_ENV).is_ok_and(|v| v == "1"),
        ..InstallOptions::default()
    }
}

/// How to reach the run records in this pod: our binary when it runs there, else sh.
pub fn access(remote: &dyn Remote) -> Result<Access> {
    Ok(match ensure_agent(remote, &install_options())? {
        AgentMode::Agent { path } => Access::Binary(path),
        AgentMode::Fallback { .. } => Access::Shell,
    })
}

/// Start an agent run in the session pod with `prompt` (byte for byte, on stdin) and the agent
/// settings (`agent.command`, watchdog times). Returns the run id. Refuses while another run is
/// active unless `force` (which stops it; needs kodama's binary in the pod).
pub fn start_run(
    remote: &dyn Remote,
    agent: &AgentSettings,
    prompt: &[u8],
    continue_: bool,
    force: bool,
) -> Result<String> {
    let access = access(remote)?;
    let mut req = StartRequest::new(CLAUDE_HOME_DIR);
    req.workspace = WORKSPACE_DIR.into();
    if !agent.command.is_empty() {
        req.command = agent.command.clone();
    }
    req.continue_ = continue_;
    req.force = force;
    req.idle_timeout_secs = agent.idle_timeout.as_secs();
    req.result_grace_secs = agent.result_grace_timeout.as_secs();
    records::start_run(remote, &access, &req, prompt)
}

/// list's AGENT column for a session pod: the current run's status, else the last run's
/// (running, succeeded, failed), or "-" when there is none or the pod cannot be read. One exec.
pub fn agent_column(remote: &dyn Remote) -> String {
    match records::list_runs(remote, &Access::Shell, CLAUDE_HOME_DIR) {
        Ok(runs) => column_of(&runs).to_string(),
        Err(_) => "-".into(),
    }
}

/// The AGENT column from a list of runs (oldest first).
pub fn column_of(runs: &[RunMeta]) -> &'static str {
    let current = runs.iter().rev().find(|m| m.status == RunStatus::Running);
    records::agent_column(current.or(runs.last()))
}

/// The agent settings of a session: the config (global, and the template next to the sync
/// directory), with the agent command the session was started with.
fn agent_settings(ctx: &Ctx, found: &Found) -> Result<AgentSettings> {
    let local = found
        .record
        .as_ref()
        .and_then(|r| r.sync.local_path.clone())
        .map(std::path::PathBuf::from)
        .filter(|p| p.is_dir());
    let tmpl = match &local {
        Some(l) => config::find_template(None, Some(l), l).unwrap_or(None),
        None => None,
    };
    let loaded = config::load(
        ctx.config_dir().ok().as_deref(),
        tmpl.as_deref(),
        &Layer::default(),
    )?;
    let mut agent = loaded.settings.agent.clone();
    if let Some(cmd) = found
        .record
        .as_ref()
        .map(|r| r.agent_command.clone())
        .filter(|c| !c.is_empty())
    {
        agent.command = cmd;
    }
    Ok(agent)
}

fn read_prompt(src: &PromptSource) -> Result<Vec<u8>> {
    let bytes = match src {
        PromptSource::Text(t) => t.as_bytes().to_vec(),
        PromptSource::File(p) => std::fs::read(p)
            .map_err(|e| Error::io(p, e).context("reading the prompt file".to_string()))?,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::usage(
            "the prompt is empty",
            Some("give a prompt with -p TEXT or --prompt-file FILE".into()),
        ));
    }
    Ok(bytes)
}

/// `prompt <name> -p TEXT|--prompt-file F [--continue] [--force]`.
pub fn prompt(ctx: &Ctx, args: &PromptArgs) -> Result<()> {
    let bytes = read_prompt(&args.prompt)?;
    let found = resolve::find(ctx, &args.name)?;
    let remote = resolve::remote_for(ctx, &found)?;
    let agent = agent_settings(ctx, &found)?;
    let id = start_run(
        &remote,
        &agent,
        &bytes,
        args.continue_conversation,
        args.force,
    )
    .map_err(|e| e.context(format!("session \"{}\"", args.name)))?;
    if found.record.is_some() {
        if let Ok(store) = ctx.store() {
            let _ = store.update(&args.name, |r| {
                let s = r.agent.get_or_insert_with(Default::default);
                s.runs += 1;
                s.last_run_id = Some(id.clone());
                s.last_run_status = Some(RunStatus::Running.as_str().into());
                s.last_run_started_at = Some(config::time::now_rfc3339());
            });
        }
    }
    super::print(&format!(
        "Started agent run {id} in session \"{}\".\nFollow it with: kubectl kodama logs {} -f\n",
        args.name, args.name
    ))
}

/// `logs <name> [-f] [--run ID] [--raw]`.
pub fn logs(ctx: &Ctx, args: &LogsArgs) -> Result<()> {
    let found = resolve::find(ctx, &args.name)?;
    let remote = resolve::remote_for(ctx, &found)?;
    let access = access(&remote)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let meta = records::logs(
        &remote,
        &access,
        CLAUDE_HOME_DIR,
        args.run.as_deref(),
        args.follow,
        args.raw,
        &mut out,
    )?;
    out.flush().map_err(|e| Error::io("<stdout>", e))?;
    if args.follow {
        let what = match (meta.status, meta.reason.as_deref()) {
            (RunStatus::Failed, Some(r)) => format!("failed: {}", sanitize_for_tty(r)),
            (s, _) => s.as_str().to_string(),
        };
        eprintln!("run {} {what}", meta.id);
    }
    Ok(())
}

/// Diff of /workspace against the base commit (the clone's `kodama.baseCommit`, else the given
/// fallback commit when it exists in the repository, else HEAD), untracked and uncommitted changes
/// included, through a temporary index. `$1` workspace, `$2` fallback base, then git diff options.
pub const DIFF_SH: &str = r#"cd "$1" || exit 1
git rev-parse --git-dir >/dev/null 2>&1 || { echo "kodama: $1 is not a git repository" >&2; exit 3; }
base=$(git config --get kodama.baseCommit) || base=
if [ -z "$base" ] && [ -n "$2" ] && git cat-file -e "$2^{commit}" 2>/dev/null; then base=$2; fi
[ -n "$base" ] || base=$(git rev-parse -q --verify HEAD) || base=$(git hash-object -t tree /dev/null)
gd=$(git rev-parse --absolute-git-dir) || exit 1
idx=$gd/kodama-diff-index.$$
trap 'rm -f "$idx"' EXIT
if [ -f "$gd/index" ]; then cp "$gd/index" "$idx" || exit 1; fi
GIT_INDEX_FILE=$idx git add -A -- . || exit 1
shift 2
GIT_INDEX_FILE=$idx git diff --cached "$@" "$base" --"#;

/// Git refuses repositories whose directory belongs to another user ("dubious ownership"); a
/// volume's root usually belongs to root with the session's fsGroup. Trust /workspace for this one
/// command (command-line config through the environment; nothing is written).
fn git_env_prefix() -> Vec<String> {
    vec![
        "env".into(),
        "GIT_CONFIG_COUNT=1".into(),
        "GIT_CONFIG_KEY_0=safe.directory".into(),
        format!("GIT_CONFIG_VALUE_0={WORKSPACE_DIR}"),
    ]
}

/// The argv of `diff`.
pub fn diff_argv(fallback_base: &str, color: bool) -> Vec<String> {
    let mut a = git_env_prefix();
    a.extend([
        "sh".into(),
        "-c".into(),
        DIFF_SH.into(),
        "kodama-diff".into(),
        WORKSPACE_DIR.into(),
        fallback_base.into(),
        if color {
            "--color=always"
        } else {
            "--no-color"
        }
        .into(),
    ]);
    a
}

fn annotation(found: &Found, key: &str) -> Option<String> {
    found
        .pod
        .as_ref()
        .and_then(|p| p.pointer("/metadata/annotations"))
        .and_then(|a| a.get(key))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Run `argv` in the pod, copying its stdout to ours as it arrives and its stderr (sanitised,
/// token-shaped strings redacted) to ours; returns the exit code and the stdout when `capture`.
fn stream(remote: &dyn Remote, argv: &[String], capture: bool) -> Result<(i32, Vec<u8>)> {
    let mut p = remote.exec(argv)?;
    drop(p.take_stdin());
    let err = p.take_stderr();
    let err_thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        if let Some(mut r) = err {
            let _ = r.read_to_end(&mut all);
        }
        all
    });
    let mut captured = Vec::new();
    let mut copy_err = None;
    if let Some(mut r) = p.take_stdout() {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if capture {
                        captured.extend_from_slice(&buf[..n]);
                    } else if let Err(e) = out.write_all(&buf[..n]).and_then(|()| out.flush()) {
                        copy_err = Some(Error::io("<stdout>", e));
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    copy_err = Some(Error::io("", e).context("reading from the pod"));
                    break;
                }
            }
        }
    }
    let stderr = err_thread.join().unwrap_or_default();
    let code = p.wait();
    if let Some(e) = copy_err {
        return Err(e);
    }
    let code = code?;
    let text = String::from_utf8_lossy(&stderr);
    let text = crate::git::redact(&sanitize_for_tty(text.trim_end()), &[]);
    if !text.is_empty() {
        eprintln!("{text}");
    }
    Ok((code, captured))
}

/// `diff <name>`: the workspace against the session's base commit, streamed to stdout.
pub fn diff(ctx: &Ctx, args: &NameArgs) -> Result<()> {
    let found = resolve::find(ctx, &args.name)?;
    let remote = resolve::remote_for(ctx, &found)?;
    let fallback = found
        .record
        .as_ref()
        .and_then(|r| r.commit_hash.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| annotation(&found, annotations::COMMIT))
        .unwrap_or_default();
    let (code, _) = stream(&remote, &diff_argv(&fallback, term::stdout_is_tty()), false)?;
    match code {
        0 => Ok(()),
        3 => Err(Error::with_hint(
            format!(
                "the workspace of session \"{}\" is not a git repository",
                args.name
            ),
            "diff needs a session started with --repo (or a git repository synced into /workspace)",
        )),
        c => Err(Error::msg(format!(
            "git diff in the pod failed with exit code {c}"
        ))),
    }
}

/// `push <name>`: push the session branch to origin from the pod, with the session's credentials.
pub fn push(ctx: &Ctx, args: &NameArgs) -> Result<()> {
    let found = resolve::find(ctx, &args.name)?;
    let remote = resolve::remote_for(ctx, &found)?;
    let branch = found
        .record
        .as_ref()
        .and_then(|r| r.branch.clone())
        .filter(|b| !b.is_empty())
        .or_else(|| annotation(&found, annotations::BRANCH));
    let mut argv = git_env_prefix();
    argv.extend(crate::git::clone::push_argv(
        WORKSPACE_DIR,
        branch.as_deref(),
    )?);
    let (code, out) = stream(&remote, &argv, true)?;
    if code != 0 {
        return Err(Error::with_hint(
            format!("git push in session \"{}\" failed (exit code {code})", args.name),
            "see git's message above; check the session's GITHUB_TOKEN / SSH key and that the branch may be pushed",
        ));
    }
    let out = String::from_utf8_lossy(&out);
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("KODAMA_RESULT {k}=")))
            .map(|v| sanitize_for_tty(v.trim()))
            .unwrap_or_default()
    };
    let commit = field("commit");
    super::print(&format!(
        "Pushed branch {} ({}) of session \"{}\" to origin\n",
        field("branch"),
        &commit[..commit.len().min(12)],
        args.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::LocalRemote;

    fn meta(id: &str, status: &str) -> RunMeta {
        serde_json::from_str(&format!(
            r#"{{"id":"{id}","startedAt":"x","status":"{status}"}}"#
        ))
        .expect("meta")
    }

    #[test]
    fn column_prefers_the_running_run_then_the_last() {
        assert_eq!(column_of(&[]), "-");
        assert_eq!(
            column_of(&[meta("a", "running"), meta("b", "failed")]),
            "running"
        );
        assert_eq!(
            column_of(&[meta("a", "failed"), meta("b", "succeeded")]),
            "succeeded"
        );
    }

    fn git(dir: &std::path::Path, args: &[&str]) {
        let st = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .status()
            .expect("git runs");
        assert!(st.success(), "git {args:?}");
    }

    #[test]
    fn diff_script_uses_the_fallback_base_and_includes_untracked_files() {
        let d = std::env::temp_dir().join(format!("kodama-diff-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        git(&d, &["init", "-q"]);
        std::fs::write(d.join("a.txt"), "one\n").expect("write");
        git(&d, &["add", "a.txt"]);
        git(&d, &["commit", "-qm", "base"]);
        let base = String::from_utf8(
            std::process::Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(&d)
                .output()
                .expect("rev-parse")
                .stdout,
        )
        .expect("utf8")
        .trim()
        .to_string();
        std::fs::write(d.join("a.txt"), "two\n").expect("write");
        git(&d, &["commit", "-qam", "later"]);
        std::fs::write(d.join("new.txt"), "fresh\n").expect("write");
        let mut argv = diff_argv(&base, false);
        let ws = argv
            .iter()
            .position(|a| a == WORKSPACE_DIR)
            .expect("ws arg");
        argv[ws] = d.display().to_string();
        let out = LocalRemote::default().run(&argv, b"").expect("run");
        assert_eq!(out.code, 0, "{}", out.stderr_str());
        let text = out.stdout_str();
        // Against the fallback base: the committed change and the untracked file both show.
        assert!(text.contains("-one") && text.contains("+two"), "{text}");
        assert!(text.contains("+fresh"), "{text}");
        // The user's index is untouched: new.txt is still untracked.
        let st = std::process::Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(&d)
            .output()
            .expect("status");
        assert_eq!(String::from_utf8_lossy(&st.stdout).trim(), "?? new.txt");
        // A bogus fallback falls back to HEAD: only the untracked file.
        argv[ws + 1] = "0000000000000000000000000000000000000000".into();
        let out = LocalRemote::default().run(&argv, b"").expect("run");
        let text = out.stdout_str();
        assert!(!text.contains("+two") && text.contains("+fresh"), "{text}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
