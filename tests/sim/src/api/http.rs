//! Minimal HTTP/1.1 on top of any byte stream: request-head parsing with a buffered reader whose
//! leftover bytes survive a hand-off (WebSocket upgrades), bodies (Content-Length or chunked),
//! responses with Content-Length, and a chunked writer for watches and followed logs.
//!
//! May import: std, api::util.

use super::util::parse_query;
use std::io::{self, Read, Write};

/// Largest request body accepted (the real API server's default, 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;

/// A buffered connection: reads through an internal buffer that is drained first by `Read`, so a
/// connection handed to the kubelet after the request head loses no byte.
pub struct BufConn<S> {
    pub inner: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: Read + Write> BufConn<S> {
    pub fn new(inner: S) -> Self {
        BufConn {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut tmp = [0u8; 16 * 1024];
        let n = self.inner.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Read the request head (through the blank line). `Ok(None)` on a clean EOF before any byte.
    pub fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = find(self.avail(), b"\r\n\r\n") {
                let head = self.avail()[..i + 4].to_vec();
                self.pos += i + 4;
                return Ok(Some(head));
            }
            if self.avail().len() > MAX_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request head too large",
                ));
            }
            if self.fill()? == 0 {
                if self.avail().is_empty() {
                    return Ok(None);
                }
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    pub fn read_n(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.avail().len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let v = self.avail()[..n].to_vec();
        self.pos += n;
        Ok(v)
    }

    pub fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = find(self.avail(), b"\r\n") {
                let line = String::from_utf8_lossy(&self.avail()[..i]).into_owned();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Read one request. `Ok(None)` when the peer closed the connection between requests.
    pub fn read_request(&mut self) -> io::Result<Option<Request>> {
        let head = match self.read_head()? {
            Some(h) => h,
            None => return Ok(None),
        };
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let mut parts = first.split(' ');
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        if method.is_empty() || !target.starts_with('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad request line {first:?}"),
            ));
        }
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let (raw_path, raw_query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let mut req = Request {
            method,
            path: super::util::percent_decode(&raw_path, false),
            query: parse_query(&raw_query),
            raw_query,
            headers,
            body: Vec::new(),
            head,
            body_too_large: false,
        };
        // curl and others wait for an interim 100 before sending large bodies.
        if req
            .header("expect")
            .map(|v| v.eq_ignore_ascii_case("100-continue"))
            .unwrap_or(false)
        {
            self.inner.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            self.inner.flush()?;
        }
        let chunked = req
            .header("transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
        if chunked {
            let mut body = Vec::new();
            loop {
                let line = self.read_line()?;
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")
                })?;
                if size == 0 {
                    // trailers until blank line
                    while !self.read_line()?.is_empty() {}
                    break;
                }
                let chunk = self.read_n(size)?;
                if body.len() + chunk.len() > MAX_BODY {
                    req.body_too_large = true;
                } else {
                    body.extend_from_slice(&chunk);
                }
                self.read_line()?;
            }
            req.body = body;
        } else if let Some(len) = req
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            if len > MAX_BODY {
                req.body_too_large = true;
                // Drain in pieces so the connection stays usable.
                let mut left = len;
                while left > 0 {
                    let n = left.min(64 * 1024);
                    self.read_n(n)?;
                    left -= n;
                }
            } else {
                req.body = self.read_n(len)?;
            }
        }
        Ok(Some(req))
    }
}

impl<S: Read> Read for BufConn<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.buf.len() {
            let n = out.len().min(self.buf.len() - self.pos);
            out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(out)
    }
}

impl<S: Write> Write for BufConn<S> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.inner.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parsed HTTP request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// The raw query string (after `?`).
    pub raw_query: String,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The raw head bytes as received.
    pub head: Vec<u8>,
    pub body_too_large: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// Query booleans: present and not `false`/`0` means true.
    pub fn q_bool(&self, name: &str) -> bool {
        match self.q(name) {
            Some(v) => v != "false" && v != "0",
            None => false,
        }
    }
}

/// The standard reason phrase of a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Write a complete response with a Content-Length body.
pub fn write_response(
    w: &mut dyn Write,
    code: u16,
    content_type: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {code} {}\r\n", reason_phrase(code));
    head.push_str(&format!("Content-Type: {content_type}\r\n"));
    head.push_str("Cache-Control: no-cache, private\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut all = head.into_bytes();
    all.extend_from_slice(body);
    w.write_all(&all)?;
    w.flush()
}

/// Write the head of a chunked response; follow with a `ChunkedWriter`.
pub fn write_chunked_head(w: &mut dyn Write, code: u16, content_type: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nCache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n\r\n",
        reason_phrase(code)
    );
    w.write_all(head.as_bytes())?;
    w.flush()
}

/// Writes each `write` as one HTTP chunk and flushes it.
pub struct ChunkedWriter<'a> {
    pub inner: &'a mut dyn Write,
}

impl ChunkedWriter<'_> {
    /// Write the terminating zero-length chunk.
    pub fn finish(&mut self) -> io::Result<()> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()
    }
}

impl Write for ChunkedWriter<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if b.is_empty() {
            return Ok(0);
        }
        let mut chunk = format!("{:x}\r\n", b.len()).into_bytes();
        chunk.extend_from_slice(b);
        chunk.extend_from_slice(b"\r\n");
        self.inner.write_all(&chunk)?;
        self.inner.flush()?;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pipe {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Pipe {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            // Serve at most 7 bytes at a time to exercise buffering.
            let n = b.len().min(7);
            self.input.read(&mut b[..n])
        }
    }
    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parses_pipelined_requests_and_keeps_leftovers() {
        let raw = b"POST /api/v1/namespaces/a%20b/pods?x=1&y=a%3Db HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcPUT /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1\r\n!\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\nLEFTOVER";
        let mut c = BufConn::new(Pipe {
            input: io::Cursor::new(raw.to_vec()),
            output: vec![],
        });
        let r1 = c.read_request().expect("r1").expect("some");
        assert_eq!(r1.method, "POST");
        assert_eq!(r1.path, "/api/v1/namespaces/a b/pods");
        assert_eq!(r1.q("y"), Some("a=b"));
        assert_eq!(r1.body, b"abc");
        let r2 = c.read_request().expect("r2").expect("some");
        assert_eq!(r2.body, b"hi!");
        let r3 = c.read_request().expect("r3").expect("some");
        assert_eq!(r3.path, "/x");
        assert!(r3.head.ends_with(b"\r\n\r\n"));
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).expect("rest");
        assert_eq!(rest, b"LEFTOVER");
    }

    #[test]
    fn expect_continue_gets_an_interim_response() {
        let raw = b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok";
        let mut c = BufConn::new(Pipe {
            input: io::Cursor::new(raw.to_vec()),
            output: vec![],
        });
        let r = c.read_request().expect("r").expect("some");
        assert_eq!(r.body, b"ok");
        assert_eq!(c.inner.output, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn chunked_writer_frames() {
        let mut out = Vec::new();
        {
            let mut w = ChunkedWriter { inner: &mut out };
            w.write_all(b"hello").expect("w");
            w.finish().expect("f");
        }
        assert_eq!(out, b"5\r\nhello\r\n0\r\n\r\n");
    }
}
