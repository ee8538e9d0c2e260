//! Branch naming and the branch plan the clone script carries out.
//!
//! Rules (README "Branches"):
//! - No `--branch`, autoBranch on (the default): the base is the remote's default branch (for
//!   `--repo .`, the local current branch's remote counterpart), and a new branch
//!   `<branchPrefix><name>-<YYYYMMDDHHMMSS>` (UTC) is created from it.
//! - No `--branch`, autoBranch off: the base branch itself is checked out.
//! - `--branch NAME`: NAME is checked out (tracking origin/NAME) when it exists on the remote. When it
//!   does not: with autoBranch on, NAME is created from the default branch (the start message says
//!   so); with autoBranch off, the clone fails with "branch NAME not found".
//!
//! May import: error, config::time (calendar conversion).

use crate::error::{Error, Result};

/// What the clone script does about branches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchPlan {
    /// Create `work` from `base` (`None` = the remote's default branch); `work` must not exist yet.
    New { base: Option<String>, work: String },
    /// Check out `base` (`None` = the remote's default branch) itself.
    Base { base: Option<String> },
    /// Check out the existing remote branch `work`; if it is missing, create it from the default
    /// branch when `create_missing`, else fail.
    Existing { work: String, create_missing: bool },
}

impl BranchPlan {
    /// (mode, base, work) as the clone script's positional arguments.
    pub fn script_args(&self) -> (&'static str, String, String) {
        match self {
            BranchPlan::New { base, work } => {
                ("new", base.clone().unwrap_or_default(), work.clone())
            }
            BranchPlan::Base { base } => ("base", base.clone().unwrap_or_default(), String::new()),
            BranchPlan::Existing {
                work,
                create_missing,
            } => (
                if *create_missing {
                    "existing-or-new"
                } else {
                    "existing"
                },
                String::new(),
                work.clone(),
            ),
        }
    }
}

/// `YYYYMMDDHHMMSS` in UTC for `secs` since the epoch (the calendar conversion is
/// `config::time::utc_parts`).
pub fn timestamp(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = crate::config::time::utc_parts(secs);
    format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}")
}

/// The automatic branch name `<prefix><session>-<YYYYMMDDHHMMSS>`.
pub fn auto_branch_name(prefix: &str, session: &str, now_secs: u64) -> String {
    format!("{prefix}{session}-{}", timestamp(now_secs))
}

/// Check a branch name against git's ref-name rules (`git check-ref-format --branch`), so a bad name
/// fails before anything is created.
pub fn validate_branch_name(name: &str, what: &str) -> Result<()> {
    let fault = if name.is_empty() {
        Some("is empty")
    } else if name.starts_with('-') {
        Some("must not start with '-'")
    } else if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        Some("must not start or end with '/' or contain '//'")
    } else if name.ends_with('.') || name.ends_with(".lock") {
        Some("must not end with '.' or '.lock'")
    } else if name.contains("..") || name.contains("@{") || name == "@" {
        Some("must not contain '..' or '@{' or be '@'")
    } else if name.split('/').any(|c| c.starts_with('.')) {
        Some("no path component may start with '.'")
    } else if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c))
    {
        Some("must not contain spaces, control characters or any of ~ ^ : ? * [ \\")
    } else {
        None
    };
    match fault {
        Some(f) => Err(Error::usage(
            format!("{what} {name:?} {f}"),
            Some("see `git check-ref-format --help` for valid branch names".into()),
        )),
        None => Ok(()),
    }
}

/// Decide the plan. `local_branch` is the base for `--repo .` (the local current branch's remote
/// counterpart); `now_secs` is injected so tests are deterministic.
pub fn plan(
    session: &str,
    prefix: &str,
    auto_branch: bool,
    branch_flag: Option<&str>,
    local_branch: Option<&str>,
    now_secs: u64,
) -> Result<BranchPlan> {
    if let Some(b) = branch_flag {
        validate_branch_name(b, "--branch")?;
        return Ok(BranchPlan::Existing {
            work: b.to_string(),
            create_missing: auto_branch,
        });
    }
    if let Some(b) = local_branch {
        validate_branch_name(b, "the local branch")?;
    }
    let base = local_branch.map(str::to_string);
    if auto_branch {
        let work = auto_branch_name(prefix, session, now_secs);
        validate_branch_name(
            &work,
            "the automatic branch name (branchPrefix + session name)",
        )?;
        Ok(BranchPlan::New { base, work })
    } else {
        Ok(BranchPlan::Base { base })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_736_951_400; // 2025-01-15T14:30:00Z

    #[test]
    fn auto_branch_uses_prefix_name_and_utc_time() {
        assert_eq!(
            auto_branch_name("kodama/", "my-work", T),
            "kodama/my-work-20250115143000"
        );
        assert_eq!(timestamp(0), "19700101000000");
        assert_eq!(timestamp(951_825_599), "20000229115959");
    }

    #[test]
    fn plans_follow_the_documented_rules() {
        assert_eq!(
            plan("w", "kodama/", true, None, None, T).expect("plan"),
            BranchPlan::New {
                base: None,
                work: "kodama/w-20250115143000".into()
            }
        );
        assert_eq!(
            plan("w", "kodama/", true, None, Some("dev"), T).expect("plan"),
            BranchPlan::New {
                base: Some("dev".into()),
                work: "kodama/w-20250115143000".into()
            }
        );
        assert_eq!(
            plan("w", "", false, None, None, T).expect("plan"),
            BranchPlan::Base { base: None }
        );
        assert_eq!(
            plan("w", "kodama/", true, Some("feature/x"), Some("dev"), T).expect("plan"),
            BranchPlan::Existing {
                work: "feature/x".into(),
                create_missing: true
            }
        );
        assert_eq!(
            plan("w", "kodama/", false, Some("feature/x"), None, T)
                .expect("plan")
                .script_args(),
            ("existing", String::new(), "feature/x".into())
        );
    }

    #[test]
    fn bad_branch_names_are_refused() {
        for b in [
            "", "-x", "a b", "a..b", "a~1", "x.lock", "/a", "a/", "a//b", "a:b", ".hidden", "a/.b",
            "@", "x@{1}", "a\nb",
        ] {
            assert!(validate_branch_name(b, "--branch").is_err(), "{b:?}");
        }
        for b in [
            "main",
            "feature/new-api",
            "kodama/w-20250115143000",
            "v1.2",
            "日本",
        ] {
            assert!(validate_branch_name(b, "--branch").is_ok(), "{b:?}");
        }
        assert!(plan("w", "bad prefix/", true, None, None, T).is_err());
    }
}
