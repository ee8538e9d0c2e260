//! Git: local repository inspection, --repo URL normalisation, branch naming, the clone script and the
//! credential helper that reads the token from the pod's environment, diff/push in the pod, and
//! redaction of tokens in any git output we show.
//!
//! Submodules: `url` (--repo parsing), `local` (`.`: the local repo's remote, branch, identity),
//! `branch` (naming and the branch plan), `clone` (the in-pod clone script, its argv and result
//! parser; diff and push argv).
//!
//! May import: error, secret, remote, config (KnownHosts, time).

pub mod branch;
pub mod clone;
pub mod local;
pub mod url;

use crate::secret::Secret;

/// Replace every occurrence of the given secrets, and anything that looks like a credential (a
/// password in a URL, GitHub token formats, `Authorization:` values), with `***`.
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        let v = s.expose();
        // Very short values would redact ordinary words; the patterns below still apply.
        if v.len() >= 4 {
            out = out.replace(v, "***");
        }
    }
    out = redact_url_passwords(&out);
    out = redact_token_shapes(&out);
    redact_auth_headers(&out)
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
fn redact_url_passwords(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote.
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let auth = &tail[..end];
        match auth.rfind('@') {
            Some(at) => {
                let userinfo = &auth[..at];
                match userinfo.find(':') {
                    Some(c) => {
                        out.push_str(&userinfo[..c]);
                        out.push_str(":***");
                    }
                    // A bare user part may itself be a token (https://TOKEN@host).
                    None if userinfo.len() >= 20 => out.push_str("***"),
                    None => out.push_str(userinfo),
                }
                out.push_str(&auth[at..]);
            }
            None => out.push_str(auth),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
];

fn redact_token_shapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        let here = &s[i..];
        if let Some(p) = TOKEN_PREFIXES.iter().find(|p| here.starts_with(**p)) {
            let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
            let len = here[p.len()..]
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
                .count();
            if boundary && len >= 16 {
                out.push_str(p);
                out.push_str("***");
                i += p.len() + len;
                continue;
            }
        }
        let ch = here.chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&s[i..i + ch]);
        i += ch;
    }
    out
}

fn redact_auth_headers(s: &str) -> String {
    s.lines()
        .map(|l| {
            let lower = l.to_ascii_lowercase();
            match lower.find("authorization:") {
                Some(i) => format!("{}authorization: ***", &l[..i]),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + if s.ends_with('\n') { "\n" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_known_secrets_and_credential_shapes() {
        let t = Secret::new("s3cr3t-value");
        let s = "fatal: could not read from https://bob:s3cr3t-value@example.com/x.git\n\
                 token ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 and github_pat_11ABCDEFG0123456789_abcdefghijkl\n\
                 Authorization: Basic eC1hY2Nlc3MtdG9rZW46Zm9v\n\
                 https://ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZ01234567@github.com/o/r\n\
                 plain s3cr3t-value in text; ok https://github.com/o/r.git 日本\n";
        let r = redact(s, &[&t]);
        assert!(!r.contains("s3cr3t-value"), "{r}");
        assert!(!r.contains("ABCDEFGHIJKLMNOP"), "{r}");
        assert!(!r.contains("eC1hY2Nl"), "{r}");
        assert!(r.contains("https://bob:***@example.com/x.git"), "{r}");
        assert!(r.contains("ok https://github.com/o/r.git 日本\n"), "{r}");
        assert!(r.contains("authorization: ***"), "{r}");
        assert!(r.ends_with('\n'));
    }
}
