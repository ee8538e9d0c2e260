//! kodama-sim: a simulated Kubernetes cluster for kodama's tests, benchmarks and demo.
//!
//! A real HTTPS API server speaking the Kubernetes wire protocol (`api`), and a kubelet (`kubelet`)
//! whose pods run as local processes in one mount namespace per pod, with volumes bind-mounted at
//! their mountPaths. kodama itself never depends on this crate; only its tests do.
//!
//! The two halves meet only through the traits in `contract`.
//!
//! May import: anything (test infrastructure).

pub mod api;
pub mod contract;
pub mod kubelet;

pub use api::client::SimClient;
pub use api::{
    Faults, JournalEntry, KubeletKind, SimCluster, SimOptions, ADMIN_USER, CERT_GROUP, CERT_USER,
    RESTRICTED_USER,
};
