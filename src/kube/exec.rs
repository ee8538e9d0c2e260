//! Exec in a pod over WebSocket: the request URL, a binary-safe streaming process for other
//! modules ([`ExecProcess`], a [`RemoteProcess`]), and the interactive terminal mode
//! ([`run_interactive`]) shared with attach.
//!
//! Every argv element is its own percent-encoded `command` parameter: no shell ever re-parses it.
//! Interactive mode puts the local terminal in raw mode only after the upgrade succeeded and
//! restores it on every exit path (guard drop, the term panic hook, SIGTERM/SIGHUP end the session
//! cleanly); Ctrl-C in raw mode is just a byte for the remote program. The window size is sent at
//! start and on every SIGWINCH.
//!
//! Checking the pod phase first is the caller's job; a container that is not running still gets a
//! helpful error from the status decoding.
//!
//! May import: error, remote, term, kube::ws, kube::auth (stdin-in-use flag).

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use super::ws::codec::{self, Protocol, MAX_PAYLOAD};
use super::ws::http::{self, Upgraded};
use super::ws::pipe::{pipe, Outgoing, PipeReader, StreamWriter};
use super::ws::session::{Route, Session, SessionConfig, Spec};
use super::ws::{check_name, percent_encode, Dialer};
use crate::error::{Error, Result};
use crate::remote::RemoteProcess;
use crate::term::{self, FdIo, RawMode, SignalPipe};

/// What to do when the server only speaks `v4.channel.k8s.io`, which cannot tell the remote
/// command that stdin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdinEof {
    /// The command needs to see EOF on stdin (`cat`, `tar -x`): refuse v4 with a clear error
    /// instead of hanging or truncating.
    #[default]
    Required,
    /// The command ends by itself (a self-delimiting protocol): on v4, dropping stdin sends nothing.
    NotNeeded,
}

/// One exec into a pod.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    /// Container name; `None` lets the server pick (only valid for one-container pods).
    pub container: Option<String>,
    /// argv; `argv[0]` is looked up on the container's PATH.
    pub command: Vec<String>,
    /// Attach stdin.
    pub stdin: bool,
    /// Allocate a TTY (stderr is merged into stdout by the runtime).
    pub tty: bool,
    /// v4 servers and stdin EOF (see [`StdinEof`]).
    pub stdin_eof: StdinEof,
}

impl ExecRequest {
    /// A non-TTY exec of `command` with stdin attached.
    pub fn new(namespace: &str, pod: &str, command: &[String]) -> ExecRequest {
        ExecRequest {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            command: command.to_vec(),
            stdin: true,
            ..Default::default()
        }
    }

    /// The request path and query.
    pub fn path(&self) -> Result<String> {
        check_name("namespace", &self.namespace)?;
        check_name("pod", &self.pod)?;
        if self.command.is_empty() {
            return Err(Error::usage("exec needs a command", None));
        }
        let mut q = String::new();
        for arg in &self.command {
            q.push_str("command=");
            q.push_str(&percent_encode(arg));
            q.push('&');
        }
        q.push_str(&stream_flags(self.stdin, self.tty));
        if let Some(c) = &self.container {
            q.push_str("&container=");
            q.push_str(&percent_encode(c));
        }
        Ok(format!(
            "/api/v1/namespaces/{}/pods/{}/exec?{q}",
            percent_encode(&self.namespace),
            percent_encode(&self.pod)
        ))
    }

    fn describe(&self) -> String {
        format!(
            "exec {:?} in pod {}/{}",
            self.command
                .first()
                .map(|s| term::sanitize_for_tty(s))
                .unwrap_or_default(),
            self.namespace,
            self.pod
        )
    }
}

/// `stdin=..&stdout=true&stderr=..&tty=..` (stderr only without a TTY: the runtime merges it).
pub(crate) fn stream_flags(stdin: bool, tty: bool) -> String {
    format!("stdin={stdin}&stdout=true&stderr={}&tty={tty}", !tty)
}

/// The protocols offered for exec and attach, in order.
pub const EXEC_PROTOCOLS: [Protocol; 2] = [Protocol::V5, Protocol::V4];

/// A running exec: binary-safe stdin/stdout/stderr usable from other threads.
pub struct ExecProcess {
    session: Option<Session>,
    stdin: Option<StreamWriter>,
    stdout: Option<PipeReader>,
    stderr: Option<PipeReader>,
    tx: SyncSender<Outgoing>,
    protocol: Protocol,
    what: String,
}

impl ExecProcess {
    /// Start `req` (non-TTY or TTY) over a fresh connection from `dialer`.
    pub fn spawn(dialer: &dyn Dialer, req: &ExecRequest) -> Result<ExecProcess> {
        ExecProcess::spawn_with(dialer, req, SessionConfig::default())
    }

    /// [`ExecProcess::spawn`] with explicit session tunables.
    pub fn spawn_with(
        dialer: &dyn Dialer,
        req: &ExecRequest,
        config: SessionConfig,
    ) -> Result<ExecProcess> {
        let what = req.describe();
        let path = req.path()?;
        let upgraded = http::upgrade(dialer, &path, &EXEC_PROTOCOLS).map_err(|e| {
            http::explain_stream_error(e, "pods/exec", &req.namespace, &req.pod, &what)
        })?;
        let protocol = upgraded.protocol;
        if req.stdin
            && !req.tty
            && !protocol.supports_half_close()
            && req.stdin_eof == StdinEof::Required
        {
            return Err(v4_stdin_error(&what));
        }
        let (session, out_r, stderr) = start_exec_session(upgraded, req.tty, config, &what)?;
        let tx = session.sender();
        let stdin = req
            .stdin
            .then(|| StreamWriter::new(tx.clone(), codec::STDIN, true));
        Ok(ExecProcess {
            session: Some(session),
            stdin,
            stdout: Some(out_r),
            stderr,
            tx,
            protocol,
            what,
        })
    }

    /// The negotiated subprotocol (v5 can half-close stdin; v4 cannot).
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Send a terminal size (columns, rows); only meaningful with a TTY.
    pub fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.tx
            .send(Outgoing::Resize(cols, rows))
            .map_err(|_| Error::msg(format!("{}: the session has ended", self.what)))
    }

    /// Wait for the remote exit code (see [`RemoteProcess::wait`]).
    pub fn wait_code(mut self) -> Result<i32> {
        // Like a local child: our stdin ends, and output nobody took is discarded.
        drop(self.stdin.take());
        drop(self.stdout.take());
        drop(self.stderr.take());
        let session = self
            .session
            .take()
            .ok_or_else(|| Error::msg("exec already waited for"))?;
        let end = session.join().map_err(|e| e.context(self.what.clone()))?;
        if end.aborted {
            return Err(Error::msg(format!("{}: aborted", self.what)));
        }
        codec::decode_exit(&end.status).map_err(|e| e.context(self.what.clone()))
    }
}

fn v4_stdin_error(what: &str) -> Error {
    Error::with_hint(
        format!(
            "{what}: the API server only speaks v4.channel.k8s.io, which cannot signal the end of stdin, and this command needs it"
        ),
        "upgrade the cluster to Kubernetes 1.30 or newer (WebSocket v5 streaming), or use a command that does not wait for end of input",
    )
}

impl RemoteProcess for ExecProcess {
    fn take_stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        self.stdin
            .take()
            .map(|w| Box::new(w) as Box<dyn Write + Send>)
    }
    fn take_stdout(&mut self) -> Option<Box<dyn Read + Send>> {
        self.stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>)
    }
    fn take_stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        self.stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>)
    }
    fn wait(self: Box<Self>) -> Result<i32> {
        (*self).wait_code()
    }
}

/// A [`crate::remote::Remote`] that runs commands in one container of a pod over exec (what
/// `sync`, `agent` and `run` use in production).
#[derive(Clone)]
pub struct PodRemote<D: Dialer> {
    /// How to reach the API server (`kube::Client` in production).
    pub dialer: D,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    /// What the commands need from stdin on v4 servers (see [`StdinEof`]).
    pub stdin_eof: StdinEof,
}

impl<D: Dialer> PodRemote<D> {
    /// Commands in `container` of `namespace/pod`, needing stdin EOF.
    pub fn new(dialer: D, namespace: &str, pod: &str, container: Option<&str>) -> PodRemote<D> {
        PodRemote {
            dialer,
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container: container.map(str::to_string),
            stdin_eof: StdinEof::Required,
        }
    }
}

impl<D: Dialer> crate::remote::Remote for PodRemote<D> {
    fn exec(&self, argv: &[String]) -> Result<Box<dyn RemoteProcess>> {
        let mut req = ExecRequest::new(&self.namespace, &self.pod, argv);
        req.container = self.container.clone();
        req.stdin_eof = self.stdin_eof;
        Ok(Box::new(ExecProcess::spawn(&self.dialer, &req)?))
    }
}

/// The local terminal an interactive session uses (the process's stdio by default; tests pass a
/// pty).
#[derive(Debug, Clone, Copy)]
pub struct TerminalIo {
    /// Where keystrokes come from.
    pub input: RawFd,
    /// Where remote stdout goes (its window size is sent to the remote).
    pub output: RawFd,
    /// Where remote stderr goes (non-TTY only).
    pub error: RawFd,
}

impl TerminalIo {
    /// The process's stdin, stdout and stderr.
    pub fn stdio() -> TerminalIo {
        TerminalIo {
            input: term::STDIN_FD,
            output: term::STDOUT_FD,
            error: term::STDERR_FD,
        }
    }
}

/// Run `req` interactively on the process's terminal and return the remote exit code (the caller
/// passes it through as ours). With `req.tty` the local terminal is in raw mode for the duration.
pub fn run_interactive(dialer: &dyn Dialer, req: &ExecRequest) -> Result<i32> {
    run_interactive_on(dialer, req, TerminalIo::stdio(), SessionConfig::default())
}

/// [`run_interactive`] on an explicit terminal with explicit session tunables.
pub fn run_interactive_on(
    dialer: &dyn Dialer,
    req: &ExecRequest,
    terminal: TerminalIo,
    config: SessionConfig,
) -> Result<i32> {
    let path = req.path()?;
    let what = req.describe();
    let code = run_terminal(
        dialer,
        &path,
        &what,
        ("pods/exec", &req.namespace, &req.pod),
        TerminalMode {
            stdin: req.stdin,
            tty: req.tty,
            redraw: false,
            strict_status: true,
        },
        terminal,
        config,
    )?;
    Ok(code)
}

/// How [`run_terminal`] behaves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TerminalMode {
    pub stdin: bool,
    pub tty: bool,
    /// Attach: send size+1 then the real size so the remote program redraws.
    pub redraw: bool,
    /// Exec: a stream that closes without a status is an error. Attach: it is success.
    pub strict_status: bool,
}

/// The shared interactive runner of exec and attach.
pub(crate) fn run_terminal(
    dialer: &dyn Dialer,
    path: &str,
    what: &str,
    (resource, namespace, pod): (&str, &str, &str),
    mode: TerminalMode,
    terminal: TerminalIo,
    config: SessionConfig,
) -> Result<i32> {
    let upgraded = http::upgrade(dialer, path, &EXEC_PROTOCOLS)
        .map_err(|e| http::explain_stream_error(e, resource, namespace, pod, what))?;
    let (session, mut out_r, err_reader) = start_exec_session(upgraded, mode.tty, config, what)?;
    let tx = session.sender();

    // From now on our stdin belongs to the session: exec credential plugins (a token refresh in
    // another thread) must not read it.
    let _stdin_busy = (mode.stdin && terminal.input == term::STDIN_FD).then(StdinBusy::new);
    // Raw mode only now that the stream is up, so earlier errors print on a normal terminal.
    let mut raw = if mode.tty && term::is_tty(terminal.input) {
        Some(RawMode::enable(terminal.input)?)
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    // Whatever way we leave, the input thread stops within one poll interval.
    let _stop_on_exit = StopOnDrop(Arc::clone(&stop));
    let interrupted = Arc::new(AtomicBool::new(false));
    let winch = if mode.tty {
        Some(SignalPipe::new(libc::SIGWINCH)?)
    } else {
        None
    };
    let mut fatal = Vec::new();
    for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
        fatal.push(SignalPipe::new(sig)?);
    }
    if mode.tty {
        if let Some((w, h)) =
            term::window_size(terminal.output).or_else(|| term::window_size(terminal.input))
        {
            if mode.redraw {
                let _ = tx.send(Outgoing::Resize(w.saturating_add(1), h.saturating_add(1)));
            }
            let _ = tx.send(Outgoing::Resize(w, h));
        }
    }

    let input = {
        let tx = tx.clone();
        let stop = Arc::clone(&stop);
        let interrupted = Arc::clone(&interrupted);
        let abort = session.abort_handle();
        let stdin = mode.stdin;
        std::thread::Builder::new()
            .name("terminal input".into())
            .spawn(move || {
                input_loop(InputLoop {
                    tx,
                    stop,
                    interrupted,
                    abort,
                    stdin,
                    terminal,
                    winch,
                    fatal,
                })
            })
            .map_err(|e| Error::io("", e).context("starting the terminal input thread"))?
    };
    let err_thread = match err_reader {
        Some(mut r) => Some(
            std::thread::Builder::new()
                .name("terminal stderr".into())
                .spawn(move || copy_out(&mut r, terminal.error))
                .map_err(|e| Error::io("", e).context("starting the stderr thread"))?,
        ),
        None => None,
    };
    let out_result = copy_out(&mut out_r, terminal.output);
    drop(out_r);
    if out_result.is_err() || interrupted.load(Ordering::SeqCst) {
        session.abort();
    }
    stop.store(true, Ordering::SeqCst);
    drop(tx);
    let input_result = input.join();
    let err_result = err_thread.map(|t| t.join());
    let end = session.join();
    if let Some(r) = raw.as_mut() {
        let _ = r.restore();
    }
    drop(raw);
    if interrupted.load(Ordering::SeqCst) {
        return Err(Error::Interrupted);
    }
    if input_result.is_err() {
        return Err(Error::msg(format!(
            "{what}: the terminal input thread panicked"
        )));
    }
    if let Some(Err(_)) = err_result {
        return Err(Error::msg(format!("{what}: the stderr thread panicked")));
    }
    let end = end.map_err(|e| e.context(what.to_string()))?;
    match out_result {
        // The local output is gone (closed pipe): nothing more to show, not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(0),
        Err(e) if end.status.is_empty() => {
            return Err(Error::io("", e).context(what.to_string()));
        }
        _ => {}
    }
    if end.status.is_empty() && !mode.strict_status && end.clean_close {
        return Ok(0);
    }
    codec::decode_exit(&end.status).map_err(|e| e.context(what.to_string()))
}

/// Marks our stdin as in use by a session (for exec credential plugins) while it lives.
struct StdinBusy;

impl StdinBusy {
    fn new() -> StdinBusy {
        crate::kube::auth::mark_stdin_in_use(true);
        StdinBusy
    }
}

impl Drop for StdinBusy {
    fn drop(&mut self) {
        crate::kube::auth::mark_stdin_in_use(false);
    }
}

/// Sets the flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Copy a stream pipe to a local fd until EOF. Errors of the pipe (a lost stream) are returned.
fn copy_out(r: &mut PipeReader, fd: RawFd) -> io::Result<()> {
    let mut out = FdIo(fd);
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}

struct InputLoop {
    tx: SyncSender<Outgoing>,
    stop: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
    stdin: bool,
    terminal: TerminalIo,
    winch: Option<SignalPipe>,
    fatal: Vec<SignalPipe>,
}

/// Local keystrokes → stream 0, SIGWINCH → resize, SIGTERM/SIGHUP/SIGINT → end the session.
fn input_loop(l: InputLoop) {
    let mut stdin_open = l.stdin;
    let mut buf = vec![0u8; MAX_PAYLOAD];
    let mut input = FdIo(l.terminal.input);
    while !l.stop.load(Ordering::SeqCst) {
        let mut fds = Vec::new();
        if stdin_open {
            fds.push(l.terminal.input);
        }
        if let Some(w) = &l.winch {
            fds.push(w.fd());
        }
        fds.extend(l.fatal.iter().map(|f| f.fd()));
        let ready = match term::poll_readable(&fds, Duration::from_millis(100)) {
            Ok(r) => r,
            Err(_) => break,
        };
        let mut i = 0;
        if stdin_open {
            if ready[0] {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        let _ = l.tx.send(Outgoing::CloseStream(codec::STDIN));
                    }
                    Ok(n) => {
                        if l.tx
                            .send(Outgoing::Data(codec::STDIN, buf[..n].to_vec()))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            i += 1;
        }
        if let Some(w) = &l.winch {
            if w.take() || ready[i] {
                if let Some((c, r)) = term::window_size(l.terminal.output)
                    .or_else(|| term::window_size(l.terminal.input))
                {
                    let _ = l.tx.send(Outgoing::Resize(c, r));
                }
            }
            i += 1;
        }
        for (k, f) in l.fatal.iter().enumerate() {
            if ready[i + k] || f.take() {
                l.interrupted.store(true, Ordering::SeqCst);
                l.abort.store(true, Ordering::SeqCst);
                return;
            }
        }
    }
}

/// Start the socket-owner session of an exec stream: stdout always routed, stderr unless a TTY
/// merges it into stdout, and the status channel decoded. Returns the session and the readers the
/// caller consumes (stdout, then stderr when routed).
fn start_exec_session(
    upgraded: Upgraded,
    tty: bool,
    config: SessionConfig,
    what: &str,
) -> Result<(Session, PipeReader, Option<PipeReader>)> {
    let high_water = config.pipe_high_water;
    let (out_w, out_r) = pipe(high_water);
    let mut routes = vec![Route {
        stream: codec::STDOUT,
        out: out_w,
        skip: 0,
    }];
    let err_r = if tty {
        None
    } else {
        let (err_w, err_r) = pipe(high_water);
        routes.push(Route {
            stream: codec::STDERR,
            out: err_w,
            skip: 0,
        });
        Some(err_r)
    };
    let session = Session::start(
        upgraded,
        Spec {
            routes,
            status: Some((codec::STATUS, 0)),
        },
        config,
        what,
    )?;
    Ok((session, out_r, err_r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_url_has_one_param_per_argv_element() {
        let mut r = ExecRequest::new(
            "dev",
            "kodama-x",
            &[
                "sh".into(),
                "-c".into(),
                "echo 'a b' && rm -rf $HOME".into(),
            ],
        );
        r.container = Some("main".into());
        assert_eq!(
            r.path().expect("path"),
            "/api/v1/namespaces/dev/pods/kodama-x/exec?command=sh&command=-c&command=echo%20%27a%20b%27%20%26%26%20rm%20-rf%20%24HOME&stdin=true&stdout=true&stderr=true&tty=false&container=main"
        );
        r.tty = true;
        r.stdin = false;
        r.container = None;
        assert!(r
            .path()
            .expect("path")
            .ends_with("&stdin=false&stdout=true&stderr=false&tty=true"));
    }

    #[test]
    fn bad_exec_requests_are_refused() {
        let r = ExecRequest::new("dev", "p", &[]);
        assert!(r.path().is_err());
        let r = ExecRequest::new("dev", "../x", &["ls".into()]);
        assert!(r.path().is_err());
        let r = ExecRequest::new("", "p", &["ls".into()]);
        assert!(r.path().is_err());
    }
}
