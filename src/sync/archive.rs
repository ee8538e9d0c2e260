//! Tar streams: a writer that streams a snapshot's files straight from disk (nothing is buffered whole,
//! so multi-GiB files are fine) and a safe extractor for archives from anywhere (the pod included).
//!
//! Writer: GNU headers (long names and link targets through the GNU extensions the `tar` crate
//! writes), mode 0755/0644 from the exec bit, whole-second mtimes, directories (also empty ones) and
//! symlinks as symlinks. A file that changes size while it is read is cut or zero-padded to the size
//! in its header, so the archive stays well-formed; the watcher sends the new version afterwards.
//!
//! Extractor: every entry goes through `sync::safefs` (no absolute paths, no `..`, nothing written
//! through a symlink, nothing outside the root, files written atomically). Hard links, devices and
//! fifos are refused. Refused entries are reported, not fatal, so one hostile name cannot hide the
//! rest; callers decide whether a refusal fails the command.
//!
//! May import: error, sync::{scan, safefs}.

use crate::error::{Error, Result};
use crate::sync::safefs::{self, AtomicFile};
use crate::sync::scan::{Kind, Snapshot};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Counters of an archive written or extracted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// File content bytes.
    pub bytes: u64,
    /// Files of the snapshot that could not be opened (gone, unreadable) and were left out.
    pub skipped: Vec<(String, String)>,
}

impl ArchiveStats {
    /// Files plus symlinks plus directories.
    pub fn entries(&self) -> u64 {
        self.files + self.dirs + self.symlinks
    }
}

/// A writer that counts the bytes going through it.
struct Counting<'a, W: Write> {
    inner: W,
    count: &'a mut u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        *self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Reads exactly `len` bytes: the file's data, cut or zero-padded.
struct Exact<R: Read> {
    inner: R,
    left: u64,
    eof: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = if self.eof {
            0
        } else {
            self.inner.read(&mut buf[..want])?
        };
        let n = if n == 0 {
            self.eof = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Write a tar of the snapshot's entries (read from `root`) to `out`, ending with the end-of-archive
/// marker. `progress(entries_done, content_bytes_done)` is called after every entry. Entries that
/// vanished since the scan are skipped.
pub fn write_tar<W: Write>(
    out: W,
    root: &Path,
    snap: &Snapshot,
    progress: &mut dyn FnMut(&ArchiveStats),
) -> Result<ArchiveStats> {
    let mut wire_bytes = 0u64;
    let mut b = tar::Builder::new(Counting {
        inner: out,
        count: &mut wire_bytes,
    });
    let mut stats = ArchiveStats::default();
    let werr = |e: std::io::Error| Error::io("", e).context("writing the tar stream");
    for (rel, e) in snap {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(e.mtime.max(0) as u64);
        h.set_uid(0);
        h.set_gid(0);
        match e.kind {
            Kind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("{rel}/"), std::io::empty())
                    .map_err(werr)?;
                stats.dirs += 1;
            }
            Kind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                let target = e.target.as_deref().unwrap_or_default();
                b.append_link(&mut h, rel, target).map_err(werr)?;
                stats.symlinks += 1;
            }
            Kind::File => {
                let abs = root.join(rel);
                let file = match OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&abs)
                {
                    Ok(f) => f,
                    // Gone, unreadable, or replaced by a symlink since the scan.
                    Err(e) => {
                        stats.skipped.push((rel.clone(), e.to_string()));
                        continue;
                    }
                };
                let len = file.metadata().map(|m| m.len()).unwrap_or(e.size);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if e.exec { 0o755 } else { 0o644 });
                h.set_size(len);
                let data = Exact {
                    inner: file,
                    left: len,
                    eof: false,
                };
                b.append_data(&mut h, rel, data).map_err(werr)?;
                stats.files += 1;
                stats.bytes += len;
            }
        }
        progress(&stats);
    }
    b.finish().map_err(werr)?;
    let mut inner = b.into_inner().map_err(werr)?;
    inner.flush().map_err(werr)?;
    Ok(stats)
}

/// Decides whether to skip an entry: (path relative to the root, is-directory) → skip?
pub type SkipFn<'a> = &'a dyn Fn(&str, bool) -> bool;

/// How to extract.
#[derive(Default)]
pub struct ExtractOptions<'a> {
    /// Return true to skip an entry (path relative to the root, is-directory), e.g. ignored paths.
    pub skip: Option<SkipFn<'a>>,
    /// Keep a local file whose mtime is newer than the entry's (pull without --force).
    pub keep_newer: bool,
    /// Set file mtimes from the archive.
    pub preserve_mtime: bool,
}

/// What an extraction did.
#[derive(Debug, Default, Clone)]
pub struct ExtractReport {
    pub stats: ArchiveStats,
    /// Entries refused as unsafe or unsupported: (path as in the archive, reason).
    pub refused: Vec<(String, String)>,
    /// Entries skipped by policy (ignored, or a newer local file kept): (path, reason).
    pub skipped: Vec<(String, String)>,
}

/// Extract a tar stream into `root` safely (see the module docs). Fails only on a corrupt stream or an
/// I/O error on the destination; unsafe entries are refused and reported.
pub fn extract<R: Read>(input: R, root: &Path, opts: &ExtractOptions) -> Result<ExtractReport> {
    let root = safefs::open_root(root)?;
    let mut ar = tar::Archive::new(input);
    let mut rep = ExtractReport::default();
    let entries = ar
        .entries()
        .map_err(|e| Error::io("", e).context("reading the tar stream"))?;
    for ent in entries {
        let mut ent = ent.map_err(|e| Error::io("", e).context("reading the tar stream"))?;
        let raw = ent.path_bytes().into_owned();
        let name = match String::from_utf8(raw) {
            Ok(n) => n,
            Err(e) => {
                rep.refused.push((
                    String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    "name is not UTF-8".into(),
                ));
                continue;
            }
        };
        let etype = ent.header().entry_type();
        // The archive root itself ("./" or ".") carries nothing.
        if matches!(name.as_str(), "." | "./") && etype == tar::EntryType::Directory {
            continue;
        }
        let rel = match safefs::check_rel(&name) {
            Ok(c) => c.join("/"),
            Err(e) => {
                rep.refused.push((name, e.to_string()));
                continue;
            }
        };
        let is_dir = etype == tar::EntryType::Directory;
        if let Some(skip) = opts.skip {
            if skip(&rel, is_dir) {
                rep.skipped.push((rel, "ignored".into()));
                continue;
            }
        }
        let mtime = ent.header().mtime().unwrap_or(0) as i64;
        let mode = ent.header().mode().unwrap_or(0o644);
        let result: Result<()> = match etype {
            tar::EntryType::Directory => safefs::make_dir(&root, &rel).map(|_| rep.stats.dirs += 1),
            tar::EntryType::Symlink => match ent.link_name_bytes() {
                Some(t) => match String::from_utf8(t.into_owned()) {
                    Ok(t) => safefs::make_symlink(&root, &rel, &t).map(|_| rep.stats.symlinks += 1),
                    Err(_) => Err(Error::msg("symlink target is not UTF-8")),
                },
                None => Err(Error::msg("symlink without a target")),
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if opts.keep_newer {
                    if let Some(reason) = newer_local(&root, &rel, mtime) {
                        rep.skipped.push((rel, reason));
                        continue;
                    }
                }
                let mut f = match AtomicFile::create(&root, &rel) {
                    Ok(f) => f,
                    Err(e) => {
                        rep.refused.push((rel, e.to_string()));
                        continue;
                    }
                };
                let n = f.copy_from(&mut ent)?;
                let t = opts.preserve_mtime.then(|| safefs::system_time(mtime, 0));
                f.commit(mode & 0o111 != 0, t)?;
                rep.stats.files += 1;
                rep.stats.bytes += n;
                Ok(())
            }
            tar::EntryType::Link => Err(Error::msg("hard links are not supported")),
            other => Err(Error::msg(format!("unsupported entry type {other:?}"))),
        };
        if let Err(e) = result {
            rep.refused.push((rel, e.to_string()));
        }
    }
    Ok(rep)
}

/// Why a local file at `rel` must be kept (it is newer than `mtime`, or a directory is in the way).
fn newer_local(root: &Path, rel: &str, mtime: i64) -> Option<String> {
    let p = root.join(rel);
    let m = std::fs::symlink_metadata(&p).ok()?;
    if m.is_dir() {
        return Some("a local directory has this name".into());
    }
    use std::os::unix::fs::MetadataExt;
    if m.file_type().is_file() && m.mtime() > mtime {
        return Some("the local file is newer (use --force to overwrite)".into());
    }
    None
}
