//! End-to-end tests of the start-time wiring of git (clone in the pod after Ready, branch and commit
//! recorded), sync (clone first, then the local tree on top), agent runs, and secrets that never
//! leak into files, argv, the pod spec or the request journal.

mod common;
mod git_http;

use common::{Kodama, TempDir};

#[test]
fn clone_records_branch_and_commit_in_the_session_file_and_annotations() {
    let k = Kodama::new();
    k.write_test_config("");
    let root = TempDir::new("repo");
    let bare = common::bare_repo(
        &root,
        &[("README.md", "hello\n"), ("src/lib.rs", "// lib\n")],
    );
    let commit = common::git(&root.join("repo-work"), &["rev-parse", "main"]);
    let out = k.run(&[
        "start",
        "cl",
        "--no-sync",
        "--repo",
        bare.to_str().expect("utf8"),
    ]);
    out.ok();
    let (code, readme) = k.exec("default", "cl", &["cat", "/workspace/README.md"]);
    assert_eq!((code, readme.as_str()), (0, "hello\n"), "{out}");
    let rec = std::fs::read_to_string(k.session_file("cl")).expect("rec");
    assert!(rec.contains("branch: kodama/cl-"), "{rec}");
    assert!(rec.contains("baseBranch: main"), "{rec}");
    assert!(rec.contains(&format!("commitHash: {commit}")), "{rec}");
    let pod = k.pod("default", "kodama-cl").expect("pod");
    let ann = &pod["metadata"]["annotations"];
    assert!(ann["kodama.dev/branch"]
        .as_str()
        .expect("branch")
        .starts_with("kodama/cl-"));
    assert_eq!(ann["kodama.dev/commit"], commit.as_str());
    let (_, head) = k.exec(
        "default",
        "cl",
        &[
            "git",
            "-C",
            "/workspace",
            "rev-parse",
            "--abbrev-ref",
            "HEAD",
        ],
    );
    assert!(head.starts_with("kodama/cl-"), "{head}");

    // status: branch, last commit, changed files.
    k.exec(
        "default",
        "cl",
        &["sh", "-c", "echo new > /workspace/new.txt"],
    );
    let st = k.run(&["status", "cl", "-o", "json"]);
    st.ok();
    let v: serde_json::Value = serde_json::from_str(&st.stdout).expect("json");
    assert_eq!(v["status"], "Running");
    assert_eq!(v["git"]["commit"], commit.as_str());
    assert_eq!(v["git"]["changedFiles"], 1, "{st}");
    assert_eq!(v["node"], "sim-node");

    // stop + resume never re-clones and keeps uncommitted work.
    k.run(&["stop", "cl"]).ok();
    k.sim.clear_journal();
    k.run(&["resume", "cl"]).ok();
    let (_, new) = k.exec("default", "cl", &["cat", "/workspace/new.txt"]);
    assert_eq!(new, "new\n");
    let execs: Vec<String> = k
        .requests("GET", "/exec")
        .into_iter()
        .map(|e| e.query)
        .collect();
    assert!(
        execs.iter().all(|q| !q.contains("clone")),
        "resume ran a clone: {execs:?}"
    );
}

#[test]
fn a_private_https_repository_is_cloned_with_the_token_through_the_credential_helper() {
    let mut k = Kodama::new();
    k.write_test_config("");
    let root = TempDir::new("http-repo");
    let bare = common::bare_repo(&root, &[("README.md", "private\n")]);
    const TOKEN: &str = "ghp_PLANTEDhttpclone0123456789abcdef";
    let server = git_http::start_git_http(root.path().to_path_buf(), TOKEN);
    let url = format!(
        "http://127.0.0.1:{}/{}",
        server.port,
        bare.file_name().and_then(|n| n.to_str()).expect("name")
    );
    // Without the token the server refuses: start fails with git's message and rolls back.
    let out = k.run(&["start", "nope", "--no-sync", "--repo", &url]);
    out.fails().stderr_has("cloning");
    assert!(k.session_objects("default", "nope").is_empty());
    // With GITHUB_TOKEN in the local environment it clones.
    k.set_env("GITHUB_TOKEN", TOKEN);
    let out = k.run(&["start", "priv", "--no-sync", "--repo", &url]);
    out.ok();
    let (code, readme) = k.exec("default", "priv", &["cat", "/workspace/README.md"]);
    assert_eq!((code, readme.as_str()), (0, "private\n"), "{out}");
    // The token went only in the Authorization header: never in a URL, the clone's config, the
    // output, a file kodama wrote, or the request journal (which holds the pod spec) except the
    // Secret's own POST. (Process argv is scanned in tests/git_clone.rs and in
    // secrets_never_leak_into_files_argv_the_pod_spec_or_the_journal.)
    let reqs = server.requests.lock().expect("lock").clone();
    assert!(!reqs.is_empty());
    assert!(reqs.iter().all(|r| !r.contains(TOKEN)), "{reqs:?}");
    let (_, config) = k.exec("default", "priv", &["cat", "/workspace/.git/config"]);
    assert!(!config.contains(TOKEN), "{config}");
    assert!(!config.contains("ghp_"), "{config}");
    assert!(!out.all().contains(TOKEN), "{out}");
    assert_only_in_the_secret(&k, TOKEN);
}

/// `needle` appears nowhere kodama wrote or sent, except the session Secret's own POST.
fn assert_only_in_the_secret(k: &Kodama, needle: &str) {
    let leaks: Vec<String> = k
        .leaks(needle)
        .into_iter()
        .filter(|l| !l.starts_with("journal: POST /api/v1/namespaces/default/secrets"))
        .collect();
    assert!(leaks.is_empty(), "{leaks:?}");
}

#[test]
fn failed_clone_shows_gits_message_and_rolls_back() {
    let k = Kodama::new();
    k.write_test_config("");
    let out = k.run(&[
        "start",
        "bad",
        "--no-sync",
        "--repo",
        "/nonexistent/repo.git",
    ]);
    out.fails().stderr_has("cloning /nonexistent/repo.git");
    assert!(
        k.session_objects("default", "bad").is_empty(),
        "{:?}",
        k.session_objects("default", "bad")
    );
    assert!(!k.session_file("bad").exists());

    // Over HTTPS with a token: git's message, the token nowhere.
    let mut k = k;
    let token = "ghp_PLANTEDclonefail0123456789";
    k.set_env("GITHUB_TOKEN", token);
    let out = k.run(&[
        "start",
        "bad2",
        "--no-sync",
        "--repo",
        "https://127.0.0.1:9/org/repo.git",
    ]);
    out.fails()
        .stderr_has("cloning https://127.0.0.1:9/org/repo.git");
    assert!(!out.all().contains(token), "{out}");
    assert!(k.session_objects("default", "bad2").is_empty());
    assert_only_in_the_secret(&k, token);
}

#[test]
fn repo_and_sync_together_clone_first_then_sync_on_top() {
    let k = Kodama::new();
    k.write_test_config("");
    let root = TempDir::new("repo");
    let bare = common::bare_repo(
        &root,
        &[("README.md", "from git\n"), ("kept.txt", "git only\n")],
    );
    let local = TempDir::new("local");
    common::write(local.path(), "README.md", "local edit\n");
    common::write(local.path(), "notes/todo.txt", "uncommitted\n");
    let out = k.run(&[
        "start",
        "both",
        "--repo",
        bare.to_str().expect("utf8"),
        "--sync",
        local.path().to_str().expect("utf8"),
    ]);
    out.ok();
    let cat = |p: &str| k.exec("default", "both", &["cat", p]).1;
    assert_eq!(cat("/workspace/README.md"), "local edit\n", "{out}");
    assert_eq!(cat("/workspace/notes/todo.txt"), "uncommitted\n");
    assert_eq!(cat("/workspace/kept.txt"), "git only\n");
    let (_, head) = k.exec(
        "default",
        "both",
        &[
            "git",
            "-C",
            "/workspace",
            "rev-parse",
            "--abbrev-ref",
            "HEAD",
        ],
    );
    assert!(
        head.starts_with("kodama/both-"),
        "local work lands on the session branch: {head}"
    );
    let rec = std::fs::read_to_string(k.session_file("both")).expect("rec");
    assert!(
        rec.contains(&format!("localPath: {}", local.path().display())),
        "{rec}"
    );
}

#[test]
fn prompt_starts_an_agent_run_after_clone_and_sync() {
    let k = Kodama::new();
    k.write_test_config("");
    let local = TempDir::new("local");
    common::write(local.path(), "main.c", "int main(){}\n");
    let prompt = "Fix \"it\" $(whoami) `id` — ünïcode\nline two\n";
    common::write(k.cwd.path(), "task.txt", prompt);
    let out = k.run(&[
        "start",
        "ag",
        "--sync",
        local.path().to_str().expect("utf8"),
        "--prompt-file",
        "task.txt",
    ]);
    out.ok()
        .stderr_has("agent run")
        .stderr_has("no Claude credentials");
    common::wait_until("the fake agent got the prompt", 20, || {
        k.exec(
            "default",
            "ag",
            &["cat", "/workspace/fake-claude-prompt.out"],
        )
        .1 == prompt
    });
    assert_eq!(
        k.exec("default", "ag", &["cat", "/workspace/main.c"]).1,
        "int main(){}\n"
    );
    common::wait_until("the run finished", 20, || {
        let st = k.run(&["status", "ag", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap_or_default();
        v["agentRun"]["status"] == "succeeded"
    });
    let rec = std::fs::read_to_string(k.session_file("ag")).expect("rec");
    assert!(rec.contains("lastRunId"), "{rec}");
    let l = k.run(&["list"]);
    assert!(
        l.stdout
            .lines()
            .any(|x| x.starts_with("ag ") && x.contains("succeeded")),
        "{l}"
    );
    // The run record lives on the claude-home volume (it survives restarts), where `logs` reads it.
    let runs = k
        .pvc_dir("default", "kodama-claude-home-ag")
        .join("kodama/runs");
    assert!(runs.is_dir(), "no run records under {}", runs.display());
    let logs = k.run(&["logs", "ag"]);
    logs.ok();
    assert!(logs.stdout.contains("[result]"), "{logs}");
}

#[test]
fn empty_prompt_is_refused_before_anything_is_created() {
    let k = Kodama::new();
    k.write_test_config("");
    common::write(k.cwd.path(), "empty.txt", "  \n");
    k.run(&["start", "ep", "--no-sync", "--prompt-file", "empty.txt"])
        .fails()
        .stderr_has("prompt is empty");
    assert!(k.journal().iter().all(|e| e.method == "GET"));
}

#[test]
fn secrets_never_leak_into_files_argv_the_pod_spec_or_the_journal() {
    let mut k = Kodama::new();
    k.write_test_config("");
    let env_token = "ghp_PLANTEDenvfile0123456789abcdef";
    let ambient = "sk-ant-PLANTEDambient0123456789";
    let file_secret = "-----BEGIN OPENSSH PRIVATE KEY-----PLANTEDkeybytes";
    k.set_env("ANTHROPIC_API_KEY", ambient);
    common::write(
        k.cwd.path(),
        ".env",
        &format!("GITHUB_TOKEN={env_token}\nDB_URL='postgres://u:p@h/db'\n"),
    );
    let key = common::write(k.cwd.path(), "id_ed25519", &format!("{file_secret}\n"));
    let sf = format!("{}:/home/kodama/.ssh/id_ed25519", key.display());
    let out = k.run(&[
        "start",
        "sec",
        "--no-sync",
        "--env-file",
        ".env",
        "--secret-file",
        &sf,
        "-v",
    ]);
    out.ok()
        .stderr_has("GITHUB_TOKEN")
        .stderr_has("ANTHROPIC_API_KEY");
    // The Secret holds the values (base64) and the pod can read them.
    let (_, env) = k.exec(
        "default",
        "sec",
        &["sh", "-c", "printf %s \"$GITHUB_TOKEN\""],
    );
    assert_eq!(env, env_token);
    let (_, keyfile) = k.exec("default", "sec", &["cat", "/home/kodama/.ssh/id_ed25519"]);
    assert!(keyfile.starts_with(file_secret));
    let mut outputs = vec![out.clone()];
    outputs.push(k.run(&["list", "-o", "yaml"]));
    outputs.push(k.run(&["status", "sec", "-o", "json"]));
    outputs.push(k.run(&[
        "start",
        "sec2",
        "--no-sync",
        "--env-file",
        ".env",
        "--secret-file",
        &sf,
        "--dry-run",
    ]));
    let pod = k.pod("default", "kodama-sec").expect("pod").to_string();
    for needle in [env_token, ambient, "PLANTEDkeybytes"] {
        for o in &outputs {
            assert!(!o.all().contains(needle), "{needle} printed:\n{o}");
        }
        assert!(!pod.contains(needle), "{needle} in the pod spec");
        let leaks: Vec<String> = k
            .leaks(needle)
            .into_iter()
            .filter(|l| !l.starts_with("journal: POST /api/v1/namespaces/default/secrets"))
            .collect();
        let leaks: Vec<String> = leaks
            .into_iter()
            .filter(|l| !l.contains("/id_ed25519") && !l.ends_with("/.env"))
            .collect();
        assert!(leaks.is_empty(), "{needle} leaked: {leaks:?}");
        // Every process's argv in the pod.
        let (_, ps) = k.exec(
            "default",
            "sec",
            &[
                "sh",
                "-c",
                "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '",
            ],
        );
        assert!(!ps.contains(needle), "{needle} in a process's argv");
    }
    // The Secret was sent base64-encoded, never as plain text.
    for e in k.requests("POST", "/secrets") {
        assert!(!e.body_text().contains(env_token));
    }
}

#[test]
fn no_credentials_warning_when_the_reused_claude_home_holds_a_login() {
    let k = Kodama::new();
    k.write_test_config("");
    k.run(&["start", "cw", "--no-sync", "-p", "hi"])
        .ok()
        .stderr_has("no Claude credentials");
    let (code, _) = k.exec(
        "default",
        "cw",
        &[
            "sh",
            "-c",
            "echo '{}' > /home/kodama/.claude/.credentials.json",
        ],
    );
    assert_eq!(code, 0);
    k.run(&["delete", "cw", "-f"]).ok();
    k.wait_pod_gone("default", "cw", 30);
    let out = k.run(&["start", "cw", "--no-sync", "-p", "again"]);
    out.ok();
    assert!(!out.stderr.contains("no Claude credentials"), "{out}");
    // With an API key in the environment there is no warning either.
    let mut k2 = Kodama::new();
    k2.write_test_config("");
    k2.set_env("ANTHROPIC_API_KEY", "sk-ant-test");
    let out = k2.run(&["start", "cw2", "--no-sync", "-p", "x"]);
    out.ok();
    assert!(!out.stderr.contains("no Claude credentials"), "{out}");
}

#[test]
fn repo_dot_uses_the_local_upstream_and_branch_and_editor_overrides() {
    let k = Kodama::new();
    k.write_test_config("");
    let root = TempDir::new("repo");
    let bare = common::bare_repo(&root, &[("README.md", "upstream\n")]);
    // A local clone on a feature branch that exists upstream, with an editor override.
    let local = root.join("local");
    common::git(
        root.path(),
        &[
            "clone",
            "-q",
            bare.to_str().expect("utf8"),
            local.to_str().expect("utf8"),
        ],
    );
    common::git(&local, &["checkout", "-q", "-b", "feature"]);
    common::write(&local, "feature.txt", "f\n");
    common::git(&local, &["add", "-A"]);
    common::git(&local, &["commit", "-q", "-m", "feature"]);
    common::git(&local, &["push", "-q", "origin", "feature"]);
    common::write(
        &local,
        ".kodama/configs/helix-config.toml",
        "theme = \"kodama-test\"\n",
    );
    let out = k.run(&[
        "start",
        "dot",
        "--repo",
        ".",
        "--sync",
        local.to_str().expect("utf8"),
    ]);
    out.ok();
    let rec = std::fs::read_to_string(k.session_file("dot")).expect("rec");
    assert!(rec.contains("baseBranch: feature"), "{rec}\n{out}");
    assert_eq!(
        k.exec("default", "dot", &["cat", "/workspace/feature.txt"])
            .1,
        "f\n"
    );
    let cm = k
        .get("configmaps", "default", "kodama-editor-config-dot")
        .expect("cm");
    assert!(cm.to_string().contains("kodama-test"), "{cm}");
    let (_, helix) = k.exec(
        "default",
        "dot",
        &["cat", "/home/kodama/.config/helix/config.toml"],
    );
    assert_eq!(helix, "theme = \"kodama-test\"\n");
}

#[test]
fn a_reused_workspace_is_not_recloned_and_a_different_repo_is_refused() {
    let k = Kodama::new();
    k.write_test_config("");
    let root = TempDir::new("repo");
    let a = common::bare_repo(&root, &[("a.txt", "a\n")]);
    let root_b = TempDir::new("repob");
    let b = common::bare_repo(&root_b, &[("b.txt", "b\n")]);
    k.run(&[
        "start",
        "rw",
        "--no-sync",
        "--repo",
        a.to_str().expect("utf8"),
    ])
    .ok();
    k.exec(
        "default",
        "rw",
        &["sh", "-c", "echo wip > /workspace/wip.txt"],
    );
    k.run(&["delete", "rw", "-f"]).ok();
    k.wait_pod_gone("default", "rw", 30);
    // Same repo again: the existing clone and the uncommitted file are kept.
    k.run(&[
        "start",
        "rw",
        "--no-sync",
        "--repo",
        a.to_str().expect("utf8"),
    ])
    .ok();
    assert_eq!(
        k.exec("default", "rw", &["cat", "/workspace/wip.txt"]).1,
        "wip\n"
    );
    k.run(&["delete", "rw", "-f"]).ok();
    k.wait_pod_gone("default", "rw", 30);
    // Another repo on that workspace: an error, nothing overwritten, the volume kept.
    let out = k.run(&[
        "start",
        "rw",
        "--no-sync",
        "--repo",
        b.to_str().expect("utf8"),
    ]);
    out.fails();
    assert!(k.pvc("default", "kodama-workspace-rw").is_some(), "{out}");
    assert!(k.requests("DELETE", "persistentvolumeclaims").is_empty());
    assert_eq!(
        std::fs::read_to_string(k.pvc_dir("default", "kodama-workspace-rw").join("wip.txt"))
            .expect("wip kept"),
        "wip\n"
    );
}
