//! Fault-injection rules and the request journal (state only; the `Faults` handle that tests use
//! lives in `api::mod`). Rules match a method (or any) and a substring of `path?query`.
//!
//! May import: std, api::util.

use super::util::ApiError;
use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone)]
struct FailRule {
    method: Option<String>,
    pattern: String,
    remaining: usize,
    code: u16,
    retry_after: Option<u64>,
}

#[derive(Debug, Clone)]
struct LatencyRule {
    method: Option<String>,
    pattern: String,
    delay: Duration,
}

#[derive(Debug, Clone)]
struct DropRule {
    pattern: String,
    after_bytes: u64,
}

/// All fault rules.
#[derive(Default)]
pub struct FaultState {
    fails: Mutex<Vec<FailRule>>,
    latencies: Mutex<Vec<LatencyRule>>,
    drops: Mutex<Vec<DropRule>>,
    watch_expiries: Mutex<Vec<String>>,
}

fn matches(method: &Option<String>, pattern: &str, req_method: &str, target: &str) -> bool {
    method
        .as_deref()
        .map(|m| m.eq_ignore_ascii_case(req_method))
        .unwrap_or(true)
        && target.contains(pattern)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FaultState {
    pub fn add_fail(
        &self,
        method: Option<&str>,
        pattern: &str,
        n: usize,
        code: u16,
        retry_after: Option<u64>,
    ) {
        lock(&self.fails).push(FailRule {
            method: method.map(str::to_string),
            pattern: pattern.to_string(),
            remaining: n,
            code,
            retry_after,
        });
    }

    pub fn add_latency(&self, method: Option<&str>, pattern: &str, delay: Duration) {
        lock(&self.latencies).push(LatencyRule {
            method: method.map(str::to_string),
            pattern: pattern.into(),
            delay,
        });
    }

    pub fn add_drop(&self, pattern: &str, after_bytes: u64) {
        lock(&self.drops).push(DropRule {
            pattern: pattern.into(),
            after_bytes,
        });
    }

    pub fn add_watch_expiry(&self, pattern: &str) {
        lock(&self.watch_expiries).push(pattern.into());
    }

    /// Should this watch start with an in-band 410 Expired (one-shot)?
    pub fn take_watch_expiry(&self, target: &str) -> bool {
        let mut g = lock(&self.watch_expiries);
        match g.iter().position(|p| target.contains(p.as_str())) {
            Some(i) => {
                g.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn clear(&self) {
        lock(&self.watch_expiries).clear();
        lock(&self.fails).clear();
        lock(&self.latencies).clear();
        lock(&self.drops).clear();
    }

    /// Total latency to add to this request.
    pub fn latency(&self, method: &str, target: &str) -> Duration {
        lock(&self.latencies)
            .iter()
            .filter(|r| matches(&r.method, &r.pattern, method, target))
            .map(|r| r.delay)
            .sum()
    }

    /// An injected failure for this request, consuming one use of the first matching rule.
    pub fn take_failure(&self, method: &str, target: &str) -> Option<ApiError> {
        let mut g = lock(&self.fails);
        let i = g
            .iter()
            .position(|r| r.remaining > 0 && matches(&r.method, &r.pattern, method, target))?;
        g[i].remaining -= 1;
        let r = g[i].clone();
        if g[i].remaining == 0 {
            g.remove(i);
        }
        let (reason, msg) = match r.code {
            429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
            504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request"),
            500 => ("InternalError", "an error on the server (\"injected fault\") has prevented the request from succeeding"),
            410 => ("Expired", "The resourceVersion for the provided list is too old."),
            401 => ("Unauthorized", "Unauthorized"),
            403 => ("Forbidden", "forbidden: injected fault"),
            404 => ("NotFound", "the server could not find the requested resource"),
            409 => ("Conflict", "Operation cannot be fulfilled: injected fault"),
            _ => ("", "injected fault"),
        };
        let mut e = ApiError::new(r.code, reason, msg, None);
        if let Some(s) = r.retry_after {
            e.status["details"] = serde_json::json!({"retryAfterSeconds": s});
            e = e.with_header("Retry-After", &s.to_string());
        }
        Some(e)
    }

    /// A one-shot byte limit for a streaming request (exec/attach/portforward/log).
    pub fn take_drop(&self, target: &str) -> Option<u64> {
        let mut g = lock(&self.drops);
        let i = g.iter().position(|r| target.contains(&r.pattern))?;
        Some(g.remove(i).after_bytes)
    }
}

/// A byte-counting writer/stream that shuts the TCP connection down after `left` bytes were
/// written to the client.
pub struct ByteLimit<C> {
    pub inner: C,
    pub tcp: Option<TcpStream>,
    pub left: u64,
}

impl<C: io::Read> io::Read for ByteLimit<C> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.inner.read(b)
    }
}

impl<C: Write> Write for ByteLimit<C> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream dropped by fault injection",
            ));
        }
        let n = (b.len() as u64).min(self.left) as usize;
        let w = self.inner.write(&b[..n])?;
        self.left -= w as u64;
        if self.left == 0 {
            let _ = self.inner.flush();
            if let Some(t) = &self.tcp {
                let _ = t.shutdown(Shutdown::Both);
            }
        }
        Ok(w)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub method: String,
    /// Decoded path.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Body as received.
    pub body: Vec<u8>,
    /// Authenticated user name ("" when anonymous/unauthenticated).
    pub user: String,
    /// Response code (200 for watches and streams that started; 101 for WebSocket upgrades is
    /// decided by the kubelet and recorded as 101 when handed over).
    pub code: u16,
    pub timestamp: SystemTime,
    /// The Content-Type header of the request, if any.
    pub content_type: Option<String>,
}

impl JournalEntry {
    /// The body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body parsed as JSON (YAML bodies are not parsed).
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
    /// A query parameter (decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        super::util::parse_query(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_rules_are_consumed() {
        let f = FaultState::default();
        f.add_fail(Some("POST"), "/pods", 2, 429, Some(3));
        assert!(f.take_failure("GET", "/api/v1/namespaces/d/pods").is_none());
        let e = f
            .take_failure("POST", "/api/v1/namespaces/d/pods")
            .expect("1st");
        assert_eq!(e.code, 429);
        assert_eq!(
            e.headers,
            vec![("Retry-After".to_string(), "3".to_string())]
        );
        assert_eq!(e.status["details"]["retryAfterSeconds"], 3);
        assert!(f
            .take_failure("post", "/api/v1/namespaces/d/pods")
            .is_some());
        assert!(f
            .take_failure("POST", "/api/v1/namespaces/d/pods")
            .is_none());
    }

    #[test]
    fn latency_and_drops() {
        let f = FaultState::default();
        f.add_latency(None, "configmaps", Duration::from_millis(30));
        assert_eq!(
            f.latency("GET", "/api/v1/configmaps"),
            Duration::from_millis(30)
        );
        assert_eq!(f.latency("GET", "/api/v1/pods"), Duration::ZERO);
        f.add_drop("/exec", 10);
        assert_eq!(f.take_drop("/api/v1/namespaces/d/pods/p/exec?x"), Some(10));
        assert_eq!(f.take_drop("/api/v1/namespaces/d/pods/p/exec?x"), None);
    }

    #[test]
    fn byte_limit_cuts_the_stream() {
        let mut w = ByteLimit {
            inner: Vec::new(),
            tcp: None,
            left: 5,
        };
        assert_eq!(w.write(b"abc").expect("w"), 3);
        assert_eq!(w.write(b"defg").expect("w"), 2);
        assert!(w.write(b"x").is_err());
        assert_eq!(w.inner, b"abcde");
    }
}
