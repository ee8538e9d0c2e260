//! Shared helpers of the kubelet tests: a kubelet on an in-memory cluster state, pod helpers, and a
//! small WebSocket client for the streaming subresources.
#![allow(dead_code)]

use kodama_sim::contract::{Json, Kubelet, KubeletConfig};
use kodama_sim::kubelet::fake::{stream_server, MemState};
use serde_json::json;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

pub const NS: &str = "default";
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub struct H {
    pub state: Arc<MemState>,
    pub kubelet: Arc<dyn Kubelet>,
    pub dir: PathBuf,
    stream_port: std::sync::OnceLock<u16>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Fail loudly when the tests cannot create mount namespaces (never skip).
pub fn require_root() {
    // SAFETY: plain syscall.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the simulated kubelet tests need root (CAP_SYS_ADMIN) to create a mount namespace per \
         pod; run `cargo test -p kodama-sim` as root (CI runs in a privileged container)"
    );
}

impl H {
    pub fn new(name: &str) -> H {
        Self::with_config(name, |_| {})
    }

    pub fn with_config(name: &str, f: impl FnOnce(&mut KubeletConfig)) -> H {
        require_root();
        let dir = std::env::temp_dir().join(format!(
            "kodama-kubelet-{name}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("test dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut cfg = KubeletConfig {
            data_dir: dir.join("data"),
            start_delay: Duration::from_millis(50),
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            extended: vec![("nvidia.com/gpu".into(), 1)],
            node_name: "sim-node".into(),
        };
        f(&mut cfg);
        let state = MemState::new();
        let kubelet = kodama_sim::kubelet::new(state.clone(), cfg);
        H {
            state,
            kubelet,
            dir,
            stream_port: std::sync::OnceLock::new(),
        }
    }

    /// A path inside the test dir (for mountPaths, so the host is not touched elsewhere).
    pub fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// A world-readable fixture file.
    pub fn fixture(&self, rel: &str, content: &str, mode: u32) -> String {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write fixture");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p.display().to_string()
    }

    pub fn put(&self, resource: &str, obj: Json) {
        self.state.put(resource, obj);
    }

    /// Create a pod (namespace/uid filled in) and tell the kubelet.
    pub fn create(&self, mut pod: Json) {
        if pod["metadata"]["namespace"].is_null() {
            pod["metadata"]["namespace"] = json!(NS);
        }
        pod["metadata"]["uid"] = json!(format!(
            "uid-{}-{}",
            pod["metadata"]["name"].as_str().unwrap_or(""),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        self.state.put("pods", pod.clone());
        self.kubelet.pod_changed(&pod);
    }

    /// DELETE with a grace period: set deletionTimestamp and tell the kubelet.
    pub fn delete(&self, name: &str, grace: u64) {
        use kodama_sim::contract::ClusterState;
        let mut pod = self.state.get("pods", NS, name).expect("pod exists");
        pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        self.state.put("pods", pod.clone());
        self.kubelet.pod_changed(&pod);
    }

    pub fn pod(&self, name: &str) -> Option<Json> {
        use kodama_sim::contract::ClusterState;
        self.state.get("pods", NS, name)
    }

    /// Wait until the pod satisfies `pred`; panics with the last status.
    pub fn wait_pod(&self, name: &str, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
        self.wait_pod_for(name, what, TIMEOUT, pred)
    }

    pub fn wait_pod_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Json) -> bool,
    ) -> Json {
        use kodama_sim::contract::ClusterState;
        match self
            .state
            .wait_for(timeout, |s| s.get("pods", NS, name).filter(|p| pred(p)))
        {
            Some(p) => p,
            None => panic!(
                "pod {name}: timed out waiting for {what}; last: {}\nevents: {:?}",
                serde_json::to_string_pretty(&self.pod(name)).unwrap_or_default(),
                self.state.events(name)
            ),
        }
    }

    pub fn wait_phase(&self, name: &str, phase: &str) -> Json {
        self.wait_pod(name, phase, |p| p["status"]["phase"] == phase)
    }

    pub fn wait_ready(&self, name: &str) -> Json {
        self.wait_pod(name, "Ready", |p| {
            p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
    }

    pub fn wait_deleted(&self, name: &str, timeout: Duration) {
        let ok = self
            .state
            .wait_for(timeout, |s| s.was_deleted(NS, name).then_some(()));
        assert!(
            ok.is_some(),
            "pod {name} was not deleted within {timeout:?}"
        );
    }

    /// Full log of a container.
    pub fn logs(&self, name: &str, opts: &kodama_sim::contract::LogOptions) -> String {
        let mut out = Vec::new();
        self.kubelet
            .logs(NS, name, opts, &mut out)
            .unwrap_or_else(|e| panic!("logs {name}: {e:?}"));
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Wait until the (current) log of the pod's container contains `text`.
    pub fn wait_log(&self, name: &str, text: &str) -> String {
        let got = self.state.wait_for(TIMEOUT, |_| {
            let mut out = Vec::new();
            self.kubelet
                .logs(
                    NS,
                    name,
                    &kodama_sim::contract::LogOptions::default(),
                    &mut out,
                )
                .ok()?;
            let s = String::from_utf8_lossy(&out).into_owned();
            s.contains(text).then_some(s)
        });
        got.unwrap_or_else(|| panic!("pod {name}: log never contained {text:?}"))
    }

    pub fn stream_port(&self) -> u16 {
        *self
            .stream_port
            .get_or_init(|| stream_server(self.kubelet.clone()).expect("stream server"))
    }

    pub fn has_event(&self, pod: &str, reason: &str, contains: &str) -> bool {
        self.state
            .events(pod)
            .iter()
            .any(|e| e.reason == reason && e.message.contains(contains))
    }
}

impl Drop for H {
    fn drop(&mut self) {
        self.kubelet.shutdown();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A minimal pod.
pub fn pod(name: &str, command: &[&str]) -> Json {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36", "command": command}],
        }
    })
}

pub fn ctr_status<'a>(pod: &'a Json, name: &str) -> &'a Json {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Json::Null)
}

pub fn condition<'a>(pod: &'a Json, t: &str) -> &'a Json {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == t))
        .unwrap_or(&Json::Null)
}

/// Processes whose command line contains `marker`.
pub fn pids_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(marker) && pid != std::process::id() {
                // Zombies have an empty cmdline, so only live processes match.
                out.push(pid);
            }
        }
    }
    out
}

// ---------- WebSocket client ----------

pub struct WsResult {
    pub protocol: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: Vec<u8>,
    /// Data per port-forward channel.
    pub channels: std::collections::BTreeMap<u8, Vec<u8>>,
    pub closed_normally: bool,
}

impl WsResult {
    pub fn status_json(&self) -> Json {
        serde_json::from_slice(&self.status).unwrap_or(Json::Null)
    }
    /// Exit code per the status channel (client-go's decoding).
    pub fn exit_code(&self) -> i32 {
        let s = self.status_json();
        if s["status"] == "Success" {
            return 0;
        }
        assert_eq!(s["reason"], "NonZeroExitCode", "unexpected status {s}");
        s["details"]["causes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
            .expect("exit code cause")
    }
}

pub fn connect(
    port: u16,
    path: &str,
    protocols: &str,
) -> Result<(WebSocket<TcpStream>, Option<String>), tungstenite::Error> {
    let mut req = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .expect("request");
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.parse().expect("header value"),
        );
    }
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    tcp.set_write_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let mut res = tungstenite::client::client(req, tcp);
    loop {
        match res {
            Ok((ws, resp)) => {
                let p = resp
                    .headers()
                    .get("Sec-WebSocket-Protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                return Ok((ws, p));
            }
            Err(tungstenite::HandshakeError::Interrupted(mid)) => res = mid.handshake(),
            Err(tungstenite::HandshakeError::Failure(e)) => return Err(e),
        }
    }
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Drive a session: send `input` frames (already channel-prefixed) in order, then read until the
/// server closes. `on_data` may return extra frames to send (e.g. after seeing output).
pub fn drive(
    mut ws: WebSocket<TcpStream>,
    protocol: Option<String>,
    input: Vec<Vec<u8>>,
    mut on_data: impl FnMut(u8, &[u8]) -> Vec<Vec<u8>>,
) -> WsResult {
    let mut r = WsResult {
        protocol,
        stdout: Vec::new(),
        stderr: Vec::new(),
        status: Vec::new(),
        channels: Default::default(),
        closed_normally: false,
    };
    for f in input {
        ws.write(Message::Binary(f.into())).expect("queue frame");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "websocket session did not finish"
        );
        match ws.flush() {
            Ok(()) => {}
            Err(e) if is_timeout(&e) => {}
            Err(tungstenite::Error::ConnectionClosed) => {
                r.closed_normally = true;
                return r;
            }
            Err(e) => panic!("flush: {e}"),
        }
        match ws.read() {
            Ok(Message::Binary(b)) => {
                if b.is_empty() {
                    continue;
                }
                let (ch, d) = (b[0], &b[1..]);
                match ch {
                    1 => r.stdout.extend_from_slice(d),
                    2 => r.stderr.extend_from_slice(d),
                    3 => r.status.extend_from_slice(d),
                    _ => {}
                }
                r.channels.entry(ch).or_default().extend_from_slice(d);
                for f in on_data(ch, d) {
                    let _ = ws.write(Message::Binary(f.into()));
                }
            }
            Ok(Message::Close(_)) => r.closed_normally = true,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(tungstenite::Error::ConnectionClosed) | Err(tungstenite::Error::AlreadyClosed) => {
                return r
            }
            Err(tungstenite::Error::Protocol(_)) | Err(tungstenite::Error::Io(_)) => return r,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Query string for an exec.
pub fn exec_path(pod: &str, cmd: &[&str], stdin: bool, tty: bool) -> String {
    let mut q = String::new();
    for c in cmd {
        q.push_str("command=");
        for b in c.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                q.push(b as char);
            } else {
                q.push_str(&format!("%{b:02X}"));
            }
        }
        q.push('&');
    }
    format!(
        "/api/v1/namespaces/{NS}/pods/{pod}/exec?{q}container=main&stdin={stdin}&stdout=true&stderr=true&tty={tty}"
    )
}

/// Run an exec to completion with optional stdin (v5 closes stdin after it).
pub fn exec(h: &H, pod: &str, cmd: &[&str], stdin: Option<&[u8]>, protocols: &str) -> WsResult {
    let (ws, proto) = connect(
        h.stream_port(),
        &exec_path(pod, cmd, stdin.is_some(), false),
        protocols,
    )
    .expect("exec handshake");
    let mut input = Vec::new();
    if let Some(data) = stdin {
        for chunk in data.chunks(32 * 1024) {
            let mut f = vec![0u8];
            f.extend_from_slice(chunk);
            input.push(f);
        }
        if proto.as_deref() == Some("v5.channel.k8s.io") {
            input.push(vec![0xFF, 0]);
        }
    }
    drive(ws, proto, input, |_, _| Vec::new())
}

/// Dir of a PVC in the kubelet's data dir.
pub fn pvc_host_dir(h: &H, claim: &str) -> PathBuf {
    h.dir.join("data").join("pvc").join(NS).join(claim)
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
