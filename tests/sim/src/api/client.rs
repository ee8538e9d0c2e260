//! A tiny blocking HTTPS client for tests of the simulator itself (and anyone who wants raw
//! access): one request per connection or keep-alive, chunked bodies, and watch streams.
//!
//! May import: std, rustls, serde_json, api::{certs, http, SimCluster}.

use super::certs::{pem_certs, pem_key};
use super::http::BufConn;
use super::{SimCluster, CERT_USER};
use serde_json::Value as Json;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A client for one simulated user.
#[derive(Clone)]
pub struct SimClient {
    config: Arc<rustls::ClientConfig>,
    port: u16,
    token: Option<String>,
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap_or(Json::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn client_config(
    ca_pem: &str,
    cert: Option<(&str, &str)>,
) -> io::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(ca_pem)? {
        roots
            .add(c)
            .map_err(|e| io::Error::other(format!("CA: {e}")))?;
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(e.to_string()))?
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some((c, k)) => b
            .with_client_auth_cert(pem_certs(c)?, pem_key(k)?)
            .map_err(|e| io::Error::other(e.to_string()))?,
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

impl SimClient {
    /// A client authenticating as `user` (`ADMIN_USER`, `RESTRICTED_USER` with their current
    /// token; `CERT_USER` with its certificate; anything else: anonymous).
    pub fn new(cluster: &SimCluster, user: &str) -> io::Result<SimClient> {
        if user == CERT_USER {
            let config = client_config(cluster.ca_pem(), Some(cluster.cert_user_pem()))?;
            return Ok(SimClient {
                config,
                port: cluster.port(),
                token: None,
            });
        }
        let config = client_config(cluster.ca_pem(), None)?;
        Ok(SimClient {
            config,
            port: cluster.port(),
            token: cluster.token(user),
        })
    }

    /// A client from a kubeconfig written by the simulator (its current context's user: token or
    /// client certificate). For the standalone `kodama-sim` process.
    pub fn from_kubeconfig(path: &std::path::Path) -> io::Result<SimClient> {
        let text = std::fs::read_to_string(path)?;
        let cfg: Json = yaml_serde::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let b64 = |v: &Json| -> io::Result<String> {
            use base64::Engine;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            Ok(String::from_utf8_lossy(&raw).into_owned())
        };
        let cluster = &cfg["clusters"][0]["cluster"];
        let port = cluster["server"]
            .as_str()
            .and_then(|s| s.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "kubeconfig server has no port")
            })?;
        let ca = b64(&cluster["certificate-authority-data"])?;
        let user = &cfg["users"][0]["user"];
        if user["client-certificate-data"].is_string() {
            let (c, k) = (
                b64(&user["client-certificate-data"])?,
                b64(&user["client-key-data"])?,
            );
            return Ok(SimClient {
                config: client_config(&ca, Some((&c, &k)))?,
                port,
                token: None,
            });
        }
        Ok(SimClient {
            config: client_config(&ca, None)?,
            port,
            token: user["token"].as_str().map(str::to_string),
        })
    }

    /// A client with an explicit bearer token (or none).
    pub fn with_token(cluster: &SimCluster, token: Option<&str>) -> io::Result<SimClient> {
        Ok(SimClient {
            config: client_config(cluster.ca_pem(), None)?,
            port: cluster.port(),
            token: token.map(str::to_string),
        })
    }

    /// Open a keep-alive connection.
    pub fn connect(&self) -> io::Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")
            .map_err(|e| io::Error::other(e.to_string()))?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Conn {
            io: BufConn::new(rustls::StreamOwned::new(conn, tcp)),
            token: self.token.clone(),
        })
    }

    /// One request on a fresh connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> io::Result<Response> {
        let mut c = self.connect()?;
        c.send(method, path, content_type, &[], body)?;
        c.read_response()
    }

    pub fn get(&self, path: &str) -> io::Result<Response> {
        self.request("GET", path, None, b"")
    }
    pub fn post(&self, path: &str, body: &Json) -> io::Result<Response> {
        self.request(
            "POST",
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    }
    pub fn put(&self, path: &str, body: &Json) -> io::Result<Response> {
        self.request(
            "PUT",
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
    }
    pub fn patch(&self, path: &str, content_type: &str, body: &[u8]) -> io::Result<Response> {
        self.request("PATCH", path, Some(content_type), body)
    }
    pub fn delete(&self, path: &str) -> io::Result<Response> {
        self.request("DELETE", path, None, b"")
    }

    /// Start a watch (`path` should carry `watch=1`); returns the stream after the head.
    pub fn watch(&self, path: &str) -> io::Result<Watch> {
        let mut c = self.connect()?;
        c.send("GET", path, None, &[], b"")?;
        let (code, headers) = c.read_head()?;
        Ok(Watch {
            conn: c,
            code,
            headers,
            pending: Vec::new(),
            done: false,
        })
    }
}

/// One keep-alive connection.
pub struct Conn {
    pub io: BufConn<Tls>,
    token: Option<String>,
}

impl Conn {
    /// Send a request (with `Authorization` when the client has a token).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<()> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kodama-sim-test/0\r\n"
        );
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            head.push_str("Accept: application/json\r\n");
        }
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        self.io.write_all(&all)?;
        self.io.flush()
    }

    /// Read a status line and headers.
    pub fn read_head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let head = self
            .io
            .read_head()?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap_or_default();
        let code = status
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status:?}"),
                )
            })?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok((code, headers))
    }

    /// Read a complete response (Content-Length, chunked, or until EOF).
    pub fn read_response(&mut self) -> io::Result<Response> {
        let (code, headers) = self.read_head()?;
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let body = if get("transfer-encoding")
            .map(|v| v.contains("chunked"))
            .unwrap_or(false)
        {
            let mut body = Vec::new();
            while let Some(chunk) = read_chunk(&mut self.io)? {
                body.extend(chunk);
            }
            body
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            self.io.read_n(len)?
        } else {
            let mut b = Vec::new();
            let _ = io::Read::read_to_end(&mut self.io, &mut b);
            b
        };
        Ok(Response {
            code,
            headers,
            body,
        })
    }
}

/// Read one chunk; `None` at the terminating chunk.
fn read_chunk(io: &mut BufConn<Tls>) -> io::Result<Option<Vec<u8>>> {
    let line = io.read_line()?;
    let size = usize::from_str_radix(line.trim(), 16).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad chunk size {line:?}"),
        )
    })?;
    if size == 0 {
        let _ = io.read_line();
        return Ok(None);
    }
    let data = io.read_n(size)?;
    io.read_line()?;
    Ok(Some(data))
}

/// A watch stream: newline-delimited JSON events over a chunked body.
pub struct Watch {
    conn: Conn,
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pending: Vec<u8>,
    done: bool,
}

impl Watch {
    /// The next event, waiting at most `timeout`. `Ok(None)` when the server ended the stream.
    pub fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Json>> {
        self.conn.io.inner.sock.set_read_timeout(Some(timeout))?;
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if self.done {
                return Ok(None);
            }
            match read_chunk(&mut self.conn.io)? {
                Some(c) => self.pending.extend(c),
                None => self.done = true,
            }
        }
    }

    /// Events until one satisfies `pred` (returned) or `timeout` passes (error).
    pub fn until(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Json) -> bool,
    ) -> io::Result<Json> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no matching watch event",
                ));
            }
            match self.next_event(left)? {
                Some(e) if pred(&e) => return Ok(e),
                Some(_) => continue,
                None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "watch ended")),
            }
        }
    }
}
