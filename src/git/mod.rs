//! Git: local repository inspection, --repo URL normalisation, branch naming, the clone script and the
//! credential helper that reads the token from the pod's environment.
//!
//! May import: error, secret, remote.
