//! The local repository, inspected with the local `git` (argv only, no shell): what `--repo .`
//! means (the current branch's upstream remote URL, else origin's, and the current branch), and the
//! user's git identity for commits made in the pod.
//!
//! May import: error, git (its own module).

use super::url::{parse_repo_url, RepoUrl};
use crate::error::{Error, Result};
use std::path::Path;
use std::process::Command;

/// What `--repo .` resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRepo {
    /// The top-level directory of the local working tree.
    pub toplevel: String,
    /// The remote's name (`origin` unless the branch tracks another remote).
    pub remote: String,
    /// The remote's URL, parsed.
    pub url: RepoUrl,
    /// The local current branch.
    pub branch: String,
    /// The branch on the remote that corresponds to it: the upstream's name if the branch tracks
    /// one, else the same name. This is the session's base branch.
    pub remote_branch: String,
}

/// Run `git -C dir args...`; `Ok(None)` when git exits non-zero, trimmed stdout otherwise.
fn git(dir: &Path, args: &[&str]) -> Result<Option<String>> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| {
            Error::with_hint(
                format!("cannot run the local git: {e}"),
                "install git, or pass --repo with a URL instead of .",
            )
        })?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// Resolve `--repo .` in `dir`.
pub fn resolve_dot(dir: &Path) -> Result<LocalRepo> {
    let toplevel = git(dir, &["rev-parse", "--show-toplevel"])?.ok_or_else(|| {
        Error::usage(
            format!("--repo .: {} is not inside a git repository", dir.display()),
            Some("run kodama from your repository, or pass --repo with a URL".into()),
        )
    })?;
    let branch = git(dir, &["symbolic-ref", "--short", "-q", "HEAD"])?
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            Error::usage(
                "--repo .: the local repository is on a detached HEAD",
                Some("check out a branch, or pass --branch NAME".into()),
            )
        })?;
    let tracked = git(
        dir,
        &["config", "--get", &format!("branch.{branch}.remote")],
    )?
    .filter(|r| !r.is_empty() && r != ".");
    let remote = tracked.clone().unwrap_or_else(|| "origin".into());
    let raw_url = git(dir, &["remote", "get-url", &remote])?.ok_or_else(|| {
        Error::usage(
            format!("--repo .: the local repository has no remote {remote:?}"),
            Some(
                "the pod clones from a remote: push your repository somewhere it can reach \
                 (git remote add origin URL && git push -u origin HEAD), or use --sync . without --repo"
                    .into(),
            ),
        )
    })?;
    let url = parse_repo_url(&raw_url)
        .map_err(|e| e.context(format!("--repo .: remote {remote:?} of {toplevel}")))?;
    let remote_branch = if tracked.is_some() {
        git(dir, &["config", "--get", &format!("branch.{branch}.merge")])?
            .and_then(|m| m.strip_prefix("refs/heads/").map(str::to_string))
            .unwrap_or_else(|| branch.clone())
    } else {
        branch.clone()
    };
    Ok(LocalRepo {
        toplevel,
        remote,
        url,
        branch,
        remote_branch,
    })
}

/// `user.name` and `user.email` from the local git config (as git resolves them in `dir`).
pub fn identity(dir: &Path) -> (Option<String>, Option<String>) {
    let get = |k: &str| {
        git(dir, &["config", "--get", k])
            .ok()
            .flatten()
            .filter(|v| !v.is_empty())
    };
    (get("user.name"), get("user.email"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str) {
        let st = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir)
            .status()
            .expect("sh");
        assert!(st.success(), "{script}");
    }

    #[test]
    fn dot_resolves_upstream_remote_and_branch() {
        let d = std::env::temp_dir().join(format!("kodama-local-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        sh(
            &d,
            "git init -q -b main . && git remote add origin https://github.com/o/r.git && \
             git remote add fork git@github.com:me/r.git && git -c user.name=a -c user.email=b commit -q --allow-empty -m x && \
             git checkout -q -b feat && git config branch.feat.remote fork && \
             git config branch.feat.merge refs/heads/feature-x && git config user.name 'Ada L' && git config user.email ada@example.com",
        );
        let r = resolve_dot(&d.join(".")).expect("resolve");
        assert_eq!(r.remote, "fork");
        assert_eq!(r.url.url, "git@github.com:me/r.git");
        assert_eq!(r.branch, "feat");
        assert_eq!(r.remote_branch, "feature-x");
        assert_eq!(
            identity(&d),
            (Some("Ada L".into()), Some("ada@example.com".into()))
        );
        sh(&d, "git checkout -q main");
        let r = resolve_dot(&d).expect("resolve");
        assert_eq!((r.remote.as_str(), r.branch.as_str()), ("origin", "main"));
        assert_eq!(r.url.url, "https://github.com/o/r.git");
        sh(
            &d,
            "git remote set-url origin https://u:tok@github.com/o/r.git",
        );
        let e = resolve_dot(&d).expect_err("creds");
        assert!(!e.to_string().contains("tok@"), "{e}");
        sh(&d, "git remote remove origin");
        assert!(resolve_dot(&d)
            .expect_err("no remote")
            .to_string()
            .contains("no remote"));
        sh(&d, "git checkout -q --detach");
        assert!(resolve_dot(&d)
            .expect_err("detached")
            .to_string()
            .contains("detached"));
        let _ = std::fs::remove_dir_all(&d);
        let outside = std::env::temp_dir().join(format!("kodama-nogit-{}", std::process::id()));
        std::fs::create_dir_all(&outside).expect("mkdir");
        assert!(resolve_dot(&outside).is_err());
        let _ = std::fs::remove_dir_all(&outside);
    }
}
