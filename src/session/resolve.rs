//! Finding a session by name: its namespace, its local record (if this machine started it) and its
//! live pod (if any). The cluster is the source of truth, so a teammate's session (no local file) is
//! found from the cluster alone.
//!
//! Namespace precedence for commands on an existing session: `-n` > the local record's namespace >
//! the configured default (`defaults.namespace`) > the kubeconfig context's namespace > "default".
//!
//! May import: session::ctx, config, kube, manifest, error.

use serde_json::Value;

use super::ctx::Ctx;
use super::podremote::PodRemote;
use crate::config::store::SessionRecord;
use crate::config::{self, Layer};
use crate::error::{Error, Result};
use crate::kube::resource::{PERSISTENT_VOLUME_CLAIMS, PODS};
use crate::manifest::{names, MAIN_CONTAINER};

/// A session located in the cluster and/or the local store.
#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub namespace: String,
    /// The local session file, when this machine has one.
    pub record: Option<SessionRecord>,
    /// The live pod, when it exists.
    pub pod: Option<Value>,
}

impl Found {
    /// The pod's phase ("Running", "Pending", ...), if there is a pod.
    pub fn phase(&self) -> Option<&str> {
        self.pod
            .as_ref()
            .and_then(|p| p.pointer("/status/phase"))
            .and_then(Value::as_str)
    }

    /// True when the pod exists, is Running and is not being deleted.
    pub fn is_running(&self) -> bool {
        let deleting = self
            .pod
            .as_ref()
            .and_then(|p| p.pointer("/metadata/deletionTimestamp"))
            .is_some();
        self.phase() == Some("Running") && !deleting
    }
}

/// The namespace a command on session `name` should use (see the module docs).
pub fn namespace_for(ctx: &Ctx, record: Option<&SessionRecord>) -> Result<String> {
    if let Some(ns) = ctx.namespace_flag() {
        return Ok(ns.to_string());
    }
    if let Some(r) = record {
        if !r.namespace.is_empty() {
            return Ok(r.namespace.clone());
        }
    }
    let loaded = config::load(ctx.config_dir().ok().as_deref(), None, &Layer::default())?;
    let client = ctx.client()?;
    Ok(loaded.settings.namespace_or(Some(client.namespace())))
}

/// Locate session `name`. Fails with a clear error (and a way out) when neither the cluster nor the
/// local store knows it.
pub fn find(ctx: &Ctx, name: &str) -> Result<Found> {
    config::validate_session_name(name)
        .map_err(|e| Error::usage(format!("invalid session name \"{name}\": {e}"), None))?;
    let record = match ctx.store() {
        Ok(store) => store.load(name)?,
        Err(_) => None,
    };
    let namespace = namespace_for(ctx, record.as_ref())?;
    let client = ctx.client()?;
    let pod = client.get_opt(&PODS, Some(&namespace), &names::pod(name))?;
    if pod.is_none() && record.is_none() {
        // A stopped session has no pod but keeps its workspace PVC.
        let pvc = client.get_opt(
            &PERSISTENT_VOLUME_CLAIMS,
            Some(&namespace),
            &names::workspace_pvc(name),
        )?;
        if pvc.is_none() {
            let elsewhere = other_namespaces(ctx, name, &namespace);
            if !elsewhere.is_empty() {
                return Err(Error::with_hint(
                    format!(
                        "session \"{name}\" is not in namespace \"{namespace}\"; it exists in namespace {}",
                        elsewhere.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
                    ),
                    format!("pass -n {}", elsewhere[0]),
                ));
            }
            return Err(Error::with_hint(
                format!("session \"{name}\" not found in namespace \"{namespace}\""),
                "run `kubectl kodama list` (or `list -A` for every namespace) to see the sessions, then pass the name and -n NAMESPACE",
            ));
        }
    }
    Ok(Found {
        name: name.to_string(),
        namespace,
        record,
        pod,
    })
}

/// A [`PodRemote`] for a running session, or a clear error saying why there is none.
pub fn remote_for(ctx: &Ctx, found: &Found) -> Result<PodRemote> {
    if !found.is_running() {
        let why = match (&found.pod, found.phase()) {
            (None, _) => "has no pod (it is stopped, or its pod was deleted)".to_string(),
            (Some(_), Some(phase)) => format!("is not running (pod phase {phase})"),
            (Some(_), None) => "is not running yet".to_string(),
        };
        return Err(Error::with_hint(
            format!("session \"{}\" {why}", found.name),
            format!(
                "run `kubectl kodama resume {} -n {}` to start it again",
                found.name, found.namespace
            ),
        ));
    }
    Ok(PodRemote::new(
        ctx.client()?.clone(),
        &found.namespace,
        &names::pod(&found.name),
        Some(MAIN_CONTAINER),
    ))
}

/// Namespaces other than `except` holding a workspace PVC of session `name` (one cluster-wide list
/// by label; empty when the user may not list cluster-wide).
fn other_namespaces(ctx: &Ctx, name: &str, except: &str) -> Vec<String> {
    let Ok(client) = ctx.client() else {
        return Vec::new();
    };
    let opts = crate::kube::request::ListOptions {
        label_selector: Some(format!(
            "app.kubernetes.io/managed-by=kodama,kodama.dev/session={name}"
        )),
        ..Default::default()
    };
    let Ok(list) = client.list(&PERSISTENT_VOLUME_CLAIMS, None, &opts) else {
        return Vec::new();
    };
    let mut out: Vec<String> = list
        .get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.pointer("/metadata/namespace").and_then(Value::as_str))
                .filter(|n| *n != except)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}
