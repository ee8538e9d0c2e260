//! Pure builders: session parameters → Pod, PVCs, ConfigMap, Secrets (golden-file tested), plus the
//! restricted Pod Security Standard checker.
//!
//! May import: error, secret.
