//! Env injection: dotenv parsing edge cases, ordering, excludes, protected names, name validation
//! with file and line, the size limit, ambient credentials, and that values never leak into
//! Debug output or error messages. Fixtures live in fixtures/env/.

use kodama::envfile::{self, Origin, Skip};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/env")
        .join(name)
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn value(set: &envfile::EnvSet, k: &str) -> String {
    set.vars
        .get(k)
        .unwrap_or_else(|| panic!("{k} missing from {:?}", set.names()))
        .expose()
        .to_string()
}

fn line_of(set: &envfile::EnvSet, k: &str) -> usize {
    match &set.origins[k] {
        Origin::File { line, .. } => *line,
        Origin::Environment => 0,
    }
}

#[test]
fn dotenv_syntax_is_parsed_properly() {
    let set = envfile::load(&[fixture("basic.env")], &[], &no_env).expect("basic.env loads");
    assert_eq!(value(&set, "PLAIN"), "plain-value");
    assert_eq!(value(&set, "EXPORTED"), "exported value");
    assert_eq!(value(&set, "DOUBLE"), "double quoted # not a comment");
    assert_eq!(value(&set, "SINGLE"), "single $NOT_EXPANDED");
    assert_eq!(
        value(&set, "ESCAPES"),
        "back\\slash \"quoted\" $DOLLAR and a\nnewline"
    );
    assert_eq!(value(&set, "INLINE_COMMENT"), "value");
    assert_eq!(value(&set, "EMPTY"), "");
    assert_eq!(value(&set, "SPACED"), "around the equals");
    assert_eq!(value(&set, "MULTI"), "first line\nsecond line\nthird line");
    assert_eq!(value(&set, "AFTER_MULTI"), "after");
    assert_eq!(
        value(&set, "DUP"),
        "second",
        "last definition in a file wins"
    );
    // Line numbers come from the raw text, multi-line values included.
    assert_eq!(line_of(&set, "PLAIN"), 3);
    assert_eq!(line_of(&set, "EXPORTED"), 4);
    assert_eq!(line_of(&set, "SPACED"), 10);
    assert_eq!(line_of(&set, "MULTI"), 11);
    assert_eq!(line_of(&set, "AFTER_MULTI"), 14);
    assert_eq!(line_of(&set, "DUP"), 16);
}

#[test]
fn crlf_files_parse() {
    let set = envfile::load(&[fixture("crlf.env")], &[], &no_env).expect("crlf loads");
    assert_eq!(value(&set, "CRLF"), "windows");
    assert_eq!(value(&set, "NEXT"), "two");
    assert_eq!(line_of(&set, "NEXT"), 2);
}

#[test]
fn later_files_win_and_protected_names_are_never_injected() {
    let set = envfile::load(
        &[fixture("basic.env"), fixture("override.env")],
        &[],
        &no_env,
    )
    .expect("loads");
    assert_eq!(value(&set, "DUP"), "from-override");
    assert_eq!(value(&set, "PLAIN"), "overridden");
    assert_eq!(value(&set, "MULTI"), "first line\nsecond line\nthird line");
    for p in ["PATH", "HOME", "KUBERNETES_SERVICE_HOST", "KODAMA_SESSION"] {
        assert!(!set.vars.contains_key(p), "{p} must not be injected");
        assert_eq!(set.skipped.get(p), Some(&Skip::Protected), "{p}");
    }
    let summary = set.summary().expect("summary");
    assert!(
        summary.contains("PLAIN") && summary.contains("MULTI"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "ignoring protected names: HOME, KODAMA_SESSION, KUBERNETES_SERVICE_HOST, PATH"
        ),
        "{summary}"
    );
    assert!(!summary.contains("overridden") && !summary.contains("plain-value"));
}

#[test]
fn protected_table() {
    for p in [
        "PATH",
        "HOME",
        "USER",
        "SHELL",
        "TERM",
        "HOSTNAME",
        "PWD",
        "OLDPWD",
        "LOGNAME",
        "KUBERNETES_PORT",
        "KUBERNETES_ANYTHING",
        "KODAMA_X",
        "CLAUDE_CONFIG_DIR",
    ] {
        assert!(envfile::is_protected(p), "{p}");
    }
    for ok in ["GITHUB_TOKEN", "KUBE", "MY_PATH", "HOME2"] {
        assert!(!envfile::is_protected(ok), "{ok}");
    }
}

#[test]
fn name_validation_table() {
    for ok in ["A", "_", "_X1", "GITHUB_TOKEN", "A1_B2"] {
        assert!(envfile::is_valid_name(ok), "{ok}");
    }
    for bad in ["", "a", "1A", "A-B", "A.B", "Ab", "É", "A B"] {
        assert!(!envfile::is_valid_name(bad), "{bad}");
    }
}

#[test]
fn every_bad_name_is_reported_in_one_error_with_file_and_line() {
    let err = envfile::load(&[fixture("bad_names.env")], &[], &no_env).expect_err("bad names");
    let text = err.to_string();
    let f = fixture("bad_names.env").display().to_string();
    for (line, name) in [
        (2, "lower_case"),
        (4, "1LEADING_DIGIT"),
        (5, "MIXED_Case"),
        (6, "dotted.name"),
        (8, "my-dashed"),
    ] {
        let needle = format!("{f}:{line}: invalid variable name \"{name}\"");
        assert!(text.contains(&needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("GOOD") && !text.contains("OK_TOO"), "{text}");
    assert!(matches!(err, kodama::Error::Invalid { .. }));
}

#[test]
fn an_excluded_bad_name_is_not_an_error() {
    let exclude: Vec<String> = [
        "lower_case",
        "1LEADING_DIGIT",
        "MIXED_Case",
        "dotted.name",
        "my-dashed",
    ]
    .map(String::from)
    .to_vec();
    // my-dashed does not even parse as an assignment, so it stays an error.
    let err = envfile::load(&[fixture("bad_names.env")], &exclude, &no_env).expect_err("dash");
    let text = err.to_string();
    assert!(
        text.contains(":8: invalid variable name \"my-dashed\""),
        "{text}"
    );
    assert!(!text.contains("lower_case"), "{text}");
}

#[test]
fn syntax_errors_are_all_reported_without_values() {
    let err = envfile::load(&[fixture("bad_syntax.env")], &[], &no_env).expect_err("bad syntax");
    let text = err.to_string();
    let f = fixture("bad_syntax.env").display().to_string();
    assert!(
        text.contains(&format!("{f}:2: cannot parse this line (variable BROKEN)")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{f}:4: cannot parse this line (variable BAD_ESCAPE)"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{f}:5: cannot parse this line (variable UNTERMINATED)"
        )),
        "{text}"
    );
    for value in ["unquoted value with spaces", "never closed", "\\q"] {
        assert!(!text.contains(value), "value {value:?} leaked into: {text}");
    }
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let missing = fixture("does-not-exist.env");
    let err =
        envfile::load(&[fixture("basic.env"), missing.clone()], &[], &no_env).expect_err("missing");
    let text = err.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("no such env file"), "{text}");
}

#[test]
fn excludes_apply_to_files_and_ambient_credentials_with_prefix_patterns() {
    let ambient = |k: &str| match k {
        "GITHUB_TOKEN" => Some("ghp_ambient".to_string()),
        "ANTHROPIC_API_KEY" => Some("sk-ant-ambient".to_string()),
        _ => None,
    };
    let exclude = vec![
        "DOUBLE".to_string(),
        "ANTHROPIC_*".to_string(),
        "SIN*".to_string(),
    ];
    let set = envfile::load(&[fixture("basic.env")], &exclude, &ambient).expect("loads");
    assert!(!set.vars.contains_key("DOUBLE"));
    assert!(!set.vars.contains_key("SINGLE"));
    assert!(!set.vars.contains_key("ANTHROPIC_API_KEY"));
    assert_eq!(set.skipped["ANTHROPIC_API_KEY"], Skip::Excluded);
    assert_eq!(value(&set, "GITHUB_TOKEN"), "ghp_ambient");
    assert_eq!(set.origins["GITHUB_TOKEN"], Origin::Environment);
}

#[test]
fn ambient_credentials_are_picked_up_and_files_win_over_them() {
    let env: BTreeMap<&str, &str> = BTreeMap::from([
        ("GITHUB_TOKEN", "ghp_ambient"),
        ("GH_TOKEN", "gho_ambient"),
        ("ANTHROPIC_API_KEY", "sk-ant-ambient"),
        ("CLAUDE_CODE_OAUTH_TOKEN", ""),
        ("UNRELATED", "not-taken"),
    ]);
    let ambient = |k: &str| env.get(k).map(|v| v.to_string());
    let set = envfile::load(&[], &[], &ambient).expect("loads");
    assert_eq!(
        set.names(),
        vec!["ANTHROPIC_API_KEY", "GH_TOKEN", "GITHUB_TOKEN"]
    );
    let set = envfile::load(&[fixture("override.env")], &[], &ambient).expect("loads");
    assert_eq!(value(&set, "GITHUB_TOKEN"), "ghp_from_file");
    assert_eq!(value(&set, "GH_TOKEN"), "gho_ambient");
}

#[test]
fn total_size_is_limited_to_one_mebibyte() {
    let dir = std::env::temp_dir().join(format!("kodama-envsize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let big = dir.join("big.env");
    let half = "x".repeat(600 * 1024);
    std::fs::write(&big, format!("BIG_A={half}\nBIG_B={half}\n")).expect("write");
    let err = envfile::load(std::slice::from_ref(&big), &[], &no_env).expect_err("too big");
    let text = err.to_string();
    assert!(text.contains("1 MiB"), "{text}");
    assert!(
        text.contains("BIG_A") && !text.contains(&half[..64]),
        "{text}"
    );
    // Exactly at the limit is fine.
    let exact = "y".repeat(1024 * 1024 - 1);
    std::fs::write(&big, format!("ONE={exact}\nTWO=z\n")).expect("write");
    let set = envfile::load(&[big], &[], &no_env).expect("at the limit");
    assert_eq!(set.total_bytes(), 1024 * 1024);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_and_errors_never_show_values() {
    let ambient = |k: &str| (k == "GITHUB_TOKEN").then(|| "ghp_ambient_secret".to_string());
    let set = envfile::load(
        &[fixture("basic.env"), fixture("override.env")],
        &[],
        &ambient,
    )
    .expect("loads");
    let dbg = format!("{set:?}");
    for v in [
        "plain-value",
        "overridden",
        "exported value",
        "first line",
        "ghp_from_file",
        "ghp_ambient_secret",
    ] {
        assert!(!dbg.contains(v), "value {v:?} leaked into Debug: {dbg}");
    }
    assert!(dbg.contains("PLAIN") && dbg.contains("<redacted>"));
}

#[test]
fn non_utf8_and_bom_files() {
    let dir = std::env::temp_dir().join(format!("kodama-envenc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let bad = dir.join("latin1.env");
    std::fs::write(&bad, b"OK=1\nNAME=caf\xe9\n").expect("write");
    let err = envfile::load(std::slice::from_ref(&bad), &[], &no_env).expect_err("not utf-8");
    assert!(
        err.to_string().contains("latin1.env:2: not valid UTF-8"),
        "{err}"
    );
    let bom = dir.join("bom.env");
    std::fs::write(&bom, "\u{feff}FIRST=1\nSECOND=2\n").expect("write");
    let set = envfile::load(std::slice::from_ref(&bom), &[], &no_env).expect("bom");
    assert_eq!(set.names(), vec!["FIRST", "SECOND"]);
    assert_eq!(line_of(&set, "FIRST"), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
