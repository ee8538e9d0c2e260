//! Our own blocking Kubernetes client: kubeconfig loading and merging, auth (token, certs, exec plugins),
//! TLS, REST with typed API errors, watch, and exec/attach/port-forward over WebSocket.
//!
//! Build a client with [`client::Client::from_overrides`]; REST helpers are on `Client`, watches and
//! "wait for the pod" in [`watch`], and WebSocket code dials through [`transport::Transport`].
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

// The streaming modules are written on the `kubestream` branch, which adds these lines itself:
// pub mod ws; pub mod exec; pub mod attach; pub mod logs; pub mod portforward;

pub use client::Client;
pub use load::{KubeConfig, Overrides};
