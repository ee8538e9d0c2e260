//! `status <name>`: pod, sync, current or last agent run, branch, last commit, changed files.
//! Reads the pod with one GET; the run record and the git state come from two execs in a running
//! pod (skipped, with the reason, when the pod is not running).
//!
//! May import: session::{ctx, resolve, seams, list, podremote}, config, kube, git, run, error.

use serde_json::{json, Value};

use super::ctx::Ctx;
use super::list::{reconcile, Row};
use super::resolve;
use super::seams;
use crate::cli::{DataFormat, StatusArgs};
use crate::error::{Error, Result};
use crate::kube::resource::PERSISTENT_VOLUME_CLAIMS;
use crate::manifest::{names, HOME_DIR, WORKSPACE_DIR};
use crate::remote::Remote;
use crate::run::records::{self, Access};

/// `status`.
pub fn status(ctx: &Ctx, args: &StatusArgs) -> Result<()> {
    let found = resolve::find(ctx, &args.name)?;
    let client = ctx.client()?;
    let pvc = client.get_opt(
        &PERSISTENT_VOLUME_CLAIMS,
        Some(&found.namespace),
        &names::workspace_pvc(&found.name),
    )?;
    let row = Row {
        name: found.name.clone(),
        namespace: found.namespace.clone(),
        record: found.record.clone(),
        pod: found.pod.clone(),
        pvc,
        unreachable: false,
    };
    let state = reconcile(row.pod.as_ref(), row.pvc.as_ref(), row.record.as_ref());
    let sync = match &row.record {
        Some(r) if r.sync.enabled => seams::sync_state(ctx, &row.name),
        Some(_) => "Inactive (started without sync)".to_string(),
        None => "- (no local session file on this machine)".to_string(),
    };

    let mut run = Value::Null;
    let mut git = Value::Null;
    let mut notes = Vec::new();
    if found.is_running() {
        let remote = resolve::remote_for(ctx, &found)?;
        match records::run_status(&remote, &Access::Shell, HOME_DIR, None) {
            Ok(Some(m)) => {
                run = serde_json::to_value(&m).unwrap_or(Value::Null);
                // Keep list's AGENT column (read from the local file) current.
                if found.record.is_some() {
                    if let Ok(store) = ctx.store() {
                        let _ = store.update(&found.name, |r| {
                            let a = r.agent.get_or_insert_with(Default::default);
                            if a.last_run_id.as_deref() != Some(m.id.as_str()) {
                                a.runs += 1;
                                a.last_run_id = Some(m.id.clone());
                            }
                            a.last_run_status = Some(m.status.as_str().to_string());
                            a.last_run_started_at = Some(m.started_at.clone());
                        });
                    }
                }
            }
            Ok(None) => {}
            Err(e) => notes.push(format!("agent run: {e}")),
        }
        match remote.run(&crate::git::clone::status_argv(WORKSPACE_DIR), b"") {
            Ok(out) => {
                if let Some(ws) = crate::git::clone::parse_status(&out.stdout_str()) {
                    git = json!({
                        "branch": ws.branch,
                        "commit": ws.commit,
                        "subject": ws.subject,
                        "baseBranch": ws.base_branch,
                        "changedFiles": ws.changed_files,
                        "uncommittedFiles": ws.uncommitted_files,
                    });
                }
            }
            Err(e) => notes.push(format!("git: {e}")),
        }
    } else if state == "PodDeleted" {
        notes.push(format!(
            "the pod was deleted outside kodama; run `kubectl kodama resume {} -n {}` to recreate it (the workspace is kept)",
            row.name, row.namespace
        ));
    } else if state == "Stopped" {
        notes.push(format!(
            "resume with `kubectl kodama resume {} -n {}`",
            row.name, row.namespace
        ));
    }

    let branch = git
        .get("branch")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| row.branch());
    let v = json!({
        "name": row.name,
        "namespace": row.namespace,
        "status": state,
        "pod": row.pod.as_ref().map(|_| names::pod(&row.name)),
        "podPhase": found.phase(),
        "node": row.node(),
        "image": row.image(),
        "sync": sync,
        "syncPath": row.record.as_ref().and_then(|r| r.sync.local_path.clone()),
        "repo": row.record.as_ref().and_then(|r| r.repo.clone()),
        "branch": branch,
        "git": git,
        "agentRun": run,
        "notes": notes,
    });
    let out = match args.output {
        Some(DataFormat::Json) => {
            let mut s = serde_json::to_string_pretty(&v)
                .map_err(|e| Error::msg(format!("rendering JSON: {e}")))?;
            s.push('\n');
            s
        }
        Some(DataFormat::Yaml) => {
            yaml_serde::to_string(&v).map_err(|e| Error::msg(format!("rendering YAML: {e}")))?
        }
        None => human(&v),
    };
    super::print(&out)
}

fn human(v: &Value) -> String {
    let s = |p: &str| -> String {
        match v.pointer(p) {
            Some(Value::String(s)) => crate::term::sanitize_for_tty(s),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => "-".to_string(),
        }
    };
    let mut out = String::new();
    out.push_str(&format!("Session:    {}\n", s("/name")));
    out.push_str(&format!("Namespace:  {}\n", s("/namespace")));
    out.push_str(&format!("Status:     {}\n", s("/status")));
    out.push_str(&format!(
        "Pod:        {} (phase {}, node {})\n",
        s("/pod"),
        s("/podPhase"),
        s("/node")
    ));
    out.push_str(&format!("Image:      {}\n", s("/image")));
    out.push_str(&format!("Sync:       {}", s("/sync")));
    if v.pointer("/syncPath").is_some_and(|p| !p.is_null()) {
        out.push_str(&format!(" ({})", s("/syncPath")));
    }
    out.push('\n');
    out.push_str(&format!("Repo:       {}\n", s("/repo")));
    out.push_str(&format!("Branch:     {}\n", s("/branch")));
    if !v["git"].is_null() {
        let commit = s("/git/commit");
        let short: String = commit.chars().take(12).collect();
        out.push_str(&format!("Last commit: {short} {}\n", s("/git/subject")));
        out.push_str(&format!(
            "Changed:    {} file(s) since {} ({} uncommitted)\n",
            s("/git/changedFiles"),
            s("/git/baseBranch"),
            s("/git/uncommittedFiles")
        ));
    }
    if v["agentRun"].is_null() {
        out.push_str("Agent run:  -\n");
    } else {
        out.push_str(&format!(
            "Agent run:  {} {} (started {}",
            s("/agentRun/id"),
            s("/agentRun/status"),
            s("/agentRun/startedAt")
        ));
        if v.pointer("/agentRun/endedAt").is_some_and(|e| !e.is_null()) {
            out.push_str(&format!(", ended {}", s("/agentRun/endedAt")));
        }
        out.push_str(")\n");
        if v.pointer("/agentRun/reason").is_some_and(|e| !e.is_null()) {
            out.push_str(&format!("  reason:   {}\n", s("/agentRun/reason")));
        }
    }
    if let Some(notes) = v["notes"].as_array() {
        for n in notes {
            if let Some(n) = n.as_str() {
                out.push_str(&format!(
                    "Note:       {}\n",
                    crate::term::sanitize_for_tty(n)
                ));
            }
        }
    }
    out
}
