//! `start` and `dev`: validate everything, create the session's objects, wait for Ready, clone, sync,
//! start the agent, save the session file last; roll back on failure or Ctrl-C.
//!
//! Order: (1) validate every input without touching the cluster (name, config and template, env
//! files, secret files, editor configs, quantities, repo URL, prompt, sync directory); `--dry-run`
//! stops here and prints the manifests with secret values redacted. (2) Refuse when the session
//! exists locally or in the cluster. (3) Create or reuse the PVCs (a PVC that already exists is
//! reused and never deleted), wait until they are bound, create the ConfigMap, the Secrets and the
//! pod, and wait for Ready with a live progress line. (4) Install the in-pod agent, clone, sync, and
//! record branch/commit on the pod and PVC annotations. (5) Save the session file, then start the
//! background sync and the agent run. Any failure, or Ctrl-C, before (5) deletes exactly what this
//! start created.
//!
//! May import: session::{ctx, resolve, podremote, attach, syncd, progress, rollback}, config, kube,
//! manifest, envfile, git, sync, agent, run, term, error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::ctx::Ctx;
use super::podremote::PodRemote;
use super::progress::Progress;
use super::rollback::{Interrupt, Kind, Rollback};
use super::syncd;
use crate::agent::install::{ensure_agent, AgentMode, InstallOptions};
use crate::cli::{AttachArgs, DataFormat, DevArgs, PromptSource, StartArgs, SyncChoice};
use crate::config::store::{AgentSummary, SessionRecord, SessionStatus, SyncRecord};
use crate::config::{self, Settings};
use crate::envfile::{self, EnvSet};
use crate::error::{Error, Result};
use crate::git::{self, branch::BranchPlan, clone::CloneParams, url::RepoUrl};
use crate::kube::request::ListOptions;
use crate::kube::resource::{CONFIG_MAPS, EVENTS, PERSISTENT_VOLUME_CLAIMS, PODS, SECRETS};
use crate::kube::watch::{self, PodProgress};
use crate::kube::Client;
use crate::manifest::{
    self, annotations, names, OutputFormat, SessionInputs, SessionMeta, SessionSpec, SshSpec,
    StorageSpec, MAIN_CONTAINER,
};
use crate::run::records::Access;
use crate::secret::Secret;
use crate::sync::ignore::{IgnoreOptions, IgnoreRules};

/// Default deadline for the pod to become Ready.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything `start` needs, validated before anything is created.
pub struct Plan {
    pub name: String,
    pub namespace: String,
    pub settings: Settings,
    pub spec: SessionSpec,
    pub inputs: SessionInputs,
    pub env: EnvSet,
    pub repo: Option<RepoPlan>,
    pub sync_dir: Option<PathBuf>,
    pub prompt: Option<Vec<u8>>,
    pub timeout: Duration,
    pub config_dir: PathBuf,
}

/// The repository to clone.
pub struct RepoPlan {
    pub url: RepoUrl,
    /// What the user gave (`.` is resolved to the upstream URL).
    pub given: String,
    /// The local current branch (for `--repo .`).
    pub local_branch: Option<String>,
    /// Where the local identity (git user.name/email) is read.
    pub local_dir: PathBuf,
}

/// `start`.
pub fn start(ctx: &Ctx, args: &StartArgs) -> Result<()> {
    start_session(ctx, args).map(|_| ())
}

/// `dev`: start, then attach (an interactive shell, or `--command`).
pub fn dev(ctx: &Ctx, args: &DevArgs) -> Result<()> {
    if args.start.dry_run.is_some() {
        return start(ctx, &args.start);
    }
    let name = start_session(ctx, &args.start)?;
    super::attach::attach(
        ctx,
        &AttachArgs {
            name,
            command: args.command.clone(),
        },
    )
}

/// Start the session; returns its name.
pub fn start_session(ctx: &Ctx, args: &StartArgs) -> Result<String> {
    let plan = validate(ctx, args)
        .map_err(|e| e.context(format!("starting session \"{}\"", args.name)))?;
    if let Some(fmt) = args.dry_run {
        return dry_run(&plan, fmt).map(|()| plan.name.clone());
    }
    create(ctx, &plan).map_err(|e| match e {
        Error::Interrupted => Error::Interrupted,
        e => e.context(format!("starting session \"{}\"", plan.name)),
    })?;
    Ok(plan.name)
}

// ---------------------------------------------------------------------------------------------
// (1) validation

/// Validate every input and build the manifests' inputs. Never touches the cluster (only reads the
/// kubeconfig for its namespace).
pub fn validate(ctx: &Ctx, args: &StartArgs) -> Result<Plan> {
    let name = args.name.clone();
    let mut faults = manifest::names::session_name_faults(&name);
    if let Err(e) = config::validate_session_name(&name) {
        let s = e.to_string();
        if !faults.iter().any(|f| f == &s) && faults.is_empty() {
            faults.push(s);
        }
    }
    if !faults.is_empty() {
        return Err(Error::Invalid {
            what: format!("session name {name:?}"),
            faults,
            hint: Some(
                "use lowercase letters, digits and '-', starting with a letter (at most 40 characters)"
                    .into(),
            ),
        });
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
    let config_dir = ctx.config_dir()?;
    let sync_arg = match &args.sync {
        SyncChoice::Path(p) => Some(absolute(&cwd, p)),
        _ => None,
    };
    let tmpl = config::find_template(args.config.as_deref(), sync_arg.as_deref(), &cwd)?;
    let loaded = config::load(
        Some(&config_dir),
        tmpl.as_deref(),
        &args.flag_layer(&ctx.global),
    )?;
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let s = loaded.settings;
    let template_dir = loaded
        .template_path
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf);

    // Namespace: flags > template > global > kubeconfig context > "default". Reading the
    // kubeconfig sends no request.
    let context_ns = ctx.client().ok().map(|c| c.namespace().to_string());
    let namespace = s.namespace_or(context_ns.as_deref());

    // Prompt.
    let prompt = match &args.prompt {
        None => None,
        Some(PromptSource::Text(t)) => Some(t.clone().into_bytes()),
        Some(PromptSource::File(p)) => {
            let p = absolute(&cwd, p);
            let b = std::fs::read(&p)
                .map_err(|e| Error::io(&p, e).hinted("check the path given to --prompt-file"))?;
            Some(b)
        }
    };
    if let Some(p) = &prompt {
        if p.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(Error::usage(
                "the prompt is empty",
                Some("give a prompt with -p TEXT or --prompt-file FILE".into()),
            ));
        }
    }

    // Repository.
    let repo = match s.repo.as_deref() {
        None => None,
        Some(".") => {
            let base = sync_arg.clone().unwrap_or_else(|| cwd.clone());
            let local = git::local::resolve_dot(&base)?;
            Some(RepoPlan {
                url: local.url.clone(),
                given: ".".into(),
                local_branch: Some(local.branch.clone()),
                local_dir: PathBuf::from(&local.toplevel),
            })
        }
        Some(r) => Some(RepoPlan {
            url: git::url::parse_repo_url(r)?,
            given: r.to_string(),
            local_branch: None,
            local_dir: cwd.clone(),
        }),
    };
    if let Some(b) = s.branch.as_deref() {
        git::branch::validate_branch_name(b, "--branch")?;
    }

    // Sync directory: --sync PATH; default the current directory unless --repo is given alone.
    let sync_dir = match &args.sync {
        SyncChoice::Off => None,
        SyncChoice::Path(_) => sync_arg.clone(),
        SyncChoice::Default if repo.is_some() => None,
        SyncChoice::Default => Some(cwd.clone()),
    };
    let sync_dir = match sync_dir {
        Some(d) => {
            let canon = std::fs::canonicalize(&d)
                .map_err(|e| Error::io(&d, e).hinted("--sync needs an existing local directory"))?;
            if !canon.is_dir() {
                return Err(Error::usage(
                    format!("--sync {}: not a directory", d.display()),
                    None,
                ));
            }
            let home = config::home_dir().and_then(|h| std::fs::canonicalize(h).ok());
            crate::sync::check_sync_root(&canon, home.as_deref(), args.force)?;
            IgnoreRules::new(
                &canon,
                IgnoreOptions::new(s.sync.use_gitignore, s.sync.exclude_patterns.clone()),
            )?;
            Some(canon)
        }
        None => None,
    };

    // Env: dotenv files (relative to the working directory) + ambient credentials.
    let env_files: Vec<PathBuf> = s
        .env
        .dotenv_files
        .iter()
        .map(|p| absolute(&cwd, p))
        .collect();
    let mut env = envfile::load(&env_files, &s.env.exclude_vars, &envfile::process_env)?;
    // `gh` reads GH_TOKEN, git's credential helper either: give both names the same value.
    for (have, want) in [("GITHUB_TOKEN", "GH_TOKEN"), ("GH_TOKEN", "GITHUB_TOKEN")] {
        if !env.vars.contains_key(want) && !envfile::is_excluded(want, &s.env.exclude_vars) {
            if let Some(v) = env.vars.get(have).cloned() {
                env.vars.insert(want.to_string(), v);
            }
        }
    }

    // Secret files: template entries relative to the template, flags relative to the cwd.
    let home = config::home_dir();
    let refs: Vec<manifest::SecretFileRef> = s
        .secret_files
        .iter()
        .map(|f| {
            let src = if f.source.is_relative() && !f.source.starts_with("~") {
                template_dir
                    .as_deref()
                    .filter(|_| !args.secret_files.iter().any(|a| a == f))
                    .map(|d| d.join(&f.source))
                    .unwrap_or_else(|| cwd.join(&f.source))
            } else {
                f.source.clone()
            };
            manifest::SecretFileRef {
                source: src.display().to_string(),
                destination: f.destination.clone(),
            }
        })
        .collect();
    let files = manifest::secret_files::load(&refs, &cwd, home.as_deref())?;

    // Editor config: the repo's .kodama/configs (sync dir, else the template's dir, else cwd).
    let editor_dir = sync_dir
        .clone()
        .or_else(|| template_dir.clone())
        .or_else(|| Some(cwd.clone()));
    let editor = manifest::editor::load(editor_dir.as_deref())?;

    let inputs = SessionInputs {
        editor,
        env: env.vars.clone(),
        files,
    };
    let mut spec = spec_from_settings(&name, &namespace, &s);
    spec.meta.repo = repo.as_ref().map(|r| r.url.display().to_string());
    inputs.apply_to(&mut spec);
    spec.validate()?;

    let timeout = args.timeout.unwrap_or(s.start_timeout);
    let timeout = if timeout.is_zero() {
        DEFAULT_START_TIMEOUT
    } else {
        timeout
    };

    if let Some(summary) = env.summary() {
        eprintln!("warning: {summary}");
    }
    // With a real start the warning waits until we know whether the claude-home volume (which may
    // hold a login) already exists; a dry run warns now.
    if prompt.is_some() && args.dry_run.is_some() {
        let names: Vec<String> = env.vars.keys().cloned().collect();
        if let Some(w) = crate::run::creds::credentials_warning(&names, None) {
            eprintln!("warning: {w}");
        }
    }

    Ok(Plan {
        name,
        namespace,
        settings: s,
        spec,
        inputs,
        env,
        repo,
        sync_dir,
        prompt,
        timeout,
        config_dir,
    })
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

/// The manifest spec for a session from resolved settings.
pub fn spec_from_settings(name: &str, namespace: &str, s: &Settings) -> SessionSpec {
    let mut spec = SessionSpec::new(name, namespace, &s.image);
    spec.resources.cpu = s.resources.cpu.as_str().to_string();
    spec.resources.memory = s.resources.memory.as_str().to_string();
    spec.resources.extra = s
        .resources
        .extra
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().to_string()))
        .collect();
    spec.storage = StorageSpec {
        workspace: s.storage.workspace.as_str().to_string(),
        claude_home: s.storage.claude_home.as_str().to_string(),
        storage_class: s.storage.storage_class.clone(),
    };
    spec.ssh = s.git.secret_name.as_ref().map(|n| SshSpec {
        secret_name: n.clone(),
        key: "ssh-privatekey".into(),
        known_hosts: match s.git.known_hosts {
            config::KnownHosts::AcceptNew => manifest::KnownHosts::AcceptNew,
            config::KnownHosts::Strict => manifest::KnownHosts::Strict,
            config::KnownHosts::Off => manifest::KnownHosts::Off,
        },
    });
    spec.service_account = s.pod.service_account_name.clone();
    spec.automount_token = s.pod.automount_service_account_token;
    spec.node_selector = s.pod.node_selector.clone();
    spec.tolerations = s
        .pod
        .tolerations
        .iter()
        .map(|t| manifest::Toleration {
            key: t.key.clone(),
            operator: t.operator.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
            toleration_seconds: t.toleration_seconds,
        })
        .collect();
    spec.meta = SessionMeta {
        created_by: created_by(),
        created_at: Some(config::time::now_rfc3339()),
        kodama_version: Some(crate::VERSION.to_string()),
        agent_command: Some(s.agent.command.join(" ")),
        ..SessionMeta::default()
    };
    spec
}

fn created_by() -> Option<String> {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()?;
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    Some(match host {
        Some(h) => format!("{user}@{h}"),
        None => user,
    })
}

/// `--dry-run`: print every manifest, secret values redacted. No API request at all.
fn dry_run(plan: &Plan, fmt: DataFormat) -> Result<()> {
    let objs = manifest::build_all(&plan.spec, &plan.inputs)?;
    let f = match fmt {
        DataFormat::Json => OutputFormat::Json,
        DataFormat::Yaml => OutputFormat::Yaml,
    };
    super::print(&manifest::render_dry_run(&objs, f, true)?)
}

// ---------------------------------------------------------------------------------------------
// (2)-(5) creation

fn create(ctx: &Ctx, plan: &Plan) -> Result<()> {
    let client = ctx.client()?.clone();
    let store = ctx.store()?;
    let _lock = store.lock_session(&plan.name)?;
    let name = &plan.name;
    let ns = &plan.namespace;

    // (2) Refuse an existing session.
    if let Some(rec) = store.load(name)? {
        return Err(Error::with_hint(
            format!(
                "session \"{name}\" already exists (namespace \"{}\", status {})",
                rec.namespace,
                rec.status.as_str()
            ),
            format!(
                "attach with `kubectl kodama attach {name}`, resume a stopped one with `kubectl kodama resume {name}`, remove it with `kubectl kodama delete {name}`, or pick another name"
            ),
        ));
    }
    if client
        .get_opt(&PODS, Some(ns), &names::pod(name))?
        .is_some()
    {
        return Err(Error::with_hint(
            format!("session \"{name}\" already exists in namespace \"{ns}\" (pod {} is there; maybe started from another machine)", names::pod(name)),
            format!("attach with `kubectl kodama attach {name} -n {ns}`, remove it with `kubectl kodama delete {name} -n {ns}`, or pick another name"),
        ));
    }

    let intr = Interrupt::install()?;
    let mut rb = Rollback::new(ns);
    let result = create_steps(ctx, plan, &client, &store, &intr, &mut rb);
    let out = match result {
        Ok(()) => Ok(()),
        Err(e) => {
            let mut p = Progress::new();
            p.finish();
            if !rb.created.is_empty() {
                eprintln!("rolling back: deleting what this start created…");
            }
            let failed = rb.run(&client);
            for f in &failed {
                eprintln!("warning: could not delete {f}");
            }
            let _ = store.remove(name);
            if matches!(e, Error::Interrupted) {
                eprintln!("interrupted; nothing of session \"{name}\" was left behind except volumes that existed before");
            }
            Err(e)
        }
    };
    intr.uninstall();
    out
}

fn create_steps(
    ctx: &Ctx,
    plan: &Plan,
    client: &Client,
    store: &config::store::Store,
    intr: &Interrupt,
    rb: &mut Rollback,
) -> Result<()> {
    let name = &plan.name;
    let ns = &plan.namespace;
    let spec = &plan.spec;
    let mut progress = Progress::new();

    // (3) Volumes: reuse what exists (it may hold data), create the rest.
    let env_names: Vec<String> = plan.env.vars.keys().cloned().collect();
    let mut probe_login = false;
    if plan.prompt.is_some() {
        let home_exists = client
            .get_opt(
                &PERSISTENT_VOLUME_CLAIMS,
                Some(ns),
                &names::claude_home_pvc(name),
            )?
            .is_some();
        if home_exists {
            probe_login = true;
        } else if let Some(w) = crate::run::creds::credentials_warning(&env_names, None) {
            progress.line(&format!("warning: {w}"));
        }
    }
    let mut reused_workspace = false;
    for (pvc_name, obj) in [
        (
            names::workspace_pvc(name),
            manifest::build_workspace_pvc(spec)?,
        ),
        (
            names::claude_home_pvc(name),
            manifest::build_claude_home_pvc(spec)?,
        ),
    ] {
        if client
            .get_opt(&PERSISTENT_VOLUME_CLAIMS, Some(ns), &pvc_name)?
            .is_some()
        {
            progress.line(&format!(
                "reusing existing volume {pvc_name} (its files are kept)"
            ));
            if pvc_name == names::workspace_pvc(name) {
                reused_workspace = true;
            }
            continue;
        }
        client
            .create(&PERSISTENT_VOLUME_CLAIMS, Some(ns), &obj)
            .map_err(|e| e.context(format!("creating volume {ns}/{pvc_name}")))?;
        rb.push(Kind::Pvc, &pvc_name);
    }
    if intr.fired() {
        return Err(Error::Interrupted);
    }

    // ConfigMap and Secrets: leftovers of an interrupted delete are replaced.
    let cm = manifest::build_editor_config_map(spec, &plan.inputs.editor)?;
    put(client, ns, Kind::ConfigMap, &cm, rb)?;
    if !plan.inputs.env.is_empty() {
        let s = manifest::build_env_secret(spec, &plan.inputs.env)?;
        put(client, ns, Kind::Secret, &s, rb)?;
    }
    if !plan.inputs.files.is_empty() {
        let s = manifest::build_files_secret(spec, &plan.inputs.files)?;
        put(client, ns, Kind::Secret, &s, rb)?;
    }

    // Wait for the volumes to bind before the pod exists, so a missing StorageClass is named.
    let deadline = Instant::now() + plan.timeout;
    wait_pvcs_bound(client, ns, name, deadline, intr, &mut progress)?;

    let pod = manifest::build_pod(spec)?;
    client
        .create(&PODS, Some(ns), &pod)
        .map_err(|e| e.context(format!("creating pod {ns}/{}", names::pod(name))))?;
    rb.push(Kind::Pod, &names::pod(name));

    wait_ready(client, ns, name, deadline, intr)?;
    progress.line(&format!("pod {ns}/{} is ready", names::pod(name)));

    // (4) Inside the pod.
    let remote = PodRemote::new(client.clone(), ns, &names::pod(name), Some(MAIN_CONTAINER));
    let need_agent = plan.sync_dir.is_some() || plan.prompt.is_some();
    let mode = if need_agent {
        let r = remote.clone();
        intr.run(move || ensure_agent(&r, &InstallOptions::default()))
            .unwrap_or_else(|e| AgentMode::Fallback {
                reason: e.to_string(),
            })
    } else {
        AgentMode::Fallback {
            reason: "not needed".into(),
        }
    };
    if intr.fired() {
        return Err(Error::Interrupted);
    }

    if probe_login && crate::run::creds::credentials_warning(&env_names, None).is_some() {
        let probe = crate::run::creds::probe_claude_home(&remote, manifest::CLAUDE_HOME_DIR).ok();
        if let Some(w) = crate::run::creds::credentials_warning(&env_names, probe.as_ref()) {
            progress.line(&format!("warning: {w}"));
        }
    }
    let mut meta = spec.meta.clone();
    if let Some(repo) = &plan.repo {
        let cr = clone(plan, repo, &remote, intr, reused_workspace)?;
        meta.branch = Some(cr.branch.clone());
        meta.base_branch = Some(cr.base_branch.clone());
        meta.commit = Some(cr.base_commit.clone());
    }

    let mut sync_stats_ok = false;
    if let Some(dir) = &plan.sync_dir {
        let rules = IgnoreRules::new(
            dir,
            IgnoreOptions::new(
                plan.settings.sync.use_gitignore,
                plan.settings.sync.exclude_patterns.clone(),
            ),
        )?;
        progress.line(&format!("syncing {} to /workspace…", dir.display()));
        let r = remote.clone();
        let m = mode.clone();
        let state_path = plan.config_dir.join("sync").join(format!("{name}.json"));
        let dir2 = dir.clone();
        intr.run(move || {
            let mut p = Progress::new();
            let stats = crate::sync::engine::initial_sync(
                &r,
                &m,
                &rules,
                manifest::WORKSPACE_DIR,
                &mut |pr| p.update(&format!("sync: {}", pr.line())),
            )?;
            p.finish();
            if let Some(parent) = state_path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            crate::sync::engine::save_known(
                &state_path,
                &dir2,
                manifest::WORKSPACE_DIR,
                &stats.sent,
            )?;
            Ok(())
        })
        .map_err(|e| match e {
            Error::Interrupted => e,
            e => e.context("initial sync"),
        })?;
        sync_stats_ok = true;
    }

    // Record branch/commit on the pod and the workspace PVC.
    if meta != spec.meta {
        annotate(client, ns, name, spec, &meta)?;
    }
    if intr.fired() {
        return Err(Error::Interrupted);
    }

    // (5) Save the session file.
    let mut full_spec = spec.clone();
    full_spec.meta = meta.clone();
    let mut rec = SessionRecord::from_settings(name, ns, &plan.settings);
    rec.repo = plan.repo.as_ref().map(|r| r.url.display().to_string());
    rec.branch = meta.branch.clone();
    rec.base_branch = meta.base_branch.clone();
    rec.commit_hash = meta.commit.clone();
    rec.status = SessionStatus::Running;
    rec.sync = SyncRecord {
        enabled: plan.sync_dir.is_some() && sync_stats_ok,
        local_path: plan.sync_dir.as_ref().map(|d| d.display().to_string()),
        ..SyncRecord::default()
    };
    rec.env_secret_name = (!plan.inputs.env.is_empty()).then(|| names::env_secret(name));
    rec.env_names = plan.env.vars.keys().cloned().collect();
    rec.spec = yaml_serde::to_value(&full_spec).ok();
    store.save(&rec)?;

    // The run and the background sync come after the file exists.
    if let Some(prompt) = &plan.prompt {
        let access = match &mode {
            AgentMode::Agent { path } => Access::Binary(path.clone()),
            AgentMode::Fallback { .. } => Access::Shell,
        };
        let r = remote.clone();
        let p = prompt.clone();
        let agent = plan.settings.agent.clone();
        let id = intr
            .run(move || super::agentcmds::start_run_with(&r, &access, &agent, &p, false, false))
            .map_err(|e| match e {
                Error::Interrupted => e,
                e => e.context("starting the agent run"),
            })?;
        let now = config::time::now_rfc3339();
        store.update(name, |r| {
            r.agent = Some(AgentSummary {
                runs: 1,
                last_run_id: Some(id.clone()),
                last_run_status: Some("running".into()),
                last_run_started_at: Some(now),
            });
        })?;
        progress.line(&format!(
            "agent run {id} started; follow it with `kubectl kodama logs {name} -f`"
        ));
    }
    if plan.sync_dir.is_some() {
        if let Err(e) = syncd::spawn_daemon(ctx, name) {
            eprintln!(
                "warning: continuous sync did not start: {e}\n  start it with `kubectl kodama sync {name}`"
            );
        }
    }
    let branch = meta
        .branch
        .as_deref()
        .map(|b| format!("  branch: {b}\n"))
        .unwrap_or_default();
    super::print(&format!(
        "session \"{name}\" is running in namespace \"{ns}\"\n{branch}  attach: kubectl kodama attach {name} -n {ns}\n  status: kubectl kodama status {name} -n {ns}\n  delete: kubectl kodama delete {name} -n {ns}\n"
    ))
}

/// Create `obj`, or replace a leftover of the same name; record it for rollback.
fn put(client: &Client, ns: &str, kind: Kind, obj: &Value, rb: &mut Rollback) -> Result<()> {
    let oname = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let res = match kind {
        Kind::ConfigMap => &CONFIG_MAPS,
        _ => &SECRETS,
    };
    match client.create(res, Some(ns), obj) {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {
            client
                .delete(res, Some(ns), &oname, &Default::default())
                .map_err(|e| {
                    e.context(format!("replacing leftover {} {ns}/{oname}", kind.noun()))
                })?;
            client
                .create(res, Some(ns), obj)
                .map_err(|e| e.context(format!("creating {} {ns}/{oname}", kind.noun())))?;
        }
        Err(e) => return Err(e.context(format!("creating {} {ns}/{oname}", kind.noun()))),
    }
    rb.push(kind, &oname);
    Ok(())
}

/// Poll the two PVCs until they are Bound. Fails fast, with the way out, when the cluster cannot
/// provision them (no default StorageClass); proceeds when the class binds on first use.
fn wait_pvcs_bound(
    client: &Client,
    ns: &str,
    name: &str,
    deadline: Instant,
    intr: &Interrupt,
    progress: &mut Progress,
) -> Result<()> {
    let pvcs = [names::workspace_pvc(name), names::claude_home_pvc(name)];
    let mut last_events = Instant::now();
    loop {
        let mut pending = Vec::new();
        for p in &pvcs {
            let obj = client.get(&PERSISTENT_VOLUME_CLAIMS, Some(ns), p)?;
            let phase = obj
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending");
            if phase == "Lost" {
                return Err(Error::with_hint(
                    format!("volume {ns}/{p} is Lost (its PersistentVolume is gone)"),
                    format!("delete it with `kubectl delete pvc {p} -n {ns}` (its data is gone) and start again"),
                ));
            }
            if phase != "Bound" {
                pending.push(p.clone());
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        progress.update(&format!(
            "waiting for volumes to bind: {}",
            pending.join(", ")
        ));
        if last_events.elapsed() >= Duration::from_millis(400) {
            last_events = Instant::now();
            let mut first_consumer = true;
            for p in &pending {
                let evs = object_events(client, ns, "PersistentVolumeClaim", p);
                if evs.iter().any(|(r, _)| r == "WaitForFirstConsumer") {
                    continue;
                }
                first_consumer = false;
                if let Some((reason, msg)) = evs
                    .iter()
                    .find(|(r, _)| r == "FailedBinding" || r == "ProvisioningFailed")
                {
                    progress.finish();
                    return Err(Error::with_hint(
                        format!("volume {ns}/{p} stays Pending: {reason}: {msg}"),
                        "the cluster has no default StorageClass (or the class cannot provision): set `storage.storageClass` in the config or pass --storage-class NAME (see `kubectl get storageclass`)",
                    ));
                }
            }
            if first_consumer {
                return Ok(());
            }
        }
        if intr.fired() {
            return Err(Error::Interrupted);
        }
        if Instant::now() >= deadline {
            progress.finish();
            return Err(Error::with_hint(
                format!(
                    "volumes {} are still Pending at the deadline",
                    pending.join(", ")
                ),
                format!("check `kubectl describe pvc -n {ns} {}`; set `storage.storageClass` or --storage-class, or raise --timeout", pending.join(" ")),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (reason, message) of the events about one object, oldest first.
fn object_events(client: &Client, ns: &str, kind: &str, name: &str) -> Vec<(String, String)> {
    let opts = ListOptions {
        field_selector: Some(format!(
            "involvedObject.kind={kind},involvedObject.name={name}"
        )),
        ..ListOptions::default()
    };
    let Ok(list) = client.list(&EVENTS, Some(ns), &opts) else {
        return Vec::new();
    };
    list.get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|e| {
                    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("reason"), s("message"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Wait for the pod to be Ready with a live progress line; a failure names the reason and the way
/// out.
fn wait_ready(
    client: &Client,
    ns: &str,
    name: &str,
    deadline: Instant,
    intr: &Interrupt,
) -> Result<()> {
    let c = client.clone();
    let ns2 = ns.to_string();
    let pod = names::pod(name);
    let pod2 = pod.clone();
    let r = intr.run(move || {
        let mut p = Progress::new();
        let r = watch::wait_for_pod(&c, &ns2, &pod2, deadline, &mut |pp| {
            p.update(&describe_progress(&pod2, pp))
        });
        p.finish();
        r.map(|_| ())
    });
    r.map_err(|e| match e {
        Error::Interrupted => e,
        e => {
            let text = e.to_string();
            let hint = start_failure_hint(&text, ns, &pod);
            e.context(format!("waiting for pod {ns}/{pod} to become ready"))
                .hinted(hint)
        }
    })
}

/// The live progress line for one pod state.
pub fn describe_progress(pod: &str, p: &PodProgress) -> String {
    let stage = if p.ready {
        "ready".to_string()
    } else if p.scheduled != Some(true) {
        match &p.message {
            Some(m) if p.scheduled == Some(false) => format!("scheduling ({m})"),
            _ => "scheduling".to_string(),
        }
    } else {
        match p.waiting_reason.as_deref() {
            Some("ContainerCreating") => "pulling image / starting container".to_string(),
            Some(r) => format!("starting ({r})"),
            None => format!("starting ({})", p.phase),
        }
    };
    format!("waiting for pod {pod}: {stage}")
}

/// What to do about a start that failed while waiting for the pod.
pub fn start_failure_hint(text: &str, ns: &str, pod: &str) -> String {
    if text.contains("ImagePullBackOff")
        || text.contains("ErrImagePull")
        || text.contains("InvalidImageName")
    {
        "the image cannot be pulled: check its name and tag (`defaults.image` in ~/.kodama/config.yaml or --image), and that the cluster can reach the registry (imagePullSecrets for a private one)".to_string()
    } else if text.contains("Unschedulable")
        || text.contains("Insufficient")
        || text.contains("FailedScheduling")
    {
        "no node can run the pod: lower --cpu/--memory/--resource, free resources in the cluster, or check nodeSelector/tolerations in the config".to_string()
    } else if text.contains("unbound") || text.contains("PersistentVolumeClaim") {
        "the volumes are not bound: set `storage.storageClass` or pass --storage-class NAME (see `kubectl get storageclass`)".to_string()
    } else if text.contains("deadline") || text.contains("timed out") {
        format!(
            "raise --timeout (or `timeouts.start`), and see `kubectl describe pod {pod} -n {ns}`"
        )
    } else {
        format!("see `kubectl describe pod {pod} -n {ns}`")
    }
}

/// Clone (or find an existing clone of) the repository in the pod.
fn clone(
    plan: &Plan,
    repo: &RepoPlan,
    remote: &PodRemote,
    intr: &Interrupt,
    reused_workspace: bool,
) -> Result<git::clone::CloneResult> {
    let s = &plan.settings;
    let bp: BranchPlan = git::branch::plan(
        &plan.name,
        &s.git.branch_prefix,
        s.git.auto_branch,
        s.branch.as_deref(),
        repo.local_branch.as_deref(),
        crate::run::now_secs(),
    )?;
    let mut p = CloneParams::new(repo.url.clone(), bp);
    let (ln, le) = git::local::identity(&repo.local_dir);
    p.user_name = s.git.user_name.clone().or(ln);
    p.user_email = s.git.user_email.clone().or(le);
    if plan.spec.ssh.is_some() {
        p.ssh_key = Some(format!("{}/identity", manifest::SSH_DIR));
    }
    p.known_hosts = match s.git.known_hosts {
        config::KnownHosts::AcceptNew => git::clone::KnownHosts::AcceptNew,
        config::KnownHosts::Strict => git::clone::KnownHosts::Strict,
        config::KnownHosts::Off => git::clone::KnownHosts::Off,
    };
    let token = ["GITHUB_TOKEN", "GH_TOKEN"]
        .iter()
        .any(|n| plan.env.vars.contains_key(*n));
    for w in git::clone::clone_warnings(&p, token) {
        eprintln!("warning: {w}");
    }
    let secrets: Vec<Secret> = plan.env.vars.values().cloned().collect();
    let r = remote.clone();
    let what = if reused_workspace {
        "checking the existing workspace clone of"
    } else {
        "cloning"
    };
    eprintln!("{what} {} into /workspace…", repo.url.display());
    intr.run(move || {
        let refs: Vec<&Secret> = secrets.iter().collect();
        let mut pr = Progress::new();
        // git redraws its counters in place with \r; without a terminal those redraws are noise in
        // logs and CI output, so only whole messages are shown there.
        let tty = crate::term::stderr_is_tty();
        let out = git::clone::run_clone(&r, &p, &refs, &mut |l| {
            if tty || !(l.contains('\r') || l.contains('%')) {
                pr.update(&format!("git: {l}"));
            }
        });
        pr.finish();
        out
    })
    .map_err(|e| match e {
        Error::Interrupted => e,
        e => e.context(format!("cloning {}", repo.given)),
    })
}

/// Record the session metadata (branch, base branch, commit) on the pod and the workspace PVC, and
/// refresh the PVC's stored spec so a teammate's resume sees it.
fn annotate(
    client: &Client,
    ns: &str,
    name: &str,
    spec: &SessionSpec,
    meta: &SessionMeta,
) -> Result<()> {
    let mut ann: BTreeMap<&str, Value> = BTreeMap::new();
    for (k, v) in [
        (annotations::BRANCH, &meta.branch),
        (annotations::BASE_BRANCH, &meta.base_branch),
        (annotations::COMMIT, &meta.commit),
    ] {
        if let Some(v) = v {
            ann.insert(k, json!(v));
        }
    }
    let body = json!({"metadata": {"annotations": ann}});
    client
        .patch(
            &PODS,
            Some(ns),
            &names::pod(name),
            crate::kube::request::PatchKind::Merge,
            &body,
        )
        .map_err(|e| e.context("recording the branch on the pod"))?;
    let mut full = spec.clone();
    full.meta = meta.clone();
    let mut pvc_ann = ann.clone();
    if let Ok(s) = serde_json::to_string(&full) {
        pvc_ann.insert(annotations::SPEC, json!(s));
    }
    client
        .patch(
            &PERSISTENT_VOLUME_CLAIMS,
            Some(ns),
            &names::workspace_pvc(name),
            crate::kube::request::PatchKind::Merge,
            &json!({"metadata": {"annotations": pvc_ann}}),
        )
        .map_err(|e| e.context("recording the branch on the workspace volume"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_name_the_stage() {
        let mut p = PodProgress {
            phase: "Pending".into(),
            scheduled: None,
            waiting_reason: None,
            message: None,
            ready: false,
        };
        assert_eq!(
            describe_progress("kodama-x", &p),
            "waiting for pod kodama-x: scheduling"
        );
        p.scheduled = Some(true);
        p.waiting_reason = Some("ContainerCreating".into());
        assert!(describe_progress("kodama-x", &p).contains("pulling image"));
        p.ready = true;
        assert!(describe_progress("kodama-x", &p).ends_with("ready"));
    }

    #[test]
    fn failure_hints_give_a_way_out() {
        assert!(start_failure_hint("ImagePullBackOff: x", "ns", "p").contains("--image"));
        assert!(start_failure_hint("0/1 nodes: Insufficient cpu", "ns", "p").contains("--cpu"));
        assert!(start_failure_hint("something else", "ns", "p")
            .contains("kubectl describe pod p -n ns"));
    }
}
