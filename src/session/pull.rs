//! `pull <name> [REMOTE_PATH] [LOCAL_DIR]`: copy workspace files back, never overwriting newer local files
//! without --force.
//!
//! The local directory defaults to the session's sync directory (when this machine started the
//! session with sync), else the current directory. The pod side is read through the in-pod agent
//! when it can run there, else `tar` over exec; either way the archive goes through sync's safe
//! extractor with the same ignore rules as sync (`.git` never). Local files newer than the pod's copy
//! are kept and listed unless --force; entries refused as unsafe make the command fail.
//!
//! May import: session::{ctx, resolve, podremote, syncd}, config, sync, agent, term, error.

use std::path::PathBuf;

use super::ctx::Ctx;
use super::{resolve, syncd};
use crate::agent::install::ensure_agent;
use crate::cli::PullArgs;
use crate::error::{Error, Result};
use crate::manifest::WORKSPACE_DIR;
use crate::sync::pull::{pull as pull_files, PullOptions};
use crate::term::sanitize_for_tty;

/// `pull <name> [REMOTE_PATH] [LOCAL_DIR] [--force]`.
pub fn pull(ctx: &Ctx, args: &PullArgs) -> Result<()> {
    let found = resolve::find(ctx, &args.name)?;
    let remote = resolve::remote_for(ctx, &found)?;
    let local: PathBuf = match &args.local_dir {
        Some(d) => d.clone(),
        None => found
            .record
            .as_ref()
            .filter(|r| r.sync.enabled)
            .and_then(|r| r.sync.local_path.clone())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .map_or_else(
                || std::env::current_dir().map_err(|e| Error::io("current directory", e)),
                Ok,
            )?,
    };
    let local = std::path::absolute(&local).map_err(|e| Error::io(&local, e))?;
    std::fs::create_dir_all(&local).map_err(|e| Error::io(&local, e))?;
    let rules = syncd::sync_rules(ctx, &local)?;
    let mode = ensure_agent(&remote, &super::agentcmds::install_options())?;
    let remote_path = args.remote_path.clone().unwrap_or_default();
    let rep = pull_files(
        &remote,
        &mode,
        &rules,
        &local,
        &PullOptions {
            root: WORKSPACE_DIR.into(),
            remote_path: remote_path.clone(),
            force: args.force,
            apply_ignore: true,
        },
    )
    .map_err(|e| e.context(format!("pulling from session \"{}\"", args.name)))?;

    let mut kept = Vec::new();
    let mut ignored = 0u64;
    for (path, why) in &rep.skipped {
        if why == "ignored" {
            ignored += 1;
        } else {
            kept.push(format!(
                "  {}: {}",
                sanitize_for_tty(path),
                sanitize_for_tty(why)
            ));
        }
    }
    let from = if remote_path.trim_matches('/').is_empty() {
        WORKSPACE_DIR.to_string()
    } else {
        format!(
            "{WORKSPACE_DIR}/{}",
            sanitize_for_tty(remote_path.trim_matches('/'))
        )
    };
    let mut out = format!(
        "Pulled {} files ({} bytes) from {from} into {}\n",
        rep.stats.files,
        rep.stats.bytes,
        local.display()
    );
    if ignored > 0 {
        out.push_str(&format!("Skipped {ignored} ignored entries\n"));
    }
    super::print(&out)?;
    if !kept.is_empty() {
        eprintln!(
            "Kept {} local files that are newer than the pod's (use --force to overwrite them):\n{}",
            kept.len(),
            kept.join("\n")
        );
    }
    if !rep.refused.is_empty() {
        let list: Vec<String> = rep
            .refused
            .iter()
            .map(|(p, why)| format!("  {}: {}", sanitize_for_tty(p), sanitize_for_tty(why)))
            .collect();
        return Err(Error::with_hint(
            format!(
                "{} entries from the pod were refused as unsafe:\n{}",
                rep.refused.len(),
                list.join("\n")
            ),
            "nothing was written outside the target directory; check those paths in the pod",
        ));
    }
    Ok(())
}
