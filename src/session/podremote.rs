//! `PodRemote`: the [`crate::remote::Remote`] seam for a real session pod, i.e.
//! [`crate::kube::exec::PodRemote`] over the session's [`Client`], so `sync`, `agent`, `git` and
//! `run` reach the pod without knowing about Kubernetes.
//!
//! May import: kube.

use crate::kube::Client;

/// Runs commands in one container of one pod over the exec WebSocket (`PodRemote::new(client,
/// namespace, pod, container)`).
pub type PodRemote = crate::kube::exec::PodRemote<Client>;
