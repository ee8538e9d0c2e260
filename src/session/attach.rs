//! `attach <name>`: an interactive TTY shell in /workspace (zellij, else bash, else sh), or one
//! command with `--command` whose exit code passes through.
//!
//! May import: session::{ctx, resolve, podremote}, kube, term, error.

use super::ctx::Ctx;
use crate::cli::AttachArgs;
use crate::error::{Error, Result};

/// `attach` (not implemented yet).
pub fn attach(ctx: &Ctx, args: &AttachArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`attach` is not implemented yet"))
}
