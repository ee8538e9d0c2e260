//! The sync engine end to end with a temp dir as the pod's /workspace: initial upload (agent and tar
//! fallback), continuous propagation of creates/modifies/deletes/renames, ignored and pod-only files
//! left alone, reconnect after an injected stream drop with no edit lost, the mass-deletion guard, a
//! vanished sync root, prompt stop, and pull with the no-overwrite rule.

mod sync_common;

use kodama::agent::install::{ensure_agent, AgentMode, InstallOptions};
use kodama::remote::{LocalRemote, Remote};
use kodama::sync::engine::{
    initial_sync, StopHandle, SyncEngine, SyncOptions, SyncState, SyncStatus,
};
use kodama::sync::ignore::{IgnoreOptions, IgnoreRules};
use kodama::sync::pull::{pull, PullOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use sync_common::{read, wait_until, write, TempDir, ThreadRemote};

struct Env {
    local: TempDir,
    pod: TempDir,
    home: TempDir,
    remote: ThreadRemote,
}

impl Env {
    fn new() -> Env {
        let home = TempDir::new("eng-home");
        let remote = ThreadRemote {
            local: LocalRemote {
                cwd: None,
                env: vec![("HOME".into(), home.path().to_str().unwrap().into())],
            },
            cut_after: None,
        };
        Env {
            local: TempDir::new("eng-local"),
            pod: TempDir::new("eng-pod"),
            home,
            remote,
        }
    }
    fn install(&self) -> InstallOptions {
        InstallOptions {
            path: "$HOME/.kodama/bin/kubectl-kodama-test".into(),
            binary: Some(std::env::current_exe().unwrap()),
            allow_dynamic: true,
            disabled: false,
            fallback_dir: self.home.path().join("tmp-bin").to_string_lossy().into(),
        }
    }
    fn rules(&self) -> IgnoreRules {
        IgnoreRules::new(self.local.path(), IgnoreOptions::default()).unwrap()
    }
    fn root(&self) -> String {
        self.pod.path().to_str().unwrap().to_string()
    }
    fn opts(&self) -> SyncOptions {
        let mut o = SyncOptions::new(&self.root());
        o.install = self.install();
        o
    }
}

/// A running engine in a thread, with every status it reported.
struct Running {
    stop: StopHandle,
    statuses: Arc<Mutex<Vec<SyncStatus>>>,
    handle: Option<std::thread::JoinHandle<kodama::Result<()>>>,
}

impl Running {
    fn start(engine: SyncEngine, remote: ThreadRemote) -> Running {
        let stop = StopHandle::new();
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let (s2, st2) = (stop.clone(), statuses.clone());
        let handle = std::thread::spawn(move || {
            let mut engine = engine;
            let factory =
                move || -> kodama::Result<Box<dyn Remote>> { Ok(Box::new(remote.clone())) };
            engine.run(&factory, &s2, &|s| st2.lock().unwrap().push(s.clone()))
        });
        let r = Running {
            stop,
            statuses,
            handle: Some(handle),
        };
        wait_until("engine active", 20, || {
            r.last().is_some_and(|s| s.state == SyncState::Active)
        });
        r
    }
    fn last(&self) -> Option<SyncStatus> {
        self.statuses.lock().unwrap().last().cloned()
    }
    fn finish(mut self) -> kodama::Result<()> {
        self.stop.stop();
        self.handle.take().unwrap().join().unwrap()
    }
    fn wait_exit(mut self, secs: u64) -> kodama::Result<()> {
        let h = self.handle.take().unwrap();
        wait_until("engine exit", secs, || h.is_finished());
        h.join().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn seed(env: &Env) -> kodama::sync::engine::Stats {
    let mode = ensure_agent(&env.remote, &env.install()).unwrap();
    assert!(matches!(mode, AgentMode::Agent { .. }), "{mode:?}");
    initial_sync(&env.remote, &mode, &env.rules(), &env.root(), &mut |_| {}).unwrap()
}

fn exists(p: &Path) -> bool {
    p.symlink_metadata().is_ok()
}

#[test]
fn initial_sync_through_the_agent_and_through_plain_tar() {
    for fallback in [false, true] {
        let env = Env::new();
        let l = env.local.path();
        write(l, ".gitignore", "*.log\nnode_modules/\n");
        write(l, "src/main.rs", "fn main() {}\n");
        write(l, "debug.log", "noise");
        write(l, "node_modules/x/index.js", "x");
        write(l, "ü/ß.txt", "umlaut");
        std::fs::create_dir_all(l.join("empty")).unwrap();
        write(l, "tool.sh", "#!/bin/sh\n");
        std::fs::set_permissions(l.join("tool.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::os::unix::fs::symlink("src/main.rs", l.join("link")).unwrap();
        let mode = if fallback {
            AgentMode::Fallback {
                reason: "test".into(),
            }
        } else {
            ensure_agent(&env.remote, &env.install()).unwrap()
        };
        let mut calls = Vec::new();
        let st = initial_sync(&env.remote, &mode, &env.rules(), &env.root(), &mut |p| {
            calls.push(p.clone())
        })
        .unwrap();
        let p = env.pod.path();
        assert_eq!(
            read(&p.join("src/main.rs")).as_deref(),
            Some("fn main() {}\n")
        );
        assert_eq!(read(&p.join("ü/ß.txt")).as_deref(), Some("umlaut"));
        assert!(p.join("empty").is_dir());
        assert!(!exists(&p.join("debug.log")) && !exists(&p.join("node_modules")));
        assert_eq!(
            std::fs::metadata(p.join("tool.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o111,
            0o111
        );
        assert_eq!(
            std::fs::read_link(p.join("link")).unwrap().to_str(),
            Some("src/main.rs")
        );
        let last = calls.last().expect("a final progress call");
        assert_eq!(last.files_done, last.files_total);
        assert_eq!(last.bytes_done, last.bytes_total);
        assert_eq!(st.archive.files, 4, "{fallback}");
    }
}

#[test]
fn continuous_sync_propagates_creates_modifies_renames_and_deletes() {
    let env = Env::new();
    let l = env.local.path();
    let p = env.pod.path().to_path_buf();
    write(l, ".gitignore", "*.log\nnode_modules/\n");
    write(l, "a.txt", "one");
    write(l, "dir/b.txt", "bee");
    write(l, "node_modules/dep/index.js", "local dep");
    let st = seed(&env);
    // Things only the pod has: its own files, and ignored dirs it filled itself.
    write(&p, "pod-made.txt", "by claude");
    write(&p, "node_modules/dep/index.js", "pod dep");
    let run = Running::start(
        SyncEngine::new(env.rules(), env.opts()).with_known(st.sent),
        env.remote.clone(),
    );

    write(l, "new/deep/c.txt", "sea");
    wait_until("create", 10, || {
        read(&p.join("new/deep/c.txt")).as_deref() == Some("sea")
    });
    write(l, "a.txt", "two");
    wait_until("modify", 10, || {
        read(&p.join("a.txt")).as_deref() == Some("two")
    });
    std::fs::rename(l.join("a.txt"), l.join("a-renamed.txt")).unwrap();
    wait_until("rename", 10, || {
        read(&p.join("a-renamed.txt")).as_deref() == Some("two") && !exists(&p.join("a.txt"))
    });
    std::fs::rename(l.join("dir"), l.join("dir2")).unwrap();
    wait_until("dir rename", 10, || {
        read(&p.join("dir2/b.txt")).as_deref() == Some("bee") && !exists(&p.join("dir"))
    });
    // The renamed directory is still watched under its new name, and the old name can come back.
    write(l, "dir2/b.txt", "bee two");
    wait_until("edit inside a renamed dir", 10, || {
        read(&p.join("dir2/b.txt")).as_deref() == Some("bee two")
    });
    write(l, "dir/again.txt", "again");
    wait_until("old dir name reused", 10, || {
        read(&p.join("dir/again.txt")).as_deref() == Some("again")
    });
    write(l, "dir/again.txt", "again 2");
    wait_until("edit in the reused dir", 10, || {
        read(&p.join("dir/again.txt")).as_deref() == Some("again 2")
    });
    // Editor save: temp file, then rename over the original.
    write(l, ".a-renamed.txt.swp", "three");
    std::fs::rename(l.join(".a-renamed.txt.swp"), l.join("a-renamed.txt")).unwrap();
    wait_until("editor save", 10, || {
        read(&p.join("a-renamed.txt")).as_deref() == Some("three")
    });
    std::fs::set_permissions(
        l.join("a-renamed.txt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    wait_until("chmod", 10, || {
        std::fs::metadata(p.join("a-renamed.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o100
            != 0
    });
    std::os::unix::fs::symlink("/etc/hostname", l.join("ln")).unwrap();
    wait_until("symlink", 10, || {
        std::fs::read_link(p.join("ln")).is_ok_and(|t| t == Path::new("/etc/hostname"))
    });
    std::fs::remove_file(l.join("new/deep/c.txt")).unwrap();
    wait_until("delete", 10, || !exists(&p.join("new/deep/c.txt")));
    // Ignored things are neither sent nor deleted.
    write(l, "debug.log", "noise");
    std::fs::remove_dir_all(l.join("node_modules")).unwrap();
    write(l, "marker", "m");
    wait_until("marker", 10, || exists(&p.join("marker")));
    assert!(!exists(&p.join("debug.log")));
    assert_eq!(
        read(&p.join("node_modules/dep/index.js")).as_deref(),
        Some("pod dep")
    );
    assert_eq!(read(&p.join("pod-made.txt")).as_deref(), Some("by claude"));
    // A later .gitignore negation brings the log in.
    write(l, ".gitignore", "*.log\n!debug.log\nnode_modules/\n");
    wait_until("re-included by a .gitignore edit", 10, || {
        read(&p.join("debug.log")).as_deref() == Some("noise")
    });
    let last = run.last().unwrap();
    assert_eq!(last.state, SyncState::Active);
    assert!(
        last.last_sync.is_some() && last.files_sent >= 4 && last.deletes >= 1,
        "{last:?}"
    );
    assert_eq!(last.transport, "agent");
    run.finish().unwrap();
}

#[test]
fn reconnects_after_a_dropped_stream_and_loses_no_edit() {
    let env = Env::new();
    let l = env.local.path();
    let p = env.pod.path().to_path_buf();
    write(l, "a.txt", "one");
    let st = seed(&env);
    let mut remote = env.remote.clone();
    // The first serve connection dies after 4 KiB from the client.
    remote.cut_after = Some(Arc::new(Mutex::new(Some(4096))));
    let run = Running::start(
        SyncEngine::new(env.rules(), env.opts()).with_known(st.sent),
        remote,
    );
    let big: String = "0123456789abcdef".repeat(4096); // 64 KiB: the drop happens mid-file
    write(l, "big.txt", &big);
    write(l, "a.txt", "edited during the drop");
    wait_until("big file after reconnect", 20, || {
        read(&p.join("big.txt")).as_deref() == Some(big.as_str())
    });
    wait_until("edit after reconnect", 20, || {
        read(&p.join("a.txt")).as_deref() == Some("edited during the drop")
    });
    let statuses = run.statuses.lock().unwrap().clone();
    assert!(
        statuses.iter().any(|s| s.state == SyncState::Connecting
            && s.reason.as_deref().is_some_and(|r| r.contains("lost"))),
        "{statuses:?}"
    );
    assert!(run.last().unwrap().reconnects >= 1);
    // No temp file is left behind in the pod.
    let leftovers: Vec<_> = std::fs::read_dir(&p)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("kodama-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And it keeps working afterwards.
    write(l, "after.txt", "ok");
    wait_until("after reconnect", 10, || exists(&p.join("after.txt")));
    run.finish().unwrap();
}

#[test]
fn a_mass_deletion_stops_sync_instead_of_being_mirrored() {
    let env = Env::new();
    let l = env.local.path();
    let p = env.pod.path().to_path_buf();
    for i in 0..30 {
        write(l, &format!("src/f{i:02}.rs"), "x");
    }
    let st = seed(&env);
    let state = env.home.join("state/sync.json");
    let mut opts = env.opts();
    opts.state_file = Some(state.clone());
    let run = Running::start(
        SyncEngine::new(env.rules(), opts.clone()).with_known(st.sent),
        env.remote.clone(),
    );
    for i in 0..25 {
        std::fs::remove_file(l.join(format!("src/f{i:02}.rs"))).unwrap();
    }
    let err = run.wait_exit(20).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("safety stop") && text.contains("deleted locally"),
        "{text}"
    );
    assert!(err.hint().is_some_and(|h| h.contains("--force")));
    let pod_files = std::fs::read_dir(p.join("src")).unwrap().count();
    assert!(
        pod_files >= 15,
        "at most the fraction may have gone before the stop, {pod_files} left"
    );
    // A fresh engine without the saved state deletes nothing (it cannot tell deletions from pod files).
    let mut plain = SyncEngine::new(env.rules(), env.opts());
    plain.sync_once(&env.remote).unwrap();
    assert_eq!(std::fs::read_dir(p.join("src")).unwrap().count(), pod_files);
    // Forced, with the state saved at the stop: the deletions go through.
    opts.allow_mass_delete = true;
    let mut forced = SyncEngine::new(env.rules(), opts);
    assert!(
        forced.known().is_some(),
        "state loaded from {}",
        state.display()
    );
    forced.sync_once(&env.remote).unwrap();
    assert_eq!(std::fs::read_dir(p.join("src")).unwrap().count(), 5);
}

#[test]
fn the_whole_tree_gone_stops_sync_and_keeps_the_pod_files() {
    let env = Env::new();
    let l = env.local.path();
    let p = env.pod.path().to_path_buf();
    write(l, "a.txt", "1");
    write(l, "b.txt", "2");
    let st = seed(&env);
    let run = Running::start(
        SyncEngine::new(env.rules(), env.opts()).with_known(st.sent),
        env.remote.clone(),
    );
    std::fs::remove_dir_all(l).unwrap();
    let err = run.wait_exit(20).unwrap_err();
    assert!(
        err.to_string().contains("gone") || err.to_string().contains("safety stop"),
        "{err}"
    );
    assert!(exists(&p.join("a.txt")) && exists(&p.join("b.txt")));
    std::fs::create_dir_all(l).unwrap(); // for TempDir's cleanup
}

#[test]
fn fallback_mode_syncs_with_sh_and_tar() {
    let env = Env::new();
    let l = env.local.path();
    let p = env.pod.path().to_path_buf();
    write(l, "a.txt", "one");
    write(l, "lost.txt", "lost in a pod restart");
    let mut install = env.install();
    install.disabled = true;
    let mode = ensure_agent(&env.remote, &install).unwrap();
    let st = initial_sync(&env.remote, &mode, &env.rules(), &env.root(), &mut |_| {}).unwrap();
    // The pod loses a file (a restart with a fresh volume); the first rescan (find/stat) restores it.
    std::fs::remove_file(p.join("lost.txt")).unwrap();
    let mut opts = env.opts();
    opts.install = install;
    let run = Running::start(
        SyncEngine::new(env.rules(), opts).with_known(st.sent),
        env.remote.clone(),
    );
    wait_until("restored by the fallback rescan", 10, || {
        read(&p.join("lost.txt")).as_deref() == Some("lost in a pod restart")
    });
    assert!(run.last().unwrap().transport.starts_with("fallback"));
    write(l, "it's quoted/b $HOME.txt", "bee");
    wait_until("fallback create", 10, || {
        read(&p.join("it's quoted/b $HOME.txt")).as_deref() == Some("bee")
    });
    std::fs::remove_file(l.join("a.txt")).unwrap();
    wait_until("fallback delete", 10, || !exists(&p.join("a.txt")));
    run.finish().unwrap();
}

#[test]
fn stop_is_prompt_and_reported() {
    let env = Env::new();
    write(env.local.path(), "a", "1");
    let st = seed(&env);
    let run = Running::start(
        SyncEngine::new(env.rules(), env.opts()).with_known(st.sent),
        env.remote.clone(),
    );
    let statuses = run.statuses.clone();
    let t = std::time::Instant::now();
    run.finish().unwrap();
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(
        statuses.lock().unwrap().last().unwrap().state,
        SyncState::Stopped
    );
}

#[test]
fn once_resync_sends_offline_edits_and_keeps_pod_edits_aside() {
    let env = Env::new();
    let l = env.local.path();
    let p = env.pod.path().to_path_buf();
    write(l, "a.txt", "one");
    write(l, "b.txt", "bee");
    write(l, "gone.txt", "bye");
    let st = seed(&env);
    // While nothing runs: a local edit, a local delete, and a conflicting edit on both sides.
    write(l, "a.txt", "local edit");
    std::fs::remove_file(l.join("gone.txt")).unwrap();
    write(&p, "b.txt", "pod edit");
    let f = std::fs::File::options()
        .write(true)
        .open(p.join("b.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    drop(f);
    write(l, "b.txt", "local b");
    let mut engine = SyncEngine::new(env.rules(), env.opts()).with_known(st.sent);
    engine.sync_once(&env.remote).unwrap();
    assert_eq!(read(&p.join("a.txt")).as_deref(), Some("local edit"));
    assert!(!exists(&p.join("gone.txt")));
    assert_eq!(read(&p.join("b.txt")).as_deref(), Some("local b"));
    let kept: Vec<String> = std::fs::read_dir(&p)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("b.txt.kodama-conflict-"))
        .collect();
    assert_eq!(kept.len(), 1, "the pod's edit is kept aside");
    assert_eq!(read(&p.join(&kept[0])).as_deref(), Some("pod edit"));
}

#[test]
fn pull_copies_back_without_overwriting_newer_local_files() {
    for fallback in [false, true] {
        let env = Env::new();
        let l = env.local.path();
        let p = env.pod.path().to_path_buf();
        write(l, ".gitignore", "*.log\n");
        write(&p, ".gitignore", "*.log\n");
        write(&p, "out/result.txt", "from pod");
        write(&p, "out/run.log", "ignored");
        write(&p, "notes.md", "pod notes");
        std::os::unix::fs::symlink("/etc/passwd", p.join("out/link")).unwrap();
        write(l, "notes.md", "local newer notes");
        let f = std::fs::File::options()
            .write(true)
            .open(l.join("notes.md"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
            .unwrap();
        drop(f);
        let mode = if fallback {
            AgentMode::Fallback {
                reason: "test".into(),
            }
        } else {
            ensure_agent(&env.remote, &env.install()).unwrap()
        };
        let opts = PullOptions {
            root: env.root(),
            remote_path: String::new(),
            force: false,
            apply_ignore: true,
        };
        let rep = pull(&env.remote, &mode, &env.rules(), l, &opts).unwrap();
        assert_eq!(
            read(&l.join("out/result.txt")).as_deref(),
            Some("from pod"),
            "{fallback}"
        );
        assert_eq!(
            read(&l.join("notes.md")).as_deref(),
            Some("local newer notes")
        );
        assert!(
            rep.skipped
                .iter()
                .any(|(p, why)| p == "notes.md" && why.contains("newer")),
            "{:?}",
            rep.skipped
        );
        assert!(!exists(&l.join("out/run.log")));
        assert_eq!(
            std::fs::read_link(l.join("out/link")).unwrap().to_str(),
            Some("/etc/passwd")
        );
        // --force overwrites; a subpath pulls only that path.
        let opts = PullOptions {
            root: env.root(),
            remote_path: "notes.md".into(),
            force: true,
            apply_ignore: true,
        };
        pull(&env.remote, &mode, &env.rules(), l, &opts).unwrap();
        assert_eq!(read(&l.join("notes.md")).as_deref(), Some("pod notes"));
        let opts = PullOptions {
            root: env.root(),
            remote_path: "../etc".into(),
            force: true,
            apply_ignore: true,
        };
        assert!(pull(&env.remote, &mode, &env.rules(), l, &opts).is_err());
        // Asking for ignored output explicitly (apply_ignore off) brings it, .git never.
        write(&p, ".git/HEAD", "ref");
        let opts = PullOptions {
            root: env.root(),
            remote_path: String::new(),
            force: false,
            apply_ignore: false,
        };
        pull(&env.remote, &mode, &env.rules(), l, &opts).unwrap();
        assert_eq!(
            read(&l.join("out/run.log")).as_deref(),
            Some("ignored"),
            "{fallback}"
        );
        assert!(!exists(&l.join(".git")));
        let _ = &env.home;
    }
}

/// A pod whose agent passes `version` but crashes on `serve` (an arch/regression crash).
#[derive(Clone)]
struct CrashingServe(ThreadRemote);

impl Remote for CrashingServe {
    fn exec(&self, argv: &[String]) -> kodama::Result<Box<dyn kodama::remote::RemoteProcess>> {
        if argv.get(2).map(String::as_str) == Some("serve") {
            let crash: Vec<String> = ["sh", "-c", "echo 'Segmentation fault' >&2; exit 139"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            return self.0.local.exec(&crash);
        }
        self.0.exec(argv)
    }
}

#[test]
fn an_agent_that_keeps_crashing_is_replaced_by_the_tar_fallback() {
    let env = Env::new();
    let l = env.local.path();
    let p = env.pod.path().to_path_buf();
    write(l, "a.txt", "one");
    let st = seed(&env);
    let stop = StopHandle::new();
    let statuses = Arc::new(Mutex::new(Vec::<SyncStatus>::new()));
    let (s2, st2) = (stop.clone(), statuses.clone());
    let remote = CrashingServe(env.remote.clone());
    let mut engine = SyncEngine::new(env.rules(), env.opts()).with_known(st.sent);
    let h = std::thread::spawn(move || {
        let factory = move || -> kodama::Result<Box<dyn Remote>> { Ok(Box::new(remote.clone())) };
        engine.run(&factory, &s2, &|s| st2.lock().unwrap().push(s.clone()))
    });
    wait_until("fallback active", 20, || {
        statuses.lock().unwrap().last().is_some_and(|s| {
            s.state == SyncState::Active && s.transport.contains("failed to start 3 times")
        })
    });
    let all = statuses.lock().unwrap().clone();
    assert!(
        all.iter().any(|s| s
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("Segmentation fault"))),
        "the crash is visible in the status: {all:?}"
    );
    write(l, "b.txt", "bee");
    wait_until("sync via fallback", 10, || {
        read(&p.join("b.txt")).as_deref() == Some("bee")
    });
    stop.stop();
    h.join().unwrap().unwrap();
}

/// A pod whose agent crashes on `extract`.
#[derive(Clone)]
struct CrashingExtract(ThreadRemote);

impl Remote for CrashingExtract {
    fn exec(&self, argv: &[String]) -> kodama::Result<Box<dyn kodama::remote::RemoteProcess>> {
        if argv.get(2).map(String::as_str) == Some("extract") {
            let crash: Vec<String> = [
                "sh",
                "-c",
                "cat >/dev/null; echo 'Illegal instruction' >&2; exit 132",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            return self.0.local.exec(&crash);
        }
        self.0.exec(argv)
    }
}

#[test]
fn initial_sync_falls_back_to_tar_when_the_agent_crashes() {
    let env = Env::new();
    write(env.local.path(), "a/b.txt", "bee");
    let remote = CrashingExtract(env.remote.clone());
    let mode = ensure_agent(&remote, &env.install()).unwrap();
    assert!(matches!(mode, AgentMode::Agent { .. }));
    let st = initial_sync(&remote, &mode, &env.rules(), &env.root(), &mut |_| {}).unwrap();
    assert!(
        st.transport.contains("Illegal instruction"),
        "{}",
        st.transport
    );
    assert_eq!(read(&env.pod.join("a/b.txt")).as_deref(), Some("bee"));
}

#[test]
fn a_change_the_pod_refuses_is_reported_and_the_pod_symlink_kept() {
    let env = Env::new();
    let l = env.local.path();
    let p = env.pod.path().to_path_buf();
    let outside = TempDir::new("eng-outside");
    write(l, "a.txt", "one");
    let st = seed(&env);
    // The pod made a symlink to somewhere outside; locally a real directory of that name appears.
    std::os::unix::fs::symlink(outside.path(), p.join("esc")).unwrap();
    let run = Running::start(
        SyncEngine::new(env.rules(), env.opts()).with_known(st.sent),
        env.remote.clone(),
    );
    write(l, "esc/inner.txt", "must not leave the pod root");
    wait_until("refusal reported", 10, || {
        run.last().is_some_and(|s| {
            s.state == SyncState::Active
                && s.failed >= 1
                && s.reason.as_deref().is_some_and(|r| r.contains("esc"))
        })
    });
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(p
        .join("esc")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    // Other changes keep flowing.
    write(l, "b.txt", "bee");
    wait_until("later change", 10, || exists(&p.join("b.txt")));
    run.finish().unwrap();
}

#[test]
fn a_sync_root_swapped_for_a_new_directory_is_watched_again() {
    let env = Env::new();
    let l = env.local.path().to_path_buf();
    let p = env.pod.path().to_path_buf();
    for f in ["a.txt", "b.txt", "c.txt"] {
        write(&l, f, f);
    }
    let st = seed(&env);
    let run = Running::start(
        SyncEngine::new(env.rules(), env.opts()).with_known(st.sent),
        env.remote.clone(),
    );
    // `git clone` into a fresh directory that then takes the old one's place.
    let fresh = TempDir::new("eng-fresh");
    for f in ["a.txt", "b.txt", "c.txt"] {
        write(fresh.path(), f, f);
    }
    write(fresh.path(), "new.txt", "from the new tree");
    let old = l.with_extension("old");
    std::fs::rename(&l, &old).unwrap();
    std::fs::rename(fresh.path(), &l).unwrap();
    wait_until("new tree synced", 10, || {
        read(&p.join("new.txt")).as_deref() == Some("from the new tree")
    });
    write(&l, "a.txt", "edited in the new tree");
    wait_until("new tree watched", 10, || {
        read(&p.join("a.txt")).as_deref() == Some("edited in the new tree")
    });
    run.finish().unwrap();
    let _ = std::fs::remove_dir_all(&old);
    std::fs::create_dir_all(fresh.path()).unwrap();
}

#[test]
fn a_missing_sync_directory_is_an_error_status_not_a_hang() {
    let env = Env::new();
    let rules = env.rules();
    std::fs::remove_dir_all(env.local.path()).unwrap();
    let mut engine = SyncEngine::new(rules, env.opts());
    let last = Arc::new(Mutex::new(None::<SyncStatus>));
    let l2 = last.clone();
    let remote = env.remote.clone();
    let factory = move || -> kodama::Result<Box<dyn Remote>> { Ok(Box::new(remote.clone())) };
    let e = engine
        .run(&factory, &StopHandle::new(), &|s| {
            *l2.lock().unwrap() = Some(s.clone())
        })
        .unwrap_err();
    assert!(e.to_string().contains("sync directory"), "{e}");
    assert_eq!(
        last.lock().unwrap().as_ref().unwrap().state,
        SyncState::Error
    );
    std::fs::create_dir_all(env.local.path()).unwrap();
}
