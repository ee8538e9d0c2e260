//! Orchestration of every command: start, list, attach, delete, stop, resume, dev, sync, pull,
//! status, logs, prompt, diff, push, port-forward. Owns threads and shutdown.
//!
//! For now only `version` and `help` are implemented here; every other command reports that it is
//! not available in this build yet. (The lead replaces this file with the real orchestration.)
//!
//! May import: everything below it (cli's plain argument types, config, kube, manifest, envfile, git,
//! sync, agent, run, term, remote, secret, error).


use std::io::Write;

use crate::cli::{help_text, Command, Invocation};
use crate::error::{Error, Result};

/// Run one parsed invocation.
pub fn run(inv: Invocation) -> Result<()> {
    match &inv.command {
        Command::Version => print(&format!("kubectl-kodama version {}\n", crate::VERSION)),
        Command::Help { topic } => print(&help_text(topic.as_deref())?),
        other => Err(Error::with_hint(
            format!("`{}` is not available in this build yet", other.name()),
            "run `kubectl kodama help` to see what this build can do",
        )),
    }
}

/// Write to stdout; a closed pipe comes back as an `Error::Io` that `main` ignores.
fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("", e))
}
