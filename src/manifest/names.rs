//! Object names, labels and selectors of a session, and the Kubernetes name grammars kodama checks
//! before anything reaches the API server (DNS-1123 labels and subdomains, qualified names, label
//! values, Secret/ConfigMap keys).
//!
//! The session-name rule, the derived object names and the DNS-1123 label check are implemented
//! once, in `config::names`; the functions here delegate to it.
//!
//! May import: std, config::names.

use std::collections::BTreeMap;

use crate::config::names as rules;

/// Longest session name. The longest derived name, `kodama-editor-config-<name>`, is then 61 ≤ 63
/// characters, so every object name and label value stays a valid DNS-1123 label. Re-exported from
/// `config::names`, where the rule lives.
pub use crate::config::names::MAX_SESSION_NAME;

/// `app.kubernetes.io/managed-by`, always `kodama`.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// `app.kubernetes.io/name`, always `kodama`.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/component`: `session`, `workspace`, `claude-home`, `editor-config`, `env`, `files`.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// The session label: its value is the session name.
pub const LABEL_SESSION: &str = "kodama.dev/session";
/// Label selector for every object kodama manages.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=kodama";

/// The pod: `kodama-<name>`; the format lives in `config::names::pod_name`.
pub fn pod(session: &str) -> String {
    rules::pod_name(session)
}
/// The workspace PVC: `kodama-workspace-<name>`; the format lives in `config::names::workspace_pvc_name`.
pub fn workspace_pvc(session: &str) -> String {
    rules::workspace_pvc_name(session)
}
/// The claude-home PVC: `kodama-claude-home-<name>`; the format lives in `config::names::claude_home_pvc_name`.
pub fn claude_home_pvc(session: &str) -> String {
    rules::claude_home_pvc_name(session)
}
/// The editor ConfigMap: `kodama-editor-config-<name>`; the format lives in `config::names::editor_config_map_name`.
pub fn editor_config_map(session: &str) -> String {
    rules::editor_config_map_name(session)
}
/// The env Secret: `kodama-env-<name>`; the format lives in `config::names::env_secret_name`.
pub fn env_secret(session: &str) -> String {
    rules::env_secret_name(session)
}
/// The secret-files Secret: `kodama-files-<name>`; the format lives in `config::names::files_secret_name`.
pub fn files_secret(session: &str) -> String {
    rules::files_secret_name(session)
}

/// Every object a session may own, as (REST resource plural, name), in deletion order: the pod
/// first (it uses the rest), then the ConfigMap and Secrets, then the PVCs (which `delete` keeps
/// unless purging).
pub fn all_objects(session: &str) -> [(&'static str, String); 6] {
    [
        ("pods", pod(session)),
        ("configmaps", editor_config_map(session)),
        ("secrets", env_secret(session)),
        ("secrets", files_secret(session)),
        ("persistentvolumeclaims", workspace_pvc(session)),
        ("persistentvolumeclaims", claude_home_pvc(session)),
    ]
}

/// Label selector for every object of one session (`kodama.dev/session=<name>` plus managed-by).
pub fn session_selector(session: &str) -> String {
    format!("{MANAGED_SELECTOR},{LABEL_SESSION}={session}")
}

/// The labels every object of a session carries, with its component.
pub fn labels(session: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "kodama".to_string()),
        (LABEL_NAME.to_string(), "kodama".to_string()),
        (LABEL_COMPONENT.to_string(), component.to_string()),
        (LABEL_SESSION.to_string(), session.to_string()),
    ])
}

/// Faults of a session name (empty when valid): a DNS-1123 label (a leading digit is allowed) of at
/// most [`MAX_SESSION_NAME`] characters. Delegates to `config::names::validate_session_name`, so
/// the CLI, the session store and the manifests agree; the one fault is its whole message, which
/// lists every rule the name breaks.
pub fn session_name_faults(name: &str) -> Vec<String> {
    rules::validate_session_name(name)
        .err()
        .into_iter()
        .collect()
}

/// True for a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
/// Delegates to `config::names::is_dns1123_label`.
pub fn is_dns1123_label(s: &str) -> bool {
    rules::is_dns1123_label(s)
}

/// True for a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// True for the name part of a qualified name: `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, ≤ 63.
fn is_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// True for a qualified name (label and annotation keys, resource names): `[prefix/]name` where the
/// prefix is a DNS-1123 subdomain.
pub fn is_qualified_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_qualified_name_part(name),
        None => is_qualified_name_part(s),
    }
}

/// True for a label value: empty, or a qualified-name part.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_qualified_name_part(s)
}

/// True for a Secret or ConfigMap data key: `[-._a-zA-Z0-9]+`, at most 253, not `.` or `..`.
pub fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_fit_for_the_longest_session_name() {
        let n = "a".repeat(MAX_SESSION_NAME);
        assert!(session_name_faults(&n).is_empty());
        for derived in [
            pod(&n),
            workspace_pvc(&n),
            claude_home_pvc(&n),
            editor_config_map(&n),
            env_secret(&n),
            files_secret(&n),
        ] {
            assert!(is_dns1123_label(&derived), "{derived}");
        }
        assert!(is_label_value(&n));
        assert_eq!(all_objects("x")[0], ("pods", "kodama-x".to_string()));
        assert_eq!(all_objects("x").len(), 6);
    }

    #[test]
    fn session_name_table() {
        // A leading digit is fine: the issue asks for a DNS-1123 label, and so do the CLI and store.
        for ok in ["a", "my-work", "fix-123", "a1", "1abc", "2024-fix"] {
            assert!(session_name_faults(ok).is_empty(), "{ok}");
            assert_eq!(
                crate::config::validate_session_name(ok),
                Ok(()),
                "config and manifest agree on {ok}"
            );
        }
        for ok in ["a", "my-work", "fix-123", "a1"] {
            assert!(session_name_faults(ok).is_empty(), "{ok}");
        }
        for (bad, needle) in [
            ("", "empty"),
            ("My-Work", "lowercase"),
            ("-a", "start with"),
            ("-1", "start with"),
            ("a-", "end with"),
            ("a_b", "lowercase"),
            ("a.b", "lowercase"),
            ("a/b", "lowercase"),
        ] {
            let f = session_name_faults(bad);
            assert!(
                f.iter().any(|m| m.contains(needle)),
                "{bad:?}: {f:?} lacks {needle:?}"
            );
        }
        let long = "a".repeat(41);
        assert!(session_name_faults(&long)[0].contains("at most 40 characters (it has 41)"));
        // Both modules reject the same names with the same message.
        for bad in ["", "My-Work", "-a", "a-", "a_b", long.as_str()] {
            assert_eq!(
                session_name_faults(bad),
                vec![crate::config::validate_session_name(bad).unwrap_err()],
                "{bad:?}"
            );
        }
    }

    #[test]
    fn grammars() {
        assert!(is_qualified_name("nvidia.com/gpu"));
        assert!(is_qualified_name("kubernetes.io/hostname"));
        assert!(!is_qualified_name("nvidia.com/"));
        assert!(!is_qualified_name("/gpu"));
        assert!(!is_qualified_name("Nvidia.com/gpu"));
        assert!(is_dns1123_subdomain("fast.ssd"));
        assert!(!is_dns1123_subdomain("Fast"));
        assert!(is_config_key("00-id_ed25519"));
        assert!(!is_config_key(".."));
        assert!(!is_config_key("a=b"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
    }
}
