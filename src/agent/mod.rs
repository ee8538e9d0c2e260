//! The in-pod helper: a framed protocol over Read+Write (pure), the hidden `agent` subcommand that serves
//! it in the pod, its client, and installing our own static binary into the pod over exec.
//!
//! May import: error, remote.
