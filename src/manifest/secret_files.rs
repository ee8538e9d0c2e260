//! Secret files (`--secret-file SRC:DST`, template `secretFiles`): parsing, validation and loading of
//! local files that are mounted read-only into the session at absolute paths through the Secret
//! `kodama-files-<name>`.
//!
//! Rules (every fault is reported at once):
//! - SRC: `~` expands to the local home, relative paths are relative to the given base directory; it
//!   must exist and be a regular file (symlinks are followed).
//! - DST: absolute (`~/` means the session user's home, `/home/kodama/`), normalised (no `.`, `..`,
//!   empty components or trailing `/`), unique, not nested inside another DST, and not on paths
//!   kodama or the kubelet own (`/workspace`, `/proc`, `/sys`, `/dev`, `/etc/kodama`, the home,
//!   `~/.claude` and `~/.config` mount points, the editor config directories, `/etc/hosts`, …).
//!   `/workspace` is refused because a mount there would shadow a synced file.
//! - Keys are `NN-<basename>` in DST order: valid Secret keys, unique and deterministic (the
//!   earlier version used base64 with `=` padding, which the API server rejects).
//! - Mode 0400 for anything that looks like a private key or credentials (by content or name),
//!   0440 otherwise. The kubelet gives the files group fsGroup (1000), so the non-root user reads
//!   them through the group; 0400 files are therefore effectively 0440 owned by root, which OpenSSH
//!   accepts for keys.
//! - The contents total at most 1 MiB (the Secret size limit).
//!
//! May import: error, manifest::names.

use super::names;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest total of all secret files (the API server's Secret limit).
pub const MAX_TOTAL_BYTES: u64 = 1024 * 1024;
/// Mode for keys and credentials.
pub const MODE_KEY: u32 = 0o400;
/// Mode for everything else.
pub const MODE_DEFAULT: u32 = 0o440;

/// One `SRC:DST` pair as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFileRef {
    pub source: String,
    pub destination: String,
}

/// How one secret file appears in the pod: Secret key, absolute path, file mode. Plain data (no
/// content), so it can be stored in the session file and used to rebuild the pod on resume.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretFileMount {
    pub key: String,
    pub path: String,
    pub mode: u32,
}

/// File content that must never be printed: Debug shows only its length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> SecretBytes {
        SecretBytes(bytes)
    }
    /// The content itself. Call sites should be few and obvious.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

/// A loaded secret file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// The resolved local path it was read from.
    pub source: PathBuf,
    pub mount: SecretFileMount,
    pub content: SecretBytes,
}

/// Parse `SRC:DST`. The split is at the last `:` that is followed by `/` or `~` (DST is absolute),
/// so SRC may itself contain colons.
pub fn parse_arg(arg: &str) -> Result<SecretFileRef> {
    let split = arg
        .char_indices()
        .filter(|(i, c)| *c == ':' && matches!(arg.as_bytes().get(i + 1), Some(b'/') | Some(b'~')))
        .map(|(i, _)| i)
        .next_back();
    match split {
        Some(i) if i > 0 => Ok(SecretFileRef {
            source: arg[..i].to_string(),
            destination: arg[i + 1..].to_string(),
        }),
        _ => Err(Error::usage(
            format!("--secret-file {arg:?}: expected SRC:DST with an absolute DST"),
            Some("example: --secret-file ~/.ssh/id_ed25519:/home/kodama/.ssh/id_ed25519".into()),
        )),
    }
}

/// Paths a secret file may not be mounted at or under.
const FORBIDDEN_TREES: [&str; 7] = [
    "/workspace",
    "/proc",
    "/sys",
    "/dev",
    "/etc/kodama",
    "/home/kodama/.config/helix",
    "/home/kodama/.config/zellij",
];
/// Paths a secret file may not be mounted at exactly (mount points and kubelet-managed files).
const FORBIDDEN_EXACT: [&str; 9] = [
    "/",
    "/home",
    "/home/kodama",
    "/home/kodama/.claude",
    "/home/kodama/.config",
    "/etc",
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
];

/// Normalise and check a destination; `Err` is the fault text.
pub(crate) fn check_destination(raw: &str) -> std::result::Result<String, String> {
    let dst = if let Some(rest) = raw.strip_prefix("~/") {
        format!("{}/{rest}", super::HOME_DIR)
    } else {
        raw.to_string()
    };
    if !dst.starts_with('/') {
        return Err(format!(
            "destination {raw:?} must be an absolute path (or start with ~/ for {})",
            super::HOME_DIR
        ));
    }
    if dst.len() > 4096 || dst.chars().any(|c| c.is_control()) {
        return Err(format!(
            "destination {raw:?} is too long or has control characters"
        ));
    }
    if dst.len() > 1 && dst.ends_with('/') {
        return Err(format!(
            "destination {raw:?} must name a file, not end with '/'"
        ));
    }
    if FORBIDDEN_EXACT.contains(&dst.as_str()) {
        return Err(format!(
            "destination {raw:?} is a directory kodama or the kubelet manages; choose a file path below it"
        ));
    }
    for comp in dst[1..].split('/') {
        if comp.is_empty() || comp == "." || comp == ".." {
            return Err(format!(
                "destination {raw:?} must be a normalised path (no '..', '.' or '//')"
            ));
        }
    }
    for tree in FORBIDDEN_TREES {
        if dst == tree || dst.starts_with(&format!("{tree}/")) {
            let why = if tree == "/workspace" {
                "the synced workspace (a mount there would shadow a workspace file)"
            } else {
                "a path kodama or the kubelet manages"
            };
            return Err(format!("destination {raw:?} is under {tree}, {why}"));
        }
    }
    Ok(dst)
}

fn expand_source(
    raw: &str,
    base: &Path,
    local_home: Option<&Path>,
) -> std::result::Result<PathBuf, String> {
    let p = if raw == "~" || raw.starts_with("~/") {
        let Some(home) = local_home else {
            return Err(format!(
                "source {raw:?}: cannot expand '~' (HOME is not set)"
            ));
        };
        if raw == "~" {
            home.to_path_buf()
        } else {
            home.join(&raw[2..])
        }
    } else {
        PathBuf::from(raw)
    };
    Ok(if p.is_absolute() { p } else { base.join(p) })
}

/// Names and contents that mark a file as a private key or credentials (mode 0400).
fn looks_sensitive(names: &[&str], content: &[u8]) -> bool {
    let has = |needle: &[u8]| content.windows(needle.len()).any(|w| w == needle);
    if has(b"PRIVATE KEY-----") || has(b"aws_secret_access_key") || has(b"\"private_key\"") {
        return true;
    }
    names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        (n.starts_with("id_") && !n.ends_with(".pub"))
            || n.ends_with(".key")
            || n.ends_with(".pem")
            || n.ends_with(".p12")
            || n.ends_with(".pfx")
            || n.contains("credential")
            || n.contains("secret")
            || n.contains("token")
            || n.contains("password")
            || n == ".netrc"
            || n == ".pgpass"
            || n == ".git-credentials"
            || n == "kubeconfig"
            || n == "config.json" && names.iter().any(|m| m.contains("docker"))
    })
}

/// The Secret key for the file at `index` (in destination order): `NN-<basename>`, with characters
/// outside `[-._a-zA-Z0-9]` replaced by `_` and the length kept within the key limit.
fn key_for(index: usize, dst: &str) -> String {
    let base = dst.rsplit('/').next().unwrap_or("file");
    let mut clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    clean.truncate(200);
    format!("{index:02}-{clean}")
}

/// Validate and read every secret file. `base` resolves relative sources (the working directory for
/// flags, the repository for template entries); `local_home` expands `~`.
pub fn load(
    refs: &[SecretFileRef],
    base: &Path,
    local_home: Option<&Path>,
) -> Result<Vec<SecretFile>> {
    let mut faults = Vec::new();
    let mut pending: Vec<(String, PathBuf, Vec<u8>)> = Vec::new();
    let mut total: u64 = 0;
    for r in refs {
        let dst = match check_destination(&r.destination) {
            Ok(d) => Some(d),
            Err(f) => {
                faults.push(f);
                None
            }
        };
        let src = match expand_source(&r.source, base, local_home) {
            Ok(p) => p,
            Err(f) => {
                faults.push(f);
                continue;
            }
        };
        let meta = match std::fs::metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                faults.push(format!("source {}: no such file", src.display()));
                continue;
            }
            Err(e) => {
                faults.push(format!("source {}: {e}", src.display()));
                continue;
            }
        };
        if !meta.is_file() {
            faults.push(format!("source {}: not a regular file", src.display()));
            continue;
        }
        let content = match std::fs::read(&src) {
            Ok(c) => c,
            Err(e) => {
                faults.push(format!("source {}: {e}", src.display()));
                continue;
            }
        };
        total += content.len() as u64;
        if let Some(d) = dst {
            pending.push((d, src, content));
        }
    }
    pending.sort_by(|a, b| a.0.cmp(&b.0));
    for pair in pending.windows(2) {
        if pair[0].0 == pair[1].0 {
            faults.push(format!(
                "destination {} is given more than once ({} and {})",
                pair[0].0,
                pair[0].1.display(),
                pair[1].1.display()
            ));
        }
    }
    for (i, (a, _, _)) in pending.iter().enumerate() {
        for (b, _, _) in &pending[i + 1..] {
            if b.starts_with(&format!("{a}/")) {
                faults.push(format!(
                    "destination {b} is inside destination {a}, which is a file"
                ));
            }
        }
    }
    if total > MAX_TOTAL_BYTES {
        faults.push(format!(
            "the secret files total {total} bytes; a Secret holds at most {MAX_TOTAL_BYTES} bytes (1 MiB)"
        ));
    }
    if !faults.is_empty() {
        return Err(Error::Invalid {
            what: "secret files".into(),
            faults,
            hint: Some(
                "each --secret-file is SRC:DST: SRC an existing local file, DST an absolute path in the session outside /workspace"
                    .into(),
            ),
        });
    }
    Ok(pending
        .into_iter()
        .enumerate()
        .map(|(i, (dst, src, content))| {
            let dst_name = dst.rsplit('/').next().unwrap_or("");
            let src_name = src.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let dst_parent = dst.rsplit('/').nth(1).unwrap_or("");
            let mode = if looks_sensitive(&[dst_name, src_name, dst_parent], &content) {
                MODE_KEY
            } else {
                MODE_DEFAULT
            };
            let key = key_for(i, &dst);
            debug_assert!(names::is_config_key(&key));
            SecretFile {
                source: src,
                mount: SecretFileMount {
                    key,
                    path: dst,
                    mode,
                },
                content: SecretBytes::new(content),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_arg_splits_at_the_destination() {
        let r = parse_arg("~/.ssh/id_ed25519:/home/kodama/.ssh/id_ed25519").expect("ok");
        assert_eq!(r.source, "~/.ssh/id_ed25519");
        assert_eq!(r.destination, "/home/kodama/.ssh/id_ed25519");
        let r = parse_arg("a:b:/x/y").expect("ok");
        assert_eq!((r.source.as_str(), r.destination.as_str()), ("a:b", "/x/y"));
        let r = parse_arg("creds:~/.aws/credentials").expect("ok");
        assert_eq!(r.destination, "~/.aws/credentials");
        for bad in ["nocolon", "a:relative", ":/x", ""] {
            assert!(parse_arg(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn destination_table() {
        for ok in [
            "/home/kodama/.ssh/id_rsa",
            "/etc/app/cfg",
            "~/.aws/credentials",
            "/opt/x",
        ] {
            assert!(check_destination(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_destination("~/.aws/credentials").as_deref(),
            Ok("/home/kodama/.aws/credentials")
        );
        for (bad, needle) in [
            ("relative/path", "absolute"),
            ("/a/../b", "normalised"),
            ("/a/./b", "normalised"),
            ("/a//b", "normalised"),
            ("/a/", "not end with"),
            ("/workspace/.env", "workspace"),
            ("/workspace", "workspace"),
            ("/proc/x", "manages"),
            ("/etc/kodama/ssh/key", "manages"),
            ("/home/kodama/.config/helix/config.toml", "manages"),
            ("/home/kodama/.claude", "directory"),
            ("/etc/hosts", "directory"),
            ("/", "directory"),
            ("/a\nb", "control"),
            ("~", "absolute"),
        ] {
            let e = check_destination(bad).expect_err(bad);
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn keys_are_valid_unique_and_deterministic() {
        assert_eq!(key_for(0, "/home/kodama/.ssh/id_rsa"), "00-id_rsa");
        assert_eq!(key_for(3, "/x/my key+1"), "03-my_key_1");
        assert!(names::is_config_key(&key_for(12, "/x/é=")));
    }

    #[test]
    fn sensitivity() {
        assert!(looks_sensitive(&["id_ed25519"], b""));
        assert!(!looks_sensitive(&["id_ed25519.pub"], b"ssh-ed25519 AAAA"));
        assert!(looks_sensitive(
            &["anything"],
            b"-----BEGIN OPENSSH PRIVATE KEY-----"
        ));
        assert!(looks_sensitive(&["credentials"], b""));
        assert!(!looks_sensitive(&["settings.toml"], b"x = 1"));
    }

    #[test]
    fn secret_bytes_debug_hides_content() {
        let s = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{s:?}"), "<redacted 7 bytes>");
    }
}
