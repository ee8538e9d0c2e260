//! `port-forward <name> LOCAL[:REMOTE]...` until Ctrl-C.
//!
//! May import: session::{ctx, resolve}, kube, term, error.

use super::ctx::Ctx;
use crate::cli::PortForwardArgs;
use crate::error::{Error, Result};

/// `port_forward` (not implemented yet).
pub fn port_forward(ctx: &Ctx, args: &PortForwardArgs) -> Result<()> {
    let _ = (ctx, args);
    Err(Error::msg("`port_forward` is not implemented yet"))
}
