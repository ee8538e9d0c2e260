//! `list`/`ls`: sessions from the cluster (one pod list and one PVC list per namespace, or one of
//! each cluster-wide for -A; never a request per session) merged with local session files; table,
//! wide, json and yaml output. Also the status reconciliation shared with `status`.
//!
//! May import: session::{ctx, resolve, seams}, config, kube, manifest, term, error.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde_json::{json, Value};

use super::ctx::Ctx;
use super::seams;
use crate::cli::{ListArgs, ListFormat};
use crate::config::store::{SessionRecord, SessionStatus};
use crate::config::{self, Layer};
use crate::error::{Error, Result};
use crate::kube::request::ListOptions;
use crate::kube::resource::{PERSISTENT_VOLUME_CLAIMS, PODS};
use crate::kube::Client;
use crate::manifest::{annotations, names};

/// The label every kodama object carries.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=kodama";
/// The session label.
pub const SESSION_LABEL: &str = "kodama.dev/session";

/// One session as `list` sees it.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub name: String,
    pub namespace: String,
    pub record: Option<SessionRecord>,
    pub pod: Option<Value>,
    pub pvc: Option<Value>,
    /// The cluster could not be asked (status `Unknown`).
    pub unreachable: bool,
}

impl Row {
    /// The reconciled status (see [`reconcile`]).
    pub fn status(&self) -> String {
        if self.unreachable {
            return "Unknown".into();
        }
        reconcile(self.pod.as_ref(), self.pvc.as_ref(), self.record.as_ref())
    }
    fn annotation(&self, key: &str) -> Option<String> {
        for o in [self.pod.as_ref(), self.pvc.as_ref()].into_iter().flatten() {
            if let Some(v) = o
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(key))
                .and_then(Value::as_str)
            {
                return Some(v.to_string());
            }
        }
        None
    }
    pub fn branch(&self) -> Option<String> {
        self.record
            .as_ref()
            .and_then(|r| r.branch.clone())
            .or_else(|| self.annotation(annotations::BRANCH))
    }
    pub fn image(&self) -> Option<String> {
        self.pod
            .as_ref()
            .and_then(|p| p.pointer("/spec/containers/0/image"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| self.record.as_ref().map(|r| r.image.clone()))
            .or_else(|| self.annotation(annotations::IMAGE))
            .filter(|s| !s.is_empty())
    }
    pub fn node(&self) -> Option<String> {
        self.pod
            .as_ref()
            .and_then(|p| p.pointer("/spec/nodeName"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }
    /// Creation time: the record, else the annotation, else the oldest object.
    pub fn created(&self) -> Option<SystemTime> {
        let from_rec = self
            .record
            .as_ref()
            .and_then(|r| config::time::parse_rfc3339(&r.created_at));
        from_rec
            .or_else(|| {
                self.annotation(annotations::CREATED_AT)
                    .and_then(|s| config::time::parse_rfc3339(&s))
            })
            .or_else(|| {
                [self.pvc.as_ref(), self.pod.as_ref()]
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o.pointer("/metadata/creationTimestamp"))
                    .filter_map(Value::as_str)
                    .filter_map(config::time::parse_rfc3339)
                    .min()
            })
    }
    pub fn agent(&self) -> String {
        self.record
            .as_ref()
            .and_then(|r| r.agent.as_ref())
            .and_then(|a| a.last_run_status.clone())
            .unwrap_or_else(|| "-".into())
    }
}

/// The status shown for a session:
/// - a pod being deleted → `Terminating`;
/// - a Running pod → `Running` when Ready, else its container's waiting reason or `NotReady`;
/// - a Pending pod → its waiting reason (`ImagePullBackOff`, …), `Unschedulable`, or `Pending`;
/// - `Failed`/`Succeeded` pods → `Failed`/`Completed`;
/// - no pod: `PodDeleted` when the local record says it should be running (deleted behind
///   kodama's back), `Stopped` when the workspace volume is still there, else `NotFound`.
pub fn reconcile(
    pod: Option<&Value>,
    pvc: Option<&Value>,
    record: Option<&SessionRecord>,
) -> String {
    if let Some(p) = pod {
        if p.pointer("/metadata/deletionTimestamp").is_some() {
            return "Terminating".into();
        }
        let phase = p
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending");
        let waiting = p
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str))
            })
            .map(str::to_string);
        let ready = p
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            });
        let unschedulable = p
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("PodScheduled")
                        && c.get("reason").and_then(Value::as_str) == Some("Unschedulable")
                })
            });
        return match phase {
            "Running" if ready => "Running".into(),
            "Running" => waiting.unwrap_or_else(|| "NotReady".into()),
            "Pending" if unschedulable => "Unschedulable".into(),
            "Pending" => match waiting.as_deref() {
                Some("ContainerCreating") | Some("PodInitializing") | None => "Pending".into(),
                Some(w) => w.to_string(),
            },
            "Succeeded" => "Completed".into(),
            "Failed" => "Failed".into(),
            other => other.to_string(),
        };
    }
    let recorded = record.map(|r| r.status);
    if matches!(
        recorded,
        Some(SessionStatus::Running) | Some(SessionStatus::Starting)
    ) && pvc.is_some()
    {
        return "PodDeleted".into();
    }
    if pvc.is_some() {
        return "Stopped".into();
    }
    "NotFound".into()
}

/// `list`.
pub fn list(ctx: &Ctx, args: &ListArgs) -> Result<()> {
    let rows = collect(ctx, args.all_namespaces)?;
    let out = match args.output {
        ListFormat::Table => table(ctx, &rows, false),
        ListFormat::Wide => table(ctx, &rows, true),
        ListFormat::Json => {
            let v = Value::Array(rows.iter().map(|r| to_schema(ctx, r)).collect());
            let mut s = serde_json::to_string_pretty(&v)
                .map_err(|e| Error::msg(format!("rendering JSON: {e}")))?;
            s.push('\n');
            s
        }
        ListFormat::Yaml => {
            let v = Value::Array(rows.iter().map(|r| to_schema(ctx, r)).collect());
            yaml_serde::to_string(&v).map_err(|e| Error::msg(format!("rendering YAML: {e}")))?
        }
    };
    super::print(&out)
}

/// Gather every session: local records plus what the cluster has.
pub fn collect(ctx: &Ctx, all: bool) -> Result<Vec<Row>> {
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    let mut local_ns = BTreeSet::new();
    if let Ok(store) = ctx.store() {
        for l in store.list_all().unwrap_or_default() {
            match l.record {
                Ok(r) => {
                    local_ns.insert(r.namespace.clone());
                    rows.insert(
                        (r.namespace.clone(), r.name.clone()),
                        Row {
                            name: r.name.clone(),
                            namespace: r.namespace.clone(),
                            record: Some(r),
                            ..Row::default()
                        },
                    );
                }
                Err(e) => eprintln!("warning: skipping {}: {e}", l.path.display()),
            }
        }
    }
    let client = ctx.client()?;
    if all {
        let (pods, pvcs) = list_ns(client, None).map_err(|e| {
            if e.api().is_some_and(|a| a.is_forbidden()) {
                let ns = client.namespace().to_string();
                Error::with_hint(
                    "you may not list sessions in all namespaces (listing pods cluster-wide is forbidden for your user)",
                    format!("drop -A to list namespace \"{ns}\", or pass -n NAMESPACE for another namespace you can use"),
                )
            } else {
                e
            }
        })?;
        merge(&mut rows, pods, pvcs);
    } else {
        let current = match ctx.namespace_flag() {
            Some(n) => n.to_string(),
            None => {
                let loaded =
                    config::load(ctx.config_dir().ok().as_deref(), None, &Layer::default())?;
                loaded.settings.namespace_or(Some(client.namespace()))
            }
        };
        // Without -n, also the namespaces of local sessions (still one request pair each).
        let mut nss = BTreeSet::new();
        nss.insert(current.clone());
        if ctx.namespace_flag().is_none() {
            nss.extend(local_ns);
        } else {
            rows.retain(|(ns, _), _| *ns == current);
        }
        for ns in nss {
            match list_ns(client, Some(&ns)) {
                Ok((pods, pvcs)) => merge(&mut rows, pods, pvcs),
                // The cluster cannot be reached at all: still show this machine's sessions.
                Err(e) if matches!(e.root(), Error::Transport { .. }) && !rows.is_empty() => {
                    eprintln!("warning: cannot reach the cluster ({e}); showing local sessions with status Unknown");
                    for r in rows.values_mut() {
                        r.unreachable = true;
                    }
                    break;
                }
                Err(e) if ns == current => return Err(e),
                Err(e) => eprintln!("warning: namespace \"{ns}\": {e}"),
            }
        }
    }
    Ok(rows.into_values().collect())
}

/// One pod list and one PVC list (by the managed-by label) in `ns`, or cluster-wide.
fn list_ns(client: &Client, ns: Option<&str>) -> Result<(Vec<Value>, Vec<Value>)> {
    let opts = ListOptions {
        label_selector: Some(MANAGED_SELECTOR.to_string()),
        ..ListOptions::default()
    };
    let items = |v: Value| -> Vec<Value> {
        v.get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let pods = items(client.list(&PODS, ns, &opts)?);
    let pvc_opts = ListOptions {
        label_selector: Some(format!(
            "{MANAGED_SELECTOR},app.kubernetes.io/component=workspace"
        )),
        ..ListOptions::default()
    };
    let pvcs = items(client.list(&PERSISTENT_VOLUME_CLAIMS, ns, &pvc_opts)?);
    Ok((pods, pvcs))
}

fn merge(rows: &mut BTreeMap<(String, String), Row>, pods: Vec<Value>, pvcs: Vec<Value>) {
    let key = |o: &Value| -> Option<(String, String)> {
        let ns = o.pointer("/metadata/namespace")?.as_str()?.to_string();
        let name = o
            .pointer("/metadata/labels")
            .and_then(|l| l.get(SESSION_LABEL))
            .and_then(Value::as_str)?
            .to_string();
        Some((ns, name))
    };
    for (is_pod, list) in [(true, pods), (false, pvcs)] {
        for o in list {
            let Some(k) = key(&o) else { continue };
            // Only the session's own pod/PVC (not some other object with the label).
            let expected = if is_pod {
                names::pod(&k.1)
            } else {
                names::workspace_pvc(&k.1)
            };
            if o.pointer("/metadata/name").and_then(Value::as_str) != Some(expected.as_str()) {
                continue;
            }
            let row = rows.entry(k.clone()).or_insert_with(|| Row {
                name: k.1.clone(),
                namespace: k.0.clone(),
                ..Row::default()
            });
            if is_pod {
                row.pod = Some(o);
            } else {
                row.pvc = Some(o);
            }
        }
    }
}

fn sync_column(ctx: &Ctx, r: &Row) -> String {
    match &r.record {
        Some(rec) if rec.sync.enabled => seams::sync_state(ctx, &r.name),
        Some(_) => "Inactive".into(),
        None => "-".into(),
    }
}

fn age(r: &Row) -> String {
    r.created()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(config::time::format_age)
        .unwrap_or_else(|| "-".into())
}

fn table(ctx: &Ctx, rows: &[Row], wide: bool) -> String {
    if rows.is_empty() {
        eprintln!("no sessions found (start one with `kubectl kodama start NAME`; `list -A` looks in every namespace)");
        return String::new();
    }
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["NAME", "STATUS", "NAMESPACE", "SYNC", "AGENT", "AGE"];
    if wide {
        head.extend(["POD", "IMAGE", "BRANCH", "NODE"]);
    }
    lines.push(head.iter().map(|s| s.to_string()).collect());
    for r in rows {
        let mut l = vec![
            r.name.clone(),
            r.status(),
            r.namespace.clone(),
            sync_column(ctx, r),
            r.agent(),
            age(r),
        ];
        if wide {
            l.push(
                r.pod
                    .as_ref()
                    .map(|_| names::pod(&r.name))
                    .unwrap_or_else(|| "-".into()),
            );
            l.push(r.image().unwrap_or_else(|| "-".into()));
            l.push(r.branch().unwrap_or_else(|| "-".into()));
            l.push(r.node().unwrap_or_else(|| "-".into()));
        }
        lines.push(
            l.into_iter()
                .map(|s| crate::term::sanitize_for_tty(&s))
                .collect(),
        );
    }
    let n = lines[0].len();
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let mut s = String::new();
        for (i, c) in l.iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    }
    out
}

/// A row in the session schema (the session file's fields), with the reconciled status.
pub fn to_schema(ctx: &Ctx, r: &Row) -> Value {
    let rec = r.record.clone().unwrap_or_else(|| {
        let mut rec = SessionRecord::new(&r.name, &r.namespace);
        rec.repo = r.annotation(annotations::REPO);
        rec.branch = r.branch();
        rec.base_branch = r.annotation(annotations::BASE_BRANCH);
        rec.commit_hash = r.annotation(annotations::COMMIT);
        rec.image = r.image().unwrap_or_default();
        rec.created_at = r
            .created()
            .map(config::time::format_rfc3339)
            .unwrap_or_default();
        rec.updated_at = rec.created_at.clone();
        rec
    });
    let mut v = serde_json::to_value(&rec).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.remove("spec");
        o.insert("status".into(), json!(r.status()));
        o.insert("local".into(), json!(r.record.is_some()));
        o.insert("syncStatus".into(), json!(sync_column(ctx, r)));
        if let Some(n) = r.node() {
            o.insert("node".into(), json!(n));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, ready: bool, waiting: Option<&str>) -> Value {
        let mut p = json!({
            "metadata": {"name": "kodama-x"},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
            }
        });
        if let Some(w) = waiting {
            p["status"]["containerStatuses"] = json!([{"state": {"waiting": {"reason": w}}}]);
        }
        p
    }

    #[test]
    fn reconcile_table() {
        let pvc = json!({"metadata": {"name": "kodama-workspace-x"}});
        let mut running = SessionRecord::new("x", "default");
        running.status = SessionStatus::Running;
        let mut stopped = running.clone();
        stopped.status = SessionStatus::Stopped;
        type Case<'a> = (
            Option<Value>,
            Option<&'a Value>,
            Option<&'a SessionRecord>,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                Some(pod("Running", true, None)),
                Some(&pvc),
                Some(&running),
                "Running",
            ),
            (
                Some(pod("Running", false, Some("CrashLoopBackOff"))),
                None,
                None,
                "CrashLoopBackOff",
            ),
            (Some(pod("Running", false, None)), None, None, "NotReady"),
            (
                Some(pod("Pending", false, Some("ImagePullBackOff"))),
                None,
                None,
                "ImagePullBackOff",
            ),
            (
                Some(pod("Pending", false, Some("ContainerCreating"))),
                None,
                None,
                "Pending",
            ),
            (Some(pod("Failed", false, None)), None, None, "Failed"),
            (None, Some(&pvc), Some(&running), "PodDeleted"),
            (None, Some(&pvc), Some(&stopped), "Stopped"),
            (None, Some(&pvc), None, "Stopped"),
            (None, None, Some(&running), "NotFound"),
        ];
        for (p, v, r, want) in cases {
            assert_eq!(
                reconcile(p.as_ref(), v, r),
                want,
                "pod {p:?} record {:?}",
                r.map(|r| r.status)
            );
        }
        let mut t = pod("Running", true, None);
        t["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        assert_eq!(reconcile(Some(&t), None, None), "Terminating");
        let mut u = pod("Pending", false, None);
        u["status"]["conditions"] =
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]);
        assert_eq!(reconcile(Some(&u), None, None), "Unschedulable");
    }
}
