//! The few raw process syscalls kodama needs outside the terminal proper: start a new session (detach
//! from the exec connection), signal a process group, ignore SIGPIPE, and tell whether a pid is a live
//! process. Used by the in-pod agent runner and the background sync process.
//!
//! May import: error.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make `cmd`'s child the leader of a new session (setsid), so it has no controlling terminal and
/// no signal aimed at the exec's process group or session reaches it.
pub fn detach_session(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only setsid(2), which is
    // async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Send `sig` to every process in process group `pgid`. A group that is already gone is not an error.
pub fn kill_group(pgid: u32, sig: i32) -> io::Result<()> {
    let Ok(pgid) = i32::try_from(pgid) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "pgid too large",
        ));
    };
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal pgid <= 1",
        ));
    }
    // SAFETY: kill(2) with a negative pid only sends a signal; no memory is involved.
    let rc = unsafe { libc::kill(-pgid, sig) };
    if rc == -1 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

/// SIGTERM.
pub const SIGTERM: i32 = libc::SIGTERM;
/// SIGKILL.
pub const SIGKILL: i32 = libc::SIGKILL;

/// Ignore SIGPIPE so a write to a closed pipe is an error, not death (the runner may be started
/// from contexts that did not do this for us).
pub fn ignore_sigpipe() {
    // SAFETY: installing SIG_IGN for SIGPIPE has no memory effects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// True when `pid` is a live (not zombie) process whose command line contains `marker` (if given).
/// Reads /proc only; on systems without /proc the answer is `true` for any existing directory.
pub fn pid_alive(pid: u32, marker: Option<&str>) -> bool {
    let base = format!("/proc/{pid}");
    let Ok(stat) = std::fs::read_to_string(format!("{base}/stat")) else {
        return false;
    };
    // Field 3 (after the parenthesised comm, which may contain spaces) is the state.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("");
    if state == "Z" || state == "X" {
        return false;
    }
    match marker {
        None => true,
        Some(m) => std::fs::read(format!("{base}/cmdline"))
            .map(|c| {
                let c: Vec<u8> = c
                    .into_iter()
                    .map(|b| if b == 0 { b' ' } else { b })
                    .collect();
                String::from_utf8_lossy(&c).contains(m)
            })
            .unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_pid_is_alive_and_marker_is_checked() {
        let me = std::process::id();
        assert!(pid_alive(me, None));
        assert!(!pid_alive(me, Some("no-such-marker-in-cmdline-xyz")));
        assert!(!pid_alive(u32::MAX - 1, None));
        assert!(kill_group(1, SIGTERM).is_err());
    }
}
