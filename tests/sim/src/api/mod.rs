//! The simulated API server: HTTPS listener, auth, discovery, object store, watch, validation,
//! patches, fault injection, request journal, and the in-process/standalone harness.
//!
//! May import: contract, kubelet (only `kubelet::new`).
