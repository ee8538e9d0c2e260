//! The connection layer shared by REST and WebSocket traffic: our ureq `Connector` (CONNECT proxy →
//! TCP → our rustls config, so `tls-server-name`, pinned CAs and client certificates work), the raw
//! [`KubeStream`] dialer for WebSockets (same TLS config, HTTP CONNECT tunnel when a proxy applies),
//! the auth headers for each request, and URL building that keeps the server's path prefix.
//!
//! An exec plugin may hand out a new client certificate; the TLS config and the agent (and with it
//! the keep-alive pool) are rebuilt when that happens.
//!
//! May import: error, secret, kube::{load, auth, tls, proxy}.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    TcpConnector, Transport as UreqTransport, TransportAdapter,
};

use crate::error::{Error, Result};
use crate::kube::auth::{Authenticator, Credentials};
use crate::kube::load::KubeConfig;
use crate::kube::proxy::{self, ProxyUrl};
use crate::kube::tls::{self, ClientCert};
use crate::secret::Secret;

/// Connect timeout for TCP (and the proxy tunnel / TLS handshake on raw streams).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The API server URL, split.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerUrl {
    /// `https` or `http`.
    pub scheme: String,
    /// Host without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `host:port` as written in URLs (IPv6 in brackets).
    pub authority: String,
    /// Path prefix without trailing slash ("" for none), e.g. `/k8s/clusters/c-1`.
    pub prefix: String,
}

impl ServerUrl {
    /// Parses a normalized server URL (see `load::normalize_server`).
    pub fn parse(server: &str) -> Result<ServerUrl> {
        let bad = || Error::msg(format!("server URL {server:?} is not valid"));
        let (scheme, rest) = server.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let default_port = if scheme == "https" { 443 } else { 80 };
        let (host, port) = proxy::split_host_port(authority, default_port).ok_or_else(bad)?;
        if host.is_empty() {
            return Err(bad());
        }
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(ServerUrl {
            scheme,
            host,
            port,
            authority,
            prefix: prefix.to_string(),
        })
    }

    /// `scheme://host:port` + prefix + `path_and_query` (which starts with `/`).
    pub fn url_for(&self, path_and_query: &str) -> String {
        let sep = if path_and_query.starts_with('/') {
            ""
        } else {
            "/"
        };
        format!(
            "{}://{}{}{sep}{path_and_query}",
            self.scheme, self.authority, self.prefix
        )
    }
}

#[derive(Clone)]
struct Built {
    agent: ureq::Agent,
    tls: Option<Arc<ClientConfig>>,
    cert: Option<ClientCert>,
}

/// Everything one request needs: the agent (keep-alive pool) and the headers to add.
#[derive(Clone)]
pub struct Prepared {
    pub agent: ureq::Agent,
    pub headers: Vec<(String, Secret)>,
}

/// The connection layer of a [`crate::kube::client::Client`]. Shared (in an `Arc`) by its clones.
pub struct Transport {
    cfg: KubeConfig,
    server: ServerUrl,
    auth: Authenticator,
    proxy: Option<ProxyUrl>,
    tls_name: ServerName<'static>,
    built: Mutex<Option<Built>>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("server", &self.cfg.server)
            .field("proxy", &self.proxy.as_ref().map(ProxyUrl::display))
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Checks the config (server URL, proxy, TLS name). Nothing is connected, read or run yet.
    pub fn new(cfg: KubeConfig) -> Result<Transport> {
        let server = ServerUrl::parse(&cfg.server)?;
        let proxy = proxy::proxy_for(
            &server.scheme,
            &server.host,
            server.port,
            cfg.proxy_url.as_deref(),
            &cfg.proxy_env,
        )?;
        if let Some(p) = &proxy {
            if p.scheme != "http" {
                return Err(Error::with_hint(
                    format!(
                        "{}:// proxies are not supported (proxy {})",
                        p.scheme,
                        p.display()
                    ),
                    "use an http:// proxy (it still tunnels TLS to the API server with CONNECT)",
                ));
            }
        }
        let tls_name = tls::server_name(&server.host, cfg.tls_server_name.as_deref())?;
        let auth = Authenticator::new(cfg.auth.clone(), cfg.exec_cluster.clone());
        Ok(Transport {
            cfg,
            server,
            auth,
            proxy,
            tls_name,
            built: Mutex::new(None),
        })
    }

    /// The loaded configuration.
    pub fn config(&self) -> &KubeConfig {
        &self.cfg
    }

    /// The server URL, split.
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// The proxy in use, if any.
    pub fn proxy(&self) -> Option<&ProxyUrl> {
        self.proxy.as_ref()
    }

    /// The full URL for an API path, keeping the server's path prefix.
    pub fn url_for(&self, path_and_query: &str) -> String {
        self.server.url_for(path_and_query)
    }

    /// After a 401: forget cached tokens / exec credentials. Returns true when a retry may succeed
    /// (a token file or exec plugin is in use).
    pub fn refresh_after_unauthorized(&self) -> bool {
        self.auth.invalidate();
        self.auth.can_refresh()
    }

    /// `Authorization` (when any) and impersonation headers for a request made outside ureq (the
    /// WebSocket handshake). May run the exec plugin.
    pub fn auth_headers(&self) -> Result<Vec<(String, Secret)>> {
        Ok(self.prepare()?.headers)
    }

    /// The agent and headers for the next request; rebuilds TLS when the client certificate changed.
    pub fn prepare(&self) -> Result<Prepared> {
        let creds = self.auth.credentials()?;
        let built = self.built_for(&creds)?;
        Ok(Prepared {
            agent: built.agent,
            headers: self.headers_from(creds),
        })
    }

    fn headers_from(&self, creds: Credentials) -> Vec<(String, Secret)> {
        let mut h = Vec::new();
        if let Some(a) = creds.authorization {
            h.push(("Authorization".to_string(), a));
        }
        for (k, v) in self.auth.impersonation_headers() {
            h.push((k, Secret::new(v)));
        }
        h
    }

    fn built_for(&self, creds: &Credentials) -> Result<Built> {
        let mut g = self
            .built
            .lock()
            .map_err(|_| Error::msg("transport lock poisoned"))?;
        if let Some(b) = g.as_ref() {
            if b.cert == creds.client_cert {
                return Ok(b.clone());
            }
        }
        let tls = if self.server.scheme == "https" {
            Some(tls::client_config(
                &self.cfg.tls,
                creds.client_cert.as_ref(),
            )?)
        } else {
            None
        };
        let mut cb = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .max_idle_connections_per_host(8)
            .user_agent(format!(
                "kubectl-kodama/{} ({}/{})",
                crate::VERSION,
                std::env::consts::OS,
                std::env::consts::ARCH
            ));
        cb = match &self.proxy {
            Some(p) => cb.proxy(Some(ureq::Proxy::new(p.url.expose()).map_err(|_| {
                Error::msg(format!("proxy {} is not a valid URL", p.display()))
            })?)),
            None => cb.proxy(None),
        };
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(TcpConnector::default())
                .chain(KubeTlsConnector {
                    config: tls.clone(),
                    name: self.tls_name.clone(),
                });
        let agent = ureq::Agent::with_parts(cb.build(), connector, DefaultResolver::default());
        let b = Built {
            agent,
            tls,
            cert: creds.client_cert.clone(),
        };
        *g = Some(b.clone());
        Ok(b)
    }

    /// Opens a raw connection to the API server for a WebSocket: TCP (through an HTTP CONNECT tunnel
    /// when a proxy applies), then TLS with the same config as REST requests (ALPN `http/1.1`).
    pub fn connect_stream(&self) -> Result<KubeStream> {
        let creds = self.auth.credentials()?;
        let built = self.built_for(&creds)?;
        let tcp = match &self.proxy {
            Some(p) => {
                let s = tcp_connect(&p.host, p.port).map_err(|e| Error::Transport {
                    message: format!("cannot connect to proxy {}: {e}", p.display()),
                    hint: Some("check HTTPS_PROXY / proxy-url and NO_PROXY".into()),
                })?;
                connect_tunnel(s, &self.server, p)?
            }
            None => tcp_connect(&self.server.host, self.server.port)
                .map_err(|e| self.io_error(&e.to_string()))?,
        };
        let _ = tcp.set_nodelay(true);
        match built.tls {
            None => Ok(KubeStream::Plain(tcp)),
            Some(cfg) => {
                let conn = ClientConnection::new(cfg, self.tls_name.clone())
                    .map_err(|e| self.io_error(&format!("TLS setup failed: {e}")))?;
                let mut s = StreamOwned::new(conn, tcp);
                s.sock
                    .set_read_timeout(Some(CONNECT_TIMEOUT))
                    .map_err(|e| self.io_error(&e.to_string()))?;
                while s.conn.is_handshaking() {
                    s.conn
                        .complete_io(&mut s.sock)
                        .map_err(|e| self.io_error(&describe_io(&e)))?;
                }
                s.sock
                    .set_read_timeout(None)
                    .map_err(|e| self.io_error(&e.to_string()))?;
                Ok(KubeStream::Tls(Box::new(s)))
            }
        }
    }

    fn io_error(&self, detail: &str) -> Error {
        transport_error(&self.cfg, detail)
    }

    /// Turns a ureq error into our error, with a next step.
    pub fn ureq_error(&self, e: &ureq::Error) -> Error {
        match e {
            ureq::Error::Timeout(t) => Error::Transport {
                message: format!("request to {} timed out ({t})", self.cfg.server),
                hint: Some(
                    "the API server is slow or unreachable; retry, or raise --request-timeout"
                        .into(),
                ),
            },
            ureq::Error::HostNotFound => Error::Transport {
                message: format!("cannot resolve the API server host {}", self.server.host),
                hint: Some(format!(
                    "check the server of cluster {:?} and your DNS / VPN",
                    self.cfg.cluster_name
                )),
            },
            ureq::Error::Io(io) => self.io_error(&describe_io(io)),
            other => self.io_error(&other.to_string()),
        }
    }
}

/// The most useful text of an I/O error: the TLS error inside it when there is one.
pub fn describe_io(e: &io::Error) -> String {
    match e.get_ref() {
        Some(inner) => match inner.downcast_ref::<rustls::Error>() {
            Some(rustls::Error::General(s)) => s.clone(),
            Some(r) => r.to_string(),
            None => inner.to_string(),
        },
        None => e.to_string(),
    }
}

/// The error for a failed connection, with a hint chosen by what failed.
fn transport_error(cfg: &KubeConfig, detail: &str) -> Error {
    let lower = detail.to_ascii_lowercase();
    let tlsish = lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("x.509")
        || lower.contains("unknownissuer")
        || lower.contains("notvalidforname");
    let hint = if tlsish {
        format!(
            "check certificate-authority / tls-server-name of cluster {:?} ({}), and that the server certificate matches the host",
            cfg.cluster_name, cfg.source
        )
    } else {
        format!(
            "check that the cluster is running and reachable at {} (context {:?}, {})",
            cfg.server, cfg.context, cfg.source
        )
    };
    Error::Transport {
        message: format!("cannot talk to the API server at {}: {detail}", cfg.server),
        hint: Some(hint),
    }
}

/// True for errors after which an idempotent request may simply be sent again (stale keep-alive
/// connection, reset, server closing).
pub fn is_retryable(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ),
        // A pooled connection the server already closed can also surface as a parse failure.
        ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

fn tcp_connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let addrs: Vec<_> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends `CONNECT host:port` to an HTTP proxy and checks for a 2xx answer.
fn connect_tunnel(mut s: TcpStream, server: &ServerUrl, p: &ProxyUrl) -> Result<TcpStream> {
    let fail = |m: String| Error::Transport {
        message: format!(
            "proxy {} refused the tunnel to {}: {m}",
            p.display(),
            server.authority
        ),
        hint: Some("check HTTPS_PROXY / proxy-url and NO_PROXY".into()),
    };
    let mut req = format!(
        "CONNECT {a} HTTP/1.1\r\nHost: {a}\r\nUser-Agent: kubectl-kodama/{v}\r\n",
        a = server.authority,
        v = crate::VERSION
    );
    if let Some(auth) = &p.authorization {
        req.push_str(&format!("Proxy-Authorization: {}\r\n", auth.expose()));
    }
    req.push_str("\r\n");
    s.set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|e| fail(e.to_string()))?;
    s.write_all(req.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    // Read the response head byte by byte so nothing after it is consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(fail("response header too large".into()));
        }
        match s.read(&mut b) {
            Ok(0) => return Err(fail("connection closed".into())),
            Ok(_) => head.push(b[0]),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("");
    let code: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if !(200..300).contains(&code) {
        return Err(fail(status_line.to_string()));
    }
    s.set_read_timeout(None).map_err(|e| fail(e.to_string()))?;
    Ok(s)
}

/// A raw connection to the API server for WebSockets.
pub enum KubeStream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl fmt::Debug for KubeStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeStream::Plain(_) => f.write_str("KubeStream::Plain"),
            KubeStream::Tls(_) => f.write_str("KubeStream::Tls"),
        }
    }
}

impl KubeStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            KubeStream::Plain(s) => s,
            KubeStream::Tls(s) => &s.sock,
        }
    }

    /// Sets the socket read timeout (`None` blocks forever). A timed-out read returns
    /// `WouldBlock`/`TimedOut`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(t)
    }

    /// Sets the socket write timeout.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(t)
    }

    /// Shuts the socket down in both directions (unblocks a reader on another handle).
    pub fn shutdown(&self) -> io::Result<()> {
        self.tcp().shutdown(std::net::Shutdown::Both)
    }
}

impl Read for KubeStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            KubeStream::Plain(s) => s.read(buf),
            KubeStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for KubeStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            KubeStream::Plain(s) => s.write(buf),
            KubeStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            KubeStream::Plain(s) => s.flush(),
            KubeStream::Tls(s) => s.flush(),
        }
    }
}

/// The ureq connector step that wraps the chained TCP (or tunnel) transport in our TLS.
struct KubeTlsConnector {
    config: Option<Arc<ClientConfig>>,
    name: ServerName<'static>,
}

impl fmt::Debug for KubeTlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeTlsConnector").finish_non_exhaustive()
    }
}

impl<In: UreqTransport> Connector<In> for KubeTlsConnector {
    type Out = Either<In, KubeTlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> std::result::Result<Option<Self::Out>, ureq::Error> {
        let Some(t) = chained else {
            return Ok(None);
        };
        let Some(config) = &self.config else {
            return Ok(Some(Either::A(t)));
        };
        if !details.needs_tls() || t.is_tls() {
            return Ok(Some(Either::A(t)));
        }
        let mut conn = ClientConnection::new(config.clone(), self.name.clone())
            .map_err(|e| ureq::Error::Io(io::Error::other(e)))?;
        let mut sock = TransportAdapter::new(t.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(KubeTlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// A TLS transport for ureq over our rustls config.
struct KubeTlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for KubeTlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeTlsTransport").finish_non_exhaustive()
    }
}

impl UreqTransport for KubeTlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: NextTimeout,
    ) -> std::result::Result<(), ureq::Error> {
        self.stream.sock.set_timeout(timeout);
        let out = &self.buffers.output()[..amount];
        self.stream.write_all(out)?;
        self.stream.flush()?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> std::result::Result<bool, ureq::Error> {
        self.stream.sock.set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let n = self.stream.read(input)?;
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.sock.get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_url_keeps_prefix_and_brackets() {
        let s = ServerUrl::parse("https://rancher.example/k8s/clusters/c-1").expect("ok");
        assert_eq!(s.port, 443);
        assert_eq!(s.prefix, "/k8s/clusters/c-1");
        assert_eq!(
            s.url_for("/api/v1/namespaces?limit=1"),
            "https://rancher.example:443/k8s/clusters/c-1/api/v1/namespaces?limit=1"
        );
        let s = ServerUrl::parse("https://[fd00::1]:6443").expect("ok");
        assert_eq!(s.host, "fd00::1");
        assert_eq!(s.url_for("/api"), "https://[fd00::1]:6443/api");
        let s = ServerUrl::parse("http://127.0.0.1:8001/").expect("ok");
        assert_eq!(s.url_for("/version"), "http://127.0.0.1:8001/version");
    }
}
