//! An in-test API server for kodama's streaming client: it speaks the exec/attach channel protocol
//! (v5 and v4, or v4 only), legacy port-forward and pod logs over plain TCP on 127.0.0.1, and
//! records what it saw. Behaviour is picked by the exec command's argv[0]:
//!
//! * `cat`: echo stdin to stdout until stdin is closed (v5 `[0xFF,0]`), then exit 0.
//! * `exit N`: exit with code N.
//! * `exitnow N`: exit with code N and drop the connection at once, without reading stdin.
//! * `flood N`: N MiB on stdout (a byte pattern with period 251 per 32 KiB message), exit 0.
//! * `both`: "out\n" on stdout, "err\n" on stderr, exit 3.
//! * `headc N`: echo N bytes of stdin, then exit 0 (needs no stdin EOF; works on v4).
//! * `tty`: record resize events and stdin bytes, echo stdin; `q` ends with exit 42.
//! * `notrunning`: fail with "container is not running".
//! * `dropped`: write "partial" and drop the TCP connection without a status.
//! * `silent`: never read or answer anything (no pongs).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

/// What the server saw and how it behaves.
#[derive(Default)]
pub struct State {
    /// Offer v5 (otherwise only v4, like a pre-1.30 server).
    pub speaks_v5: AtomicBool,
    /// Answer this many requests with 401 first.
    pub unauthorized: AtomicUsize,
    /// Required bearer token (when set).
    pub token: Mutex<Option<String>>,
    /// Request targets in order.
    pub requests: Mutex<Vec<String>>,
    /// Authorization header values seen.
    pub auth_seen: Mutex<Vec<String>>,
    /// Number of Sec-WebSocket-Protocol headers on each upgrade request.
    pub protocol_header_counts: Mutex<Vec<usize>>,
    /// Resize events (Width, Height) in order.
    pub resizes: Mutex<Vec<(u16, u16)>>,
    /// Stdin bytes seen by `tty`.
    pub tty_input: Mutex<Vec<u8>>,
    /// Log requests answered "waiting to start" before serving (per pod "starting").
    pub log_waits: AtomicUsize,
    /// Port-forward connections currently open.
    pub pf_open: AtomicUsize,
    /// Port-forward connections seen in total.
    pub pf_total: AtomicUsize,
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<State>,
}

impl Server {
    pub fn start(speaks_v5: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        state.speaks_v5.store(speaks_v5, Ordering::SeqCst);
        let st = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                std::thread::spawn(move || handle(conn, st));
            }
        });
        Server { addr, state }
    }
}

/// Poll `f` until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

struct Head {
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }
    fn query(&self) -> Vec<(String, String)> {
        let q = self.target.split_once('?').map(|x| x.1).unwrap_or("");
        q.split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), pct_decode(v))
            })
            .collect()
    }
    fn param(&self, k: &str) -> Option<String> {
        self.query().into_iter().find(|(n, _)| n == k).map(|x| x.1)
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let h = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(h, 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf8")
}

fn read_head(s: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        buf.push(b[0]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next()?;
    let target = first.split(' ').nth(1)?.to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some(Head { target, headers })
}

fn respond(s: &mut TcpStream, code: u16, body: &str) {
    let _ = write!(
        s,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

fn status_json(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message": message, "reason": reason, "code": code})
    .to_string()
}

fn handle(mut s: TcpStream, st: Arc<State>) {
    let Some(head) = read_head(&mut s) else {
        return;
    };
    st.requests.lock().expect("lock").push(head.target.clone());
    if let Some(a) = head.header("authorization") {
        st.auth_seen.lock().expect("lock").push(a.to_string());
    }
    if st
        .unauthorized
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        respond(
            &mut s,
            401,
            &status_json(401, "Unauthorized", "Unauthorized"),
        );
        return;
    }
    if let Some(t) = st.token.lock().expect("lock").clone() {
        if head.header("authorization") != Some(&format!("Bearer {t}")) {
            respond(
                &mut s,
                401,
                &status_json(401, "Unauthorized", "Unauthorized"),
            );
            return;
        }
    }
    let path = head.target.split('?').next().unwrap_or("").to_string();
    let parts: Vec<&str> = path.split('/').collect();
    // /api/v1/namespaces/{ns}/pods/{pod}/{sub}
    if parts.len() != 8 || parts[3] != "namespaces" || parts[5] != "pods" {
        respond(
            &mut s,
            404,
            &status_json(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
        return;
    }
    let pod = parts[6].to_string();
    let sub = parts[7];
    if pod == "missing" {
        respond(
            &mut s,
            404,
            &status_json(404, "NotFound", "pods \"missing\" not found"),
        );
        return;
    }
    if pod == "forbidden" {
        respond(
            &mut s,
            403,
            &status_json(
                403,
                "Forbidden",
                "pods \"forbidden\" is forbidden: User \"u\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"dev\"",
            ),
        );
        return;
    }
    if sub == "log" {
        serve_log(s, &head, &pod, &st);
        return;
    }
    // WebSocket upgrade.
    let protos: Vec<String> = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
        .map(|(_, v)| v.clone())
        .collect();
    st.protocol_header_counts
        .lock()
        .expect("lock")
        .push(protos.len());
    let offered: Vec<String> = protos
        .first()
        .map(|p| p.split(',').map(|x| x.trim().to_string()).collect())
        .unwrap_or_default();
    let v5 = st.speaks_v5.load(Ordering::SeqCst) && sub != "portforward";
    let chosen = offered
        .iter()
        .find(|p| (v5 && *p == "v5.channel.k8s.io") || *p == "v4.channel.k8s.io")
        .cloned();
    let Some(chosen) = chosen else {
        // What the Go WebSocket server does on a subprotocol mismatch.
        let _ = write!(s, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
        return;
    };
    let key = head.header("sec-websocket-key").unwrap_or("").to_string();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let _ = write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {chosen}\r\n\r\n"
    );
    let ws = WebSocket::from_raw_socket(s, Role::Server, None);
    if sub == "portforward" {
        serve_portforward(ws, &head, &st);
    } else {
        serve_exec(ws, &head, chosen == "v5.channel.k8s.io", &st);
    }
}

fn send(ws: &mut WebSocket<TcpStream>, id: u8, data: &[u8]) {
    let mut m = vec![id];
    m.extend_from_slice(data);
    let _ = ws.send(Message::Binary(m.into()));
}

fn exit_status(code: i32) -> String {
    if code == 0 {
        r#"{"metadata":{},"status":"Success"}"#.to_string()
    } else {
        format!(
            r#"{{"metadata":{{}},"status":"Failure","message":"command terminated with non-zero exit code: exit status {code}","reason":"NonZeroExitCode","details":{{"causes":[{{"reason":"ExitCode","message":"{code}"}}]}}}}"#
        )
    }
}

fn finish(mut ws: WebSocket<TcpStream>, code: i32) {
    send(&mut ws, 3, exit_status(code).as_bytes());
    let _ = ws.close(None);
    // Let the client answer the close, then drop.
    let _ = ws.get_ref().set_read_timeout(Some(Duration::from_secs(5)));
    while ws.read().is_ok() {}
}

fn serve_exec(mut ws: WebSocket<TcpStream>, head: &Head, v5: bool, st: &State) {
    let argv: Vec<String> = head
        .query()
        .into_iter()
        .filter(|(k, _)| k == "command")
        .map(|x| x.1)
        .collect();
    let cmd = if head.target.contains("/attach?") {
        "tty".to_string()
    } else {
        argv.first().cloned().unwrap_or_default()
    };
    // The "ready" message.
    send(&mut ws, 1, b"");
    match cmd.as_str() {
        "cat" => loop {
            match ws.read() {
                Ok(Message::Binary(m)) => {
                    if m.len() == 2 && m[0] == 0xFF && m[1] == 0 && v5 {
                        return finish(ws, 0);
                    }
                    if m.first() == Some(&0) && m.len() > 1 {
                        send(&mut ws, 1, &m[1..]);
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        },
        "exit" => {
            let code: i32 = argv.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            finish(ws, code)
        }
        "exitnow" => {
            // Status and close, then drop the connection at once without reading stdin.
            let code: i32 = argv.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            send(&mut ws, 3, exit_status(code).as_bytes());
            let _ = ws.close(None);
            let _ = ws.flush();
            let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
        }
        "flood" => {
            // N MiB of a byte pattern on stdout, in 32 KiB messages, then exit 0.
            let mib: usize = argv.get(1).and_then(|c| c.parse().ok()).unwrap_or(1);
            let chunk: Vec<u8> = (0..32 * 1024).map(|i| (i % 251) as u8).collect();
            for _ in 0..mib * 32 {
                send(&mut ws, 1, &chunk);
            }
            finish(ws, 0)
        }
        "both" => {
            send(&mut ws, 1, b"out\n");
            send(&mut ws, 2, b"err\n");
            finish(ws, 3)
        }
        "headc" => {
            let mut left: usize = argv.get(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            while left > 0 {
                match ws.read() {
                    Ok(Message::Binary(m)) if m.first() == Some(&0) => {
                        let d = &m[1..];
                        let n = d.len().min(left);
                        send(&mut ws, 1, &d[..n]);
                        left -= n;
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            finish(ws, 0)
        }
        "tty" => loop {
            match ws.read() {
                Ok(Message::Binary(m)) => match m.first() {
                    Some(4) => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&m[1..]).expect("resize json");
                        let w = v["Width"].as_u64().expect("Width") as u16;
                        let h = v["Height"].as_u64().expect("Height") as u16;
                        st.resizes.lock().expect("lock").push((w, h));
                    }
                    Some(0) => {
                        let d = &m[1..];
                        st.tty_input.lock().expect("lock").extend_from_slice(d);
                        send(&mut ws, 1, d);
                        if d.contains(&b'q') {
                            return finish(ws, 42);
                        }
                    }
                    _ => {}
                },
                Ok(_) => {}
                Err(_) => return,
            }
        },
        "notrunning" => {
            send(
                &mut ws,
                3,
                br#"{"metadata":{},"status":"Failure","message":"error executing command in container: container is not running","reason":"InternalError","code":500}"#,
            );
            let _ = ws.close(None);
            while ws.read().is_ok() {}
        }
        "dropped" => {
            send(&mut ws, 1, b"partial");
            let _ = ws.flush();
            let s = ws.get_ref();
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        "silent" => {
            // Hold the connection without reading (no pongs) until the client gives up.
            std::thread::sleep(Duration::from_secs(20));
        }
        other => {
            send(&mut ws, 2, format!("unknown command {other}\n").as_bytes());
            finish(ws, 127)
        }
    }
}

fn serve_portforward(mut ws: WebSocket<TcpStream>, head: &Head, st: &State) {
    st.pf_total.fetch_add(1, Ordering::SeqCst);
    st.pf_open.fetch_add(1, Ordering::SeqCst);
    let port: u16 = head
        .param("ports")
        .and_then(|p| p.parse().ok())
        .expect("ports");
    let lo_hi = port.to_le_bytes();
    send(&mut ws, 0, &lo_hi);
    send(&mut ws, 1, &lo_hi);
    let target = TcpStream::connect(("127.0.0.1", port));
    let mut target = match target {
        Ok(t) => t,
        Err(e) => {
            send(
                &mut ws,
                1,
                format!("error forwarding port {port} to pod: dial tcp4 127.0.0.1:{port}: {e}")
                    .as_bytes(),
            );
            let _ = ws.close(None);
            let _ = ws.get_ref().set_read_timeout(Some(Duration::from_secs(5)));
            while ws.read().is_ok() {}
            st.pf_open.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    };
    let _ = ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(5)));
    let _ = target.set_read_timeout(Some(Duration::from_millis(5)));
    let mut buf = [0u8; 16384];
    'outer: loop {
        match ws.read() {
            Ok(Message::Binary(m)) if m.first() == Some(&0) => {
                if target.write_all(&m[1..]).is_err() {
                    break;
                }
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
        loop {
            match target.read(&mut buf) {
                Ok(0) => break 'outer,
                Ok(n) => send(&mut ws, 0, &buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(_) => break 'outer,
            }
        }
    }
    let _ = ws.close(None);
    let _ = ws.flush();
    st.pf_open.fetch_sub(1, Ordering::SeqCst);
}

fn serve_log(mut s: TcpStream, head: &Head, pod: &str, st: &State) {
    if pod == "starting"
        && st
            .log_waits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        respond(
            &mut s,
            400,
            &status_json(
                400,
                "BadRequest",
                "container \"main\" in pod \"starting\" is waiting to start: ContainerCreating",
            ),
        );
        return;
    }
    if pod == "neverstarts" {
        respond(
            &mut s,
            400,
            &status_json(
                400,
                "BadRequest",
                "container \"main\" in pod \"neverstarts\" is waiting to start: ContainerCreating",
            ),
        );
        return;
    }
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let ts = head.param("timestamps").as_deref() == Some("true");
    let n = head
        .param("tailLines")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(3);
    for i in 0..n {
        let line = if ts {
            format!("2026-11-30T00:00:0{i}Z line {i}\n")
        } else {
            format!("line {i}\n")
        };
        let _ = write!(s, "{:x}\r\n{line}\r\n", line.len());
        let _ = s.flush();
    }
    let _ = write!(s, "0\r\n\r\n");
}
