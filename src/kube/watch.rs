//! Watches: list, then newline-delimited watch events over a chunked response, tracking the
//! resourceVersion (bookmarks included), reconnecting when the stream ends and relisting on 410 Gone
//! (HTTP 410 or an in-band `ERROR` event), all on the calling thread and bounded by a deadline.
//!
//! On top: [`wait_for_pod`], which waits for a pod to be Ready and fails fast (with the pod's Warning
//! events and container waiting reasons) when it cannot start.
//!
//! May import: error, kube::{client, request, resource, status}.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::kube::client::Client;
use crate::kube::request::{self, ListOptions, WatchOptions};
use crate::kube::resource::{Resource, EVENTS, PODS};
use crate::kube::status::api_error_from_value;

/// Longest silence on a watch stream before we reconnect (the watch cache sends a bookmark about once
/// a minute when asked).
pub const WATCH_IDLE: Duration = Duration::from_secs(90);
/// Longest server-side lifetime we ask for per watch request.
pub const WATCH_MAX_SECONDS: u64 = 300;

/// Watch event types, plus `Synced` which we emit after each (re)list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    /// Emitted after the initial list and after every relist; the object is the array of listed items.
    Synced,
}

/// One watch event.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub kind: EventType,
    pub object: Value,
}

/// What to watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchTarget {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
}

/// One parsed line of a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Event(WatchEvent),
    /// An `ERROR` event (its Status).
    Error(crate::error::ApiError),
    /// A type we don't know; ignored.
    Unknown,
}

/// Parses one watch line (`{"type":"ADDED","object":{...}}`).
pub fn parse_line(line: &[u8]) -> Result<Line> {
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| Error::msg(format!("the API server sent an invalid watch event: {e}")))?;
    let object = v.get("object").cloned().unwrap_or(Value::Null);
    let kind = match v.get("type").and_then(Value::as_str).unwrap_or("") {
        "ADDED" => EventType::Added,
        "MODIFIED" => EventType::Modified,
        "DELETED" => EventType::Deleted,
        "BOOKMARK" => EventType::Bookmark,
        "ERROR" => {
            let api = api_error_from_value(&object).unwrap_or_else(|| crate::error::ApiError {
                code: 500,
                message: format!("watch error: {object}"),
                ..Default::default()
            });
            return Ok(Line::Error(api));
        }
        _ => return Ok(Line::Unknown),
    };
    Ok(Line::Event(WatchEvent { kind, object }))
}

fn resource_version(v: &Value) -> Option<String> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// Lists, then watches `res` in `ns`, calling `on_event` for every listed item (as `Added`), a
/// `Synced` marker, and every watch event, until it returns `Some(value)`. Returns `Ok(None)` when the
/// deadline passes first. Relists on 410 Gone; reconnects when a stream ends or goes silent.
pub fn watch_until<T>(
    client: &Client,
    res: &Resource,
    ns: Option<&str>,
    target: &WatchTarget,
    deadline: Instant,
    on_event: &mut dyn FnMut(&WatchEvent) -> Result<Option<T>>,
) -> Result<Option<T>> {
    let mut rv: Option<String> = None;
    let mut quiet_failures: u32 = 0;
    // Relists since the last delivered watch event; a server that keeps answering 410 must not be
    // hammered.
    let mut relists: u32 = 0;
    loop {
        if Instant::now() >= deadline {
            return Ok(None);
        }
        if rv.is_none() {
            if relists > 0 {
                let wait = Duration::from_millis(100u64 << relists.min(6))
                    .min(deadline.saturating_duration_since(Instant::now()));
                std::thread::sleep(wait);
            }
            relists += 1;
            let list = client.list(
                res,
                ns,
                &ListOptions {
                    label_selector: target.label_selector.clone(),
                    field_selector: target.field_selector.clone(),
                    ..ListOptions::default()
                },
            )?;
            let items = list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for item in &items {
                let ev = WatchEvent {
                    kind: EventType::Added,
                    object: item.clone(),
                };
                if let Some(t) = on_event(&ev)? {
                    return Ok(Some(t));
                }
            }
            let ev = WatchEvent {
                kind: EventType::Synced,
                object: Value::Array(items),
            };
            if let Some(t) = on_event(&ev)? {
                return Ok(Some(t));
            }
            rv = Some(resource_version(&list).unwrap_or_else(|| "0".to_string()));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(None);
        }
        let secs = remaining.as_secs().clamp(1, WATCH_MAX_SECONDS);
        let idle = WATCH_IDLE.min(remaining + Duration::from_millis(500));
        let req = request::watch(
            res,
            ns,
            &WatchOptions {
                label_selector: target.label_selector.clone(),
                field_selector: target.field_selector.clone(),
                resource_version: rv.clone(),
                timeout_seconds: Some(secs),
                allow_bookmarks: true,
            },
            Some(idle),
        );
        let started = Instant::now();
        let body = match client.stream(&req) {
            Ok(b) => b,
            Err(e) if e.api().is_some_and(|a| a.is_gone()) => {
                rv = None;
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::new(body);
        let mut got_any = false;
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => break, // idle timeout or a broken stream: reconnect from `rv`
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            got_any = true;
            match parse_line(&line)? {
                Line::Unknown => {}
                Line::Error(api) if api.is_gone() => {
                    rv = None;
                    break;
                }
                // Transient server trouble: reconnect from `rv` (backing off below).
                Line::Error(api) if api.code == 429 || api.code >= 500 => {
                    got_any = false;
                    break;
                }
                Line::Error(api) => {
                    return Err(Error::Api(api).context(req.op.describe()));
                }
                Line::Event(ev) => {
                    if let Some(v) = resource_version(&ev.object) {
                        rv = Some(v);
                    }
                    if ev.kind == EventType::Bookmark {
                        continue;
                    }
                    relists = 0;
                    if let Some(t) = on_event(&ev)? {
                        return Ok(Some(t));
                    }
                }
            }
        }
        // The stream ended. Back off only when streams keep ending at once without events.
        if got_any || started.elapsed() >= Duration::from_secs(2) {
            quiet_failures = 0;
        } else {
            quiet_failures += 1;
            let wait = Duration::from_millis(100u64 << quiet_failures.min(6))
                .min(deadline.saturating_duration_since(Instant::now()));
            std::thread::sleep(wait);
        }
    }
}

/// A pod's progress towards Ready, for a progress line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodProgress {
    /// `Pending`, `Running`, ...
    pub phase: String,
    /// `PodScheduled` condition: Some(true/false), None when not reported yet.
    pub scheduled: Option<bool>,
    /// The first container waiting reason (`ContainerCreating`, `ImagePullBackOff`, ...).
    pub waiting_reason: Option<String>,
    /// Its message, or the scheduling message.
    pub message: Option<String>,
    pub ready: bool,
}

/// What one pod state means for the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodVerdict {
    Ready,
    Waiting,
    /// Cannot become ready: (reason, message).
    Failed(String, String),
}

const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "ErrImageNeverPull",
];

fn container_statuses(pod: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for key in ["initContainerStatuses", "containerStatuses"] {
        if let Some(a) = pod
            .pointer(&format!("/status/{key}"))
            .and_then(Value::as_array)
        {
            out.extend(a.iter());
        }
    }
    out
}

fn condition<'a>(pod: &'a Value, t: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(t))
}

fn s(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// Reads the progress fields of a pod.
pub fn pod_progress(pod: &Value) -> PodProgress {
    let sched = condition(pod, "PodScheduled");
    let scheduled = sched
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        .map(|s| s == "True");
    let mut waiting_reason = None;
    let mut message = None;
    for c in container_statuses(pod) {
        if let Some(w) = c.pointer("/state/waiting") {
            waiting_reason = s(w.get("reason"));
            message = s(w.get("message"));
            if waiting_reason.is_some() {
                break;
            }
        }
    }
    if message.is_none() && scheduled == Some(false) {
        message = sched.and_then(|c| s(c.get("message")));
    }
    let ready = condition(pod, "Ready")
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True");
    PodProgress {
        phase: s(pod.pointer("/status/phase")).unwrap_or_else(|| "Pending".into()),
        scheduled,
        waiting_reason,
        message,
        ready,
    }
}

/// Decides whether a pod is ready, still coming up, or cannot start.
pub fn pod_verdict(pod: &Value) -> PodVerdict {
    let p = pod_progress(pod);
    match p.phase.as_str() {
        "Failed" => {
            let reason = s(pod.pointer("/status/reason")).unwrap_or_else(|| "Failed".into());
            let msg = s(pod.pointer("/status/message")).unwrap_or_else(|| terminated_summary(pod));
            return PodVerdict::Failed(reason, msg);
        }
        "Succeeded" => {
            return PodVerdict::Failed(
                "Completed".into(),
                "the pod's containers exited before it became ready".into(),
            )
        }
        _ => {}
    }
    if p.phase == "Running" && p.ready {
        return PodVerdict::Ready;
    }
    for c in container_statuses(pod) {
        if let Some(w) = c.pointer("/state/waiting") {
            if let Some(r) = s(w.get("reason")) {
                if FATAL_WAITING.contains(&r.as_str()) {
                    let name = s(c.get("name")).unwrap_or_default();
                    let msg = s(w.get("message")).unwrap_or_default();
                    let msg = if msg.is_empty() {
                        format!("container {name:?}")
                    } else {
                        format!("container {name:?}: {msg}")
                    };
                    return PodVerdict::Failed(r, msg);
                }
            }
        }
    }
    if let Some(c) = condition(pod, "PodScheduled") {
        if c.get("status").and_then(Value::as_str) == Some("False")
            && c.get("reason").and_then(Value::as_str) == Some("Unschedulable")
        {
            return PodVerdict::Failed(
                "Unschedulable".into(),
                s(c.get("message")).unwrap_or_else(|| "no node can run the pod".into()),
            );
        }
    }
    PodVerdict::Waiting
}

fn terminated_summary(pod: &Value) -> String {
    let mut parts = Vec::new();
    for c in container_statuses(pod) {
        if let Some(t) = c.pointer("/state/terminated") {
            let name = s(c.get("name")).unwrap_or_default();
            let code = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
            let reason = s(t.get("reason")).unwrap_or_default();
            parts.push(
                format!("container {name:?} exited with code {code} {reason}")
                    .trim()
                    .to_string(),
            );
        }
    }
    if parts.is_empty() {
        "the pod failed".into()
    } else {
        parts.join("; ")
    }
}

fn hint_for(reason: &str, ns: &str, name: &str) -> String {
    let describe = format!("`kubectl describe pod {name} -n {ns}`");
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => format!(
            "check the image name and tag, and imagePullSecrets for a private registry; details: {describe}"
        ),
        "CreateContainerConfigError" | "CreateContainerError" => format!(
            "a ConfigMap, Secret or key the pod refers to is missing or invalid; details: {describe}"
        ),
        "CrashLoopBackOff" => format!(
            "the container keeps exiting: see `kubectl logs {name} -n {ns} --previous` and {describe}"
        ),
        "Unschedulable" => format!(
            "no node can run the pod: check resource requests, node selectors, tolerations and PVC binding; details: {describe}"
        ),
        "Deleted" => "something deleted the pod while we waited; run the command again".into(),
        "Missing" => format!("check the pod name and namespace: `kubectl get pods -n {ns}`"),
        "Timeout" => format!("the pod is still not ready; see {describe}, or wait longer"),
        _ => format!("see {describe} and `kubectl logs {name} -n {ns}`"),
    }
}

/// Recent Warning events of the pod, newest last, formatted as `Reason: message (xN)`.
pub fn pod_warning_events(client: &Client, ns: &str, name: &str, uid: Option<&str>) -> Vec<String> {
    let mut sel = format!("involvedObject.kind=Pod,involvedObject.name={name}");
    if let Some(u) = uid {
        sel.push_str(&format!(",involvedObject.uid={u}"));
    }
    let query = |sel: String| {
        client.list(
            &EVENTS,
            Some(ns),
            &ListOptions {
                field_selector: Some(sel),
                ..ListOptions::default()
            },
        )
    };
    // Some servers do not support every field label; fall back to the name alone.
    let list = match query(sel) {
        Ok(l) => l,
        Err(_) if uid.is_some() => {
            match query(format!(
                "involvedObject.kind=Pod,involvedObject.name={name}"
            )) {
                Ok(l) => l,
                Err(_) => return Vec::new(),
            }
        }
        Err(_) => return Vec::new(),
    };
    let mut evs: Vec<(String, String)> = list
        .get("items")
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or(&[])
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("Warning"))
        .map(|e| {
            let when = s(e.get("lastTimestamp"))
                .or_else(|| s(e.get("eventTime")))
                .or_else(|| s(e.pointer("/metadata/creationTimestamp")))
                .unwrap_or_default();
            let count = e.get("count").and_then(Value::as_u64).unwrap_or(1);
            let mut text = format!(
                "{}: {}",
                s(e.get("reason")).unwrap_or_default(),
                s(e.get("message")).unwrap_or_default()
            );
            if count > 1 {
                text.push_str(&format!(" (x{count})"));
            }
            (when, text)
        })
        .collect();
    evs.sort();
    let n = evs.len();
    evs.into_iter()
        .skip(n.saturating_sub(5))
        .map(|(_, t)| t)
        .collect()
}

fn failure(
    client: &Client,
    ns: &str,
    name: &str,
    last: Option<&Value>,
    reason: &str,
    message: &str,
    hint_reason: &str,
) -> Error {
    let uid = last
        .and_then(|p| p.pointer("/metadata/uid"))
        .and_then(Value::as_str);
    let mut lines = Vec::new();
    if let Some(pod) = last {
        for c in container_statuses(pod) {
            if let Some(w) = c.pointer("/state/waiting") {
                let cname = s(c.get("name")).unwrap_or_default();
                let r = s(w.get("reason")).unwrap_or_default();
                let m = s(w.get("message")).unwrap_or_default();
                lines.push(
                    format!("container {cname:?} waiting: {r} {m}")
                        .trim_end()
                        .to_string(),
                );
            }
        }
    }
    for e in pod_warning_events(client, ns, name, uid) {
        lines.push(format!("event {e}"));
    }
    let mut text = format!("pod {name:?} in namespace {ns:?} {reason}");
    if !message.is_empty() {
        text.push_str(&format!(": {message}"));
    }
    for l in lines {
        text.push_str("\n  - ");
        text.push_str(&l);
    }
    Error::with_hint(text, hint_for(hint_reason, ns, name))
}

/// Waits until the pod is Ready and returns it. Fails fast on image pull errors, config errors,
/// crash loops, unschedulable pods, a Failed phase or deletion, and at the deadline; the error lists
/// the containers' waiting reasons and the pod's recent Warning events. `on_progress` is called
/// whenever the progress changes.
pub fn wait_for_pod(
    client: &Client,
    ns: &str,
    name: &str,
    deadline: Instant,
    on_progress: &mut dyn FnMut(&PodProgress),
) -> Result<Value> {
    let mut last: Option<Value> = None;
    let mut last_progress: Option<PodProgress> = None;
    let target = WatchTarget {
        field_selector: Some(format!("metadata.name={name}")),
        label_selector: None,
    };
    let outcome = watch_until(
        client,
        &PODS,
        Some(ns),
        &target,
        deadline,
        &mut |ev| match ev.kind {
            EventType::Synced => {
                let empty = ev.object.as_array().is_none_or(|a| a.is_empty());
                if empty {
                    let (what, reason) = if last.is_some() {
                        ("is gone", "Deleted")
                    } else {
                        ("does not exist", "Missing")
                    };
                    return Ok(Some(Err((
                        what.to_string(),
                        reason.to_string(),
                        String::new(),
                    ))));
                }
                Ok(None)
            }
            EventType::Deleted => Ok(Some(Err((
                "was deleted".to_string(),
                "Deleted".to_string(),
                String::new(),
            )))),
            EventType::Bookmark => Ok(None),
            EventType::Added | EventType::Modified => {
                if ev.object.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
                    return Ok(None);
                }
                let p = pod_progress(&ev.object);
                if last_progress.as_ref() != Some(&p) {
                    on_progress(&p);
                    last_progress = Some(p);
                }
                last = Some(ev.object.clone());
                match pod_verdict(&ev.object) {
                    PodVerdict::Ready => Ok(Some(Ok(ev.object.clone()))),
                    PodVerdict::Waiting => Ok(None),
                    PodVerdict::Failed(r, m) => Ok(Some(Err((format!("cannot start: {r}"), r, m)))),
                }
            }
        },
    )?;
    match outcome {
        Some(Ok(pod)) => Ok(pod),
        Some(Err((what, reason, msg))) => Err(failure(
            client,
            ns,
            name,
            last.as_ref(),
            &what,
            &msg,
            &reason,
        )),
        None => {
            let p = last.as_ref().map(pod_progress).unwrap_or_default();
            let mut msg = format!(
                "phase {}",
                if p.phase.is_empty() {
                    "unknown"
                } else {
                    &p.phase
                }
            );
            if let Some(r) = &p.waiting_reason {
                msg.push_str(&format!(", waiting: {r}"));
            }
            Err(failure(
                client,
                ns,
                name,
                last.as_ref(),
                "did not become ready before the deadline",
                &msg,
                "Timeout",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_watch_lines() {
        let l = parse_line(
            br#"{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"5"}}}"#,
        )
        .expect("ok");
        match l {
            Line::Event(e) => {
                assert_eq!(e.kind, EventType::Added);
                assert_eq!(resource_version(&e.object).as_deref(), Some("5"));
            }
            other => panic!("{other:?}"),
        }
        let l = parse_line(br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 1 (9)","reason":"Expired","code":410}}"#)
            .expect("ok");
        assert!(matches!(l, Line::Error(a) if a.is_gone()));
        assert!(matches!(
            parse_line(br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"12"}}}"#),
            Ok(Line::Event(WatchEvent {
                kind: EventType::Bookmark,
                ..
            }))
        ));
        assert!(parse_line(b"{not json").is_err());
    }

    fn pod(phase: &str, conditions: Value, statuses: Value) -> Value {
        json!({"metadata":{"name":"p"},"status":{"phase":phase,"conditions":conditions,"containerStatuses":statuses}})
    }

    #[test]
    fn pod_verdict_table() {
        let ready =
            json!([{"type":"PodScheduled","status":"True"},{"type":"Ready","status":"True"}]);
        let waiting =
            |r: &str| json!([{"name":"main","state":{"waiting":{"reason":r,"message":"m"}}}]);
        let cases: Vec<(Value, PodVerdict)> = vec![
            (pod("Running", ready.clone(), json!([])), PodVerdict::Ready),
            (
                pod("Pending", json!([]), waiting("ContainerCreating")),
                PodVerdict::Waiting,
            ),
            (
                pod("Pending", json!([]), waiting("ImagePullBackOff")),
                PodVerdict::Failed("ImagePullBackOff".into(), "container \"main\": m".into()),
            ),
            (
                pod("Pending", json!([]), waiting("CreateContainerConfigError")),
                PodVerdict::Failed(
                    "CreateContainerConfigError".into(),
                    "container \"main\": m".into(),
                ),
            ),
            (
                pod(
                    "Running",
                    json!([{"type":"Ready","status":"False"}]),
                    waiting("CrashLoopBackOff"),
                ),
                PodVerdict::Failed("CrashLoopBackOff".into(), "container \"main\": m".into()),
            ),
            (
                pod(
                    "Pending",
                    json!([{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"0/3 nodes are available"}]),
                    json!([]),
                ),
                PodVerdict::Failed("Unschedulable".into(), "0/3 nodes are available".into()),
            ),
            (
                pod(
                    "Failed",
                    json!([]),
                    json!([{"name":"main","state":{"terminated":{"exitCode":3,"reason":"Error"}}}]),
                ),
                PodVerdict::Failed(
                    "Failed".into(),
                    "container \"main\" exited with code 3 Error".into(),
                ),
            ),
            (
                pod(
                    "Running",
                    json!([{"type":"Ready","status":"False"}]),
                    json!([]),
                ),
                PodVerdict::Waiting,
            ),
        ];
        for (p, want) in cases {
            assert_eq!(pod_verdict(&p), want, "{p}");
        }
    }

    #[test]
    fn pod_progress_fields() {
        let p = pod(
            "Pending",
            json!([{"type":"PodScheduled","status":"False","reason":"Unschedulable","message":"no nodes"}]),
            json!([]),
        );
        let pr = pod_progress(&p);
        assert_eq!(pr.scheduled, Some(false));
        assert_eq!(pr.message.as_deref(), Some("no nodes"));
        assert!(!pr.ready);
    }
}
