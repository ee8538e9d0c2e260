//! kodama: a kubectl plugin that runs AI coding-agent sessions in Kubernetes pods.
//!
//! Module map (imports point down only; see README "Architecture"):
//! `cli` → `session` → {`sync`, `agent`, `run`, `manifest`, `git`, `envfile`} → `config` → `kube`
//! → `term` → `remote`, `secret`, `error`. (`cli` yields plain data; `session` reads it.)
//!
//! May import: every module (declarations only).

pub mod agent;
pub mod cli;
pub mod config;
pub mod envfile;
pub mod error;
pub mod git;
pub mod kube;
pub mod manifest;
pub mod remote;
pub mod run;
pub mod secret;
pub mod session;
pub mod sync;
pub mod term;

pub use error::{Error, Result};

/// The version printed by `kubectl kodama version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
