//! Orchestration of every command: start, list, attach, delete, stop, resume, dev, sync, pull, status,
//! logs, prompt, diff, push, port-forward. Owns threads and shutdown.
//!
//! May import: everything below it (cli's plain argument types, config, kube, manifest, envfile, git,
//! sync, agent, run, term, remote, secret, error).
