//! Config and store tests that need files or real processes: the spec's sample files load without
//! warnings, and two processes racing on the store never corrupt it or both create a session.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kodama::config::{load_layer, FileKind, KnownHosts, SessionStatus, Store};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/config")
        .join(name)
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kodama-it-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn spec_sample_files_load_without_warnings() {
    for (name, kind) in [
        ("global-example.yaml", FileKind::Global),
        ("complete-example.yaml", FileKind::Global),
        ("global-snippets.yaml", FileKind::Global),
        ("full-reference.yaml", FileKind::Global),
        ("template-example.kodama.yaml", FileKind::Template),
    ] {
        let (_, warnings) = load_layer(&fixture(name), kind, Some(Path::new("/home/u")))
            .unwrap_or_else(|e| panic!("{name}: {}", e.render()))
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
    }
    let (complete, _) = load_layer(&fixture("complete-example.yaml"), FileKind::Global, None)
        .unwrap()
        .unwrap();
    let s = kodama::config::resolve(&Default::default(), None, Some(&complete));
    assert_eq!(s.namespace.as_deref(), Some("dev-sessions"));
    assert_eq!(s.resources.cpu.as_str(), "2");
    assert_eq!(s.storage.workspace.as_str(), "20Gi");
    assert_eq!(s.sync.exclude_patterns, vec!["*.log", "tmp/", ".DS_Store"]);
}

#[test]
fn the_full_reference_sets_every_key() {
    let (l, w) = load_layer(
        &fixture("full-reference.yaml"),
        FileKind::Global,
        Some(Path::new("/home/u")),
    )
    .unwrap()
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert!(l.namespace.is_some() && l.image.is_some() && l.cpu.is_some() && l.memory.is_some());
    assert!(
        l.extra_resources.is_some() && l.workspace_size.is_some() && l.claude_home_size.is_some()
    );
    assert!(l.storage_class.is_some() && l.branch_prefix.is_some() && l.dotenv_files.is_some());
    assert!(l.exclude_vars.is_some() && l.use_gitignore.is_some() && l.exclude_patterns.is_some());
    assert!(l.git_secret_name.is_some() && l.auto_branch.is_some() && l.git_user_name.is_some());
    assert!(
        l.git_user_email.is_some() && l.agent_command.is_some() && l.agent_idle_timeout.is_some()
    );
    assert!(l.agent_result_grace_timeout.is_some() && l.service_account_name.is_some());
    assert!(l.automount_service_account_token.is_some() && l.node_selector.is_some());
    assert!(l.tolerations.is_some() && l.start_timeout.is_some());
    assert_eq!(l.known_hosts, Some(KnownHosts::AcceptNew));
    let sf = l.secret_files.unwrap();
    assert_eq!(sf[0].source, PathBuf::from("/home/u/.aws/credentials"));
    assert_eq!(sf[1].destination, "/home/dev/.ssh/id_ed25519");
    // Every key the parser knows appears in the reference file.
    let text = fs::read_to_string(fixture("full-reference.yaml")).unwrap();
    for key in kodama::config::known_keys() {
        if key == "repo" || key == "branch" {
            continue;
        }
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            text.contains(&format!("{leaf}:")),
            "full-reference.yaml lacks {key}"
        );
    }
}

#[test]
fn spec_session_example_loads_from_the_store() {
    let dir = scratch("session-example");
    let store = Store::new(&dir);
    fs::create_dir_all(store.dir()).unwrap();
    fs::copy(
        fixture("session-example.yaml"),
        store.dir().join("my-work.yaml"),
    )
    .unwrap();
    let rec = store.get("my-work").unwrap();
    assert_eq!(rec.status, SessionStatus::Running);
    assert_eq!(rec.branch.as_deref(), Some("kodama/my-work-20250115143000"));
    assert_eq!(rec.claude_home_pvc, "kodama-claude-home-my-work");
    assert_eq!(rec.commit_hash.as_deref(), Some("abc123def456"));
    fs::remove_dir_all(dir).unwrap();
}

const HELPER: &str = "KODAMA_TEST_STORE_HELPER";

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {}",
            path.display()
        );
        std::thread::yield_now();
    }
}

/// Not a test on its own: the body of the helper processes spawned below.
#[test]
#[ignore = "helper process for the store concurrency tests"]
fn store_helper_process() {
    let Ok(mode) = std::env::var(HELPER) else {
        return;
    };
    let dir = PathBuf::from(std::env::var("KODAMA_TEST_DIR").unwrap());
    let id = std::env::var("KODAMA_TEST_ID").unwrap();
    let store = Store::new(&dir);
    fs::write(dir.join(format!("ready-{id}")), "").unwrap();
    wait_for(&dir.join("go"));
    match mode.as_str() {
        "create" => {
            let mut rec = kodama::config::SessionRecord::new("same", "default");
            rec.image = format!("img-{id}");
            match store.create_new(&rec) {
                Ok(()) => println!("RESULT:won:{id}"),
                Err(e) => println!("RESULT:lost:{e}"),
            }
        }
        "update" => {
            for i in 0..25 {
                store
                    .update("counter", |r| r.env_names.push(format!("P{id}_{i}")))
                    .unwrap();
            }
            println!("RESULT:done");
        }
        other => panic!("unknown helper mode {other}"),
    }
}

/// Spawn `n` helper processes in `mode`, release them together, and return their RESULT lines.
fn race(dir: &Path, mode: &str, n: usize) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "store_helper_process",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(HELPER, mode)
                .env("KODAMA_TEST_DIR", dir)
                .env("KODAMA_TEST_ID", i.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for i in 0..n {
        wait_for(&dir.join(format!("ready-{i}")));
    }
    fs::write(dir.join("go"), "").unwrap();
    let mut results = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "helper failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.find("RESULT:").map(|i| l[i..].to_string()))
            .unwrap_or_else(|| panic!("no RESULT line in {stdout}"));
        results.push(line);
    }
    results
}

#[test]
fn processes_racing_to_create_a_session_exactly_one_wins() {
    let dir = scratch("race");
    let results = race(&dir, "create", 4);
    let winners: Vec<&String> = results
        .iter()
        .filter(|r| r.starts_with("RESULT:won:"))
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| !r.starts_with("RESULT:won:")) {
        assert!(r.contains("already exists"), "{r}");
    }
    let id = winners[0].trim_start_matches("RESULT:won:");
    let rec = Store::new(&dir).get("same").unwrap();
    assert_eq!(rec.image, format!("img-{id}"));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn processes_updating_one_session_lose_no_update() {
    let dir = scratch("updates");
    let store = Store::new(&dir);
    store
        .create_new(&kodama::config::SessionRecord::new("counter", "default"))
        .unwrap();
    let results = race(&dir, "update", 2);
    assert!(results.iter().all(|r| r == "RESULT:done"), "{results:?}");
    let rec = store.get("counter").unwrap();
    assert_eq!(rec.env_names.len(), 50, "{:?}", rec.env_names);
    for p in 0..2 {
        for i in 0..25 {
            assert!(rec.env_names.contains(&format!("P{p}_{i}")));
        }
    }
    fs::remove_dir_all(dir).unwrap();
}
