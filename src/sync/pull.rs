//! `pull`: copy files from the pod's workspace (or a path below it) back to a local directory, through
//! `agent pack` or, without the agent, `tar -c` over exec, extracted with the safe extractor.
//!
//! Entries keep their workspace-relative paths below the local directory (`pull x src/gen` updates
//! `<local>/src/gen`). The same ignore rules apply (ignored entries are skipped), and a local file newer
//! than the pod's copy is kept unless `force`; every skipped entry is reported.
//!
//! May import: error, remote, agent::install, sync::{ignore, archive, safefs}.

use crate::agent::install::{self, AgentMode};
use crate::error::{Error, Result};
use crate::remote::Remote;
use crate::sync::archive::{self, ExtractOptions, ExtractReport};
use crate::sync::ignore::IgnoreRules;
use crate::sync::safefs;
use std::io::Read;
use std::path::Path;

/// What to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The pod-side root, e.g. `/workspace`.
    pub root: String,
    /// A path relative to the root ("" = everything).
    pub remote_path: String,
    /// Overwrite local files even when they are newer.
    pub force: bool,
    /// Skip what the local ignore rules ignore (the default). `.git` is skipped either way.
    pub apply_ignore: bool,
}

/// Pull into `local_dir` (created if missing). `rules` are the local ignore rules (their root should
/// be `local_dir`). Returns what was written, skipped and refused.
pub fn pull(
    remote: &dyn Remote,
    mode: &AgentMode,
    rules: &IgnoreRules,
    local_dir: &Path,
    opts: &PullOptions,
) -> Result<ExtractReport> {
    let sub = opts.remote_path.trim_matches('/');
    let sub = if sub.is_empty() || sub == "." {
        String::new()
    } else {
        safefs::check_rel(sub)?.join("/")
    };
    std::fs::create_dir_all(local_dir).map_err(|e| Error::io(local_dir, e))?;
    let argv = match mode {
        AgentMode::Agent { path } => {
            let mut extra = if opts.apply_ignore {
                rules.agent_args()
            } else {
                vec![
                    "--no-gitignore".to_string(),
                    "--no-kodamaignore".to_string(),
                ]
            };
            if !sub.is_empty() {
                extra.push("--path".into());
                extra.push(sub.clone());
            }
            install::agent_argv(path, "pack", &opts.root, &extra)
        }
        AgentMode::Fallback { .. } => vec![
            "sh".into(),
            "-c".into(),
            "cd -- \"$1\" && exec tar -c -f - -- \"$2\"".into(),
            "sh".into(),
            opts.root.clone(),
            if sub.is_empty() {
                ".".into()
            } else {
                sub.clone()
            },
        ],
    };
    let mut p = remote.exec(&argv)?;
    drop(p.take_stdin());
    let mut out = p
        .take_stdout()
        .ok_or_else(|| Error::msg("remote tar has no stdout"))?;
    let err = p.take_stderr();
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut e) = err {
            let _ = e.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).trim().to_string()
    });
    let skip = |rel: &str, is_dir: bool| {
        crate::sync::ignore::is_git_dir_path(rel)
            || (opts.apply_ignore && rules.is_ignored(rel, is_dir))
    };
    let res = archive::extract(
        &mut out,
        local_dir,
        &ExtractOptions {
            skip: Some(&skip),
            keep_newer: !opts.force,
            preserve_mtime: true,
        },
    );
    // Read past the end-of-archive padding so the sender never hits a closed pipe.
    let _ = std::io::copy(&mut out, &mut std::io::sink());
    drop(out);
    let stderr = err_thread.join().unwrap_or_default();
    let code = p.wait()?;
    let rep = res.map_err(|e| e.context(format!("pulling {} from the pod", display(&sub))))?;
    if code != 0 {
        return Err(Error::with_hint(
            format!(
                "pulling {} from the pod failed (exit {code}): {stderr}",
                display(&sub)
            ),
            "check that the path exists in the pod's workspace",
        ));
    }
    Ok(rep)
}

fn display(sub: &str) -> String {
    if sub.is_empty() {
        "the workspace".into()
    } else {
        format!("{sub:?}")
    }
}
