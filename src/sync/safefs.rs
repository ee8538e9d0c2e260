//! File-system operations confined to a root directory, used by the in-pod agent and by every tar
//! extraction (the agent's `extract`, local `pull`).
//!
//! Every path is a relative, `/`-separated path that is checked first: no absolute paths, no `..` or
//! `.` components, no empty components, no NUL. Parent directories are entered one component at a time
//! from the root with `lstat`, and a component that is a symlink is refused, so nothing is ever written
//! through a symlink or outside the root. Symlinks themselves are created as given (their targets are
//! data, never followed). Files are written to a temporary name in the same directory and renamed into
//! place, so a dropped connection never leaves a half-written file behind.
//!
//! Limitation: the checks use path-based `lstat`, not `openat`, so a process racing to swap a checked
//! directory for a symlink between the check and the write is not stopped (no unsafe code here).
//!
//! May import: error.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The marker in the names of temporary files (`.<name>.kodama-tmp-<pid>-<n>`).
pub const TMP_MARKER: &str = ".kodama-tmp-";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Check a relative path and split it into components. Leading `./` is accepted and dropped.
pub fn check_rel(rel: &str) -> Result<Vec<&str>> {
    let bad = |why: &str| Err(Error::msg(format!("refusing unsafe path {rel:?}: {why}")));
    if rel.starts_with('/') {
        return bad("absolute paths are not allowed");
    }
    if rel.contains('\0') {
        return bad("NUL byte in path");
    }
    let trimmed = rel.trim_start_matches("./").trim_end_matches('/');
    if trimmed.is_empty() {
        return bad("empty path");
    }
    let mut out = Vec::new();
    for c in trimmed.split('/') {
        match c {
            "" => {}
            "." => {}
            ".." => return bad("`..` is not allowed"),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        return bad("empty path");
    }
    Ok(out)
}

/// The root, made absolute and resolved once (the root itself may be a symlink, e.g. /workspace).
pub fn open_root(root: &Path) -> Result<PathBuf> {
    let r = fs::canonicalize(root)
        .map_err(|e| Error::io(root, e).context("opening the destination root"))?;
    if !r.is_dir() {
        return Err(Error::msg(format!("{} is not a directory", r.display())));
    }
    Ok(r)
}

/// Walk the parent directories of `rel` from `root`, refusing symlinks and non-directories, creating
/// missing ones when `create`. Returns the absolute path of `rel` itself (not checked).
pub fn prepare_parent(root: &Path, rel: &str, create: bool) -> Result<PathBuf> {
    let comps = check_rel(rel)?;
    let mut cur = root.to_path_buf();
    let (last, parents) = comps
        .split_last()
        .expect("check_rel returns at least one component");
    for (i, c) in parents.iter().enumerate() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(Error::msg(format!(
                    "refusing to write through symlink {:?} (path {rel:?})",
                    parents[..=i].join("/")
                )))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::msg(format!(
                    "{:?} is not a directory (path {rel:?})",
                    parents[..=i].join("/")
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                match fs::create_dir(&cur) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        // Raced with someone else: check again what is there now.
                        let m = fs::symlink_metadata(&cur).map_err(|e| Error::io(&cur, e))?;
                        if !m.is_dir() || m.file_type().is_symlink() {
                            return Err(Error::msg(format!(
                                "{:?} is not a directory (path {rel:?})",
                                parents[..=i].join("/")
                            )));
                        }
                    }
                    Err(e) => return Err(Error::io(&cur, e)),
                }
            }
            Err(e) => return Err(Error::io(&cur, e)),
        }
    }
    cur.push(last);
    Ok(cur)
}

fn tmp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    // Keep the temp name short enough for NAME_MAX even for long names.
    let short: String = name.chars().take(100).collect();
    target.with_file_name(format!(".{short}{TMP_MARKER}{}-{n}", std::process::id()))
}

/// Is `name` one of our temporary files?
pub fn is_tmp_name(name: &str) -> bool {
    name.contains(TMP_MARKER)
}

/// A time from seconds + nanoseconds since the epoch (negative seconds clamp to the epoch).
pub fn system_time(mtime: i64, nsec: u32) -> SystemTime {
    if mtime <= 0 {
        return UNIX_EPOCH;
    }
    UNIX_EPOCH + Duration::new(mtime as u64, nsec.min(999_999_999))
}

/// A file being written atomically: data goes to a temporary file next to the target; `commit` renames
/// it into place; dropping it without commit removes the temporary file.
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    target: PathBuf,
    len: u64,
    pending_zeros: u64,
}

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

impl AtomicFile {
    /// Start writing `rel` under `root` (parents created as needed, symlinked parents refused).
    pub fn create(root: &Path, rel: &str) -> Result<AtomicFile> {
        let target = prepare_parent(root, rel, true)?;
        if let Ok(m) = fs::symlink_metadata(&target) {
            if m.is_dir() {
                return Err(Error::msg(format!(
                    "cannot write file {rel:?}: a directory is in the way"
                )));
            }
        }
        let tmp = tmp_path(&target);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            file: Some(file),
            tmp,
            target,
            len: 0,
            pending_zeros: 0,
        })
    }

    /// Append data. Runs of zeros are skipped with a seek, so sparse input stays sparse.
    pub fn write_chunk(&mut self, mut data: &[u8]) -> Result<()> {
        let f = self.file.as_mut().expect("file is open until commit");
        while !data.is_empty() {
            let n = data.len().min(ZEROS.len());
            let (head, rest) = data.split_at(n);
            if head == &ZEROS[..n] {
                self.pending_zeros += n as u64;
            } else {
                if self.pending_zeros > 0 {
                    f.seek(SeekFrom::Current(self.pending_zeros as i64))
                        .map_err(|e| Error::io(&self.tmp, e))?;
                    self.pending_zeros = 0;
                }
                f.write_all(head).map_err(|e| Error::io(&self.tmp, e))?;
            }
            self.len += n as u64;
            data = rest;
        }
        Ok(())
    }

    /// Copy everything from `r` into the file; returns the bytes copied.
    pub fn copy_from(&mut self, r: &mut dyn Read) -> Result<u64> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("", e).context("reading file data")),
            };
            self.write_chunk(&buf[..n])?;
            total += n as u64;
        }
        Ok(total)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Set the mode and mtime, then rename into place (replacing a file or symlink that was there).
    pub fn commit(mut self, exec: bool, mtime: Option<SystemTime>) -> Result<()> {
        let f = self.file.take().expect("file is open until commit");
        f.set_len(self.len).map_err(|e| Error::io(&self.tmp, e))?;
        let mode = if exec { 0o755 } else { 0o644 };
        f.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(&self.tmp, e))?;
        if let Some(t) = mtime {
            f.set_times(fs::FileTimes::new().set_modified(t))
                .map_err(|e| Error::io(&self.tmp, e))?;
        }
        drop(f);
        fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Create the directory `rel` (and its parents). A file or symlink in the way is an error, never
/// silently replaced (the sync plan removes or backs it up first when it knows about it).
pub fn make_dir(root: &Path, rel: &str) -> Result<()> {
    let p = prepare_parent(root, rel, true)?;
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) => {
            let what = if m.file_type().is_symlink() {
                "symlink"
            } else {
                "file"
            };
            return Err(Error::msg(format!(
                "cannot create directory {rel:?}: a {what} is in the way"
            )));
        }
        Err(_) => {}
    }
    match fs::create_dir(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => {}
        Err(e) => return Err(Error::io(&p, e)),
    }
    Ok(())
}

/// Create (or retarget) the symlink `rel` pointing at `target`. The target is stored as given and never
/// followed. An empty directory in the way is removed; a non-empty one is an error.
pub fn make_symlink(root: &Path, rel: &str, target: &str) -> Result<()> {
    if target.is_empty() || target.contains('\0') {
        return Err(Error::msg(format!("symlink {rel:?} has an invalid target")));
    }
    let p = prepare_parent(root, rel, true)?;
    if let Ok(m) = fs::symlink_metadata(&p) {
        if m.is_dir() {
            fs::remove_dir(&p).map_err(|e| {
                Error::io(&p, e).context(format!("replacing directory {rel:?} with a symlink"))
            })?;
        }
    }
    let tmp = tmp_path(&p);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io(&tmp, e))?;
    if let Err(e) = fs::rename(&tmp, &p) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(&p, e));
    }
    Ok(())
}

/// Set or clear the exec bits of the file `rel` (symlinks are refused, directories left alone).
pub fn set_exec(root: &Path, rel: &str, exec: bool) -> Result<()> {
    let p = prepare_parent(root, rel, false)?;
    let m = fs::symlink_metadata(&p).map_err(|e| Error::io(&p, e))?;
    if m.file_type().is_symlink() {
        return Err(Error::msg(format!(
            "refusing to chmod through symlink {rel:?}"
        )));
    }
    if m.is_dir() {
        return Ok(());
    }
    let mode = if exec { 0o755 } else { 0o644 };
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|e| Error::io(&p, e))
}

/// What [`remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// Nothing was there.
    Absent,
    /// A directory that still has entries was kept.
    KeptNotEmpty,
}

/// Remove the file or symlink `rel`, or the directory `rel` if it is empty.
pub fn remove(root: &Path, rel: &str) -> Result<Removed> {
    let p = match prepare_parent(root, rel, false) {
        Ok(p) => p,
        Err(e) => {
            // A missing parent means the entry is already gone.
            if let Error::Io { source, .. } = e.root() {
                if source.kind() == std::io::ErrorKind::NotFound {
                    return Ok(Removed::Absent);
                }
            }
            return Err(e);
        }
    };
    let m = match fs::symlink_metadata(&p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Removed::Absent),
        Err(e) => return Err(Error::io(&p, e)),
    };
    if m.is_dir() {
        match fs::remove_dir(&p) {
            Ok(()) => Ok(Removed::Removed),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => {
                Ok(Removed::KeptNotEmpty)
            }
            Err(e) => Err(Error::io(&p, e)),
        }
    } else {
        fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        Ok(Removed::Removed)
    }
}

/// Rename `from` to `to`, both inside the root (the destination's parents are created).
pub fn rename(root: &Path, from: &str, to: &str) -> Result<()> {
    let a = prepare_parent(root, from, false)?;
    fs::symlink_metadata(&a).map_err(|e| Error::io(&a, e))?;
    let b = prepare_parent(root, to, true)?;
    fs::rename(&a, &b).map_err(|e| Error::io(&b, e).context(format!("renaming {from:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_rel_table() {
        let ok = [
            ("a", vec!["a"]),
            ("./a/b", vec!["a", "b"]),
            ("a//b/", vec!["a", "b"]),
            ("a/./b", vec!["a", "b"]),
            ("ü/日本", vec!["ü", "日本"]),
            ("..a/b..", vec!["..a", "b.."]),
        ];
        for (p, want) in ok {
            assert_eq!(check_rel(p).expect(p), want, "{p}");
        }
        for p in [
            "",
            "/",
            "/etc/passwd",
            "..",
            "a/../b",
            "a/..",
            "./",
            "a\0b",
            ".",
        ] {
            assert!(check_rel(p).is_err(), "{p:?} must be refused");
        }
    }
}
