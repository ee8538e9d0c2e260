//! The in-pod git steps as argv for `Remote`: the clone (a POSIX sh script passed as one argv element
//! with every value as a positional parameter), its result parser, `diff` against the base commit
//! (uncommitted and untracked changes included) and `push` of the session branch.
//!
//! Credentials: HTTPS uses a credential helper written to `.git/kodama-credential-helper` that reads
//! GITHUB_TOKEN/GH_TOKEN from its environment when git asks, scoped in .git/config to the repository's
//! `scheme://host`; no token is ever in argv, the URL, .git/config or output. SSH uses the mounted key
//! through `core.sshCommand` with the known_hosts policy.
//!
//! May import: error, secret, remote, config (the `KnownHosts` type), git (its own module).

use super::branch::BranchPlan;
use super::url::{RepoKind, RepoUrl};
use crate::error::{Error, Result};
use crate::remote::Remote;
use crate::secret::Secret;
use std::io::Read;

/// The clone script (see its header for the arguments).
pub const CLONE_SH: &str = include_str!("clone.sh");

/// How ssh treats unknown host keys: the one type shared by the config files, the manifests and
/// the clone step, defined in `config::layer` (re-exported here; `KnownHosts::parse` lives there too).
pub use crate::config::layer::KnownHosts;

/// Everything the clone step needs.
#[derive(Debug, Clone)]
pub struct CloneParams {
    pub repo: RepoUrl,
    /// The workspace in the pod (normally /workspace).
    pub dest: String,
    pub plan: BranchPlan,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    /// Path of the mounted private key in the pod (ssh repos).
    pub ssh_key: Option<String>,
    pub known_hosts: KnownHosts,
    /// A mounted known_hosts file; default: `.git/kodama-known-hosts` (accept-new) or
    /// `~/.ssh/known_hosts` (strict).
    pub known_hosts_file: Option<String>,
    /// `--depth` for a shallow clone.
    pub depth: Option<u32>,
}

impl CloneParams {
    /// Defaults for `repo` into /workspace with `plan`.
    pub fn new(repo: RepoUrl, plan: BranchPlan) -> CloneParams {
        CloneParams {
            repo,
            dest: "/workspace".into(),
            plan,
            user_name: None,
            user_email: None,
            ssh_key: None,
            known_hosts: KnownHosts::AcceptNew,
            known_hosts_file: None,
            depth: None,
        }
    }
}

fn safe_path(p: &str, what: &str) -> Result<()> {
    if p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@".contains(&b))
    {
        Ok(())
    } else {
        Err(Error::usage(
            format!("{what} {p:?} must be an absolute path of letters, digits and / . _ - + @"),
            None,
        ))
    }
}

/// The argv of the clone step: `sh -c CLONE_SH kodama-clone URL DEST MODE BASE WORK NAME EMAIL KEY
/// POLICY KNOWN_HOSTS DEPTH SCOPE`.
pub fn clone_argv(p: &CloneParams) -> Result<Vec<String>> {
    let (mode, base, work) = p.plan.script_args();
    if let Some(k) = &p.ssh_key {
        safe_path(k, "the SSH key path")?;
    }
    if let Some(k) = &p.known_hosts_file {
        safe_path(k, "the known_hosts path")?;
    }
    safe_path(&p.dest, "the workspace path")?;
    let key = if p.repo.kind == RepoKind::Ssh {
        p.ssh_key.clone().unwrap_or_default()
    } else {
        String::new()
    };
    Ok(vec![
        "sh".into(),
        "-c".into(),
        CLONE_SH.into(),
        "kodama-clone".into(),
        p.repo.url.clone(),
        p.dest.clone(),
        mode.into(),
        base,
        work,
        p.user_name.clone().unwrap_or_default(),
        p.user_email.clone().unwrap_or_default(),
        key,
        p.known_hosts.as_str().into(),
        p.known_hosts_file.clone().unwrap_or_default(),
        p.depth.map(|d| d.to_string()).unwrap_or_default(),
        p.repo.credential_scope().unwrap_or_default(),
    ])
}

/// Whether the clone step cloned or found an existing clone of the same repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneState {
    Cloned,
    Existing,
}

/// The clone step's results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneResult {
    pub state: CloneState,
    /// The checked-out (session) branch.
    pub branch: String,
    /// The branch it was created from (or itself).
    pub base_branch: String,
    /// The base branch's commit at clone time: what `diff` compares against.
    pub base_commit: String,
    /// HEAD after the step.
    pub commit: String,
    /// True when the session branch was created by this step.
    pub created: bool,
}

/// Parse the `KODAMA_RESULT key=value` lines of the clone step's stdout.
pub fn parse_clone_output(stdout: &str) -> Result<CloneResult> {
    let get = |k: &str| -> Option<String> {
        stdout
            .lines()
            .rev()
            .filter_map(|l| l.strip_prefix("KODAMA_RESULT "))
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    };
    let state = match get("state").as_deref() {
        Some("cloned") => CloneState::Cloned,
        Some("existing") => CloneState::Existing,
        _ => return Err(Error::msg("the clone step printed no result")),
    };
    Ok(CloneResult {
        state,
        branch: get("branch").unwrap_or_default(),
        base_branch: get("baseBranch").unwrap_or_default(),
        base_commit: get("baseCommit").unwrap_or_default(),
        commit: get("commit").unwrap_or_default(),
        created: get("created").as_deref() == Some("1"),
    })
}

/// Run the clone step through `remote`, passing git's progress (stderr, redacted with `secrets`) to
/// `progress` as it arrives. On failure the error carries git's own message, redacted.
pub fn run_clone(
    remote: &dyn Remote,
    p: &CloneParams,
    secrets: &[&Secret],
    progress: &mut dyn FnMut(&str),
) -> Result<CloneResult> {
    let argv = clone_argv(p)?;
    let mut proc_ = remote.exec(&argv)?;
    drop(proc_.take_stdin());
    let mut out = proc_
        .take_stdout()
        .ok_or_else(|| Error::msg("no stdout from the clone step"))?;
    let reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out.read_to_end(&mut b);
        b
    });
    let mut tail = String::new();
    if let Some(mut err) = proc_.take_stderr() {
        let mut buf = [0u8; 8192];
        let mut pending = Vec::new();
        loop {
            let n = match err.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            // Hand over complete lines (git's progress uses \r as a line end too).
            if let Some(i) = pending.iter().rposition(|b| *b == b'\n' || *b == b'\r') {
                let chunk: Vec<u8> = pending.drain(..=i).collect();
                let text = super::redact(&String::from_utf8_lossy(&chunk), secrets);
                keep_tail(&mut tail, &text);
                progress(&text);
            }
        }
        if !pending.is_empty() {
            let text = super::redact(&String::from_utf8_lossy(&pending), secrets);
            keep_tail(&mut tail, &text);
            progress(&text);
        }
    }
    let stdout = reader
        .join()
        .map_err(|_| Error::msg("clone output reader panicked"))?;
    let code = proc_.wait()?;
    if code != 0 {
        let msg: Vec<&str> = tail
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.contains('%'))
            .collect();
        let last = msg[msg.len().saturating_sub(6)..].join("\n  ");
        return Err(Error::with_hint(
            format!("cloning {} into {} failed:\n  {last}", p.repo.display(), p.dest),
            match p.repo.kind {
                RepoKind::Https => "for a private repository set GITHUB_TOKEN (or GH_TOKEN) in your environment or dotenv file",
                RepoKind::Ssh => "check git.secretName (the SSH key) and the host's known_hosts policy",
                RepoKind::Local => "check the repository path",
            },
        ));
    }
    parse_clone_output(&super::redact(&String::from_utf8_lossy(&stdout), secrets))
}

fn keep_tail(tail: &mut String, text: &str) {
    tail.push_str(text);
    if tail.len() > 16 * 1024 {
        let cut = tail.len() - 8 * 1024;
        let cut = (cut..tail.len())
            .find(|i| tail.is_char_boundary(*i))
            .unwrap_or(0);
        tail.drain(..cut);
    }
}

/// Options of `kubectl kodama diff`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffOpts {
    pub stat: bool,
    pub name_only: bool,
    pub color: bool,
    /// Base commit to use when the clone recorded none (e.g. the pod annotation's commit).
    pub fallback_base: Option<String>,
}

/// `$1` workspace, `$2` fallback base commit (may be empty), then git diff options. The base is the
/// commit recorded at clone time (`kodama.baseCommit`), else the fallback when the repository has it,
/// else HEAD (else the empty tree).
const DIFF_SH: &str = r#"cd "$1" || exit 1
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

/// argv for the workspace's diff against the base commit (recorded at clone time; HEAD if none),
/// including uncommitted and untracked (not ignored) files. Uses a temporary index so the user's
/// index and working tree are untouched.
pub fn diff_argv(dest: &str, o: &DiffOpts) -> Vec<String> {
    let mut a = vec![
        "sh".into(),
        "-c".into(),
        DIFF_SH.into(),
        "kodama-diff".into(),
        dest.into(),
        o.fallback_base.clone().unwrap_or_default(),
    ];
    if o.stat {
        a.push("--stat".into());
    }
    if o.name_only {
        a.push("--name-only".into());
    }
    a.push(
        if o.color {
            "--color=always"
        } else {
            "--no-color"
        }
        .into(),
    );
    a
}

const PUSH_SH: &str = r#"cd "$1" || exit 1
export GIT_TERMINAL_PROMPT=0
b=$2
[ -n "$b" ] || b=$(git symbolic-ref --short -q HEAD) || { echo "kodama: HEAD is detached; pass the branch to push" >&2; exit 1; }
h=$(git rev-parse --absolute-git-dir)/kodama-credential-helper
[ -x "$h" ] || { printf '%s' "$3" >"$h" && chmod 700 "$h"; } || exit 1
git push --progress -u origin "refs/heads/$b:refs/heads/$b" >&2 || exit 1
printf 'KODAMA_RESULT branch=%s\nKODAMA_RESULT commit=%s\n' "$b" "$(git rev-parse HEAD)""#;

/// The credential helper (also embedded in clone.sh): answers git's `get` with the token from
/// GITHUB_TOKEN or GH_TOKEN in its environment at that moment.
pub const CREDENTIAL_HELPER_SH: &str = "#!/bin/sh
# kodama: give git the token from the environment at the moment it asks; it is never stored.
[ \"${1-}\" = get ] || exit 0
tok=${GITHUB_TOKEN:-${GH_TOKEN:-}}
[ -n \"$tok\" ] || exit 0
while IFS= read -r line && [ -n \"$line\" ]; do :; done
printf 'username=x-access-token\\npassword=%s\\n' \"$tok\"
";

/// argv that pushes `branch` (None = the current branch) of the workspace to origin with the
/// session's credentials (the helper configured at clone time). Prints `KODAMA_RESULT` lines.
pub fn push_argv(dest: &str, branch: Option<&str>) -> Result<Vec<String>> {
    if let Some(b) = branch {
        super::branch::validate_branch_name(b, "the branch to push")?;
    }
    Ok(vec![
        "sh".into(),
        "-c".into(),
        PUSH_SH.into(),
        "kodama-push".into(),
        dest.into(),
        branch.unwrap_or_default().into(),
        CREDENTIAL_HELPER_SH.into(),
    ])
}

const STATUS_SH: &str = r#"cd "$1" 2>/dev/null || exit 0
git rev-parse --git-dir >/dev/null 2>&1 || exit 0
r() { printf 'KODAMA_RESULT %s=%s\n' "$1" "$2"; }
r branch "$(git symbolic-ref --short -q HEAD || echo HEAD)"
r commit "$(git rev-parse -q --verify HEAD)"
r subject "$(git log -1 --format=%s 2>/dev/null | tr -d '\r')"
r baseBranch "$(git config --get kodama.baseBranch)"
base=$(git config --get kodama.baseCommit) || base=
[ -n "$base" ] || base=$(git rev-parse -q --verify HEAD) || base=$(git hash-object -t tree /dev/null)
gd=$(git rev-parse --absolute-git-dir) || exit 1
idx=$gd/kodama-status-index.$$
trap 'rm -f "$idx"' EXIT
if [ -f "$gd/index" ]; then cp "$gd/index" "$idx" || exit 1; fi
GIT_INDEX_FILE=$idx git add -A -- . 2>/dev/null
r changedFiles "$(GIT_INDEX_FILE=$idx git diff --cached --name-only "$base" -- | wc -l | tr -d ' ')"
r uncommittedFiles "$(git status --porcelain 2>/dev/null | wc -l | tr -d ' ')""#;

/// The workspace's git state for `kubectl kodama status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkspaceStatus {
    pub branch: String,
    /// HEAD commit hash (empty in a repository without commits).
    pub commit: String,
    /// HEAD's subject line.
    pub subject: String,
    pub base_branch: String,
    /// Files that differ from the base commit, committed or not, untracked included.
    pub changed_files: u64,
    /// Files with uncommitted changes (git status --porcelain).
    pub uncommitted_files: u64,
}

/// argv printing the workspace's git state; prints nothing (exit 0) when it is not a repository.
pub fn status_argv(dest: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        STATUS_SH.into(),
        "kodama-status".into(),
        dest.into(),
    ]
}

/// Parse [`status_argv`]'s output; `None` when the workspace holds no repository.
pub fn parse_status(stdout: &str) -> Option<WorkspaceStatus> {
    let get = |k: &str| -> Option<String> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("KODAMA_RESULT "))
            .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    };
    let branch = get("branch")?;
    Some(WorkspaceStatus {
        branch,
        commit: get("commit").unwrap_or_default(),
        subject: get("subject").unwrap_or_default(),
        base_branch: get("baseBranch").unwrap_or_default(),
        changed_files: get("changedFiles")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        uncommitted_files: get("uncommittedFiles")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    })
}

/// Check the clone parameters against the repository kind and return warnings (not errors) the
/// caller should show, e.g. an ssh URL without a key.
pub fn clone_warnings(p: &CloneParams, token_available: bool) -> Vec<String> {
    let mut w = Vec::new();
    match p.repo.kind {
        RepoKind::Ssh if p.ssh_key.is_none() => w.push(format!(
            "{} is an SSH URL but no SSH key is configured (git.secretName / --git-ssh-secret); the clone will fail unless the repository is public over SSH",
            p.repo.display()
        )),
        RepoKind::Https if !token_available => {
            w.push("no GITHUB_TOKEN or GH_TOKEN: only public repositories can be cloned".into())
        }
        _ => {}
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::url::parse_repo_url;

    #[test]
    fn clone_argv_passes_values_as_positional_parameters() {
        let repo = parse_repo_url("https://github.com/o/r").expect("url");
        let plan = BranchPlan::New {
            base: None,
            work: "kodama/w-1".into(),
        };
        let mut p = CloneParams::new(repo, plan);
        p.user_name = Some("Ada $(id) `x`".into());
        let a = clone_argv(&p).expect("argv");
        assert_eq!(&a[..2], &["sh", "-c"]);
        assert_eq!(a[3], "kodama-clone");
        assert_eq!(a[4], "https://github.com/o/r");
        assert_eq!(a[6], "new");
        assert_eq!(a[9], "Ada $(id) `x`");
        assert_eq!(a.last().map(String::as_str), Some("https://github.com"));
        assert!(!CLONE_SH.contains("Ada"));
        p.ssh_key = Some("/x/'; rm -rf /".into());
        assert!(clone_argv(&p).is_err());
    }

    #[test]
    fn parses_results() {
        let r = parse_clone_output(
            "noise\nKODAMA_RESULT state=cloned\nKODAMA_RESULT branch=kodama/w-1\nKODAMA_RESULT baseBranch=main\nKODAMA_RESULT baseCommit=abc\nKODAMA_RESULT commit=abc\nKODAMA_RESULT created=1\n",
        )
        .expect("parse");
        assert_eq!(r.state, CloneState::Cloned);
        assert_eq!(
            (r.branch.as_str(), r.base_branch.as_str()),
            ("kodama/w-1", "main")
        );
        assert!(r.created);
        assert!(parse_clone_output("nothing").is_err());
    }

    #[test]
    fn known_hosts_policy_parses() {
        assert_eq!(
            KnownHosts::parse("accept-new").expect("ok"),
            KnownHosts::AcceptNew
        );
        assert_eq!(KnownHosts::parse("strict").expect("ok"), KnownHosts::Strict);
        assert_eq!(KnownHosts::parse("off").expect("ok"), KnownHosts::Off);
        assert!(KnownHosts::parse("maybe").is_err());
    }
}
