//! A token-checking git HTTP server for tests: `git http-backend` (smart HTTP) behind a tiny HTTP/1.1
//! server on 127.0.0.1 that answers 401 unless the request carries Basic auth whose password is the
//! token. It records every request line, so tests can check that the token never appeared in a URL.
//!
//! May import: std, base64.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

pub struct GitHttp {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// Serve the bare repositories under `root` on a free port, demanding `token`.
pub fn start_git_http(root: PathBuf, token: &'static str) -> GitHttp {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let reqs = requests.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let root = root.clone();
            let reqs = reqs.clone();
            std::thread::spawn(move || {
                let _ = serve(s, &root, token, &reqs);
            });
        }
    });
    GitHttp { port, requests }
}

fn serve(s: TcpStream, root: &Path, token: &str, reqs: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut w = s;
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    reqs.lock()
        .expect("lock")
        .push(format!("{method} {target}"));
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let authorized = get("authorization")
        .and_then(|a| a.strip_prefix("Basic ").map(str::to_string))
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .map(|d| {
            String::from_utf8_lossy(&d)
                .split_once(':')
                .map(|(_, p)| p == token)
                == Some(true)
        })
        .unwrap_or(false);
    if get("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    if let Some(n) = get("content-length").and_then(|n| n.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut sz = String::new();
            r.read_line(&mut sz)?;
            let n =
                usize::from_str_radix(sz.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    if !authorized {
        w.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"kodama-test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        // The repositories may belong to another user (the pod user, for pod-side tests).
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "safe.directory")
        .env("GIT_CONFIG_VALUE_0", "*")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(ct) = get("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(ce) = get("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(p) = get("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut out)?;
    let _ = feeder.join();
    child.wait()?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))
        .unwrap_or((out.len(), 0));
    let head = String::from_utf8_lossy(&out[..split.0]).to_string();
    let mut status = "200 OK".to_string();
    let mut resp = String::new();
    for h in head.lines() {
        if let Some(v) = h.strip_prefix("Status:") {
            status = v.trim().to_string();
        } else if !h.trim().is_empty() {
            resp.push_str(h.trim_end());
            resp.push_str("\r\n");
        }
    }
    w.write_all(format!("HTTP/1.1 {status}\r\n{resp}Connection: close\r\n\r\n").as_bytes())?;
    w.write_all(&out[(split.0 + split.1).min(out.len())..])?;
    w.flush()
}
