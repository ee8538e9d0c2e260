//! Ignore semantics as table tests: nested .gitignore, negation, anchoring, directory-only patterns,
//! core.excludesFile, .git/info/exclude, .kodamaignore re-include, config patterns, useGitignore=false,
//! and `.git` never synced. Each table is checked both through the single-path matcher (watcher events)
//! and through the scan (the walk), so the two can never disagree.

mod sync_common;

use kodama::sync::ignore::{IgnoreOptions, IgnoreRules};
use kodama::sync::scan::scan;
use sync_common::{write, TempDir};

fn tree() -> TempDir {
    let t = TempDir::new("ignore");
    let r = t.path();
    std::fs::create_dir_all(r.join(".git/info")).unwrap();
    write(r, ".git/HEAD", "ref: refs/heads/main\n");
    write(r, ".git/info/exclude", "secret-local.txt\n");
    write(
        r,
        ".gitignore",
        "*.log\n!keep.log\n/build\ncache/\ntarget\n# comment\n",
    );
    write(
        r,
        "src/.gitignore",
        "generated.rs\n!important.log\n/only-here.txt\n",
    );
    write(r, ".kodamaignore", "!target/\n*.bak\n");
    write(r, "a.log", "");
    write(r, "keep.log", "");
    write(r, "src/x.log", "");
    write(r, "src/important.log", "");
    write(r, "src/generated.rs", "");
    write(r, "src/main.rs", "");
    write(r, "src/only-here.txt", "");
    write(r, "only-here.txt", "");
    write(r, "src/deep/only-here.txt", "");
    write(r, "build/out.o", "");
    write(r, "src/build/ok.rs", "");
    write(r, "cache/c.bin", "");
    write(r, "src/cache/d.bin", "");
    write(r, "cachefile", "");
    write(r, "target/debug/app", "");
    write(r, "old.bak", "");
    write(r, "secret-local.txt", "");
    write(r, "global-ignored.tmp", "");
    write(r, "notes.txt", "");
    write(r, "sub/.git", "gitdir: ../.git/modules/sub\n");
    write(r, "sub/file.txt", "");
    write(r, "ünïcödé/日本.txt", "");
    t
}

fn rules(root: &std::path::Path, use_gitignore: bool, patterns: &[&str]) -> IgnoreRules {
    let global = root.join(".git/global-excludes");
    std::fs::write(&global, "*.tmp\n").unwrap();
    IgnoreRules::new(
        root,
        IgnoreOptions {
            use_gitignore,
            exclude_patterns: patterns.iter().map(|s| s.to_string()).collect(),
            excludes_file: Some(global),
            use_kodamaignore: true,
        },
    )
    .unwrap()
}

fn check(r: &IgnoreRules, table: &[(&str, bool)]) {
    let snap = scan(r, "").unwrap().snapshot;
    for (path, ignored) in table {
        let is_dir = r.root().join(path).is_dir();
        assert_eq!(
            r.is_ignored(path, is_dir),
            *ignored,
            "matcher: {path} should be {}",
            if *ignored { "ignored" } else { "synced" }
        );
        assert_eq!(
            !snap.contains_key(*path),
            *ignored,
            "scan: {path} should be {}",
            if *ignored { "left out" } else { "included" }
        );
    }
}

#[test]
fn gitignore_semantics_table() {
    let t = tree();
    let r = rules(t.path(), true, &[]);
    check(
        &r,
        &[
            // negation
            ("a.log", true),
            ("keep.log", false),
            ("src/x.log", true),
            // nested file re-includes for its own subtree
            ("src/important.log", false),
            ("src/generated.rs", true),
            ("src/main.rs", false),
            // anchored patterns: only at their own level
            ("src/only-here.txt", true),
            ("only-here.txt", false),
            ("src/deep/only-here.txt", false),
            ("build", true),
            ("build/out.o", true),
            ("src/build", false),
            ("src/build/ok.rs", false),
            // directory-only patterns: the dirs at any depth, not a file of that name
            ("cache", true),
            ("cache/c.bin", true),
            ("src/cache/d.bin", true),
            ("cachefile", false),
            // .kodamaignore re-includes what git ignores, and adds its own
            ("target", false),
            ("target/debug/app", false),
            ("old.bak", true),
            // .git/info/exclude and core.excludesFile
            ("secret-local.txt", true),
            ("global-ignored.tmp", true),
            // .git is never synced, also a submodule's gitfile
            (".git", true),
            (".git/HEAD", true),
            ("sub/.git", true),
            ("sub/file.txt", false),
            ("notes.txt", false),
            ("ünïcödé/日本.txt", false),
        ],
    );
}

#[test]
fn use_gitignore_false_keeps_only_kodama_rules_and_git_dir() {
    let t = tree();
    let r = rules(t.path(), false, &[]);
    check(
        &r,
        &[
            ("a.log", false),
            ("src/generated.rs", false),
            ("build/out.o", false),
            ("secret-local.txt", false),
            ("global-ignored.tmp", false),
            ("old.bak", true),
            (".git/HEAD", true),
        ],
    );
    assert!(r.agent_args().contains(&"--no-gitignore".to_string()));
}

#[test]
fn config_patterns_apply_and_kodamaignore_can_reinclude_them() {
    let t = tree();
    write(t.path(), "data/big.csv", "");
    write(t.path(), "data/small.csv", "");
    write(t.path(), "data/.kodamaignore", "!small.csv\n");
    write(t.path(), "tmp/x", "");
    let r = rules(t.path(), true, &["*.csv", "tmp/", "notes.txt"]);
    check(
        &r,
        &[
            ("data/big.csv", true),
            ("data/small.csv", false),
            ("tmp", true),
            ("tmp/x", true),
            ("notes.txt", true),
            ("keep.log", false),
        ],
    );
    // The pod gets the patterns that do not live in the tree.
    let args = r.agent_args();
    assert!(args
        .windows(2)
        .any(|w| w[0] == "--exclude" && w[1] == "*.csv"));
    assert!(args
        .windows(2)
        .any(|w| w[0] == "--exclude" && w[1] == "secret-local.txt"));
    assert!(args
        .windows(2)
        .any(|w| w[0] == "--exclude" && w[1] == "*.tmp"));
}

#[test]
fn invalidate_picks_up_edited_ignore_files() {
    let t = tree();
    let r = rules(t.path(), true, &[]);
    assert!(!r.is_ignored("notes.txt", false));
    write(t.path(), ".kodamaignore", "notes.txt\n");
    r.invalidate();
    assert!(r.is_ignored("notes.txt", false));
}

#[test]
fn gitignore_of_a_parent_directory_applies_to_a_synced_subdirectory() {
    let t = tree();
    write(t.path(), "src/sub2/a.log", "");
    write(t.path(), "src/sub2/b.rs", "");
    let r = IgnoreRules::new(&t.join("src"), IgnoreOptions::default()).unwrap();
    assert!(r.is_ignored("sub2/a.log", false), "root .gitignore *.log");
    assert!(r.is_ignored("generated.rs", false), "src/.gitignore");
    assert!(!r.is_ignored("sub2/b.rs", false));
}
