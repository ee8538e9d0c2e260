//! `--repo` parsing and normalisation.
//!
//! Accepted: `https://host/path` (and `http://`, meant for local test servers), `ssh://[user@]host
//! [:port]/path`, scp-like `user@host:path`, the shorthand `host.tld/org/repo` (→ https), `file://`
//! URLs and absolute paths of local repositories (tests; the path must exist where git runs), and `.`
//! (the local repository, resolved by `git::local`). Refused before anything is created: empty or
//! whitespace/control characters, a leading `-`, `<transport>::` URLs, unknown schemes, and URLs with
//! embedded credentials (use GITHUB_TOKEN instead, so no token lands in the clone URL).
//!
//! May import: error.

use crate::error::{Error, Result};

/// The transport of a repository URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    /// https:// (or http://): authenticated with GITHUB_TOKEN/GH_TOKEN through the credential helper.
    Https,
    /// ssh:// or scp-like: authenticated with the mounted SSH key.
    Ssh,
    /// file:// or an absolute path (tests, local mirrors).
    Local,
}

/// A parsed, normalised repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// What git is given to clone.
    pub url: String,
    pub kind: RepoKind,
    /// Host (with `:port` when given) for https and ssh; empty for local.
    pub host: String,
    /// Path on the host, without a leading `/`, e.g. `org/repo.git`.
    pub path: String,
}

impl RepoUrl {
    /// `scheme://host` for the credential helper's URL-scoped config; `None` unless https/http.
    pub fn credential_scope(&self) -> Option<String> {
        if self.kind != RepoKind::Https {
            return None;
        }
        let scheme = self.url.split("://").next().unwrap_or("https");
        Some(format!("{scheme}://{}", self.host))
    }

    /// A display form (the URL itself; it never holds credentials).
    pub fn display(&self) -> &str {
        &self.url
    }
}

fn bad(value: &str, why: &str) -> Error {
    Error::usage(
        format!("--repo {value:?}: {why}"),
        Some(
            "use https://host/org/repo, git@host:org/repo.git, ssh://host/org/repo, \
             github.com/org/repo, or . (the local repository)"
                .into(),
        ),
    )
}

fn credentials_error(value: &str) -> Error {
    Error::usage(
        format!(
            "--repo {:?}: the URL contains credentials",
            crate::git::redact(value, &[])
        ),
        Some(
            "remove the user:token part and set GITHUB_TOKEN (or GH_TOKEN) in your environment or \
             dotenv file instead; kodama hands it to git through a credential helper so it never \
             lands in the clone URL or .git/config"
                .into(),
        ),
    )
}

fn valid_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) if !n.contains(']') || n.ends_with(']') => (n, Some(p)),
        _ => (h, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return false;
        }
    }
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || b == b'.'
                || b == b'-'
                || b == b'['
                || b == b']'
                || b == b':'
        })
        && !name.starts_with('-')
}

fn valid_path(p: &str) -> bool {
    let p = p.trim_start_matches('/');
    !p.is_empty() && !p.split('/').any(|seg| seg == "..") && !p.starts_with('-')
}

/// Parse `--repo` (everything but `.`, which `git::local::resolve_dot` handles).
pub fn parse_repo_url(value: &str) -> Result<RepoUrl> {
    let v = value;
    if v.trim().is_empty() {
        return Err(bad(value, "empty value"));
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(value, "contains whitespace or control characters"));
    }
    if v.starts_with('-') {
        return Err(bad(value, "must not start with '-'"));
    }
    if v == "." {
        return Err(bad(
            value,
            "`.` must be resolved from the local repository first",
        ));
    }
    if let Some((scheme, rest)) = v.split_once("://") {
        let scheme_l = scheme.to_ascii_lowercase();
        match scheme_l.as_str() {
            "https" | "http" => {
                let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
                if auth.contains('@') {
                    return Err(credentials_error(v));
                }
                if !valid_host(auth) {
                    return Err(bad(value, "bad host name"));
                }
                if !valid_path(path) {
                    return Err(bad(
                        value,
                        "missing repository path (https://host/org/repo)",
                    ));
                }
                let path = path.trim_end_matches('/').to_string();
                Ok(RepoUrl {
                    url: format!("{scheme_l}://{auth}/{path}"),
                    kind: RepoKind::Https,
                    host: auth.to_ascii_lowercase(),
                    path,
                })
            }
            "ssh" | "git+ssh" | "ssh+git" => {
                let (auth, path) = rest.split_once('/').unwrap_or((rest, ""));
                let (user, hostport) = match auth.rsplit_once('@') {
                    Some((u, h)) => (Some(u), h),
                    None => (None, auth),
                };
                if user.is_some_and(|u| u.contains(':')) {
                    return Err(credentials_error(v));
                }
                if user.is_some_and(|u| u.is_empty() || u.starts_with('-')) || !valid_host(hostport)
                {
                    return Err(bad(value, "bad user or host"));
                }
                if !valid_path(path) {
                    return Err(bad(
                        value,
                        "missing repository path (ssh://host/org/repo.git)",
                    ));
                }
                let path = path.trim_end_matches('/').to_string();
                Ok(RepoUrl {
                    url: format!("ssh://{auth}/{path}"),
                    kind: RepoKind::Ssh,
                    host: hostport.to_ascii_lowercase(),
                    path,
                })
            }
            "file" => {
                if !rest.starts_with('/') || !valid_path(rest) {
                    return Err(bad(value, "file:// needs an absolute path"));
                }
                Ok(RepoUrl {
                    url: format!("file://{rest}"),
                    kind: RepoKind::Local,
                    host: String::new(),
                    path: rest.trim_start_matches('/').to_string(),
                })
            }
            _ => Err(bad(value, &format!("unsupported scheme {scheme:?}"))),
        }
    } else if v.contains("::") {
        Err(bad(
            value,
            "git remote-helper transports (<transport>::<address>) are not allowed",
        ))
    } else if v.starts_with('/') {
        if !valid_path(v) {
            return Err(bad(value, "bad path"));
        }
        Ok(RepoUrl {
            url: v.trim_end_matches('/').to_string(),
            kind: RepoKind::Local,
            host: String::new(),
            path: v.trim_start_matches('/').trim_end_matches('/').to_string(),
        })
    } else if let Some((auth, path)) = v.split_once(':').filter(|(a, _)| !a.contains('/')) {
        // scp-like: [user@]host:path
        let (user, host) = match auth.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, auth),
        };
        if user.is_some_and(|u| u.is_empty() || u.starts_with('-'))
            || !valid_host(host)
            || host.contains(':')
        {
            return Err(bad(value, "bad user or host in user@host:path"));
        }
        if !valid_path(path) {
            return Err(bad(value, "missing repository path after ':'"));
        }
        let path = path.trim_end_matches('/').to_string();
        Ok(RepoUrl {
            url: format!("{auth}:{path}"),
            kind: RepoKind::Ssh,
            host: host.to_ascii_lowercase(),
            path: path.trim_start_matches('/').to_string(),
        })
    } else {
        // Shorthand host.tld/org/repo → https.
        let (host, path) = v.split_once('/').unwrap_or((v, ""));
        if host.contains('@') {
            return Err(credentials_error(v));
        }
        if !host.contains('.') || !valid_host(host) {
            return Err(bad(
                value,
                "not a URL: relative paths are not supported (use . for the local repository, or an absolute path)",
            ));
        }
        let path = path.trim_end_matches('/');
        if path.split('/').filter(|s| !s.is_empty()).count() < 2 || !valid_path(path) {
            return Err(bad(value, "the shorthand needs host/org/repo"));
        }
        Ok(RepoUrl {
            url: format!("https://{}/{path}", host.to_ascii_lowercase()),
            kind: RepoKind::Https,
            host: host.to_ascii_lowercase(),
            path: path.to_string(),
        })
    }
}

/// A comparison key for "is this the same repository": scheme-insensitive host/path without a
/// trailing `.git` or `/`. `git@github.com:o/r.git`, `ssh://git@github.com/o/r` and
/// `https://github.com/o/r` all give `github.com/o/r`.
pub fn same_repo_key(url: &str) -> String {
    let r = parse_repo_url(url);
    let (host, path) = match &r {
        Ok(r) => (r.host.clone(), r.path.clone()),
        Err(_) => (String::new(), url.to_string()),
    };
    let host = host
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .unwrap_or(host);
    let path = path.trim_end_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_start_matches('/');
    if host.is_empty() {
        format!("/{path}")
    } else {
        format!("{host}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms_are_normalised() {
        let cases: &[(&str, &str, RepoKind, &str)] = &[
            (
                "https://github.com/org/repo",
                "https://github.com/org/repo",
                RepoKind::Https,
                "github.com",
            ),
            (
                "https://GitHub.com/org/repo.git/",
                "https://GitHub.com/org/repo.git",
                RepoKind::Https,
                "github.com",
            ),
            (
                "http://127.0.0.1:8080/r.git",
                "http://127.0.0.1:8080/r.git",
                RepoKind::Https,
                "127.0.0.1:8080",
            ),
            (
                "git@github.com:org/repo.git",
                "git@github.com:org/repo.git",
                RepoKind::Ssh,
                "github.com",
            ),
            (
                "ssh://git@host.example:2222/org/repo.git",
                "ssh://git@host.example:2222/org/repo.git",
                RepoKind::Ssh,
                "host.example:2222",
            ),
            (
                "ssh://host.example/org/repo",
                "ssh://host.example/org/repo",
                RepoKind::Ssh,
                "host.example",
            ),
            (
                "github.com/org/repo",
                "https://github.com/org/repo",
                RepoKind::Https,
                "github.com",
            ),
            (
                "gitlab.example.com/group/sub/repo/",
                "https://gitlab.example.com/group/sub/repo",
                RepoKind::Https,
                "gitlab.example.com",
            ),
            (
                "/srv/git/repo.git",
                "/srv/git/repo.git",
                RepoKind::Local,
                "",
            ),
            (
                "file:///srv/git/repo.git",
                "file:///srv/git/repo.git",
                RepoKind::Local,
                "",
            ),
        ];
        for (input, url, kind, host) in cases {
            let r = parse_repo_url(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (r.url.as_str(), r.kind, r.host.as_str()),
                (*url, *kind, *host),
                "{input}"
            );
        }
        assert_eq!(
            parse_repo_url("https://github.com/o/r")
                .expect("ok")
                .credential_scope()
                .as_deref(),
            Some("https://github.com")
        );
        assert_eq!(
            parse_repo_url("git@github.com:o/r")
                .expect("ok")
                .credential_scope(),
            None
        );
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        for bad in [
            "",
            " ",
            "-uhttps://x",
            "ftp://host/r",
            "ext::sh -c touch% /tmp/pwned",
            "https://",
            "https://github.com",
            "https://github.com/",
            "github.com",
            "github.com/org",
            "org/repo",
            "relative/path/x",
            "git@:org/r",
            "git@host:",
            "https://host/../etc",
            "a b",
            "https://host/r\n",
            "fd::0",
        ] {
            assert!(parse_repo_url(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn credentials_in_urls_are_refused_without_echoing_them() {
        for v in [
            "https://user:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r",
            "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r",
            "ssh://git:pw@host/o/r",
        ] {
            let e = parse_repo_url(v).expect_err("refused");
            let shown = format!("{e} {}", e.hint().unwrap_or_default());
            assert!(shown.contains("GITHUB_TOKEN"), "{shown}");
            assert!(!shown.contains("abcdefghijklmnop"), "{shown}");
        }
    }

    #[test]
    fn same_repo_key_ignores_transport_and_suffix() {
        let k = same_repo_key("https://github.com/o/r");
        assert_eq!(k, "github.com/o/r");
        assert_eq!(same_repo_key("git@github.com:o/r.git"), k);
        assert_eq!(same_repo_key("ssh://git@github.com/o/r.git/"), k);
        assert_ne!(same_repo_key("https://github.com/o/other"), k);
        assert_eq!(same_repo_key("/srv/r.git"), same_repo_key("file:///srv/r"));
    }
}
