//! `delete`, `stop` and `resume`.
//!
//! - `delete` removes the pod, the ConfigMap and the Secrets and stops the local sync; it keeps the
//!   PVCs (and prints the command that removes them) unless `--purge`, which asks again. It asks for
//!   confirmation unless `-f`, and refuses (never hangs) when there is no terminal to ask on. It is
//!   idempotent and works when only some objects exist, or with no local file (a teammate's).
//! - `stop` deletes the pod (and waits until it is gone), keeps everything else, marks the session
//!   Stopped and stops the sync.
//! - `resume` recreates the pod from the stored spec (the local file, else the `kodama.dev/spec`
//!   annotation on the workspace PVC), reuses the volumes, and restarts the sync. It never clones.
//!
//! May import: session::{ctx, resolve, seams, start, progress, rollback, list}, config, kube,
//! manifest, term, error.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ctx::Ctx;
use super::progress::Progress;
use super::resolve::{self, Found};
use super::rollback::{Interrupt, Kind, Rollback};
use super::seams;
use crate::cli::{DeleteArgs, NameArgs, ResumeArgs};
use crate::config::store::SessionStatus;
use crate::error::{Error, Result};
use crate::kube::request::DeleteOptions;
use crate::kube::resource::{CONFIG_MAPS, PERSISTENT_VOLUME_CLAIMS, PODS, SECRETS};
use crate::kube::Client;
use crate::manifest::{self, names, SessionSpec};

/// How long stop/delete wait for the pod to go away.
const POD_GONE_TIMEOUT: Duration = Duration::from_secs(120);

/// Ask a yes/no question on the terminal. No terminal → an error naming `-f`, never a hang.
fn confirm(question: &str) -> Result<bool> {
    if !crate::term::stdin_is_tty() {
        return Err(Error::usage(
            "refusing to delete without confirmation: stdin is not a terminal",
            Some("pass -f/--force to delete without asking".into()),
        ));
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("", e))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn delete_opt(
    client: &Client,
    res: &crate::kube::resource::Resource,
    ns: &str,
    name: &str,
    grace: Option<i64>,
) -> Result<bool> {
    let opts = DeleteOptions {
        grace_period_seconds: grace,
        ..DeleteOptions::default()
    };
    match client.delete(res, Some(ns), name, &opts) {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Wait until the pod is gone (polling GET; a pod in the sim and in real clusters goes within its
/// grace period).
fn wait_pod_gone(client: &Client, ns: &str, pod: &str, deadline: Instant) -> Result<()> {
    let mut progress = Progress::new();
    loop {
        if client.get_opt(&PODS, Some(ns), pod)?.is_none() {
            progress.finish();
            return Ok(());
        }
        progress.update(&format!("waiting for pod {pod} to stop…"));
        if Instant::now() >= deadline {
            progress.finish();
            return Err(Error::with_hint(
                format!("pod {ns}/{pod} is still terminating"),
                format!("check `kubectl describe pod {pod} -n {ns}`; `kubectl delete pod {pod} -n {ns} --grace-period=0 --force` removes it at once"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `delete`.
pub fn delete(ctx: &Ctx, args: &DeleteArgs) -> Result<()> {
    let found = match resolve::find(ctx, &args.name) {
        Ok(f) => f,
        Err(e) => leftovers(ctx, &args.name)?.ok_or(e)?,
    };
    let name = &found.name;
    let ns = &found.namespace;
    let client = ctx.client()?;
    let store = ctx.store()?;
    let _lock = store.lock_session(name)?;
    if !args.force
        && !confirm(&format!(
            "Delete session \"{name}\" in namespace \"{ns}\" (pod, editor config, secrets{})?",
            if args.purge {
                ", and then its volumes"
            } else {
                "; volumes are kept"
            }
        ))?
    {
        eprintln!("not deleted");
        return Ok(());
    }
    let purge = args.purge
        && (args.force
            || confirm(&format!(
                "Also delete the volumes {} and {}? This destroys the workspace files and the Claude login.",
                names::workspace_pvc(name),
                names::claude_home_pvc(name)
            ))?);

    match seams::stop_daemon(ctx, name) {
        Ok(true) => eprintln!("stopped the local sync"),
        Ok(false) => {}
        Err(e) => eprintln!("warning: could not stop the local sync: {e}"),
    }
    let mut deleted = Vec::new();
    let pod = names::pod(name);
    if delete_opt(client, &PODS, ns, &pod, None)? {
        deleted.push(format!("pod/{pod}"));
    }
    for (res, n, noun) in [
        (&CONFIG_MAPS, names::editor_config_map(name), "configmap"),
        (&SECRETS, names::env_secret(name), "secret"),
        (&SECRETS, names::files_secret(name), "secret"),
    ] {
        if delete_opt(client, res, ns, &n, None)? {
            deleted.push(format!("{noun}/{n}"));
        }
    }
    let pvcs = [names::workspace_pvc(name), names::claude_home_pvc(name)];
    let mut kept = Vec::new();
    if purge {
        if found.pod.is_some() {
            wait_pod_gone(client, ns, &pod, Instant::now() + POD_GONE_TIMEOUT)?;
        }
        for p in &pvcs {
            if delete_opt(client, &PERSISTENT_VOLUME_CLAIMS, ns, p, None)? {
                deleted.push(format!("persistentvolumeclaim/{p}"));
            }
        }
    } else {
        for p in &pvcs {
            if client
                .get_opt(&PERSISTENT_VOLUME_CLAIMS, Some(ns), p)?
                .is_some()
            {
                kept.push(p.clone());
            }
        }
    }
    let had_record = found.record.is_some();
    if had_record {
        if args.keep_config {
            store.update(name, |r| r.status = SessionStatus::Stopped)?;
        } else {
            store.remove(name)?;
            if let Ok(dir) = ctx.config_dir() {
                let _ = std::fs::remove_file(dir.join("sync").join(format!("{name}.json")));
            }
        }
    }
    let mut out = String::new();
    if deleted.is_empty() {
        out.push_str(&format!(
            "session \"{name}\": nothing left to delete in namespace \"{ns}\"\n"
        ));
    } else {
        out.push_str(&format!(
            "session \"{name}\" deleted from namespace \"{ns}\": {}\n",
            deleted.join(", ")
        ));
    }
    if had_record && args.keep_config {
        out.push_str("kept the session file (status Stopped)\n");
    }
    if !kept.is_empty() {
        out.push_str(&format!(
            "kept the volumes {} (your files are still there)\n  remove them with: kubectl delete pvc -n {ns} {}\n  or: kubectl kodama delete {name} -n {ns} --purge\n",
            kept.join(" and "),
            kept.join(" ")
        ));
    }
    super::print(&out)
}

/// `stop`.
pub fn stop(ctx: &Ctx, args: &NameArgs) -> Result<()> {
    let found = resolve::find(ctx, &args.name)?;
    let name = &found.name;
    let ns = &found.namespace;
    let client = ctx.client()?;
    let store = ctx.store()?;
    let _lock = store.lock_session(name)?;
    match seams::stop_daemon(ctx, name) {
        Ok(true) => eprintln!("stopped the local sync"),
        Ok(false) => {}
        Err(e) => eprintln!("warning: could not stop the local sync: {e}"),
    }
    let pod = names::pod(name);
    let existed = delete_opt(client, &PODS, ns, &pod, None)?;
    if existed {
        wait_pod_gone(client, ns, &pod, Instant::now() + POD_GONE_TIMEOUT)?;
    }
    if found.record.is_some() {
        store.update(name, |r| r.status = SessionStatus::Stopped)?;
    }
    super::print(&format!(
        "session \"{name}\" {} (volumes, editor config and secrets kept)\n  resume it with: kubectl kodama resume {name} -n {ns}\n",
        if existed { "stopped" } else { "was already stopped" }
    ))
}

/// The stored spec: the local record's, else the workspace PVC's annotation.
fn stored_spec(found: &Found, pvc: Option<&Value>) -> Option<SessionSpec> {
    if let Some(s) = found
        .record
        .as_ref()
        .and_then(|r| r.spec.clone())
        .and_then(|v| yaml_serde::from_value::<SessionSpec>(v).ok())
    {
        return Some(s);
    }
    pvc.and_then(manifest::spec_from_annotations)
}

/// `resume`.
pub fn resume(ctx: &Ctx, args: &ResumeArgs) -> Result<()> {
    let found = resolve::find(ctx, &args.name)?;
    let name = found.name.clone();
    let ns = found.namespace.clone();
    let client = ctx.client()?.clone();
    let store = ctx.store()?;
    let _lock = store.lock_session(&name)?;
    let pod = names::pod(&name);
    if let Some(p) = &found.pod {
        if p.pointer("/metadata/deletionTimestamp").is_none() {
            return super::print(&format!(
                "session \"{name}\" is already running (pod {ns}/{pod})\n  attach: kubectl kodama attach {name} -n {ns}\n"
            ));
        }
        wait_pod_gone(&client, &ns, &pod, Instant::now() + POD_GONE_TIMEOUT)?;
    }
    let ws = client.get_opt(
        &PERSISTENT_VOLUME_CLAIMS,
        Some(&ns),
        &names::workspace_pvc(&name),
    )?;
    let Some(ws) = ws else {
        return Err(Error::with_hint(
            format!(
                "cannot resume session \"{name}\": its workspace volume {ns}/{} is gone",
                names::workspace_pvc(&name)
            ),
            format!("start a new session with `kubectl kodama start {name}` (delete the old one first with `kubectl kodama delete {name} -f`)"),
        ));
    };
    let mut spec = stored_spec(&found, Some(&ws)).ok_or_else(|| {
        Error::with_hint(
            format!("cannot resume session \"{name}\": no stored session spec (no local session file, and the workspace volume has no kodama.dev/spec annotation)"),
            format!("start it again with `kubectl kodama start {name}`; the existing workspace volume is reused"),
        )
    })?;
    spec.namespace = ns.clone();

    let intr = Interrupt::install()?;
    let mut rb = Rollback::new(&ns);
    let r = resume_steps(&client, &mut spec, &intr, &mut rb);
    if let Err(e) = r {
        if !rb.created.is_empty() {
            eprintln!("rolling back: deleting what this resume created…");
        }
        for f in rb.run(&client) {
            eprintln!("warning: could not delete {f}");
        }
        intr.uninstall();
        return Err(match e {
            Error::Interrupted => e,
            e => e.context(format!("resuming session \"{name}\"")),
        });
    }
    intr.uninstall();

    if found.record.is_some() {
        store.update(&name, |r| r.status = SessionStatus::Running)?;
        let sync_on = found.record.as_ref().is_some_and(|r| r.sync.enabled);
        if sync_on && !args.no_sync {
            if let Err(e) = seams::spawn_daemon(ctx, &name) {
                eprintln!(
                    "warning: continuous sync did not start: {e}\n  start it with `kubectl kodama sync {name}`"
                );
            }
        }
    }
    super::print(&format!(
        "session \"{name}\" resumed in namespace \"{ns}\" (workspace kept)\n  attach: kubectl kodama attach {name} -n {ns}\n"
    ))
}

fn resume_steps(
    client: &Client,
    spec: &mut SessionSpec,
    intr: &Interrupt,
    rb: &mut Rollback,
) -> Result<()> {
    let ns = spec.namespace.clone();
    let name = spec.name.clone();
    let mut progress = Progress::new();
    // The claude-home volume is recreated (empty) if it was removed.
    if client
        .get_opt(
            &PERSISTENT_VOLUME_CLAIMS,
            Some(&ns),
            &names::claude_home_pvc(&name),
        )?
        .is_none()
    {
        progress.line(&format!(
            "recreating the missing volume {} (the Claude login starts empty)",
            names::claude_home_pvc(&name)
        ));
        client.create(
            &PERSISTENT_VOLUME_CLAIMS,
            Some(&ns),
            &manifest::build_claude_home_pvc(spec)?,
        )?;
        rb.push(Kind::Pvc, &names::claude_home_pvc(&name));
    }
    if client
        .get_opt(&CONFIG_MAPS, Some(&ns), &names::editor_config_map(&name))?
        .is_none()
    {
        client.create(
            &CONFIG_MAPS,
            Some(&ns),
            &manifest::build_editor_config_map(spec, &manifest::EditorConfig::defaults())?,
        )?;
        rb.push(Kind::ConfigMap, &names::editor_config_map(&name));
    }
    if spec.env_secret
        && client
            .get_opt(&SECRETS, Some(&ns), &names::env_secret(&name))?
            .is_none()
    {
        eprintln!(
            "warning: the env Secret {} is gone; the session resumes without its environment variables",
            names::env_secret(&name)
        );
        spec.env_secret = false;
    }
    if !spec.secret_files.is_empty()
        && client
            .get_opt(&SECRETS, Some(&ns), &names::files_secret(&name))?
            .is_none()
    {
        eprintln!(
            "warning: the Secret {} is gone; the session resumes without its secret files",
            names::files_secret(&name)
        );
        spec.secret_files.clear();
    }
    let pod = manifest::build_pod(spec)?;
    client.create(&PODS, Some(&ns), &pod)?;
    rb.push(Kind::Pod, &names::pod(&name));
    let c = client.clone();
    let pod_name = names::pod(&name);
    let ns2 = ns.clone();
    let deadline = Instant::now() + super::start::DEFAULT_START_TIMEOUT;
    let pn = pod_name.clone();
    intr.run(move || {
        let mut p = Progress::new();
        let r = crate::kube::watch::wait_for_pod(&c, &ns2, &pn, deadline, &mut |pp| {
            p.update(&super::start::describe_progress(&pn, pp))
        });
        p.finish();
        r.map(|_| ())
    })
    .map_err(|e| match e {
        Error::Interrupted => e,
        e => {
            let hint = super::start::start_failure_hint(&e.to_string(), &ns, &pod_name);
            e.hinted(hint)
        }
    })?;
    let remote =
        super::podremote::PodRemote::new(client, &ns, &pod_name, Some(manifest::MAIN_CONTAINER));
    super::start::prepare_pod(&remote);
    Ok(())
}

/// A session of which only the ConfigMap or a Secret is left (no pod, volume or local file): still
/// something `delete` can clean up. None when nothing at all is left.
fn leftovers(ctx: &Ctx, name: &str) -> Result<Option<Found>> {
    let ns = resolve::namespace_for(ctx, None)?;
    let client = ctx.client()?;
    for (res, n) in [
        (&CONFIG_MAPS, names::editor_config_map(name)),
        (&SECRETS, names::env_secret(name)),
        (&SECRETS, names::files_secret(name)),
    ] {
        if client.get_opt(res, Some(&ns), &n)?.is_some() {
            return Ok(Some(Found {
                name: name.to_string(),
                namespace: ns,
                record: None,
                pod: None,
            }));
        }
    }
    Ok(None)
}
