//! Name rules shared by the CLI, the config files, the session store and the manifests: session
//! names (DNS-1123 labels of at most 40 characters, a leading digit allowed, so every derived object
//! name such as `kodama-claude-home-<name>` stays within Kubernetes' 63), the object names derived
//! from a session name, namespaces, and "did you mean" suggestions by edit distance.
//!
//! This is the one implementation of these rules: `manifest::names` and `config::store` delegate here.
//!
//! May import: std.

/// Longest session name: 63 minus the longest prefix we put in front of it
/// (`kodama-editor-config-`, 21 characters) rounded down to a friendly number.
pub const MAX_SESSION_NAME: usize = 40;

/// The pod of a session: `kodama-<name>`.
pub fn pod_name(session: &str) -> String {
    format!("kodama-{session}")
}
/// The workspace PVC of a session: `kodama-workspace-<name>`.
pub fn workspace_pvc_name(session: &str) -> String {
    format!("kodama-workspace-{session}")
}
/// The claude-home PVC of a session: `kodama-claude-home-<name>`.
pub fn claude_home_pvc_name(session: &str) -> String {
    format!("kodama-claude-home-{session}")
}
/// The editor ConfigMap of a session: `kodama-editor-config-<name>`.
pub fn editor_config_map_name(session: &str) -> String {
    format!("kodama-editor-config-{session}")
}
/// The env Secret of a session: `kodama-env-<name>`.
pub fn env_secret_name(session: &str) -> String {
    format!("kodama-env-{session}")
}
/// The secret-files Secret of a session: `kodama-files-<name>`.
pub fn files_secret_name(session: &str) -> String {
    format!("kodama-files-{session}")
}

/// Check a session name. The error is one sentence listing every rule it breaks, e.g.
/// `session name "My_Work" is invalid: it must be at most 40 characters; ...`.
pub fn validate_session_name(name: &str) -> Result<(), String> {
    let faults = label_faults(name, MAX_SESSION_NAME);
    if faults.is_empty() {
        return Ok(());
    }
    let mut msg = format!("session name {name:?} is invalid: {}", faults.join("; "));
    let suggestion = suggest_label(name, MAX_SESSION_NAME);
    if !suggestion.is_empty() && suggestion != name {
        msg.push_str(&format!(" (try {suggestion:?})"));
    }
    Err(msg)
}

/// Check a namespace name (DNS-1123 label, at most 63 characters).
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    let faults = label_faults(ns, 63);
    if faults.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "namespace {ns:?} is invalid: {}",
            faults.join("; ")
        ))
    }
}

/// True for a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    label_faults(s, 63).is_empty()
}

/// Every DNS-1123 label rule `s` breaks, each as a phrase starting with "it".
fn label_faults(s: &str, max: usize) -> Vec<String> {
    let mut faults = Vec::new();
    if s.is_empty() {
        faults.push("it must not be empty".to_string());
        return faults;
    }
    let len = s.chars().count();
    if len > max {
        faults.push(format!(
            "it must be at most {max} characters (it has {len})"
        ));
    }
    let bad: Vec<char> = s
        .chars()
        .filter(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        .collect();
    if !bad.is_empty() {
        let mut shown: Vec<String> = Vec::new();
        for c in bad {
            let q = format!("{c:?}");
            if !shown.contains(&q) {
                shown.push(q);
            }
        }
        faults.push(format!(
            "it may contain only lowercase letters, digits and '-' (found {})",
            shown.join(", ")
        ));
    }
    let first = s.chars().next().unwrap_or('-');
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        faults.push("it must start with a lowercase letter or digit".to_string());
    }
    let last = s.chars().last().unwrap_or('-');
    if !(last.is_ascii_lowercase() || last.is_ascii_digit()) {
        faults.push("it must end with a lowercase letter or digit".to_string());
    }
    faults
}

/// A valid label close to `s` (lowercased, other characters turned into '-'), or "" if none.
fn suggest_label(s: &str, max: usize) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut out = String::new();
    for c in mapped.chars() {
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let mut out: String = out.trim_matches('-').chars().take(max).collect();
    while out.ends_with('-') {
        out.pop();
    }
    if label_faults(&out, max).is_empty() {
        out
    } else {
        String::new()
    }
}

/// Levenshtein distance (by chars).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo: a small edit
/// distance, a case-only difference, or one being a prefix of the other.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lw = word.to_ascii_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let lc = c.to_ascii_lowercase();
        let d = if lc == lw {
            0
        } else if lw.len() >= 3 && (lc.starts_with(&lw) || lw.starts_with(&lc)) {
            1
        } else {
            edit_distance(&lw, &lc)
        };
        let limit = (word.chars().count().max(c.chars().count()) / 3).max(2);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_session_names() {
        for n in ["a", "my-work", "x1", "1x", "a-b-c", &"a".repeat(40)] {
            assert_eq!(validate_session_name(n), Ok(()), "{n}");
        }
    }

    #[test]
    fn bad_session_names_say_which_rule() {
        let table: &[(&str, &str)] = &[
            ("", "must not be empty"),
            (&"a".repeat(41), "must be at most 40 characters (it has 41)"),
            ("-abc", "must start with a lowercase letter or digit"),
            ("abc-", "must end with a lowercase letter or digit"),
            (
                "My-Work",
                "only lowercase letters, digits and '-' (found 'M', 'W')",
            ),
            ("my_work", "found '_'"),
            ("a/b", "found '/'"),
            ("..", "found '.'"),
            ("a b", "found ' '"),
        ];
        for (name, want) in table {
            let err = validate_session_name(name).expect_err(name);
            assert!(err.contains(want), "{name:?}: {err}");
        }
        let err = validate_session_name("My_Work").unwrap_err();
        assert!(err.contains("(try \"my-work\")"), "{err}");
    }

    #[test]
    fn namespaces() {
        assert!(validate_namespace("default").is_ok());
        assert!(validate_namespace(&"a".repeat(63)).is_ok());
        assert!(validate_namespace(&"a".repeat(64))
            .unwrap_err()
            .contains("at most 63"));
        assert!(validate_namespace("Dev").is_err());
    }

    #[test]
    fn suggestions() {
        let flags = [
            "namespace",
            "kubeconfig",
            "context",
            "memory",
            "prompt-file",
        ];
        assert_eq!(closest("namspace", flags), Some("namespace"));
        assert_eq!(closest("kubecfg", flags), Some("kubeconfig"));
        assert_eq!(closest("memroy", flags), Some("memory"));
        assert_eq!(closest("prompt", flags), Some("prompt-file"));
        assert_eq!(closest("zzz", flags), None);
        assert_eq!(
            closest("excludePattern", ["excludePatterns", "useGitignore"]),
            Some("excludePatterns")
        );
        assert_eq!(
            closest("exclude", ["excludePatterns", "useGitignore"]),
            Some("excludePatterns")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
