//! The HTTPS listener: rustls server (client certificates optional, verified against the
//! cluster CA), one thread per connection, HTTP/1.1 keep-alive, hand-off of upgraded connections
//! to the kubelet, and restart on the same port with every open connection closed.
//!
//! May import: std, rustls, contract, api::{http, handlers, certs, faults, store, auth}.

use super::auth::Auth;
use super::certs::{pem_certs, pem_key, subject_cn_o, Pki};
use super::faults::{ByteLimit, FaultState, JournalEntry};
use super::handlers::{self, Outcome};
use super::http::BufConn;
use super::store::Store;
use crate::contract::Kubelet;
use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Most journal entries kept (the oldest half is dropped when full).
pub const JOURNAL_LIMIT: usize = 100_000;

/// Behaviour switches of the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub default_storage_class: bool,
    pub provision_delay: Duration,
    pub bookmark_interval: Duration,
    pub node_name: String,
    pub restricted_namespace: String,
}

/// Everything request handlers share.
pub struct Api {
    pub store: Arc<Store>,
    pub auth: Auth,
    pub faults: FaultState,
    pub journal: Mutex<Vec<JournalEntry>>,
    pub kubelet: Arc<dyn Kubelet>,
    pub config: ApiConfig,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    tls: Arc<rustls::ServerConfig>,
}

impl Api {
    pub fn new(
        store: Arc<Store>,
        auth: Auth,
        kubelet: Arc<dyn Kubelet>,
        config: ApiConfig,
        pki: &Pki,
    ) -> io::Result<Arc<Api>> {
        Ok(Arc::new(Api {
            store,
            auth,
            faults: FaultState::default(),
            journal: Mutex::new(Vec::new()),
            kubelet,
            config,
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            tls: tls_config(pki)?,
        }))
    }

    /// Close every open connection (watches, streams, idle keep-alives).
    pub fn close_all_connections(&self) {
        let conns: Vec<TcpStream> = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect();
        for c in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    pub fn record(&self, e: JournalEntry) {
        let mut j = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded for long-running standalone use: drop the oldest half when full.
        if j.len() >= JOURNAL_LIMIT {
            j.drain(..JOURNAL_LIMIT / 2);
        }
        j.push(e);
    }
}

fn tls_config(pki: &Pki) -> io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&pki.ca_pem)? {
        roots
            .add(c)
            .map_err(|e| io::Error::other(format!("CA: {e}")))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| io::Error::other(format!("client verifier: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            pem_certs(&pki.serving.cert_pem)?,
            pem_key(&pki.serving.key_pem)?,
        )
        .map_err(|e| io::Error::other(format!("serving cert: {e}")))?;
    // HTTP/1.1 only: upgrades (exec, attach, port-forward) are impossible over HTTP/2.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A running listener.
pub struct Listener {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Listen on 127.0.0.1:`port` (0 = pick one).
    pub fn start(api: Arc<Api>, port: u16) -> io::Result<Listener> {
        let l = TcpListener::bind(("127.0.0.1", port))?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sim-api-accept".into())
            .spawn(move || {
                // Blocking accept; `stop` wakes it with a connection of its own.
                while !stop2.load(Ordering::SeqCst) {
                    match l.accept() {
                        Ok((tcp, _)) => {
                            if stop2.load(Ordering::SeqCst) {
                                break;
                            }
                            let api = api.clone();
                            let _ = std::thread::Builder::new()
                                .name("sim-api-conn".into())
                                .spawn(move || serve_connection(api, tcp));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(Listener {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Stop accepting (the port is released when this returns).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve_connection(api: Arc<Api>, tcp: TcpStream) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_nodelay(true);
    let id = api.next_conn.fetch_add(1, Ordering::SeqCst);
    let Ok(shut) = tcp.try_clone() else { return };
    let Ok(server) = rustls::ServerConnection::new(api.tls.clone()) else {
        return;
    };
    let Ok(reg) = tcp.try_clone() else { return };
    api.conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, reg);
    let mut conn = BufConn::new(rustls::StreamOwned::new(server, tcp));
    while let Ok(Some(req)) = conn.read_request() {
        let subject = conn
            .inner
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| subject_cn_o(c.as_ref()));
        match handlers::handle(&api, req, &mut conn, subject, &shut) {
            Outcome::KeepAlive => continue,
            Outcome::Close => break,
            Outcome::Stream(sreq, drop_after) => {
                let kubelet = api.kubelet.clone();
                let _ = shut.set_read_timeout(Some(crate::contract::STREAM_READ_TIMEOUT));
                match drop_after {
                    Some(n) => kubelet.stream(
                        sreq,
                        Box::new(ByteLimit {
                            inner: conn,
                            tcp: shut.try_clone().ok(),
                            left: n,
                        }),
                    ),
                    None => kubelet.stream(sreq, Box::new(conn)),
                }
                let _ = shut.shutdown(Shutdown::Both);
                api.conns
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return;
            }
        }
    }
    conn.inner.conn.send_close_notify();
    let _ = conn.inner.conn.complete_io(&mut conn.inner.sock);
    let _ = shut.shutdown(Shutdown::Both);
    api.conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
}
