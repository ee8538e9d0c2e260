//! WebSocket streams to the API server (exec, attach, port-forward) and raw streaming GETs (logs).
//!
//! Layers: [`codec`] (the channel protocol, pure), [`http`] (our own HTTP/1.1 upgrade handshake and
//! streaming GET over a [`WsTransport`]), [`pipe`] (in-memory byte pipes that hand stream data to
//! other threads), [`session`] (the one thread that owns a tungstenite socket), [`tls`] (a TLS
//! stream that keeps reading while its writes are blocked).
//!
//! The transport is abstract: a [`Dialer`] opens a fresh connection to the API server (TCP, proxy
//! CONNECT and TLS already done) and supplies the URL and the auth headers. `kube::Client` and
//! `kube::transport::Transport` implement it in production ([`dial`]); tests use [`TcpDialer`]
//! against an in-test server.
//!
//! May import: error, secret, term, tungstenite, rustls, serde_json.

pub mod codec;
pub mod dial;
pub mod http;
pub mod pipe;
pub mod session;
pub mod tls;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// A byte stream to the API server that the WebSocket layer can put timeouts on.
///
/// The session thread reads with a short read timeout (a timed-out read means "nothing yet") and
/// writes with a short write timeout, so that a full send buffer never stops it from reading (which
/// would deadlock a full-duplex stream such as `cat` echoing 100 MB).
pub trait WsTransport: Read + Write + Send {
    /// Bound how long one read may block; `None` blocks forever.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Bound how long one write may block; `None` blocks forever. Transports that cannot bound
    /// writes may return `Ok(())` and ignore it.
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl WsTransport for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

impl<T: WsTransport + ?Sized> WsTransport for Box<T> {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        (**self).set_write_timeout(timeout)
    }
}

/// Opens connections to the API server for streaming requests.
pub trait Dialer: Send + Sync {
    /// A fresh connection to the API server: TCP, proxy CONNECT and TLS (ALPN `http/1.1` or none)
    /// already done. Each stream gets its own connection.
    fn connect(&self) -> Result<Box<dyn WsTransport>>;
    /// The full URL of an API path, e.g. `https://host:6443/prefix/api/v1/...?x=y`, exactly as the
    /// REST client builds it (server path prefix kept).
    fn url_for(&self, path_and_query: &str) -> String;
    /// Headers for the request: `Authorization` and impersonation. Values are secrets.
    fn auth_headers(&self) -> Result<Vec<(String, Secret)>>;
    /// Called once after a 401: drop cached credentials. `Ok(true)` when a retry may succeed.
    fn refresh_after_unauthorized(&self) -> Result<bool>;
}

impl<D: Dialer + ?Sized> Dialer for std::sync::Arc<D> {
    fn connect(&self) -> Result<Box<dyn WsTransport>> {
        (**self).connect()
    }
    fn url_for(&self, path_and_query: &str) -> String {
        (**self).url_for(path_and_query)
    }
    fn auth_headers(&self) -> Result<Vec<(String, Secret)>> {
        (**self).auth_headers()
    }
    fn refresh_after_unauthorized(&self) -> Result<bool> {
        (**self).refresh_after_unauthorized()
    }
}

/// A plain-TCP dialer (no TLS): for tests against in-process servers and for `kubectl proxy`
/// style local endpoints. `token` becomes `Authorization: Bearer`.
#[derive(Debug, Clone)]
pub struct TcpDialer {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// Bearer token, if any.
    pub token: Option<Secret>,
}

impl TcpDialer {
    /// A dialer for `addr` without credentials.
    pub fn new(addr: SocketAddr) -> TcpDialer {
        TcpDialer { addr, token: None }
    }
}

impl Dialer for TcpDialer {
    fn connect(&self) -> Result<Box<dyn WsTransport>> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10)).map_err(|e| {
            Error::Transport {
                message: format!("cannot connect to {}: {e}", self.addr),
                hint: None,
            }
        })?;
        let _ = s.set_nodelay(true);
        Ok(Box::new(s))
    }
    fn url_for(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }
    fn auth_headers(&self) -> Result<Vec<(String, Secret)>> {
        Ok(self
            .token
            .iter()
            .map(|t| {
                (
                    "Authorization".to_string(),
                    Secret::new(format!("Bearer {}", t.expose())),
                )
            })
            .collect())
    }
    fn refresh_after_unauthorized(&self) -> Result<bool> {
        Ok(false)
    }
}

/// Percent-encode a query component or path segment (everything but RFC 3986 unreserved).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Check a namespace or pod name before it goes into a URL path: non-empty, no `/`, no control
/// characters, not `.`/`..`.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('%') {
        return Err(Error::usage(
            format!(
                "invalid {what} name {:?}",
                crate::term::sanitize_for_tty(name)
            ),
            Some("Kubernetes names are lowercase letters, digits, '-' and '.'".into()),
        ));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::usage(
            format!(
                "invalid {what} name {:?}",
                crate::term::sanitize_for_tty(name)
            ),
            None,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_table() {
        let cases = [
            ("sh", "sh"),
            ("-c", "-c"),
            ("echo hi; rm -rf /", "echo%20hi%3B%20rm%20-rf%20%2F"),
            ("a&command=b", "a%26command%3Db"),
            ("ünï", "%C3%BCn%C3%AF"),
            ("$(id)", "%24%28id%29"),
            ("a+b", "a%2Bb"),
        ];
        for (input, want) in cases {
            assert_eq!(percent_encode(input), want, "{input}");
        }
    }

    #[test]
    fn name_checks() {
        assert!(check_name("pod", "kodama-x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "a\nb", "a%2F"] {
            assert!(check_name("pod", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tcp_dialer_never_prints_its_token() {
        let d = TcpDialer {
            addr: "127.0.0.1:1".parse().expect("addr"),
            token: Some(Secret::new("tok-123")),
        };
        assert!(!format!("{d:?}").contains("tok-123"));
        let h = d.auth_headers().expect("headers");
        assert_eq!(h[0].1.expose(), "Bearer tok-123");
        assert!(!format!("{h:?}").contains("tok-123"));
    }
}
