//! Request handling: authentication, fault injection, journal, routing, authorisation, and the
//! REST semantics of our kinds (create/get/list/watch/update/patch/apply/delete, status
//! subresource, logs, hand-off of exec/attach/port-forward to the kubelet, SSAR).
//!
//! May import: std, serde_json, base64, contract, api::*.

use super::auth::{self, Attrs, UserInfo};
use super::faults::{ByteLimit, JournalEntry};
use super::http::{write_chunked_head, write_response, ChunkedWriter, Request};
use super::patch;
use super::resources::{self, ResDef};
use super::selectors::{self, FieldReq, LabelReq};
use super::server::Api;
use super::store::{key, EvType, Inner};
use super::util::{
    name_suffix, now_rfc3339, now_secs, status_failure, status_success, uuid, ApiError,
};
use super::validate;
use crate::contract::{ClusterState, LogOptions, StreamKind, StreamRequest};
use base64::Engine;
use serde_json::{json, Value as Json};
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

thread_local! {
    /// `Warning` headers for the response being built (one connection per thread).
    static WARNINGS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn warn(msg: String) {
    WARNINGS.with(|w| w.borrow_mut().push(msg));
}

fn take_warnings() -> Vec<(String, String)> {
    WARNINGS.with(|w| {
        w.borrow_mut()
            .drain(..)
            .map(|m| ("Warning".to_string(), format!("299 - {m:?}")))
            .collect()
    })
}

/// `fieldValidation`: Strict → 400 for undeclared fields, Warn (the default) → Warning headers,
/// Ignore → nothing.
fn field_validation(req: &Request, rd: &ResDef, obj: &Json) -> Result<(), ApiError> {
    let unknown = validate::unknown_fields(rd.name, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    match req.q("fieldValidation").unwrap_or("Warn") {
        "Strict" => {
            let parts: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect();
            Err(ApiError::bad_request(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: strict decoding error: {}",
                parts.join(", "),
                kind = rd.kind
            )))
        }
        "Ignore" => Ok(()),
        _ => {
            for f in unknown {
                warn(format!("unknown field {f:?}"));
            }
            Ok(())
        }
    }
}

/// What the connection loop does next.
pub enum Outcome {
    KeepAlive,
    Close,
    /// Hand the connection to the kubelet (with an optional fault-injection byte limit).
    Stream(StreamRequest, Option<u64>),
}

enum Resp {
    Json(u16, Json),
    Text(u16, String),
    Watch(WatchSpec),
    Logs(String, String, LogOptions),
    Stream(StreamRequest),
}

/// Handle one request on `conn`.
pub fn handle(
    api: &Arc<Api>,
    req: Request,
    conn: &mut dyn Write,
    subject: Option<(String, Vec<String>)>,
    tcp: &TcpStream,
) -> Outcome {
    if std::env::var_os("KODAMA_SIM_DEBUG").is_some() {
        eprintln!(
            "kodama-sim: {} {}?{} ct={:?} accept={:?} body={}B",
            req.method,
            req.path,
            req.raw_query,
            req.header("content-type"),
            req.header("accept"),
            req.body.len()
        );
    }
    take_warnings();
    let user = api.auth.authenticate(subject, req.header("authorization"));
    let target = if req.raw_query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.raw_query)
    };
    let mut entry = JournalEntry {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.raw_query.clone(),
        body: req.body.clone(),
        user: user.as_ref().map(|u| u.name.clone()).unwrap_or_default(),
        code: 0,
        timestamp: SystemTime::now(),
        content_type: req.header("content-type").map(str::to_string),
    };
    let result = (|| -> Result<Resp, ApiError> {
        let user = user.as_ref().ok_or_else(ApiError::unauthorized)?;
        let lat = api.faults.latency(&req.method, &target);
        if !lat.is_zero() {
            std::thread::sleep(lat);
        }
        if let Some(e) = api.faults.take_failure(&req.method, &target) {
            return Err(e);
        }
        if req.body_too_large {
            return Err(ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
                None,
            ));
        }
        route(api, &req, user)
    })();
    let keep = |w: io::Result<()>| {
        if w.is_ok() {
            Outcome::KeepAlive
        } else {
            Outcome::Close
        }
    };
    match result {
        Err(e) => {
            entry.code = e.code;
            api.record(entry);
            let body = serde_json::to_vec(&e.status).unwrap_or_default();
            keep(write_response(
                conn,
                e.code,
                "application/json",
                &e.headers,
                &body,
            ))
        }
        Ok(Resp::Json(code, body)) => {
            entry.code = code;
            api.record(entry);
            let body = serde_json::to_vec(&body).unwrap_or_default();
            keep(write_response(
                conn,
                code,
                "application/json",
                &take_warnings(),
                &body,
            ))
        }
        Ok(Resp::Text(code, body)) => {
            entry.code = code;
            api.record(entry);
            keep(write_response(
                conn,
                code,
                "text/plain; charset=utf-8",
                &[],
                body.as_bytes(),
            ))
        }
        Ok(Resp::Watch(mut spec)) => {
            entry.code = 200;
            api.record(entry);
            spec.force_expired = api.faults.take_watch_expiry(&target);
            match run_watch(api, &spec, conn) {
                Ok(()) => Outcome::KeepAlive,
                Err(_) => Outcome::Close,
            }
        }
        Ok(Resp::Logs(ns, pod, opts)) => {
            let limit = api.faults.take_drop(&target);
            let mut lazy = LazyChunked {
                conn,
                started: false,
            };
            let res = match limit {
                Some(n) => {
                    let mut w = ByteLimit {
                        inner: &mut lazy,
                        tcp: tcp.try_clone().ok(),
                        left: n,
                    };
                    api.kubelet.logs(&ns, &pod, &opts, &mut w)
                }
                None => api.kubelet.logs(&ns, &pod, &opts, &mut lazy),
            };
            match res {
                Err(ke) if !lazy.started => {
                    entry.code = ke.code;
                    api.record(entry);
                    let st = status_failure(ke.code, &ke.reason, &ke.message, None);
                    keep(write_response(
                        lazy.conn,
                        ke.code,
                        "application/json",
                        &[],
                        &serde_json::to_vec(&st).unwrap_or_default(),
                    ))
                }
                _ => {
                    entry.code = 200;
                    api.record(entry);
                    if limit.is_some() && tcp.peer_addr().is_err() {
                        return Outcome::Close;
                    }
                    if !lazy.started && lazy.start().is_err() {
                        return Outcome::Close;
                    }
                    keep(ChunkedWriter { inner: lazy.conn }.finish())
                }
            }
        }
        Ok(Resp::Stream(s)) => {
            entry.code = 101;
            api.record(entry);
            Outcome::Stream(s, api.faults.take_drop(&target))
        }
    }
}

/// Writes the 200 chunked head on the first byte, so errors before any output can still be a
/// Status.
struct LazyChunked<'a> {
    conn: &'a mut dyn Write,
    started: bool,
}

impl LazyChunked<'_> {
    fn start(&mut self) -> io::Result<()> {
        self.started = true;
        write_chunked_head(self.conn, 200, "text/plain")
    }
}

impl Write for LazyChunked<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if !self.started {
            self.start()?;
        }
        ChunkedWriter { inner: self.conn }.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.conn.flush()
    }
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

fn route(api: &Arc<Api>, req: &Request, user: &UserInfo) -> Result<Resp, ApiError> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let nonresource = |p: &str| -> Result<(), ApiError> {
        let a = Attrs {
            verb: "get".into(),
            path: Some(p.into()),
            ..Default::default()
        };
        if auth::allowed(user, &a) {
            Ok(())
        } else {
            Err(auth::forbidden(user, &a))
        }
    };
    match segs.as_slice() {
        ["version"] => nonresource(&req.path).map(|_| Resp::Json(200, resources::version())),
        ["healthz"] | ["livez"] | ["readyz"] => {
            nonresource(&req.path).map(|_| Resp::Text(200, "ok".into()))
        }
        ["api"] => {
            nonresource(&req.path)?;
            let host = req.header("host").unwrap_or("127.0.0.1").to_string();
            Ok(Resp::Json(200, resources::api_versions(&host)))
        }
        ["api", "v1"] => {
            nonresource(&req.path).map(|_| Resp::Json(200, resources::core_resource_list()))
        }
        ["apis"] => nonresource(&req.path).map(|_| Resp::Json(200, resources::api_group_list())),
        ["apis", g] if *g == resources::AUTHZ_GROUP => {
            nonresource(&req.path).map(|_| Resp::Json(200, resources::authz_api_group()))
        }
        ["apis", g, "v1"] if *g == resources::AUTHZ_GROUP => {
            nonresource(&req.path).map(|_| Resp::Json(200, resources::authz_resource_list()))
        }
        ["apis", g, "v1", res] if *g == resources::AUTHZ_GROUP => authz_review(api, req, user, res),
        ["apis", g] if *g == resources::AUTHN_GROUP => {
            nonresource(&req.path).map(|_| Resp::Json(200, resources::authn_api_group()))
        }
        ["apis", g, "v1"] if *g == resources::AUTHN_GROUP => {
            nonresource(&req.path).map(|_| Resp::Json(200, resources::authn_resource_list()))
        }
        ["apis", g, "v1", "selfsubjectreviews"] if *g == resources::AUTHN_GROUP => {
            if req.method != "POST" {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({})",
                    req.method
                )));
            }
            let mut body = parse_body(req)?;
            body["kind"] = json!("SelfSubjectReview");
            body["apiVersion"] = json!("authentication.k8s.io/v1");
            body["metadata"]["creationTimestamp"] = Json::Null;
            body["status"] = json!({"userInfo": {"username": user.name, "groups": user.groups}});
            Ok(Resp::Json(201, body))
        }
        ["openapi", "v3"] => {
            nonresource(&req.path).map(|_| Resp::Json(200, resources::openapi_v3_root()))
        }
        ["openapi", "v3", gv @ ..] => {
            nonresource(&req.path)?;
            resources::openapi_v3_doc(&gv.join("/"))
                .map(|d| Resp::Json(200, d))
                .ok_or_else(not_found_path)
        }
        ["api", "v1", rest @ ..] => resource_request(api, req, user, rest),
        _ => Err(not_found_path()),
    }
}

fn authz_review(
    api: &Arc<Api>,
    req: &Request,
    user: &UserInfo,
    res: &str,
) -> Result<Resp, ApiError> {
    let _ = api;
    if req.method != "POST" {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.method
        )));
    }
    let mut body: Json = parse_body(req)?;
    match res {
        "selfsubjectaccessreviews" => {
            let ra = &body["spec"]["resourceAttributes"];
            let a = if ra.is_object() {
                Attrs {
                    verb: ra["verb"].as_str().unwrap_or_default().into(),
                    group: ra["group"].as_str().unwrap_or_default().into(),
                    resource: ra["resource"].as_str().unwrap_or_default().into(),
                    subresource: ra["subresource"].as_str().unwrap_or_default().into(),
                    namespace: ra["namespace"].as_str().unwrap_or_default().into(),
                    name: ra["name"].as_str().unwrap_or_default().into(),
                    path: None,
                }
            } else {
                let nr = &body["spec"]["nonResourceAttributes"];
                Attrs {
                    verb: nr["verb"].as_str().unwrap_or("get").into(),
                    path: Some(nr["path"].as_str().unwrap_or("/").into()),
                    ..Default::default()
                }
            };
            let known = a.path.is_some()
                || a.resource == "*"
                || (a.group.is_empty() && resources::core(&a.resource).is_some())
                || (a.group == resources::AUTHZ_GROUP);
            let allowed = known && auth::allowed(user, &a);
            let mut status = json!({"allowed": allowed});
            if allowed && user.groups.iter().any(|g| g == "system:masters") {
                status["reason"] = json!("RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\"");
            }
            body["status"] = status;
            body["kind"] = json!("SelfSubjectAccessReview");
            body["apiVersion"] = json!("authorization.k8s.io/v1");
            if body["metadata"].is_null() {
                body["metadata"] = json!({});
            }
            body["metadata"]["creationTimestamp"] = Json::Null;
            Ok(Resp::Json(201, body))
        }
        "selfsubjectrulesreviews" => {
            let ns = body["spec"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let a = Attrs {
                verb: "get".into(),
                resource: "pods".into(),
                namespace: ns,
                ..Default::default()
            };
            let rules = if auth::allowed(user, &a) {
                json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}])
            } else {
                json!([{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}])
            };
            body["status"] = json!({"resourceRules": rules, "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version"]}], "incomplete": false});
            body["kind"] = json!("SelfSubjectRulesReview");
            body["apiVersion"] = json!("authorization.k8s.io/v1");
            Ok(Resp::Json(201, body))
        }
        _ => Err(not_found_path()),
    }
}

/// A parsed resource URL.
struct Target<'a> {
    rd: &'static ResDef,
    ns: Option<&'a str>,
    name: Option<&'a str>,
    sub: Option<&'a str>,
}

fn parse_target<'a>(rest: &[&'a str]) -> Result<Target<'a>, ApiError> {
    let rd = |n: &str| resources::core(n).ok_or_else(not_found_path);
    Ok(match rest {
        [res] => Target {
            rd: rd(res)?,
            ns: None,
            name: None,
            sub: None,
        },
        ["namespaces", name] => Target {
            rd: rd("namespaces")?,
            ns: None,
            name: Some(name),
            sub: None,
        },
        ["namespaces", name, sub] if *sub == "status" || *sub == "finalize" => Target {
            rd: rd("namespaces")?,
            ns: None,
            name: Some(name),
            sub: Some(sub),
        },
        ["namespaces", ns, res] => Target {
            rd: rd(res)?,
            ns: Some(ns),
            name: None,
            sub: None,
        },
        ["namespaces", ns, res, name] => Target {
            rd: rd(res)?,
            ns: Some(ns),
            name: Some(name),
            sub: None,
        },
        ["namespaces", ns, res, name, sub] => Target {
            rd: rd(res)?,
            ns: Some(ns),
            name: Some(name),
            sub: Some(sub),
        },
        _ => return Err(not_found_path()),
    })
}

fn resource_request(
    api: &Arc<Api>,
    req: &Request,
    user: &UserInfo,
    rest: &[&str],
) -> Result<Resp, ApiError> {
    let (legacy_watch, rest) = match rest.split_first() {
        Some((&"watch", r)) => (true, r),
        _ => (false, rest),
    };
    let t = parse_target(rest)?;
    if t.rd.namespaced && t.ns.is_none() && t.name.is_some() {
        return Err(not_found_path());
    }
    let watch = legacy_watch || req.q_bool("watch");
    let m = req.method.as_str();
    let verb = match (m, t.name.is_some(), t.sub) {
        (_, _, Some("exec" | "attach" | "portforward")) => "get",
        ("GET", false, _) if watch => "watch",
        ("GET", false, _) => "list",
        ("GET", true, _) if watch => "watch",
        ("GET", true, _) => "get",
        ("POST", false, _) => "create",
        ("PUT", true, _) => "update",
        ("PATCH", true, _) => "patch",
        ("DELETE", true, _) => "delete",
        ("DELETE", false, _) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m})"
            )))
        }
    };
    let mut attrs = Attrs {
        verb: verb.into(),
        group: String::new(),
        resource: t.rd.name.into(),
        subresource: t.sub.unwrap_or_default().into(),
        namespace: if t.rd.name == "namespaces" {
            t.name.unwrap_or_default().into()
        } else {
            t.ns.unwrap_or_default().into()
        },
        name: t.name.unwrap_or_default().into(),
        path: None,
    };
    if t.rd.name == "namespaces" && t.name.is_none() {
        attrs.namespace = String::new();
    }
    if !auth::allowed(user, &attrs) {
        return Err(auth::forbidden(user, &attrs));
    }
    // Since 1.35 a WebSocket upgrade also needs `create` on the subresource.
    if matches!(t.sub, Some("exec" | "attach" | "portforward")) {
        let mut c = attrs.clone();
        c.verb = "create".into();
        if !auth::allowed(user, &c) {
            return Err(auth::forbidden(user, &c));
        }
    }
    let ns = t.ns.unwrap_or_default();
    let rd = t.rd;
    let manager = field_manager(req);
    match (verb, t.name, t.sub) {
        ("watch", name, _) => Ok(Resp::Watch(watch_spec(req, rd, t.ns, name)?)),
        ("list", _, _) => {
            let list = list(api, rd, t.ns, req)?;
            Ok(Resp::Json(200, list))
        }
        ("create", _, _) => {
            if rd.namespaced && t.ns.is_none() {
                return Err(not_found_path());
            }
            let body = parse_body(req)?;
            field_validation(req, rd, &body)?;
            let obj = create(api, rd, ns, body, &manager, dry_run(req))?;
            Ok(Resp::Json(201, obj))
        }
        ("deletecollection", _, _) => {
            let items = delete_collection(api, rd, t.ns, req)?;
            Ok(Resp::Json(200, items))
        }
        (_, Some(name), Some(sub)) => subresource(api, req, rd, ns, name, sub, &manager),
        ("get", Some(name), None) => {
            let obj = get(api, rd, ns, name)?;
            Ok(Resp::Json(200, maybe_table(req, rd, obj)))
        }
        ("update", Some(name), None) => {
            let body = parse_body(req)?;
            field_validation(req, rd, &body)?;
            let (code, obj) = replace(api, rd, ns, name, body, false, &manager, dry_run(req))?;
            Ok(Resp::Json(code, obj))
        }
        ("patch", Some(name), None) => {
            let (code, obj) = patch_object(api, req, rd, ns, name, false, &manager)?;
            Ok(Resp::Json(code, obj))
        }
        ("delete", Some(name), None) => {
            let opts = delete_options(req)?;
            let (code, obj) = delete(api, rd, ns, name, &opts)?;
            Ok(Resp::Json(code, obj))
        }
        _ => Err(not_found_path()),
    }
}

fn subresource(
    api: &Arc<Api>,
    req: &Request,
    rd: &'static ResDef,
    ns: &str,
    name: &str,
    sub: &str,
    manager: &str,
) -> Result<Resp, ApiError> {
    match (rd.name, sub, req.method.as_str()) {
        (_, "status", "GET") => get(api, rd, ns, name).map(|o| Resp::Json(200, o)),
        (_, "status", "PUT") => {
            let body = parse_body(req)?;
            replace(api, rd, ns, name, body, true, manager, dry_run(req))
                .map(|(c, o)| Resp::Json(c, o))
        }
        (_, "status", "PATCH") => {
            patch_object(api, req, rd, ns, name, true, manager).map(|(c, o)| Resp::Json(c, o))
        }
        ("namespaces", "finalize", "PUT") => {
            let body = parse_body(req)?;
            replace(api, rd, ns, name, body, false, manager, false).map(|(c, o)| Resp::Json(c, o))
        }
        ("pods", "log", "GET") => {
            let pod = get(api, rd, ns, name)?;
            let container = req.q("container").map(str::to_string);
            if let Some(c) = &container {
                if !container_names(&pod).iter().any(|n| n == c) {
                    return Err(ApiError::bad_request(format!(
                        "container {c} is not valid for pod {name}"
                    )));
                }
            } else if container_names(&pod).len() > 1 {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    container_names(&pod).join(" ")
                )));
            }
            let num = |k: &str| req.q(k).and_then(|v| v.parse::<i64>().ok());
            let opts = LogOptions {
                container,
                follow: req.q_bool("follow"),
                tail_lines: num("tailLines"),
                since_seconds: num("sinceSeconds"),
                timestamps: req.q_bool("timestamps"),
                previous: req.q_bool("previous"),
            };
            Ok(Resp::Logs(ns.to_string(), name.to_string(), opts))
        }
        ("pods", "exec" | "attach" | "portforward", "GET" | "POST") => {
            get(api, rd, ns, name)?;
            let kind = match sub {
                "exec" => StreamKind::Exec,
                "attach" => StreamKind::Attach,
                _ => StreamKind::PortForward,
            };
            Ok(Resp::Stream(StreamRequest {
                kind,
                namespace: ns.to_string(),
                pod: name.to_string(),
                query: req.query.clone(),
                headers: req.headers.clone(),
                head: req.head.clone(),
            }))
        }
        _ => Err(not_found_path()),
    }
}

fn container_names(pod: &Json) -> Vec<String> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

fn field_manager(req: &Request) -> String {
    if let Some(m) = req.q("fieldManager") {
        return m.to_string();
    }
    req.header("user-agent")
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn dry_run(req: &Request) -> bool {
    req.q("dryRun").map(|v| v == "All").unwrap_or(false)
}

fn parse_body(req: &Request) -> Result<Json, ApiError> {
    let ct = req.header("content-type").unwrap_or("application/json");
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        return super::proto::decode(&req.body)
            .map_err(|m| ApiError::new(415, "UnsupportedMediaType", m, None));
    }
    let v: Json = if ct.contains("yaml") {
        patch::parse_apply_body(&req.body)?
    } else {
        serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't decode the request body as JSON: {e}"))
        })?
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

fn maybe_table(req: &Request, rd: &ResDef, obj: Json) -> Json {
    if resources::wants_table(req.header("accept")) {
        let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
        resources::to_table(rd.name, &[obj], req.q("includeObject"), meta)
    } else {
        obj
    }
}

pub fn get(api: &Api, rd: &ResDef, ns: &str, name: &str) -> Result<Json, ApiError> {
    api.store
        .get(rd.name, ns, name)
        .ok_or_else(|| ApiError::not_found(rd.name, name))
}

struct Selectors {
    labels: Vec<LabelReq>,
    fields: Vec<FieldReq>,
}

fn selectors(req: &Request, rd: &ResDef, forced_name: Option<&str>) -> Result<Selectors, ApiError> {
    let labels = selectors::parse_labels(req.q("labelSelector").unwrap_or_default())?;
    let mut fields = selectors::parse_fields(rd.name, req.q("fieldSelector").unwrap_or_default())?;
    if let Some(n) = forced_name {
        fields.push(("metadata.name".into(), true, n.into()));
    }
    Ok(Selectors { labels, fields })
}

impl Selectors {
    fn matches(&self, o: &Json) -> bool {
        selectors::labels_match(&self.labels, o) && selectors::fields_match(&self.fields, o)
    }
}

fn list_item(mut o: Json) -> Json {
    if let Some(m) = o.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    o
}

fn list(api: &Arc<Api>, rd: &ResDef, ns: Option<&str>, req: &Request) -> Result<Json, ApiError> {
    let sel = selectors(req, rd, None)?;
    let limit = req
        .q("limit")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let cont = req.q("continue").filter(|c| !c.is_empty());
    let g = api.store.read();
    let current = g.rv;
    if let Some(rv) = req
        .q("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        let rv: u64 = rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
        match req.q("resourceVersionMatch") {
            Some("Exact") if rv != current => {
                return Err(ApiError::expired(format!(
                    "too old resource version: {rv} ({current})"
                )));
            }
            _ if rv > current => {
                return Err(ApiError::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {rv}, current: {current}"),
                    Some(
                        json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}),
                    ),
                ));
            }
            _ => {}
        }
    }
    let start_after: Option<(String, String)> = match cont {
        Some(tok) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(tok)
                .ok()
                .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("continue key is not valid: illegal base64 data")
                })?;
            let rv = raw["rv"].as_u64().unwrap_or(0);
            if rv < g.compacted_rv {
                return Err(ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."));
            }
            Some((
                raw["ns"].as_str().unwrap_or_default().into(),
                raw["name"].as_str().unwrap_or_default().into(),
            ))
        }
        None => None,
    };
    let all: Vec<Json> = g
        .list(rd.name, ns)
        .into_iter()
        .filter(|(k, _)| {
            start_after
                .as_ref()
                .map(|(n, m)| (&k.1, &k.2) > (n, m))
                .unwrap_or(true)
        })
        .map(|(_, o)| o)
        .filter(|o| sel.matches(o))
        .collect();
    drop(g);
    let mut meta = json!({"resourceVersion": current.to_string()});
    let items: Vec<Json> = match limit {
        Some(l) if all.len() > l => {
            let page: Vec<Json> = all[..l].to_vec();
            let last = &page[l - 1]["metadata"];
            let tok = json!({"rv": current, "ns": last["namespace"].as_str().unwrap_or_default(), "name": last["name"]});
            meta["continue"] =
                json!(base64::engine::general_purpose::STANDARD.encode(tok.to_string()));
            meta["remainingItemCount"] = json!(all.len() - l);
            page
        }
        _ => all,
    };
    if resources::wants_table(req.header("accept")) {
        return Ok(resources::to_table(
            rd.name,
            &items,
            req.q("includeObject"),
            meta,
        ));
    }
    Ok(json!({
        "kind": format!("{}List", rd.kind),
        "apiVersion": "v1",
        "metadata": meta,
        "items": items.into_iter().map(list_item).collect::<Vec<_>>(),
    }))
}

/// Defaults the real API server (and its admission plugins) fill in.
fn apply_defaults(api: &Api, rd: &ResDef, obj: &mut Json) {
    match rd.name {
        "namespaces" => {
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
            obj["status"] = json!({"phase": "Active"});
        }
        "pods" => {
            let spec = &mut obj["spec"];
            for (k, v) in [
                ("restartPolicy", json!("Always")),
                ("terminationGracePeriodSeconds", json!(30)),
                ("dnsPolicy", json!("ClusterFirst")),
                ("schedulerName", json!("default-scheduler")),
                ("securityContext", json!({})),
                ("serviceAccountName", json!("default")),
                ("enableServiceLinks", json!(true)),
                ("priority", json!(0)),
                ("preemptionPolicy", json!("PreemptLowerPriority")),
            ] {
                if spec[k].is_null() {
                    spec[k] = v;
                }
            }
            if spec["serviceAccount"].is_null() {
                spec["serviceAccount"] = spec["serviceAccountName"].clone();
            }
            let mut any_res = false;
            let mut guaranteed = true;
            for list in ["initContainers", "containers"] {
                if let Some(cs) = spec[list].as_array_mut() {
                    for c in cs {
                        let image = c["image"].as_str().unwrap_or_default().to_string();
                        if c["imagePullPolicy"].is_null() {
                            let tag_latest = !image.contains(':') || image.ends_with(":latest");
                            c["imagePullPolicy"] = json!(if tag_latest && !image.contains('@') {
                                "Always"
                            } else {
                                "IfNotPresent"
                            });
                        }
                        if c["terminationMessagePath"].is_null() {
                            c["terminationMessagePath"] = json!("/dev/termination-log");
                        }
                        if c["terminationMessagePolicy"].is_null() {
                            c["terminationMessagePolicy"] = json!("File");
                        }
                        if c["resources"].is_null() {
                            c["resources"] = json!({});
                        }
                        // Limits without requests default the requests.
                        if let Some(lim) = c["resources"]["limits"].as_object().cloned() {
                            for (k, v) in lim {
                                if c["resources"]["requests"][&k].is_null() {
                                    c["resources"]["requests"][&k] = v;
                                }
                            }
                        }
                        let r = &c["resources"];
                        if r["requests"]
                            .as_object()
                            .map(|o| !o.is_empty())
                            .unwrap_or(false)
                            || r["limits"]
                                .as_object()
                                .map(|o| !o.is_empty())
                                .unwrap_or(false)
                        {
                            any_res = true;
                        }
                        if list == "containers" {
                            for k in ["cpu", "memory"] {
                                if r["limits"][k].is_null() || r["limits"][k] != r["requests"][k] {
                                    guaranteed = false;
                                }
                            }
                        }
                    }
                }
            }
            let qos = if !any_res {
                "BestEffort"
            } else if guaranteed {
                "Guaranteed"
            } else {
                "Burstable"
            };
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
            obj["metadata"]["generation"] = json!(1);
        }
        "persistentvolumeclaims" => {
            if obj["spec"]["volumeMode"].is_null() {
                obj["spec"]["volumeMode"] = json!("Filesystem");
            }
            if obj["spec"]["storageClassName"].is_null() && api.config.default_storage_class {
                obj["spec"]["storageClassName"] = json!(DEFAULT_STORAGE_CLASS);
            }
            obj["status"] = json!({"phase": "Pending"});
        }
        "secrets" if obj["type"].is_null() => obj["type"] = json!("Opaque"),
        _ => {}
    }
}

/// Name of the simulated default StorageClass.
pub const DEFAULT_STORAGE_CLASS: &str = "standard";

/// Secrets: `data` must be base64; `stringData` is merged into `data` and dropped.
fn normalize_secret(obj: &mut Json) -> Result<(), ApiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(d) = obj["data"].as_object() {
        for (k, v) in d {
            let s = v.as_str().unwrap_or_default();
            if let Err(e) = b64.decode(s) {
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data[{k}]: {e}"
                )));
            }
        }
    }
    if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
        if let Some(sd) = sd.as_object() {
            for (k, v) in sd {
                obj["data"][k] = json!(b64.encode(v.as_str().unwrap_or_default()));
            }
        }
    }
    Ok(())
}

fn check_kind(rd: &ResDef, obj: &Json) -> Result<(), ApiError> {
    if let Some(k) = obj["kind"].as_str() {
        if !k.is_empty() && k != rd.kind {
            return Err(ApiError::bad_request(format!(
                "the kind of the provided object ({k}) does not match the kind of the resource ({})",
                rd.kind
            )));
        }
    }
    Ok(())
}

fn namespace_admission(g: &Inner, rd: &ResDef, ns: &str, name: &str) -> Result<(), ApiError> {
    if !rd.namespaced {
        return Ok(());
    }
    match g.get(&key("namespaces", "", ns)) {
        None => Err(ApiError::not_found("namespaces", ns)),
        Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::new(
            403,
            "Forbidden",
            format!("{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated", rd.name),
            Some(json!({"name": name, "kind": rd.name, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]})),
        )),
        _ => Ok(()),
    }
}

/// Create an object (POST). Returns the stored object.
pub fn create(
    api: &Arc<Api>,
    rd: &ResDef,
    ns: &str,
    mut obj: Json,
    manager: &str,
    dry: bool,
) -> Result<Json, ApiError> {
    check_kind(rd, &obj)?;
    if rd.namespaced {
        match obj["metadata"]["namespace"].as_str() {
            Some(n) if !n.is_empty() && n != ns => {
                return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"))
            }
            _ => obj["metadata"]["namespace"] = json!(ns),
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    if obj["metadata"]["name"]
        .as_str()
        .map(|s| s.is_empty())
        .unwrap_or(true)
    {
        if let Some(gn) = obj["metadata"]["generateName"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            obj["metadata"]["name"] = json!(format!("{gn}{}", name_suffix()));
        }
    }
    validate::check_quantities_decode(rd.kind, &obj)?;
    if rd.name == "secrets" {
        normalize_secret(&mut obj)?;
    }
    obj["kind"] = json!(rd.kind);
    obj["apiVersion"] = json!("v1");
    for k in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    ] {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove(k);
        }
    }
    apply_defaults(api, rd, &mut obj);
    obj["metadata"]["uid"] = json!(uuid());
    obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
    validate::validate(rd.name, rd.kind, &obj)?;
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let k = key(rd.name, if rd.namespaced { ns } else { "" }, &name);
    let stored = api.store.mutate(|g| -> Result<Json, ApiError> {
        namespace_admission(g, rd, ns, &name)?;
        if g.get(&k).is_some() {
            return Err(ApiError::already_exists(rd.name, &name));
        }
        if dry {
            return Ok(obj.clone());
        }
        let stored = g.put(k.clone(), obj.clone());
        let owners = g.managers.entry(k.clone()).or_default();
        patch::record_update(owners, None, &stored, manager);
        Ok(stored)
    })?;
    if !dry {
        after_write(api, rd, None, &stored);
    }
    Ok(stored)
}

/// Side effects after a write, outside the store lock.
fn after_write(api: &Arc<Api>, rd: &ResDef, old: Option<&Json>, new: &Json) {
    match rd.name {
        "pods" => {
            let changed = old
                .map(|o| {
                    o["spec"] != new["spec"]
                        || o["metadata"]["deletionTimestamp"]
                            != new["metadata"]["deletionTimestamp"]
                })
                .unwrap_or(true);
            if changed {
                api.kubelet.pod_changed(new);
            }
        }
        "persistentvolumeclaims" if old.is_none() => provision(api, new),
        _ => {}
    }
}

/// The storage provisioner: bind a new PVC after a delay when a default StorageClass exists.
fn provision(api: &Arc<Api>, pvc: &Json) {
    let ns = pvc["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = pvc["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uid = pvc["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let class = pvc["spec"]["storageClassName"].as_str().map(str::to_string);
    let bindable = api.config.default_storage_class
        && class
            .as_deref()
            .map(|c| c == DEFAULT_STORAGE_CLASS)
            .unwrap_or(false);
    if !bindable {
        let (reason, msg) = match class.as_deref() {
            None | Some("") => (
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set"
                    .to_string(),
            ),
            Some(c) => (
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io \"{c}\" not found"),
            ),
        };
        api.store.mutate(|g| {
            g.record_event(
                pvc,
                "PersistentVolumeClaim",
                "Warning",
                reason,
                &msg,
                "persistentvolume-controller",
            )
        });
        return;
    }
    let store = api.store.clone();
    let delay = api.config.provision_delay;
    let _ = std::thread::Builder::new()
        .name("sim-provisioner".into())
        .spawn(move || {
            std::thread::sleep(delay);
            store.mutate(|g| {
                let k = key("persistentvolumeclaims", &ns, &name);
                let Some(mut pvc) = g.get(&k).cloned() else {
                    return;
                };
                if pvc["metadata"]["uid"].as_str() != Some(uid.as_str())
                    || pvc["status"]["phase"] == "Bound"
                {
                    return;
                }
                let volume = format!("pvc-{uid}");
                pvc["spec"]["volumeName"] = json!(volume);
                pvc["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] = json!("yes");
                pvc["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"] =
                    json!("yes");
                pvc["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] =
                    json!("kodama-sim/hostpath");
                pvc["status"] = json!({
                    "phase": "Bound",
                    "accessModes": pvc["spec"]["accessModes"],
                    "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
                });
                let stored = g.put(k, pvc);
                g.record_event(
                    &stored,
                    "PersistentVolumeClaim",
                    "Normal",
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {volume}"),
                    "kodama-sim/hostpath",
                );
            });
        });
}

/// PUT (or the final step of a patch): replace an object. `status_only` for the status subresource.
#[allow(clippy::too_many_arguments)]
fn replace(
    api: &Arc<Api>,
    rd: &ResDef,
    ns: &str,
    name: &str,
    mut body: Json,
    status_only: bool,
    manager: &str,
    dry: bool,
) -> Result<(u16, Json), ApiError> {
    check_kind(rd, &body)?;
    let body_name = body["metadata"]["name"].as_str().unwrap_or_default();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    validate::check_quantities_decode(rd.kind, &body)?;
    if rd.name == "secrets" {
        normalize_secret(&mut body)?;
    }
    let k = key(rd.name, if rd.namespaced { ns } else { "" }, name);
    let (old, stored) = api.store.mutate(|g| -> Result<(Json, Json), ApiError> {
        let old = g.get(&k).cloned().ok_or_else(|| ApiError::not_found(rd.name, name))?;
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
            if old["metadata"]["resourceVersion"].as_str() != Some(rv) {
                return Err(ApiError::conflict(rd.name, name, "the object has been modified; please apply your changes to the latest version and try again"));
            }
        }
        let mut new = if status_only {
            let mut n = old.clone();
            n["status"] = body["status"].clone();
            n
        } else {
            let mut n = body.clone();
            n["kind"] = json!(rd.kind);
            n["apiVersion"] = json!("v1");
            for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace", "name"] {
                if old["metadata"][f].is_null() {
                    if let Some(m) = n["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                } else {
                    n["metadata"][f] = old["metadata"][f].clone();
                }
            }
            if matches!(rd.name, "pods" | "persistentvolumeclaims" | "namespaces") {
                n["status"] = old["status"].clone();
            }
            n
        };
        match rd.name {
            "pods" if !status_only => {
                validate::validate_pod_update(&old, &new)?;
                if old["spec"] != new["spec"] {
                    new["metadata"]["generation"] = json!(old["metadata"]["generation"].as_i64().unwrap_or(1) + 1);
                }
            }
            "configmaps" | "secrets" if old["immutable"] == json!(true) && (old["data"] != new["data"] || old["binaryData"] != new["binaryData"]) => {
                return Err(validate::invalid_error(rd.kind, name, &[validate::forbidden("data", "field is immutable when `immutable` is set")]));
            }
            "persistentvolumeclaims" if !status_only => {
                let mut a = old["spec"].clone();
                let mut b = new["spec"].clone();
                for s in [&mut a, &mut b] {
                    if let Some(o) = s.as_object_mut() {
                        o.remove("resources");
                        o.remove("volumeName");
                    }
                }
                if a != b {
                    return Err(validate::invalid_error(rd.kind, name, &[validate::forbidden("spec", "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims")]));
                }
            }
            _ => {}
        }
        validate::validate(rd.name, rd.kind, &new)?;
        if dry || new == old {
            return Ok((old.clone(), if dry { new } else { old }));
        }
        let stored = g.put(k.clone(), new);
        let owners = g.managers.entry(k.clone()).or_default();
        patch::record_update(owners, Some(&old), &stored, manager);
        Ok((old, stored))
    })?;
    if !dry && old != stored {
        after_write(api, rd, Some(&old), &stored);
    }
    Ok((200, stored))
}

fn patch_object(
    api: &Arc<Api>,
    req: &Request,
    rd: &ResDef,
    ns: &str,
    name: &str,
    status_only: bool,
    manager: &str,
) -> Result<(u16, Json), ApiError> {
    let ct = req
        .header("content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let force = req.q_bool("force");
    let is_apply = ct == "application/apply-patch+yaml";
    if force && !is_apply {
        return Err(validate::invalid_error(
            "PatchOptions.meta.k8s.io",
            "",
            &[validate::forbidden(
                "force",
                "may not be specified for non-apply patch",
            )],
        ));
    }
    if is_apply {
        let mgr = req
            .q("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                validate::invalid_error(
                    "PatchOptions.meta.k8s.io",
                    "",
                    &[validate::required(
                        "fieldManager",
                        "is required for apply patch",
                    )],
                )
            })?;
        let applied = patch::parse_apply_body(&req.body)?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("apply patch must be an object"));
        }
        field_validation(req, rd, &applied)?;
        let k = key(rd.name, if rd.namespaced { ns } else { "" }, name);
        let existing = api.store.read().get(&k).cloned();
        let mut owners = api
            .store
            .read()
            .managers
            .get(&k)
            .cloned()
            .unwrap_or_default();
        match existing {
            None => {
                let mut obj = patch::apply(None, &applied, mgr, force, &mut owners, rd.name, name)?;
                obj["metadata"]["name"] = json!(name);
                let created = create(api, rd, ns, obj, mgr, dry_run(req))?;
                api.store.mutate(|g| {
                    g.managers.insert(k, owners);
                });
                Ok((201, created))
            }
            Some(cur) => {
                let mut merged =
                    patch::apply(Some(&cur), &applied, mgr, force, &mut owners, rd.name, name)?;
                if applied["metadata"]["resourceVersion"].is_null() {
                    merged["metadata"]["resourceVersion"] =
                        cur["metadata"]["resourceVersion"].clone();
                }
                let r = replace(api, rd, ns, name, merged, status_only, mgr, dry_run(req))?;
                if !dry_run(req) {
                    api.store.mutate(|g| {
                        g.managers.insert(k, owners);
                    });
                }
                Ok(r)
            }
        }
    } else {
        if !matches!(
            ct.as_str(),
            "application/merge-patch+json"
                | "application/strategic-merge-patch+json"
                | "application/json-patch+json"
        ) {
            return Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"), None));
        }
        let p: Json = serde_json::from_slice(&req.body).map_err(|e| {
            ApiError::bad_request(format!("couldn't decode the patch as JSON: {e}"))
        })?;
        // Like the real server, a patch without a resourceVersion precondition is retried when
        // a concurrent write wins the race.
        let mut attempts = 0;
        loop {
            let cur = get(api, rd, ns, name)?;
            let mut new = cur.clone();
            match ct.as_str() {
                "application/merge-patch+json" => patch::merge_patch(&mut new, &p),
                "application/strategic-merge-patch+json" => patch::strategic_merge(&mut new, &p),
                "application/json-patch+json" => json_patch(&mut new, &p)?,
                other => {
                    return Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"), None));
                }
            }
            if p["metadata"]["resourceVersion"].is_null() {
                new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
            }
            let precondition = !p["metadata"]["resourceVersion"].is_null();
            match replace(api, rd, ns, name, new, status_only, manager, dry_run(req)) {
                Err(e) if e.code == 409 && !precondition && attempts < 5 => attempts += 1,
                other => return other,
            }
        }
    }
}

/// RFC 6902 JSON patch: add, remove, replace, test.
fn json_patch(doc: &mut Json, ops: &Json) -> Result<(), ApiError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be a list of operations"))?;
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        let tokens: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        let Some((last, parents)) = tokens.split_last() else {
            return Err(ApiError::bad_request(format!(
                "invalid json patch path {path:?}"
            )));
        };
        let mut cur = &mut *doc;
        for t in parents {
            cur = match cur {
                Json::Object(m) => m.get_mut(t),
                Json::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
                _ => None,
            }
            .ok_or_else(|| ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: path {path:?} not found"), None))?;
        }
        let value = op["value"].clone();
        let bad = || {
            ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: cannot apply {} at {path:?}", op["op"]), None)
        };
        match (op["op"].as_str().unwrap_or_default(), cur) {
            ("add" | "replace", Json::Object(m)) => {
                m.insert(last.clone(), value);
            }
            ("add", Json::Array(a)) => {
                let i = if last == "-" {
                    a.len()
                } else {
                    last.parse().map_err(|_| bad())?
                };
                if i > a.len() {
                    return Err(bad());
                }
                a.insert(i, value);
            }
            ("replace", Json::Array(a)) => {
                let i: usize = last.parse().map_err(|_| bad())?;
                *a.get_mut(i).ok_or_else(bad)? = value;
            }
            ("remove", Json::Object(m)) => {
                m.remove(last).ok_or_else(bad)?;
            }
            ("remove", Json::Array(a)) => {
                let i: usize = last.parse().map_err(|_| bad())?;
                if i >= a.len() {
                    return Err(bad());
                }
                a.remove(i);
            }
            ("test", c) => {
                let got = match c {
                    Json::Object(m) => m.get(last).cloned(),
                    Json::Array(a) => last.parse::<usize>().ok().and_then(|i| a.get(i).cloned()),
                    _ => None,
                };
                if got.as_ref() != Some(&value) {
                    return Err(ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: testing value {path} failed"), None));
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// Options of a DELETE.
#[derive(Debug, Default, Clone)]
pub struct DeleteOpts {
    pub grace: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

fn delete_options(req: &Request) -> Result<DeleteOpts, ApiError> {
    let mut o = DeleteOpts {
        grace: req.q("gracePeriodSeconds").and_then(|v| v.parse().ok()),
        propagation: req.q("propagationPolicy").map(str::to_string),
        dry_run: dry_run(req),
        ..Default::default()
    };
    if !req.body.is_empty() {
        let b: Json = parse_body(req)?;
        if let Some(g) = b["gracePeriodSeconds"].as_i64() {
            o.grace = Some(g);
        }
        if let Some(p) = b["propagationPolicy"].as_str() {
            o.propagation = Some(p.into());
        }
        o.uid = b["preconditions"]["uid"].as_str().map(str::to_string);
        o.resource_version = b["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        if b["dryRun"]
            .as_array()
            .map(|a| a.iter().any(|v| v == "All"))
            .unwrap_or(false)
        {
            o.dry_run = true;
        }
    }
    if let Some(p) = &o.propagation {
        if !["Orphan", "Background", "Foreground"].contains(&p.as_str()) {
            return Err(validate::invalid_error(
                "DeleteOptions.meta.k8s.io",
                "",
                &[validate::not_supported(
                    "propagationPolicy",
                    p,
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            ));
        }
    }
    Ok(o)
}

/// Delete an object (DELETE). Pods terminate gracefully through the kubelet.
pub fn delete(
    api: &Arc<Api>,
    rd: &ResDef,
    ns: &str,
    name: &str,
    o: &DeleteOpts,
) -> Result<(u16, Json), ApiError> {
    let k = key(rd.name, if rd.namespaced { ns } else { "" }, name);
    if rd.name == "namespaces" && ["default", "kube-system", "kube-public"].contains(&name) {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!("namespaces {name:?} is forbidden: this namespace may not be deleted"),
            Some(json!({"name": name, "kind": "namespaces"})),
        ));
    }
    enum Next {
        Done(Json),
        Pod(Json, bool),
        Namespace(Json),
    }
    let next = api.store.mutate(|g| -> Result<Next, ApiError> {
        let cur = g.get(&k).cloned().ok_or_else(|| ApiError::not_found(rd.name, name))?;
        if let Some(uid) = &o.uid {
            let have = cur["metadata"]["uid"].as_str().unwrap_or_default();
            if uid != have {
                return Err(ApiError::conflict(rd.name, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}")));
            }
        }
        if let Some(rv) = &o.resource_version {
            let have = cur["metadata"]["resourceVersion"].as_str().unwrap_or_default();
            if rv != have {
                return Err(ApiError::conflict(rd.name, name, &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}")));
            }
        }
        if o.dry_run {
            return Ok(Next::Done(cur));
        }
        if o.propagation.as_deref() == Some("Orphan") {
            if let Some(uid) = cur["metadata"]["uid"].as_str() {
                orphan_dependents(g, uid);
            }
        }
        match rd.name {
            "pods" => {
                let unscheduled = cur["spec"]["nodeName"].as_str().unwrap_or_default().is_empty();
                let finished = matches!(cur["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
                let mut grace = o.grace.unwrap_or_else(|| cur["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30));
                if unscheduled || finished {
                    grace = 0;
                }
                let mut pod = cur.clone();
                let already = !cur["metadata"]["deletionTimestamp"].is_null();
                if already {
                    let prev = cur["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
                    if grace >= prev && grace != 0 {
                        return Ok(Next::Done(cur));
                    }
                }
                if !already || grace == 0 {
                    pod["metadata"]["deletionTimestamp"] = json!(super::util::rfc3339(now_secs() + grace.max(0)));
                }
                pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace.max(0));
                if grace <= 0 {
                    g.objects.insert(k.clone(), pod);
                    let gone = g.remove(&k).expect("just inserted");
                    g.maybe_finish_namespace(ns);
                    Ok(Next::Pod(gone, true))
                } else {
                    let stored = g.put(k.clone(), pod);
                    Ok(Next::Pod(stored, false))
                }
            }
            "namespaces" => {
                if !cur["metadata"]["deletionTimestamp"].is_null() {
                    return Ok(Next::Done(cur));
                }
                let mut nsobj = cur.clone();
                nsobj["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
                nsobj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                nsobj["status"]["phase"] = json!("Terminating");
                let stored = g.put(k.clone(), nsobj);
                let doomed: Vec<_> = g.objects.keys().filter(|kk| kk.1 == name && kk.0 != "namespaces" && kk.0 != "pods").cloned().collect();
                for kk in doomed {
                    g.remove(&kk);
                }
                Ok(Next::Namespace(stored))
            }
            _ => Ok(Next::Done(g.remove(&k).expect("present"))),
        }
    })?;
    match next {
        Next::Done(obj) => {
            if matches!(rd.name, "configmaps" | "secrets" | "events") {
                let uid = obj["metadata"]["uid"].as_str().unwrap_or_default();
                return Ok((200, status_success(name, "", rd.name, uid)));
            }
            Ok((200, obj))
        }
        Next::Pod(pod, _gone) => {
            api.kubelet.pod_changed(&pod);
            Ok((200, pod))
        }
        Next::Namespace(nsobj) => {
            let pods: Vec<String> = api
                .store
                .read()
                .list("pods", Some(name))
                .into_iter()
                .map(|(kk, _)| kk.2)
                .collect();
            let podrd = resources::core("pods").expect("pods");
            for p in pods {
                let _ = delete(api, podrd, name, &p, &DeleteOpts::default());
            }
            api.store.mutate(|g| g.maybe_finish_namespace(name));
            Ok((200, nsobj))
        }
    }
}

fn delete_collection(
    api: &Arc<Api>,
    rd: &ResDef,
    ns: Option<&str>,
    req: &Request,
) -> Result<Json, ApiError> {
    let sel = selectors(req, rd, None)?;
    let opts = delete_options(req)?;
    let matching: Vec<(super::store::Key, Json)> = api
        .store
        .read()
        .list(rd.name, ns)
        .into_iter()
        .filter(|(_, o)| sel.matches(o))
        .collect();
    let mut items = Vec::new();
    for (k, before) in matching {
        if let Ok((_, o)) = delete(api, rd, &k.1, &k.2, &opts) {
            items.push(list_item(if o["kind"] == "Status" { before } else { o }));
        }
    }
    Ok(
        json!({"kind": format!("{}List", rd.kind), "apiVersion": "v1", "metadata": {"resourceVersion": api.store.read().rv.to_string()}, "items": items}),
    )
}

/// A watch request.
pub struct WatchSpec {
    rd: &'static ResDef,
    ns: Option<String>,
    sel: Selectors,
    /// None = start with ADDED events for the current state.
    from_rv: Option<u64>,
    send_initial_bookmark: bool,
    bookmarks: bool,
    timeout: Duration,
    table: Option<Option<String>>,
    /// Fault injection: answer with an in-band 410 Expired at once.
    force_expired: bool,
}

fn watch_spec(
    req: &Request,
    rd: &'static ResDef,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<WatchSpec, ApiError> {
    let sel = selectors(req, rd, name)?;
    let rv = req
        .q("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    let send_initial = req.q_bool("sendInitialEvents");
    let from_rv = match rv {
        Some(v) if !send_initial => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
        ),
        _ => None,
    };
    let timeout = req
        .q("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(1800);
    let table = if resources::wants_table(req.header("accept")) {
        Some(req.q("includeObject").map(str::to_string))
    } else {
        None
    };
    Ok(WatchSpec {
        rd,
        ns: ns.map(str::to_string),
        sel,
        from_rv,
        send_initial_bookmark: send_initial && req.q_bool("allowWatchBookmarks"),
        bookmarks: req.q_bool("allowWatchBookmarks"),
        timeout: Duration::from_secs(timeout),
        table,
        force_expired: false,
    })
}

fn watch_event(spec: &WatchSpec, ty: &str, obj: &Json) -> Vec<u8> {
    let object = match &spec.table {
        Some(include) => {
            let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
            resources::to_table(
                spec.rd.name,
                std::slice::from_ref(obj),
                include.as_deref(),
                meta,
            )
        }
        None => obj.clone(),
    };
    let mut line = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
    line.push(b'\n');
    line
}

fn bookmark(spec: &WatchSpec, rv: u64, initial_end: bool) -> Vec<u8> {
    let mut obj = json!({"kind": spec.rd.kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv.to_string()}});
    if initial_end {
        obj["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let mut line =
        serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
    line.push(b'\n');
    line
}

fn run_watch(api: &Arc<Api>, spec: &WatchSpec, conn: &mut dyn Write) -> io::Result<()> {
    write_chunked_head(conn, 200, "application/json")?;
    let mut w = ChunkedWriter { inner: conn };
    let deadline = Instant::now() + spec.timeout;
    let in_scope = |k: &super::store::Key| {
        k.0 == spec.rd.name && spec.ns.as_deref().map(|n| k.1 == n).unwrap_or(true)
    };
    let (epoch, mut last_rv, initial) = {
        let g = api.store.read();
        match spec.from_rv {
            _ if spec.force_expired => {
                let rv = spec.from_rv.unwrap_or(g.rv);
                let st = status_failure(
                    410,
                    "Expired",
                    &format!("too old resource version: {rv} ({})", g.rv),
                    None,
                );
                drop(g);
                let mut line =
                    serde_json::to_vec(&json!({"type": "ERROR", "object": st})).unwrap_or_default();
                line.push(b'\n');
                w.write_all(&line)?;
                return w.finish();
            }
            Some(rv) if rv < g.compacted_rv => {
                let st = status_failure(
                    410,
                    "Expired",
                    &format!("too old resource version: {rv} ({})", g.compacted_rv + 1),
                    None,
                );
                drop(g);
                let mut line =
                    serde_json::to_vec(&json!({"type": "ERROR", "object": st})).unwrap_or_default();
                line.push(b'\n');
                w.write_all(&line)?;
                return w.finish();
            }
            Some(rv) => (g.epoch, rv, Vec::new()),
            None => {
                let objs: Vec<Json> = g
                    .list(spec.rd.name, spec.ns.as_deref())
                    .into_iter()
                    .map(|(_, o)| o)
                    .filter(|o| spec.sel.matches(o))
                    .collect();
                (g.epoch, g.rv, objs)
            }
        }
    };
    let mut out = Vec::new();
    for o in &initial {
        out.extend(watch_event(spec, "ADDED", o));
    }
    if spec.send_initial_bookmark {
        out.extend(bookmark(spec, last_rv, true));
    }
    if !out.is_empty() {
        w.write_all(&out)?;
    }
    let interval = api.config.bookmark_interval;
    let mut next_bookmark = Instant::now() + interval;
    loop {
        let mut g = api.store.read();
        let changes: Vec<super::store::Change> = loop {
            if g.epoch != epoch {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "API server restarting",
                ));
            }
            if last_rv < g.compacted_rv {
                break Vec::new();
            }
            let start = g.history.partition_point(|c| c.rv <= last_rv);
            if start < g.history.len() {
                break g.history.iter().skip(start).cloned().collect();
            }
            let now = Instant::now();
            if now >= deadline || (spec.bookmarks && now >= next_bookmark) {
                break Vec::new();
            }
            let wait = deadline.min(if spec.bookmarks {
                next_bookmark
            } else {
                deadline
            }) - now;
            g = api.store.wait(g, wait.min(Duration::from_secs(1)));
        };
        let fell_behind = last_rv < g.compacted_rv;
        let current = g.rv;
        drop(g);
        if fell_behind {
            let st = status_failure(
                410,
                "Expired",
                &format!("too old resource version: {last_rv} ({})", current),
                None,
            );
            let mut line =
                serde_json::to_vec(&json!({"type": "ERROR", "object": st})).unwrap_or_default();
            line.push(b'\n');
            w.write_all(&line)?;
            return w.finish();
        }
        let mut out = Vec::new();
        for c in &changes {
            last_rv = c.rv;
            if !in_scope(&c.key) {
                continue;
            }
            let now_match = spec.sel.matches(&c.object);
            let was_match = c.old.as_ref().map(|o| spec.sel.matches(o)).unwrap_or(false);
            let ty = match c.ty {
                EvType::Added if now_match => Some("ADDED"),
                EvType::Modified if now_match && was_match => Some("MODIFIED"),
                EvType::Modified if now_match => Some("ADDED"),
                EvType::Modified if was_match => Some("DELETED"),
                EvType::Deleted if now_match => Some("DELETED"),
                _ => None,
            };
            if let Some(ty) = ty {
                out.extend(watch_event(spec, ty, &c.object));
            }
        }
        if !out.is_empty() {
            w.write_all(&out)?;
        }
        let now = Instant::now();
        if spec.bookmarks && now >= next_bookmark {
            w.write_all(&bookmark(
                spec,
                last_rv.max(if changes.is_empty() { current } else { last_rv }),
                false,
            ))?;
            next_bookmark = now + interval;
        }
        if now >= deadline {
            return w.finish();
        }
    }
}

/// A plain API delete, used by fault injection ("delete the pod under a running session").
pub fn delete_pod(
    api: &Arc<Api>,
    ns: &str,
    name: &str,
    grace: Option<i64>,
) -> Result<Json, ApiError> {
    let rd = resources::core("pods").expect("pods");
    delete(
        api,
        rd,
        ns,
        name,
        &DeleteOpts {
            grace,
            ..Default::default()
        },
    )
    .map(|(_, o)| o)
}

/// Create an object as the admin would (harness helpers).
pub fn create_as_admin(
    api: &Arc<Api>,
    resource: &str,
    ns: &str,
    obj: Json,
) -> Result<Json, ApiError> {
    let rd = resources::core(resource).ok_or_else(not_found_path)?;
    create(api, rd, ns, obj, "kodama-sim", false)
}

/// `propagationPolicy=Orphan`: dependents lose their owner reference instead of being collected.
fn orphan_dependents(g: &mut Inner, owner_uid: &str) {
    let dependents: Vec<_> = g
        .objects
        .iter()
        .filter(|(_, o)| owned_by(o, owner_uid))
        .map(|(k, _)| k.clone())
        .collect();
    for k in dependents {
        if let Some(mut o) = g.get(&k).cloned() {
            if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
            }
            g.put(k, o);
        }
    }
}

fn owned_by(o: &Json, uid: &str) -> bool {
    o["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
        .unwrap_or(false)
}

/// The garbage collector: when an object is gone, delete (in the background) every object whose
/// `ownerReferences` name its uid. Runs until `stop` is set.
pub fn gc_loop(api: std::sync::Weak<Api>, stop: Arc<std::sync::atomic::AtomicBool>) {
    let mut last_rv = match api.upgrade() {
        Some(a) => a.store.read().rv,
        None => return,
    };
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let Some(api) = api.upgrade() else { return };
        let gone: Vec<String> = {
            let mut g = api.store.read();
            if g.history.back().map(|c| c.rv <= last_rv).unwrap_or(true) {
                g = api.store.wait(g, Duration::from_millis(200));
            }
            let start = g.history.partition_point(|c| c.rv <= last_rv);
            let new: Vec<_> = g.history.iter().skip(start).cloned().collect();
            if let Some(c) = new.last() {
                last_rv = c.rv;
            }
            new.into_iter()
                .filter(|c| c.ty == EvType::Deleted)
                .filter_map(|c| c.object["metadata"]["uid"].as_str().map(str::to_string))
                .collect()
        };
        for uid in gone {
            let dependents: Vec<super::store::Key> = api
                .store
                .read()
                .objects
                .iter()
                .filter(|(_, o)| owned_by(o, &uid))
                .map(|(k, _)| k.clone())
                .collect();
            for k in dependents {
                if let Some(rd) = resources::core(&k.0) {
                    let opts = DeleteOpts {
                        propagation: Some("Background".into()),
                        ..Default::default()
                    };
                    let _ = delete(&api, rd, &k.1, &k.2, &opts);
                }
            }
        }
    }
}
