//! Agent-run commands: `logs`, `prompt`, `diff` and `push`, plus starting a run (used by start).
//!
//! May import: session::{ctx, resolve, podremote}, config, git, run, term, error.

use super::ctx::Ctx;
use crate::cli::{LogsArgs, NameArgs, PromptArgs};
use crate::error::{Error, Result};

/// `logs` (not implemented yet).
pub fn logs(ctx: &Ctx, args: &LogsArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`logs` is not implemented yet"))
}

/// `prompt` (not implemented yet).
pub fn prompt(ctx: &Ctx, args: &PromptArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`prompt` is not implemented yet"))
}

/// `diff` (not implemented yet).
pub fn diff(ctx: &Ctx, args: &NameArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`diff` is not implemented yet"))
}

/// `push` (not implemented yet).
pub fn push(ctx: &Ctx, args: &NameArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`push` is not implemented yet"))
}
