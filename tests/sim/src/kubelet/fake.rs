//! Test support for the kubelet alone: an in-memory `ClusterState` that records statuses and
//! Events and lets tests wait for conditions, and a plain-HTTP stand-in for the API server (the
//! streaming hand-off with the short read timeout the kubelet needs, plus discovery, GET pod and
//! pod logs: enough for the real kubectl's exec/cp/logs/attach).
//!
//! May import: std, serde_json, contract.

use crate::contract::{ClusterState, Json, Kubelet, StreamKind, StreamRequest};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A recorded Event.
#[derive(Debug, Clone)]
pub struct Event {
    pub pod: String,
    pub type_: String,
    pub reason: String,
    pub message: String,
}

#[derive(Default)]
struct Store {
    objects: HashMap<(String, String, String), Json>,
    events: Vec<Event>,
    deleted: Vec<String>,
}

/// In-memory cluster state.
#[derive(Default)]
pub struct MemState {
    store: Mutex<Store>,
    cv: Condvar,
}

impl MemState {
    pub fn new() -> Arc<MemState> {
        Arc::new(MemState::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Store an object (namespace and name taken from its metadata).
    pub fn put(&self, resource: &str, obj: Json) {
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        self.lock()
            .objects
            .insert((resource.to_string(), ns, name), obj);
        self.cv.notify_all();
    }

    /// Remove an object.
    pub fn remove(&self, resource: &str, ns: &str, name: &str) {
        self.lock()
            .objects
            .remove(&(resource.into(), ns.into(), name.into()));
        self.cv.notify_all();
    }

    /// Events recorded about a pod.
    pub fn events(&self, pod: &str) -> Vec<Event> {
        self.lock()
            .events
            .iter()
            .filter(|e| e.pod == pod)
            .cloned()
            .collect()
    }

    /// Whether `finish_pod_deletion` was called for `ns/name`.
    pub fn was_deleted(&self, ns: &str, name: &str) -> bool {
        self.lock()
            .deleted
            .iter()
            .any(|d| *d == format!("{ns}/{name}"))
    }

    /// Wait (up to `timeout`) until `f` returns `Some`; re-checked on every change.
    pub fn wait_for<T>(&self, timeout: Duration, f: impl Fn(&MemState) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return Some(v);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let g = self.lock();
            let _ = self
                .cv
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(50)));
        }
    }
}

impl ClusterState for MemState {
    fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Json> {
        self.lock()
            .objects
            .get(&(resource.into(), namespace.into(), name.into()))
            .cloned()
    }
    fn set_pod_status(&self, namespace: &str, name: &str, status: Json) {
        if let Some(p) =
            self.lock()
                .objects
                .get_mut(&("pods".into(), namespace.into(), name.into()))
        {
            p["status"] = status;
        }
        self.cv.notify_all();
    }
    fn set_pvc_status(&self, namespace: &str, name: &str, status: Json) {
        if let Some(p) = self.lock().objects.get_mut(&(
            "persistentvolumeclaims".into(),
            namespace.into(),
            name.into(),
        )) {
            p["status"] = status;
        }
        self.cv.notify_all();
    }
    fn finish_pod_deletion(&self, namespace: &str, name: &str) {
        let mut s = self.lock();
        s.objects
            .remove(&("pods".into(), namespace.into(), name.into()));
        s.deleted.push(format!("{namespace}/{name}"));
        drop(s);
        self.cv.notify_all();
    }
    fn record_event(&self, _namespace: &str, pod: &str, type_: &str, reason: &str, message: &str) {
        self.lock().events.push(Event {
            pod: pod.into(),
            type_: type_.into(),
            reason: reason.into(),
            message: message.into(),
        });
        self.cv.notify_all();
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse a raw request head into a `StreamRequest` (path `/api/v1/namespaces/N/pods/P/{exec,attach,portforward}`).
pub fn parse_stream_request(head: &[u8]) -> Option<StreamRequest> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let target = request_line.split(' ').nth(1)?;
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // api v1 namespaces N pods P sub
    if parts.len() != 7 {
        return None;
    }
    let kind = match parts[6] {
        "exec" => StreamKind::Exec,
        "attach" => StreamKind::Attach,
        "portforward" => StreamKind::PortForward,
        _ => return None,
    };
    let query = q
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(StreamRequest {
        kind,
        namespace: parts[3].to_string(),
        pod: parts[5].to_string(),
        query,
        headers,
        head: head.to_vec(),
    })
}

/// Serve streaming requests for `kubelet` on a local TCP port (plain HTTP, no auth). Returns the port.
pub fn stream_server(kubelet: Arc<dyn Kubelet>) -> std::io::Result<u16> {
    serve_http(kubelet, None)
}

/// A minimal plain-HTTP stand-in for the API server, enough for `kubectl exec`, `cp`, `logs` and
/// `attach` against the kubelet: discovery, GET pod, pod logs and the streaming subresources.
pub fn api_stub_server(
    state: Arc<dyn ClusterState>,
    kubelet: Arc<dyn Kubelet>,
) -> std::io::Result<u16> {
    serve_http(kubelet, Some(state))
}

fn serve_http(
    kubelet: Arc<dyn Kubelet>,
    state: Option<Arc<dyn ClusterState>>,
) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let k = kubelet.clone();
            let s = state.clone();
            std::thread::spawn(move || handle(k, s, conn));
        }
    });
    Ok(port)
}

fn respond(conn: &mut TcpStream, code: u16, body: &Json) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body.as_bytes());
}

fn discovery(path: &str) -> Option<Json> {
    let res = |name: &str, kind: &str, verbs: &[&str]| serde_json::json!({"name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": verbs});
    Some(match path {
        "/version" => serde_json::json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0",
            "platform": "linux/amd64"}),
        "/api" => serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        "/apis" => serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        "/api/v1" => {
            serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                res("pods", "Pod", &["get", "list"]),
                res("pods/exec", "PodExecOptions", &["create", "get"]),
                res("pods/attach", "PodAttachOptions", &["create", "get"]),
                res("pods/log", "Pod", &["get"]),
                res("pods/portforward", "PodPortForwardOptions", &["create", "get"]),
            ]})
        }
        _ => return None,
    })
}

fn handle(kubelet: Arc<dyn Kubelet>, state: Option<Arc<dyn ClusterState>>, mut conn: TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    if let Some(req) = parse_stream_request(&head) {
        let _ = conn.set_read_timeout(Some(crate::contract::STREAM_READ_TIMEOUT));
        let _ = conn.set_nodelay(true);
        kubelet.stream(req, Box::new(conn));
        return;
    }
    let Some(state) = state else { return };
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.split(' ').nth(1).unwrap_or("/").to_string();
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    if let Some(d) = discovery(path) {
        return respond(&mut conn, 200, &d);
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let not_found = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "the server could not find the requested resource",
        "reason": "NotFound", "code": 404});
    if parts.len() < 6 || parts[..3] != ["api", "v1", "namespaces"] || parts[4] != "pods" {
        return respond(&mut conn, 404, &not_found);
    }
    let (ns, name) = (parts[3], parts[5]);
    let Some(mut pod) = state.get("pods", ns, name) else {
        let e = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": format!("pods \"{name}\" not found"),
            "reason": "NotFound", "details": {"name": name, "kind": "pods"}, "code": 404});
        return respond(&mut conn, 404, &e);
    };
    if parts.len() == 6 {
        pod["kind"] = serde_json::json!("Pod");
        pod["apiVersion"] = serde_json::json!("v1");
        return respond(&mut conn, 200, &pod);
    }
    if parts.len() == 7 && parts[6] == "log" {
        let mut opts = crate::contract::LogOptions::default();
        for kv in q.split('&') {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = percent_decode(v);
            match k {
                "container" => opts.container = Some(v),
                "follow" => opts.follow = v == "true",
                "timestamps" => opts.timestamps = v == "true",
                "previous" => opts.previous = v == "true",
                "tailLines" => opts.tail_lines = v.parse().ok(),
                "sinceSeconds" => opts.since_seconds = v.parse().ok(),
                _ => {}
            }
        }
        let mut w = Chunked {
            conn: &mut conn,
            started: false,
        };
        match kubelet.logs(ns, name, &opts, &mut w) {
            Ok(()) => {
                w.start();
                let _ = w.conn.write_all(b"0\r\n\r\n");
            }
            Err(e) if !w.started => {
                let s = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Failure", "message": e.message, "reason": e.reason, "code": e.code});
                respond(&mut conn, e.code, &s);
            }
            Err(_) => {}
        }
        return;
    }
    respond(&mut conn, 404, &not_found)
}

/// A chunked `text/plain` response body.
struct Chunked<'a> {
    conn: &'a mut TcpStream,
    started: bool,
}

impl Chunked<'_> {
    fn start(&mut self) {
        if !self.started {
            self.started = true;
            let _ = self.conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            );
        }
    }
}

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.start();
        if buf.is_empty() {
            return Ok(0);
        }
        self.conn
            .write_all(format!("{:x}\r\n", buf.len()).as_bytes())?;
        self.conn.write_all(buf)?;
        self.conn.write_all(b"\r\n")?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.conn.flush()
    }
}
