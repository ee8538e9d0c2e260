//! Getting the agent into the pod: probe the pod through [`Remote`], and when our own binary can run
//! there (a static Linux executable of the pod's CPU architecture), copy it in once to a versioned path
//! and verify it with `agent version`. Otherwise report a fallback so the client uses plain `tar`/`sh`
//! over exec.
//!
//! Only a POSIX shell is needed in the pod: the copy is `cat > tmp && chmod && mv` so a dropped copy
//! never leaves a half binary at the final path.
//!
//! May import: error, remote, agent::server (version line).

use crate::error::{Error, Result};
use crate::remote::Remote;
use std::path::{Path, PathBuf};

/// How sync reaches the pod's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMode {
    /// Run `<path> agent …` in the pod.
    Agent { path: String },
    /// Use `tar` and `sh` over exec; the reason says why the agent is not used.
    Fallback { reason: String },
}

/// Where and what to install.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Install path in the pod. A leading `~/` or `$HOME/` is replaced with the pod user's home.
    /// Default: `$HOME/.kodama/bin/kubectl-kodama-<version>`.
    pub path: String,
    /// The local binary to copy (default: `std::env::current_exe()`).
    pub binary: Option<PathBuf>,
    /// Copy even a dynamically linked binary (tests, where the "pod" is this machine).
    pub allow_dynamic: bool,
    /// Never install: always report the fallback (e.g. a config switch).
    pub disabled: bool,
    /// Second-choice directory, used when `path` cannot be written or executed (a read-only or
    /// noexec home). Default: `/tmp/.kodama/bin`.
    pub fallback_dir: String,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            path: default_path(),
            binary: None,
            allow_dynamic: false,
            disabled: false,
            fallback_dir: DEFAULT_FALLBACK_DIR.to_string(),
        }
    }
}

/// The default [`InstallOptions::fallback_dir`].
pub const DEFAULT_FALLBACK_DIR: &str = "/tmp/.kodama/bin";

/// `$HOME/.kodama/bin/kubectl-kodama-<version>`.
pub fn default_path() -> String {
    format!("$HOME/.kodama/bin/kubectl-kodama-{}", crate::VERSION)
}

/// The architecture names `uname -m` prints for our compile target.
pub fn uname_matches_target(uname_m: &str) -> bool {
    let m = uname_m.trim();
    match std::env::consts::ARCH {
        "x86_64" => matches!(m, "x86_64" | "amd64"),
        "aarch64" => matches!(m, "aarch64" | "arm64" | "armv8l"),
        "arm" => m.starts_with("armv7") || m.starts_with("armv6"),
        "riscv64" => m == "riscv64",
        "s390x" => m == "s390x",
        "powerpc64" => m.starts_with("ppc64"),
        other => m == other,
    }
}

/// What an ELF header says about a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfInfo {
    /// e_machine (62 = x86-64, 183 = aarch64).
    pub machine: u16,
    /// No PT_INTERP program header: needs no dynamic loader (static or static-pie).
    pub is_static: bool,
}

/// Parse the ELF header and program headers of a 64-bit little-endian ELF file (pure).
pub fn parse_elf(bytes: &[u8]) -> Option<ElfInfo> {
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return None;
    }
    let u16at = |o: usize| -> Option<u16> {
        Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?))
    };
    let u32at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?))
    };
    let u64at = |o: usize| -> Option<u64> {
        Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?))
    };
    let machine = u16at(18)?;
    let phoff = u64at(32)? as usize;
    let phentsize = u16at(54)? as usize;
    let phnum = u16at(56)? as usize;
    if phentsize < 4 {
        return None;
    }
    let mut is_static = true;
    for i in 0..phnum {
        let p_type = u32at(phoff.checked_add(i.checked_mul(phentsize)?)?)?;
        if p_type == 3 {
            is_static = false;
        }
    }
    Some(ElfInfo { machine, is_static })
}

fn elf_machine_for_target() -> u16 {
    match std::env::consts::ARCH {
        "x86_64" => 62,
        "aarch64" => 183,
        "arm" => 40,
        "riscv64" => 243,
        "s390x" => 22,
        "powerpc64" => 21,
        _ => 0,
    }
}

/// Can `binary` be copied into a Linux pod whose `uname -m` is `uname_m`? `Err(reason)` if not.
pub fn local_binary_fits(
    binary: &Path,
    uname_m: &str,
    allow_dynamic: bool,
) -> std::result::Result<(), String> {
    if !cfg!(target_os = "linux") {
        return Err(format!(
            "this kubectl-kodama is built for {}, the pod runs Linux",
            std::env::consts::OS
        ));
    }
    if !uname_matches_target(uname_m) {
        return Err(format!(
            "the pod's CPU architecture is {} and this kubectl-kodama is built for {}",
            uname_m.trim(),
            std::env::consts::ARCH
        ));
    }
    let mut head = vec![0u8; 64 * 1024];
    let n = std::fs::File::open(binary)
        .and_then(|mut f| {
            use std::io::Read;
            f.read(&mut head)
        })
        .map_err(|e| format!("cannot read {}: {e}", binary.display()))?;
    let info = parse_elf(&head[..n])
        .ok_or_else(|| format!("{} is not a 64-bit ELF executable", binary.display()))?;
    if info.machine != elf_machine_for_target() {
        return Err("the local binary's ELF machine does not match its target".into());
    }
    if !info.is_static && !allow_dynamic {
        return Err("this kubectl-kodama is dynamically linked (use the static release build to run the agent in the pod)".into());
    }
    Ok(())
}

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec![
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "sh".to_string(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

/// Expand a leading `~/` or `$HOME/` with the pod's home.
fn expand_home(path: &str, home: &str) -> String {
    for p in ["~/", "$HOME/", "${HOME}/"] {
        if let Some(rest) = path.strip_prefix(p) {
            return format!("{}/{rest}", home.trim_end_matches('/'));
        }
    }
    path.to_string()
}

/// Make sure the agent is in the pod (probe, copy once, verify) and say how to reach it.
/// Errors only when the pod cannot be reached at all; anything else becomes [`AgentMode::Fallback`].
pub fn ensure_agent(remote: &dyn Remote, opts: &InstallOptions) -> Result<AgentMode> {
    if opts.disabled {
        return Ok(AgentMode::Fallback {
            reason: "the in-pod agent is disabled".into(),
        });
    }
    let probe = remote
        .run(&sh("uname -m; printf '%s\\n' \"$HOME\"", &[]), b"")
        .map_err(|e| e.context("probing the pod for the sync agent"))?;
    if probe.code != 0 {
        return Ok(AgentMode::Fallback {
            reason: format!("probing the pod failed: {}", probe.stderr_str()),
        });
    }
    let out = probe.stdout_str();
    let mut lines = out.lines();
    let uname = lines.next().unwrap_or("").to_string();
    let home = lines.next().unwrap_or("").trim().to_string();
    let home = if home.is_empty() {
        "/tmp".to_string()
    } else {
        home
    };
    let path = expand_home(&opts.path, &home);
    // A read-only or noexec home is common in locked-down pods: /tmp is the second choice.
    let mut candidates = vec![path.clone()];
    if let Some(name) = Path::new(&path).file_name().and_then(|n| n.to_str()) {
        let alt = format!("{}/{name}", opts.fallback_dir.trim_end_matches('/'));
        if alt != path {
            candidates.push(alt);
        }
    }
    let want = super::server::version_line();
    let runs = |p: &str| -> bool {
        remote
            .run(&[p.to_string(), "agent".into(), "version".into()], b"")
            .is_ok_and(|o| o.code == 0 && o.stdout_str() == want)
    };
    // Reuse an installed copy of this exact version.
    for c in &candidates {
        if runs(c) {
            return Ok(AgentMode::Agent { path: c.clone() });
        }
    }
    let binary = match &opts.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| Error::io("current executable", e))?,
    };
    if let Err(reason) = local_binary_fits(&binary, &uname, opts.allow_dynamic) {
        return Ok(AgentMode::Fallback { reason });
    }
    let data = std::fs::read(&binary).map_err(|e| Error::io(&binary, e))?;
    let mut failures = Vec::new();
    for c in &candidates {
        let copy = remote.run(
            &sh(
                "set -e; mkdir -p \"$(dirname \"$1\")\"; t=\"$1.tmp.$$\"; \
                 trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; chmod 755 \"$t\"; mv -f \"$t\" \"$1\"; trap - EXIT",
                &[c],
            ),
            &data,
        )?;
        if copy.code != 0 {
            failures.push(format!("copying to {c} failed: {}", copy.stderr_str()));
            continue;
        }
        if runs(c) {
            return Ok(AgentMode::Agent { path: c.clone() });
        }
        failures.push(format!(
            "the copy at {c} does not run (is the directory mounted noexec?)"
        ));
    }
    Ok(AgentMode::Fallback {
        reason: failures.join("; "),
    })
}

/// The argv that starts `agent <command> --root <root>` in the pod.
pub fn agent_argv(path: &str, command: &str, root: &str, extra: &[String]) -> Vec<String> {
    let mut v = vec![
        path.to_string(),
        "agent".to_string(),
        command.to_string(),
        "--root".to_string(),
        root.to_string(),
    ];
    v.extend(extra.iter().cloned());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, interp: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 2 * 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&2u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let t: u32 = if interp { 3 } else { 6 };
        b[120..124].copy_from_slice(&t.to_le_bytes());
        b
    }

    #[test]
    fn elf_static_detection() {
        assert_eq!(
            parse_elf(&elf(62, false)),
            Some(ElfInfo {
                machine: 62,
                is_static: true
            })
        );
        assert_eq!(
            parse_elf(&elf(183, true)),
            Some(ElfInfo {
                machine: 183,
                is_static: false
            })
        );
        assert_eq!(parse_elf(b"#!/bin/sh\n"), None);
        let mut truncated = elf(62, false);
        truncated.truncate(100);
        assert_eq!(parse_elf(&truncated), None);
        // Our own test binary is a real ELF of our machine.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(parse_elf(&me).unwrap().machine, elf_machine_for_target());
    }

    #[test]
    fn arch_and_home_mapping() {
        if std::env::consts::ARCH == "x86_64" {
            assert!(uname_matches_target("x86_64\n"));
            assert!(!uname_matches_target("aarch64"));
        }
        assert_eq!(
            expand_home("$HOME/.kodama/bin/k", "/home/u/"),
            "/home/u/.kodama/bin/k"
        );
        assert_eq!(expand_home("~/x", "/root"), "/root/x");
        assert_eq!(expand_home("/opt/k", "/root"), "/opt/k");
    }
}
