//! Requests as plain values (method, path, query, headers, body) built before anything is sent, so
//! URL building, escaping and retry eligibility are unit-tested without a server.
//!
//! Pure.
//!
//! May import: error, kube::{resource, status}.

use std::time::Duration;

use serde_json::Value;

use crate::kube::resource::Resource;
use crate::kube::status::Op;

/// The field manager kodama uses for server-side apply and creates.
pub const FIELD_MANAGER: &str = "kodama";

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// Patch flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 7386 JSON merge patch.
    Merge,
    /// Kubernetes strategic merge patch (built-in types).
    StrategicMerge,
    /// Server-side apply with field manager "kodama"; `force` takes ownership of conflicting fields.
    Apply { force: bool },
}

impl PatchKind {
    pub fn content_type(&self) -> &'static str {
        match self {
            PatchKind::Merge => "application/merge-patch+json",
            PatchKind::StrategicMerge => "application/strategic-merge-patch+json",
            PatchKind::Apply { .. } => "application/apply-patch+yaml",
        }
    }
}

/// `propagationPolicy` for deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Options for deletes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<Propagation>,
}

/// Options for lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Page size; [`crate::kube::client::Client::list`] follows `continue` tokens itself.
    pub limit: Option<u32>,
    /// Continue token for an explicit next page.
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
}

/// Options for watches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Resume after this resourceVersion (unset: current state as ADDED events first).
    pub resource_version: Option<String>,
    /// Server-side lifetime of this watch request.
    pub timeout_seconds: Option<u64>,
    pub allow_bookmarks: bool,
}

/// How a response is consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read whole; bounded by the request timeout.
    Plain,
    /// A long-lived body (watch, log follow): no overall timeout, `idle` bounds each read.
    Stream { idle: Option<Duration> },
}

/// One API request, fully described.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    /// Path below the server prefix, e.g. `/api/v1/namespaces/dev/pods`.
    pub path: String,
    /// Query pairs, unescaped.
    pub query: Vec<(String, String)>,
    /// Extra headers (never secrets; auth is added by the transport).
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<&'static str>,
    pub mode: Mode,
    /// What this request does, for error messages.
    pub op: Op,
}

impl Request {
    fn new(method: Method, path: String, op: Op) -> Request {
        Request {
            method,
            path,
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            content_type: None,
            mode: Mode::Plain,
            op,
        }
    }

    /// Adds a query pair.
    pub fn with_query(mut self, k: &str, v: impl Into<String>) -> Request {
        self.query.push((k.to_string(), v.into()));
        self
    }

    fn json_body(mut self, body: &Value) -> Request {
        self.body = Some(serde_json::to_vec(body).unwrap_or_default());
        self.content_type = Some("application/json");
        self
    }

    /// Path plus escaped query string.
    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            return self.path.clone();
        }
        let q: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", escape_query(k), escape_query(v)))
            .collect();
        format!("{}?{}", self.path, q.join("&"))
    }

    /// GET, PUT, DELETE and server-side apply may be sent again after a failure; POST and other
    /// patches may not.
    pub fn is_idempotent(&self) -> bool {
        match self.method {
            Method::Get | Method::Put | Method::Delete => true,
            Method::Patch => {
                self.content_type == Some(PatchKind::Apply { force: false }.content_type())
            }
            Method::Post => false,
        }
    }
}

fn op(verb: &str, res: &Resource, ns: Option<&str>, name: Option<&str>) -> Op {
    Op {
        verb: verb.to_string(),
        resource: res.plural.to_string(),
        namespace: ns.filter(|_| res.namespaced).map(String::from),
        name: name.map(String::from),
    }
}

/// POST to the collection.
pub fn create(res: &Resource, ns: Option<&str>, obj: &Value) -> Request {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str);
    Request::new(
        Method::Post,
        res.collection_path(ns),
        op("create", res, ns, name),
    )
    .with_query("fieldManager", FIELD_MANAGER)
    .json_body(obj)
}

/// GET one object.
pub fn get(res: &Resource, ns: Option<&str>, name: &str) -> Request {
    Request::new(
        Method::Get,
        res.item_path(ns, name),
        op("get", res, ns, Some(name)),
    )
}

/// GET the collection (one page).
pub fn list(res: &Resource, ns: Option<&str>, o: &ListOptions) -> Request {
    let mut r = Request::new(
        Method::Get,
        res.collection_path(ns),
        op("list", res, ns, None),
    );
    if let Some(s) = &o.label_selector {
        r = r.with_query("labelSelector", s.clone());
    }
    if let Some(s) = &o.field_selector {
        r = r.with_query("fieldSelector", s.clone());
    }
    if let Some(l) = o.limit {
        r = r.with_query("limit", l.to_string());
    }
    if let Some(c) = &o.continue_token {
        r = r.with_query("continue", c.clone());
    }
    if let Some(rv) = &o.resource_version {
        r = r.with_query("resourceVersion", rv.clone());
    }
    r
}

/// GET the collection with `watch=1`.
pub fn watch(
    res: &Resource,
    ns: Option<&str>,
    o: &WatchOptions,
    idle: Option<Duration>,
) -> Request {
    let mut r = Request::new(
        Method::Get,
        res.collection_path(ns),
        op("watch", res, ns, None),
    )
    .with_query("watch", "1");
    if let Some(s) = &o.label_selector {
        r = r.with_query("labelSelector", s.clone());
    }
    if let Some(s) = &o.field_selector {
        r = r.with_query("fieldSelector", s.clone());
    }
    if let Some(rv) = &o.resource_version {
        r = r.with_query("resourceVersion", rv.clone());
    }
    if o.allow_bookmarks {
        r = r.with_query("allowWatchBookmarks", "true");
    }
    if let Some(t) = o.timeout_seconds {
        r = r.with_query("timeoutSeconds", t.to_string());
    }
    r.mode = Mode::Stream { idle };
    r
}

/// PUT one object.
pub fn replace(res: &Resource, ns: Option<&str>, name: &str, obj: &Value) -> Request {
    Request::new(
        Method::Put,
        res.item_path(ns, name),
        op("update", res, ns, Some(name)),
    )
    .with_query("fieldManager", FIELD_MANAGER)
    .json_body(obj)
}

/// PATCH one object.
pub fn patch(
    res: &Resource,
    ns: Option<&str>,
    name: &str,
    kind: PatchKind,
    body: &Value,
) -> Request {
    let mut r = Request::new(
        Method::Patch,
        res.item_path(ns, name),
        op("patch", res, ns, Some(name)),
    )
    .with_query("fieldManager", FIELD_MANAGER);
    if let PatchKind::Apply { force: true } = kind {
        r = r.with_query("force", "true");
    }
    r = r.json_body(body);
    r.content_type = Some(kind.content_type());
    r
}

/// DELETE one object.
pub fn delete(res: &Resource, ns: Option<&str>, name: &str, o: &DeleteOptions) -> Request {
    let mut r = Request::new(
        Method::Delete,
        res.item_path(ns, name),
        op("delete", res, ns, Some(name)),
    );
    if let Some(g) = o.grace_period_seconds {
        r = r.with_query("gracePeriodSeconds", g.to_string());
    }
    if let Some(p) = o.propagation_policy {
        let p = match p {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        };
        r = r.with_query("propagationPolicy", p);
    }
    r
}

/// A GET on a subresource or any path (logs use this), with an explicit op description.
pub fn get_path(
    path: String,
    verb: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> Request {
    Request::new(
        Method::Get,
        path,
        Op {
            verb: verb.to_string(),
            resource: resource.to_string(),
            namespace: ns.map(String::from),
            name: name.map(String::from),
        },
    )
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-escapes a query key or value (everything but unreserved characters).
pub fn escape_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-escapes one path segment (names are DNS-like, but never trust them).
pub fn escape_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b)
            || matches!(
                b,
                b':' | b'@' | b'!' | b'$' | b'&' | b'\'' | b'*' | b'+' | b',' | b';' | b'='
            )
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::resource::{NAMESPACES, PODS};
    use serde_json::json;

    #[test]
    fn list_query_building_and_escaping() {
        let r = list(
            &PODS,
            Some("dev"),
            &ListOptions {
                label_selector: Some(
                    "app.kubernetes.io/managed-by=kodama,kodama/session in (a b)".into(),
                ),
                field_selector: Some("status.phase!=Failed".into()),
                limit: Some(500),
                continue_token: Some("abc+/=".into()),
                resource_version: None,
            },
        );
        assert_eq!(
            r.path_and_query(),
            "/api/v1/namespaces/dev/pods?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkodama%2Ckodama%2Fsession%20in%20%28a%20b%29&fieldSelector=status.phase%21%3DFailed&limit=500&continue=abc%2B%2F%3D"
        );
        assert_eq!(r.method, Method::Get);
        assert!(r.is_idempotent());
    }

    #[test]
    fn watch_query() {
        let r = watch(
            &PODS,
            Some("dev"),
            &WatchOptions {
                field_selector: Some("metadata.name=web".into()),
                resource_version: Some("42".into()),
                timeout_seconds: Some(300),
                allow_bookmarks: true,
                ..WatchOptions::default()
            },
            None,
        );
        assert_eq!(
            r.path_and_query(),
            "/api/v1/namespaces/dev/pods?watch=1&fieldSelector=metadata.name%3Dweb&resourceVersion=42&allowWatchBookmarks=true&timeoutSeconds=300"
        );
        assert!(matches!(r.mode, Mode::Stream { .. }));
    }

    #[test]
    fn write_requests() {
        let obj = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}});
        let c = create(&PODS, Some("dev"), &obj);
        assert_eq!(
            (c.method, c.path_and_query().as_str()),
            (
                Method::Post,
                "/api/v1/namespaces/dev/pods?fieldManager=kodama"
            )
        );
        assert_eq!(c.content_type, Some("application/json"));
        assert!(!c.is_idempotent(), "POST is never retried");
        assert_eq!(
            c.op.describe(),
            "creating pods \"web\" in namespace \"dev\""
        );

        let a = patch(
            &PODS,
            Some("dev"),
            "web",
            PatchKind::Apply { force: true },
            &obj,
        );
        assert_eq!(
            a.path_and_query(),
            "/api/v1/namespaces/dev/pods/web?fieldManager=kodama&force=true"
        );
        assert_eq!(a.content_type, Some("application/apply-patch+yaml"));
        assert!(a.is_idempotent());
        let m = patch(&PODS, Some("dev"), "web", PatchKind::Merge, &obj);
        assert_eq!(m.content_type, Some("application/merge-patch+json"));
        assert!(!m.is_idempotent());
        let s = patch(&PODS, Some("dev"), "web", PatchKind::StrategicMerge, &obj);
        assert_eq!(
            s.content_type,
            Some("application/strategic-merge-patch+json")
        );

        let d = delete(
            &PODS,
            Some("dev"),
            "web",
            &DeleteOptions {
                grace_period_seconds: Some(0),
                propagation_policy: Some(Propagation::Background),
            },
        );
        assert_eq!(
            d.path_and_query(),
            "/api/v1/namespaces/dev/pods/web?gracePeriodSeconds=0&propagationPolicy=Background"
        );
        assert!(d.is_idempotent());
        let p = replace(&PODS, Some("dev"), "web", &obj);
        assert_eq!(p.method, Method::Put);
        assert!(p.is_idempotent());

        let n = get(&NAMESPACES, Some("ignored"), "dev");
        assert_eq!(n.path, "/api/v1/namespaces/dev");
        assert_eq!(
            n.op.namespace, None,
            "cluster-scoped ops carry no namespace"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_query("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(escape_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(escape_segment("web-1.x"), "web-1.x");
    }
}
