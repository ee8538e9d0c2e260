//! `PodRemote`: the [`Remote`] seam implemented for a real session pod over the exec WebSocket, so
//! `sync`, `agent`, `git` and `run` reach the pod without knowing about Kubernetes.
//!
//! May import: kube, remote, error.

use crate::error::Result;
use crate::kube::exec::{ExecProcess, ExecRequest};
use crate::kube::Client;
use crate::remote::{Remote, RemoteProcess};

/// Runs commands in one container of one pod.
#[derive(Clone)]
pub struct PodRemote {
    pub client: Client,
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
}

impl PodRemote {
    /// Commands in `container` (None: the pod's only/default container) of `namespace/pod`.
    pub fn new(client: &Client, namespace: &str, pod: &str, container: Option<&str>) -> PodRemote {
        PodRemote {
            client: client.clone(),
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container: container.map(str::to_string),
        }
    }
}

impl Remote for PodRemote {
    fn exec(&self, argv: &[String]) -> Result<Box<dyn RemoteProcess>> {
        let mut req = ExecRequest::new(&self.namespace, &self.pod, argv);
        req.container = self.container.clone();
        Ok(Box::new(ExecProcess::spawn(&self.client, &req)?))
    }
}
