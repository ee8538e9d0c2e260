//! The agent protocol end to end: the real server code over in-memory socket pipes, every change kind
//! acknowledged, hostile paths refused with the path in the error, nothing written outside the root,
//! listing and hashing; and the installer's probe/copy/reuse/fallback decisions through a Remote.

mod sync_common;

use kodama::agent::client::{AgentClient, Outcome};
use kodama::agent::install::{ensure_agent, AgentMode, InstallOptions};
use kodama::agent::server;
use kodama::remote::Remote;
use kodama::sync::plan::Change;
use kodama::sync::scan::{stat_path, Entry, Kind};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use sync_common::{write, TempDir, ThreadRemote};

fn start(root: &std::path::Path) -> (AgentClient, std::thread::JoinHandle<kodama::Result<()>>) {
    let (c_in, s_in) = UnixStream::pair().unwrap();
    let (c_out, s_out) = UnixStream::pair().unwrap();
    let root = root.to_path_buf();
    let h = std::thread::spawn(move || {
        let mut i = s_in;
        let mut o = s_out;
        server::serve(&root, &mut i, &mut o)
    });
    let c = AgentClient::over(Box::new(c_out), Box::new(c_in)).unwrap();
    (c, h)
}

fn file_entry(local: &std::path::Path, rel: &str) -> Entry {
    stat_path(&local.join(rel)).unwrap().unwrap()
}

#[test]
fn every_change_kind_is_applied_and_acknowledged() {
    let local = TempDir::new("agent-local");
    let pod = TempDir::new("agent-pod");
    write(local.path(), "dir/ünï.txt", "hello");
    write(local.path(), "run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(local.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut c, h) = start(pod.path());
    assert!(c.ping().is_ok());
    let changes = vec![
        Change::Mkdir {
            path: "empty/deep".into(),
        },
        Change::Write {
            path: "dir/ünï.txt".into(),
            entry: file_entry(local.path(), "dir/ünï.txt"),
        },
        Change::Write {
            path: "run.sh".into(),
            entry: file_entry(local.path(), "run.sh"),
        },
        Change::Symlink {
            path: "out".into(),
            target: "/etc".into(),
        },
        Change::Rename {
            from: "dir/ünï.txt".into(),
            to: "moved/ünï.txt".into(),
        },
        Change::Chmod {
            path: "run.sh".into(),
            exec: false,
        },
        Change::Delete {
            path: "empty/deep".into(),
            kind: Kind::Dir,
        },
    ];
    let (outcomes, stats) = c.apply(local.path(), &changes).unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Done(_))),
        "{outcomes:?}"
    );
    assert_eq!(stats.files, 2);
    assert_eq!(
        std::fs::read_to_string(pod.join("moved/ünï.txt")).unwrap(),
        "hello"
    );
    assert!(!pod.join("dir/ünï.txt").exists());
    assert_eq!(
        std::fs::read_link(pod.join("out")).unwrap().to_str(),
        Some("/etc")
    );
    assert_eq!(
        std::fs::metadata(pod.join("run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    assert!(pod.join("empty").is_dir() && !pod.join("empty/deep").exists());
    // mtime is preserved, so the listing matches the local snapshot.
    let listing = c.list("", true, vec![]).unwrap();
    let moved = &listing["moved/ünï.txt"];
    let orig = file_entry(local.path(), "dir/ünï.txt");
    assert_eq!(
        (moved.size, moved.mtime, moved.mtime_nsec),
        (orig.size, orig.mtime, orig.mtime_nsec)
    );
    assert_eq!(listing["out"].target.as_deref(), Some("/etc"));
    let (size, hash) = c.hash("moved/ünï.txt").unwrap();
    let (lsize, lhash) = kodama::agent::protocol::hash_stream(
        &mut std::fs::File::open(local.join("dir/ünï.txt")).unwrap(),
    )
    .unwrap();
    assert_eq!((size, hash), (lsize, lhash));
    assert_eq!(c.close().unwrap(), None);
    h.join().unwrap().unwrap();
}

#[test]
fn hostile_paths_are_refused_by_the_client_before_anything_is_read_or_sent() {
    let local = TempDir::new("agent-local");
    let pod = TempDir::new("agent-pod");
    write(local.path(), "f", "data");
    let e = file_entry(local.path(), "f");
    let (mut c, h) = start(pod.path());
    let w = |p: &str| Change::Write {
        path: p.into(),
        entry: e.clone(),
    };
    let changes = vec![
        w("../f"),
        w("/etc/passwd"),
        w("a/../../f"),
        Change::Rename {
            from: "../x".into(),
            to: "y".into(),
        },
        Change::Delete {
            path: "..".into(),
            kind: Kind::Dir,
        },
        w("f"),
    ];
    let (outcomes, stats) = c.apply(local.path(), &changes).unwrap();
    for (ch, o) in changes.iter().zip(&outcomes).take(5) {
        assert!(
            matches!(o, Outcome::Failed(m) if m.contains("refusing unsafe path")),
            "{ch:?}: {o:?}"
        );
    }
    assert_eq!(outcomes[5], Outcome::Done(Some(e.clone())));
    assert_eq!(stats.failed, 5);
    c.close().unwrap();
    h.join().unwrap().unwrap();
}

#[test]
fn hostile_paths_and_symlink_escapes_are_refused_by_the_agent_with_the_path() {
    use kodama::agent::protocol::{read_hello, read_msg, write_chunk, write_hello, write_msg, Msg};
    let pod = TempDir::new("agent-pod");
    let outside = TempDir::new("agent-outside");
    std::os::unix::fs::symlink(outside.path(), pod.join("escape")).unwrap();
    write(pod.path(), "real/file", "x");
    let (c_in, s_in) = UnixStream::pair().unwrap();
    let (c_out, s_out) = UnixStream::pair().unwrap();
    let root = pod.path().to_path_buf();
    let h = std::thread::spawn(move || {
        let mut i = s_in;
        let mut o = s_out;
        server::serve(&root, &mut i, &mut o)
    });
    let mut w = c_in;
    let mut r = c_out;
    write_hello(&mut w).unwrap();
    read_hello(&mut r).unwrap();
    let file = |p: &str| {
        vec![
            Msg::FileBegin {
                path: p.into(),
                size: 3,
                exec: false,
                mtime: 1,
                mtime_nsec: 0,
            },
            Msg::FileChunk(b"bad".to_vec()),
            Msg::FileEnd,
        ]
    };
    let hostile: Vec<(Vec<Msg>, &str)> = vec![
        (file("../evil"), "../evil"),
        (file("/tmp/kodama-evil-abs"), "/tmp/kodama-evil-abs"),
        (file("real/../../evil"), "real/../../evil"),
        (file("escape/pwned"), "escape/pwned"),
        (
            vec![Msg::Mkdir {
                path: "escape/newdir".into(),
            }],
            "escape/newdir",
        ),
        (
            vec![Msg::Symlink {
                path: "escape/l".into(),
                target: "x".into(),
            }],
            "escape/l",
        ),
        (
            vec![Msg::Chmod {
                path: "escape".into(),
                exec: true,
            }],
            "escape",
        ),
        (
            vec![Msg::Rename {
                from: "real/file".into(),
                to: "../moved-out".into(),
            }],
            "../moved-out",
        ),
        (
            vec![Msg::Rename {
                from: "real/file".into(),
                to: "escape/moved".into(),
            }],
            "escape/moved",
        ),
        (vec![Msg::Delete { path: "../".into() }], "../"),
        (
            vec![Msg::Delete {
                path: "escape/anything".into(),
            }],
            "escape/anything",
        ),
    ];
    for (msgs, path) in &hostile {
        for m in msgs {
            match m {
                Msg::FileChunk(d) => write_chunk(&mut w, d).unwrap(),
                m => write_msg(&mut w, m).unwrap(),
            }
        }
        std::io::Write::flush(&mut w).unwrap();
        match read_msg(&mut r).unwrap() {
            Some(Msg::Err { path: p, message }) => {
                assert_eq!(&p, path);
                assert!(message.contains(path.trim_end_matches('/')), "{message}");
            }
            other => panic!("{path}: expected an error, got {other:?}"),
        }
    }
    // The connection is still good afterwards.
    write_msg(&mut w, &Msg::Ping(9)).unwrap();
    assert_eq!(read_msg(&mut r).unwrap(), Some(Msg::Pong(9)));
    drop(w);
    h.join().unwrap().unwrap();
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert!(!pod.path().parent().unwrap().join("evil").exists());
    assert!(!pod.path().parent().unwrap().join("moved-out").exists());
    assert!(!std::path::Path::new("/tmp/kodama-evil-abs").exists());
    assert_eq!(std::fs::read_to_string(pod.join("real/file")).unwrap(), "x");
    assert!(pod
        .join("escape")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_dropped_connection_never_leaves_a_half_file() {
    let pod = TempDir::new("agent-pod");
    let (c_in, s_in) = UnixStream::pair().unwrap();
    let (c_out, s_out) = UnixStream::pair().unwrap();
    let root = pod.path().to_path_buf();
    let h = std::thread::spawn(move || {
        let mut i = s_in;
        let mut o = s_out;
        server::serve(&root, &mut i, &mut o)
    });
    use kodama::agent::protocol::{read_hello, write_chunk, write_hello, write_msg, Msg};
    let mut w = c_in;
    write_hello(&mut w).unwrap();
    let mut r = c_out;
    read_hello(&mut r).unwrap();
    write_msg(
        &mut w,
        &Msg::FileBegin {
            path: "big.bin".into(),
            size: 1 << 20,
            exec: false,
            mtime: 1,
            mtime_nsec: 0,
        },
    )
    .unwrap();
    write_chunk(&mut w, &[7u8; 1000]).unwrap();
    drop(w); // the connection dies mid-file
    let _ = h.join().unwrap();
    assert!(!pod.join("big.bin").exists());
    assert_eq!(
        std::fs::read_dir(pod.path()).unwrap().count(),
        0,
        "no temp file left behind"
    );
}

#[test]
fn agent_version_and_argument_errors() {
    let mut out = Vec::new();
    server::run(
        vec!["agent".into(), "version".into()],
        &mut &b""[..],
        &mut out,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap().trim(),
        server::version_line()
    );
    let e = server::run(vec!["serve".into()], &mut &b""[..], &mut Vec::new()).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("--root"));
    let e = server::run(
        vec!["frobnicate".into(), "--root".into(), "/tmp".into()],
        &mut &b""[..],
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("frobnicate"));
}

#[test]
fn installer_copies_once_then_reuses_and_falls_back_for_foreign_binaries() {
    let home = TempDir::new("agent-home");
    let remote = ThreadRemote {
        local: kodama::remote::LocalRemote {
            cwd: None,
            env: vec![("HOME".into(), home.path().to_str().unwrap().into())],
        },
        cut_after: None,
    };
    let me = std::env::current_exe().unwrap();
    let opts = InstallOptions {
        binary: Some(me.clone()),
        allow_dynamic: true,
        // The "pod" is this machine: keep the second-choice directory private to the test.
        fallback_dir: home.path().join("tmp-bin").to_string_lossy().into(),
        ..Default::default()
    };
    let mode = ensure_agent(&remote, &opts).unwrap();
    let want = format!(
        "{}/.kodama/bin/kubectl-kodama-{}",
        home.path().display(),
        kodama::VERSION
    );
    assert_eq!(mode, AgentMode::Agent { path: want.clone() });
    let installed = std::fs::metadata(&want).unwrap();
    assert_eq!(installed.len(), std::fs::metadata(&me).unwrap().len());
    assert_eq!(installed.permissions().mode() & 0o111, 0o111);
    // Second time: reused, not copied again (a missing binary would fail the copy).
    let again = InstallOptions {
        binary: Some(home.join("does-not-exist")),
        ..opts.clone()
    };
    assert_eq!(
        ensure_agent(&remote, &again).unwrap(),
        AgentMode::Agent { path: want }
    );
    // A dynamically linked binary is not copied into a real pod.
    let fresh = InstallOptions {
        path: "$HOME/other/k".into(),
        allow_dynamic: false,
        ..opts.clone()
    };
    assert!(
        matches!(ensure_agent(&remote, &fresh).unwrap(), AgentMode::Fallback { reason } if reason.contains("dynamically linked"))
    );
    // Not an executable at all.
    write(home.path(), "script", "#!/bin/sh\n");
    let script = InstallOptions {
        path: "$HOME/other/k".into(),
        binary: Some(home.join("script")),
        ..opts
    };
    assert!(matches!(
        ensure_agent(&remote, &script).unwrap(),
        AgentMode::Fallback { .. }
    ));
    assert!(!home.join("other/k").exists());
}

#[test]
fn a_broken_agent_process_is_reported_with_its_stderr() {
    let remote = kodama::remote::LocalRemote::default();
    let argv: Vec<String> = ["sh", "-c", "echo 'exec format error: boom' >&2; exit 126"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let e = match AgentClient::connect(&remote, &argv) {
        Err(e) => e,
        Ok(_) => panic!("a process that is not an agent must fail the handshake"),
    };
    let text = e.to_string();
    assert!(
        text.contains("handshake") && text.contains("boom"),
        "{text}"
    );
    assert!(matches!(e.root(), kodama::Error::Transport { .. }));
}

/// The same protocol against the real binary, through the hidden `agent` subcommand.
#[test]
fn the_real_binary_serves_the_protocol() {
    let local = TempDir::new("agent-bin-local");
    let pod = TempDir::new("agent-bin-pod");
    write(local.path(), "x/y.txt", "through a real process");
    let bin = env!("CARGO_BIN_EXE_kubectl-kodama").to_string();
    let remote = kodama::remote::LocalRemote::default();
    let out = remote
        .run(&[bin.clone(), "agent".into(), "version".into()], b"")
        .unwrap();
    assert_eq!(out.stdout_str(), server::version_line());
    let argv = kodama::agent::install::agent_argv(&bin, "serve", pod.path().to_str().unwrap(), &[]);
    let mut c = AgentClient::connect(&remote, &argv).unwrap();
    let e = file_entry(local.path(), "x/y.txt");
    let (o, _) = c
        .apply(
            local.path(),
            &[Change::Write {
                path: "x/y.txt".into(),
                entry: e.clone(),
            }],
        )
        .unwrap();
    assert_eq!(o, vec![Outcome::Done(Some(e))]);
    assert_eq!(c.close().unwrap(), Some(0));
    assert_eq!(
        std::fs::read_to_string(pod.join("x/y.txt")).unwrap(),
        "through a real process"
    );
}

#[test]
fn bye_ends_the_session_even_when_stdin_stays_open() {
    use kodama::agent::protocol::{read_hello, read_msg, write_hello, write_msg, Msg};
    let pod = TempDir::new("agent-pod");
    let (c_in, s_in) = UnixStream::pair().unwrap();
    let (c_out, s_out) = UnixStream::pair().unwrap();
    let root = pod.path().to_path_buf();
    let h = std::thread::spawn(move || {
        let mut i = s_in;
        let mut o = s_out;
        server::serve(&root, &mut i, &mut o)
    });
    let mut w = c_in;
    let mut r = c_out;
    write_hello(&mut w).unwrap();
    read_hello(&mut r).unwrap();
    write_msg(&mut w, &Msg::Bye).unwrap();
    std::io::Write::flush(&mut w).unwrap();
    sync_common::wait_until("agent exits on bye", 5, || h.is_finished());
    h.join().unwrap().unwrap();
    assert_eq!(read_msg(&mut r).unwrap(), None, "clean end of stream");
    drop(w);
}

#[test]
fn an_aborted_file_keeps_the_previous_version_and_leaves_no_temp_file() {
    use kodama::agent::protocol::{read_hello, read_msg, write_chunk, write_hello, write_msg, Msg};
    let pod = TempDir::new("agent-pod");
    write(pod.path(), "keep.txt", "previous");
    let (c_in, s_in) = UnixStream::pair().unwrap();
    let (c_out, s_out) = UnixStream::pair().unwrap();
    let root = pod.path().to_path_buf();
    let h = std::thread::spawn(move || {
        let mut i = s_in;
        let mut o = s_out;
        server::serve(&root, &mut i, &mut o)
    });
    let mut w = c_in;
    let mut r = c_out;
    write_hello(&mut w).unwrap();
    read_hello(&mut r).unwrap();
    write_msg(
        &mut w,
        &Msg::FileBegin {
            path: "keep.txt".into(),
            size: 100,
            exec: false,
            mtime: 1,
            mtime_nsec: 0,
        },
    )
    .unwrap();
    write_chunk(&mut w, b"half").unwrap();
    write_msg(
        &mut w,
        &Msg::FileAbort {
            reason: "Input/output error".into(),
        },
    )
    .unwrap();
    std::io::Write::flush(&mut w).unwrap();
    match read_msg(&mut r).unwrap() {
        Some(Msg::Err { path, message }) => {
            assert_eq!(path, "keep.txt");
            assert!(message.contains("Input/output error"), "{message}");
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
    drop(w);
    h.join().unwrap().unwrap();
    assert_eq!(
        std::fs::read_to_string(pod.join("keep.txt")).unwrap(),
        "previous"
    );
    assert_eq!(
        std::fs::read_dir(pod.path()).unwrap().count(),
        1,
        "no temp file"
    );
}
