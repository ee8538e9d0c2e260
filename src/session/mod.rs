//! Orchestration of every command: start, list, attach, delete, stop, resume, dev, sync, pull,
//! status, logs, prompt, diff, push, port-forward. Owns threads and shutdown.
//!
//! `run` dispatches a parsed invocation to one handler per command; each handler gets a [`Ctx`].
//!
//! May import: everything below it (cli's plain argument types, config, kube, manifest, envfile, git,
//! sync, agent, run, term, remote, secret, error).

pub mod agentcmds;
pub mod attach;
pub mod ctx;
pub mod lifecycle;
pub mod list;
pub mod podremote;
pub mod portforward;
pub mod progress;
pub mod pull;
pub mod resolve;
pub mod rollback;
pub mod seams;
pub mod start;
pub mod status;
pub mod syncd;

use std::io::Write;

use crate::cli::{help_text, Command, Invocation};
use crate::error::{Error, Result};
pub use ctx::Ctx;

/// Run one parsed invocation.
pub fn run(inv: Invocation) -> Result<()> {
    let ctx = Ctx::new(inv.global.clone());
    match &inv.command {
        Command::Version => print(&format!("kubectl-kodama version {}\n", crate::VERSION)),
        Command::Help { topic } => print(&help_text(topic.as_deref())?),
        Command::Start(a) => start::start(&ctx, a),
        Command::Dev(a) => start::dev(&ctx, a),
        Command::List(a) => list::list(&ctx, a),
        Command::Attach(a) => attach::attach(&ctx, a),
        Command::Delete(a) => lifecycle::delete(&ctx, a),
        Command::Stop(a) => lifecycle::stop(&ctx, a),
        Command::Resume(a) => lifecycle::resume(&ctx, a),
        Command::Sync(a) => syncd::sync_cmd(&ctx, a),
        Command::SyncDaemon(a) => syncd::daemon(&ctx, a),
        Command::Pull(a) => pull::pull(&ctx, a),
        Command::Diff(a) => agentcmds::diff(&ctx, a),
        Command::Push(a) => agentcmds::push(&ctx, a),
        Command::PortForward(a) => portforward::port_forward(&ctx, a),
        Command::Prompt(a) => agentcmds::prompt(&ctx, a),
        Command::Logs(a) => agentcmds::logs(&ctx, a),
        Command::Status(a) => status::status(&ctx, a),
        Command::RunAgent(args) => crate::run::runner::main(args.clone()),
        Command::Agent(args) => crate::agent::server::main(args.clone()),
    }
}

/// Write to stdout; a closed pipe comes back as an `Error::Io` that `main` ignores.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("", e))
}
