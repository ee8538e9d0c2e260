//! Terminal handling: raw mode guard, window size, SIGWINCH, sanitising remote text for a TTY. The only
//! unsafe code in the crate lives here.
//!
//! * [`RawMode`] puts a terminal in raw mode and restores the saved settings on drop; a process-wide
//!   panic hook ([`install_panic_hook`]) restores every terminal still in raw mode before the panic
//!   message is printed, so no exit path leaves the user's shell unusable.
//! * [`window_size`] reads `TIOCGWINSZ`; [`SignalPipe`] turns SIGWINCH (or any signal) into a readable
//!   file descriptor that [`poll_readable`] can wait on together with stdin.
//! * [`FdIo`] reads and writes a borrowed file descriptor (the terminal), so interactive sessions can run
//!   on any tty, not only the process's own stdin/stdout (tests use a pty).
//! * [`sanitize_for_tty`] strips control and escape sequences from remote text before we print it in our
//!   own messages.
//! * [`sys`] holds the few process-level OS calls (new session, signalling a process group, SIGPIPE),
//!   kept here so that every `unsafe` block of the crate lives in this one module.
//!
//! May import: error.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use crate::error::{Error, Result};

pub mod sys;

/// File descriptor of standard input.
pub const STDIN_FD: RawFd = 0;
/// File descriptor of standard output.
pub const STDOUT_FD: RawFd = 1;
/// File descriptor of standard error.
pub const STDERR_FD: RawFd = 2;

/// True when `fd` is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number; an invalid fd yields 0 (errno EBADF).
    unsafe { libc::isatty(fd) == 1 }
}

/// True when standard input is a terminal.
pub fn stdin_is_tty() -> bool {
    is_tty(STDIN_FD)
}

/// True when standard output is a terminal.
pub fn stdout_is_tty() -> bool {
    is_tty(STDOUT_FD)
}

/// True when standard error is a terminal.
pub fn stderr_is_tty() -> bool {
    is_tty(STDERR_FD)
}

/// The terminal size of `fd` as (columns, rows); `None` when `fd` is not a terminal or reports 0x0.
pub fn window_size(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain old data; all-zero is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws as *mut libc::winsize) };
    if rc != 0 || ws.ws_col == 0 || ws.ws_row == 0 {
        return None;
    }
    Some((ws.ws_col, ws.ws_row))
}

/// Set the terminal size of `fd` (used on ptys in tests, and harmless elsewhere).
pub fn set_window_size(fd: RawFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` through the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws as *const libc::winsize) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open a new pseudo-terminal pair (master, slave). Used by tests of interactive sessions.
pub fn open_pty() -> io::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    // SAFETY: openpty writes two descriptors through the pointers to our locals; name, termios and
    // winsize are optional and passed as null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openpty succeeded, so both descriptors are open and owned by nobody else.
    let pair = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(master),
            std::os::fd::OwnedFd::from_raw_fd(slave),
        )
    };
    Ok(pair)
}

/// A snapshot of a terminal's settings, comparable for equality (tests check restoration with it).
#[derive(Clone, Copy)]
pub struct TermSettings(libc::termios);

impl PartialEq for TermSettings {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.0, &other.0);
        a.c_iflag == b.c_iflag
            && a.c_oflag == b.c_oflag
            && a.c_cflag == b.c_cflag
            && a.c_lflag == b.c_lflag
            && a.c_cc == b.c_cc
    }
}

impl std::fmt::Debug for TermSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TermSettings {{ iflag: {:#x}, oflag: {:#x}, cflag: {:#x}, lflag: {:#x} }}",
            self.0.c_iflag, self.0.c_oflag, self.0.c_cflag, self.0.c_lflag
        )
    }
}

impl TermSettings {
    /// Read the settings of terminal `fd`.
    pub fn get(fd: RawFd) -> io::Result<TermSettings> {
        // SAFETY: termios is plain old data; all-zero is a valid value to be overwritten.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes one termios through the pointer, which points to a live local.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TermSettings(t))
    }

    /// Apply these settings to terminal `fd` immediately (never waits for output to drain, so a
    /// blocked terminal cannot hang us).
    pub fn set(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: tcsetattr reads one termios through the pointer, which points to our own value.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &self.0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// True when canonical mode and echo are off (the terminal is in raw mode).
    pub fn is_raw(&self) -> bool {
        self.0.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG) == 0
    }
}

/// Terminals currently in raw mode with their saved settings, for the panic hook.
static RAW_TERMINALS: Mutex<Vec<(RawFd, TermSettings)>> = Mutex::new(Vec::new());
static PANIC_HOOK: Once = Once::new();

/// Install (once per process) a panic hook that restores every terminal in raw mode before the
/// previous hook prints the panic message. [`RawMode::enable`] calls it.
pub fn install_panic_hook() {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_all_raw_terminals();
            previous(info);
        }));
    });
}

/// Restore every terminal still in raw mode (panic hook, fatal signal paths).
pub fn restore_all_raw_terminals() {
    // A poisoned lock still holds valid data; restoring matters more than the poison flag.
    let list = match RAW_TERMINALS.lock() {
        Ok(l) => l,
        Err(p) => p.into_inner(),
    };
    for (fd, saved) in list.iter() {
        let _ = saved.set(*fd);
    }
}

/// Raw mode on a terminal for as long as this guard lives. Ctrl-C, Ctrl-Z and Ctrl-\ become plain
/// bytes (ISIG off), so they reach the remote program.
pub struct RawMode {
    fd: RawFd,
    saved: TermSettings,
    restored: bool,
}

impl RawMode {
    /// Put `fd` in raw mode (`cfmakeraw`), remembering its current settings.
    pub fn enable(fd: RawFd) -> Result<RawMode> {
        install_panic_hook();
        let saved = TermSettings::get(fd).map_err(|e| {
            Error::io("", e).context(format!("reading the terminal settings of fd {fd}"))
        })?;
        let mut raw = saved.0;
        // SAFETY: cfmakeraw only modifies the termios value we own.
        unsafe { libc::cfmakeraw(&mut raw) };
        {
            let mut list = match RAW_TERMINALS.lock() {
                Ok(l) => l,
                Err(p) => p.into_inner(),
            };
            list.push((fd, saved));
        }
        if let Err(e) = TermSettings(raw).set(fd) {
            remove_saved(fd);
            return Err(Error::io("", e).context("switching the terminal to raw mode"));
        }
        Ok(RawMode {
            fd,
            saved,
            restored: false,
        })
    }

    /// Restore the saved settings now (also done on drop).
    pub fn restore(&mut self) -> io::Result<()> {
        if self.restored {
            return Ok(());
        }
        self.restored = true;
        remove_saved(self.fd);
        self.saved.set(self.fd)
    }
}

fn remove_saved(fd: RawFd) {
    let mut list = match RAW_TERMINALS.lock() {
        Ok(l) => l,
        Err(p) => p.into_inner(),
    };
    if let Some(pos) = list.iter().rposition(|(f, _)| *f == fd) {
        list.remove(pos);
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = self.restore();
    }
}

/// Wait until one of `fds` is readable (or hung up), at most `timeout`. Returns one flag per fd.
/// An interrupted wait (EINTR, e.g. by SIGWINCH) reports nothing ready.
pub fn poll_readable(fds: &[RawFd], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: the pointer and length describe our own live Vec of pollfd.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
        .collect())
}

/// Read/Write on a file descriptor we borrow (not closed on drop). The owner keeps it open.
#[derive(Debug, Clone, Copy)]
pub struct FdIo(pub RawFd);

impl io::Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: the pointer and length describe the caller's live buffer.
            let n = unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                // A pty whose other side closed reports EIO: that is end of input.
                if e.raw_os_error() == Some(libc::EIO) {
                    return Ok(0);
                }
                return Err(e);
            }
        }
    }
}

impl io::Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: the pointer and length describe the caller's live buffer.
            let n = unsafe { libc::write(self.0, buf.as_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A signal turned into a readable descriptor (self-pipe, via signal-hook) plus a flag; the handler
/// is unregistered on drop.
///
/// Unregistering a signal-hook handler does not give the signal its default action back (it would
/// be ignored from then on). So when the signal had its default disposition before the first
/// watcher, dropping the last watcher switches on signal-hook's emulation of the default action
/// (installed once per signal, switched off again while anyone watches): after an interactive
/// session, Ctrl-C and SIGTERM terminate the process again. When someone else already handled the
/// signal, their handlers keep working and nothing else is installed.
pub struct SignalPipe {
    signal: libc::c_int,
    id: signal_hook::SigId,
    flag_id: signal_hook::SigId,
    read: std::os::unix::net::UnixStream,
    flag: Arc<AtomicBool>,
}

/// Per signal: how many [`SignalPipe`]s watch it, whether it had its default disposition before
/// the first one, and the switch of the default-action emulation we installed for it (on while
/// nobody watches).
struct SignalState {
    signal: libc::c_int,
    active: usize,
    was_default: bool,
    default_switch: Option<Arc<AtomicBool>>,
}

static SIGNAL_STATES: Mutex<Vec<SignalState>> = Mutex::new(Vec::new());

fn signal_states() -> MutexGuard<'static, Vec<SignalState>> {
    match SIGNAL_STATES.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A new watcher of `signal`: the default-action emulation (if any) is switched off meanwhile.
fn watch_begins(signal: libc::c_int) {
    let mut states = signal_states();
    let pos = match states.iter().position(|s| s.signal == signal) {
        Some(p) => p,
        None => {
            states.push(SignalState {
                signal,
                active: 0,
                was_default: has_default_disposition(signal),
                default_switch: None,
            });
            states.len() - 1
        }
    };
    let st = &mut states[pos];
    st.active += 1;
    if let Some(sw) = &st.default_switch {
        sw.store(false, Ordering::SeqCst);
    }
}

/// A watcher of `signal` is gone: when it was the last one and the signal had its default action
/// before, turn the default-action emulation on (installing it the first time).
fn watch_ends(signal: libc::c_int) {
    let mut states = signal_states();
    let Some(st) = states.iter_mut().find(|s| s.signal == signal) else {
        return;
    };
    st.active = st.active.saturating_sub(1);
    if st.active > 0 || !st.was_default {
        return;
    }
    match &st.default_switch {
        Some(sw) => sw.store(true, Ordering::SeqCst),
        None => {
            let sw = Arc::new(AtomicBool::new(true));
            if signal_hook::flag::register_conditional_default(signal, Arc::clone(&sw)).is_ok() {
                st.default_switch = Some(sw);
            }
        }
    }
}

/// True when `signal` currently has its default disposition (SIG_DFL).
fn has_default_disposition(signal: libc::c_int) -> bool {
    // SAFETY: sigaction is plain old data; all-zero is a valid value to be overwritten.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with a null new action, sigaction only writes the current one into our local.
    let rc = unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) };
    rc == 0 && old.sa_sigaction == libc::SIG_DFL
}

impl SignalPipe {
    /// Watch `signal` (e.g. `libc::SIGWINCH`).
    pub fn new(signal: libc::c_int) -> Result<SignalPipe> {
        let (read, write) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("", e).context("creating a signal pipe"))?;
        read.set_nonblocking(true)
            .map_err(|e| Error::io("", e).context("creating a signal pipe"))?;
        // Before registering: it records whether the signal still has its default disposition.
        watch_begins(signal);
        let id = match signal_hook::low_level::pipe::register(signal, write) {
            Ok(i) => i,
            Err(e) => {
                watch_ends(signal);
                return Err(Error::io("", e).context(format!("watching signal {signal}")));
            }
        };
        let flag = Arc::new(AtomicBool::new(false));
        let flag_id = match signal_hook::flag::register(signal, Arc::clone(&flag)) {
            Ok(i) => i,
            Err(e) => {
                signal_hook::low_level::unregister(id);
                watch_ends(signal);
                return Err(Error::io("", e).context(format!("watching signal {signal}")));
            }
        };
        Ok(SignalPipe {
            signal,
            id,
            flag_id,
            read,
            flag,
        })
    }

    /// The descriptor that becomes readable when the signal arrives.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// True (once per burst) when the signal arrived since the last call; drains the pipe.
    pub fn take(&self) -> bool {
        let mut buf = [0u8; 64];
        while let Ok(n) = io::Read::read(&mut &self.read, &mut buf) {
            if n == 0 {
                break;
            }
        }
        self.flag.swap(false, Ordering::SeqCst)
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.flag_id);
        signal_hook::low_level::unregister(self.id);
        // Give the signal its default action back (see the type's doc).
        watch_ends(self.signal);
    }
}

/// Strip control characters and terminal escape sequences from remote text before we print it in
/// our own messages: ESC sequences (CSI, OSC, DCS and two-byte forms), C0 controls except newline
/// and tab, DEL, C1 controls, and bidirectional overrides. Printable Unicode is kept.
pub fn sanitize_for_tty(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte 0x40..=0x7E.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: up to BEL or ST (ESC \).
                Some(']') | Some('P') | Some('X') | Some('^') | Some('_') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || c == '\u{9c}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            if chars.peek() == Some(&'\\') {
                                chars.next();
                            }
                            break;
                        }
                    }
                }
                // Two-byte escapes (ESC c, ESC 7, ...) and a trailing lone ESC.
                _ => {}
            },
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            // Bidirectional overrides and isolates can make text display in another order.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_table() {
        let cases = [
            ("plain text", "plain text"),
            ("red \u{1b}[31mERR\u{1b}[0m", "red ERR"),
            ("title\u{1b}]0;evil title\u{7}done", "titledone"),
            ("osc-st\u{1b}]8;;http://x\u{1b}\\link", "osc-stlink"),
            ("bell\u{7} back\u{8}space\r", "bell backspace"),
            ("clear\u{1b}c screen", "clear screen"),
            ("keep\nlines\tand tabs", "keep\nlines\tand tabs"),
            ("c1 \u{9b}31m csi", "c1 31m csi"),
            ("del\u{7f}", "del"),
            ("ユニコード ok", "ユニコード ok"),
            ("lone esc\u{1b}", "lone esc"),
            (
                "bidi \u{202e}txt.exe\u{202c} \u{2066}x\u{2069}",
                "bidi txt.exe x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize_for_tty(input), want, "{input:?}");
        }
    }

    #[test]
    fn non_tty_helpers_report_no_terminal() {
        let (r, _w) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert!(!is_tty(r.as_raw_fd()));
        assert_eq!(window_size(r.as_raw_fd()), None);
        assert!(RawMode::enable(r.as_raw_fd()).is_err());
    }

    #[test]
    fn signal_pipe_wakes_and_gives_the_default_action_back() {
        // SIGWINCH's default action is "ignore", so this is safe to raise in a test process.
        let p = SignalPipe::new(libc::SIGWINCH).expect("watch");
        assert!(!has_default_disposition(libc::SIGWINCH));
        signal_hook::low_level::raise(libc::SIGWINCH).expect("raise");
        let ready = poll_readable(&[p.fd()], Duration::from_secs(5)).expect("poll");
        assert_eq!(ready, vec![true]);
        assert!(p.take());
        assert!(!p.take());
        drop(p);
        // Still ignored (its default), and the process survives another one.
        signal_hook::low_level::raise(libc::SIGWINCH).expect("raise");
    }

    #[test]
    fn sigint_terminates_again_after_a_signal_pipe_is_dropped() {
        const NAME: &str = "term::tests::sigint_terminates_again_after_a_signal_pipe_is_dropped";
        if std::env::var_os("KODAMA_TERM_SIGINT_CHILD").is_some() {
            drop(SignalPipe::new(libc::SIGINT).expect("watch"));
            // While a second watcher is active, SIGINT is its to handle, not a termination.
            let a = SignalPipe::new(libc::SIGINT).expect("watch");
            let b = SignalPipe::new(libc::SIGINT).expect("watch");
            drop(a);
            let _ = signal_hook::low_level::raise(libc::SIGINT);
            assert!(b.take(), "the remaining watcher saw SIGINT");
            drop(b);
            let _ = signal_hook::low_level::raise(libc::SIGINT);
            // Only reached when SIGINT was swallowed: the parent sees a normal exit and fails.
            std::thread::sleep(Duration::from_secs(5));
            std::process::exit(0);
        }
        let exe = std::env::current_exe().expect("test binary");
        let out = std::process::Command::new(exe)
            .args(["--exact", NAME, "--test-threads=1"])
            .env("KODAMA_TERM_SIGINT_CHILD", "1")
            .output()
            .expect("run child");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGINT), "{:?}", out);
    }

    #[test]
    fn poll_reports_readable_fd() {
        let (a, mut b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let ready = poll_readable(&[a.as_raw_fd()], Duration::from_millis(0)).expect("poll");
        assert_eq!(ready, vec![false]);
        io::Write::write_all(&mut b, b"x").expect("write");
        let ready = poll_readable(&[a.as_raw_fd()], Duration::from_secs(5)).expect("poll");
        assert_eq!(ready, vec![true]);
    }
}
