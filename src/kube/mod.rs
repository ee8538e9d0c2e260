//! Our own blocking Kubernetes client: kubeconfig loading and merging, auth (token, certs, exec plugins),
//! TLS, REST with typed API errors, watch, and exec/attach/port-forward over WebSocket.
//!
//! May import: error, secret, remote, term. Never session, sync, agent or cli.

pub mod auth;
pub mod kubeconfig;
pub mod load;
pub mod proxy;
pub mod tls;

// The streaming modules are written on the `kubestream` branch, which adds these lines itself:
// pub mod ws; pub mod exec; pub mod attach; pub mod logs; pub mod portforward;
