//! `pull <name> [REMOTE_PATH] [LOCAL_DIR]`: copy workspace files back, never overwriting newer local files
//! without --force.
//!
//! May import: session::{ctx, resolve, podremote}, config, sync, agent, error.

use super::ctx::Ctx;
use crate::cli::PullArgs;
use crate::error::{Error, Result};

/// `pull` (not implemented yet).
pub fn pull(ctx: &Ctx, args: &PullArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`pull` is not implemented yet"))
}
