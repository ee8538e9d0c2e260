//! `delete`, `stop` and `resume`.
//!
//! May import: session::{ctx, resolve, syncd, start}, config, kube, manifest, error.

use super::ctx::Ctx;
use crate::cli::{DeleteArgs, NameArgs, ResumeArgs};
use crate::error::{Error, Result};

/// `delete` (not implemented yet).
pub fn delete(ctx: &Ctx, args: &DeleteArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`delete` is not implemented yet"))
}

/// `stop` (not implemented yet).
pub fn stop(ctx: &Ctx, args: &NameArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`stop` is not implemented yet"))
}

/// `resume` (not implemented yet).
pub fn resume(ctx: &Ctx, args: &ResumeArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`resume` is not implemented yet"))
}
