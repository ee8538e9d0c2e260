//! Which local paths sync skips: gitignore semantics from the `ignore` crate, layered the kodama way.
//!
//! One matcher, [`IgnoreRules`], serves both the tree walk (`scan`) and single paths from watcher
//! events, so the two can never disagree. Pattern syntax and matching (negation, anchoring, `**`,
//! directory-only patterns) come from `ignore::gitignore`; this file only decides which pattern files
//! apply to a path and in which order.
//!
//! Precedence for a path (first layer with a match decides, like git's own "last match wins" inside a
//! file):
//! 1. `.kodamaignore` files, the deepest directory first (so a `!pattern` there re-includes what git
//!    ignores);
//! 2. the config's `sync.excludePatterns` (root-relative, gitignore syntax);
//! 3. unless `sync.useGitignore=false`: `.gitignore` files, deepest first, including those of parent
//!    directories up to the enclosing git work tree; then `.git/info/exclude`; then `core.excludesFile`.
//!
//! As in git, a path under an ignored directory is ignored whatever its own patterns say. `.git` (at
//! any depth) is never synced. `.gitignore` files apply even when the directory is not a git
//! repository (a copied project still means them).
//!
//! May import: error.

use crate::error::{Error, Result};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The name of kodama's own ignore file.
pub const KODAMAIGNORE: &str = ".kodamaignore";

/// Where the ignore rules come from (the `sync:` config section plus the user's git config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreOptions {
    /// `sync.useGitignore` (default true): honour .gitignore, .git/info/exclude and core.excludesFile.
    pub use_gitignore: bool,
    /// `sync.excludePatterns`: extra gitignore-syntax patterns, relative to the sync root.
    pub exclude_patterns: Vec<String>,
    /// The `core.excludesFile` to read, if any. [`IgnoreOptions::new`] fills it from the user's git
    /// config (`~/.gitconfig`, `$XDG_CONFIG_HOME/git/config`, default `$XDG_CONFIG_HOME/git/ignore`).
    pub excludes_file: Option<PathBuf>,
    /// Honour `.kodamaignore` files (default true; off only for an explicit `pull --no-ignore`).
    pub use_kodamaignore: bool,
}

impl Default for IgnoreOptions {
    fn default() -> Self {
        IgnoreOptions {
            use_gitignore: true,
            exclude_patterns: Vec::new(),
            excludes_file: None,
            use_kodamaignore: true,
        }
    }
}

impl IgnoreOptions {
    /// Options from the config values, with `core.excludesFile` looked up in the user's git config.
    pub fn new(use_gitignore: bool, exclude_patterns: Vec<String>) -> Self {
        IgnoreOptions {
            use_gitignore,
            exclude_patterns,
            excludes_file: ignore::gitignore::gitconfig_excludes_path(),
            use_kodamaignore: true,
        }
    }
}

/// The ignore files found in one directory of the tree.
#[derive(Default)]
struct DirRules {
    git: Option<Gitignore>,
    kodama: Option<Gitignore>,
}

/// The compiled ignore rules for one sync root. Cheap to query; `.gitignore`/`.kodamaignore` files
/// are read lazily per directory and cached until [`IgnoreRules::invalidate`].
pub struct IgnoreRules {
    root: PathBuf,
    opts: IgnoreOptions,
    config: Gitignore,
    /// `.gitignore` files of directories above the root (inside the enclosing work tree), deepest first.
    parents: Vec<Gitignore>,
    info_exclude: Option<Gitignore>,
    global: Option<Gitignore>,
    /// The info/exclude and core.excludesFile files in use, for [`IgnoreRules::pod_patterns`].
    pattern_files: Vec<PathBuf>,
    cache: Mutex<HashMap<String, Arc<DirRules>>>,
    warnings: Mutex<Vec<String>>,
}

impl std::fmt::Debug for IgnoreRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgnoreRules")
            .field("root", &self.root)
            .field("opts", &self.opts)
            .finish()
    }
}

/// True when `rel` (a `/`-separated path relative to the root) is or lies inside a `.git` directory.
pub fn is_git_dir_path(rel: &str) -> bool {
    rel.split('/').any(|c| c == ".git")
}

impl IgnoreRules {
    /// Compile the rules for the sync root `root` (made absolute here). Malformed patterns do not fail
    /// the build; they are skipped and reported through [`IgnoreRules::warnings`].
    pub fn new(root: &Path, opts: IgnoreOptions) -> Result<IgnoreRules> {
        let root = std::path::absolute(root).map_err(|e| Error::io(root, e))?;
        let mut warnings = Vec::new();
        let mut b = GitignoreBuilder::new(&root);
        for p in &opts.exclude_patterns {
            if let Err(e) = b.add_line(None, p) {
                warnings.push(format!("sync.excludePatterns: {e}"));
            }
        }
        let config = b.build().map_err(|e| {
            Error::with_hint(
                format!("sync.excludePatterns: {e}"),
                "fix the pattern in your kodama config (gitignore syntax)",
            )
        })?;
        let mut parents = Vec::new();
        let mut info_exclude = None;
        let mut global = None;
        let mut pattern_files = Vec::new();
        if opts.use_gitignore {
            let work_tree = find_work_tree(&root);
            let base = work_tree.clone().unwrap_or_else(|| root.clone());
            if let Some(wt) = &work_tree {
                let mut dir = root.parent();
                while let Some(d) = dir {
                    if !d.starts_with(wt) {
                        break;
                    }
                    if let Some(g) = load_file(d, &d.join(".gitignore"), &mut warnings) {
                        parents.push(g);
                    }
                    dir = d.parent();
                }
                info_exclude = load_file(wt, &wt.join(".git/info/exclude"), &mut warnings);
                if info_exclude.is_some() {
                    pattern_files.push(wt.join(".git/info/exclude"));
                }
            }
            if let Some(f) = &opts.excludes_file {
                global = load_file(&base, f, &mut warnings);
                if global.is_some() {
                    pattern_files.push(f.clone());
                }
            }
        }
        Ok(IgnoreRules {
            root,
            opts,
            config,
            parents,
            info_exclude,
            global,
            pattern_files,
            cache: Mutex::new(HashMap::new()),
            warnings: Mutex::new(warnings),
        })
    }

    /// The absolute sync root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The options these rules were built from.
    pub fn options(&self) -> &IgnoreOptions {
        &self.opts
    }

    /// Patterns that could not be read or parsed (each names its file and line).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Forget cached ignore files, e.g. after a watcher saw a `.gitignore` or `.kodamaignore` change.
    pub fn invalidate(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    /// True when `name` is an ignore file whose change must invalidate the cache.
    pub fn is_rules_file(name: &str) -> bool {
        name == ".gitignore" || name == KODAMAIGNORE
    }

    /// Is the path `rel` (relative to the root, `/`-separated) ignored? Checks every ancestor
    /// directory too, so it is right for single paths from watcher events.
    pub fn is_ignored(&self, rel: &str, is_dir: bool) -> bool {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return false;
        }
        if is_git_dir_path(rel) {
            return true;
        }
        let mut end = 0;
        while let Some(i) = rel[end..].find('/') {
            let prefix = &rel[..end + i];
            if self.matches_entry(prefix, true) {
                return true;
            }
            end += i + 1;
        }
        self.matches_entry(rel, is_dir)
    }

    /// Is the entry `rel` ignored by its own patterns, assuming its ancestors are not? This is what a
    /// top-down walk asks (it never descends into an ignored directory).
    pub fn matches_entry(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() {
            return false;
        }
        if rel == ".git" || rel.ends_with("/.git") {
            return true;
        }
        let abs = self.root.join(rel);
        let dirs = parent_dirs(rel);
        // 1. .kodamaignore, deepest first.
        for d in dirs.iter().rev() {
            let rules = self.dir_rules(d);
            if let Some(g) = &rules.kodama {
                match g.matched(&abs, is_dir) {
                    Match::Ignore(_) => return true,
                    Match::Whitelist(_) => return false,
                    Match::None => {}
                }
            }
        }
        // 2. config patterns.
        match self.config.matched(&abs, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
        if !self.opts.use_gitignore {
            return false;
        }
        // 3. .gitignore deepest first, then parents, info/exclude, core.excludesFile.
        let mut layers: Vec<Arc<DirRules>> = Vec::new();
        for d in dirs.iter().rev() {
            layers.push(self.dir_rules(d));
        }
        let git_layers = layers
            .iter()
            .filter_map(|l| l.git.as_ref())
            .chain(self.parents.iter())
            .chain(self.info_exclude.iter())
            .chain(self.global.iter());
        for g in git_layers {
            match g.matched(&abs, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }

    fn dir_rules(&self, rel_dir: &str) -> Arc<DirRules> {
        if let Ok(c) = self.cache.lock() {
            if let Some(r) = c.get(rel_dir) {
                return r.clone();
            }
        }
        let dir = if rel_dir.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel_dir)
        };
        let mut warnings = Vec::new();
        let rules = Arc::new(DirRules {
            git: if self.opts.use_gitignore {
                load_file(&dir, &dir.join(".gitignore"), &mut warnings)
            } else {
                None
            },
            kodama: if self.opts.use_kodamaignore {
                load_file(&dir, &dir.join(KODAMAIGNORE), &mut warnings)
            } else {
                None
            },
        });
        if !warnings.is_empty() {
            if let Ok(mut w) = self.warnings.lock() {
                w.extend(warnings);
            }
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(rel_dir.to_string(), rules.clone());
        }
        rules
    }

    /// The arguments that make `kubectl-kodama agent pack`/`list` in the pod apply the rules that do
    /// not live in the tree itself (config patterns, info/exclude and core.excludesFile lines, the
    /// useGitignore switch). Nested `.gitignore`/`.kodamaignore` files travel with the tree.
    pub fn agent_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if !self.opts.use_gitignore {
            args.push("--no-gitignore".to_string());
        }
        for p in self.pod_patterns() {
            args.push("--exclude".to_string());
            args.push(p);
        }
        args
    }

    /// The root-level patterns that do not live in the tree (see [`IgnoreRules::agent_args`]).
    pub fn pod_patterns(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.opts.use_gitignore {
            for f in &self.pattern_files {
                if let Ok(text) = std::fs::read_to_string(f) {
                    out.extend(
                        text.lines()
                            .map(|l| l.trim_end().to_string())
                            .filter(|l| !l.is_empty() && !l.starts_with('#')),
                    );
                }
            }
        }
        out.extend(self.opts.exclude_patterns.iter().cloned());
        out
    }
}

/// `a/b/c` → `["", "a", "a/b"]`: the directories whose ignore files apply to `rel`.
fn parent_dirs(rel: &str) -> Vec<&str> {
    let mut out = vec![""];
    let mut end = 0;
    while let Some(i) = rel[end..].find('/') {
        out.push(&rel[..end + i]);
        end += i + 1;
    }
    out
}

/// The nearest directory at or above `root` that contains `.git` (a directory or a gitfile).
fn find_work_tree(root: &Path) -> Option<PathBuf> {
    let mut d = Some(root);
    while let Some(dir) = d {
        if dir.join(".git").exists() {
            return Some(dir.to_path_buf());
        }
        d = dir.parent();
    }
    None
}

fn load_file(base: &Path, file: &Path, warnings: &mut Vec<String>) -> Option<Gitignore> {
    if !file.is_file() {
        return None;
    }
    let mut b = GitignoreBuilder::new(base);
    if let Some(e) = b.add(file) {
        warnings.push(format!("{}: {e}", file.display()));
    }
    match b.build() {
        Ok(g) if !g.is_empty() => Some(g),
        Ok(_) => None,
        Err(e) => {
            warnings.push(format!("{}: {e}", file.display()));
            None
        }
    }
}
