//! Our own minimal HTTP/1.1 client for streaming requests over a [`Dialer`] connection: the
//! WebSocket upgrade handshake (we validate the 101, the accept key and the chosen subprotocol
//! ourselves) and plain streaming GETs (pod logs), with bodies framed by Content-Length, chunked
//! encoding or connection close.
//!
//! Non-2xx answers are decoded from `metav1.Status` into [`ApiError`]; a 403 with an empty body on
//! an upgrade means the server refused our subprotocols. A 401 is retried once after the dialer
//! refreshed its credentials; a 429, 502, 503 or 504 (refused before anything started) is retried
//! with backoff. Header values are secrets and never appear in errors.
//!
//! May import: error, secret, term, kube::status, kube::ws (codec, Dialer), tungstenite.

use std::io::{self, Read};
use std::time::Duration;

use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

use super::codec::{parse_status, Protocol};
use super::{Dialer, WsTransport};
use crate::error::{ApiError, Error, Result};
use crate::secret::Secret;
use crate::term::sanitize_for_tty;

/// How long we wait for the response head of a streaming request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response head we accept.
const MAX_HEAD: usize = 64 * 1024;
/// Largest error body we read (client-go shows at most 2 KiB of non-Status text).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The status line and headers of a response.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// HTTP status code.
    pub status: u16,
    /// Header (name, value) pairs in order; names as received.
    pub headers: Vec<(String, String)>,
}

impl ResponseHead {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An upgraded WebSocket and the subprotocol the server chose.
pub struct Upgraded {
    /// The socket, ready for frames.
    pub socket: WebSocket<Box<dyn WsTransport>>,
    /// The negotiated subprotocol.
    pub protocol: Protocol,
}

/// Split `scheme://authority/path?query` into (authority for `Host`, request target).
pub fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| Error::msg(format!("not an absolute URL: {url}")))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // Credentials in a URL are never sent as a Host header.
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if authority.is_empty() {
        return Err(Error::msg(format!("URL has no host: {url}")));
    }
    Ok((authority.to_string(), target.to_string()))
}

fn check_header(name: &str, value: &str) -> Result<()> {
    let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    if name.is_empty() || bad(name) || name.contains(':') || bad(value) {
        // Never print the value: it may be a token.
        return Err(Error::msg(format!(
            "refusing to send request header {:?}: its name or value contains a line break",
            sanitize_for_tty(name)
        )));
    }
    Ok(())
}

fn write_request(
    stream: &mut dyn WsTransport,
    target: &str,
    host: &str,
    extra: &[(&str, String)],
    auth: &[(String, Secret)],
) -> Result<()> {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in extra {
        check_header(n, v)?;
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    for (n, v) in auth {
        check_header(n, v.expose())?;
        req.push_str(n);
        req.push_str(": ");
        req.push_str(v.expose());
        req.push_str("\r\n");
    }
    req.push_str(&format!(
        "User-Agent: kubectl-kodama/{}\r\n\r\n",
        crate::VERSION
    ));
    stream
        .write_all(req.as_bytes())
        .and_then(|_| stream.flush())
        .map_err(|e| transport_io("sending the request", e))
}

fn transport_io(what: &str, e: io::Error) -> Error {
    let msg = if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        format!("{what}: the API server did not answer within {HEAD_TIMEOUT:?}")
    } else {
        format!("{what}: {e}")
    };
    Error::Transport {
        message: msg,
        hint: None,
    }
}

/// Read the response head; returns it with the bytes read past it.
pub fn read_head(stream: &mut dyn Read) -> Result<(ResponseHead, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(Error::Transport {
                message: "the API server sent a response head larger than 64 KiB".into(),
                hint: None,
            });
        }
        let n = stream
            .read(&mut chunk)
            .map_err(|e| transport_io("reading the response", e))?;
        if n == 0 {
            return Err(Error::Transport {
                message: "the API server closed the connection before answering".into(),
                hint: Some("check the server URL and any proxy in between".into()),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let leftover = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status = parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| Error::Transport {
            message: format!(
                "the API server answered with something that is not HTTP/1.1: {:?}",
                sanitize_for_tty(&status_line.chars().take(80).collect::<String>())
            ),
            hint: Some("is the server URL (or proxy) pointing at a Kubernetes API server?".into()),
        })?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((ResponseHead { status, headers }, leftover))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response body framed by Content-Length, chunked encoding, or connection close.
pub struct BodyReader {
    stream: Box<dyn WsTransport>,
    buffered: Vec<u8>,
    pos: usize,
    framing: Framing,
}

enum Framing {
    Length(u64),
    /// Remaining bytes of the current chunk; `None` before a chunk-size line.
    Chunked(Option<u64>),
    Close,
    Done,
}

impl BodyReader {
    /// A body reader for a response with `head`, given the bytes already read past the head.
    pub fn new(head: &ResponseHead, stream: Box<dyn WsTransport>, leftover: Vec<u8>) -> BodyReader {
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let framing = if chunked {
            Framing::Chunked(None)
        } else if let Some(len) = head
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            if len == 0 {
                Framing::Done
            } else {
                Framing::Length(len)
            }
        } else {
            Framing::Close
        };
        BodyReader {
            stream,
            buffered: leftover,
            pos: 0,
            framing,
        }
    }

    /// Change the read timeout of the underlying connection (`None` for long follows).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    fn raw_read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.buffered.len() {
            let n = out.len().min(self.buffered.len() - self.pos);
            out[..n].copy_from_slice(&self.buffered[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.buffered.len() {
                self.buffered.clear();
                self.pos = 0;
            }
            return Ok(n);
        }
        self.stream.read(out)
    }

    fn read_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            if self.raw_read(&mut b)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the response body ended in the middle of chunked encoding",
                ));
            }
            if b[0] == b'\n' {
                break;
            }
            if line.len() > 4096 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad chunked encoding (line too long)",
                ));
            }
            line.push(b[0]);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::Close => return self.raw_read(out),
                Framing::Length(left) => {
                    let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.raw_read(&mut out[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the response body ended before its Content-Length",
                        ));
                    }
                    let left = left - n as u64;
                    self.framing = if left == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(left)
                    };
                    return Ok(n);
                }
                Framing::Chunked(None) => {
                    let line = self.read_line()?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            "bad chunk size in response body",
                        )
                    })?;
                    if size == 0 {
                        // Trailers up to the empty line.
                        while !self.read_line()?.is_empty() {}
                        self.framing = Framing::Done;
                    } else {
                        self.framing = Framing::Chunked(Some(size));
                    }
                }
                Framing::Chunked(Some(left)) => {
                    let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.raw_read(&mut out[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the response body ended in the middle of a chunk",
                        ));
                    }
                    let left = left - n as u64;
                    if left == 0 {
                        // The CRLF after the chunk data.
                        self.read_line()?;
                        self.framing = Framing::Chunked(None);
                    } else {
                        self.framing = Framing::Chunked(Some(left));
                    }
                    return Ok(n);
                }
            }
        }
    }
}

/// Read at most `MAX_ERROR_BODY` bytes of an error body (errors reading it are ignored: the status
/// code alone still makes an error).
fn read_error_body(mut body: BodyReader) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    while out.len() < MAX_ERROR_BODY {
        match body.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    out
}

/// Turn a non-success response into our error. `upgrade` marks WebSocket handshakes (where an
/// empty-body 403 means the subprotocols were refused).
pub fn error_from_response(status: u16, body: &[u8], upgrade: bool, offered: &str) -> Error {
    if upgrade && status == 403 && body.iter().all(|b| b.is_ascii_whitespace()) {
        return Error::Transport {
            message: format!(
                "the API server refused the WebSocket upgrade with an empty 403: it speaks none of the subprotocols we offered ({offered})"
            ),
            hint: Some(
                "a proxy or an old server that only offers SPDY is in between; kodama needs WebSocket streaming (Kubernetes 1.30+ speaks it natively)"
                    .into(),
            ),
        };
    }
    let api = parse_status(body, status).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text: String = text.trim().chars().take(2048).collect();
        ApiError {
            code: status,
            message: sanitize_for_tty(&text),
            ..Default::default()
        }
    });
    if upgrade {
        super::codec::annotate_stream_error(Error::from(api))
    } else {
        Error::from(api)
    }
}

/// Wrap an error of a streaming request (`resource` such as `pods/exec`) for the user: API errors
/// get the REST client's explanation (a 403 names the permission that is missing), other errors a
/// sentence of context.
pub fn explain_stream_error(
    e: Error,
    resource: &str,
    namespace: &str,
    pod: &str,
    what: &str,
) -> Error {
    match e {
        Error::Api(api) => crate::kube::status::explain(
            *api,
            &crate::kube::status::Op {
                verb: "create".into(),
                resource: resource.into(),
                namespace: Some(namespace.into()),
                name: Some(pod.into()),
            },
        ),
        other => other.context(format!("starting {what}")),
    }
}

/// Statuses after which a streaming request is sent again (with backoff, honouring Retry-After):
/// the API server or a proxy refused it before anything started (throttling, overload, an
/// unavailable backend). Not 500: before an upgrade that is the kubelet's definite answer (for
/// example "container not found").
const RETRY_STATUSES: [u16; 4] = [429, 502, 503, 504];
/// Retries after a `RETRY_STATUSES` answer.
const MAX_RETRIES: u32 = 4;
/// First wait without Retry-After; doubles each retry.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
/// Upper bound for one wait (also caps Retry-After).
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Send a GET for `path_and_query` with `extra` headers and read the response head, retrying once
/// after a 401 when the dialer could refresh its credentials, and with backoff after a 429, 502,
/// 503 or 504 (nothing has started on the server then, so a retry is safe even for exec). Returns the head, the connection and
/// the bytes read past the head; non-success statuses other than 101 become errors.
fn request(
    dialer: &dyn Dialer,
    path_and_query: &str,
    extra: &[(&str, String)],
    upgrade_offer: Option<&str>,
) -> Result<(ResponseHead, Box<dyn WsTransport>, Vec<u8>)> {
    let url = dialer.url_for(path_and_query);
    let (host, target) = split_url(&url)?;
    let mut auth_retried = false;
    let mut retries = 0;
    loop {
        let auth = dialer.auth_headers()?;
        let mut stream = dialer.connect()?;
        stream
            .set_read_timeout(Some(HEAD_TIMEOUT))
            .map_err(|e| transport_io("setting a read timeout", e))?;
        write_request(&mut *stream, &target, &host, extra, &auth)?;
        let (head, leftover) = read_head(&mut stream)?;
        let ok = if upgrade_offer.is_some() {
            head.status == 101
        } else {
            (200..300).contains(&head.status)
        };
        if ok {
            return Ok((head, stream, leftover));
        }
        let status = head.status;
        let body = read_error_body(BodyReader::new(&head, stream, leftover));
        if status == 401 && !auth_retried && dialer.refresh_after_unauthorized()? {
            auth_retried = true;
            continue;
        }
        if RETRY_STATUSES.contains(&status) && retries < MAX_RETRIES {
            let wait = head
                .header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .or_else(|| parse_status(&body, status).and_then(|a| a.retry_after_seconds))
                .map(Duration::from_secs)
                .unwrap_or(BASE_BACKOFF * 2u32.pow(retries))
                .min(MAX_BACKOFF);
            std::thread::sleep(wait);
            retries += 1;
            continue;
        }
        return Err(error_from_response(
            status,
            &body,
            upgrade_offer.is_some(),
            upgrade_offer.unwrap_or(""),
        ));
    }
}

/// Open a WebSocket to `path_and_query`, offering `protocols` (in order) in one
/// `Sec-WebSocket-Protocol` header.
pub fn upgrade(
    dialer: &dyn Dialer,
    path_and_query: &str,
    protocols: &[Protocol],
) -> Result<Upgraded> {
    let key = tungstenite::handshake::client::generate_key();
    let offer = Protocol::offer(protocols);
    let extra = [
        ("Connection", "Upgrade".to_string()),
        ("Upgrade", "websocket".to_string()),
        ("Sec-WebSocket-Version", "13".to_string()),
        ("Sec-WebSocket-Key", key.clone()),
        ("Sec-WebSocket-Protocol", offer.clone()),
    ];
    let (head, stream, leftover) = request(dialer, path_and_query, &extra, Some(&offer))?;
    let upgrade_ok = head
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection_ok = head
        .header("connection")
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    let accept_ok = head.header("sec-websocket-accept")
        == Some(tungstenite::handshake::derive_accept_key(key.as_bytes()).as_str());
    if !(upgrade_ok && connection_ok && accept_ok) {
        return Err(Error::Transport {
            message: "the API server answered 101 but the WebSocket handshake headers are wrong (Upgrade, Connection or Sec-WebSocket-Accept)".into(),
            hint: Some("a proxy in between may be rewriting the upgrade; try without it".into()),
        });
    }
    let protocol = Protocol::select(protocols, head.header("sec-websocket-protocol"))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(16 << 20));
    let socket = WebSocket::from_partially_read(stream, leftover, Role::Client, Some(config));
    Ok(Upgraded { socket, protocol })
}

/// A streaming GET (e.g. pod logs): returns the body once the server answered 2xx. The read
/// timeout is removed, since followed streams can be silent for a long time.
pub fn get_stream(dialer: &dyn Dialer, path_and_query: &str) -> Result<BodyReader> {
    let (head, stream, leftover) = request(
        dialer,
        path_and_query,
        &[("Accept", "*/*".to_string())],
        None,
    )?;
    let body = BodyReader::new(&head, stream, leftover);
    body.set_read_timeout(None)
        .map_err(|e| transport_io("clearing the read timeout", e))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn url_splitting() {
        let cases = [
            ("https://h:6443/api/v1/x?y=1", "h:6443", "/api/v1/x?y=1"),
            ("https://h/prefix/api", "h", "/prefix/api"),
            ("http://[::1]:8080", "[::1]:8080", "/"),
            ("https://user:pw@h:1/p", "h:1", "/p"),
        ];
        for (url, host, target) in cases {
            let (h, t) = split_url(url).expect(url);
            assert_eq!((h.as_str(), t.as_str()), (host, target), "{url}");
        }
        assert!(split_url("h:1/p").is_err());
    }

    #[test]
    fn header_injection_is_refused_without_printing_the_value() {
        let e = check_header("Authorization", "Bearer a\r\nX-Evil: 1").expect_err("crlf");
        assert!(!e.to_string().contains("X-Evil"));
        assert!(check_header("Authorization", "Bearer ok").is_ok());
    }

    #[test]
    fn head_parsing() {
        let raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n\x82\x01\x01";
        let (head, left) = read_head(&mut &raw[..]).expect("head");
        assert_eq!(head.status, 101);
        assert_eq!(
            head.header("sec-websocket-protocol"),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(left, b"\x82\x01\x01");
        assert!(read_head(&mut &b"SSH-2.0-x\r\n\r\n"[..]).is_err());
        assert!(read_head(&mut &b"HTTP/1.1 200 OK\r\n"[..]).is_err());
    }

    struct Mem(io::Cursor<Vec<u8>>);
    impl Read for Mem {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.read(b)
        }
    }
    impl Write for Mem {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    impl WsTransport for Mem {
        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
        fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    fn body(headers: &str, leftover: &[u8], rest: &[u8]) -> io::Result<Vec<u8>> {
        let raw = format!("HTTP/1.1 200 OK\r\n{headers}\r\n");
        let (head, _) = read_head(&mut raw.as_bytes()).expect("head");
        let mut r = BodyReader::new(
            &head,
            Box::new(Mem(io::Cursor::new(rest.to_vec()))),
            leftover.to_vec(),
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn body_framing_table() {
        assert_eq!(
            body("Content-Length: 5\r\n", b"he", b"lloEXTRA").expect("len"),
            b"hello"
        );
        assert_eq!(
            body(
                "Transfer-Encoding: chunked\r\n",
                b"5\r\nhel",
                b"lo\r\n3;x=y\r\n wo\r\n0\r\nT: 1\r\n\r\nJUNK"
            )
            .expect("chunked"),
            b"hello wo"
        );
        assert_eq!(
            body("", b"all ", b"until close").expect("close"),
            b"all until close"
        );
        assert_eq!(
            body("Content-Length: 0\r\n", b"", b"x").expect("empty"),
            b""
        );
        assert!(body("Content-Length: 10\r\n", b"", b"short").is_err());
        assert!(body("Transfer-Encoding: chunked\r\n", b"", b"zz\r\n").is_err());
        assert!(body("Transfer-Encoding: chunked\r\n", b"", b"5\r\nab").is_err());
    }

    #[test]
    fn error_responses() {
        let e = error_from_response(403, b"", true, "v5.channel.k8s.io, v4.channel.k8s.io");
        assert!(e.to_string().contains("none of the subprotocols"), "{e}");
        let e = error_from_response(
            404,
            br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"p\" not found","reason":"NotFound","code":404}"#,
            true,
            "",
        );
        assert!(e.is_not_found(), "{e}");
        let e = error_from_response(502, b"<html>bad gateway</html>", false, "");
        assert_eq!(e.api().expect("api").code, 502);
        assert!(e.to_string().contains("bad gateway"));
        let e = error_from_response(
            400,
            br#"{"kind":"Status","status":"Failure","message":"container \"app\" in pod \"p\" is waiting to start: ContainerCreating","reason":"BadRequest","code":400}"#,
            false,
            "",
        );
        assert!(e.to_string().contains("waiting to start"));
    }
}
