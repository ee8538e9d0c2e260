//! The REST client: sends [`Request`] values over the shared [`Transport`], with retries for
//! idempotent requests (429 with Retry-After, 5xx, stale keep-alive connections), one refresh-and-retry
//! after a 401, `Warning:` headers printed once each, and API errors turned into human errors.
//! Typed helpers (create/get/list/replace/patch/delete/can_i) work on `serde_json::Value`.
//!
//! May import: error, secret, kube::{load, transport, request, resource, status}.

use std::collections::HashSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::kube::load::{self, KubeConfig, Overrides};
use crate::kube::request::{self, DeleteOptions, ListOptions, Mode, PatchKind, Request};
use crate::kube::resource::{Resource, SELF_SUBJECT_ACCESS_REVIEWS};
use crate::kube::status::{self, decode_status};
use crate::kube::transport::{self, Transport};

/// Timeout for plain (non-streaming) requests when `--request-timeout` is not given.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest plain response body we read.
const MAX_BODY: u64 = 64 << 20;

/// Retry tuning (tests shorten it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// First backoff; doubles each retry.
    pub base_backoff: Duration,
    /// Upper bound for one wait (also caps Retry-After).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
        }
    }
}

type WarningHandler = Box<dyn Fn(&str) + Send + Sync>;

struct Warnings {
    seen: HashSet<String>,
    handler: Option<WarningHandler>,
}

struct Inner {
    transport: Arc<Transport>,
    namespace: String,
    timeout: Duration,
    retry: Mutex<RetryPolicy>,
    warnings: Mutex<Warnings>,
}

/// A Kubernetes API client. Cheap to clone; clones share connections, credentials and warning state.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.inner.transport.config().server)
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// A streaming response body (watch, log follow).
pub type BodyStream = Box<dyn Read + Send>;

impl Client {
    /// Loads the configuration for these flags (kubeconfig or in-cluster) and builds a client.
    pub fn from_overrides(o: &Overrides) -> Result<Client> {
        Client::new(load::load(o)?)
    }

    /// Builds a client from a loaded configuration. Nothing is connected until the first request.
    pub fn new(cfg: KubeConfig) -> Result<Client> {
        let namespace = cfg.namespace.clone();
        let timeout = cfg.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let transport = Arc::new(Transport::new(cfg)?);
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                namespace,
                timeout,
                retry: Mutex::new(RetryPolicy::default()),
                warnings: Mutex::new(Warnings {
                    seen: HashSet::new(),
                    handler: None,
                }),
            }),
        })
    }

    /// The namespace from `-n`, the context, or "default".
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The loaded configuration.
    pub fn config(&self) -> &KubeConfig {
        self.inner.transport.config()
    }

    /// The connection layer (for WebSockets: `connect_stream`, `auth_headers`, `url_for`).
    pub fn transport(&self) -> &Arc<Transport> {
        &self.inner.transport
    }

    /// Replaces where `Warning:` texts go (default: `Warning: <text>` on stderr). Each distinct text
    /// is delivered once per client.
    pub fn set_warning_handler(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        if let Ok(mut w) = self.inner.warnings.lock() {
            w.handler = Some(Box::new(f));
        }
    }

    /// Changes the retry tuning.
    pub fn set_retry_policy(&self, p: RetryPolicy) {
        if let Ok(mut r) = self.inner.retry.lock() {
            *r = p;
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry.lock().map(|r| *r).unwrap_or_default()
    }

    fn warn(&self, text: &str) {
        let Ok(mut w) = self.inner.warnings.lock() else {
            return;
        };
        if !w.seen.insert(text.to_string()) {
            return;
        }
        match &w.handler {
            Some(h) => h(text),
            None => eprintln!("Warning: {text}"),
        }
    }

    /// Sends a request and returns the response with a 2xx status (after retries). Error statuses are
    /// decoded into API errors.
    fn execute(&self, req: &Request) -> Result<ureq::http::Response<ureq::Body>> {
        let t = &self.inner.transport;
        let policy = self.retry_policy();
        let url = t.url_for(&req.path_and_query());
        let mut attempt: u32 = 0;
        let mut auth_retried = false;
        loop {
            let prepared = t.prepare()?;
            let mut b = ureq::http::Request::builder()
                .method(req.method.as_str())
                .uri(&url)
                .header("Accept", "application/json, */*");
            for (k, v) in &prepared.headers {
                b = b.header(k.as_str(), v.expose());
            }
            for (k, v) in &req.headers {
                b = b.header(k.as_str(), v.as_str());
            }
            if let Some(ct) = req.content_type {
                b = b.header("Content-Type", ct);
            }
            let agent = &prepared.agent;
            let result = match &req.body {
                Some(body) => {
                    let r = b
                        .body(body.clone())
                        .map_err(|e| Error::msg(format!("building request {url}: {e}")))?;
                    agent.run(self.configure(agent, r, req.mode))
                }
                None => {
                    let r = b
                        .body(())
                        .map_err(|e| Error::msg(format!("building request {url}: {e}")))?;
                    agent.run(self.configure(agent, r, req.mode))
                }
            };
            let mut resp = match result {
                Ok(r) => r,
                Err(e) => {
                    if req.is_idempotent()
                        && transport::is_retryable(&e)
                        && attempt < policy.max_retries
                    {
                        std::thread::sleep(backoff(&policy, attempt));
                        attempt += 1;
                        continue;
                    }
                    return Err(t.ureq_error(&e).context(req.op.describe()));
                }
            };
            for v in resp.headers().get_all("warning") {
                if let Ok(s) = v.to_str() {
                    for w in status::parse_warnings(s) {
                        self.warn(&w);
                    }
                }
            }
            let code = resp.status().as_u16();
            if (200..300).contains(&code) {
                return Ok(resp);
            }
            let body = read_error_body(&mut resp);
            if code == 401 && !auth_retried && t.refresh_after_unauthorized() {
                auth_retried = true;
                continue;
            }
            let retryable_status = code == 429 || (500..600).contains(&code);
            if retryable_status && req.is_idempotent() && attempt < policy.max_retries {
                let api = decode_status(code, &body);
                let wait = retry_after(&resp)
                    .or(api.retry_after_seconds.map(Duration::from_secs))
                    .map(|d| d.min(policy.max_backoff))
                    .unwrap_or_else(|| backoff(&policy, attempt));
                std::thread::sleep(wait);
                attempt += 1;
                continue;
            }
            return Err(status::explain(decode_status(code, &body), &req.op));
        }
    }

    fn configure<S: ureq::AsSendBody>(
        &self,
        agent: &ureq::Agent,
        r: ureq::http::Request<S>,
        mode: Mode,
    ) -> ureq::http::Request<S> {
        match mode {
            Mode::Plain => agent
                .configure_request(r)
                .timeout_global(Some(self.inner.timeout))
                .build(),
            Mode::Stream { idle } => agent
                .configure_request(r)
                .timeout_global(None)
                .timeout_connect(Some(transport::CONNECT_TIMEOUT))
                .timeout_recv_response(Some(self.inner.timeout))
                .timeout_per_read(idle)
                .build(),
        }
    }

    /// Sends a request and parses the JSON answer (`Value::Null` for an empty body).
    pub fn send(&self, req: &Request) -> Result<Value> {
        let mut resp = self.execute(req)?;
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| {
                self.inner
                    .transport
                    .ureq_error(&e)
                    .context(req.op.describe())
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::msg(format!("the API server sent invalid JSON: {e}")).context(req.op.describe())
        })
    }

    /// Sends a request whose body is a long-lived stream (watch, `log?follow=true`) and returns the
    /// body reader. `req.mode` should be `Mode::Stream`; its `idle` bounds each read.
    pub fn stream(&self, req: &Request) -> Result<BodyStream> {
        let resp = self.execute(req)?;
        Ok(Box::new(resp.into_body().into_reader()))
    }

    /// POST the object to its collection.
    pub fn create(&self, res: &Resource, ns: Option<&str>, obj: &Value) -> Result<Value> {
        self.send(&request::create(res, ns, obj))
    }

    /// GET one object. A missing object is an error with `is_not_found()`.
    pub fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<Value> {
        self.send(&request::get(res, ns, name))
    }

    /// GET one object, or None when it does not exist.
    pub fn get_opt(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<Option<Value>> {
        match self.get(res, ns, name) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// GET one page of the collection (honours `limit` and `continue_token` as given).
    pub fn list_page(&self, res: &Resource, ns: Option<&str>, opts: &ListOptions) -> Result<Value> {
        self.send(&request::list(res, ns, opts))
    }

    /// GET the whole collection: with `limit` set, follows `continue` tokens and returns one list
    /// holding every item (restarting once if a token expires).
    pub fn list(&self, res: &Resource, ns: Option<&str>, opts: &ListOptions) -> Result<Value> {
        let mut restarted = false;
        'outer: loop {
            let mut o = opts.clone();
            let mut first: Option<Value> = None;
            let mut items: Vec<Value> = Vec::new();
            loop {
                let page = match self.list_page(res, ns, &o) {
                    Ok(p) => p,
                    Err(e)
                        if o.continue_token.is_some()
                            && !restarted
                            && e.api().is_some_and(|a| a.is_gone()) =>
                    {
                        restarted = true;
                        continue 'outer;
                    }
                    Err(e) => return Err(e),
                };
                if let Some(a) = page.get("items").and_then(Value::as_array) {
                    items.extend(a.iter().cloned());
                }
                let next = page
                    .pointer("/metadata/continue")
                    .and_then(Value::as_str)
                    .filter(|c| !c.is_empty())
                    .map(String::from);
                if first.is_none() {
                    first = Some(page);
                }
                match next {
                    Some(c) if o.limit.is_some() => o.continue_token = Some(c),
                    _ => break,
                }
            }
            let mut out = first.unwrap_or_else(|| json!({}));
            out["items"] = Value::Array(items);
            if let Some(m) = out.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("continue");
                m.remove("remainingItemCount");
            }
            return Ok(out);
        }
    }

    /// PUT the object (it should carry `metadata.resourceVersion`).
    pub fn replace(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value> {
        self.send(&request::replace(res, ns, name, obj))
    }

    /// PATCH the object with the given flavour.
    pub fn patch(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &Value,
    ) -> Result<Value> {
        self.send(&request::patch(res, ns, name, kind, body))
    }

    /// Server-side apply with field manager "kodama" and `force=true` (creates when absent).
    pub fn apply(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value> {
        self.patch(res, ns, name, PatchKind::Apply { force: true }, obj)
    }

    /// DELETE the object. Returns the object (still terminating) or a Status; a missing object is an
    /// error with `is_not_found()` for the caller to treat as done.
    pub fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value> {
        self.send(&request::delete(res, ns, name, opts))
    }

    /// Asks the server (SelfSubjectAccessReview) whether the current user may `verb` the `resource`
    /// (`"pods"`, or `"deployments.apps"` for a named group) with an optional subresource (`"exec"`)
    /// in `namespace` (None: cluster scope).
    pub fn can_i(
        &self,
        verb: &str,
        resource: &str,
        subresource: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<bool> {
        let (res, group) = match resource.split_once('.') {
            Some((r, g)) => (r, g),
            None => (resource, ""),
        };
        let mut attrs = json!({ "verb": verb, "group": group, "resource": res });
        if let Some(s) = subresource {
            attrs["subresource"] = s.into();
        }
        if let Some(n) = namespace {
            attrs["namespace"] = n.into();
        }
        let body = json!({
            "apiVersion": SELF_SUBJECT_ACCESS_REVIEWS.api_version(),
            "kind": SELF_SUBJECT_ACCESS_REVIEWS.kind,
            "spec": { "resourceAttributes": attrs },
        });
        let mut r = request::create(&SELF_SUBJECT_ACCESS_REVIEWS, None, &body);
        r.query.clear();
        let v = self.send(&r)?;
        Ok(v.pointer("/status/allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }
}

fn backoff(p: &RetryPolicy, attempt: u32) -> Duration {
    let d = p.base_backoff.saturating_mul(1u32 << attempt.min(16));
    d.min(p.max_backoff)
}

fn retry_after(resp: &ureq::http::Response<ureq::Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Reads (and so frees the connection of) an error body, keeping at most 64 KiB.
fn read_error_body(resp: &mut ureq::http::Response<ureq::Body>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut r = resp.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = [0u8; 8192];
    while let Ok(n) = r.read(&mut buf) {
        if n == 0 {
            break;
        }
        if out.len() < 64 * 1024 {
            out.extend_from_slice(&buf[..n]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::request::Method;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_retries: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        assert_eq!(backoff(&p, 0), Duration::from_millis(100));
        assert_eq!(backoff(&p, 2), Duration::from_millis(400));
        assert_eq!(backoff(&p, 3), Duration::from_millis(500));
        assert_eq!(backoff(&p, 40), Duration::from_millis(500));
    }

    #[test]
    fn method_strings() {
        assert_eq!(Method::Patch.as_str(), "PATCH");
    }
}
