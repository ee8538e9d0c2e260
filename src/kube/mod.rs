//! Our own blocking Kubernetes client: kubeconfig loading and merging, auth (token, certs, exec plugins),
//! TLS, REST with typed API errors, watch, and exec/attach/port-forward over WebSocket.
//!
//! May import: error, secret, remote, term. Never session, sync, agent or cli.

// `crate::error::Error` carries an `ApiError` inline (168 bytes), which trips this lint on every
// function returning our `Result`; boxing is error.rs's call.
#![allow(clippy::result_large_err)]

pub mod attach;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod ws;
