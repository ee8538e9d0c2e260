//! Interactive exec and attach on a pseudo-terminal: raw mode while the session runs, the window
//! size at start and on SIGWINCH, Ctrl-C as a plain byte, the remote exit code, and the terminal
//! restored exactly afterwards — also when the socket thread panics.
//!
//! Everything runs in one test function so no other test of this binary can race on the
//! process-wide panic hook or signal handlers.

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
