//! Our own blocking Kubernetes client: kubeconfig loading and merging, auth (token, certs, exec plugins),
//! TLS, REST with typed API errors, watch, and exec/attach/port-forward over WebSocket.
//!
//! May import: error, secret, remote, term. Never session, sync, agent or cli.

pub mod attach;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod ws;
