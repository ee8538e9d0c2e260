//! Process primitives of the simulated kubelet: the per-pod sandbox that holds the pod's mount
//! namespace, spawning container/exec processes inside it as the container user, ptys, and killing
//! process groups and every process of a namespace. All `unsafe` code of the kubelet lives here.
//!
//! May import: std, libc.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One bind mount of the pod's namespace.
#[derive(Debug, Clone)]
pub struct BindMount {
    pub src: PathBuf,
    pub dst: String,
    pub read_only: bool,
}

fn cstr(p: &[u8]) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Start the pod sandbox: `sleep infinity` in a new mount namespace (propagation rslave, so nothing
/// leaks back to the host) with every bind mount applied. Mount points must already exist.
pub fn spawn_sandbox(mounts: &[BindMount]) -> io::Result<Child> {
    let mut prepared = Vec::new();
    for m in mounts {
        prepared.push((
            cstr(m.src.as_os_str().as_bytes())?,
            cstr(m.dst.as_bytes())?,
            m.read_only,
        ));
    }
    let root = cstr(b"/")?;
    let mut cmd = Command::new("sleep");
    cmd.arg("infinity")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure only makes async-signal-safe syscalls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            for (src, dst, ro) in &prepared {
                check(libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ))?;
                if *ro {
                    check(libc::mount(
                        std::ptr::null(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ))?;
                }
            }
            check(libc::setsid())?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// The identity and place a container process runs with.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Working directory inside the pod namespace ("/" when the spec has none).
    pub workdir: String,
}

/// How the child's stdio is wired.
pub enum Io {
    /// Pipes; stdin piped only when `stdin` is true (else /dev/null).
    Pipes { stdin: bool },
    /// A pty slave on 0/1/2, made the controlling terminal of the child's new session.
    Pty(OwnedFd),
}

/// Spawn `argv` inside the mount namespace of `sandbox_pid` as `id`, in its own session (so the
/// kubelet can signal the whole process group).
pub fn spawn_in_pod(
    sandbox_pid: u32,
    argv: &[String],
    env: &[(String, String)],
    id: &Identity,
    io: Io,
) -> io::Result<Child> {
    let Some(program) = argv.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command specified",
        ));
    };
    let ns = File::open(format!("/proc/{sandbox_pid}/ns/mnt"))?;
    let ns_fd: RawFd = ns.as_raw_fd();
    let workdir = cstr(id.workdir.as_bytes())?;
    let (uid, gid) = (id.uid, id.gid);
    let groups: Vec<libc::gid_t> = id.groups.clone();
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..]).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let tty = matches!(io, Io::Pty(_));
    match io {
        Io::Pipes { stdin } => {
            cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        Io::Pty(slave) => {
            let a = slave.try_clone()?;
            let b = slave.try_clone()?;
            cmd.stdin(Stdio::from(slave))
                .stdout(Stdio::from(a))
                .stderr(Stdio::from(b));
        }
    }
    // SAFETY: only async-signal-safe syscalls on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::setns(ns_fd, libc::CLONE_NEWNS))?;
            check(libc::setsid())?;
            if tty {
                check(libc::ioctl(0, libc::TIOCSCTTY, 0))?;
            }
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
            check(libc::chdir(workdir.as_ptr()))?;
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            Ok(())
        });
    }
    let child = cmd.spawn();
    drop(ns);
    child
}

/// Open a pty pair (both ends close-on-exec from the start, so a concurrent fork in another
/// thread cannot inherit them) with an initial window size.
pub fn open_pty(cols: u16, rows: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: plain syscalls; every fd is owned right after it is created.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(m);
        check(libc::grantpt(m))?;
        check(libc::unlockpt(m))?;
        let mut name = [0 as libc::c_char; 128];
        let r = libc::ptsname_r(m, name.as_mut_ptr(), name.len());
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let s = libc::open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let slave = OwnedFd::from_raw_fd(s);
        set_winsize(master.as_raw_fd(), cols, rows);
        Ok((master, slave))
    }
}

/// Set a pty's window size.
pub fn set_winsize(fd: RawFd, cols: u16, rows: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: plain ioctl on an fd we own.
    unsafe {
        libc::ioctl(fd, libc::TIOCSWINSZ, &ws);
    }
}

/// Send `sig` to the process group `pgid`.
pub fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Send `sig` to one process.
pub fn kill_pid(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: plain syscall.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// The mount-namespace identity (`mnt:[N]`) of a process.
pub fn mnt_ns_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

/// Every process (other than `except`) in the mount namespace `ns`.
pub fn pids_in_ns(ns: &Path, except: u32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == except {
            continue;
        }
        if mnt_ns_of(pid).as_deref() == Some(ns) {
            out.push(pid as i32);
        }
    }
    out
}

/// Whether this process may create mount namespaces (root with CAP_SYS_ADMIN).
pub fn namespaces_available() -> Result<(), String> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "the simulated kubelet needs root (CAP_SYS_ADMIN) to create one mount \
                    namespace per pod and bind-mount volumes; run the tests as root (e.g. in a \
                    privileged CI container)"
                .to_string(),
        );
    }
    Ok(())
}

/// chown without following symlinks.
pub fn lchown(p: &Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    std::os::unix::fs::lchown(p, uid, gid)
}
