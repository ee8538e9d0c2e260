//! The in-pod helper: a framed protocol over Read+Write (pure), the hidden `agent` subcommand that serves
//! it in the pod, its client, and installing our own static binary into the pod over exec.
//!
//! May import: error, remote, sync::{ignore, scan, plan, archive, safefs} (the pure pieces and the safe
//! file operations the agent applies in the pod).

pub mod client;
pub mod install;
pub mod protocol;
pub mod server;
