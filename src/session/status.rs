//! `status <name>`: pod, sync, current or last agent run, branch, last commit, changed files.
//!
//! May import: session::{ctx, resolve, syncd, agentcmds}, config, kube, git, run, error.

use super::ctx::Ctx;
use crate::cli::StatusArgs;
use crate::error::{Error, Result};

/// `status` (not implemented yet).
pub fn status(ctx: &Ctx, args: &StatusArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`status` is not implemented yet"))
}
