//! Port-forward over WebSocket with the legacy channel protocol (`v4.channel.k8s.io`,
//! `?ports=P`): a local TCP listener per LOCAL:REMOTE pair on 127.0.0.1 (and ::1 when available)
//! that accepts several connections at a time, each carried by its own WebSocket.
//!
//! Per WebSocket with one port: channel 0 carries data both ways, channel 1 carries error text from
//! the node; the server's first message on each channel is the port as 2 bytes little-endian,
//! which we skip. v4 has no half-close: when the local client stops sending we close that
//! connection's WebSocket. An error on one connection is reported (through the caller's reporter)
//! and closes only that connection; the listeners keep running until [`PortForwarder::stop`].
//!
//! Threads: one accept thread per listener; per connection an owner thread that also copies pod →
//! local, one thread copying local → pod, and the socket thread. Every thread is joined by its owner.
//!
//! May import: error, term, kube::ws.
//!
//! [`port_forward_until_interrupted`] is the CLI entry point (it waits for Ctrl-C itself);
//! [`port_forward`] stops on a caller-owned flag; [`PortForwarder`] is the handle for tests and for
//! code that forwards in the background.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::ws::codec::{Protocol, MAX_PAYLOAD};
use super::ws::http;
use super::ws::pipe::{pipe, Outgoing};
use super::ws::session::{Route, Session, SessionConfig, Spec};
use super::ws::{check_name, percent_encode, Dialer};
use crate::error::{Error, Result};
use crate::term::{self, sanitize_for_tty, SignalPipe};

/// Receives human-readable reports (listening addresses, per-connection errors).
pub type Reporter = Arc<dyn Fn(&str) + Send + Sync>;

/// One `LOCAL:REMOTE` pair. `local == 0` picks a free port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    pub local: u16,
    pub remote: u16,
}

impl PortMapping {
    /// Parse `8080:80`, `8080` (same port both sides) or `:80` (a free local port).
    pub fn parse(spec: &str) -> Result<PortMapping> {
        let bad = |why: &str| {
            Error::usage(
                format!("invalid port mapping {:?}: {why}", sanitize_for_tty(spec)),
                Some("use LOCAL:REMOTE (8080:80), PORT (8080) or :REMOTE (:80)".into()),
            )
        };
        let port = |s: &str, what: &str, zero_ok: bool| -> Result<u16> {
            let p: u16 = s
                .parse()
                .map_err(|_| bad(&format!("{what} port must be a number 1-65535")))?;
            if p == 0 && !zero_ok {
                return Err(bad(&format!("{what} port must be 1-65535")));
            }
            Ok(p)
        };
        match spec.split_once(':') {
            Some(("", r)) => Ok(PortMapping {
                local: 0,
                remote: port(r, "remote", false)?,
            }),
            Some((l, r)) => Ok(PortMapping {
                local: port(l, "local", true)?,
                remote: port(r, "remote", false)?,
            }),
            None => {
                let p = port(spec, "remote", false)?;
                Ok(PortMapping {
                    local: p,
                    remote: p,
                })
            }
        }
    }
}

/// The path of a port-forward to one pod port.
pub fn portforward_path(namespace: &str, pod: &str, port: u16) -> Result<String> {
    check_name("namespace", namespace)?;
    check_name("pod", pod)?;
    Ok(format!(
        "/api/v1/namespaces/{}/pods/{}/portforward?ports={port}",
        percent_encode(namespace),
        percent_encode(pod)
    ))
}

struct Conn {
    local: TcpStream,
    abort: Arc<Mutex<Option<Arc<AtomicBool>>>>,
    thread: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

struct Shared {
    dialer: Arc<dyn Dialer>,
    namespace: String,
    pod: String,
    report: Reporter,
    stop: AtomicBool,
    conns: Mutex<Vec<Conn>>,
    next_id: AtomicU64,
    config: SessionConfig,
}

/// Running listeners; [`PortForwarder::stop`] (or drop) closes them and every connection.
pub struct PortForwarder {
    shared: Arc<Shared>,
    bound: Vec<(PortMapping, Vec<SocketAddr>)>,
    accept_threads: Vec<JoinHandle<()>>,
}

impl PortForwarder {
    /// Bind every mapping and start accepting. Fails (binding nothing) when a local port is taken.
    pub fn start(
        dialer: Arc<dyn Dialer>,
        namespace: &str,
        pod: &str,
        mappings: &[PortMapping],
        report: Reporter,
    ) -> Result<PortForwarder> {
        PortForwarder::start_with(
            dialer,
            namespace,
            pod,
            mappings,
            report,
            SessionConfig::default(),
        )
    }

    /// [`PortForwarder::start`] with explicit session tunables.
    pub fn start_with(
        dialer: Arc<dyn Dialer>,
        namespace: &str,
        pod: &str,
        mappings: &[PortMapping],
        report: Reporter,
        config: SessionConfig,
    ) -> Result<PortForwarder> {
        // Validate the names before binding anything.
        portforward_path(namespace, pod, 1)?;
        if mappings.is_empty() {
            return Err(Error::usage("port-forward needs at least one port", None));
        }
        let mut listeners = Vec::new();
        for m in mappings {
            let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, m.local)).map_err(|e| {
                Error::with_hint(
                    format!("cannot listen on 127.0.0.1:{}: {e}", m.local),
                    "pick another local port (LOCAL:REMOTE) or stop what is using it",
                )
            })?;
            let port = v4
                .local_addr()
                .map_err(|e| Error::io("", e).context("reading the listener address"))?
                .port();
            let mut group = vec![v4];
            // IPv6 loopback when the machine has it; its absence is not an error.
            if let Ok(v6) = TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
                group.push(v6);
            }
            listeners.push((
                PortMapping {
                    local: port,
                    remote: m.remote,
                },
                group,
            ));
        }
        let shared = Arc::new(Shared {
            dialer,
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            report,
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            config,
        });
        let mut bound = Vec::new();
        let mut accept_threads = Vec::new();
        for (mapping, group) in listeners {
            let mut addrs = Vec::new();
            for l in group {
                let addr = l
                    .local_addr()
                    .map_err(|e| Error::io("", e).context("reading the listener address"))?;
                addrs.push(addr);
                let shared = Arc::clone(&shared);
                let t = std::thread::Builder::new()
                    .name(format!("port-forward accept {addr}"))
                    .spawn(move || accept_loop(l, mapping.remote, shared))
                    .map_err(|e| Error::io("", e).context("starting a port-forward listener"))?;
                accept_threads.push(t);
            }
            bound.push((mapping, addrs));
        }
        Ok(PortForwarder {
            shared,
            bound,
            accept_threads,
        })
    }

    /// The mappings with their actual local ports, and the addresses listened on.
    pub fn bound(&self) -> &[(PortMapping, Vec<SocketAddr>)] {
        &self.bound
    }

    /// Stop accepting, close every connection, and join every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake each blocked accept with a connection of our own.
        for (_, addrs) in &self.bound {
            for a in addrs {
                let _ = TcpStream::connect_timeout(a, Duration::from_secs(1));
            }
        }
        for t in self.accept_threads.drain(..) {
            let _ = t.join();
        }
        let conns: Vec<Conn> = lock(&self.shared.conns).drain(..).collect();
        for c in &conns {
            let _ = c.local.shutdown(Shutdown::Both);
            if let Some(a) = lock(&c.abort).as_ref() {
                a.store(true, Ordering::SeqCst);
            }
        }
        for c in conns {
            let _ = c.thread.join();
        }
    }
}

impl Drop for PortForwarder {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Forward until `stop` becomes true (the caller's Ctrl-C handler sets it). Reports the listening
/// addresses first, then per-connection errors.
pub fn port_forward(
    dialer: Arc<dyn Dialer>,
    namespace: &str,
    pod: &str,
    mappings: &[PortMapping],
    stop: &AtomicBool,
    report: Reporter,
) -> Result<()> {
    let fwd = PortForwarder::start(dialer, namespace, pod, mappings, Arc::clone(&report))?;
    for (m, addrs) in fwd.bound() {
        for a in addrs {
            report(&format!("Forwarding from {a} -> {}", m.remote));
        }
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    fwd.stop();
    Ok(())
}

/// Forward until the user presses Ctrl-C (or SIGTERM/SIGHUP arrives); then stop everything and
/// return `Ok`. Reports the listening addresses first, then per-connection errors.
pub fn port_forward_until_interrupted(
    dialer: Arc<dyn Dialer>,
    namespace: &str,
    pod: &str,
    mappings: &[PortMapping],
    report: Reporter,
) -> Result<()> {
    let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP]
        .into_iter()
        .map(SignalPipe::new)
        .collect::<Result<Vec<_>>>()?;
    let fwd = PortForwarder::start(dialer, namespace, pod, mappings, Arc::clone(&report))?;
    for (m, addrs) in fwd.bound() {
        for a in addrs {
            report(&format!("Forwarding from {a} -> {}", m.remote));
        }
    }
    let fds: Vec<_> = signals.iter().map(SignalPipe::fd).collect();
    loop {
        let ready = term::poll_readable(&fds, Duration::from_secs(3600))
            .map_err(|e| Error::io("", e).context("waiting for Ctrl-C"))?;
        if ready.iter().any(|r| *r) || signals.iter().any(SignalPipe::take) {
            break;
        }
    }
    fwd.stop();
    Ok(())
}

fn accept_loop(listener: TcpListener, remote: u16, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        // Reap finished connections.
        {
            let mut conns = lock(&shared.conns);
            let (done, live): (Vec<Conn>, Vec<Conn>) =
                conns.drain(..).partition(|c| c.thread.is_finished());
            *conns = live;
            drop(conns);
            for c in done {
                let _ = c.thread.join();
            }
        }
        let local = match conn {
            Ok(c) => c,
            Err(e) => {
                (shared.report)(&format!("port-forward: accepting a connection failed: {e}"));
                continue;
            }
        };
        let Ok(local_clone) = local.try_clone() else {
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let abort = Arc::new(Mutex::new(None));
        let thread_abort = Arc::clone(&abort);
        let thread_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("port-forward conn {id}"))
            .spawn(move || {
                if let Err(e) = forward_connection(&thread_shared, local, remote, &thread_abort) {
                    (thread_shared.report)(&format!(
                        "error forwarding a connection to port {remote} of pod {}/{}: {}",
                        thread_shared.namespace, thread_shared.pod, e
                    ));
                }
            });
        match spawned {
            Ok(thread) => lock(&shared.conns).push(Conn {
                local: local_clone,
                abort,
                thread,
            }),
            Err(e) => (shared.report)(&format!("port-forward: cannot start a thread: {e}")),
        }
    }
}

fn forward_connection(
    shared: &Shared,
    local: TcpStream,
    remote: u16,
    abort_slot: &Mutex<Option<Arc<AtomicBool>>>,
) -> Result<()> {
    let path = portforward_path(&shared.namespace, &shared.pod, remote)?;
    let what = format!(
        "port-forward to {}/{}:{remote}",
        shared.namespace, shared.pod
    );
    let upgraded = http::upgrade(&*shared.dialer, &path, &[Protocol::V4]).map_err(|e| {
        http::explain_stream_error(e, "pods/portforward", &shared.namespace, &shared.pod, &what)
    })?;
    let (data_w, mut data_r) = pipe(shared.config.pipe_high_water);
    let session = Session::start(
        upgraded,
        Spec {
            routes: vec![Route {
                stream: 0,
                out: data_w,
                skip: 2,
            }],
            status: Some((1, 2)),
        },
        shared.config.clone(),
        &what,
    )?;
    *lock(abort_slot) = Some(session.abort_handle());
    if shared.stop.load(Ordering::SeqCst) {
        session.abort();
    }
    let tx = session.sender();
    let mut from_local = local
        .try_clone()
        .map_err(|e| Error::io("", e).context("cloning the local connection"))?;
    let reader = std::thread::Builder::new()
        .name("port-forward local→pod".into())
        .spawn(move || {
            let mut buf = vec![0u8; MAX_PAYLOAD];
            loop {
                match from_local.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Outgoing::Data(0, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
            // v4 has no half-close: the client is done sending, so this connection ends.
            let _ = tx.send(Outgoing::Close);
        })
        .map_err(|e| Error::io("", e).context("starting a port-forward thread"))?;
    let mut to_local = &local;
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        match data_r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to_local.write_all(&buf[..n]).is_err() {
                    session.abort();
                    break;
                }
            }
        }
    }
    drop(data_r);
    let _ = local.shutdown(Shutdown::Both);
    let end = session.join();
    let _ = reader.join();
    let end = end?;
    let text = String::from_utf8_lossy(&end.status);
    let text = text.trim();
    if !text.is_empty() {
        return Err(Error::msg(sanitize_for_tty(text)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_table() {
        let ok = [
            ("8080:80", (8080, 80)),
            ("8080", (8080, 8080)),
            (":80", (0, 80)),
            ("0:80", (0, 80)),
        ];
        for (s, (l, r)) in ok {
            assert_eq!(
                PortMapping::parse(s).expect(s),
                PortMapping {
                    local: l,
                    remote: r
                }
            );
        }
        for bad in ["", "x", "80:", "80:0", "70000:80", "a:b", "1:2:3", "-1:80"] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path() {
        assert_eq!(
            portforward_path("dev", "web", 8080).expect("path"),
            "/api/v1/namespaces/dev/pods/web/portforward?ports=8080"
        );
    }
}
