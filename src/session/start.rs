//! `start` and `dev`: validate everything, create the session's objects, wait for Ready, clone, sync,
//! start the agent, save the session file last; roll back on failure or Ctrl-C.
//!
//! May import: session::{ctx, resolve, podremote, attach, syncd, agentcmds}, config, kube, manifest, envfile, git,
//! sync, agent, run, term, error.

use super::ctx::Ctx;
use crate::cli::{DevArgs, StartArgs};
use crate::error::{Error, Result};

/// `start` (not implemented yet).
pub fn start(ctx: &Ctx, args: &StartArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`start` is not implemented yet"))
}

/// `dev` (not implemented yet).
pub fn dev(ctx: &Ctx, args: &DevArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`dev` is not implemented yet"))
}
