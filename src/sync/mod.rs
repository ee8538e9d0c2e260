//! File sync: ignore rules, local scan, pure snapshot plan, tar archive streaming, the watcher thread and
//! the background sync process.
//!
//! May import: error, remote, agent (protocol client), config (sync options).
