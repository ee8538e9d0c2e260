//! The early "no Claude credentials" warning: decide from the env names that will be in the session
//! Secret and a probe of the claude home (through `Remote`) whether the agent can authenticate.
//!
//! May import: error, remote.

use crate::error::Result;
use crate::remote::Remote;

/// Env variables Claude Code authenticates with.
pub const CLAUDE_CREDENTIAL_ENV: &[&str] = &["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"];

/// The warning text.
pub const NO_CREDENTIALS_WARNING: &str = "no Claude credentials: set ANTHROPIC_API_KEY or \
CLAUDE_CODE_OAUTH_TOKEN, or log in once inside the session";

/// What the claude home holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaudeHomeProbe {
    /// `<claude_home>/.credentials.json` exists and is not empty (a `/login` was done).
    pub credentials_file: bool,
    /// A `.claude.json` (in the claude home or in $HOME) records an account or API key.
    pub account: bool,
}

impl ClaudeHomeProbe {
    /// True when the home shows a login.
    pub fn logged_in(&self) -> bool {
        self.credentials_file || self.account
    }
}

const PROBE_SH: &str = r#"test -s "$1/.credentials.json" && echo credentials
for f in "$1/.claude.json" "${HOME:-/nonexistent}/.claude.json"; do
  [ -f "$f" ] && grep -q -e '"oauthAccount"' -e '"primaryApiKey"' "$f" && echo account
done
exit 0"#;

/// Look into the claude home `home` in the pod. Prints only the words "credentials"/"account",
/// never file contents.
pub fn probe_claude_home(remote: &dyn Remote, home: &str) -> Result<ClaudeHomeProbe> {
    let argv = ["sh", "-c", PROBE_SH, "sh", home].map(String::from);
    let out = remote.run(&argv, b"")?;
    let s = out.stdout_str();
    Ok(ClaudeHomeProbe {
        credentials_file: s.lines().any(|l| l == "credentials"),
        account: s.lines().any(|l| l == "account"),
    })
}

/// `Some(warning)` when neither the Secret's env names nor the claude home give the agent a way to
/// authenticate. `probe` is `None` when the home could not be probed yet (e.g. a fresh volume).
pub fn credentials_warning(
    secret_env_names: &[String],
    probe: Option<&ClaudeHomeProbe>,
) -> Option<String> {
    let has_env = secret_env_names
        .iter()
        .any(|n| CLAUDE_CREDENTIAL_ENV.contains(&n.as_str()));
    if has_env || probe.is_some_and(ClaudeHomeProbe::logged_in) {
        None
    } else {
        Some(NO_CREDENTIALS_WARNING.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::LocalRemote;

    #[test]
    fn warns_only_without_env_and_without_login() {
        let none = ClaudeHomeProbe::default();
        assert!(credentials_warning(&[], None).is_some());
        assert!(credentials_warning(&["GITHUB_TOKEN".into()], Some(&none)).is_some());
        assert!(credentials_warning(&["ANTHROPIC_API_KEY".into()], Some(&none)).is_none());
        assert!(credentials_warning(&["CLAUDE_CODE_OAUTH_TOKEN".into()], None).is_none());
        let login = ClaudeHomeProbe {
            credentials_file: true,
            account: false,
        };
        assert!(credentials_warning(&[], Some(&login)).is_none());
    }

    #[test]
    fn probe_reads_the_home_through_remote() {
        let d = std::env::temp_dir().join(format!("kodama-creds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("mkdir");
        let r = LocalRemote {
            cwd: None,
            env: vec![("HOME".into(), d.to_string_lossy().into())],
        };
        let home = d.join(".claude");
        std::fs::create_dir_all(&home).expect("mkdir");
        let h = home.to_string_lossy().to_string();
        assert_eq!(
            probe_claude_home(&r, &h).expect("probe"),
            ClaudeHomeProbe::default()
        );
        std::fs::write(home.join(".credentials.json"), "{\"claudeAiOauth\":{}}").expect("write");
        assert!(probe_claude_home(&r, &h).expect("probe").credentials_file);
        std::fs::write(d.join(".claude.json"), "{\"oauthAccount\":{}}").expect("write");
        assert!(probe_claude_home(&r, &h).expect("probe").account);
        let _ = std::fs::remove_dir_all(&d);
    }
}
