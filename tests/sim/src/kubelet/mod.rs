//! The simulated kubelet: runs pods as local processes in one mount namespace per pod, with volumes
//! bind-mounted at their mountPaths; serves exec/attach/port-forward over WebSocket and container logs.
//!
//! May import: contract.

use crate::contract::{ClusterState, Kubelet, KubeletConfig};
use std::sync::Arc;

/// Build the kubelet (see `contract::KubeletFactory`).
pub fn new(_state: Arc<dyn ClusterState>, _config: KubeletConfig) -> Arc<dyn Kubelet> {
    unimplemented!("the simulated kubelet is being written")
}
