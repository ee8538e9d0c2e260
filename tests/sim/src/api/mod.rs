//! The simulated API server: HTTPS listener, auth, discovery, object store, watch, validation,
//! patches, fault injection, request journal, and the in-process/standalone harness
//! (`SimCluster`).
//!
//! May import: contract, kubelet (only `kubelet::new`).

pub mod auth;
pub mod certs;
pub mod client;
pub mod fake_kubelet;
pub mod faults;
pub mod handlers;
pub mod http;
pub mod patch;
pub mod proto;
pub mod resources;
pub mod selectors;
pub mod server;
pub mod store;
pub mod util;
pub mod validate;

pub use auth::{ADMIN_USER, CERT_GROUP, CERT_USER, RESTRICTED_USER};
pub use faults::JournalEntry;

use crate::contract::{ClusterState, Json, Kubelet, KubeletConfig};
use base64::Engine;
use certs::{CertKey, Pki};
use serde_json::json;
use server::{Api, ApiConfig, Listener};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;

/// Which kubelet runs the pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletKind {
    /// The real simulated kubelet (`crate::kubelet::new`): local processes, volumes, exec.
    Real,
    /// The API-only fake (`api::fake_kubelet`): pods become Running/Ready, no processes.
    Fake,
}

/// Options of a simulated cluster.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Data directory (PVCs, emptyDirs, homes, logs, kubeconfigs). Default: a fresh directory
    /// under `std::env::temp_dir()` (mode 0755), removed on stop.
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory on stop even when it was created by us.
    pub keep_data_dir: bool,
    /// Port on 127.0.0.1 (0 = pick a free one).
    pub port: u16,
    /// Delay between scheduling and Running/Ready.
    pub start_delay: Duration,
    /// Node allocatable CPU (millicores) and memory (bytes), and extended resources.
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub extended: Vec<(String, u64)>,
    /// Whether a default StorageClass ("standard") exists: new PVCs bind after `provision_delay`.
    pub default_storage_class: bool,
    pub provision_delay: Duration,
    /// Namespaces to create at start (besides default, kube-system, kube-public and the
    /// restricted user's namespace).
    pub namespaces: Vec<String>,
    /// The only namespace the restricted user may use.
    pub restricted_namespace: String,
    pub kubelet: KubeletKind,
    /// Watch history window (events); resuming from before it gives 410 Expired.
    pub watch_history: usize,
    /// Idle interval between BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    pub node_name: String,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            data_dir: None,
            keep_data_dir: false,
            port: 0,
            start_delay: Duration::from_millis(200),
            cpu_millis: 4000,
            memory_bytes: 8 * 1024 * 1024 * 1024,
            extended: Vec::new(),
            default_storage_class: true,
            provision_delay: Duration::from_millis(100),
            namespaces: Vec::new(),
            restricted_namespace: "restricted".into(),
            kubelet: KubeletKind::Real,
            watch_history: 1000,
            bookmark_interval: Duration::from_secs(5),
            node_name: "sim-node".into(),
        }
    }
}

impl SimOptions {
    /// Defaults with the fake kubelet (API-only tests).
    pub fn fake() -> SimOptions {
        SimOptions {
            kubelet: KubeletKind::Fake,
            ..Default::default()
        }
    }
}

/// Writes the kubeconfig files (again after a token rotation).
struct Kubeconfigs {
    dir: PathBuf,
    server: String,
    ca_pem: String,
    cert: CertKey,
    restricted_ns: String,
}

impl Kubeconfigs {
    fn path(&self, user: &str) -> PathBuf {
        if user == ADMIN_USER {
            self.dir.join("kubeconfig")
        } else {
            self.dir.join(format!("kubeconfig-{user}"))
        }
    }

    fn token_file(&self, user: &str) -> PathBuf {
        self.dir.join(format!("token-{user}"))
    }

    fn write_all(&self, auth: &auth::Auth) -> io::Result<()> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        for user in [ADMIN_USER, CERT_USER, RESTRICTED_USER] {
            let user_entry = if user == CERT_USER {
                json!({"client-certificate-data": b64(&self.cert.cert_pem), "client-key-data": b64(&self.cert.key_pem)})
            } else {
                let tok = auth.token_of(user).unwrap_or_else(|| "expired".into());
                write_private(&self.token_file(user), tok.as_bytes())?;
                json!({"token": tok})
            };
            let mut ctx = json!({"cluster": "kodama-sim", "user": user});
            if user == RESTRICTED_USER {
                ctx["namespace"] = json!(self.restricted_ns);
            }
            let cfg = json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kodama-sim", "cluster": {"server": self.server, "certificate-authority-data": b64(&self.ca_pem)}}],
                "users": [{"name": user, "user": user_entry}],
                "contexts": [{"name": format!("kodama-sim-{user}"), "context": ctx}],
                "current-context": format!("kodama-sim-{user}"),
            });
            let text = yaml_serde::to_string(&cfg)
                .map_err(|e| io::Error::other(format!("kubeconfig YAML: {e}")))?;
            write_private(&self.path(user), text.as_bytes())?;
        }
        Ok(())
    }
}

/// Write a file readable only by its owner (it holds credentials), atomically.
fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        io::Write::write_all(&mut f, data)?;
    }
    std::fs::rename(&tmp, path)
}

/// Fault injection, thread-safe; cloneable.
#[derive(Clone)]
pub struct Faults {
    api: Arc<Api>,
    kubeconfigs: Arc<Kubeconfigs>,
}

impl Faults {
    /// Fail the next `n` requests whose method matches (None = any) and whose `path?query`
    /// contains `path_contains`, with `code` (e.g. 500, 503) and a matching Status.
    pub fn fail_next(&self, method: Option<&str>, path_contains: &str, n: usize, code: u16) {
        self.api
            .faults
            .add_fail(method, path_contains, n, code, None);
    }
    /// Like `fail_next` with 429 TooManyRequests and a `Retry-After: secs` header.
    pub fn throttle_next(
        &self,
        method: Option<&str>,
        path_contains: &str,
        n: usize,
        retry_after_secs: u64,
    ) {
        self.api
            .faults
            .add_fail(method, path_contains, n, 429, Some(retry_after_secs));
    }
    /// Add `delay` to every matching request (until `clear`).
    pub fn add_latency(&self, method: Option<&str>, path_contains: &str, delay: Duration) {
        self.api.faults.add_latency(method, path_contains, delay);
    }
    /// Cut the next matching exec/attach/port-forward/log stream after `bytes` bytes sent to the
    /// client (the connection is shut down).
    pub fn drop_stream_after(&self, path_contains: &str, bytes: u64) {
        self.api.faults.add_drop(path_contains, bytes);
    }
    /// The next watch whose `path?query` contains `path_contains` gets an in-band `ERROR` event
    /// with a 410 Expired Status and ends (as when its resourceVersion is too old).
    pub fn expire_next_watch(&self, path_contains: &str) {
        self.api.faults.add_watch_expiry(path_contains);
    }
    /// Remove every request rule (fail, latency, drop, watch expiry).
    pub fn clear(&self) {
        self.api.faults.clear();
    }
    /// Invalidate a token user's token: requests with it get 401. The kubeconfig keeps it.
    pub fn expire_token(&self, user: &str) {
        self.api.auth.expire(user);
    }
    /// Give a token user a new token (old → 401); the kubeconfig and token file are rewritten.
    pub fn rotate_token(&self, user: &str) -> io::Result<()> {
        self.api.auth.rotate(user);
        self.kubeconfigs.write_all(&self.api.auth)
    }
    /// Kill every process of a pod, as if its containers crashed.
    pub fn kill_pod_processes(&self, namespace: &str, pod: &str) {
        self.api.kubelet.kill_pod_processes(namespace, pod);
    }
    /// Delete a pod through the API (graceful, like `kubectl delete pod`), e.g. under a running
    /// session. Returns the pod as the DELETE returned it, or the error Status.
    pub fn delete_pod(
        &self,
        namespace: &str,
        pod: &str,
        grace_seconds: Option<i64>,
    ) -> Result<Json, Json> {
        handlers::delete_pod(&self.api, namespace, pod, grace_seconds).map_err(|e| e.status)
    }
}

/// A running simulated cluster.
pub struct SimCluster {
    api: Arc<Api>,
    listener: Mutex<Option<Listener>>,
    port: u16,
    dir: PathBuf,
    remove_dir: bool,
    kubeconfigs: Arc<Kubeconfigs>,
    pki: Pki,
    stopped: AtomicBool,
    gc_stop: Arc<AtomicBool>,
}

fn fresh_dir() -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let d = base.join(format!(
            "kodama-sim-{}-{:08x}",
            std::process::id(),
            util::random_u64() as u32
        ));
        match std::fs::create_dir(&d) {
            Ok(()) => {
                std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
                return Ok(d);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "could not create a fresh data directory under the temp dir",
    ))
}

impl SimCluster {
    /// Start a cluster: certificates, store, kubelet, HTTPS listener, kubeconfigs.
    pub fn start(opts: SimOptions) -> io::Result<SimCluster> {
        let (dir, remove_dir) = match &opts.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), false)
            }
            None => (fresh_dir()?, !opts.keep_data_dir),
        };
        let pki = Pki::generate()?;
        let cert = pki.client_cert(CERT_USER, CERT_GROUP)?;
        let store = Arc::new(Store::new(opts.watch_history, &opts.node_name));
        let kdir = dir.join("kubelet");
        std::fs::create_dir_all(&kdir)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&kdir, std::fs::Permissions::from_mode(0o755))?;
        }
        let kconf = KubeletConfig {
            data_dir: kdir,
            start_delay: opts.start_delay,
            cpu_millis: opts.cpu_millis,
            memory_bytes: opts.memory_bytes,
            extended: opts.extended.clone(),
            node_name: opts.node_name.clone(),
        };
        let state: Arc<dyn ClusterState> = store.clone();
        let kubelet: Arc<dyn Kubelet> = match opts.kubelet {
            KubeletKind::Real => crate::kubelet::new(state, kconf),
            KubeletKind::Fake => fake_kubelet::new(state, kconf),
        };
        let config = ApiConfig {
            default_storage_class: opts.default_storage_class,
            provision_delay: opts.provision_delay,
            bookmark_interval: opts.bookmark_interval,
            node_name: opts.node_name.clone(),
            restricted_namespace: opts.restricted_namespace.clone(),
        };
        let api = Api::new(
            store,
            auth::Auth::new(&opts.restricted_namespace),
            kubelet,
            config,
            &pki,
        )?;
        let mut namespaces: Vec<String> = ["default", "kube-system", "kube-public"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        namespaces.push(opts.restricted_namespace.clone());
        namespaces.extend(opts.namespaces.iter().cloned());
        for ns in namespaces {
            match handlers::create_as_admin(
                &api,
                "namespaces",
                "",
                json!({"metadata": {"name": ns}}),
            ) {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => {
                    return Err(io::Error::other(format!(
                        "creating namespace {ns}: {}",
                        e.status["message"]
                    )))
                }
            }
        }
        let gc_stop = Arc::new(AtomicBool::new(false));
        {
            let (weak, stop) = (Arc::downgrade(&api), gc_stop.clone());
            std::thread::Builder::new()
                .name("sim-gc".into())
                .spawn(move || handlers::gc_loop(weak, stop))?;
        }
        let listener = Listener::start(api.clone(), opts.port)?;
        let port = listener.addr.port();
        let kubeconfigs = Arc::new(Kubeconfigs {
            dir: dir.clone(),
            server: format!("https://127.0.0.1:{port}"),
            ca_pem: pki.ca_pem.clone(),
            cert,
            restricted_ns: opts.restricted_namespace.clone(),
        });
        kubeconfigs.write_all(&api.auth)?;
        Ok(SimCluster {
            api,
            listener: Mutex::new(Some(listener)),
            port,
            dir,
            remove_dir,
            kubeconfigs,
            pki,
            stopped: AtomicBool::new(false),
            gc_stop,
        })
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The cluster CA (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
    /// The admin kubeconfig.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.kubeconfigs.path(ADMIN_USER)
    }
    /// The kubeconfig of `ADMIN_USER`, `CERT_USER` or `RESTRICTED_USER` (whose context
    /// namespace is the restricted namespace).
    pub fn kubeconfig_for(&self, user: &str) -> io::Result<PathBuf> {
        if ![ADMIN_USER, CERT_USER, RESTRICTED_USER].contains(&user) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no simulated user {user:?}"),
            ));
        }
        Ok(self.kubeconfigs.path(user))
    }
    /// The file holding a token user's current token (rewritten on rotation).
    pub fn token_file_for(&self, user: &str) -> PathBuf {
        self.kubeconfigs.token_file(user)
    }
    /// A token user's current token.
    pub fn token(&self, user: &str) -> Option<String> {
        self.api.auth.token_of(user)
    }
    /// The client certificate and key (PEM) of `CERT_USER`.
    pub fn cert_user_pem(&self) -> (&str, &str) {
        (
            &self.kubeconfigs.cert.cert_pem,
            &self.kubeconfigs.cert.key_pem,
        )
    }
    pub fn faults(&self) -> Faults {
        Faults {
            api: self.api.clone(),
            kubeconfigs: self.kubeconfigs.clone(),
        }
    }
    /// Every request received so far, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.api
            .journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn clear_journal(&self) {
        self.api
            .journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
    /// Direct access to the object store (as the kubelet sees it).
    pub fn state(&self) -> Arc<dyn ClusterState> {
        self.api.store.clone()
    }
    /// Read an object directly from the store.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Json> {
        self.api.store.get(resource, namespace, name)
    }
    /// Create an object directly (admin, no HTTP, no journal entry). Errors are Status objects.
    pub fn create(&self, resource: &str, namespace: &str, obj: Json) -> Result<Json, Json> {
        handlers::create_as_admin(&self.api, resource, namespace, obj).map_err(|e| e.status)
    }
    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.api.store.read().rv
    }

    /// Restart the API server on the same state: close the listener and every open connection
    /// (watches and streams end), then listen again on the same port. Store and kubelet are kept.
    pub fn restart_api(&self) -> io::Result<()> {
        let mut guard = self.listener.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut l) = guard.take() {
            l.stop();
        }
        self.api.store.bump_epoch();
        self.api.close_all_connections();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match Listener::start(self.api.clone(), self.port) {
                Ok(l) => {
                    *guard = Some(l);
                    return Ok(());
                }
                Err(e)
                    if std::time::Instant::now() < deadline
                        && e.kind() == io::ErrorKind::AddrInUse =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Stop everything: listener, connections, every pod process; remove our data directory.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(mut l) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            l.stop();
        }
        self.api.store.bump_epoch();
        self.api.close_all_connections();
        self.api.kubelet.shutdown();
        self.gc_stop.store(true, Ordering::SeqCst);
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
