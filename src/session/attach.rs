//! `attach <name>`: an interactive TTY shell in /workspace (zellij, else bash, else sh), or one
//! command with `--command` whose exit code passes through.
//!
//! The shell is chosen in the pod by one POSIX `sh` script (one exec, no probing round trips):
//! `zellij attach --create <session>` when the image has zellij (so a dropped connection leaves the
//! zellij session running and the next attach picks it up), else `bash`, else `sh`. `--command CMD`
//! runs `sh -c CMD` in /workspace, because users write shell strings ("npm test", "git commit -am x
//! && git push"). It gets a TTY only when our own stdin and stdout are terminals (so `--command hx
//! file` works), and its exit code becomes ours. Idle sessions survive through the exec stream's
//! WebSocket pings (kube::ws).
//!
//! Everything comes from the cluster (resolve::find), so a teammate with only `-n` and the name can
//! attach; a session without a running pod gets resolve's clear error.
//!
//! May import: session::{ctx, resolve, podremote}, kube, term, error.

use super::ctx::Ctx;
use super::resolve;
use crate::cli::AttachArgs;
use crate::error::{Error, Result};
use crate::kube::exec::{run_interactive, ExecRequest};
use crate::manifest::WORKSPACE_DIR;
use crate::term;

/// The interactive shell picker. `$1` is the workspace, `$2` the zellij session name.
pub const SHELL_SH: &str = r#"cd "$1" 2>/dev/null || cd "${HOME:-/}" 2>/dev/null || cd /
if command -v zellij >/dev/null 2>&1; then
  zellij attach --create "$2"
  rc=$?
  [ "$rc" -eq 0 ] && exit 0
  echo "kodama: zellij exited with code $rc; starting a plain shell instead" >&2
fi
if command -v bash >/dev/null 2>&1; then exec bash; fi
exec sh"#;

/// Runs one shell command line in the workspace. `$1` is the workspace, `$2` the command.
pub const COMMAND_SH: &str = r#"cd "$1" || exit 1
exec sh -c "$2""#;

/// The argv of an interactive shell for session `name`.
pub fn shell_argv(name: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        SHELL_SH.into(),
        "kodama-attach".into(),
        WORKSPACE_DIR.into(),
        name.into(),
    ]
}

/// The argv that runs the shell command line `command` in the workspace.
pub fn command_argv(command: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        COMMAND_SH.into(),
        "kodama-attach".into(),
        WORKSPACE_DIR.into(),
        command.into(),
    ]
}

/// `attach <name> [--command CMD]`.
pub fn attach(ctx: &Ctx, args: &AttachArgs) -> Result<()> {
    let found = resolve::find(ctx, &args.name)?;
    let remote = resolve::remote_for(ctx, &found)?;
    let interactive_terminal = term::stdin_is_tty() && term::stdout_is_tty();
    let (argv, tty) = match &args.command {
        Some(c) => {
            if c.trim().is_empty() {
                return Err(Error::usage(
                    "--command is empty",
                    Some("give a command, e.g. --command \"ls -la\"".into()),
                ));
            }
            (command_argv(c), interactive_terminal)
        }
        None => {
            if !interactive_terminal {
                return Err(Error::usage(
                    "an interactive shell needs a terminal, and stdin or stdout is not one",
                    Some(format!(
                        "run one command with `kubectl kodama attach {} --command \"...\"`",
                        args.name
                    )),
                ));
            }
            (shell_argv(&args.name), true)
        }
    };
    let mut req = ExecRequest::new(&remote.namespace, &remote.pod, &argv);
    req.container = remote.container.clone();
    req.stdin = true;
    req.tty = tty;
    let code = run_interactive(&remote.dialer, &req)
        .map_err(|e| e.context(format!("attaching to session \"{}\"", args.name)))?;
    if code != 0 {
        return Err(Error::RemoteExit(code));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::{LocalRemote, Remote};
    use std::os::unix::fs::PermissionsExt;

    fn fake_bin(dir: &std::path::Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write fake binary");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// Runs SHELL_SH with PATH limited to `bin` plus the directory of `sh` itself.
    fn pick(bin: &std::path::Path, ws: &std::path::Path) -> String {
        let sh_dir = ["/bin", "/usr/bin"]
            .into_iter()
            .find(|d| std::path::Path::new(d).join("sh").exists())
            .expect("a POSIX sh in /bin or /usr/bin");
        // Put the fake bin first; the real bash (if any) lives in sh_dir, so a fake `bash`
        // in `bin` shadows it.
        let r = LocalRemote {
            cwd: None,
            env: vec![("PATH".into(), format!("{}:{sh_dir}", bin.display()))],
        };
        let mut argv = shell_argv("my-sess");
        argv[4] = ws.display().to_string();
        let out = r.run(&argv, b"").expect("run the picker");
        format!("{}|{}", out.stdout_str(), out.code)
    }

    #[test]
    fn picker_prefers_zellij_attach_or_create_with_the_session_name_in_the_workspace() {
        let t = std::env::temp_dir().join(format!("kodama-attach-test-{}", std::process::id()));
        let bin = t.join("bin");
        let ws = t.join("ws");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::create_dir_all(&ws).expect("mkdir");
        fake_bin(&bin, "zellij", "echo \"zellij $* in $(pwd)\"");
        fake_bin(&bin, "bash", "echo bash");
        let got = pick(&bin, &ws);
        assert_eq!(
            got,
            format!("zellij attach --create my-sess in {}|0", ws.display())
        );
        // zellij failing falls back to bash (and says so on stderr).
        fake_bin(&bin, "zellij", "exit 3");
        assert_eq!(pick(&bin, &ws), "bash|0");
        // No zellij: bash.
        std::fs::remove_file(bin.join("zellij")).expect("rm");
        assert_eq!(pick(&bin, &ws), "bash|0");
        // Neither zellij nor bash: sh (reads the empty stdin and exits 0, printing nothing).
        let only_sh = t.join("only-sh");
        std::fs::create_dir_all(&only_sh).expect("mkdir");
        let real_sh = ["/bin/sh", "/usr/bin/sh"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("a POSIX sh");
        std::os::unix::fs::symlink(real_sh, only_sh.join("sh")).expect("symlink sh");
        let r = LocalRemote {
            cwd: None,
            env: vec![("PATH".into(), only_sh.display().to_string())],
        };
        let mut argv = shell_argv("my-sess");
        argv[4] = ws.display().to_string();
        let out = r.run(&argv, b"echo from-sh\n").expect("run the picker");
        assert_eq!((out.stdout_str().as_str(), out.code), ("from-sh", 0));
        let _ = std::fs::remove_dir_all(&t);
    }

    #[test]
    fn command_runs_as_a_shell_line_in_the_workspace_and_keeps_its_exit_code() {
        let t = std::env::temp_dir().join(format!("kodama-attach-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&t).expect("mkdir");
        let mut argv = command_argv("echo \"$(pwd)\" && exit 42");
        argv[4] = t.display().to_string();
        let out = LocalRemote::default().run(&argv, b"").expect("run");
        assert_eq!(out.code, 42);
        assert_eq!(out.stdout_str(), t.display().to_string());
        // A missing workspace is an error, not a command run somewhere else.
        argv[4] = t.join("missing").display().to_string();
        let out = LocalRemote::default().run(&argv, b"").expect("run");
        assert_ne!(out.code, 0);
        assert!(out.stdout.is_empty());
        let _ = std::fs::remove_dir_all(&t);
    }
}
