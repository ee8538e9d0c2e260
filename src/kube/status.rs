//! API errors: decoding `metav1.Status` bodies (with a fallback to the HTTP code and the first 2 KiB
//! of text), turning them into human errors with a next step for the operation that failed, and
//! parsing `Warning:` headers.
//!
//! Pure.
//!
//! May import: error.

use serde_json::Value;

use crate::error::{ApiCause, ApiError, Error};

/// How much of a non-Status body is kept in the message (client-go uses 2 KiB too).
pub const MAX_TEXT: usize = 2048;

/// Decodes an error response body. A body that is not a Status gives an `ApiError` with the HTTP code
/// and the start of the text.
pub fn decode_status(code: u16, body: &[u8]) -> ApiError {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(mut a) = api_error_from_value(&v) {
            if a.code == 0 {
                a.code = code;
            }
            return a;
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut message = truncate(text, MAX_TEXT);
    if message.is_empty() {
        message = format!("the server answered HTTP {code} with an empty body");
    }
    ApiError {
        code,
        message,
        ..ApiError::default()
    }
}

fn truncate(s: &str, max: usize) -> String {
    let head = prefix_at_char_boundary(s, max);
    if head.len() == s.len() {
        return s.to_string();
    }
    format!("{head}… (truncated)")
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary. Shared with
/// `kube::ws::codec`, which truncates exec status text the same way.
pub fn prefix_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads a `Status` object (HTTP error body, watch `ERROR` event object, exec channel 3). Returns
/// None when `v` is not a Status.
pub fn api_error_from_value(v: &Value) -> Option<ApiError> {
    let o = v.as_object()?;
    let is_status = o.get("kind").and_then(Value::as_str) == Some("Status")
        || (o.contains_key("status") && (o.contains_key("reason") || o.contains_key("code")));
    if !is_status {
        return None;
    }
    Some(status_fields(v))
}

/// Reads the fields of a `metav1.Status` object (code, reason, message, details, causes) without
/// checking that `v` is one; absent fields are empty (code 0). This is the one Status field decoder:
/// [`api_error_from_value`] and the exec status channel (`kube::ws::codec`) both use it.
pub fn status_fields(v: &Value) -> ApiError {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let d = v.get("details");
    let causes = d
        .and_then(|d| d.get("causes"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| ApiCause {
                    field: s(c.get("field")),
                    reason: s(c.get("reason")),
                    message: s(c.get("message")),
                })
                .collect()
        })
        .unwrap_or_default();
    ApiError {
        code: v
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0),
        reason: s(v.get("reason")),
        message: s(v.get("message")),
        kind: s(d.and_then(|d| d.get("kind"))),
        name: s(d.and_then(|d| d.get("name"))),
        group: s(d.and_then(|d| d.get("group"))),
        causes,
        retry_after_seconds: d
            .and_then(|d| d.get("retryAfterSeconds"))
            .and_then(Value::as_u64),
    }
}

/// The operation a request performed, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// RBAC verb: get, list, watch, create, update, patch, delete.
    pub verb: String,
    /// Plural resource, with `/subresource` when any (e.g. `pods/exec`).
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Op {
    /// "creating pods \"x\" in namespace \"dev\"".
    pub fn describe(&self) -> String {
        let gerund = match self.verb.as_str() {
            "get" => "getting",
            "list" => "listing",
            "watch" => "watching",
            "create" => "creating",
            "update" => "updating",
            "patch" => "patching",
            "delete" => "deleting",
            other => other,
        };
        let mut s = format!("{gerund} {}", self.resource);
        if let Some(n) = &self.name {
            s.push_str(&format!(" {n:?}"));
        }
        if let Some(ns) = &self.namespace {
            s.push_str(&format!(" in namespace {ns:?}"));
        }
        s
    }

    fn where_(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("in namespace {ns:?}"),
            None => "at cluster scope".to_string(),
        }
    }

    fn ns_flag(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(" -n {ns}"),
            None => String::new(),
        }
    }
}

/// Turns an API error into our error: the operation as context, and a next step as the hint.
pub fn explain(api: ApiError, op: &Op) -> Error {
    let hint = hint_for(&api, op);
    let e = Error::from(api).context(op.describe());
    match hint {
        Some(h) => e.hinted(h),
        None => e,
    }
}

/// The next step for an API error in the context of `op`.
pub fn hint_for(api: &ApiError, op: &Op) -> Option<String> {
    let ns = op.namespace.clone().unwrap_or_default();
    match api.code {
        401 => Some(
            "the API server rejected your credentials: log in again (refresh your kubeconfig / exec plugin login) and check `kubectl auth whoami`"
                .into(),
        ),
        403 => {
            if api.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                || api.message.contains("being terminated")
            {
                return Some(format!(
                    "namespace {ns:?} is being deleted; wait until it is gone, or choose another namespace with -n"
                ));
            }
            // RBAC names the permission it checked; it can differ from our operation (exec and
            // port-forward need both `get` and `create` on the subresource since Kubernetes 1.35).
            let (verb, resource) = denied_permission(&api.message)
                .unwrap_or((op.verb.clone(), op.resource.clone()));
            Some(format!(
                "you may not {verb} {resource} {}: ask a cluster admin to grant it (check with `kubectl auth can-i {verb} {resource}{}`), or use a namespace you may write to with -n",
                op.where_(),
                op.ns_flag()
            ))
        }
        404 => {
            let missing_ns = api.kind == "namespaces"
                && op.resource != "namespaces"
                && (api.name == ns || api.name.is_empty());
            if missing_ns {
                Some(format!(
                    "namespace {ns:?} does not exist: create it with `kubectl create namespace {ns}`, or choose another with -n"
                ))
            } else {
                None
            }
        }
        409 if api.reason == "AlreadyExists" => Some(format!(
            "{} {:?} already exists {}: delete it first or choose another name",
            if api.kind.is_empty() { &op.resource } else { &api.kind },
            if api.name.is_empty() { op.name.as_deref().unwrap_or("") } else { &api.name },
            op.where_()
        )),
        409 => Some("the object was changed by someone else meanwhile; run the command again".into()),
        410 => Some("the data went stale while reading; run the command again".into()),
        422 => Some("fix the fields listed above".into()),
        429 => Some("the API server is throttling requests; wait a moment and retry".into()),
        500..=599 => Some("the API server failed; retry in a moment, or check the cluster's health".into()),
        _ => None,
    }
}

/// The verb and resource from an RBAC denial: `User "u" cannot get resource "pods/exec" in API
/// group "" …` → ("get", "pods/exec"); a non-core group is appended (`deployments.apps`).
fn denied_permission(message: &str) -> Option<(String, String)> {
    let rest = &message[message.find("\" cannot ")? + "\" cannot ".len()..];
    let (verb, rest) = rest.split_once(" resource \"")?;
    let (resource, rest) = rest.split_once('"')?;
    if verb.is_empty() || verb.contains(' ') || resource.is_empty() {
        return None;
    }
    let group = rest
        .strip_prefix(" in API group \"")
        .and_then(|g| g.split_once('"'))
        .map(|(g, _)| g)
        .unwrap_or("");
    let resource = match (group.is_empty(), resource.split_once('/')) {
        (true, _) => resource.to_string(),
        (false, Some((r, sub))) => format!("{r}.{group}/{sub}"),
        (false, None) => format!("{resource}.{group}"),
    };
    Some((verb.to_string(), resource))
}

/// Parses `Warning` header values (RFC 7234: `code SP agent SP "text" [SP "date"]`, several per header
/// separated by commas) and returns the texts of code-299 warnings.
pub fn parse_warnings(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = value.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i] != b' ' && b[*i] != b',' {
            *i += 1;
        }
        String::from_utf8_lossy(&b[start..*i]).into_owned()
    };
    let quoted = |i: &mut usize| -> Option<String> {
        if b.get(*i) != Some(&b'"') {
            return None;
        }
        *i += 1;
        let mut s = Vec::new();
        while *i < b.len() {
            match b[*i] {
                b'\\' if *i + 1 < b.len() => {
                    s.push(b[*i + 1]);
                    *i += 2;
                }
                b'"' => {
                    *i += 1;
                    return Some(String::from_utf8_lossy(&s).into_owned());
                }
                c => {
                    s.push(c);
                    *i += 1;
                }
            }
        }
        None
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let code = token(&mut i);
        skip_ws_only(b, &mut i);
        let _agent = token(&mut i);
        skip_ws_only(b, &mut i);
        let Some(text) = quoted(&mut i) else {
            // Malformed: skip to the next comma.
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            continue;
        };
        skip_ws_only(b, &mut i);
        let _date = quoted(&mut i);
        if code == "299" {
            out.push(text);
        }
    }
    out
}

fn skip_ws_only(b: &[u8], i: &mut usize) {
    while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
        *i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(verb: &str, resource: &str, ns: Option<&str>, name: Option<&str>) -> Op {
        Op {
            verb: verb.into(),
            resource: resource.into(),
            namespace: ns.map(String::from),
            name: name.map(String::from),
        }
    }

    #[test]
    fn decodes_status_bodies() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Pod \"web\" is invalid: [spec.containers[0].image: Required value]","reason":"Invalid","details":{"name":"web","kind":"Pod","causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.containers[0].image"}]},"code":422}"#;
        let a = decode_status(422, body);
        assert_eq!(a.reason, "Invalid");
        assert_eq!(a.kind, "Pod");
        assert_eq!(a.causes.len(), 1);
        assert_eq!(a.causes[0].field, "spec.containers[0].image");
        let e = explain(a, &op("create", "pods", Some("dev"), Some("web")));
        let r = e.render();
        assert!(
            r.contains("creating pods \"web\" in namespace \"dev\": 422 Invalid"),
            "{r}"
        );
        assert!(
            r.contains("\n  - spec.containers[0].image: Required value"),
            "{r}"
        );
        assert!(r.contains("hint: fix the fields"), "{r}");
    }

    #[test]
    fn non_status_bodies_fall_back_to_code_and_text() {
        let a = decode_status(502, b"<html>Bad Gateway</html>");
        assert_eq!(a.code, 502);
        assert_eq!(a.message, "<html>Bad Gateway</html>");
        let long = "x".repeat(5000);
        let a = decode_status(500, long.as_bytes());
        assert!(a.message.len() < 2100 && a.message.ends_with("(truncated)"));
        let a = decode_status(403, b"");
        assert!(a.message.contains("empty body"));
        assert!(a.is_forbidden());
    }

    #[test]
    fn hints_table() {
        let api = |code: u16, reason: &str, kind: &str, name: &str| ApiError {
            code,
            reason: reason.into(),
            kind: kind.into(),
            name: name.into(),
            message: "m".into(),
            ..ApiError::default()
        };
        let cases: Vec<(ApiError, Op, &str)> = vec![
            (
                api(403, "Forbidden", "pods", ""),
                op("create", "pods/exec", Some("dev"), Some("p")),
                "you may not create pods/exec in namespace \"dev\"",
            ),
            (
                api(403, "Forbidden", "namespaces", ""),
                op("list", "namespaces", None, None),
                "you may not list namespaces at cluster scope",
            ),
            (
                api(404, "NotFound", "namespaces", "ghost"),
                op("create", "pods", Some("ghost"), None),
                "namespace \"ghost\" does not exist",
            ),
            (
                api(409, "AlreadyExists", "configmaps", "cfg"),
                op("create", "configmaps", Some("dev"), None),
                "configmaps \"cfg\" already exists in namespace \"dev\"",
            ),
            (
                api(500, "InternalError", "", ""),
                op("get", "pods", Some("d"), None),
                "retry",
            ),
        ];
        for (a, o, want) in cases {
            let e = explain(a, &o);
            let h = e.hint().unwrap_or_default();
            assert!(h.contains(want), "{h}");
            assert!(e.api().is_some(), "root stays the API error");
        }
        // A plain 404 on a pod keeps is_not_found and has no namespace hint.
        let e = explain(
            api(404, "NotFound", "pods", "web"),
            &op("get", "pods", Some("d"), Some("web")),
        );
        assert!(e.is_not_found());
        assert!(e.hint().is_none());
        // The hint names the permission RBAC actually denied.
        let mut a = api(403, "Forbidden", "pods", "p");
        a.message = r#"pods "p" is forbidden: User "u" cannot get resource "pods/exec" in API group "" in the namespace "dev""#.into();
        let h = explain(a, &op("create", "pods/exec", Some("dev"), Some("p")))
            .hint()
            .unwrap_or_default();
        assert!(
            h.contains("you may not get pods/exec in namespace \"dev\""),
            "{h}"
        );
        assert!(h.contains("kubectl auth can-i get pods/exec -n dev"), "{h}");
        let mut a = api(403, "Forbidden", "deployments", "");
        a.message = r#"deployments.apps is forbidden: User "u" cannot list resource "deployments" in API group "apps" at the cluster scope"#.into();
        let h = explain(a, &op("list", "deployments", None, None))
            .hint()
            .unwrap_or_default();
        assert!(
            h.contains("kubectl auth can-i list deployments.apps`"),
            "{h}"
        );
        // Terminating namespace.
        let mut a = api(403, "Forbidden", "pods", "");
        a.causes.push(ApiCause {
            reason: "NamespaceTerminating".into(),
            ..ApiCause::default()
        });
        let e = explain(a, &op("create", "pods", Some("old"), None));
        assert!(e.hint().unwrap_or_default().contains("being deleted"));
    }

    #[test]
    fn warning_header_parsing() {
        assert_eq!(
            parse_warnings(r#"299 - "v1 Foo is deprecated""#),
            vec!["v1 Foo is deprecated"]
        );
        assert_eq!(
            parse_warnings(
                r#"299 - "a \"quoted\" word", 299 - "second" "Sat, 01 Jan 2000 00:00:00 GMT""#
            ),
            vec![r#"a "quoted" word"#, "second"]
        );
        assert!(parse_warnings(r#"199 - "misc""#).is_empty());
        assert!(parse_warnings("garbage").is_empty());
    }

    #[test]
    fn watch_error_event_status_is_read_without_kind() {
        let v = serde_json::json!({"status":"Failure","message":"too old resource version: 1 (5)","reason":"Expired","code":410});
        let a = api_error_from_value(&v).expect("status");
        assert!(a.is_gone());
        assert!(api_error_from_value(&serde_json::json!({"kind":"Pod"})).is_none());
    }
}
