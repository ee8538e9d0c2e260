//! Local snapshots: what a tree looks like (relative path → kind, size, mtime, exec bit, symlink
//! target), read with `lstat` so symlinks are recorded as symlinks and never followed.
//!
//! Paths in a [`Snapshot`] are relative to the sync root, `/`-separated, without a leading `./`, and
//! valid UTF-8 (names that are not UTF-8 are skipped and reported; every name that is UTF-8, ASCII or
//! not, is kept byte for byte).
//!
//! May import: error, sync::{ignore, safefs}.

use crate::error::{Error, Result};
use crate::sync::ignore::IgnoreRules;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// What an entry is. Anything that is not a file, directory or symlink (sockets, fifos, devices) is
/// never synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    /// One-letter code used on the wire and in listings.
    pub fn code(self) -> u8 {
        match self {
            Kind::File => b'f',
            Kind::Dir => b'd',
            Kind::Symlink => b'l',
        }
    }
    /// Inverse of [`Kind::code`].
    pub fn from_code(c: u8) -> Option<Kind> {
        match c {
            b'f' => Some(Kind::File),
            b'd' => Some(Kind::Dir),
            b'l' => Some(Kind::Symlink),
            _ => None,
        }
    }
}

/// One entry of a snapshot. (Short serde names: the sync state file holds one per synced path.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    #[serde(rename = "k")]
    pub kind: Kind,
    /// File size in bytes (0 for directories and symlinks).
    #[serde(rename = "s", default)]
    pub size: u64,
    /// Modification time, seconds since the epoch.
    #[serde(rename = "m", default)]
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    #[serde(rename = "n", default)]
    pub mtime_nsec: u32,
    /// Any execute bit set (files only).
    #[serde(rename = "x", default)]
    pub exec: bool,
    /// The link target, as stored (symlinks only). Never resolved.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Entry {
    /// A directory entry.
    pub fn dir() -> Entry {
        Entry {
            kind: Kind::Dir,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            exec: false,
            target: None,
        }
    }

    /// True when syncing would not change anything: same kind, and for files the same size, mtime
    /// and exec bit, for symlinks the same target. Directories are equal by kind alone. Mtimes compare
    /// to the nanosecond when both sides have nanoseconds, else to the second (tar keeps no more).
    pub fn same(&self, other: &Entry) -> bool {
        if self.kind != other.kind {
            return false;
        }
        match self.kind {
            Kind::Dir => true,
            Kind::Symlink => self.target == other.target,
            Kind::File => {
                self.size == other.size && self.same_mtime(other) && self.exec == other.exec
            }
        }
    }

    /// Same content, ignoring the exec bit (files), so only a chmod is needed.
    pub fn same_content(&self, other: &Entry) -> bool {
        self.kind == Kind::File
            && other.kind == Kind::File
            && self.size == other.size
            && self.same_mtime(other)
    }

    fn same_mtime(&self, other: &Entry) -> bool {
        self.mtime == other.mtime
            && (self.mtime_nsec == 0
                || other.mtime_nsec == 0
                || self.mtime_nsec == other.mtime_nsec)
    }
}

/// A tree: relative path → entry, sorted so that parents come before their children.
pub type Snapshot = BTreeMap<String, Entry>;

/// The result of a scan.
#[derive(Debug, Default, Clone)]
pub struct ScanResult {
    pub snapshot: Snapshot,
    /// Entries that could not be read or named (non-UTF-8 names, permission errors), with the reason.
    pub skipped: Vec<String>,
}

/// `lstat` one path into an [`Entry`]. `Ok(None)` when it does not exist or is not a file, directory or
/// symlink.
pub fn stat_path(path: &Path) -> std::io::Result<Option<Entry>> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    entry_from_metadata(path, &md)
}

/// Build an [`Entry`] from `lstat` metadata (reads the link target for symlinks).
pub fn entry_from_metadata(path: &Path, md: &std::fs::Metadata) -> std::io::Result<Option<Entry>> {
    use std::os::unix::fs::MetadataExt;
    let ft = md.file_type();
    let (kind, target) = if ft.is_symlink() {
        let t = std::fs::read_link(path)?;
        match t.into_os_string().into_string() {
            Ok(s) => (Kind::Symlink, Some(s)),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "symlink target is not UTF-8",
                ))
            }
        }
    } else if ft.is_dir() {
        (Kind::Dir, None)
    } else if ft.is_file() {
        (Kind::File, None)
    } else {
        return Ok(None);
    };
    Ok(Some(Entry {
        kind,
        size: if kind == Kind::File { md.len() } else { 0 },
        mtime: if kind == Kind::Dir { 0 } else { md.mtime() },
        mtime_nsec: if kind == Kind::Dir {
            0
        } else {
            md.mtime_nsec().clamp(0, 999_999_999) as u32
        },
        exec: kind == Kind::File && md.permissions().mode() & 0o111 != 0,
        target,
    }))
}

/// Scan the tree under the rules' root. `sub` limits the scan to one relative path ("" = the whole
/// tree; the entry `sub` itself is included). Ignored entries are left out and ignored directories are
/// not entered. The root itself must exist.
pub fn scan(rules: &IgnoreRules, sub: &str) -> Result<ScanResult> {
    let root = rules.root();
    let md = std::fs::metadata(root)
        .map_err(|e| Error::io(root, e).context("reading the sync directory"))?;
    if !md.is_dir() {
        return Err(Error::msg(format!(
            "sync directory {} is not a directory",
            root.display()
        )));
    }
    let mut out = ScanResult::default();
    let sub = sub.trim_matches('/');
    if sub.is_empty() {
        walk(rules, root, "", &mut out);
        return Ok(out);
    }
    let abs = root.join(sub);
    match stat_path(&abs) {
        Ok(Some(e)) => {
            if rules.is_ignored(sub, e.kind == Kind::Dir) {
                return Ok(out);
            }
            let is_dir = e.kind == Kind::Dir;
            out.snapshot.insert(sub.to_string(), e);
            if is_dir {
                walk(rules, &abs, sub, &mut out);
            }
        }
        Ok(None) => {}
        Err(e) => out.skipped.push(format!("{sub}: {e}")),
    }
    Ok(out)
}

fn walk(rules: &IgnoreRules, dir: &Path, rel: &str, out: &mut ScanResult) {
    let rd = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            out.skipped.push(format!("{}: {e}", display_rel(rel)));
            return;
        }
    };
    let mut children = Vec::new();
    for ent in rd {
        let ent = match ent {
            Ok(e) => e,
            Err(e) => {
                out.skipped.push(format!("{}: {e}", display_rel(rel)));
                continue;
            }
        };
        let name = match ent.file_name().into_string() {
            Ok(n) => n,
            Err(n) => {
                out.skipped.push(format!(
                    "{}: name is not UTF-8, not synced",
                    Path::new(dir).join(n).display()
                ));
                continue;
            }
        };
        // Our own in-flight temporary files (atomic writes) are never synced.
        if crate::sync::safefs::is_tmp_name(&name) {
            continue;
        }
        children.push(name);
    }
    children.sort();
    for name in children {
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let abs = dir.join(&name);
        let entry = match stat_path(&abs) {
            Ok(Some(e)) => e,
            Ok(None) => continue,
            Err(e) => {
                out.skipped.push(format!("{child_rel}: {e}"));
                continue;
            }
        };
        let is_dir = entry.kind == Kind::Dir;
        if rules.matches_entry(&child_rel, is_dir) {
            continue;
        }
        out.snapshot.insert(child_rel.clone(), entry);
        if is_dir {
            walk(rules, &abs, &child_rel, out);
        }
    }
}

fn display_rel(rel: &str) -> &str {
    if rel.is_empty() {
        "."
    } else {
        rel
    }
}

/// The entries of `snap` at `prefix` or below it.
pub fn subtree<'a>(
    snap: &'a Snapshot,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
    // Everything at or under "a" sorts in ["a", "a0"): '0' is the byte after '/'. Siblings such as
    // "a-b" also fall in that range, hence the filter.
    let range: Box<dyn Iterator<Item = (&'a String, &'a Entry)> + 'a> = if prefix.is_empty() {
        Box::new(snap.iter())
    } else {
        Box::new(snap.range(prefix.to_string()..format!("{prefix}0")))
    };
    range.filter(move |(k, _)| is_at_or_under(k, prefix))
}

/// True when `path` equals `prefix` or lies below it (`prefix` "" contains everything).
pub fn is_at_or_under(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.len() > prefix.len()
            && path.starts_with(prefix)
            && path.as_bytes()[prefix.len()] == b'/')
}

/// Number of files and symlinks (not directories) in a snapshot.
pub fn count_files(snap: &Snapshot) -> usize {
    snap.values().filter(|e| e.kind != Kind::Dir).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_includes_the_path_and_children_but_not_look_alike_siblings() {
        let snap: Snapshot = ["a", "a-b", "a.txt", "a/x", "a/x/y", "ab", "b"]
            .iter()
            .map(|p| (p.to_string(), Entry::dir()))
            .collect();
        let got: Vec<&str> = subtree(&snap, "a").map(|(k, _)| k.as_str()).collect();
        assert_eq!(got, ["a", "a/x", "a/x/y"]);
        assert_eq!(subtree(&snap, "").count(), snap.len());
        assert_eq!(subtree(&snap, "a/x/y").count(), 1);
        assert!(
            is_at_or_under("a/b", "a") && !is_at_or_under("ab", "a") && is_at_or_under("x", "")
        );
    }

    #[test]
    fn mtimes_compare_to_the_second_when_one_side_has_no_nanoseconds() {
        let f = |s, ns| Entry {
            kind: Kind::File,
            size: 1,
            mtime: s,
            mtime_nsec: ns,
            exec: false,
            target: None,
        };
        assert!(f(5, 10).same(&f(5, 0)));
        assert!(f(5, 10).same(&f(5, 10)));
        assert!(!f(5, 10).same(&f(5, 11)));
        assert!(!f(5, 10).same(&f(6, 10)));
    }
}
