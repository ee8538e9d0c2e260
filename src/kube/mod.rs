//! Our own blocking Kubernetes client: kubeconfig loading and merging, auth (token, certs, exec plugins),
//! TLS, REST with typed API errors, watch, and exec/attach/port-forward over WebSocket.
//!
//! Build a client with [`client::Client::from_overrides`]; REST helpers are on `Client`, watches and
//! "wait for the pod" in [`watch`], and WebSocket code dials through [`transport::Transport`]
//! (which implements [`ws::Dialer`]): [`exec`], [`attach`], [`portforward`], and [`logs`].
//!
//! May import: error, secret, remote, term. Never session, sync, agent or cli.

pub mod auth;
pub mod client;
pub mod kubeconfig;
pub mod load;
pub mod proxy;
pub mod request;
pub mod resource;
pub mod status;
pub mod tls;
pub mod transport;
pub mod watch;

// Streaming (kubestream branch): WebSocket exec/attach/port-forward and pod logs.
pub mod attach;
pub mod exec;
pub mod logs;
pub mod portforward;
pub mod ws;

pub use client::Client;
pub use load::{KubeConfig, Overrides};
