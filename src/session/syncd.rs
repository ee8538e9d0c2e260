//! The background sync process of a session: spawning and stopping it, its pid/status/log files in the
//! config directory, the `sync` command and the hidden `sync-daemon` entry point.
//!
//! May import: session::{ctx, resolve, podremote}, config, kube, sync, agent, error.

use super::ctx::Ctx;
use crate::cli::{NameArgs, SyncArgs};
use crate::error::{Error, Result};

/// `sync_cmd` (not implemented yet).
pub fn sync_cmd(ctx: &Ctx, args: &SyncArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`sync_cmd` is not implemented yet"))
}

/// `daemon` (not implemented yet).
pub fn daemon(ctx: &Ctx, args: &NameArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`daemon` is not implemented yet"))
}
