//! Streaming subresources of the simulated kubelet over WebSocket: exec and attach
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`, `channel.k8s.io`; stdin/stdout/stderr/status/resize
//! channels, v5 stdin close, pty with resize) and port-forward (legacy channel protocol, one
//! data/error channel pair per `ports=` entry). Errors before the upgrade are plain HTTP responses
//! with a `metav1.Status` body.
//!
//! The connection handed over by the API server must have a short read timeout on its socket: one
//! thread multiplexes both directions and treats `WouldBlock`/`TimedOut` as "no data yet".
//!
//! May import: std, serde_json, tungstenite, contract, kubelet::*.

use super::logs::Msg;
use super::util::{bad_request, kerr, not_found, reason_phrase, status_body};
use super::{lock, proc, select_container, Inner, Pod, SharedStdin, POD_IP};
use crate::contract::{Conn, KubeletError, StreamKind, StreamRequest};
use serde_json::json;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{HandshakeError, Message, WebSocket};

/// The connection with the already-read request head replayed first (for the server handshake).
struct Replay {
    head: Vec<u8>,
    pos: usize,
    conn: Box<dyn Conn>,
}

impl Read for Replay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos < self.head.len() {
            let n = buf.len().min(self.head.len() - self.pos);
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.conn.read(buf)
    }
}

impl Write for Replay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.conn.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush()
    }
}

type Ws = WebSocket<Replay>;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    V5,
    V4,
    /// `channel.k8s.io` or no subprotocol: plain-text errors, no exit status.
    V1,
}

impl Proto {
    fn name(self) -> Option<&'static str> {
        match self {
            Proto::V5 => Some("v5.channel.k8s.io"),
            Proto::V4 => Some("v4.channel.k8s.io"),
            Proto::V1 => None,
        }
    }
}

fn header<'a>(req: &'a StreamRequest, name: &str) -> Vec<&'a str> {
    req.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

fn query<'a>(req: &'a StreamRequest, name: &str) -> Vec<&'a str> {
    req.query
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn flag(req: &StreamRequest, name: &str) -> bool {
    query(req, name)
        .last()
        .is_some_and(|v| matches!(*v, "true" | "1" | "True" | "TRUE"))
}

/// Choose the subprotocol: v5 when offered (not for port-forward), else v4, else `channel.k8s.io`.
/// `Err` = nothing acceptable offered (answered with an empty 403 like the Go servers).
fn choose_proto(req: &StreamRequest) -> Result<(Proto, Option<&'static str>), ()> {
    let offered: Vec<String> = header(req, "sec-websocket-protocol")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok((Proto::V1, None));
    }
    let has = |p: &str| offered.iter().any(|o| o == p);
    if req.kind != StreamKind::PortForward && has("v5.channel.k8s.io") {
        return Ok((Proto::V5, Proto::V5.name()));
    }
    if has("v4.channel.k8s.io") {
        return Ok((Proto::V4, Proto::V4.name()));
    }
    if has("channel.k8s.io") {
        return Ok((Proto::V1, Some("channel.k8s.io")));
    }
    Err(())
}

fn write_http(conn: &mut dyn Conn, code: u16, ctype: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nCache-Control: no-cache, private\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        reason_phrase(code),
        body.len()
    );
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    let _ = conn.write_all(&all);
    let _ = conn.flush();
}

fn write_status(conn: &mut dyn Conn, e: &KubeletError, details: Option<serde_json::Value>) {
    let body = status_body(e, details).to_string();
    write_http(conn, e.code, "application/json", body.as_bytes());
}

/// Serve one streaming request on its connection.
pub fn serve(inner: &Arc<Inner>, req: StreamRequest, mut conn: Box<dyn Conn>) {
    let upgrade = header(&req, "upgrade")
        .iter()
        .any(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        write_status(&mut *conn, &bad_request("Upgrade request required"), None);
        return;
    }
    let Some(pod) = inner.find(&req.namespace, &req.pod) else {
        let e = not_found("pods", &req.pod);
        write_status(
            &mut *conn,
            &e,
            Some(json!({"name": req.pod, "kind": "pods"})),
        );
        return;
    };
    let plan = match plan(&pod, &req) {
        Ok(p) => p,
        Err(e) => {
            write_status(&mut *conn, &e, None);
            return;
        }
    };
    let Ok((proto, proto_name)) = choose_proto(&req) else {
        write_http(&mut *conn, 403, "text/plain; charset=utf-8", b"");
        return;
    };
    let replay = Replay {
        head: req.head.clone(),
        pos: 0,
        conn,
    };
    let Some(mut ws) = handshake(replay, proto_name) else {
        return;
    };
    match plan {
        Plan::Exec(x) => exec(&pod, &mut ws, proto, x),
        Plan::Attach(a) => attach(&mut ws, proto, a),
        Plan::PortForward(ports) => port_forward(&pod, &mut ws, ports),
    }
}

/// Handshake callback: answer with the chosen subprotocol.
struct ChooseProto(Option<&'static str>);

impl tungstenite::handshake::server::Callback for ChooseProto {
    fn on_request(
        self,
        _req: &tungstenite::handshake::server::Request,
        mut resp: tungstenite::handshake::server::Response,
    ) -> Result<
        tungstenite::handshake::server::Response,
        tungstenite::handshake::server::ErrorResponse,
    > {
        if let Some(p) = self.0 {
            resp.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                tungstenite::http::HeaderValue::from_static(p),
            );
        }
        Ok(resp)
    }
}

fn handshake(replay: Replay, proto: Option<&'static str>) -> Option<Ws> {
    let cb = ChooseProto(proto);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut res = tungstenite::accept_hdr(replay, cb);
    loop {
        match res {
            Ok(ws) => return Some(ws),
            Err(HandshakeError::Interrupted(mid)) if Instant::now() < deadline => {
                res = mid.handshake();
            }
            Err(_) => return None,
        }
    }
}

struct ExecPlan {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    id: proc::Identity,
    sandbox: u32,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

struct AttachPlan {
    hub: Arc<super::logs::Hub>,
    stdin: Option<SharedStdin>,
    pty: Option<Arc<OwnedFd>>,
    want_stdin: bool,
    /// The container spec's `stdinOnce`: the first attach closing stdin closes the container's.
    stdin_once: bool,
    stdout: bool,
    stderr: bool,
}

enum Plan {
    Exec(ExecPlan),
    Attach(AttachPlan),
    PortForward(Vec<u16>),
}

/// Validate the request against the pod before upgrading (errors become HTTP Status responses).
fn plan(pod: &Pod, req: &StreamRequest) -> Result<Plan, KubeletError> {
    let rt = lock(&pod.rt);
    if !rt.scheduled {
        return Err(bad_request(format!(
            "pod {} does not have a host assigned",
            pod.name
        )));
    }
    if req.kind == StreamKind::PortForward {
        let mut ports = Vec::new();
        for v in query(req, "ports").into_iter().chain(query(req, "port")) {
            for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => ports.push(n),
                    _ => {
                        return Err(bad_request(format!(
                            "invalid port {p:?}: must be between 1 and 65535, inclusive"
                        )))
                    }
                }
            }
        }
        if ports.is_empty() {
            return Err(bad_request("at least one port must be specified"));
        }
        if rt.sandbox.is_none() {
            return Err(kerr(
                500,
                "InternalError",
                format!(
                    "unable to upgrade connection: pod {} is not running",
                    pod.name
                ),
            ));
        }
        return Ok(Plan::PortForward(ports));
    }
    let container = query(req, "container").last().copied();
    let c = select_container(pod, &rt, container, true)?;
    let (stdin, stdout, stderr, tty) = (
        flag(req, "stdin"),
        flag(req, "stdout"),
        flag(req, "stderr"),
        flag(req, "tty"),
    );
    if !stdin && !stdout && !stderr {
        return Err(bad_request(
            "you must specify at least 1 of stdin, stdout, stderr",
        ));
    }
    let (Some(run), Some(cfg), Some(sb)) = (&c.run, &c.cfg, &rt.sandbox) else {
        return Err(kerr(
            500,
            "InternalError",
            format!(
                "unable to upgrade connection: container not found (\"{}\")",
                c.name
            ),
        ));
    };
    if req.kind == StreamKind::Attach {
        return Ok(Plan::Attach(AttachPlan {
            hub: run.hub.clone(),
            stdin: run.stdin.clone(),
            pty: run.pty.clone(),
            want_stdin: stdin,
            stdin_once: c
                .spec
                .get("stdinOnce")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            stdout,
            stderr,
        }));
    }
    let argv: Vec<String> = query(req, "command")
        .into_iter()
        .map(str::to_string)
        .collect();
    if argv.is_empty() {
        return Err(bad_request(
            "you must specify at least one command for the container",
        ));
    }
    Ok(Plan::Exec(ExecPlan {
        argv,
        env: cfg.env.clone(),
        id: cfg.id.clone(),
        sandbox: sb.id(),
        stdin,
        stdout,
        stderr,
        tty,
    }))
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// The single-threaded WebSocket loop: send queued frames, read client frames. Returns when the
/// client goes away, or after a queued `Close` once the close handshake ends.
fn ws_loop(ws: &mut Ws, rx: &Receiver<Msg>, on_frame: &mut dyn FnMut(&[u8]) -> bool) {
    let mut closing: Option<Instant> = None;
    loop {
        let mut wrote = false;
        let mut batch = 0;
        if closing.is_none() {
            // At most 64 frames per round, so client frames are read even under constant output.
            while batch < 64 {
                batch += 1;
                match rx.try_recv() {
                    // Internal keep-alive of attach sessions, never sent.
                    Ok(Msg::Frame(250, _)) => {}
                    Ok(Msg::Frame(ch, data)) => {
                        let mut b = Vec::with_capacity(data.len() + 1);
                        b.push(ch);
                        b.extend_from_slice(&data);
                        if ws.write(Message::Binary(b.into())).is_err() {
                            return;
                        }
                        wrote = true;
                    }
                    Ok(Msg::Close) | Err(TryRecvError::Disconnected) => {
                        let _ = ws.flush();
                        let _ = ws.close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "".into(),
                        }));
                        closing = Some(Instant::now());
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                }
            }
        }
        match ws.flush() {
            Ok(()) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
        if let Some(t) = closing {
            if t.elapsed() > Duration::from_secs(2) {
                return;
            }
        }
        if wrote && batch < 64 {
            // More output may be queued: write it before blocking in a read.
            continue;
        }
        match ws.read() {
            Ok(Message::Binary(b)) => {
                if closing.is_none() && !on_frame(&b) {
                    return;
                }
            }
            Ok(Message::Close(_)) => {
                let _ = ws.flush();
                if closing.is_none() {
                    // Client tear-down: reply (tungstenite queues it) and stop.
                    let _ = ws.flush();
                    return;
                }
            }
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

fn exit_status(code: i32, argv: &[String]) -> serde_json::Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: command '{}' exited with {code}: ",
                argv.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        })
    }
}

fn internal_error(msg: &str) -> serde_json::Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": msg,
        "reason": "InternalError",
        "details": {"causes": [{"message": msg}]},
        "code": 500,
    })
}

/// Put the final status on channel 3 (text for the legacy protocol), then close.
fn finish(tx: &Sender<Msg>, proto: Proto, status: serde_json::Value) {
    match proto {
        Proto::V5 | Proto::V4 => {
            let _ = tx.send(Msg::Frame(3, status.to_string().into_bytes()));
        }
        Proto::V1 => {
            if status["status"] != "Success" {
                let m = status["message"].as_str().unwrap_or("error").to_string();
                let _ = tx.send(Msg::Frame(3, m.into_bytes()));
            }
        }
    }
    let _ = tx.send(Msg::Close);
}

fn first_channel(stdout: bool, stderr: bool) -> u8 {
    if stdout {
        1
    } else if stderr {
        2
    } else {
        3
    }
}

fn reader_thread(
    mut r: impl Read + Send + 'static,
    ch: u8,
    forward: bool,
    tx: Sender<Msg>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if forward && tx.send(Msg::Frame(ch, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
}

/// stdin writer: `Some(bytes)` writes, `None` closes.
fn writer_thread(mut w: Box<dyn Write + Send>, rx: Receiver<Option<Vec<u8>>>, tty: bool) {
    std::thread::spawn(move || {
        while let Ok(m) = rx.recv() {
            match m {
                Some(b) => {
                    if w.write_all(&b).and_then(|_| w.flush()).is_err() {
                        break;
                    }
                }
                None => {
                    if tty {
                        let _ = w.write_all(&[4]);
                        continue;
                    }
                    break;
                }
            }
        }
    });
}

#[derive(serde::Deserialize)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

fn resize(fd: &OwnedFd, payload: &[u8]) {
    let de = serde_json::Deserializer::from_slice(payload).into_iter::<Size>();
    for s in de.flatten() {
        proc::set_winsize(fd.as_raw_fd(), s.width, s.height);
    }
}

/// Send the queued ready frame, then wait (up to 500 ms) for the client's first resize frame and
/// apply it; stdin arriving meanwhile is queued. False when the client went away.
fn initial_resize(
    ws: &mut Ws,
    rx: &Receiver<Msg>,
    master: &OwnedFd,
    proto: Proto,
    sin: &Sender<Option<Vec<u8>>>,
) -> bool {
    while let Ok(Msg::Frame(ch, data)) = rx.try_recv() {
        let mut b = vec![ch];
        b.extend_from_slice(&data);
        if ws.write(Message::Binary(b.into())).is_err() {
            return false;
        }
    }
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        match ws.flush() {
            Ok(()) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return false,
        }
        match ws.read() {
            Ok(Message::Binary(b)) => match b.first() {
                Some(4) => {
                    resize(master, &b[1..]);
                    return true;
                }
                Some(0) => {
                    let _ = sin.send(Some(b[1..].to_vec()));
                }
                Some(255) if proto == Proto::V5 && b.len() == 2 && b[1] == 0 => {
                    let _ = sin.send(None);
                }
                _ => {}
            },
            Ok(Message::Close(_)) => return false,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return false,
        }
    }
    true
}

fn exec(pod: &Arc<Pod>, ws: &mut Ws, proto: Proto, x: ExecPlan) {
    let (tx, rx) = channel::<Msg>();
    let _ = tx.send(Msg::Frame(first_channel(x.stdout, x.stderr), Vec::new()));
    let (io, master) = if x.tty {
        match proc::open_pty(80, 24) {
            Ok((m, s)) => (proc::Io::Pty(s), Some(Arc::new(m))),
            Err(e) => {
                finish(&tx, proto, internal_error(&format!("openpty: {e}")));
                ws_loop(ws, &rx, &mut |_| true);
                return;
            }
        }
    } else {
        (proc::Io::Pipes { stdin: x.stdin }, None)
    };
    let (sin_tx, sin_rx) = channel::<Option<Vec<u8>>>();
    if let Some(m) = &master {
        // Clients send the terminal size right after the upgrade: apply it before the command
        // starts, so its first look at the terminal (e.g. `stty size`) is already right.
        if !initial_resize(ws, &rx, m, proto, &sin_tx) {
            return;
        }
    }
    // The process is spawned, read and reaped on its own thread: its parent-death signal is tied
    // to that thread, which lives exactly as long as the process.
    let (pid_tx, pid_rx) = channel::<Option<i32>>();
    let tx_w = tx.clone();
    let master_w = master.as_ref().and_then(|m| m.try_clone().ok());
    let (argv, env, id, sandbox) = (x.argv.clone(), x.env.clone(), x.id.clone(), x.sandbox);
    let (want_in, want_out, want_err) = (x.stdin, x.stdout, x.stderr);
    let waiter = std::thread::spawn(move || {
        let mut child = match proc::spawn_in_pod(sandbox, &argv, &env, &id, io) {
            Ok(c) => c,
            Err(e) => {
                let _ = pid_tx.send(None);
                let msg = format!(
                    "error executing command in container: failed to exec in container: failed \
                     to start exec: OCI runtime exec failed: exec failed: unable to start \
                     container process: exec: {:?}: {e}",
                    argv[0]
                );
                finish(&tx_w, proto, internal_error(&msg));
                return;
            }
        };
        let _ = pid_tx.send(Some(child.id() as i32));
        let mut readers = Vec::new();
        if let Some(m) = master_w {
            if let Ok(fd) = m.try_clone() {
                readers.push(reader_thread(File::from(fd), 1, want_out, tx_w.clone()));
            }
            if want_in {
                writer_thread(Box::new(File::from(m)), sin_rx, true);
            }
        } else {
            if let Some(o) = child.stdout.take() {
                readers.push(reader_thread(o, 1, want_out, tx_w.clone()));
            }
            if let Some(e) = child.stderr.take() {
                readers.push(reader_thread(e, 2, want_err, tx_w.clone()));
            }
            if let Some(i) = child.stdin.take() {
                writer_thread(Box::new(i), sin_rx, false);
            }
        }
        let status = child.wait();
        let deadline = Instant::now() + Duration::from_secs(2);
        while readers.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        use std::os::unix::process::ExitStatusExt;
        let code = match status {
            Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
            Err(_) => 255,
        };
        finish(&tx_w, proto, exit_status(code, &argv));
    });
    let pgid = pid_rx.recv().ok().flatten();
    if let Some(g) = pgid {
        lock(&pod.rt).execs.push(g);
    }
    drop(tx);
    let mut sin = Some(sin_tx);
    let stdin_wanted = x.stdin;
    let mut on_frame = |b: &[u8]| -> bool {
        match b.first() {
            Some(0) if stdin_wanted => {
                if let Some(s) = &sin {
                    let _ = s.send(Some(b[1..].to_vec()));
                }
            }
            Some(4) => {
                if let Some(m) = &master {
                    resize(m, &b[1..]);
                }
            }
            Some(255) if proto == Proto::V5 => {
                if b.len() != 2 {
                    return false;
                }
                if b[1] == 0 {
                    if let Some(s) = sin.take() {
                        let _ = s.send(None);
                    }
                }
            }
            _ => {}
        }
        true
    };
    ws_loop(ws, &rx, &mut on_frame);
    let session_done = waiter.is_finished();
    // Client gone or session finished: close stdin; a pty hang-up reaches the session on drop.
    drop(sin);
    drop(master);
    let pod = pod.clone();
    let cleanup = move || {
        let _ = waiter.join();
        if let Some(pgid) = pgid {
            lock(&pod.rt).execs.retain(|g| *g != pgid);
        }
    };
    if session_done {
        cleanup();
    } else {
        // The client went away while the command runs: like a runtime, let it finish on its own
        // (it is still killed with the pod).
        std::thread::spawn(cleanup);
    }
}

fn attach(ws: &mut Ws, proto: Proto, a: AttachPlan) {
    let (tx, rx) = channel::<Msg>();
    let _ = tx.send(Msg::Frame(first_channel(a.stdout, a.stderr), Vec::new()));
    // Forward the container's output (filtered) until it ends, then report success and close.
    let (htx, hrx) = channel::<Msg>();
    a.hub.subscribe(htx);
    let (want_out, want_err) = (a.stdout, a.stderr);
    let tx_f = tx.clone();
    std::thread::spawn(move || {
        loop {
            match hrx.recv_timeout(Duration::from_millis(200)) {
                Ok(Msg::Frame(ch, d)) => {
                    let wanted = (ch == 1 && want_out) || (ch == 2 && want_err);
                    if wanted && tx_f.send(Msg::Frame(ch, d)).is_err() {
                        return;
                    }
                }
                Ok(Msg::Close) => break,
                Err(RecvTimeoutError::Timeout) => {
                    // Stop when the session itself has ended.
                    if tx_f.send(Msg::Frame(250, Vec::new())).is_err() {
                        return;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        finish(&tx_f, proto, json!({"metadata": {}, "status": "Success"}));
    });
    drop(tx);
    let (sin_tx, sin_rx) = channel::<Option<Vec<u8>>>();
    if a.want_stdin {
        if let Some(stdin) = a.stdin.clone() {
            let once = a.stdin_once;
            std::thread::spawn(move || {
                while let Ok(m) = sin_rx.recv() {
                    let mut g = lock(&stdin);
                    match (m, g.as_mut()) {
                        (Some(b), Some(w)) => {
                            if w.write_all(&b).and_then(|_| w.flush()).is_err() {
                                break;
                            }
                        }
                        (None, Some(_)) => {
                            // stdin closed by the client: with stdinOnce the container sees EOF,
                            // otherwise this session just stops sending.
                            if once {
                                g.take();
                            }
                            break;
                        }
                        (_, None) => break,
                    }
                }
            });
        }
    }
    let pty = a.pty.clone();
    let mut on_frame = |b: &[u8]| -> bool {
        match b.first() {
            Some(0) => {
                let _ = sin_tx.send(Some(b[1..].to_vec()));
            }
            Some(4) => {
                if let Some(m) = &pty {
                    resize(m, &b[1..]);
                }
            }
            Some(255) if proto == Proto::V5 => {
                if b.len() != 2 {
                    return false;
                }
                if b[1] == 0 {
                    let _ = sin_tx.send(None);
                }
            }
            _ => {}
        }
        true
    };
    ws_loop(ws, &rx, &mut on_frame);
}

fn port_forward(pod: &Pod, ws: &mut Ws, ports: Vec<u16>) {
    let (tx, rx) = channel::<Msg>();
    let remaining = Arc::new(AtomicUsize::new(ports.len()));
    let mut writers: Vec<Option<Sender<Option<Vec<u8>>>>> = Vec::new();
    let mut streams = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, err) = ((2 * i) as u8, (2 * i + 1) as u8);
        let le = port.to_le_bytes().to_vec();
        let _ = tx.send(Msg::Frame(data, le.clone()));
        let _ = tx.send(Msg::Frame(err, le));
        match std::net::TcpStream::connect((POD_IP, *port)) {
            Ok(s) => {
                let (wtx, wrx) = channel::<Option<Vec<u8>>>();
                if let (Ok(r), Ok(w)) = (s.try_clone(), s.try_clone()) {
                    streams.push(s);
                    let tx2 = tx.clone();
                    let rem = remaining.clone();
                    std::thread::spawn(move || {
                        let mut r = r;
                        let mut buf = vec![0u8; 32 * 1024];
                        loop {
                            match r.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if tx2.send(Msg::Frame(data, buf[..n].to_vec())).is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        if rem.fetch_sub(1, Ordering::SeqCst) == 1 {
                            let _ = tx2.send(Msg::Close);
                        }
                    });
                    writer_thread(Box::new(w), wrx, false);
                    writers.push(Some(wtx));
                } else {
                    writers.push(None);
                }
            }
            Err(e) => {
                let msg = format!(
                    "error forwarding port {port} to pod {}, uid {}: failed to connect to \
                     localhost:{port}: {e}",
                    pod.name, pod.uid
                );
                let _ = tx.send(Msg::Frame(err, msg.into_bytes()));
                writers.push(None);
                if remaining.fetch_sub(1, Ordering::SeqCst) == 1 {
                    let _ = tx.send(Msg::Close);
                }
            }
        }
    }
    drop(tx);
    let mut on_frame = |b: &[u8]| -> bool {
        if let Some(&ch) = b.first() {
            if ch % 2 == 0 {
                if let Some(Some(w)) = writers.get(ch as usize / 2) {
                    let _ = w.send(Some(b[1..].to_vec()));
                }
            }
        }
        true
    };
    ws_loop(ws, &rx, &mut on_frame);
    for s in streams {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}
