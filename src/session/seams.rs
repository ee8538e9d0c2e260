//! Seams to the background sync process owned by `session::syncd` (helper branch `sessio`).
//!
//! MINIMAL STUBS until `syncd::spawn_daemon`, `syncd::stop_daemon` and `syncd::sync_state` land
//! (branch `sessio`): when merging, make the bodies `super::syncd::spawn_daemon(ctx, name)`,
//! `super::syncd::stop_daemon(ctx, name)` and `super::syncd::sync_state(ctx, name).column()`. Until then start/resume do not keep a background sync running (the initial sync
//! still happens), and list/status show `Inactive`.
//!
//! May import: session::ctx, error.

use super::ctx::Ctx;
use crate::error::Result;

/// Start the background sync process of session `name` (its record must be saved). STUB.
pub fn spawn_daemon(ctx: &Ctx, name: &str) -> Result<()> {
    let _ = (ctx, name);
    Ok(())
}

/// Stop the background sync process of session `name`; true when one was running. STUB.
pub fn stop_daemon(ctx: &Ctx, name: &str) -> Result<bool> {
    let _ = (ctx, name);
    Ok(false)
}

/// The SYNC column for session `name` (`Active (3s)`, `Error`, `Inactive`). STUB.
pub fn sync_state(ctx: &Ctx, name: &str) -> String {
    let _ = (ctx, name);
    "Inactive".to_string()
}
