//! The object builders: Pod, the two PVCs, the editor ConfigMap and the two Secrets of a session.
//! Pure functions of their inputs; every map is a `BTreeMap` and every list is sorted, so the
//! output is byte-for-byte stable.
//!
//! May import: error, secret, manifest (siblings), serde_json, base64.

use super::annotations as ann;
use super::editor::{KEY_HELIX_CONFIG, KEY_HELIX_LANGUAGES, KEY_ZELLIJ_CONFIG};
use super::{names, quantity, EditorConfig, KnownHosts, SessionInputs, SessionMeta, SessionSpec};
use super::{CLAUDE_HOME_DIR, CONFIG_DIR, HOME_DIR, IDLE_SCRIPT, MAIN_CONTAINER, SSH_DIR};
use super::{TERMINATION_GRACE_SECONDS, USER_ID, USER_NAME, WORKSPACE_DIR};
use crate::error::{Error, Result};
use crate::secret::Secret;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Where ssh records host keys it accepted on first use (on the claude-home PVC).
pub const KNOWN_HOSTS_FILE: &str = "/home/kodama/.claude/kodama_known_hosts";

/// The API server's limit on the sum of a Secret's (or ConfigMap's) decoded values.
pub const ENV_SIZE_LIMIT: usize = 1024 * 1024;

/// Session metadata → annotations (only the fields that are set).
fn meta_annotations(spec: &SessionSpec) -> BTreeMap<String, String> {
    let m = &spec.meta;
    let mut a = BTreeMap::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            a.insert(k.to_string(), v.clone());
        }
    };
    put(ann::REPO, &m.repo);
    put(ann::BRANCH, &m.branch);
    put(ann::BASE_BRANCH, &m.base_branch);
    put(ann::COMMIT, &m.commit);
    put(ann::CREATED_BY, &m.created_by);
    put(ann::CREATED_AT, &m.created_at);
    put(ann::VERSION, &m.kodama_version);
    put(ann::AGENT_COMMAND, &m.agent_command);
    a.insert(ann::IMAGE.to_string(), spec.image.clone());
    a
}

/// Read the session metadata back from any kodama object's annotations (pod or PVC).
pub fn meta_from_annotations(obj: &Value) -> SessionMeta {
    let a = &obj["metadata"]["annotations"];
    let get = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
    SessionMeta {
        repo: get(ann::REPO),
        branch: get(ann::BRANCH),
        base_branch: get(ann::BASE_BRANCH),
        commit: get(ann::COMMIT),
        created_by: get(ann::CREATED_BY),
        created_at: get(ann::CREATED_AT),
        kodama_version: get(ann::VERSION),
        agent_command: get(ann::AGENT_COMMAND),
    }
}

/// The session spec stored on the workspace PVC (with the metadata from the other annotations), or
/// None when the object has no (or an unreadable) `kodama.dev/spec` annotation.
pub fn spec_from_annotations(obj: &Value) -> Option<SessionSpec> {
    let text = obj["metadata"]["annotations"][ann::SPEC].as_str()?;
    let mut spec: SessionSpec = serde_json::from_str(text).ok()?;
    spec.meta = meta_from_annotations(obj);
    Some(spec)
}

fn metadata(
    spec: &SessionSpec,
    name: String,
    component: &str,
    annotations: Option<BTreeMap<String, String>>,
) -> Value {
    let mut m = json!({
        "name": name,
        "namespace": spec.namespace,
        "labels": names::labels(&spec.name, component),
    });
    if let Some(a) = annotations {
        if !a.is_empty() {
            m["annotations"] = json!(a);
        }
    }
    m
}

fn env_var(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

/// The main container's plain env (never secret): kodama's own variables. Pod `env` wins over
/// `envFrom`, and `envfile` drops these names from dotenv files anyway.
fn container_env(spec: &SessionSpec) -> Vec<Value> {
    let mut env = vec![
        env_var("HOME", HOME_DIR),
        env_var("USER", USER_NAME),
        env_var("LOGNAME", USER_NAME),
        env_var("TERM", "xterm-256color"),
        // Claude Code keeps its settings *and* its `.claude.json` here, so both persist on the PVC.
        env_var("CLAUDE_CONFIG_DIR", CLAUDE_HOME_DIR),
        env_var("KODAMA_SESSION", &spec.name),
        env_var("KODAMA_NAMESPACE", &spec.namespace),
        // A volume's root belongs to root (with the session's fsGroup), which git refuses as
        // "dubious ownership". Trust /workspace through git's command-line config in the
        // environment: every git in the pod (shells, the agent, kodama's own execs) sees it, it
        // survives container restarts, and nothing is written to a config file.
        env_var("GIT_CONFIG_COUNT", "1"),
        env_var("GIT_CONFIG_KEY_0", "safe.directory"),
        env_var("GIT_CONFIG_VALUE_0", WORKSPACE_DIR),
    ];
    if let Some(ssh) = &spec.ssh {
        let checking = match ssh.known_hosts {
            // Recorded on the claude-home PVC, so trust-on-first-use survives restarts (and the
            // runtime may have created ~/.ssh read-only for secret-file mounts).
            KnownHosts::AcceptNew => format!(
                "-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={KNOWN_HOSTS_FILE}"
            ),
            KnownHosts::Strict => {
                format!("-o StrictHostKeyChecking=yes -o UserKnownHostsFile={SSH_DIR}/known_hosts")
            }
            KnownHosts::Off => {
                "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null".to_string()
            }
        };
        env.push(env_var(
            "GIT_SSH_COMMAND",
            &format!("ssh -i {SSH_DIR}/identity -o IdentitiesOnly=yes {checking}"),
        ));
    }
    env
}

fn resources(spec: &SessionSpec) -> Result<Value> {
    let r = &spec.resources;
    let bad = |e: String| Error::msg(format!("invalid resources: {e}"));
    let cpu = quantity::parse_cpu_millis(&r.cpu).map_err(bad)?;
    let mem = quantity::parse_bytes(&r.memory).map_err(bad)?;
    let cpu_req = match &r.cpu_request {
        Some(q) => quantity::parse_cpu_millis(q).map_err(bad)?,
        None => quantity::default_cpu_request(cpu),
    };
    let mem_req = match &r.memory_request {
        Some(q) => quantity::parse_bytes(q).map_err(bad)?,
        None => quantity::default_memory_request(mem),
    };
    let mut limits = BTreeMap::from([
        ("cpu".to_string(), quantity::format_millis(cpu)),
        ("memory".to_string(), quantity::format_bytes(mem)),
    ]);
    let mut requests = BTreeMap::from([
        ("cpu".to_string(), quantity::format_millis(cpu_req)),
        ("memory".to_string(), quantity::format_bytes(mem_req)),
    ]);
    for (k, v) in &r.extra {
        // Extended resources cannot be overcommitted: request = limit (the API requires it).
        limits.insert(k.clone(), v.clone());
        requests.insert(k.clone(), v.clone());
    }
    Ok(json!({ "limits": limits, "requests": requests }))
}

/// The restricted-PSS security context of the container.
fn container_security_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": { "drop": ["ALL"] },
        "privileged": false,
        "runAsNonRoot": true,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "seccompProfile": { "type": "RuntimeDefault" },
    })
}

/// Build the session pod `kodama-<name>`. Validates `spec` first.
pub fn build_pod(spec: &SessionSpec) -> Result<Value> {
    spec.validate()?;
    let name = &spec.name;
    let mut volumes: BTreeMap<&str, Value> = BTreeMap::new();
    let mut mounts: Vec<Value> = Vec::new();
    let mut mount = |vol: &str, path: &str, read_only: bool, sub_path: Option<&str>| {
        let mut m = json!({ "name": vol, "mountPath": path });
        if read_only {
            m["readOnly"] = json!(true);
        }
        if let Some(s) = sub_path {
            m["subPath"] = json!(s);
        }
        mounts.push(m);
    };

    volumes.insert(
        "workspace",
        json!({ "name": "workspace", "persistentVolumeClaim": { "claimName": names::workspace_pvc(name) } }),
    );
    mount("workspace", WORKSPACE_DIR, false, None);
    // A fresh writable home for uid 1000 whatever the image ships (images rarely have a home for
    // that uid); what must survive lives on the PVCs.
    if !spec.image_home {
        volumes.insert("home", json!({ "name": "home", "emptyDir": {} }));
        mount("home", HOME_DIR, false, None);
    }
    volumes.insert(
        "claude-home",
        json!({ "name": "claude-home", "persistentVolumeClaim": { "claimName": names::claude_home_pvc(name) } }),
    );
    mount("claude-home", CLAUDE_HOME_DIR, false, None);
    // ~/.config is its own emptyDir so it stays writable (gh, git, …) although the runtime creates
    // the editor mount points inside it.
    volumes.insert(
        "config-home",
        json!({ "name": "config-home", "emptyDir": {} }),
    );
    mount("config-home", CONFIG_DIR, false, None);
    let cm = names::editor_config_map(name);
    volumes.insert(
        "editor-helix",
        json!({ "name": "editor-helix", "configMap": { "name": cm, "items": [
            { "key": KEY_HELIX_CONFIG, "path": "config.toml" },
            { "key": KEY_HELIX_LANGUAGES, "path": "languages.toml" },
        ] } }),
    );
    mount("editor-helix", &format!("{CONFIG_DIR}/helix"), true, None);
    volumes.insert(
        "editor-zellij",
        json!({ "name": "editor-zellij", "configMap": { "name": cm, "items": [
            { "key": KEY_ZELLIJ_CONFIG, "path": "config.kdl" },
        ] } }),
    );
    mount("editor-zellij", &format!("{CONFIG_DIR}/zellij"), true, None);

    if let Some(ssh) = &spec.ssh {
        let mut items = vec![json!({ "key": ssh.key, "path": "identity", "mode": 0o400 })];
        if ssh.known_hosts == KnownHosts::Strict {
            items.push(json!({ "key": "known_hosts", "path": "known_hosts", "mode": 0o440 }));
        }
        volumes.insert(
            "ssh-key",
            json!({ "name": "ssh-key", "secret": {
                "secretName": ssh.secret_name, "defaultMode": 0o400, "items": items,
            } }),
        );
        mount("ssh-key", SSH_DIR, true, None);
    }

    if !spec.secret_files.is_empty() {
        let mut files = spec.secret_files.clone();
        files.sort_by(|a, b| a.key.cmp(&b.key));
        let items: Vec<Value> = files
            .iter()
            .map(|f| json!({ "key": f.key, "path": f.key, "mode": f.mode }))
            .collect();
        volumes.insert(
            "secret-files",
            json!({ "name": "secret-files", "secret": {
                "secretName": names::files_secret(name), "defaultMode": 0o400, "items": items,
            } }),
        );
        for f in &files {
            mount("secret-files", &f.path, true, Some(&f.key));
        }
    }
    mounts.sort_by(|a, b| {
        a["mountPath"]
            .as_str()
            .cmp(&b["mountPath"].as_str())
            .then_with(|| a["name"].as_str().cmp(&b["name"].as_str()))
    });

    let command: Vec<String> = match &spec.command {
        Some(c) => c.clone(),
        None => vec!["sh".into(), "-c".into(), IDLE_SCRIPT.into()],
    };
    let mut container = json!({
        "name": MAIN_CONTAINER,
        "image": spec.image,
        "command": command,
        "workingDir": WORKSPACE_DIR,
        "stdin": true,
        "tty": true,
        "env": container_env(spec),
        "resources": resources(spec)?,
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    });
    if let Some(p) = &spec.image_pull_policy {
        container["imagePullPolicy"] = json!(p);
    }
    if spec.env_secret {
        container["envFrom"] = json!([{ "secretRef": { "name": names::env_secret(name) } }]);
    }

    let mut annotations = meta_annotations(spec);
    annotations.insert(
        ann::DEFAULT_CONTAINER.to_string(),
        MAIN_CONTAINER.to_string(),
    );
    let mut pod_spec = json!({
        "automountServiceAccountToken": spec.automount_token,
        "containers": [container],
        // No *_SERVICE_HOST/PORT variables for every Service in the namespace.
        "enableServiceLinks": false,
        // The main process is an idle shell: if it ever dies, bring the session back.
        "restartPolicy": "Always",
        "securityContext": {
            "fsGroup": USER_ID,
            // Skip the recursive chown of a large workspace when the PVC root already matches.
            "fsGroupChangePolicy": "OnRootMismatch",
            "runAsGroup": USER_ID,
            "runAsNonRoot": true,
            "runAsUser": USER_ID,
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "volumes": volumes.into_values().collect::<Vec<_>>(),
    });
    if let Some(sa) = &spec.service_account {
        pod_spec["serviceAccountName"] = json!(sa);
    }
    if !spec.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(spec.node_selector);
    }
    if !spec.tolerations.is_empty() {
        pod_spec["tolerations"] = json!(spec.tolerations);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(spec, names::pod(name), "session", Some(annotations)),
        "spec": pod_spec,
    }))
}

fn pvc(
    spec: &SessionSpec,
    name: String,
    component: &str,
    size: &str,
    annotations: BTreeMap<String, String>,
) -> Result<Value> {
    let bytes = quantity::parse_bytes(size)
        .map_err(|e| Error::msg(format!("invalid size {size:?}: {e}")))?;
    let mut s = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": { "requests": { "storage": quantity::format_bytes(bytes) } },
    });
    if let Some(sc) = &spec.storage.storage_class {
        s["storageClassName"] = json!(sc);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(spec, name, component, Some(annotations)),
        "spec": s,
    }))
}

/// The JSON of `spec` without its metadata (which has annotations of its own), for
/// [`annotations::SPEC`](super::annotations::SPEC).
fn spec_json(spec: &SessionSpec) -> Result<String> {
    let mut bare = spec.clone();
    bare.meta = SessionMeta::default();
    serde_json::to_string(&bare).map_err(|e| Error::msg(format!("encoding the session spec: {e}")))
}

/// The workspace PVC `kodama-workspace-<name>` (mounted at /workspace). Besides the metadata it
/// carries the whole spec (no secret values) in `kodama.dev/spec`, so a session whose pod is gone
/// (stopped) can be resumed from the cluster alone: see [`spec_from_annotations`].
pub fn build_workspace_pvc(spec: &SessionSpec) -> Result<Value> {
    spec.validate()?;
    let mut a = meta_annotations(spec);
    a.insert(ann::SPEC.to_string(), spec_json(spec)?);
    pvc(
        spec,
        names::workspace_pvc(&spec.name),
        "workspace",
        &spec.storage.workspace,
        a,
    )
}

/// The claude-home PVC `kodama-claude-home-<name>` (mounted at ~/.claude).
pub fn build_claude_home_pvc(spec: &SessionSpec) -> Result<Value> {
    spec.validate()?;
    pvc(
        spec,
        names::claude_home_pvc(&spec.name),
        "claude-home",
        &spec.storage.claude_home,
        meta_annotations(spec),
    )
}

/// The editor ConfigMap `kodama-editor-config-<name>`.
pub fn build_editor_config_map(spec: &SessionSpec, editor: &EditorConfig) -> Result<Value> {
    spec.validate()?;
    let data: BTreeMap<&str, &str> = editor.data().into_iter().collect();
    let total: usize = data.values().map(|v| v.len()).sum();
    if total > ENV_SIZE_LIMIT {
        return Err(Error::msg(format!(
            "the editor configs total {total} bytes; a ConfigMap holds at most 1 MiB"
        )));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(spec, names::editor_config_map(&spec.name), "editor-config", None),
        "data": data,
    }))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn opaque_secret(
    spec: &SessionSpec,
    name: String,
    component: &str,
    data: Map<String, Value>,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(spec, name, component, None),
        "type": "Opaque",
        "data": data,
    })
}

/// The env Secret `kodama-env-<name>` (injected with envFrom). Keys must be valid Secret keys and
/// the values must total at most 1 MiB. Error messages name keys, never values.
pub fn build_env_secret(spec: &SessionSpec, env: &BTreeMap<String, Secret>) -> Result<Value> {
    spec.validate()?;
    let mut faults = Vec::new();
    let mut total = 0usize;
    let mut data = Map::new();
    for (k, v) in env {
        if !names::is_config_key(k) {
            faults.push(format!("{k:?} is not a valid Secret key"));
        }
        total += v.expose().len();
        data.insert(k.clone(), json!(b64(v.expose().as_bytes())));
    }
    if total > ENV_SIZE_LIMIT {
        faults.push(format!(
            "the environment values total {total} bytes; a Secret holds at most {ENV_SIZE_LIMIT} bytes (1 MiB)"
        ));
    }
    if !faults.is_empty() {
        return Err(Error::Invalid {
            what: format!("env Secret {}", names::env_secret(&spec.name)),
            faults,
            hint: None,
        });
    }
    Ok(opaque_secret(
        spec,
        names::env_secret(&spec.name),
        "env",
        data,
    ))
}

/// The secret-files Secret `kodama-files-<name>`.
pub fn build_files_secret(spec: &SessionSpec, files: &[super::SecretFile]) -> Result<Value> {
    spec.validate()?;
    let total: usize = files.iter().map(|f| f.content.len()).sum();
    if total > ENV_SIZE_LIMIT {
        return Err(Error::msg(format!(
            "the secret files total {total} bytes; a Secret holds at most 1 MiB"
        )));
    }
    let mut data = Map::new();
    for f in files {
        if data
            .insert(f.mount.key.clone(), json!(b64(f.content.expose())))
            .is_some()
        {
            return Err(Error::msg(format!(
                "secret file key {} is used twice",
                f.mount.key
            )));
        }
    }
    Ok(opaque_secret(
        spec,
        names::files_secret(&spec.name),
        "files",
        data,
    ))
}

/// Every object of a new session, in creation order: workspace PVC, claude-home PVC, editor
/// ConfigMap, env Secret (when there are variables), files Secret (when there are files), Pod.
/// `spec`'s `env_secret` and `secret_files` are derived from `inputs` here (see
/// [`SessionInputs::apply_to`], which the caller uses to store the same spec).
pub fn build_all(spec: &SessionSpec, inputs: &SessionInputs) -> Result<Vec<Value>> {
    let mut spec = spec.clone();
    inputs.apply_to(&mut spec);
    spec.validate()?;
    let mut out = vec![
        build_workspace_pvc(&spec)?,
        build_claude_home_pvc(&spec)?,
        build_editor_config_map(&spec, &inputs.editor)?,
    ];
    if !inputs.env.is_empty() {
        out.push(build_env_secret(&spec, &inputs.env)?);
    }
    if !inputs.files.is_empty() {
        out.push(build_files_secret(&spec, &inputs.files)?);
    }
    out.push(build_pod(&spec)?);
    Ok(out)
}
