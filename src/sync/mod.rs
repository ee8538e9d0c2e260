//! File sync: ignore rules, local scan, pure snapshot plan, tar archive streaming, the watcher thread and
//! the continuous sync engine, and `pull` back from the pod.
//!
//! May import: error, remote, agent (protocol client, installer), and the pure pieces below.

pub mod archive;
pub mod engine;
pub mod ignore;
pub mod plan;
pub mod pull;
pub mod safefs;
pub mod scan;

use crate::error::{Error, Result};
use std::path::Path;

/// Refuse `$HOME` and `/` as the directory to sync, unless `force`. Pure (no I/O): `.` and `..`
/// components are resolved lexically, so the caller should pass canonicalised paths (symlinks
/// resolved) when it can.
pub fn check_sync_root(dir: &Path, home: Option<&Path>, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    let norm = |p: &Path| -> std::path::PathBuf {
        let mut out = std::path::PathBuf::new();
        for c in p.components() {
            match c {
                std::path::Component::ParentDir => {
                    out.pop();
                }
                std::path::Component::CurDir => {}
                c => out.push(c),
            }
        }
        out
    };
    let d = norm(dir);
    let what = if d == Path::new("/") {
        Some("the file system root /")
    } else if home.is_some_and(|h| norm(h) == d) {
        Some("your home directory")
    } else {
        None
    };
    match what {
        Some(w) => Err(Error::with_hint(
            format!("refusing to sync {w} ({}): it would upload far more than a project", d.display()),
            "run from your project directory or pass --sync <project dir>; force it only if you really mean it",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_home_and_root_unless_forced() {
        let home = Path::new("/home/u");
        let cases = [
            ("/", false),
            ("/home/u", false),
            ("/home/u/", false),
            ("/home/u/proj/..", false),
            ("/home/u/./", false),
            ("/home/u/proj", true),
            ("/home", true),
            ("/tmp/x", true),
        ];
        for (dir, ok) in cases {
            assert_eq!(
                check_sync_root(Path::new(dir), Some(home), false).is_ok(),
                ok,
                "{dir}"
            );
            assert!(check_sync_root(Path::new(dir), Some(home), true).is_ok());
        }
        let e = check_sync_root(Path::new("/home/u"), Some(home), false).unwrap_err();
        assert!(e.to_string().contains("home directory"));
        assert!(e.hint().is_some_and(|h| h.contains("--sync")));
    }
}
