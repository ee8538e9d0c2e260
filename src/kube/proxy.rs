//! Which proxy (if any) to use for the API server, with Go's `http.ProxyFromEnvironment` rules as
//! client-go applies them: the cluster's `proxy-url` wins; otherwise `HTTPS_PROXY`/`https_proxy` (for
//! https servers) or `HTTP_PROXY`/`http_proxy` (for http), unless `NO_PROXY`/`no_proxy` matches. Loopback
//! hosts are never proxied. `ALL_PROXY` is ignored, as in Go.
//!
//! Pure: the environment is passed in as [`ProxyEnv`].
//!
//! May import: error, secret.

use std::net::IpAddr;

use base64::Engine;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The proxy-related environment variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyEnv {
    pub https_proxy: Option<String>,
    pub http_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// Reads the variables from this process (upper case first, as Go does).
    pub fn from_process() -> ProxyEnv {
        let get = |a: &str, b: &str| {
            std::env::var(a)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| std::env::var(b).ok().filter(|v| !v.is_empty()))
        };
        ProxyEnv {
            https_proxy: get("HTTPS_PROXY", "https_proxy"),
            http_proxy: get("HTTP_PROXY", "http_proxy"),
            no_proxy: get("NO_PROXY", "no_proxy"),
        }
    }
}

/// A parsed proxy URL.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyUrl {
    /// `http`, `https` or `socks5`.
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// `Proxy-Authorization` value for user:password in the URL.
    pub authorization: Option<Secret>,
    /// The URL as given (for ureq); may contain credentials, so never print it.
    pub url: Secret,
}

impl ProxyUrl {
    /// A printable form without credentials.
    pub fn display(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Parses a proxy URL; a missing scheme means `http://` (as in Go).
pub fn parse_proxy_url(raw: &str) -> Result<ProxyUrl> {
    let (scheme, rest) = match raw.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_string(), raw),
    };
    let bad = || {
        Error::with_hint(
            "the proxy URL is not valid",
            "use the form http://host:port (from proxy-url or HTTPS_PROXY)",
        )
    };
    let authority = rest.split('/').next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        "socks5" | "socks5h" => 1080,
        _ => {
            return Err(Error::with_hint(
                format!("proxy scheme {scheme:?} is not supported"),
                "use an http:// proxy",
            ))
        }
    };
    let (host, port) = split_host_port(hostport, default_port).ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    let authorization = userinfo.map(|u| {
        let decoded = percent_decode(u);
        Secret::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(decoded.as_bytes())
        ))
    });
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    Ok(ProxyUrl {
        scheme,
        host,
        port,
        authorization,
        url: Secret::new(url),
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `host[:port]` (IPv6 in brackets). Returns the host without brackets.
pub fn split_host_port(hostport: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => Some((hostport.to_string(), default_port)), // bare IPv6
        None => Some((hostport.to_string(), default_port)),
    }
}

/// The proxy to use for `scheme://host:port`, or None for a direct connection.
pub fn proxy_for(
    scheme: &str,
    host: &str,
    port: u16,
    cluster_proxy_url: Option<&str>,
    env: &ProxyEnv,
) -> Result<Option<ProxyUrl>> {
    if let Some(u) = cluster_proxy_url.filter(|u| !u.is_empty()) {
        return parse_proxy_url(u).map(Some);
    }
    let from_env = if scheme == "https" {
        env.https_proxy.as_deref()
    } else {
        env.http_proxy.as_deref()
    };
    let Some(raw) = from_env.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if !use_proxy(host, port, env.no_proxy.as_deref().unwrap_or("")) {
        return Ok(None);
    }
    parse_proxy_url(raw).map(Some)
}

/// Go's `useProxy`: false for loopback hosts and hosts matched by `no_proxy`.
pub fn use_proxy(host: &str, port: u16, no_proxy: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return false;
    }
    let ip: Option<IpAddr> = host.parse().ok();
    if ip.is_some_and(|i| i.is_loopback()) {
        return false;
    }
    for entry in no_proxy.split(',') {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return false;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            if let (Ok(net), Ok(bits), Some(ip)) = (net.parse::<IpAddr>(), bits.parse::<u8>(), ip) {
                if cidr_contains(net, bits, ip) {
                    return false;
                }
            }
            continue;
        }
        if let Ok(eip) = entry
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            if ip == Some(eip) {
                return false;
            }
            continue;
        }
        // host[:port] pattern
        let (pat, pat_port) = match split_host_port(&entry, 0) {
            Some((h, p)) => (h, p),
            None => continue,
        };
        if pat_port != 0 && pat_port != port {
            continue;
        }
        let pat = pat.strip_prefix('*').unwrap_or(&pat);
        if let Some(suffix) = pat.strip_prefix('.') {
            // ".example.com" matches subdomains only.
            if host.ends_with(&format!(".{suffix}")) {
                return false;
            }
        } else if host == pat || host.ends_with(&format!(".{pat}")) {
            return false;
        }
    }
    true
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            if bits > 32 {
                return false;
            }
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            (u32::from(n) & mask) == (u32::from(i) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            if bits > 128 {
                return false;
            }
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            (u128::from(n) & mask) == (u128::from(i) & mask)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_table() {
        let cases: &[(&str, u16, &str, bool)] = &[
            // host, port, NO_PROXY, proxied?
            ("api.example.com", 443, "", true),
            ("api.example.com", 443, "*", false),
            ("api.example.com", 443, "example.com", false),
            ("example.com", 443, "example.com", false),
            ("api.example.com", 443, ".example.com", false),
            ("example.com", 443, ".example.com", true),
            ("api.example.com", 443, "*.example.com", false),
            ("notexample.com", 443, "example.com", true),
            ("api.example.com", 6443, "api.example.com:443", true),
            ("api.example.com", 443, "api.example.com:443", false),
            ("10.1.2.3", 6443, "10.0.0.0/8", false),
            ("11.1.2.3", 6443, "10.0.0.0/8", true),
            ("10.1.2.3", 6443, "10.1.2.3", false),
            ("10.1.2.3", 6443, " foo.com , 10.1.2.3 ", false),
            ("fd00::5", 6443, "fd00::/16", false),
            ("[fd00::5]", 6443, "fd00::/16", false),
            ("fe80::5", 6443, "fd00::/16", true),
            ("127.0.0.1", 6443, "", false),
            ("localhost", 6443, "", false),
            ("::1", 6443, "", false),
            ("API.Example.COM", 443, "example.com", false),
        ];
        for &(host, port, np, want) in cases {
            assert_eq!(
                use_proxy(host, port, np),
                want,
                "{host}:{port} NO_PROXY={np:?}"
            );
        }
    }

    #[test]
    fn cluster_proxy_url_wins_over_env_and_no_proxy() {
        let env = ProxyEnv {
            https_proxy: Some("http://env-proxy:3128".into()),
            http_proxy: None,
            no_proxy: Some("*".into()),
        };
        let p = proxy_for("https", "k.example", 443, Some("http://cl:8080"), &env)
            .expect("ok")
            .expect("proxied");
        assert_eq!((p.host.as_str(), p.port), ("cl", 8080));
        assert_eq!(
            proxy_for("https", "k.example", 443, None, &env).expect("ok"),
            None
        );
        let env2 = ProxyEnv {
            no_proxy: None,
            ..env
        };
        let p = proxy_for("https", "k.example", 443, None, &env2)
            .expect("ok")
            .expect("proxied");
        assert_eq!(p.display(), "http://env-proxy:3128");
        // http servers use HTTP_PROXY, not HTTPS_PROXY.
        assert_eq!(
            proxy_for("http", "k.example", 80, None, &env2).expect("ok"),
            None
        );
    }

    #[test]
    fn proxy_urls_parse_with_credentials_and_defaults() {
        let p = parse_proxy_url("proxy.corp:3128").expect("ok");
        assert_eq!(
            (p.scheme.as_str(), p.host.as_str(), p.port),
            ("http", "proxy.corp", 3128)
        );
        let p = parse_proxy_url("http://us%40r:p%3Ass@[::1]:8080/").expect("ok");
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        // base64("us@r:p:ss")
        assert_eq!(
            p.authorization.as_ref().map(Secret::expose),
            Some("Basic dXNAcjpwOnNz")
        );
        assert!(
            !format!("{p:?}").contains("p%3Ass"),
            "credentials never in Debug"
        );
        assert!(parse_proxy_url("ftp://x").is_err());
        assert_eq!(parse_proxy_url("https://p").expect("ok").port, 443);
    }
}
