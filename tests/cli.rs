//! The real binary: `version` and `help` need no kubeconfig, cluster or HOME; usage errors exit 2
//! with a hint; a closed stdout is not an error; and the README documents the whole CLI surface.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use kodama::cli::spec::{COMMANDS, GLOBAL_FLAGS};

fn kodama(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubectl-kodama"));
    c.args(args)
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env("HOME", "")
        .env_remove("KODAMA_CONFIG_DIR");
    c
}

fn run(args: &[&str]) -> Output {
    kodama(args).output().expect("runs the binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_needs_no_kubeconfig_cluster_or_home() {
    for args in [
        &["version"][..],
        &["--version"],
        &["version", "--kubeconfig", "/also/missing"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout),
            format!("kubectl-kodama version {}\n", env!("CARGO_PKG_VERSION"))
        );
        assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    }
    // HOME entirely unset, too.
    let out = kodama(&["version"]).env_remove("HOME").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn help_lists_every_command() {
    for args in [&["help"][..], &["--help"], &["-h"], &[]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = text(&out.stdout);
        for c in COMMANDS.iter().filter(|c| !c.hidden) {
            assert!(
                help.contains(&format!("\n  {}", c.name)),
                "{args:?} lacks {}:\n{help}",
                c.name
            );
        }
        for c in COMMANDS.iter().filter(|c| c.hidden) {
            assert!(
                !help.contains(&format!("\n  {} ", c.name)),
                "hidden {} is listed",
                c.name
            );
        }
    }
    for c in COMMANDS.iter().filter(|c| !c.hidden) {
        let out = run(&[c.name, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{} --help", c.name);
        let help = text(&out.stdout);
        assert!(
            help.contains(&format!("kubectl kodama {}", c.name)),
            "{help}"
        );
        for f in c.flags.iter().flat_map(|g| g.iter()) {
            assert!(
                help.contains(&format!("--{}", f.long)),
                "{} --help lacks --{}",
                c.name,
                f.long
            );
        }
        let same = run(&["help", c.name]);
        assert_eq!(
            same.stdout, out.stdout,
            "help {0} differs from {0} --help",
            c.name
        );
    }
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    for (args, want) in [
        (
            &["start", "x", "--namspace", "dev"][..],
            "did you mean --namespace?",
        ),
        (&["strat"], "did you mean 'start'?"),
        (
            &["start", "x", "--sync", ".", "--no-sync"],
            "cannot be used together",
        ),
        (&["list", "-o", "csv"], "use table, wide, json or yaml"),
        (
            &["start", "Bad_Name"],
            "session name \"Bad_Name\" is invalid",
        ),
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.starts_with("kubectl-kodama: error: "), "{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("\nhint: "), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    // The read end is closed before (or while) the binary writes; either way it must exit 0 quietly.
    let mut child = kodama(&["help"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn readme_documents_every_command_flag_and_config_key() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for c in COMMANDS.iter().filter(|c| !c.hidden) {
        assert!(
            readme.contains(&format!("kubectl kodama {}", c.name)),
            "README lacks command {}",
            c.name
        );
        for f in c.flags.iter().flat_map(|g| g.iter()) {
            assert!(
                readme.contains(&format!("--{}", f.long)),
                "README lacks {} --{}",
                c.name,
                f.long
            );
        }
    }
    for f in GLOBAL_FLAGS {
        assert!(
            readme.contains(&format!("--{}", f.long)),
            "README lacks global --{}",
            f.long
        );
    }
    for key in kodama::config::known_keys() {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README lacks config key `{key}`"
        );
    }
    for var in [
        "KODAMA_CONFIG_DIR",
        "KUBECONFIG",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "ANTHROPIC_API_KEY",
        "CLAUDE_CODE_OAUTH_TOKEN",
    ] {
        assert!(readme.contains(var), "README lacks {var}");
    }
    assert!(readme.contains("./build.sh install") && readme.contains("./build.sh test"));
}
