//! The in-pod clone, diff and push steps against real git, with `LocalRemote` standing in for the pod
//! and temp dirs for /workspace: local bare repositories, branch cases, re-runs over an existing
//! workspace, and a token-authenticated HTTP clone (git http-backend behind a small server in this
//! file) with leak scans over everything written, shown and run.

use kodama::git::branch::{self, BranchPlan};
use kodama::git::clone::{self, CloneParams, CloneState, DiffOpts};
use kodama::git::local;
use kodama::git::url::parse_repo_url;
use kodama::remote::{LocalRemote, Remote};
use kodama::secret::Secret;

mod git_http;
use git_http::start_git_http;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

static N: AtomicUsize = AtomicUsize::new(0);

struct Env {
    root: PathBuf,
    ws: PathBuf,
    remote: LocalRemote,
}

impl Env {
    fn new(extra: &[(&str, &str)]) -> Env {
        let n = N.fetch_add(1, Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("kodama-git-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let home = root.join("home");
        let ws = root.join("workspace");
        std::fs::create_dir_all(&home).expect("home");
        std::fs::create_dir_all(&ws).expect("ws");
        let mut env = vec![
            ("HOME".to_string(), home.to_string_lossy().to_string()),
            ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
            ("GIT_CONFIG_GLOBAL".into(), "/dev/null".into()),
        ];
        for (k, v) in extra {
            env.push((k.to_string(), v.to_string()));
        }
        Env {
            remote: LocalRemote { cwd: None, env },
            root,
            ws,
        }
    }

    fn sh(&self, dir: &Path, script: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .envs(self.remote.env.iter().cloned())
            .env("GIT_AUTHOR_NAME", "T")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "T")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A bare repository with `main` (default, 2 commits) and `develop` (1 more commit).
    fn bare(&self, name: &str) -> PathBuf {
        let bare = self.root.join(format!("{name}.git"));
        let src = self.root.join(format!("{name}-src"));
        std::fs::create_dir_all(&src).expect("src");
        self.sh(
            &self.root,
            &format!("git init -q --bare -b main '{}'", bare.display()),
        );
        self.sh(
            &src,
            &format!(
                "git init -q -b main . && echo hello > README.md && git add . && git commit -q -m one && \
                 echo more >> README.md && git commit -q -am two && git checkout -q -b develop && \
                 echo dev > dev.txt && git add . && git commit -q -m dev && \
                 git push -q '{0}' main develop",
                bare.display()
            ),
        );
        bare
    }

    fn params(&self, url: &str, plan: BranchPlan) -> CloneParams {
        let mut p = CloneParams::new(parse_repo_url(url).expect("url"), plan);
        p.dest = self.ws.to_string_lossy().into();
        p.user_name = Some("Ada Lovelace".into());
        p.user_email = Some("ada@example.com".into());
        p
    }

    fn clone(&self, p: &CloneParams) -> kodama::Result<clone::CloneResult> {
        clone::run_clone(&self.remote, p, &[], &mut |_| {})
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

const T: u64 = 1_736_951_400;

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into())
        .collect();
    v.sort();
    v
}

#[test]
fn auto_branch_is_created_from_the_default_branch() {
    let e = Env::new(&[]);
    let bare = e.bare("r");
    let plan = branch::plan("work", "kodama/", true, None, None, T).expect("plan");
    let r = e
        .clone(&e.params(&bare.to_string_lossy(), plan))
        .expect("clone");
    let main = e.sh(&bare, "git rev-parse main");
    assert_eq!(r.state, CloneState::Cloned);
    assert_eq!(r.branch, "kodama/work-20250115143000");
    assert_eq!(r.base_branch, "main");
    assert_eq!(r.base_commit, main);
    assert_eq!(r.commit, main);
    assert!(r.created);
    assert_eq!(
        e.sh(&e.ws, "git symbolic-ref --short HEAD"),
        "kodama/work-20250115143000"
    );
    assert_eq!(e.sh(&e.ws, "git config user.name"), "Ada Lovelace");
    assert_eq!(e.sh(&e.ws, "git config user.email"), "ada@example.com");
    assert_eq!(
        std::fs::read_to_string(e.ws.join("README.md")).expect("readme"),
        "hello\nmore\n"
    );
    assert!(!e.ws.join("dev.txt").exists());
}

#[test]
fn existing_branch_is_checked_out_and_a_missing_one_fails_or_is_created() {
    let e = Env::new(&[]);
    let bare = e.bare("r");
    let url = bare.to_string_lossy().to_string();
    let plan = branch::plan("w", "kodama/", true, Some("develop"), None, T).expect("plan");
    let r = e.clone(&e.params(&url, plan)).expect("clone");
    assert_eq!(
        (r.branch.as_str(), r.base_branch.as_str(), r.created),
        ("develop", "develop", false)
    );
    assert!(e.ws.join("dev.txt").exists());
    assert_eq!(
        e.sh(&e.ws, "git rev-parse --abbrev-ref develop@{upstream}"),
        "origin/develop"
    );

    // Missing --branch without autoBranch: git's clear error, and the workspace is left empty.
    let e2 = Env::new(&[]);
    let bare2 = e2.bare("r");
    let plan = branch::plan("w", "kodama/", false, Some("nope"), None, T).expect("plan");
    let err = e2
        .clone(&e2.params(&bare2.to_string_lossy(), plan))
        .expect_err("missing branch");
    assert!(err.to_string().contains("branch nope not found"), "{err}");
    assert!(listing(&e2.ws).is_empty(), "{:?}", listing(&e2.ws));

    // With autoBranch the missing branch is created from the default branch.
    let plan = branch::plan("w", "kodama/", true, Some("nope"), None, T).expect("plan");
    let r = e2
        .clone(&e2.params(&bare2.to_string_lossy(), plan))
        .expect("clone");
    assert_eq!(
        (r.branch.as_str(), r.base_branch.as_str(), r.created),
        ("nope", "main", true)
    );
}

#[test]
fn a_rerun_over_the_same_repo_keeps_uncommitted_work() {
    let e = Env::new(&[]);
    let bare = e.bare("r");
    let url = bare.to_string_lossy().to_string();
    let plan = branch::plan("w", "kodama/", true, None, None, T).expect("plan");
    let first = e.clone(&e.params(&url, plan)).expect("clone");
    std::fs::write(e.ws.join("README.md"), "edited, not committed\n").expect("edit");
    std::fs::write(e.ws.join("notes.txt"), "untracked\n").expect("new file");
    // Same session again (a later timestamp would give another auto branch: it must not matter).
    let plan = branch::plan("w", "kodama/", true, None, None, T + 60).expect("plan");
    let again = e
        .clone(&e.params(&format!("file://{url}"), plan))
        .expect("rerun");
    assert_eq!(again.state, CloneState::Existing);
    assert_eq!(again.branch, first.branch);
    assert_eq!(again.base_branch, "main");
    assert_eq!(again.base_commit, first.base_commit);
    assert!(!again.created);
    assert_eq!(
        std::fs::read_to_string(e.ws.join("README.md")).expect("readme"),
        "edited, not committed\n"
    );
    assert_eq!(
        std::fs::read_to_string(e.ws.join("notes.txt")).expect("notes"),
        "untracked\n"
    );
}

#[test]
fn a_workspace_with_another_repo_or_unrelated_content_is_not_overwritten() {
    let e = Env::new(&[]);
    let a = e.bare("a");
    let b = e.bare("b");
    let plan = branch::plan("w", "kodama/", true, None, None, T).expect("plan");
    e.clone(&e.params(&a.to_string_lossy(), plan.clone()))
        .expect("clone a");
    std::fs::write(e.ws.join("work.txt"), "precious").expect("write");
    let err = e
        .clone(&e.params(&b.to_string_lossy(), plan.clone()))
        .expect_err("different repo");
    assert!(
        err.to_string().contains("already holds a clone of"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(e.ws.join("work.txt")).expect("kept"),
        "precious"
    );

    let e2 = Env::new(&[]);
    let b2 = e2.bare("b");
    std::fs::create_dir_all(e2.ws.join("lost+found")).expect("lost+found");
    std::fs::write(e2.ws.join(".hidden"), "mine").expect("write");
    let err = e2
        .clone(&e2.params(&b2.to_string_lossy(), plan.clone()))
        .expect_err("non-empty");
    assert!(err.to_string().contains("is not empty"), "{err}");
    assert_eq!(listing(&e2.ws), vec![".hidden", "lost+found"]);

    // lost+found alone (a fresh ext4 volume) counts as empty.
    std::fs::remove_file(e2.ws.join(".hidden")).expect("rm");
    e2.clone(&e2.params(&b2.to_string_lossy(), plan))
        .expect("clone next to lost+found");
}

#[test]
fn dot_uses_the_local_branch_as_base_and_diff_and_push_work() {
    let e = Env::new(&[]);
    let bare = e.bare("r");
    let local_dir = e.root.join("laptop");
    e.sh(
        &e.root,
        &format!(
            "git clone -q '{}' '{}' && cd '{}' && git checkout -q develop",
            bare.display(),
            local_dir.display(),
            local_dir.display()
        ),
    );
    let dot = local::resolve_dot(&local_dir).expect("resolve .");
    assert_eq!(dot.branch, "develop");
    let plan = branch::plan("w", "kodama/", true, None, Some(&dot.remote_branch), T).expect("plan");
    let mut p = e.params(&dot.url.url, plan);
    p.repo = dot.url.clone();
    let r = e.clone(&p).expect("clone");
    assert_eq!(r.base_branch, "develop");
    assert!(e.ws.join("dev.txt").exists());

    // A committed change, an uncommitted edit and an untracked file all show in the diff.
    e.sh(
        &e.ws,
        "echo c > committed.txt && git add committed.txt && git commit -q -m c && \
         echo changed >> README.md && echo u > untracked.txt",
    );
    let status_before = e.sh(&e.ws, "git status --porcelain");
    let st = e
        .remote
        .run(&clone::status_argv(&e.ws.to_string_lossy()), b"")
        .expect("status");
    let st = clone::parse_status(&st.stdout_str()).expect("a repository");
    assert_eq!(st.branch, "kodama/w-20250115143000");
    assert_eq!(st.base_branch, "develop");
    assert_eq!(st.subject, "c");
    assert_eq!(st.changed_files, 3);
    assert_eq!(st.uncommitted_files, 2);
    let none = e
        .remote
        .run(
            &clone::status_argv(&e.root.join("home").to_string_lossy()),
            b"",
        )
        .expect("status");
    assert_eq!(clone::parse_status(&none.stdout_str()), None);
    let out = e
        .remote
        .run(
            &clone::diff_argv(&e.ws.to_string_lossy(), &DiffOpts::default()),
            b"",
        )
        .expect("diff");
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    let d = out.stdout_str();
    for f in ["committed.txt", "README.md", "untracked.txt"] {
        assert!(d.contains(&format!("+++ b/{f}")), "{f} missing in:\n{d}");
    }
    assert!(
        !d.contains("dev.txt"),
        "base is develop, dev.txt is not a change"
    );
    assert_eq!(e.sh(&e.ws, "git status --porcelain"), status_before);
    let stat = e
        .remote
        .run(
            &clone::diff_argv(
                &e.ws.to_string_lossy(),
                &DiffOpts {
                    name_only: true,
                    ..Default::default()
                },
            ),
            b"",
        )
        .expect("diff");
    assert_eq!(stat.stdout_str(), "README.md\ncommitted.txt\nuntracked.txt");

    // Push the session branch.
    let out = e
        .remote
        .run(
            &clone::push_argv(&e.ws.to_string_lossy(), None).expect("argv"),
            b"",
        )
        .expect("push");
    assert_eq!(out.code, 0, "{}", out.stderr_str());
    let head = e.sh(&e.ws, "git rev-parse HEAD");
    assert!(out
        .stdout_str()
        .contains(&format!("KODAMA_RESULT commit={head}")));
    assert_eq!(e.sh(&bare, "git rev-parse kodama/w-20250115143000"), head);
}

// ---- token-authenticated HTTP ------------------------------------------------------------------

const TOKEN: &str = "ghp_KodamaTestToken0123456789abcdefABCDEF";

fn scan_tree_for(dir: &Path, needle: &[u8], hits: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        let ft = e.file_type().expect("type");
        if ft.is_dir() {
            scan_tree_for(&p, needle, hits);
        } else if ft.is_file() {
            let data = std::fs::read(&p).unwrap_or_default();
            if data.windows(needle.len()).any(|w| w == needle) {
                hits.push(p);
            }
        }
    }
}

/// Poll /proc/*/cmdline of every process until stopped; collect command lines holding the token.
fn cmdline_scanner(
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    git_seen: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Ok(rd) = std::fs::read_dir("/proc") {
                for e in rd.flatten() {
                    let name = e.file_name();
                    if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
                        continue;
                    }
                    let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
                        continue;
                    };
                    let s = String::from_utf8_lossy(&c).replace('\0', " ");
                    if s.starts_with("git ")
                        || s.contains("git-remote-http")
                        || s.contains("kodama-credential-helper")
                    {
                        git_seen.fetch_add(1, Ordering::SeqCst);
                    }
                    if s.contains(TOKEN) {
                        seen.lock().expect("lock").push(s);
                    }
                }
            }
            std::thread::yield_now();
        }
    })
}

#[test]
fn token_authenticated_http_clone_never_leaks_the_token() {
    let e = Env::new(&[("GITHUB_TOKEN", TOKEN)]);
    let bare = e.bare("private");
    let server = start_git_http(e.root.clone(), TOKEN);
    let url = format!("http://127.0.0.1:{}/private.git", server.port);
    let plan = branch::plan("sess", "kodama/", true, None, None, T).expect("plan");
    let p = e.params(&url, plan);
    let argv = clone::clone_argv(&p).expect("argv");
    assert!(!argv.iter().any(|a| a.contains(TOKEN)));

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let git_seen = Arc::new(AtomicUsize::new(0));
    let scanner = cmdline_scanner(stop.clone(), seen.clone(), git_seen.clone());
    let secret = Secret::new(TOKEN);
    let mut shown = String::new();
    let r = clone::run_clone(&e.remote, &p, &[], &mut |t| shown.push_str(t));
    // Push through the same helper (receive-pack over authenticated HTTP).
    e.sh(
        &e.ws,
        "echo x > pushed.txt && git add . && git commit -q -m p",
    );
    let push = e
        .remote
        .run(
            &clone::push_argv(&e.ws.to_string_lossy(), None).expect("argv"),
            b"",
        )
        .expect("push");
    stop.store(true, Ordering::SeqCst);
    scanner.join().expect("scanner");
    let r = r.expect("clone over authenticated http");
    assert_eq!(r.base_branch, "main");
    assert_eq!(push.code, 0, "{}", push.stderr_str());
    assert_eq!(
        e.sh(&bare, "git rev-parse kodama/sess-20250115143000"),
        e.sh(&e.ws, "git rev-parse HEAD")
    );
    assert!(shown.contains("kodama: cloning"), "{shown}");

    // Nothing written, shown, requested or run holds the token.
    let mut hits = Vec::new();
    scan_tree_for(&e.ws, TOKEN.as_bytes(), &mut hits);
    scan_tree_for(&e.root.join("home"), TOKEN.as_bytes(), &mut hits);
    assert!(hits.is_empty(), "token found in {hits:?}");
    let config = std::fs::read_to_string(e.ws.join(".git/config")).expect("config");
    assert!(
        config.contains(&format!(
            "[credential \"http://127.0.0.1:{}\"]",
            server.port
        )),
        "{config}"
    );
    assert!(!config.contains(TOKEN) && !config.contains("x-access-token"));
    assert!(!shown.contains(TOKEN));
    assert!(!push.stdout_str().contains(TOKEN) && !push.stderr_str().contains(TOKEN));
    assert!(!server
        .requests
        .lock()
        .expect("lock")
        .iter()
        .any(|r| r.contains(TOKEN)));
    assert!(
        seen.lock().expect("lock").is_empty(),
        "token in argv: {:?}",
        seen.lock()
    );
    assert!(
        git_seen.load(Ordering::SeqCst) > 0,
        "the scanner never saw a git process"
    );
    assert_eq!(format!("{secret:?}"), "<redacted>");

    // A wrong token fails with git's own message, redacted, and leaves the workspace empty.
    let bad_token = "ghp_WrongWrongWrongWrongWrong0123456789";
    let e2 = Env::new(&[("GITHUB_TOKEN", bad_token)]);
    std::fs::create_dir_all(&e2.ws).expect("ws");
    let plan = branch::plan("sess", "kodama/", true, None, None, T).expect("plan");
    let p2 = e2.params(&url, plan);
    let bad = Secret::new(bad_token);
    let mut shown2 = String::new();
    let err = clone::run_clone(&e2.remote, &p2, &[&bad], &mut |t| shown2.push_str(t))
        .expect_err("wrong token");
    let msg = format!("{err}");
    assert!(
        msg.contains("Authentication failed") || msg.contains("401"),
        "{msg}"
    );
    assert!(!msg.contains(bad_token) && !shown2.contains(bad_token));
    assert!(listing(&e2.ws).is_empty(), "{:?}", listing(&e2.ws));
}

#[test]
fn ssh_clone_uses_the_mounted_key_and_the_known_hosts_policy() {
    // A stand-in `ssh` first on PATH: records its argv, then runs the remote command locally.
    let e0 = Env::new(&[]);
    let bin = e0.root.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let args_out = e0.root.join("ssh-args");
    std::fs::write(
        bin.join("ssh"),
        "#!/bin/sh\nprintf '%s\\n' \"$@\" >>\"$SSH_ARGS_OUT\"\nfor last; do :; done\nexec sh -c \"$last\"\n",
    )
    .expect("ssh");
    Command::new("chmod")
        .arg("+x")
        .arg(bin.join("ssh"))
        .status()
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let e = Env::new(&[
        ("PATH", &path),
        ("SSH_ARGS_OUT", &args_out.to_string_lossy()),
    ]);
    let bare = e.bare("r");
    let key = e.root.join("key/ssh-privatekey");
    std::fs::create_dir_all(key.parent().expect("parent")).expect("key dir");
    std::fs::write(&key, "not a real key").expect("key");
    let url = format!("git@fakehost:{}", bare.display());
    let plan = branch::plan("w", "kodama/", true, None, None, T).expect("plan");
    let mut p = e.params(&url, plan);
    p.ssh_key = Some(key.to_string_lossy().into());
    let r = e.clone(&p).expect("ssh clone");
    assert_eq!(r.base_branch, "main");
    let args = std::fs::read_to_string(&args_out).expect("ssh args");
    let kh = e.ws.join(".git/kodama-known-hosts");
    for want in [
        "-i".to_string(),
        key.to_string_lossy().to_string(),
        "IdentitiesOnly=yes".into(),
        "BatchMode=yes".into(),
        "StrictHostKeyChecking=accept-new".into(),
        format!("UserKnownHostsFile={}", kh.display()),
        "git@fakehost".into(),
    ] {
        assert!(
            args.lines().any(|l| l == want),
            "{want} not in ssh argv:\n{args}"
        );
    }
    let cfg = e.sh(&e.ws, "git config core.sshCommand");
    assert!(cfg.contains("StrictHostKeyChecking=accept-new"), "{cfg}");

    // strict and off change only the policy options.
    for (policy, shk, file) in [
        (
            clone::KnownHosts::Strict,
            "yes",
            "/etc/kodama/known_hosts".to_string(),
        ),
        (clone::KnownHosts::Off, "no", "/dev/null".to_string()),
    ] {
        let e2 = Env::new(&[
            ("PATH", &path),
            ("SSH_ARGS_OUT", &args_out.to_string_lossy()),
        ]);
        let bare2 = e2.bare("r");
        let plan = branch::plan("w", "kodama/", true, None, None, T).expect("plan");
        let mut p2 = e2.params(&format!("git@fakehost:{}", bare2.display()), plan);
        p2.ssh_key = Some(key.to_string_lossy().into());
        p2.known_hosts = policy;
        if policy == clone::KnownHosts::Strict {
            p2.known_hosts_file = Some(file.clone());
        }
        e2.clone(&p2).expect("clone");
        let cfg = e2.sh(&e2.ws, "git config core.sshCommand");
        assert!(
            cfg.contains(&format!("StrictHostKeyChecking={shk}")),
            "{cfg}"
        );
        assert!(
            cfg.contains(&format!("UserKnownHostsFile='{file}'")),
            "{cfg}"
        );
    }
}
