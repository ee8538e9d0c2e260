//! Integration tests for the Kubernetes client (`kodama::kube`) against a small HTTPS API server
//! written here: TLS with client certificates, tls-server-name, CA pinning, tokens, tokenFile re-read,
//! exec plugins with expiry and refresh on 401, retries (429 with Retry-After, 500, POST never), watch
//! relist on 410 (HTTP and in-band), warning headers, error hints, wait_for_pod, a CONNECT proxy and
//! the raw WebSocket dialer.
//!
//! The server is deliberately dumb: each test gives it a handler closure that answers one request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use kodama::kube::client::{Client, RetryPolicy};
use kodama::kube::load::{load_with, LoadEnv, Overrides};
use kodama::kube::request::{self, DeleteOptions, ListOptions};
use kodama::kube::resource::{CONFIG_MAPS, NAMESPACES, PODS};
use kodama::kube::watch::{self, EventType, PodProgress, WatchTarget};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

// ------------------------------------------------------------------------------------------------
// Certificates

struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    bob_cert_pem: String,
    bob_key_pem: String,
    other_ca_pem: String,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test-ca");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("server key");
    let mut sp = CertificateParams::new(vec!["kubernetes".to_string(), "127.0.0.1".to_string()])
        .expect("server params");
    sp.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let server_cert = sp.signed_by(&server_key, &issuer).expect("server cert");

    let client_key = KeyPair::generate().expect("client key");
    let mut cp = CertificateParams::new(Vec::<String>::new()).expect("client params");
    cp.distinguished_name.push(DnType::CommonName, "alice");
    let client_cert = cp.signed_by(&client_key, &issuer).expect("client cert");

    let bob_key = KeyPair::generate().expect("bob key");
    let mut bp = CertificateParams::new(Vec::<String>::new()).expect("bob params");
    bp.distinguished_name.push(DnType::CommonName, "bob");
    let bob_cert = bp.signed_by(&bob_key, &issuer).expect("bob cert");

    let other_key = KeyPair::generate().expect("other key");
    let mut op = CertificateParams::new(Vec::<String>::new()).expect("other params");
    op.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    op.distinguished_name.push(DnType::CommonName, "other-ca");
    let other = op.self_signed(&other_key).expect("other ca");

    Pki {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
        bob_cert_pem: bob_cert.pem(),
        bob_key_pem: bob_key.serialize_pem(),
        other_ca_pem: other.pem(),
    }
}

// ------------------------------------------------------------------------------------------------
// The test API server

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    conn: usize,
    client_cert: bool,
    /// DER of the client certificate presented on this connection (empty when none).
    peer_der: Vec<u8>,
}

impl Req {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    fn q(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }
}

enum Body {
    Full(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
    /// Close the connection without answering (a reset / stale keep-alive connection).
    Drop,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Resp {
    fn json(status: u16, v: Value) -> Resp {
        Resp {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Full(v.to_string().into_bytes()),
        }
    }
    fn status(code: u16, reason: &str, message: &str) -> Resp {
        Resp::json(
            code,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":message,"reason":reason,"code":code}),
        )
    }
    fn watch(events: Vec<Value>) -> Resp {
        Resp {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Body::Chunked(
                events
                    .into_iter()
                    .map(|e| format!("{e}\n").into_bytes())
                    .collect(),
            ),
        }
    }
    fn header(mut self, k: &str, v: &str) -> Resp {
        self.headers.push((k.into(), v.into()));
        self
    }
}

type Handler = Arc<dyn Fn(&Req) -> Resp + Send + Sync>;

struct Server {
    port: u16,
    journal: Arc<Mutex<Vec<Req>>>,
}

impl Server {
    fn requests(&self) -> Vec<Req> {
        self.journal.lock().expect("journal").clone()
    }
    fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Starts the server. `require_client_cert`: the handshake fails without a client certificate.
fn serve(pki: &Pki, require_client_cert: bool, handler: Handler) -> Server {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.expect("ca")).expect("add ca");
    }
    let vb = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    );
    let verifier = if require_client_cert {
        vb.build().expect("verifier")
    } else {
        vb.allow_unauthenticated().build().expect("verifier")
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
            .map(|c| c.expect("cert"))
            .collect();
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).expect("key");
    // A fixed certificate through a resolver: `with_single_cert` would refuse an X.509 v1 leaf, and
    // serving one is exactly what a test needs.
    let signer = provider
        .key_provider
        .load_private_key(key)
        .expect("signing key");
    let resolver = Arc::new(FixedCert(Arc::new(rustls::sign::CertifiedKey::new(
        certs, signer,
    ))));
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let journal = Arc::new(Mutex::new(Vec::new()));
    let j = journal.clone();
    let conns = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let cfg = cfg.clone();
            let handler = handler.clone();
            let j = j.clone();
            let id = conns.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, s);
                while tls.conn.is_handshaking() {
                    if tls.conn.complete_io(&mut tls.sock).is_err() {
                        return;
                    }
                }
                let peer_der = tls
                    .conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec())
                    .unwrap_or_default();
                serve_conn(tls, id, peer_der, &handler, &j);
            });
        }
    });
    Server { port, journal }
}

/// A server that answers GET with pod "web" only for the bearer token currently in the returned
/// cell, and 401 for any other token; tests rotate the token by writing the cell.
fn serve_accepting_bearer(pki: &Pki, initial: &str) -> (Server, Arc<Mutex<String>>) {
    let accepted = Arc::new(Mutex::new(initial.to_string()));
    let a2 = accepted.clone();
    let srv = serve(
        pki,
        false,
        Arc::new(move |r: &Req| {
            if r.bearer() == Some(a2.lock().expect("l").as_str()) {
                Resp::json(200, ok_pod("web"))
            } else {
                Resp::status(401, "Unauthorized", "Unauthorized")
            }
        }),
    );
    (srv, accepted)
}

fn serve_conn<S: Read + Write>(
    s: S,
    conn: usize,
    peer_der: Vec<u8>,
    handler: &Handler,
    j: &Mutex<Vec<Req>>,
) {
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
        let query = qs
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let req = Req {
            method,
            path: path.to_string(),
            query,
            headers,
            body,
            conn,
            client_cert: !peer_der.is_empty(),
            peer_der: peer_der.clone(),
        };
        j.lock().expect("journal").push(req.clone());
        let resp = handler(&req);
        let w = r.get_mut();
        let mut head = format!("HTTP/1.1 {} X\r\n", resp.status);
        for (k, v) in &resp.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let ok = match resp.body {
            Body::Drop => false,
            Body::Full(b) => {
                head.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
                w.write_all(head.as_bytes()).is_ok() && w.write_all(&b).is_ok() && w.flush().is_ok()
            }
            Body::Chunked(chunks) => {
                head.push_str("Transfer-Encoding: chunked\r\n\r\n");
                let mut ok = w.write_all(head.as_bytes()).is_ok();
                for c in chunks {
                    ok = ok
                        && w.write_all(format!("{:x}\r\n", c.len()).as_bytes()).is_ok()
                        && w.write_all(&c).is_ok()
                        && w.write_all(b"\r\n").is_ok()
                        && w.flush().is_ok();
                }
                ok && w.write_all(b"0\r\n\r\n").is_ok() && w.flush().is_ok()
            }
        };
        if !ok {
            return;
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Kubeconfig helpers

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "kodama-kube-it-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

/// Writes a kubeconfig with one cluster/user/context; `cluster` and `user` are YAML mappings
/// (indented bodies) appended to the generated ones.
fn kubeconfig(dir: &Path, server: &str, cluster: &str, user: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: t\n  cluster:\n    server: {server}\n{cluster}users:\n- name: t\n  user:\n{user}contexts:\n- name: t\n  context:\n    cluster: t\n    user: t\n    namespace: dev\n"
    );
    let p = dir.join("config");
    std::fs::write(&p, text).expect("write kubeconfig");
    p
}

fn ca_line(pem: &str) -> String {
    format!("    certificate-authority-data: {}\n", b64(pem))
}

fn client_for(path: &Path) -> kodama::Result<Client> {
    let cfg = load_with(
        &Overrides {
            kubeconfig: Some(path.to_path_buf()),
            request_timeout: Some(Duration::from_secs(10)),
            ..Overrides::default()
        },
        &LoadEnv::default(),
    )?;
    let c = Client::new(cfg)?;
    c.set_retry_policy(RetryPolicy {
        max_retries: 4,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(2),
    });
    Ok(c)
}

fn ok_pod(name: &str) -> Value {
    json!({"kind":"Pod","apiVersion":"v1","metadata":{"name":name,"namespace":"dev","resourceVersion":"1"}})
}

fn token_user(t: &str) -> String {
    format!("    token: {t}\n")
}

// ------------------------------------------------------------------------------------------------
// TLS

#[test]
fn client_certificate_auth_over_ip_san_with_keepalive() {
    let pki = pki();
    let srv = serve(
        &pki,
        true,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("mtls");
    // The key and certificate come from files next to the kubeconfig, named relatively.
    std::fs::write(dir.join("alice.crt"), &pki.client_cert_pem).expect("w");
    std::fs::write(dir.join("alice.key"), &pki.client_key_pem).expect("w");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        "    client-certificate: alice.crt\n    client-key: alice.key\n",
    );
    let c = client_for(&kc).expect("client");
    assert_eq!(c.namespace(), "dev");
    let p = c.get(&PODS, Some("dev"), "web").expect("get");
    assert_eq!(p["metadata"]["name"], "web");
    c.get(&PODS, Some("dev"), "web").expect("second get");
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 2);
    assert!(
        reqs.iter().all(|r| r.client_cert),
        "client certificate presented"
    );
    assert_eq!(
        reqs[0].conn, reqs[1].conn,
        "keep-alive reuses the connection"
    );
    assert_eq!(reqs[0].path, "/api/v1/namespaces/dev/pods/web");
    assert!(reqs[0]
        .header("user-agent")
        .unwrap_or("")
        .starts_with("kubectl-kodama/"));
}

#[test]
fn missing_client_certificate_is_a_transport_error() {
    let pki = pki();
    let srv = serve(
        &pki,
        true,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("nocert");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let e = c.get(&PODS, Some("dev"), "web").expect_err("no cert");
    let r = e.render();
    assert!(r.contains("cannot talk to the API server"), "{r}");
    assert!(r.contains("getting pods \"web\""), "{r}");
}

#[test]
fn tls_server_name_is_used_for_verification() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("sni");
    // Connect to "localhost" (not in the SANs) but verify as "kubernetes" (in the SANs).
    let kc = kubeconfig(
        &dir,
        &format!("https://localhost:{}", srv.port),
        &format!("{}    tls-server-name: kubernetes\n", ca_line(&pki.ca_pem)),
        &token_user("t"),
    );
    client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect("verified as kubernetes");
    // Without the override, "localhost" does not match the certificate.
    let kc = kubeconfig(
        &dir,
        &format!("https://localhost:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let e = client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect_err("name mismatch");
    assert!(
        e.render().to_lowercase().contains("certificate"),
        "{}",
        e.render()
    );
    // A wrong tls-server-name fails too.
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &format!(
            "{}    tls-server-name: wrong.example\n",
            ca_line(&pki.ca_pem)
        ),
        &token_user("t"),
    );
    assert!(client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .is_err());
}

#[test]
fn wrong_ca_fails_leaf_pinning_and_insecure_work() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("ca");
    let server = format!("https://127.0.0.1:{}", srv.port);
    let kc = kubeconfig(&dir, &server, &ca_line(&pki.other_ca_pem), &token_user("t"));
    let e = client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect_err("untrusted");
    let r = e.render();
    assert!(r.contains("hint: check certificate-authority"), "{r}");
    // The bundle holds the server's own leaf (and an unrelated CA): accepted like Go does.
    let bundle = format!("{}{}", pki.other_ca_pem, pki.server_cert_pem);
    let kc = kubeconfig(&dir, &server, &ca_line(&bundle), &token_user("t"));
    client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect("pinned leaf");
    // insecure-skip-tls-verify (YAML 1.1 "yes").
    let kc = kubeconfig(
        &dir,
        &server,
        "    insecure-skip-tls-verify: yes\n",
        &token_user("t"),
    );
    client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect("insecure");
}

// ------------------------------------------------------------------------------------------------
// Auth

#[test]
fn token_basic_and_impersonation_headers() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("tok");
    let server = format!("https://127.0.0.1:{}", srv.port);
    let kc = kubeconfig(
        &dir,
        &server,
        &ca_line(&pki.ca_pem),
        "    token: s3cret\n    as: bob\n    as-groups: [dev, ops]\n",
    );
    let c = client_for(&kc).expect("client");
    c.get(&PODS, Some("dev"), "web").expect("get");
    let r = &srv.requests()[0];
    assert_eq!(r.bearer(), Some("s3cret"));
    assert_eq!(r.header("impersonate-user"), Some("bob"));
    let groups: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "impersonate-group")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(groups, vec!["dev", "ops"]);
    // The token never shows in Debug output of the client or its config.
    assert!(!format!("{c:?} {:?}", c.config()).contains("s3cret"));
    // auth_headers for WebSockets carry the same values.
    let h = c.transport().auth_headers().expect("headers");
    assert!(h
        .iter()
        .any(|(k, v)| k == "Authorization" && v.expose() == "Bearer s3cret"));
    assert!(!format!("{h:?}").contains("s3cret"));

    let kc = kubeconfig(
        &dir,
        &server,
        &ca_line(&pki.ca_pem),
        "    username: u\n    password: p\n",
    );
    client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect("get");
    assert_eq!(
        srv.requests()[1].header("authorization"),
        Some("Basic dTpw")
    );
}

#[test]
fn token_file_is_reread_after_401_and_the_request_retried() {
    let pki = pki();
    let (srv, accepted) = serve_accepting_bearer(&pki, "old");
    let dir = tmpdir("tokfile");
    std::fs::write(dir.join("token"), "old\n").expect("w");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        "    tokenFile: token\n",
    );
    let c = client_for(&kc).expect("client");
    c.get(&PODS, Some("dev"), "web").expect("old token");
    // The token rotates on disk and on the server.
    std::fs::write(dir.join("token"), "new").expect("w");
    *accepted.lock().expect("l") = "new".into();
    c.get(&PODS, Some("dev"), "web").expect("re-read after 401");
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].bearer(), Some("old"));
    assert_eq!(reqs[2].bearer(), Some("new"));
    // A token nobody accepts: one retry, then an error with the credentials hint.
    *accepted.lock().expect("l") = "other".into();
    let e = c.get(&PODS, Some("dev"), "web").expect_err("401");
    assert!(e.api().is_some_and(|a| a.is_unauthorized()));
    assert!(e
        .render()
        .contains("hint: the API server rejected your credentials"));
    assert_eq!(srv.requests().len(), 5);
}

fn exec_user(dir: &Path, extra_env: &str) -> String {
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeconfig/exec-plugin.sh");
    format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n      provideClusterInfo: true\n      env:\n      - name: KODAMA_TEST_COUNTER\n        value: {}\n      - name: KODAMA_TEST_INFO_LOG\n        value: {}\n{extra_env}",
        plugin.display(),
        dir.join("counter").display(),
        dir.join("info.log").display()
    )
}

fn env_entry(name: &str, value: &str) -> String {
    format!("      - name: {name}\n        value: \"{value}\"\n")
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("counter"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn exec_plugin_credential_is_cached_until_expiry_and_refreshed_on_401() {
    let pki = pki();
    let (srv, accepted) = serve_accepting_bearer(&pki, "tok-1");
    let server = format!("https://127.0.0.1:{}", srv.port);

    // Far-future expiry: one plugin run serves many requests.
    let dir = tmpdir("exec");
    let kc = kubeconfig(
        &dir,
        &server,
        &ca_line(&pki.ca_pem),
        &exec_user(
            &dir,
            &env_entry("KODAMA_TEST_EXPIRY", "2099-01-01T00:00:00Z"),
        ),
    );
    let c = client_for(&kc).expect("client");
    c.get(&PODS, Some("dev"), "web").expect("first");
    c.get(&PODS, Some("dev"), "web").expect("second");
    assert_eq!(runs(&dir), 1, "credential cached");
    let info = std::fs::read_to_string(dir.join("info.log")).expect("info");
    let info: Value = serde_json::from_str(info.lines().next().expect("line")).expect("json");
    assert_eq!(info["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(info["kind"], "ExecCredential");
    assert_eq!(info["spec"]["interactive"], false);
    assert_eq!(info["spec"]["cluster"]["server"], server.as_str());
    assert!(info["spec"]["cluster"]["certificate-authority-data"].is_string());

    // The server stops accepting tok-1: 401 → plugin runs again → tok-2 → the request succeeds.
    *accepted.lock().expect("l") = "tok-2".into();
    c.get(&PODS, Some("dev"), "web")
        .expect("refreshed after 401");
    assert_eq!(runs(&dir), 2);
    let last = srv.requests();
    assert_eq!(last[last.len() - 2].bearer(), Some("tok-1"));
    assert_eq!(last[last.len() - 1].bearer(), Some("tok-2"));

    // An expired (or about to expire) credential is refreshed before every request.
    let dir2 = tmpdir("exec-exp");
    *accepted.lock().expect("l") = "tok-1".into();
    let kc = kubeconfig(
        &dir2,
        &server,
        &ca_line(&pki.ca_pem),
        &exec_user(
            &dir2,
            &env_entry("KODAMA_TEST_EXPIRY", "2000-01-01T00:00:00Z"),
        ),
    );
    let c = client_for(&kc).expect("client");
    c.get(&PODS, Some("dev"), "web").expect("first");
    assert_eq!(runs(&dir2), 1);
    let _ = c.get(&PODS, Some("dev"), "web");
    assert!(runs(&dir2) >= 2, "expired credential re-fetched");
}

#[test]
fn exec_plugin_failure_is_a_clear_error() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("exec-fail");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &exec_user(&dir, &env_entry("KODAMA_TEST_EXIT", "3")),
    );
    let e = client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect_err("fails");
    assert!(e.to_string().contains("failed with exit code 3"), "{e}");
    assert!(e.to_string().contains("exec-plugin.sh"), "{e}");
    assert!(
        srv.requests().is_empty(),
        "nothing sent without a credential"
    );
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("one cert")
        .expect("pem")
        .to_vec()
}

#[test]
fn exec_plugin_client_certificate_rotation_rebuilds_tls() {
    let pki = pki();
    let srv = serve(
        &pki,
        true,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("exec-cert");
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    std::fs::write(&cert, &pki.client_cert_pem).expect("w");
    std::fs::write(&key, &pki.client_key_pem).expect("w");
    let env = format!(
        "{}{}{}",
        env_entry("KODAMA_TEST_CERT", &cert.display().to_string()),
        env_entry("KODAMA_TEST_KEY", &key.display().to_string()),
        // Already expired: the plugin runs before every request.
        env_entry("KODAMA_TEST_EXPIRY", "2000-01-01T00:00:00Z"),
    );
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &exec_user(&dir, &env),
    );
    let c = client_for(&kc).expect("client");
    c.get(&PODS, Some("dev"), "web").expect("alice");
    c.get(&PODS, Some("dev"), "web").expect("alice again");
    // The plugin now hands out bob's certificate: new TLS config, new connection.
    std::fs::write(&cert, &pki.bob_cert_pem).expect("w");
    std::fs::write(&key, &pki.bob_key_pem).expect("w");
    c.get(&PODS, Some("dev"), "web").expect("bob");
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].peer_der, der_of(&pki.client_cert_pem));
    assert_eq!(
        reqs[0].conn, reqs[1].conn,
        "same certificate → connection reused"
    );
    assert_eq!(reqs[2].peer_der, der_of(&pki.bob_cert_pem));
    assert_ne!(reqs[1].conn, reqs[2].conn);
    assert!(reqs.iter().all(|r| r.header("authorization").is_none()));
    assert_eq!(runs(&dir), 3);
}

// ------------------------------------------------------------------------------------------------
// Retries, warnings, errors

#[test]
fn retries_429_with_retry_after_and_500_but_never_post() {
    let pki = pki();
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let srv = serve(
        &pki,
        false,
        Arc::new(move |r: &Req| {
            let n = h2.fetch_add(1, Ordering::SeqCst);
            match (r.method.as_str(), r.path.as_str()) {
                ("GET", "/api/v1/namespaces/dev/pods/throttled") if n == 0 => {
                    Resp::status(429, "TooManyRequests", "slow down").header("Retry-After", "1")
                }
                ("GET", "/api/v1/namespaces/dev/pods/flaky")
                    if r.q("attempt").is_none() && n < 3 =>
                {
                    Resp::status(500, "InternalError", "boom")
                }
                ("POST", _) => Resp::status(500, "InternalError", "boom"),
                ("DELETE", _) => Resp::status(503, "ServiceUnavailable", "down"),
                _ => Resp::json(200, ok_pod("x")),
            }
        }),
    );
    let dir = tmpdir("retry");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");

    let t0 = Instant::now();
    c.get(&PODS, Some("dev"), "throttled")
        .expect("retried after 429");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured"
    );
    assert_eq!(srv.count("GET", "/api/v1/namespaces/dev/pods/throttled"), 2);

    c.get(&PODS, Some("dev"), "flaky")
        .expect("retried after 500s");
    assert_eq!(srv.count("GET", "/api/v1/namespaces/dev/pods/flaky"), 2);

    let e = c
        .create(
            &CONFIG_MAPS,
            Some("dev"),
            &json!({"metadata":{"name":"cm"}}),
        )
        .expect_err("500");
    assert_eq!(
        srv.count("POST", "/api/v1/namespaces/dev/configmaps"),
        1,
        "POST never retried"
    );
    assert!(e
        .render()
        .contains("creating configmaps \"cm\" in namespace \"dev\": 500 InternalError: boom"));

    let e = c
        .delete(&PODS, Some("dev"), "gone", &DeleteOptions::default())
        .expect_err("503");
    assert_eq!(
        srv.count("DELETE", "/api/v1/namespaces/dev/pods/gone"),
        5,
        "1 + 4 retries"
    );
    assert_eq!(e.api().map(|a| a.code), Some(503));
}

#[test]
fn dropped_connections_are_retried_for_get_but_not_post() {
    let pki = pki();
    let gets = Arc::new(AtomicUsize::new(0));
    let g2 = gets.clone();
    let srv = serve(
        &pki,
        false,
        Arc::new(move |r: &Req| {
            let drop = Resp {
                status: 0,
                headers: vec![],
                body: Body::Drop,
            };
            match r.method.as_str() {
                "GET" if g2.fetch_add(1, Ordering::SeqCst) == 0 => drop,
                "GET" => Resp::json(200, ok_pod("web")),
                _ => drop,
            }
        }),
    );
    let dir = tmpdir("drop");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    c.get(&PODS, Some("dev"), "web")
        .expect("GET retried on a new connection");
    assert_eq!(srv.count("GET", "/api/v1/namespaces/dev/pods/web"), 2);
    let e = c
        .create(&PODS, Some("dev"), &json!({"metadata":{"name":"p"}}))
        .expect_err("dropped");
    assert_eq!(
        srv.count("POST", "/api/v1/namespaces/dev/pods"),
        1,
        "POST never retried"
    );
    assert!(e.render().contains("creating pods \"p\""), "{}", e.render());
}

#[test]
fn warnings_are_reported_once_each() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|_r: &Req| {
            Resp::json(200, ok_pod("w"))
                .header("Warning", "299 - \"policy/v1beta1 is deprecated\"")
                .header("Warning", "299 - \"second \\\"quoted\\\" one\"")
        }),
    );
    let dir = tmpdir("warn");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    c.set_warning_handler(move |w| s2.lock().expect("l").push(w.to_string()));
    c.get(&PODS, Some("dev"), "w").expect("get");
    c.clone()
        .get(&PODS, Some("dev"), "w")
        .expect("get again through a clone");
    assert_eq!(
        *seen.lock().expect("l"),
        vec![
            "policy/v1beta1 is deprecated".to_string(),
            "second \"quoted\" one".to_string()
        ]
    );
}

#[test]
fn api_errors_carry_hints_and_keep_their_kind() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|r: &Req| match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/api/v1/namespaces/ghost/pods") => Resp::json(
                404,
                json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"namespaces \"ghost\" not found","reason":"NotFound","details":{"name":"ghost","kind":"namespaces"},"code":404}),
            ),
            ("POST", "/api/v1/namespaces/dev/pods") => Resp::json(
                403,
                json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods is forbidden: User \"alice\" cannot create resource \"pods\" in API group \"\" in the namespace \"dev\"","reason":"Forbidden","details":{"kind":"pods"},"code":403}),
            ),
            ("POST", "/api/v1/namespaces/dev/configmaps") => Resp::json(
                409,
                json!({"kind":"Status","apiVersion":"v1","status":"Failure","message":"configmaps \"cm\" already exists","reason":"AlreadyExists","details":{"name":"cm","kind":"configmaps"},"code":409}),
            ),
            ("GET", "/api/v1/namespaces/dev/pods/nope") => {
                Resp::status(404, "NotFound", "pods \"nope\" not found")
            }
            ("GET", "/api/v1/namespaces") => Resp {
                status: 502,
                headers: vec![],
                body: Body::Full(b"<html>bad gateway</html>".to_vec()),
            },
            _ => Resp::json(200, json!({})),
        }),
    );
    let dir = tmpdir("errs");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    c.set_retry_policy(RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    });
    let pod = json!({"metadata":{"name":"p"}});

    let e = c.create(&PODS, Some("ghost"), &pod).expect_err("404");
    assert!(
        e.render()
            .contains("hint: namespace \"ghost\" does not exist"),
        "{}",
        e.render()
    );
    let e = c.create(&PODS, Some("dev"), &pod).expect_err("403");
    let r = e.render();
    assert!(
        r.contains("cannot create resource \\\"pods\\\"")
            || r.contains("cannot create resource \"pods\""),
        "{r}"
    );
    assert!(
        r.contains("hint: you may not create pods in namespace \"dev\""),
        "{r}"
    );
    let e = c
        .create(
            &CONFIG_MAPS,
            Some("dev"),
            &json!({"metadata":{"name":"cm"}}),
        )
        .expect_err("409");
    assert!(e.is_already_exists());
    assert!(e.render().contains("already exists in namespace \"dev\""));
    let e = c.get(&PODS, Some("dev"), "nope").expect_err("404");
    assert!(e.is_not_found());
    assert_eq!(
        c.get_opt(&PODS, Some("dev"), "nope").expect("404 is None"),
        None
    );
    let e = c
        .list(&NAMESPACES, None, &ListOptions::default())
        .expect_err("502");
    assert!(
        e.render().contains("502 Error: <html>bad gateway</html>"),
        "{}",
        e.render()
    );
}

#[test]
fn list_follows_continue_tokens_and_rest_verbs_hit_the_right_urls() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(
            |r: &Req| match (r.method.as_str(), r.path.as_str(), r.q("continue")) {
                ("GET", "/api/v1/namespaces/dev/pods", None) => Resp::json(
                    200,
                    json!({"kind":"PodList","metadata":{"resourceVersion":"7","continue":"c1"},"items":[{"metadata":{"name":"a"}}]}),
                ),
                ("GET", "/api/v1/namespaces/dev/pods", Some("c1")) => Resp::json(
                    200,
                    json!({"kind":"PodList","metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"b"}}]}),
                ),
                ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", _) => {
                    let body: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    let a = &body["spec"]["resourceAttributes"];
                    let allowed = a["verb"] == "create" && a["subresource"] == "exec";
                    Resp::json(201, json!({"status":{"allowed": allowed}}))
                }
                _ => Resp::json(200, json!({"kind":"Status","status":"Success"})),
            },
        ),
    );
    let dir = tmpdir("list");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let l = c
        .list(
            &PODS,
            Some("dev"),
            &ListOptions {
                label_selector: Some("app=x".into()),
                limit: Some(1),
                ..ListOptions::default()
            },
        )
        .expect("list");
    let names: Vec<&str> = l["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    assert!(l["metadata"].get("continue").is_none());
    let reqs = srv.requests();
    assert_eq!(reqs[1].q("labelSelector"), Some("app=x"));
    assert_eq!(reqs[1].q("limit"), Some("1"));

    assert!(c
        .can_i("create", "pods", Some("exec"), Some("dev"))
        .expect("ssar"));
    assert!(!c
        .can_i("get", "pods", Some("exec"), Some("dev"))
        .expect("ssar"));

    let obj = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm"}});
    c.apply(&CONFIG_MAPS, Some("dev"), "cm", &obj)
        .expect("apply");
    c.delete(
        &PODS,
        Some("dev"),
        "p",
        &DeleteOptions {
            grace_period_seconds: Some(1),
            propagation_policy: Some(request::Propagation::Background),
        },
    )
    .expect("delete returns a Status");
    let reqs = srv.requests();
    let apply = reqs.iter().find(|r| r.method == "PATCH").expect("patch");
    assert_eq!(apply.path, "/api/v1/namespaces/dev/configmaps/cm");
    assert_eq!(
        apply.header("content-type"),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        (apply.q("fieldManager"), apply.q("force")),
        (Some("kodama"), Some("true"))
    );
    let del = reqs.iter().find(|r| r.method == "DELETE").expect("delete");
    assert_eq!(
        (del.q("gracePeriodSeconds"), del.q("propagationPolicy")),
        (Some("1"), Some("Background"))
    );
}

// ------------------------------------------------------------------------------------------------
// Watch

fn pod_state(rv: &str, ready: bool, waiting: Option<&str>) -> Value {
    let mut p = json!({
        "metadata": {"name": "web", "namespace": "dev", "resourceVersion": rv, "uid": "u1"},
        "status": {
            "phase": if ready { "Running" } else { "Pending" },
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": if ready { "True" } else { "False" }}],
        }
    });
    if let Some(w) = waiting {
        p["status"]["containerStatuses"] = json!([{"name": "main", "state": {"waiting": {"reason": w, "message": format!("{w} details")}}}]);
    }
    p
}

/// A server for wait_for_pod: lists return `list_rv`s in turn; watches from a given RV answer with
/// what `on_watch` says.
fn watch_server(pki: &Pki, gone_over_http: bool) -> Server {
    let lists = Arc::new(AtomicUsize::new(0));
    serve(
        pki,
        false,
        Arc::new(move |r: &Req| {
            if r.path != "/api/v1/namespaces/dev/pods" {
                return Resp::json(200, json!({"items": []}));
            }
            if r.q("watch").is_none() {
                let n = lists.fetch_add(1, Ordering::SeqCst);
                let rv = if n == 0 { "10" } else { "20" };
                return Resp::json(
                    200,
                    json!({"kind":"PodList","metadata":{"resourceVersion": rv},"items":[pod_state(rv, false, Some("ContainerCreating"))]}),
                );
            }
            match r.q("resourceVersion") {
                Some("10") if gone_over_http => {
                    Resp::status(410, "Expired", "too old resource version: 10 (15)")
                }
                Some("10") => Resp::watch(vec![
                    json!({"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"11"}}}),
                    json!({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 11 (15)","reason":"Expired","code":410}}),
                ]),
                Some("20") => Resp::watch(vec![
                    json!({"type":"MODIFIED","object": pod_state("21", false, None)}),
                    json!({"type":"MODIFIED","object": pod_state("22", true, None)}),
                ]),
                _ => Resp::status(500, "InternalError", "unexpected watch"),
            }
        }),
    )
}

fn watch_calls(srv: &Server) -> Vec<String> {
    srv.requests()
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/dev/pods")
        .map(|r| match r.q("watch") {
            None => "list".to_string(),
            Some(_) => format!("watch@{}", r.q("resourceVersion").unwrap_or("-")),
        })
        .collect()
}

#[test]
fn wait_for_pod_relists_after_an_in_band_410() {
    let pki = pki();
    let srv = watch_server(&pki, false);
    let dir = tmpdir("w410");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let mut seen: Vec<PodProgress> = Vec::new();
    let pod = watch::wait_for_pod(
        &c,
        "dev",
        "web",
        Instant::now() + Duration::from_secs(20),
        &mut |p| seen.push(p.clone()),
    )
    .expect("ready");
    assert_eq!(pod["metadata"]["resourceVersion"], "22");
    assert_eq!(
        watch_calls(&srv),
        vec!["list", "watch@10", "list", "watch@20"]
    );
    let w = srv
        .requests()
        .into_iter()
        .find(|r| r.q("watch").is_some())
        .expect("watch");
    assert_eq!(w.q("fieldSelector"), Some("metadata.name=web"));
    assert_eq!(w.q("allowWatchBookmarks"), Some("true"));
    assert!(w.q("timeoutSeconds").is_some());
    assert_eq!(
        seen.first()
            .and_then(|p| p.waiting_reason.clone())
            .as_deref(),
        Some("ContainerCreating")
    );
    assert!(seen.last().is_some_and(|p| p.ready));
}

#[test]
fn wait_for_pod_relists_after_an_http_410() {
    let pki = pki();
    let srv = watch_server(&pki, true);
    let dir = tmpdir("w410h");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    watch::wait_for_pod(
        &c,
        "dev",
        "web",
        Instant::now() + Duration::from_secs(20),
        &mut |_| {},
    )
    .expect("ready");
    assert_eq!(
        watch_calls(&srv),
        vec!["list", "watch@10", "list", "watch@20"]
    );
}

#[test]
fn watch_reconnects_from_the_last_resource_version_when_the_stream_ends() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|r: &Req| {
            if r.q("watch").is_none() {
                return Resp::json(200, json!({"metadata":{"resourceVersion":"1"},"items":[]}));
            }
            match r.q("resourceVersion") {
                Some("1") => Resp::watch(vec![
                    json!({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"2"}}}),
                ]),
                Some("2") => Resp::watch(vec![
                    json!({"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"3"}}}),
                ]),
                _ => Resp::status(500, "InternalError", "unexpected"),
            }
        }),
    );
    let dir = tmpdir("wre");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let mut kinds = Vec::new();
    let got = watch::watch_until(
        &c,
        &CONFIG_MAPS,
        Some("dev"),
        &WatchTarget::default(),
        Instant::now() + Duration::from_secs(20),
        &mut |ev| {
            kinds.push(ev.kind);
            Ok((ev.kind == EventType::Deleted).then_some(()))
        },
    )
    .expect("watch");
    assert_eq!(got, Some(()));
    assert_eq!(
        kinds,
        vec![EventType::Synced, EventType::Added, EventType::Deleted]
    );
}

#[test]
fn wait_for_pod_fails_fast_with_waiting_reason_and_events() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|r: &Req| match r.path.as_str() {
            "/api/v1/namespaces/dev/pods" => Resp::json(
                200,
                json!({"metadata":{"resourceVersion":"5"},"items":[pod_state("5", false, Some("ImagePullBackOff"))]}),
            ),
            "/api/v1/namespaces/dev/events" => Resp::json(
                200,
                json!({"items":[
                    {"type":"Normal","reason":"Scheduled","message":"assigned","lastTimestamp":"2026-01-01T00:00:00Z"},
                    {"type":"Warning","reason":"Failed","message":"Failed to pull image \"nope:1\"","count":3,"lastTimestamp":"2026-01-01T00:00:05Z"}
                ]}),
            ),
            _ => Resp::status(404, "NotFound", "nope"),
        }),
    );
    let dir = tmpdir("wfail");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let t0 = Instant::now();
    let e = watch::wait_for_pod(
        &c,
        "dev",
        "web",
        Instant::now() + Duration::from_secs(30),
        &mut |_| {},
    )
    .expect_err("image pull fails");
    assert!(t0.elapsed() < Duration::from_secs(5), "fails fast");
    let r = e.render();
    assert!(
        r.contains("pod \"web\" in namespace \"dev\" cannot start: ImagePullBackOff"),
        "{r}"
    );
    assert!(
        r.contains("event Failed: Failed to pull image \"nope:1\" (x3)"),
        "{r}"
    );
    assert!(!r.contains("Scheduled"), "only Warning events: {r}");
    assert!(r.contains("hint: check the image name"), "{r}");
    let ev = srv
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/events"))
        .expect("events listed");
    assert_eq!(
        ev.q("fieldSelector"),
        Some("involvedObject.kind=Pod,involvedObject.name=web,involvedObject.uid=u1")
    );
}

#[test]
fn wait_for_pod_times_out_at_the_deadline() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|r: &Req| {
            if r.path.ends_with("/events") {
                return Resp::json(200, json!({"items":[]}));
            }
            if r.q("watch").is_some() {
                // A watch that ends at once without events; the client must not spin.
                return Resp::watch(vec![]);
            }
            Resp::json(
                200,
                json!({"metadata":{"resourceVersion":"5"},"items":[pod_state("5", false, Some("ContainerCreating"))]}),
            )
        }),
    );
    let dir = tmpdir("wto");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let t0 = Instant::now();
    let e = watch::wait_for_pod(
        &c,
        "dev",
        "web",
        Instant::now() + Duration::from_secs(2),
        &mut |_| {},
    )
    .expect_err("deadline");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let r = e.render();
    assert!(
        r.contains(
            "did not become ready before the deadline: phase Pending, waiting: ContainerCreating"
        ),
        "{r}"
    );
    let watches = srv
        .requests()
        .iter()
        .filter(|r| r.q("watch").is_some())
        .count();
    assert!(
        watches < 15,
        "backs off between empty streams ({watches} watches)"
    );
}

// ------------------------------------------------------------------------------------------------
// Proxy and raw streams

/// A tiny HTTP CONNECT proxy; records the CONNECT targets.
fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let seen = s2.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if c.read(&mut b).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let target = text.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().expect("l").push(target.clone());
                let Ok(up) = TcpStream::connect(&target) else {
                    let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                };
                let _ = c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut a, mut b2) = (
                    c.try_clone().expect("clone"),
                    up.try_clone().expect("clone"),
                );
                let mut up2 = up;
                let mut c2 = c;
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut a, &mut up2);
                    let _ = up2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut b2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, seen)
}

fn raw_get(
    stream: &mut kodama::kube::transport::KubeStream,
    host: &str,
    path: &str,
    auth: &[(String, kodama::secret::Secret)],
) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in auth {
        req.push_str(&format!("{k}: {}\r\n", v.expose()));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("write");
    stream.flush().expect("flush");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn proxy_url_tunnels_rest_and_raw_streams() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let (pport, seen) = connect_proxy();
    let dir = tmpdir("proxy");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}/prefix", srv.port),
        &format!(
            "{}    proxy-url: http://127.0.0.1:{pport}\n",
            ca_line(&pki.ca_pem)
        ),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    c.get(&PODS, Some("dev"), "web").expect("through proxy");
    assert_eq!(
        srv.requests()[0].path,
        "/prefix/api/v1/namespaces/dev/pods/web",
        "path prefix kept"
    );
    let t = c.transport();
    let url = t.url_for("/api/v1/namespaces/dev/pods/web/exec?command=sh");
    assert_eq!(
        url,
        format!(
            "https://127.0.0.1:{}/prefix/api/v1/namespaces/dev/pods/web/exec?command=sh",
            srv.port
        )
    );
    let mut s = t.connect_stream().expect("raw stream");
    let resp = raw_get(
        &mut s,
        &t.server().authority,
        "/prefix/raw",
        &t.auth_headers().expect("auth"),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let raw = srv
        .requests()
        .into_iter()
        .find(|r| r.path == "/prefix/raw")
        .expect("raw request");
    assert_eq!(raw.bearer(), Some("t"));
    let targets = seen.lock().expect("l").clone();
    assert!(targets.len() >= 2, "{targets:?}");
    assert!(targets
        .iter()
        .all(|t| *t == format!("127.0.0.1:{}", srv.port)));
}

#[test]
fn raw_stream_without_proxy_uses_the_same_tls_and_client_cert() {
    let pki = pki();
    let srv = serve(
        &pki,
        true,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("raw");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &format!("{}    tls-server-name: kubernetes\n", ca_line(&pki.ca_pem)),
        &format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&pki.client_cert_pem),
            b64(&pki.client_key_pem)
        ),
    );
    let c = client_for(&kc).expect("client");
    let t = c.transport();
    let mut s = t.connect_stream().expect("stream");
    let resp = raw_get(
        &mut s,
        &t.server().authority,
        "/raw",
        &t.auth_headers().expect("auth"),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(srv.requests()[0].client_cert);
    assert!(
        !t.refresh_after_unauthorized(),
        "static credentials cannot be refreshed"
    );
}

#[test]
fn in_cluster_service_account_with_token_rotation() {
    let pki = pki();
    let (srv, accepted) = serve_accepting_bearer(&pki, "sa-1");
    let sa = tmpdir("sa");
    std::fs::write(sa.join("token"), "sa-1").expect("w");
    std::fs::write(sa.join("ca.crt"), &pki.ca_pem).expect("w");
    std::fs::write(sa.join("namespace"), "team-x\n").expect("w");
    let env = LoadEnv {
        service_host: Some("127.0.0.1".into()),
        service_port: Some(srv.port.to_string()),
        sa_dir: sa.clone(),
        ..LoadEnv::default()
    };
    let cfg = load_with(&Overrides::default(), &env).expect("in-cluster config");
    let c = Client::new(cfg).expect("client");
    assert_eq!(c.namespace(), "team-x");
    c.get(&PODS, Some(c.namespace()), "web").expect("sa token");
    // The kubelet rotates the projected token.
    std::fs::write(sa.join("token"), "sa-2").expect("w");
    *accepted.lock().expect("l") = "sa-2".into();
    c.get(&PODS, Some("team-x"), "web")
        .expect("rotated token re-read after 401");
    let reqs = srv.requests();
    assert_eq!(reqs.last().and_then(|r| r.bearer()), Some("sa-2"));
    assert_eq!(reqs[0].path, "/api/v1/namespaces/team-x/pods/web");
}

#[test]
fn client_is_clone_send_and_sync() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    fn assert_stream<T: Read + Write + Send>() {}
    assert_traits::<Client>();
    assert_stream::<kodama::kube::transport::KubeStream>();
}

#[test]
fn wait_for_pod_reports_missing_and_deleted_pods() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|r: &Req| {
            if r.path.ends_with("/events") {
                return Resp::json(200, json!({"items":[]}));
            }
            let sel = r.q("fieldSelector").unwrap_or("");
            if sel == "metadata.name=ghost" {
                return Resp::json(200, json!({"metadata":{"resourceVersion":"3"},"items":[]}));
            }
            if r.q("watch").is_some() {
                return Resp::watch(vec![
                    json!({"type":"DELETED","object": pod_state("6", false, None)}),
                ]);
            }
            Resp::json(
                200,
                json!({"metadata":{"resourceVersion":"5"},"items":[pod_state("5", false, None)]}),
            )
        }),
    );
    let dir = tmpdir("wdel");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    let e = watch::wait_for_pod(&c, "dev", "ghost", deadline, &mut |_| {}).expect_err("missing");
    assert!(
        e.to_string()
            .contains("pod \"ghost\" in namespace \"dev\" does not exist"),
        "{e}"
    );
    assert!(e.render().contains("kubectl get pods -n dev"));
    let e = watch::wait_for_pod(&c, "dev", "web", deadline, &mut |_| {}).expect_err("deleted");
    assert!(
        e.to_string()
            .contains("pod \"web\" in namespace \"dev\" was deleted"),
        "{e}"
    );
}

#[test]
fn a_server_that_always_answers_410_is_not_hammered() {
    let pki = pki();
    let srv = serve(
        &pki,
        false,
        Arc::new(|r: &Req| {
            if r.path.ends_with("/events") {
                return Resp::json(200, json!({"items":[]}));
            }
            if r.q("watch").is_some() {
                return Resp::status(410, "Expired", "too old resource version");
            }
            Resp::json(
                200,
                json!({"metadata":{"resourceVersion":"5"},"items":[pod_state("5", false, None)]}),
            )
        }),
    );
    let dir = tmpdir("w410loop");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let e = watch::wait_for_pod(
        &c,
        "dev",
        "web",
        Instant::now() + Duration::from_secs(2),
        &mut |_| {},
    )
    .expect_err("deadline");
    assert!(
        e.to_string()
            .contains("did not become ready before the deadline"),
        "{e}"
    );
    let lists = srv
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pods") && r.q("watch").is_none())
        .count();
    assert!((2..15).contains(&lists), "relists back off ({lists} lists)");
}

// ------------------------------------------------------------------------------------------------
// Static openssl-made fixtures (fixtures/kubeconfig/tls/gen.sh): key formats, chains, X.509 v1

fn tls_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/kubeconfig/tls")
        .join(name)
}

fn fixture_pki(server: &str) -> Pki {
    let read = |n: &str| std::fs::read_to_string(tls_fixture(n)).expect("fixture");
    Pki {
        ca_pem: read("ca.crt"),
        server_cert_pem: read(&format!("{server}.crt")),
        server_key_pem: read(&format!("{server}.key")),
        client_cert_pem: String::new(),
        client_key_pem: String::new(),
        bob_cert_pem: String::new(),
        bob_key_pem: String::new(),
        other_ca_pem: String::new(),
    }
}

#[test]
fn client_keys_in_pkcs1_sec1_and_pkcs8_with_full_chains() {
    let pki = fixture_pki("server");
    let srv = serve(
        &pki,
        true,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("keys");
    for (crt, key) in [
        ("client-ec.crt", "client-ec.key"),
        ("client-rsa.crt", "client-rsa.key"),
        ("client-chain.crt", "client-chain.key"),
    ] {
        let kc = kubeconfig(
            &dir,
            &format!("https://127.0.0.1:{}", srv.port),
            &format!(
                "    certificate-authority: {}\n",
                tls_fixture("ca.crt").display()
            ),
            &format!(
                "    client-certificate: {}\n    client-key: {}\n",
                tls_fixture(crt).display(),
                tls_fixture(key).display()
            ),
        );
        client_for(&kc)
            .expect("client")
            .get(&PODS, Some("dev"), "web")
            .unwrap_or_else(|e| panic!("{crt}: {}", e.render()));
    }
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.client_cert));
}

#[test]
fn mismatched_client_key_is_an_error_not_a_panic() {
    let pki = fixture_pki("server");
    let srv = serve(
        &pki,
        true,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("mismatch");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &format!(
            "    certificate-authority: {}\n",
            tls_fixture("ca.crt").display()
        ),
        &format!(
            "    client-certificate: {}\n    client-key: {}\n",
            tls_fixture("client-ec.crt").display(),
            tls_fixture("client-rsa.key").display()
        ),
    );
    let e = client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect_err("mismatch");
    let r = e.render();
    assert!(
        r.contains("client certificate and key cannot be used"),
        "{r}"
    );
}

#[test]
fn x509_v1_server_certificate_is_explained() {
    let pki = fixture_pki("server-v1");
    let srv = serve(
        &pki,
        false,
        Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))),
    );
    let dir = tmpdir("v1");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &format!(
            "    certificate-authority: {}\n",
            tls_fixture("ca.crt").display()
        ),
        &token_user("t"),
    );
    let e = client_for(&kc)
        .expect("client")
        .get(&PODS, Some("dev"), "web")
        .expect_err("v1");
    let r = e.render();
    assert!(r.contains("X.509 v1"), "{r}");
}

/// A plain-HTTP server (like `kubectl proxy`).
fn serve_plain(handler: Handler) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let journal = Arc::new(Mutex::new(Vec::new()));
    let j = journal.clone();
    std::thread::spawn(move || {
        for (id, s) in listener.incoming().enumerate() {
            let Ok(s) = s else { continue };
            let (handler, j) = (handler.clone(), j.clone());
            std::thread::spawn(move || serve_conn(s, id, Vec::new(), &handler, &j));
        }
    });
    Server { port, journal }
}

#[test]
fn plain_http_servers_work_for_rest_and_raw_streams() {
    let srv = serve_plain(Arc::new(|_r: &Req| Resp::json(200, ok_pod("web"))));
    let dir = tmpdir("plain");
    let kc = kubeconfig(
        &dir,
        &format!("http://127.0.0.1:{}", srv.port),
        "",
        "    {}\n",
    );
    let c = client_for(&kc).expect("client");
    c.get(&PODS, Some("dev"), "web").expect("plain get");
    let t = c.transport();
    let mut s = t.connect_stream().expect("plain stream");
    assert!(matches!(s, kodama::kube::transport::KubeStream::Plain(_)));
    let resp = raw_get(
        &mut s,
        &t.server().authority,
        "/raw",
        &t.auth_headers().expect("auth"),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(srv
        .requests()
        .iter()
        .all(|r| r.header("authorization").is_none()));
}

#[test]
fn transient_in_band_watch_errors_reconnect_but_forbidden_fails() {
    let pki = pki();
    let watches = Arc::new(AtomicUsize::new(0));
    let w2 = watches.clone();
    let srv = serve(
        &pki,
        false,
        Arc::new(move |r: &Req| {
            if r.q("watch").is_none() {
                return Resp::json(200, json!({"metadata":{"resourceVersion":"1"},"items":[]}));
            }
            if r.path.contains("/secrets") {
                return Resp::watch(vec![
                    json!({"type":"ERROR","object":{"kind":"Status","status":"Failure","reason":"Forbidden","message":"no","code":403}}),
                ]);
            }
            match w2.fetch_add(1, Ordering::SeqCst) {
                0 => Resp::watch(vec![
                    json!({"type":"ERROR","object":{"kind":"Status","status":"Failure","reason":"InternalError","message":"etcd hiccup","code":500}}),
                ]),
                _ => Resp::watch(vec![
                    json!({"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"2"}}}),
                ]),
            }
        }),
    );
    let dir = tmpdir("wtrans");
    let kc = kubeconfig(
        &dir,
        &format!("https://127.0.0.1:{}", srv.port),
        &ca_line(&pki.ca_pem),
        &token_user("t"),
    );
    let c = client_for(&kc).expect("client");
    let deadline = Instant::now() + Duration::from_secs(20);
    let got = watch::watch_until(
        &c,
        &CONFIG_MAPS,
        Some("dev"),
        &WatchTarget::default(),
        deadline,
        &mut |ev| Ok((ev.kind == EventType::Added).then(|| ev.object["metadata"]["name"].clone())),
    )
    .expect("reconnected");
    assert_eq!(got, Some(json!("a")));
    let rvs: Vec<Option<String>> = srv
        .requests()
        .iter()
        .filter(|r| r.q("watch").is_some())
        .map(|r| r.q("resourceVersion").map(String::from))
        .collect();
    assert_eq!(
        rvs,
        vec![Some("1".to_string()), Some("1".to_string())],
        "resumed from the same RV, no relist"
    );
    let e = watch::watch_until(
        &c,
        &kodama::kube::resource::SECRETS,
        Some("dev"),
        &WatchTarget::default(),
        deadline,
        &mut |_ev| Ok(None::<()>),
    )
    .expect_err("forbidden");
    assert!(e.api().is_some_and(|a| a.is_forbidden()));
}
