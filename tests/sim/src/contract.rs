//! The contract between the simulated API server (`api`) and the simulated kubelet (`kubelet`).
//!
//! The API server owns the object store, authentication, watch and the HTTP(S) listener. The
//! kubelet owns pod processes, volumes, exec/attach/port-forward streams and container logs.
//!
//! May import: std, serde_json.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// A JSON object (Kubernetes objects are kept as JSON in the store).
pub type Json = serde_json::Value;

/// A bidirectional byte stream (the TLS connection after the HTTP request head was read).
pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// Which streaming subresource was requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Attach,
    PortForward,
}

/// A streaming request the API server has authenticated and authorised, handed to the kubelet with
/// the connection. The kubelet answers the WebSocket upgrade itself (or an HTTP error Status) using
/// `head` (the raw request head, request line through the blank line, exactly as received).
pub struct StreamRequest {
    pub kind: StreamKind,
    pub namespace: String,
    pub pod: String,
    /// Decoded query parameters in order (`command` repeats).
    pub query: Vec<(String, String)>,
    /// Request headers as received (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// The raw request head bytes, for `tungstenite::accept_hdr` replay.
    pub head: Vec<u8>,
}

/// Options of `GET .../pods/{name}/log`.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub tail_lines: Option<i64>,
    pub since_seconds: Option<i64>,
    pub timestamps: bool,
    pub previous: bool,
}

/// An error the kubelet reports to the API server, rendered by it as a `metav1.Status`.
#[derive(Debug, Clone)]
pub struct KubeletError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

/// Read timeout the API server sets on a streaming connection's socket before `Kubelet::stream`
/// (added by the kubelet side). The kubelet multiplexes both directions of a WebSocket on one
/// thread, so reads must return `WouldBlock`/`TimedOut` when the client is idle; without a timeout
/// output stalls until the client sends something.
pub const STREAM_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(20);

/// Implemented by the kubelet; called by the API server.
pub trait Kubelet: Send + Sync {
    /// A pod was created or changed (spec, or `metadata.deletionTimestamp` set by a DELETE). The
    /// kubelet schedules/starts it, or begins graceful termination; it must not block.
    fn pod_changed(&self, pod: &Json);
    /// Take over a streaming connection (exec, attach, port-forward). Runs on the connection's own
    /// thread; returns when the stream ends.
    fn stream(&self, req: StreamRequest, conn: Box<dyn Conn>);
    /// Write the container log to `out` (following until the container ends or `out` fails when
    /// `opts.follow`). Errors before any byte was written are returned for the API server to render.
    fn logs(
        &self,
        namespace: &str,
        pod: &str,
        opts: &LogOptions,
        out: &mut dyn Write,
    ) -> Result<(), KubeletError>;
    /// Fault injection: kill every process of the pod (SIGKILL) as if its containers crashed; the
    /// kubelet then reports them per restartPolicy.
    fn kill_pod_processes(&self, namespace: &str, pod: &str);
    /// Stop every pod process (used when the whole simulated cluster stops).
    fn shutdown(&self);
}

/// Implemented by the API server's store; handed to the kubelet.
pub trait ClusterState: Send + Sync {
    /// A copy of an object. `resource` is the plural REST name: "pods", "configmaps", "secrets",
    /// "persistentvolumeclaims".
    fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Json>;
    /// Replace a pod's `status` (bumps resourceVersion, emits a MODIFIED watch event). No-op when
    /// the pod is gone.
    fn set_pod_status(&self, namespace: &str, name: &str, status: Json);
    /// Replace a PVC's `status` (e.g. phase Bound).
    fn set_pvc_status(&self, namespace: &str, name: &str, status: Json);
    /// Remove a pod whose termination has finished (emits a DELETED watch event).
    fn finish_pod_deletion(&self, namespace: &str, name: &str);
    /// Record a core/v1 Event about a pod (type Normal|Warning, reason, message).
    fn record_event(&self, namespace: &str, pod: &str, type_: &str, reason: &str, message: &str);
}

/// Settings of the simulated node.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Where PVC directories, emptyDirs, homes and logs live on the host.
    pub data_dir: PathBuf,
    /// Delay between scheduling and Running/Ready (simulates image pull and start).
    pub start_delay: std::time::Duration,
    /// Node allocatable CPU in millicores; pods requesting more stay Pending/Unschedulable.
    pub cpu_millis: u64,
    /// Node allocatable memory in bytes.
    pub memory_bytes: u64,
    /// Extended resources the node offers, e.g. ("nvidia.com/gpu", 1).
    pub extended: Vec<(String, u64)>,
    /// Node name reported in `spec.nodeName`.
    pub node_name: String,
}

/// Builds the kubelet implementation. Provided by `kubelet`.
pub type KubeletFactory = fn(Arc<dyn ClusterState>, KubeletConfig) -> Arc<dyn Kubelet>;
