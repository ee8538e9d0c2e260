//! Tar round trips (exec bits, symlinks kept as symlinks, empty dirs, non-ASCII and long names), a
//! streamed 1 GiB sparse file checked chunk by chunk, and hostile archives refused without anything
//! being written outside the destination.

mod sync_common;

use kodama::sync::archive::{extract, write_tar, ExtractOptions};
use kodama::sync::ignore::{IgnoreOptions, IgnoreRules};
use kodama::sync::scan::scan;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use sync_common::{write, TempDir};

fn rules(root: &Path) -> IgnoreRules {
    IgnoreRules::new(root, IgnoreOptions::default()).unwrap()
}

/// Stream a tar of `src` through a socket pipe into `dst` (no in-memory archive).
fn pipe_copy(src: &Path, dst: &Path) -> kodama::sync::archive::ExtractReport {
    let snap = scan(&rules(src), "").unwrap().snapshot;
    let (a, b) = UnixStream::pair().unwrap();
    let src = src.to_path_buf();
    let writer = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, a);
        let st = write_tar(&mut w, &src, &snap, &mut |_| {}).unwrap();
        w.flush().unwrap();
        st
    });
    let rep = extract(
        b,
        dst,
        &ExtractOptions {
            preserve_mtime: true,
            ..Default::default()
        },
    )
    .unwrap();
    let st = writer.join().unwrap();
    assert_eq!(st.files, rep.stats.files);
    rep
}

#[test]
fn round_trip_preserves_modes_symlinks_empty_dirs_and_names() {
    let src = TempDir::new("ar-src");
    let dst = TempDir::new("ar-dst");
    let s = src.path();
    write(s, "bin/run.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(s.join("bin/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    write(s, "ünïcödé/日本語 ファイル.txt", "こんにちは");
    let long = format!("{}/{}.txt", "d".repeat(120), "n".repeat(150));
    write(s, &long, "long");
    std::fs::create_dir_all(s.join("empty/inner")).unwrap();
    std::os::unix::fs::symlink("bin/run.sh", s.join("inside-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", s.join("outside-link")).unwrap();
    std::os::unix::fs::symlink("../../outside", s.join("bin/rel-outside")).unwrap();
    write(s, ".git/config", "[core]\n");
    let rep = pipe_copy(s, dst.path());
    assert!(rep.refused.is_empty(), "{:?}", rep.refused);
    let d = dst.path();
    assert_eq!(
        std::fs::metadata(d.join("bin/run.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_to_string(d.join("ünïcödé/日本語 ファイル.txt")).unwrap(),
        "こんにちは"
    );
    assert_eq!(std::fs::read_to_string(d.join(&long)).unwrap(), "long");
    assert!(d.join("empty/inner").is_dir());
    for (l, t) in [
        ("inside-link", "bin/run.sh"),
        ("outside-link", "/etc/passwd"),
        ("bin/rel-outside", "../../outside"),
    ] {
        let md = d.join(l).symlink_metadata().unwrap();
        assert!(md.file_type().is_symlink(), "{l} stays a symlink");
        assert_eq!(std::fs::read_link(d.join(l)).unwrap().to_str(), Some(t));
    }
    assert!(!d.join(".git").exists(), ".git is never sent");
    // mtimes survive (whole seconds).
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(d.join("bin/run.sh")).unwrap().mtime(),
        std::fs::metadata(s.join("bin/run.sh")).unwrap().mtime()
    );
}

#[test]
fn a_one_gib_sparse_file_streams_through_without_being_buffered() {
    const SIZE: u64 = 1 << 30;
    let src = TempDir::new("ar-big-src");
    let dst = TempDir::new("ar-big-dst");
    let markers: [(u64, &[u8]); 3] = [(0, b"head"), (SIZE / 2 + 3, b"middle"), (SIZE - 4, b"tail")];
    {
        let mut f = std::fs::File::create(src.join("big.bin")).unwrap();
        f.set_len(SIZE).unwrap();
        for (off, data) in markers {
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(data).unwrap();
        }
    }
    let rep = pipe_copy(src.path(), dst.path());
    assert_eq!(rep.stats.bytes, SIZE);
    let mut f = std::fs::File::open(dst.join("big.bin")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), SIZE);
    // Check every byte in 4 MiB chunks: zeros except the markers.
    let mut buf = vec![0u8; 4 << 20];
    let mut want = vec![0u8; 4 << 20];
    let mut off = 0u64;
    while off < SIZE {
        let n = f.read(&mut buf).unwrap();
        assert!(n > 0);
        want[..n].fill(0);
        for (m_off, data) in markers {
            for (i, b) in data.iter().enumerate() {
                let p = m_off + i as u64;
                if p >= off && p < off + n as u64 {
                    want[(p - off) as usize] = *b;
                }
            }
        }
        assert!(buf[..n] == want[..n], "content differs in chunk at {off}");
        off += n as u64;
    }
}

/// A raw tar header with any name (the tar crate's safe builders refuse hostile names).
fn raw_entry(ar: &mut Vec<u8>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_old();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    ar.extend_from_slice(h.as_bytes());
    ar.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    ar.extend(std::iter::repeat_n(0u8, pad));
}

#[test]
fn hostile_archives_are_refused_and_nothing_lands_outside() {
    let base = TempDir::new("ar-hostile");
    let dst = base.join("dst");
    let outside = base.join("outside");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let mut ar = Vec::new();
    use tar::EntryType::*;
    raw_entry(&mut ar, b"../outside/dotdot", Regular, b"", b"x");
    raw_entry(&mut ar, b"/tmp/kodama-abs-evil", Regular, b"", b"x");
    raw_entry(&mut ar, b"ok/../../outside/sneaky", Regular, b"", b"x");
    // A symlink to outside, then a file through it: the link is kept, the write through it refused.
    raw_entry(&mut ar, b"link", Symlink, b"../outside", b"");
    raw_entry(&mut ar, b"link/through", Regular, b"", b"x");
    raw_entry(&mut ar, b"link/dir/", Directory, b"", b"");
    // A symlink named like an existing dir entry, then a file "into" it.
    raw_entry(&mut ar, b"abs-link", Symlink, b"/", b"");
    raw_entry(&mut ar, b"abs-link/etc/kodama-evil", Regular, b"", b"x");
    raw_entry(&mut ar, b"hard", Link, b"/etc/passwd", b"");
    raw_entry(&mut ar, b"fifo", Fifo, b"", b"");
    raw_entry(&mut ar, b"good.txt", Regular, b"", b"fine");
    ar.extend(std::iter::repeat_n(0u8, 1024));
    let rep = extract(&ar[..], &dst, &ExtractOptions::default()).unwrap();
    let refused: Vec<&str> = rep.refused.iter().map(|(p, _)| p.as_str()).collect();
    for p in [
        "../outside/dotdot",
        "/tmp/kodama-abs-evil",
        "ok/../../outside/sneaky",
        "link/through",
        "link/dir",
        "abs-link/etc/kodama-evil",
        "hard",
        "fifo",
    ] {
        assert!(refused.contains(&p), "{p} must be refused: {refused:?}");
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing outside"
    );
    assert!(!Path::new("/tmp/kodama-abs-evil").exists());
    assert!(!Path::new("/etc/kodama-evil").exists());
    assert_eq!(
        std::fs::read_to_string(dst.join("good.txt")).unwrap(),
        "fine"
    );
    assert!(dst
        .join("link")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn keep_newer_skips_newer_local_files_and_reports_them() {
    let src = TempDir::new("ar-src");
    let dst = TempDir::new("ar-dst");
    write(src.path(), "a.txt", "from pod");
    write(src.path(), "b.txt", "from pod");
    write(dst.path(), "a.txt", "local newer");
    let f = std::fs::File::options()
        .write(true)
        .open(dst.join("a.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    let snap = scan(&rules(src.path()), "").unwrap().snapshot;
    let mut buf = Vec::new();
    write_tar(&mut buf, src.path(), &snap, &mut |_| {}).unwrap();
    let rep = extract(
        &buf[..],
        dst.path(),
        &ExtractOptions {
            keep_newer: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dst.join("a.txt")).unwrap(),
        "local newer"
    );
    assert_eq!(
        std::fs::read_to_string(dst.join("b.txt")).unwrap(),
        "from pod"
    );
    assert_eq!(rep.skipped.len(), 1);
    assert!(rep.skipped[0].1.contains("newer"));
}
