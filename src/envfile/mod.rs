//! Dotenv loading, filtering (protected names, excludes) and validation for the env Secret
//! `kodama-env-<name>`. Pure apart from reading the named files.
//!
//! Rules:
//! - Files are parsed with `dotenvy` (quotes, escapes, `export`, comments, multi-line quoted
//!   values, `$VAR`/`${VAR}` expansion from the local environment and earlier lines; single quotes
//!   prevent expansion). Several files are read in order; the last definition of a name wins.
//! - A file that does not exist is an error naming it (the user asked for it): never a silent skip.
//! - The well-known credentials `GITHUB_TOKEN`, `GH_TOKEN`, `ANTHROPIC_API_KEY` and
//!   `CLAUDE_CODE_OAUTH_TOKEN` are taken from the local environment when set and non-empty.
//!   Explicit files win over the ambient environment: a value written into a file for this session
//!   is the more deliberate choice.
//! - `--env-exclude`/`excludeVars` names (exact, or a prefix ending in `*`) are dropped, from the
//!   files and from the ambient credentials alike.
//! - Protected names are never injected: PATH, HOME, USER, SHELL, TERM, HOSTNAME, PWD, OLDPWD,
//!   LOGNAME, CLAUDE_CONFIG_DIR, every `KUBERNETES_*` and kodama's own `KODAMA_*`.
//! - Every remaining name must match `^[A-Z_][A-Z0-9_]*$`. Every offending name, and every line
//!   that does not parse, is reported in one `Error::Invalid`, each with its file and line. Values
//!   never appear in any message.
//! - The values total at most 1 MiB (what the Secret stores: the sum of the value bytes).
//!
//! May import: error, secret.

use crate::error::{Error, Result};
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Names that are never injected from dotenv files or the environment.
pub const PROTECTED: [&str; 10] = [
    "PATH",
    "HOME",
    "USER",
    "SHELL",
    "TERM",
    "HOSTNAME",
    "PWD",
    "OLDPWD",
    "LOGNAME",
    "CLAUDE_CONFIG_DIR",
];
/// Name prefixes that are never injected.
pub const PROTECTED_PREFIXES: [&str; 2] = ["KUBERNETES_", "KODAMA_"];
/// Credentials taken from the local environment when set.
pub const AMBIENT_CREDENTIALS: [&str; 4] = [
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
];
/// Largest total of the values (the Secret size limit).
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// Where a variable's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A dotenv file, at a 1-based line.
    File { path: PathBuf, line: usize },
    /// The local process environment (one of [`AMBIENT_CREDENTIALS`]).
    Environment,
}

/// Why a name was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Matched `--env-exclude`/`excludeVars`.
    Excluded,
    /// A protected name (never overridden).
    Protected,
}

/// The variables to inject. `Debug` shows names, never values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvSet {
    pub vars: BTreeMap<String, Secret>,
    pub origins: BTreeMap<String, Origin>,
    pub skipped: BTreeMap<String, Skip>,
}

impl EnvSet {
    /// The names that will be injected, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.vars.keys().map(String::as_str).collect()
    }
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
    /// Bytes the Secret will hold (sum of the values).
    pub fn total_bytes(&self) -> usize {
        self.vars.values().map(|v| v.expose().len()).sum()
    }
    /// The warning line shown before start: which names are loaded (never the values) and which
    /// protected names were ignored. None when there is nothing to say.
    pub fn summary(&self) -> Option<String> {
        let protected: Vec<&str> = self
            .skipped
            .iter()
            .filter(|(_, s)| **s == Skip::Protected)
            .map(|(n, _)| n.as_str())
            .collect();
        if self.vars.is_empty() && protected.is_empty() {
            return None;
        }
        let mut s = if self.vars.is_empty() {
            "no environment variables will be injected".to_string()
        } else {
            format!(
                "injecting {} environment variable{} into the session (values not shown): {}",
                self.vars.len(),
                if self.vars.len() == 1 { "" } else { "s" },
                self.names().join(", ")
            )
        };
        if !protected.is_empty() {
            s.push_str(&format!(
                "; ignoring protected name{}: {}",
                if protected.len() == 1 { "" } else { "s" },
                protected.join(", ")
            ));
        }
        Some(s)
    }
}

/// True for `^[A-Z_][A-Z0-9_]*$`.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_uppercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_')
}

/// True for a protected name.
pub fn is_protected(name: &str) -> bool {
    PROTECTED.contains(&name) || PROTECTED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// True when `name` matches one of the exclude patterns (exact, or `PREFIX*`).
pub fn is_excluded(name: &str, exclude: &[String]) -> bool {
    exclude.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => p == name,
    })
}

/// The local process environment, for [`load`]'s `ambient` parameter.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// One assignment found in a dotenv file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: Secret,
    /// 1-based line of the assignment.
    pub line: usize,
}

/// Finds the physical line of each item dotenvy yields, scanning forward through the raw text.
struct Locator<'a> {
    lines: Vec<&'a str>,
    cursor: usize,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Locator<'a> {
        Locator {
            lines: text.split('\n').map(|l| l.trim_end_matches('\r')).collect(),
            cursor: 0,
        }
    }

    /// The line assigning `key` (`KEY=`, `export KEY=`, with optional blanks around `=`).
    fn assignment(&mut self, key: &str) -> usize {
        let found = (self.cursor..self.lines.len()).find(|&i| {
            let l = self.lines[i].trim_start();
            let assigns = |s: &str| {
                s.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            };
            assigns(l)
                || l.strip_prefix("export")
                    .filter(|r| r.starts_with([' ', '\t']))
                    .is_some_and(|r| assigns(r.trim_start()))
        });
        self.settle(found)
    }

    /// The line where a parse error's text starts.
    fn error_line(&mut self, err_text: &str) -> usize {
        let first = err_text
            .split('\n')
            .next()
            .unwrap_or("")
            .trim_end_matches('\r')
            .trim_end();
        let found = (self.cursor..self.lines.len()).find(|&i| {
            let l = self.lines[i].trim_end();
            !first.is_empty() && (l == first || l.ends_with(first))
        });
        let found = found.or_else(|| {
            (self.cursor..self.lines.len()).find(|&i| {
                let l = self.lines[i].trim();
                !l.is_empty() && !l.starts_with('#')
            })
        });
        self.settle(found)
    }

    fn settle(&mut self, found: Option<usize>) -> usize {
        match found {
            Some(i) => {
                self.cursor = i + 1;
                i + 1
            }
            None => self.cursor.max(1),
        }
    }

    /// True when line `n` (1-based) reads `[export ]<name> =`.
    fn is_assignment(&self, n: usize, name: &str) -> bool {
        let Some(l) = n.checked_sub(1).and_then(|i| self.lines.get(i)) else {
            return false;
        };
        let l = l.trim_start();
        let l = match l.strip_prefix("export") {
            Some(r) if r.starts_with([' ', '\t']) => r.trim_start(),
            _ => l,
        };
        l.strip_prefix(name)
            .is_some_and(|r| r.trim_start().starts_with('='))
    }

    /// The variable name at the start of line `n` (1-based), if it has one: names are not secret.
    fn name_at(&self, n: usize) -> Option<String> {
        let l = self.lines.get(n.checked_sub(1)?)?.trim_start();
        let l = match l.strip_prefix("export") {
            Some(r) if r.starts_with([' ', '\t']) => r.trim_start(),
            _ => l,
        };
        let end = l
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
            .unwrap_or(l.len());
        (end > 0).then(|| l[..end].to_string())
    }
}

fn invalid_name(path: &Path, line: usize, name: &str) -> String {
    format!(
        "{}:{line}: invalid variable name {name:?}: names must match ^[A-Z_][A-Z0-9_]*$ (uppercase letters, digits, '_')",
        path.display()
    )
}

/// Parse dotenv `text` (the content of `path`, used in messages). Returns the assignments in file
/// order and the faults as (line, `path:line: …`), which never contain values.
pub fn parse(text: &str, path: &Path) -> (Vec<Entry>, Vec<(usize, String)>) {
    let mut entries = Vec::new();
    let mut faults = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut loc = Locator::new(text);
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok((name, value)) => {
                let line = loc.assignment(&name);
                entries.push(Entry {
                    name,
                    value: Secret::new(value),
                    line,
                });
            }
            Err(dotenvy::Error::LineParse(err_text, _)) => {
                let line = loc.error_line(&err_text);
                let name = loc.name_at(line);
                let assigns = name.as_deref().is_some_and(|n| loc.is_assignment(line, n));
                if let Some(n) = name.as_deref().filter(|n| assigns && !is_valid_name(n)) {
                    faults.push((line, invalid_name(path, line, n)));
                    continue;
                }
                let what = match name {
                    Some(n) => format!(" (variable {n})"),
                    None => String::new(),
                };
                faults.push((
                    line,
                    format!(
                        "{}:{line}: cannot parse this line{what}: expected NAME=value, with balanced quotes and only \\n, \\\\, \\\", \\' and \\$ escapes",
                        path.display()
                    ),
                ));
            }
            Err(e) => {
                // I/O from an in-memory reader cannot happen; report it anyway, without content.
                faults.push((0, format!("{}: cannot read: {e}", path.display())));
                break;
            }
        }
    }
    (entries, faults)
}

/// Load `files` in order (last definition wins), add the ambient credentials, drop excluded and
/// protected names, and validate. `ambient` looks a name up in the local environment
/// ([`process_env`] in production, a map in tests).
pub fn load(
    files: &[PathBuf],
    exclude: &[String],
    ambient: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvSet> {
    let mut set = EnvSet::default();
    let mut faults = Vec::new();

    for name in AMBIENT_CREDENTIALS {
        if let Some(v) = ambient(name).filter(|v| !v.is_empty()) {
            set.vars.insert(name.to_string(), Secret::new(v));
            set.origins.insert(name.to_string(), Origin::Environment);
        }
    }

    for path in files {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                faults.push(format!("{}: no such env file", path.display()));
                continue;
            }
            Err(e) => {
                faults.push(format!("{}: cannot read: {e}", path.display()));
                continue;
            }
        };
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
                faults.push(format!("{}:{line}: not valid UTF-8 text", path.display()));
                continue;
            }
        };
        let (entries, mut file_faults) = parse(&text, path);
        for e in entries {
            if is_excluded(&e.name, exclude) {
                set.skipped.insert(e.name, Skip::Excluded);
                continue;
            }
            if is_protected(&e.name) {
                set.skipped.insert(e.name, Skip::Protected);
                continue;
            }
            if !is_valid_name(&e.name) {
                file_faults.push((e.line, invalid_name(path, e.line, &e.name)));
                continue;
            }
            set.origins.insert(
                e.name.clone(),
                Origin::File {
                    path: path.clone(),
                    line: e.line,
                },
            );
            set.vars.insert(e.name, e.value);
        }
        file_faults.sort_by_key(|(line, _)| *line);
        faults.extend(file_faults.into_iter().map(|(_, f)| f));
    }

    // Excludes apply to the ambient credentials too.
    let ambient_excluded: Vec<String> = set
        .vars
        .keys()
        .filter(|n| is_excluded(n, exclude))
        .cloned()
        .collect();
    for n in ambient_excluded {
        set.vars.remove(&n);
        set.origins.remove(&n);
        set.skipped.insert(n, Skip::Excluded);
    }

    let total = set.total_bytes();
    if total > MAX_TOTAL_BYTES {
        let mut sizes: Vec<(usize, &str)> = set
            .vars
            .iter()
            .map(|(k, v)| (v.expose().len(), k.as_str()))
            .collect();
        sizes.sort_by(|a, b| b.cmp(a));
        let largest: Vec<String> = sizes
            .iter()
            .take(3)
            .map(|(n, k)| format!("{k} ({n} bytes)"))
            .collect();
        faults.push(format!(
            "the values total {total} bytes, more than the 1 MiB ({MAX_TOTAL_BYTES} bytes) a Secret holds; largest: {}",
            largest.join(", ")
        ));
    }

    if faults.is_empty() {
        Ok(set)
    } else {
        Err(Error::Invalid {
            what: "environment files".into(),
            faults,
            hint: Some(
                "fix the lines named above, or leave a variable out with --env-exclude NAME (config: env.excludeVars)"
                    .into(),
            ),
        })
    }
}
