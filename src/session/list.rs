//! `list`/`ls`: sessions from the cluster (one list request per namespace, or one for -A) merged with
//! local session files; table, wide, json and yaml output.
//!
//! May import: session::{ctx, resolve, syncd, agentcmds}, config, kube, manifest, error.

use super::ctx::Ctx;
use crate::cli::ListArgs;
use crate::error::{Error, Result};

/// `list` (not implemented yet).
pub fn list(ctx: &Ctx, args: &ListArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`list` is not implemented yet"))
}
