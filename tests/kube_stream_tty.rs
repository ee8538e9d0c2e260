//! Interactive exec and attach on a pseudo-terminal: raw mode while the session runs, the window
//! size at start and on SIGWINCH, Ctrl-C as a plain byte, the remote exit code, and the terminal
//! restored exactly afterwards — also when the socket thread panics.
//!
//! The in-process scenarios run in one test function so they cannot race on the process-wide panic
//! hook or signal handlers; the SIGTERM scenario runs in a child process whose stdio is the pty.

mod kube_stream_support;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::Duration;

use kodama::kube::attach::{attach_on, AttachRequest};
use kodama::kube::exec::{run_interactive_on, ExecRequest, TerminalIo};
use kodama::kube::ws::session::SessionConfig;
use kodama::kube::ws::TcpDialer;
use kodama::term::{self, FdIo, TermSettings};
use kube_stream_support::{wait_until, Server};

const LIMIT: Duration = Duration::from_secs(20);

fn write_master(fd: i32, data: &[u8]) {
    let mut w = FdIo(fd);
    std::io::Write::write_all(&mut w, data).expect("write to pty master");
}

/// Read from the pty master until `want` was seen (or the deadline passes).
fn read_master_until(fd: i32, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + LIMIT;
    let mut r = FdIo(fd);
    while std::time::Instant::now() < deadline && !got.windows(want.len()).any(|w| w == want) {
        if term::poll_readable(&[fd], Duration::from_millis(50)).expect("poll")[0] {
            let mut buf = [0u8; 1024];
            let n = r.read(&mut buf).expect("read master");
            got.extend_from_slice(&buf[..n]);
        }
    }
    got
}

#[test]
fn tty_exec_and_attach_restore_the_terminal_on_every_path() {
    let s = Server::start(true);
    let (master, slave) = term::open_pty().expect("openpty");
    let (m, sl) = (master.as_raw_fd(), slave.as_raw_fd());
    term::set_window_size(sl, 100, 30).expect("set size");
    let before = TermSettings::get(sl).expect("tcgetattr");
    assert!(!before.is_raw());
    let terminal = TerminalIo {
        input: sl,
        output: sl,
        error: sl,
    };

    // 1. A normal interactive exec that exits 42.
    let d = TcpDialer::new(s.addr);
    let worker = std::thread::spawn(move || {
        let mut r = ExecRequest::new("dev", "web", &["tty".to_string()]);
        r.tty = true;
        run_interactive_on(&d, &r, terminal, SessionConfig::default())
    });
    assert!(
        wait_until(LIMIT, || s
            .state
            .resizes
            .lock()
            .expect("lock")
            .contains(&(100, 30))),
        "initial window size was not sent"
    );
    assert!(
        TermSettings::get(sl).expect("tcgetattr").is_raw(),
        "raw mode during the session"
    );
    term::set_window_size(sl, 120, 40).expect("resize");
    signal_hook::low_level::raise(libc::SIGWINCH).expect("raise SIGWINCH");
    assert!(
        wait_until(LIMIT, || s
            .state
            .resizes
            .lock()
            .expect("lock")
            .contains(&(120, 40))),
        "SIGWINCH resize was not sent: {:?}",
        s.state.resizes.lock().expect("lock")
    );
    write_master(m, b"hello\x03");
    let echoed = read_master_until(m, b"hello\x03");
    assert!(echoed.ends_with(b"hello\x03"), "{echoed:?}");
    assert!(
        wait_until(LIMIT, || s
            .state
            .tty_input
            .lock()
            .expect("lock")
            .ends_with(b"hello\x03")),
        "Ctrl-C must reach the remote as a byte"
    );
    write_master(m, b"q");
    let code = worker.join().expect("join").expect("interactive exec");
    assert_eq!(code, 42);
    assert_eq!(
        TermSettings::get(sl).expect("tcgetattr"),
        before,
        "terminal restored"
    );

    // 2. The socket thread panics mid-session: an error, no hang, terminal restored.
    s.state.resizes.lock().expect("lock").clear();
    let d = TcpDialer::new(s.addr);
    let worker = std::thread::spawn(move || {
        let mut r = ExecRequest::new("dev", "web", &["tty".to_string()]);
        r.tty = true;
        let config = SessionConfig {
            panic_on_stream: Some(1),
            ..Default::default()
        };
        run_interactive_on(&d, &r, terminal, config)
    });
    assert!(wait_until(LIMIT, || !s
        .state
        .resizes
        .lock()
        .expect("lock")
        .is_empty()));
    assert!(wait_until(LIMIT, || TermSettings::get(sl)
        .expect("tcgetattr")
        .is_raw()));
    write_master(m, b"boom");
    let err = worker
        .join()
        .expect("join")
        .expect_err("panic must be an error");
    assert!(err.to_string().contains("panicked"), "{err}");
    assert_eq!(
        TermSettings::get(sl).expect("tcgetattr"),
        before,
        "restored after panic"
    );

    // 3. Attach sends size+1 then the real size (redraw), and exits with the remote code.
    s.state.resizes.lock().expect("lock").clear();
    let d = TcpDialer::new(s.addr);
    let worker = std::thread::spawn(move || {
        let r = AttachRequest {
            namespace: "dev".into(),
            pod: "web".into(),
            container: Some("main".into()),
            stdin: true,
            tty: true,
        };
        attach_on(&d, &r, terminal, SessionConfig::default())
    });
    assert!(wait_until(LIMIT, || s
        .state
        .resizes
        .lock()
        .expect("lock")
        .len()
        >= 2));
    assert_eq!(
        s.state.resizes.lock().expect("lock")[..2],
        [(121, 41), (120, 40)]
    );
    write_master(m, b"q");
    assert_eq!(worker.join().expect("join").expect("attach"), 42);
    assert_eq!(TermSettings::get(sl).expect("tcgetattr"), before);
    let attach_target = s
        .state
        .requests
        .lock()
        .expect("lock")
        .iter()
        .find(|t| t.contains("/attach?"))
        .cloned()
        .expect("attach request");
    assert!(attach_target.contains("stdin=true&stdout=true&stderr=false&tty=true&container=main"));
    drop(slave);
    drop(master);
}

/// Child mode of `sigterm_in_a_child_on_a_pty_restores_the_terminal`: an interactive exec on the
/// process's own stdio (the pty), exiting with kodama's exit code.
fn child_main(addr: &str) -> ! {
    let d = TcpDialer::new(addr.parse().expect("addr"));
    let mut r = ExecRequest::new("dev", "web", &["tty".to_string()]);
    r.tty = true;
    let code = match kodama::kube::exec::run_interactive(&d, &r) {
        Ok(c) => c,
        Err(e) => e.exit_code(),
    };
    std::process::exit(code)
}

#[test]
fn sigterm_in_a_child_on_a_pty_restores_the_terminal() {
    const NAME: &str = "sigterm_in_a_child_on_a_pty_restores_the_terminal";
    if let Some(addr) = std::env::var_os("KODAMA_TTY_CHILD") {
        child_main(&addr.to_string_lossy());
    }
    let s = Server::start(true);
    let (master, slave) = term::open_pty().expect("openpty");
    let (m, sl) = (master.as_raw_fd(), slave.as_raw_fd());
    term::set_window_size(sl, 90, 25).expect("size");
    let before = TermSettings::get(sl).expect("tcgetattr");
    let io = |fd: &std::os::fd::OwnedFd| std::process::Stdio::from(fd.try_clone().expect("dup"));
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
        .env("KODAMA_TTY_CHILD", s.addr.to_string())
        .stdin(io(&slave))
        .stdout(io(&slave))
        .stderr(io(&slave))
        .spawn()
        .expect("spawn child");
    // Drain the pty so the child never blocks writing to it.
    let drain = std::thread::spawn(move || {
        let mut r = FdIo(m);
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + LIMIT;
        while std::time::Instant::now() < deadline {
            if term::poll_readable(&[m], Duration::from_millis(50))
                .map(|r| r[0])
                .unwrap_or(false)
                && r.read(&mut buf).map(|n| n == 0).unwrap_or(true)
            {
                break;
            }
        }
        master
    });
    assert!(
        wait_until(LIMIT, || s
            .state
            .resizes
            .lock()
            .expect("lock")
            .contains(&(90, 25))),
        "the child did not start its session"
    );
    assert!(wait_until(LIMIT, || TermSettings::get(sl)
        .expect("tcgetattr")
        .is_raw()));
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let status = child.wait().expect("wait child");
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(
        TermSettings::get(sl).expect("tcgetattr"),
        before,
        "restored after SIGTERM"
    );
    drop(slave);
    let _ = drain.join();
}
