//! Exec, logs and port-forward against an in-test API server (tests/kube_stream_support).

mod kube_stream_support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kodama::kube::exec::{ExecProcess, ExecRequest, PodRemote, StdinEof};
use kodama::kube::ws::codec::Protocol;
use kodama::kube::ws::session::SessionConfig;
use kodama::kube::ws::{Dialer, TcpDialer, WsTransport};
use kodama::remote::{Remote, RemoteProcess};
use kodama::secret::Secret;
use kube_stream_support::Server;

fn req(cmd: &[&str]) -> ExecRequest {
    ExecRequest::new(
        "dev",
        "web",
        &cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    )
}

fn dialer(s: &Server) -> TcpDialer {
    TcpDialer::new(s.addr)
}

/// The production `Remote` over exec.
fn pod_remote(d: TcpDialer) -> PodRemote<TcpDialer> {
    PodRemote::new(d, "dev", "web", None)
}

#[test]
fn v5_cat_echoes_stdin_and_exits_zero_with_one_protocol_header() {
    let s = Server::start(true);
    let r = PodRemote::new(dialer(&s), "dev", "web", Some("main"));
    let out = r.run(&["cat".into()], b"hello\nworld\n").expect("run cat");
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, b"hello\nworld\n");
    assert_eq!(
        *s.state.protocol_header_counts.lock().expect("lock"),
        vec![1]
    );
    let target = s.state.requests.lock().expect("lock")[0].clone();
    assert_eq!(
        target,
        "/api/v1/namespaces/dev/pods/web/exec?command=cat&stdin=true&stdout=true&stderr=true&tty=false&container=main"
    );
}

#[test]
fn exit_codes_0_1_42_and_stderr() {
    let s = Server::start(true);
    let r = pod_remote(dialer(&s));
    for code in [0, 1, 42] {
        let out = r
            .run(&["exit".into(), code.to_string()], b"")
            .expect("run exit");
        assert_eq!(out.code, code);
    }
    // The command exits without reading its (large) stdin: the exit code still arrives, and the
    // failed stdin writes are not an error.
    let big = vec![7u8; 8 << 20];
    for _ in 0..3 {
        let out = r
            .run(&["exitnow".into(), "42".into()], &big)
            .expect("run exit with unread stdin");
        assert_eq!(out.code, 42);
    }
    let out = r.run(&["both".into()], b"").expect("run both");
    assert_eq!(
        (
            out.code,
            out.stdout_str().as_str(),
            out.stderr_str().as_str()
        ),
        (3, "out", "err")
    );
}

#[test]
fn binary_safe_100_mb_round_trip_with_checksum() {
    let s = Server::start(true);
    let d = dialer(&s);
    let mut p = ExecProcess::spawn(&d, &req(&["cat"])).expect("spawn");
    assert_eq!(p.protocol(), Protocol::V5);
    let mut stdin = p.take_stdin().expect("stdin");
    let mut stdout = p.take_stdout().expect("stdout");
    const TOTAL: usize = 100 << 20;
    // A simple non-cryptographic checksum over a byte pattern that covers every byte value.
    fn fold(sum: u64, data: &[u8]) -> u64 {
        data.iter()
            .fold(sum, |s, &b| s.wrapping_mul(31).wrapping_add(u64::from(b)))
    }
    let writer = std::thread::spawn(move || {
        let mut sum = 0u64;
        let mut block = vec![0u8; 1 << 20];
        let mut x: u32 = 12345;
        for _ in 0..TOTAL / block.len() {
            for b in block.iter_mut() {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            sum = fold(sum, &block);
            stdin.write_all(&block).expect("write stdin");
        }
        drop(stdin);
        sum
    });
    let mut sum = 0u64;
    let mut n = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = stdout.read(&mut buf).expect("read stdout");
        if k == 0 {
            break;
        }
        sum = fold(sum, &buf[..k]);
        n += k;
    }
    let want = writer.join().expect("writer");
    assert_eq!(n, TOTAL);
    assert_eq!(sum, want);
    assert_eq!(Box::new(p).wait().expect("wait"), 0);
}

#[test]
fn large_stdout_arrives_complete_and_in_order() {
    let s = Server::start(true);
    let d = dialer(&s);
    let mut r = req(&["flood", "64"]);
    r.stdin = false;
    let mut p = ExecProcess::spawn(&d, &r).expect("spawn");
    let mut out = p.take_stdout().expect("stdout");
    let started = std::time::Instant::now();
    let mut n = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = out.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        for &b in &buf[..k] {
            assert_eq!(b, ((n % (32 * 1024)) % 251) as u8, "byte {n}");
            n += 1;
        }
    }
    eprintln!("64 MiB of stdout in {:?}", started.elapsed());
    assert_eq!(n, 64 << 20);
    assert_eq!(p.wait_code().expect("wait"), 0);
}

#[test]
fn v4_only_server_falls_back_and_refuses_stdin_eof_dependent_commands() {
    let s = Server::start(false);
    let d = dialer(&s);
    let err = ExecProcess::spawn(&d, &req(&["cat"]))
        .err()
        .expect("v4 + stdin EOF must be refused");
    let text = err.to_string();
    assert!(
        text.contains("v4.channel.k8s.io") && text.contains("end of stdin"),
        "{text}"
    );
    assert!(err.hint().expect("hint").contains("1.30"));

    // A self-delimiting command works over v4.
    let mut r = req(&["headc", "5"]);
    r.stdin_eof = StdinEof::NotNeeded;
    let mut p = ExecProcess::spawn(&d, &r).expect("spawn v4");
    assert_eq!(p.protocol(), Protocol::V4);
    let mut stdin = p.take_stdin().expect("stdin");
    stdin.write_all(b"abcdeXYZ").expect("write");
    drop(stdin);
    let mut out = Vec::new();
    p.take_stdout()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read");
    assert_eq!(out, b"abcde");
    assert_eq!(Box::new(p).wait().expect("wait"), 0);

    // Exit codes over v4 too.
    let mut r = req(&["exit", "42"]);
    r.stdin = false;
    let p = ExecProcess::spawn(&d, &r).expect("spawn");
    assert_eq!(p.wait_code().expect("wait"), 42);
}

#[test]
fn non_101_status_becomes_an_api_error() {
    let s = Server::start(true);
    let d = dialer(&s);
    let mut r = req(&["cat"]);
    r.pod = "missing".into();
    let err = ExecProcess::spawn(&d, &r).err().expect("404");
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().contains("pods \"missing\" not found"),
        "{err}"
    );

    // A 403 names the permission that is missing.
    r.pod = "forbidden".into();
    let err = ExecProcess::spawn(&d, &r).err().expect("403");
    assert_eq!(err.api().expect("api").code, 403);
    let hint = err.hint().expect("hint");
    assert!(
        hint.contains("pods/exec") && hint.contains("kubectl auth can-i"),
        "{hint}"
    );
}

#[test]
fn empty_403_is_reported_as_a_subprotocol_mismatch() {
    // A port-forward-only v4 endpoint would not matter here: offer only v5 to a v4 server by hand.
    let s = Server::start(false);
    let d = dialer(&s);
    let err = kodama::kube::ws::http::upgrade(
        &d,
        "/api/v1/namespaces/dev/pods/web/exec?command=cat",
        &[Protocol::V5],
    )
    .err()
    .expect("403");
    assert!(
        err.to_string().contains("none of the subprotocols"),
        "{err}"
    );
}

struct Refreshing {
    inner: TcpDialer,
    refreshed: AtomicUsize,
}

impl Dialer for Refreshing {
    fn connect(&self) -> kodama::Result<Box<dyn WsTransport>> {
        self.inner.connect()
    }
    fn url_for(&self, p: &str) -> String {
        self.inner.url_for(p)
    }
    fn auth_headers(&self) -> kodama::Result<Vec<(String, Secret)>> {
        let tok = if self.refreshed.load(Ordering::SeqCst) > 0 {
            "fresh"
        } else {
            "stale"
        };
        Ok(vec![(
            "Authorization".into(),
            Secret::new(format!("Bearer {tok}")),
        )])
    }
    fn refresh_after_unauthorized(&self) -> kodama::Result<bool> {
        self.refreshed.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

#[test]
fn unauthorized_is_retried_once_after_refresh() {
    let s = Server::start(true);
    *s.state.token.lock().expect("lock") = Some("fresh".into());
    let d = Refreshing {
        inner: dialer(&s),
        refreshed: AtomicUsize::new(0),
    };
    let mut r = req(&["exit", "1"]);
    r.stdin = false;
    let p = ExecProcess::spawn(&d, &r).expect("spawn after refresh");
    assert_eq!(p.wait_code().expect("wait"), 1);
    assert_eq!(d.refreshed.load(Ordering::SeqCst), 1);
    assert_eq!(
        *s.state.auth_seen.lock().expect("lock"),
        vec!["Bearer stale".to_string(), "Bearer fresh".to_string()]
    );

    // A second 401 is an error, not a loop.
    s.state.unauthorized.store(5, Ordering::SeqCst);
    let err = ExecProcess::spawn(&d, &r).err().expect("401");
    assert_eq!(err.api().expect("api").code, 401, "{err}");
    let shown = format!("{}\n{:?}", err.render(), err);
    assert!(!shown.contains("Bearer"), "credentials leaked: {shown}");
    assert_eq!(d.refreshed.load(Ordering::SeqCst), 2);
}

#[test]
fn container_not_running_and_dropped_streams_are_clear_errors() {
    let s = Server::start(true);
    let d = dialer(&s);
    let mut r = req(&["notrunning"]);
    r.stdin = false;
    let p = ExecProcess::spawn(&d, &r).expect("spawn");
    let err = p.wait_code().expect_err("not running");
    assert!(
        err.to_string().contains("container is not running"),
        "{err}"
    );
    assert!(err.hint().expect("hint").contains("describe pod"));

    let mut r = req(&["dropped"]);
    r.stdin = false;
    let mut p = ExecProcess::spawn(&d, &r).expect("spawn");
    let mut out = Vec::new();
    let read = p.take_stdout().expect("stdout").read_to_end(&mut out);
    assert_eq!(out, b"partial");
    assert!(read.is_err(), "a lost stream must not look like EOF");
    let err = p.wait_code().expect_err("no status");
    assert!(
        err.to_string().contains("without reporting an exit status"),
        "{err}"
    );
}

#[test]
fn silent_server_fails_after_the_silence_limit() {
    let s = Server::start(true);
    let d = dialer(&s);
    let mut r = req(&["silent"]);
    r.stdin = false;
    let config = SessionConfig {
        ping_interval: Duration::from_millis(100),
        silence_limit: Duration::from_millis(600),
        ..Default::default()
    };
    let p = ExecProcess::spawn_with(&d, &r, config).expect("spawn");
    let started = std::time::Instant::now();
    let err = p.wait_code().expect_err("dead peer");
    assert!(err.to_string().contains("no answer to pings"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn session_thread_panic_is_an_error_not_a_hang() {
    let s = Server::start(true);
    let d = dialer(&s);
    let mut r = req(&["both"]);
    r.stdin = false;
    let config = SessionConfig {
        panic_on_stream: Some(2),
        ..Default::default()
    };
    let mut p = ExecProcess::spawn_with(&d, &r, config).expect("spawn");
    let mut out = Vec::new();
    let read = p.take_stdout().expect("stdout").read_to_end(&mut out);
    assert!(read.is_err());
    let err = p.wait_code().expect_err("panic");
    assert!(err.to_string().contains("panicked"), "{err}");
}

#[test]
fn dropping_a_process_mid_stream_stops_its_thread() {
    let s = Server::start(true);
    let d = dialer(&s);
    let mut p = ExecProcess::spawn(&d, &req(&["cat"])).expect("spawn");
    let mut stdin = p.take_stdin().expect("stdin");
    stdin.write_all(b"x").expect("write");
    // Dropping the process aborts and joins the socket thread; the writer then fails cleanly.
    drop(p);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut failed = false;
    while std::time::Instant::now() < deadline {
        if stdin.write_all(b"y").is_err() {
            failed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(failed, "writes after the session ended must fail");
    let _ = Arc::new(());
}

mod logs {
    use super::*;
    use kodama::kube::logs::{stream_logs, DialerGet, LogOptions};

    #[test]
    fn logs_stream_chunked_body_with_options() {
        let s = Server::start(true);
        let d = dialer(&s);
        let mut out = Vec::new();
        let o = LogOptions {
            container: Some("main".into()),
            follow: true,
            tail_lines: Some(4),
            timestamps: true,
            ..Default::default()
        };
        stream_logs(&DialerGet(&d), "dev", "web", &o, &mut out).expect("logs");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "2026-11-30T00:00:00Z line 0\n2026-11-30T00:00:01Z line 1\n2026-11-30T00:00:02Z line 2\n2026-11-30T00:00:03Z line 3\n"
        );
        assert_eq!(
            s.state.requests.lock().expect("lock")[0],
            "/api/v1/namespaces/dev/pods/web/log?container=main&follow=true&tailLines=4&timestamps=true"
        );
    }

    #[test]
    fn logs_retry_while_waiting_to_start_then_stream() {
        let s = Server::start(true);
        s.state.log_waits.store(2, Ordering::SeqCst);
        let d = dialer(&s);
        let mut out = Vec::new();
        let o = LogOptions {
            wait_for_start: Duration::from_secs(30),
            ..Default::default()
        };
        stream_logs(&DialerGet(&d), "dev", "starting", &o, &mut out).expect("logs");
        assert_eq!(out, b"line 0\nline 1\nline 2\n");
        assert_eq!(s.state.requests.lock().expect("lock").len(), 3);
    }

    #[test]
    fn logs_give_up_at_the_deadline_with_the_server_reason() {
        let s = Server::start(true);
        let d = dialer(&s);
        let o = LogOptions {
            wait_for_start: Duration::from_millis(700),
            ..Default::default()
        };
        let err = stream_logs(&DialerGet(&d), "dev", "neverstarts", &o, &mut Vec::new())
            .expect_err("deadline");
        let text = err.to_string();
        assert!(
            text.contains("is waiting to start: ContainerCreating"),
            "{text}"
        );
        assert!(
            text.contains("reading the logs of pod dev/neverstarts"),
            "{text}"
        );
        let n = s.state.requests.lock().expect("lock").len();
        assert!((2..=4).contains(&n), "{n} attempts");

        let err = stream_logs(
            &DialerGet(&d),
            "dev",
            "missing",
            &LogOptions::default(),
            &mut Vec::new(),
        )
        .expect_err("404");
        assert!(err.is_not_found());
    }
}

mod port_forward {
    use super::*;
    use kodama::kube::portforward::{PortForwarder, PortMapping, Reporter};
    use kube_stream_support::wait_until;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Mutex;

    /// The "pod port": echoes each connection with a prefix.
    fn echo_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        match c.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                let mut out = b"echo:".to_vec();
                                out.extend_from_slice(&buf[..n]);
                                if c.write_all(&out).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        port
    }

    fn collector() -> (Reporter, Arc<Mutex<Vec<String>>>) {
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let m = Arc::clone(&msgs);
        let r: Reporter = Arc::new(move |s: &str| m.lock().expect("lock").push(s.to_string()));
        (r, msgs)
    }

    fn read_exact_with_deadline(c: &mut TcpStream, n: usize) -> Vec<u8> {
        c.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let mut buf = vec![0u8; n];
        c.read_exact(&mut buf).expect("read forwarded data");
        buf
    }

    #[test]
    fn two_concurrent_connections_and_an_error_that_spares_the_listener() {
        let s = Server::start(true);
        let pod_port = echo_server();
        let (report, msgs) = collector();
        let d: Arc<dyn Dialer> = Arc::new(dialer(&s));
        let fwd = PortForwarder::start(
            Arc::clone(&d),
            "dev",
            "web",
            &[PortMapping {
                local: 0,
                remote: pod_port,
            }],
            report,
        )
        .expect("start");
        let (mapping, addrs) = fwd.bound()[0].clone();
        assert_ne!(mapping.local, 0);
        assert!(addrs.iter().any(|a| a.ip().is_loopback() && a.is_ipv4()));
        let v4 = addrs.iter().find(|a| a.is_ipv4()).expect("v4 addr");

        // Two connections open at the same time, interleaved.
        let mut a = TcpStream::connect(v4).expect("connect a");
        let mut b = TcpStream::connect(v4).expect("connect b");
        a.write_all(b"from-a").expect("write a");
        b.write_all(b"from-b").expect("write b");
        assert_eq!(read_exact_with_deadline(&mut b, 11), b"echo:from-b");
        assert_eq!(read_exact_with_deadline(&mut a, 11), b"echo:from-a");
        assert!(wait_until(Duration::from_secs(20), || s
            .state
            .pf_open
            .load(Ordering::SeqCst)
            == 2));
        a.write_all(b"again").expect("write a");
        assert_eq!(read_exact_with_deadline(&mut a, 10), b"echo:again");
        let targets = s.state.requests.lock().expect("lock").clone();
        assert!(
            targets
                .iter()
                .all(|t| t
                    == &format!("/api/v1/namespaces/dev/pods/web/portforward?ports={pod_port}"))
        );
        // Each WebSocket offered exactly v4, in one header.
        assert_eq!(
            *s.state.protocol_header_counts.lock().expect("lock"),
            vec![1, 1]
        );
        drop(a);
        drop(b);
        assert!(wait_until(Duration::from_secs(20), || s
            .state
            .pf_open
            .load(Ordering::SeqCst)
            == 0));

        // A pod port nobody listens on: the error is reported, the listener survives.
        let closed_port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let (report2, msgs2) = collector();
        let fwd2 = PortForwarder::start(
            Arc::clone(&d),
            "dev",
            "web",
            &[PortMapping {
                local: 0,
                remote: closed_port,
            }],
            report2,
        )
        .expect("start 2");
        let addr2 = fwd2.bound()[0].1[0];
        for _ in 0..2 {
            let mut c = TcpStream::connect(addr2).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            let mut buf = Vec::new();
            let _ = c.read_to_end(&mut buf);
            assert!(buf.is_empty());
        }
        assert!(wait_until(Duration::from_secs(20), || msgs2
            .lock()
            .expect("lock")
            .len()
            == 2));
        let m = msgs2.lock().expect("lock")[0].clone();
        assert!(
            m.contains("error forwarding port") && m.contains(&closed_port.to_string()),
            "{m}"
        );
        fwd2.stop();
        fwd.stop();
        assert!(
            msgs.lock().expect("lock").is_empty(),
            "{:?}",
            msgs.lock().expect("lock")
        );
        // Stopped listeners refuse connections.
        assert!(TcpStream::connect(addr2).is_err());
    }

    #[test]
    fn ctrl_c_stops_port_forward_until_interrupted() {
        use kodama::kube::portforward::port_forward_until_interrupted;
        let s = Server::start(true);
        let pod_port = echo_server();
        let (report, msgs) = collector();
        let d: Arc<dyn Dialer> = Arc::new(dialer(&s));
        let t = std::thread::spawn(move || {
            port_forward_until_interrupted(
                d,
                "dev",
                "web",
                &[PortMapping {
                    local: 0,
                    remote: pod_port,
                }],
                report,
            )
        });
        // The signal handlers are in place once the listening address is reported.
        assert!(wait_until(Duration::from_secs(20), || !msgs
            .lock()
            .expect("lock")
            .is_empty()));
        let line = msgs.lock().expect("lock")[0].clone();
        assert!(line.starts_with("Forwarding from 127.0.0.1:"), "{line}");
        let addr: std::net::SocketAddr = line
            .trim_start_matches("Forwarding from ")
            .split(" -> ")
            .next()
            .expect("addr")
            .parse()
            .expect("socket addr");
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(b"hi").expect("write");
        assert_eq!(read_exact_with_deadline(&mut c, 7), b"echo:hi");
        signal_hook::low_level::raise(libc::SIGINT).expect("raise SIGINT");
        t.join().expect("join").expect("stopped cleanly");
        assert!(TcpStream::connect(addr).is_err(), "listener closed");
    }

    #[test]
    fn a_taken_local_port_is_a_clear_error() {
        let s = Server::start(true);
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let (report, _) = collector();
        let err = PortForwarder::start(
            Arc::new(dialer(&s)),
            "dev",
            "web",
            &[PortMapping {
                local: port,
                remote: 80,
            }],
            report,
        )
        .err()
        .expect("taken");
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}

mod tls {
    //! The socket thread over TLS: a large upload echoed back must not deadlock when both TCP
    //! directions are full (rustls' own StreamOwned stops reading while its writes block).
    use super::*;
    use kodama::kube::ws::tls::DuplexTls;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use tungstenite::protocol::{Role, WebSocket};
    use tungstenite::Message;

    struct TlsDialer {
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    }

    impl Dialer for TlsDialer {
        fn connect(&self) -> kodama::Result<Box<dyn WsTransport>> {
            let sock = TcpStream::connect(self.addr).expect("connect");
            let name = ServerName::try_from("localhost").expect("name");
            let conn = rustls::ClientConnection::new(Arc::clone(&self.config), name).expect("conn");
            let mut t = DuplexTls::new(conn, sock);
            t.handshake().expect("handshake");
            Ok(Box::new(t))
        }
        fn url_for(&self, p: &str) -> String {
            format!("https://localhost:{}{p}", self.addr.port())
        }
        fn auth_headers(&self) -> kodama::Result<Vec<(String, Secret)>> {
            Ok(Vec::new())
        }
        fn refresh_after_unauthorized(&self) -> kodama::Result<bool> {
            Ok(false)
        }
    }

    /// A TLS server whose exec endpoint is `cat` over v5 (blocking, single-threaded per connection).
    fn tls_cat_server() -> (SocketAddr, Arc<rustls::ClientConfig>, String) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let cert: CertificateDer<'static> = ck.cert.der().clone();
        let pem = ck.cert.pem();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        let server = Arc::new(server);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(sock) = c else { continue };
                let server = Arc::clone(&server);
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(server).expect("server conn");
                    let mut s = rustls::StreamOwned::new(conn, sock);
                    // Request head.
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if s.read(&mut b).expect("read head") == 0 {
                            return;
                        }
                        head.push(b[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let key = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                        .expect("key")
                        .trim()
                        .to_string();
                    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
                    write!(s, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n").expect("101");
                    s.flush().expect("flush");
                    let mut ws = WebSocket::from_raw_socket(s, Role::Server, None);
                    loop {
                        match ws.read() {
                            Ok(Message::Binary(m)) if m[..] == [0xFF, 0] => {
                                let mut st = vec![3u8];
                                st.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
                                let _ = ws.send(Message::Binary(st.into()));
                                let _ = ws.close(None);
                                while ws.read().is_ok() {}
                                return;
                            }
                            Ok(Message::Binary(m)) if m.first() == Some(&0) => {
                                let mut out = vec![1u8];
                                out.extend_from_slice(&m[1..]);
                                if ws.send(Message::Binary(out.into())).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        (addr, Arc::new(client), pem)
    }

    pub fn tls_cat_server_pub() -> (SocketAddr, Arc<rustls::ClientConfig>, String) {
        tls_cat_server()
    }

    #[test]
    fn tls_upload_echo_does_not_deadlock() {
        let (addr, config, _) = tls_cat_server();
        let d = TlsDialer { addr, config };
        let mut p = ExecProcess::spawn(&d, &req(&["cat"])).expect("spawn over TLS");
        let mut stdin = p.take_stdin().expect("stdin");
        let mut stdout = p.take_stdout().expect("stdout");
        const TOTAL: usize = 32 << 20;
        let writer = std::thread::spawn(move || {
            let block: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
            for _ in 0..TOTAL / block.len() {
                stdin.write_all(&block).expect("write");
            }
        });
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let mut pos = 0usize;
        loop {
            let k = stdout.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            for &b in &buf[..k] {
                assert_eq!(b, (pos % 256) as u8, "byte {pos}");
                pos += 1;
            }
            n += k;
        }
        writer.join().expect("writer");
        assert_eq!(n, TOTAL);
        assert_eq!(p.wait_code().expect("wait"), 0);
    }
}

mod real_client {
    //! The production wiring: `kube::Client` (kubecore's transport) as the exec `Dialer` and the
    //! logs `StreamGet`, over plain HTTP and over TLS (through `DuplexTls`).
    use super::*;
    use base64::Engine;
    use kodama::kube::client::Client;
    use kodama::kube::load::{load_with, LoadEnv, Overrides};
    use kodama::kube::logs::{stream_logs, LogOptions};
    use std::path::PathBuf;

    fn kubeconfig(server: &str, cluster_extra: &str) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "kodama-kube-stream-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: t\n  cluster:\n    server: {server}\n{cluster_extra}users:\n- name: t\n  user:\n    token: tok-secret\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n    namespace: dev\n"
        );
        let p = dir.join("config");
        std::fs::write(&p, text).expect("write kubeconfig");
        p
    }

    fn client(path: PathBuf) -> Client {
        let cfg = load_with(
            &Overrides {
                kubeconfig: Some(path),
                ..Overrides::default()
            },
            &LoadEnv::default(),
        )
        .expect("load kubeconfig");
        Client::new(cfg).expect("client")
    }

    #[test]
    fn client_drives_exec_and_logs_over_http() {
        let s = Server::start(true);
        *s.state.token.lock().expect("lock") = Some("tok-secret".into());
        s.state.log_waits.store(1, Ordering::SeqCst);
        let c = client(kubeconfig(&format!("http://{}", s.addr), ""));
        let mut r = req(&["exit", "42"]);
        r.stdin = false;
        let p = ExecProcess::spawn(&c, &r).expect("exec via Client");
        assert_eq!(p.wait_code().expect("wait"), 42);
        let mut out = Vec::new();
        let o = LogOptions {
            follow: true,
            wait_for_start: Duration::from_secs(30),
            ..Default::default()
        };
        stream_logs(&c, "dev", "starting", &o, &mut out).expect("logs via Client");
        assert_eq!(out, b"line 0\nline 1\nline 2\n");
        let auth = s.state.auth_seen.lock().expect("lock").clone();
        assert!(
            auth.len() >= 3 && auth.iter().all(|a| a == "Bearer tok-secret"),
            "{auth:?}"
        );
    }

    #[test]
    fn client_exec_over_tls_round_trips() {
        let (addr, _, pem) = super::tls::tls_cat_server_pub();
        let ca = base64::engine::general_purpose::STANDARD.encode(pem);
        let c = client(kubeconfig(
            &format!("https://localhost:{}", addr.port()),
            &format!("    certificate-authority-data: {ca}\n"),
        ));
        let out =
            ExecRemoteWith(&c).run_cat(&(0..=255u8).cycle().take(8 << 20).collect::<Vec<u8>>());
        assert_eq!(out.0, 0);
        assert!(out.1, "echoed bytes differ");
    }

    struct ExecRemoteWith<'a>(&'a Client);

    impl ExecRemoteWith<'_> {
        fn run_cat(&self, data: &[u8]) -> (i32, bool) {
            let mut p = ExecProcess::spawn(self.0, &req(&["cat"])).expect("spawn");
            let mut stdin = p.take_stdin().expect("stdin");
            let mut stdout = p.take_stdout().expect("stdout");
            let owned = data.to_vec();
            let w = std::thread::spawn(move || stdin.write_all(&owned).expect("write"));
            let mut got = Vec::new();
            stdout.read_to_end(&mut got).expect("read");
            w.join().expect("writer");
            (p.wait_code().expect("wait"), got == data)
        }
    }
}

#[test]
fn non_interactive_tty_exec_sends_resize_and_stdin_in_order() {
    let s = Server::start(true);
    let d = dialer(&s);
    let mut r = req(&["tty"]);
    r.tty = true;
    let mut p = ExecProcess::spawn(&d, &r).expect("spawn");
    assert!(p.take_stderr().is_none(), "a TTY has no separate stderr");
    p.resize(77, 22).expect("resize");
    let mut stdin = p.take_stdin().expect("stdin");
    stdin.write_all(b"abc q").expect("write");
    let mut out = Vec::new();
    p.take_stdout()
        .expect("stdout")
        .read_to_end(&mut out)
        .expect("read");
    assert_eq!(out, b"abc q");
    drop(stdin);
    assert_eq!(p.wait_code().expect("wait"), 42);
    assert_eq!(*s.state.resizes.lock().expect("lock"), vec![(77, 22)]);
    assert!(s.state.requests.lock().expect("lock")[0]
        .ends_with("&stdin=true&stdout=true&stderr=false&tty=true"));
}
