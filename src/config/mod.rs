//! Configuration: global ~/.kodama/config.yaml, the repository template .kodama.yaml, the per-session
//! files sessions/<name>.yaml (atomic, 0600, locked), quantities, and the layering flags > template >
//! global > defaults.
//!
//! May import: error, secret.
