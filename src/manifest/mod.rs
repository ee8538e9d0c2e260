//! Pure builders: session parameters → Pod, PVCs, ConfigMap, Secrets (golden-file tested), plus the
//! restricted Pod Security Standard checker and the dry-run renderer.
//!
//! Inputs are plain data ([`SessionSpec`], which holds no secret values and can be stored to rebuild
//! the pod on resume, and [`SessionInputs`], which holds the env values, secret file contents and
//! editor files). Outputs are `serde_json::Value` objects ready to POST, built in a deterministic
//! order (sorted maps, sorted lists) so that golden files compare byte for byte.
//!
//! May import: error, secret, config (its pure rules: names, quantities, shared value types) (and
//! std, serde, serde_json, base64). Reading local files is limited to
//! [`editor::load`] and [`secret_files::load`].

pub mod editor;
pub mod names;
mod objects;
pub mod pss;
pub mod quantity;
pub mod render;
pub mod secret_files;
pub mod yaml;

pub use editor::EditorConfig;
pub use objects::{
    build_all, build_claude_home_pvc, build_editor_config_map, build_env_secret,
    build_files_secret, build_pod, build_workspace_pvc, meta_from_annotations,
    spec_from_annotations, ENV_SIZE_LIMIT, KNOWN_HOSTS_FILE,
};
pub use render::{render_dry_run, OutputFormat};
pub use secret_files::{SecretFile, SecretFileMount, SecretFileRef};

use crate::error::{Error, Result};
use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Name of the session's one container.
pub const MAIN_CONTAINER: &str = "session";
/// The session user's name (`USER`, `LOGNAME`).
pub const USER_NAME: &str = "kodama";
/// The session user's uid, gid and fsGroup.
pub const USER_ID: i64 = 1000;
/// The session user's home (`HOME`).
pub const HOME_DIR: &str = "/home/kodama";
/// Where the workspace PVC is mounted (also the working directory).
pub const WORKSPACE_DIR: &str = "/workspace";
/// Where the claude-home PVC is mounted (`CLAUDE_CONFIG_DIR` points here too).
pub const CLAUDE_HOME_DIR: &str = "/home/kodama/.claude";
/// The writable `~/.config` (an emptyDir; the editor configs are mounted inside it).
pub const CONFIG_DIR: &str = "/home/kodama/.config";
/// Where the SSH key Secret (`git.secretName`) is mounted.
pub const SSH_DIR: &str = "/etc/kodama/ssh";
/// The default main-container command: an idle process that needs only a POSIX shell, stops at once
/// on SIGTERM, ignores SIGINT (a Ctrl-C from `kubectl attach` must not end the session), and keeps
/// the container (and so the session) alive between attaches.
pub const IDLE_SCRIPT: &str =
    "trap 'exit 0' TERM; trap '' INT; while :; do sleep 3600 & wait $!; done";
/// Grace period on delete: the idle shell exits on TERM right away.
pub const TERMINATION_GRACE_SECONDS: i64 = 10;

/// Annotation keys that carry the session's metadata on the pod and the workspace PVC.
pub mod annotations {
    pub const REPO: &str = "kodama.dev/repo";
    pub const BRANCH: &str = "kodama.dev/branch";
    pub const BASE_BRANCH: &str = "kodama.dev/base-branch";
    pub const COMMIT: &str = "kodama.dev/commit";
    pub const CREATED_BY: &str = "kodama.dev/created-by";
    pub const CREATED_AT: &str = "kodama.dev/created-at";
    pub const VERSION: &str = "kodama.dev/version";
    pub const IMAGE: &str = "kodama.dev/image";
    pub const AGENT_COMMAND: &str = "kodama.dev/agent-command";
    /// The whole [`SessionSpec`](super::SessionSpec) as JSON (no secret values), on the workspace
    /// PVC only.
    pub const SPEC: &str = "kodama.dev/spec";
    /// kubectl's default container for `exec`/`attach`/`logs`.
    pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
}

/// Everything needed to build a session's objects, without secret values. Serialisable so the
/// session store can keep it and `resume` can rebuild the identical pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSpec {
    /// Session name: DNS-1123 label (a leading digit is allowed), at most 40 characters.
    pub name: String,
    pub namespace: String,
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`; None leaves the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    pub resources: ResourceSpec,
    pub storage: StorageSpec,
    /// True when the env Secret `kodama-env-<name>` exists and is injected with envFrom.
    /// [`SessionInputs::apply_to`] sets it.
    #[serde(default)]
    pub env_secret: bool,
    /// Secret files mounted from `kodama-files-<name>`. [`SessionInputs::apply_to`] sets them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<SecretFileMount>,
    /// An existing Secret with an SSH key for git (`git.secretName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Mount the service-account token (off unless configured).
    #[serde(default)]
    pub automount_token: bool,
    /// Use the image's own `/home/kodama` instead of a fresh emptyDir. Only for images that ship a
    /// home writable by uid 1000 with tools installed in it; `~/.claude` and `~/.config` are still
    /// mounted inside it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub image_home: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Main container command; None runs [`IDLE_SCRIPT`] under `sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub meta: SessionMeta,
}

/// CPU and memory limits (validated quantities), optional explicit requests, extended resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpec {
    pub cpu: String,
    pub memory: String,
    /// Explicit CPU request; default a quarter of the limit, at least 100m, at most the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    /// Explicit memory request; default half the limit, at least 128Mi, at most the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    /// Extended resources such as `nvidia.com/gpu: "1"` (request = limit), or `ephemeral-storage`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl Default for ResourceSpec {
    fn default() -> Self {
        // The defaults are config's (`config::settings::DEFAULT_*`), the one place they are set.
        ResourceSpec {
            cpu: crate::config::settings::DEFAULT_CPU.into(),
            memory: crate::config::settings::DEFAULT_MEMORY.into(),
            cpu_request: None,
            memory_request: None,
            extra: BTreeMap::new(),
        }
    }
}

/// PVC sizes and class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    pub workspace: String,
    pub claude_home: String,
    /// None uses the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            workspace: crate::config::settings::DEFAULT_WORKSPACE.into(),
            claude_home: crate::config::settings::DEFAULT_CLAUDE_HOME.into(),
            storage_class: None,
        }
    }
}

/// An existing Secret holding an SSH private key for git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshSpec {
    pub secret_name: String,
    /// The key inside the Secret that holds the private key (`ssh-privatekey`, as
    /// `kubectl create secret generic --from-file=ssh-privatekey=…` and the `kubernetes.io/ssh-auth`
    /// type use).
    #[serde(default = "default_ssh_key")]
    pub key: String,
    #[serde(default)]
    pub known_hosts: KnownHosts,
}

fn default_ssh_key() -> String {
    "ssh-privatekey".into()
}

/// How ssh treats unknown host keys (`AcceptNew` records first-seen hosts on the claude-home PVC in
/// [`KNOWN_HOSTS_FILE`]; `Strict` trusts only the `known_hosts` key of the SSH Secret; `Off` checks
/// nothing), and a pod toleration. Both are defined once, in `config::layer`, and re-exported here.
pub use crate::config::layer::{KnownHosts, Toleration};

/// The session metadata carried as annotations (so a teammate's `list` can show it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Who started it (e.g. the local `user@host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// RFC 3339 creation time (the caller supplies it: builders never read the clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// kodama version that built the objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kodama_version: Option<String>,
    /// The coding-agent command line, if the session runs one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_command: Option<String>,
}

/// The values that go into Secrets and the ConfigMap. Debug never shows a secret value.
#[derive(Debug, Clone, Default)]
pub struct SessionInputs {
    pub editor: EditorConfig,
    /// Env variables for `kodama-env-<name>` (names already validated by `envfile`).
    pub env: BTreeMap<String, Secret>,
    /// Secret files for `kodama-files-<name>` (from [`secret_files::load`]).
    pub files: Vec<SecretFile>,
}

impl SessionInputs {
    /// Record in `spec` what the pod needs to know about these inputs: whether the env Secret
    /// exists, and the secret file mounts.
    pub fn apply_to(&self, spec: &mut SessionSpec) {
        spec.env_secret = !self.env.is_empty();
        spec.secret_files = self.files.iter().map(|f| f.mount.clone()).collect();
        spec.secret_files.sort();
    }
}

const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

impl SessionSpec {
    /// A spec with kodama's defaults for everything but the name, namespace and image.
    pub fn new(name: &str, namespace: &str, image: &str) -> SessionSpec {
        SessionSpec {
            name: name.into(),
            namespace: namespace.into(),
            image: image.into(),
            image_pull_policy: None,
            resources: ResourceSpec::default(),
            storage: StorageSpec::default(),
            env_secret: false,
            secret_files: Vec::new(),
            ssh: None,
            service_account: None,
            automount_token: false,
            image_home: false,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            command: None,
            meta: SessionMeta::default(),
        }
    }

    /// Check every field; all faults are reported in one `Error::Invalid`.
    pub fn validate(&self) -> Result<()> {
        let f = self.faults();
        if f.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid {
                what: format!("session {:?}", self.name),
                faults: f,
                hint: Some(
                    "fix the flags or the config keys named above (quantities look like 500m, 2, 4Gi)"
                        .into(),
                ),
            })
        }
    }

    /// Every fault of the spec, empty when it is valid.
    pub fn faults(&self) -> Vec<String> {
        let mut f = names::session_name_faults(&self.name);
        if !names::is_dns1123_label(&self.namespace) {
            f.push(format!(
                "namespace {:?} is not a valid namespace name (lowercase letters, digits, '-', at most 63)",
                self.namespace
            ));
        }
        if self.image.is_empty()
            || self
                .image
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            f.push(format!(
                "image {:?} is empty or contains whitespace",
                self.image
            ));
        }
        if let Some(p) = &self.image_pull_policy {
            if !PULL_POLICIES.contains(&p.as_str()) {
                f.push(format!(
                    "imagePullPolicy {p:?} must be one of Always, IfNotPresent, Never"
                ));
            }
        }
        f.extend(self.resource_faults());
        for (what, q) in [
            ("storage.workspace", &self.storage.workspace),
            ("storage.claudeHome", &self.storage.claude_home),
        ] {
            match quantity::parse_bytes(q) {
                Ok(0) => f.push(format!("{what} {q:?} must be larger than zero")),
                Ok(_) => {}
                Err(e) => f.push(format!("{what} {q:?}: {e}")),
            }
        }
        if let Some(sc) = &self.storage.storage_class {
            if !names::is_dns1123_subdomain(sc) {
                f.push(format!(
                    "storageClass {sc:?} is not a valid StorageClass name"
                ));
            }
        }
        if let Some(sa) = &self.service_account {
            if !names::is_dns1123_subdomain(sa) {
                f.push(format!(
                    "serviceAccount {sa:?} is not a valid ServiceAccount name"
                ));
            }
        }
        if let Some(ssh) = &self.ssh {
            if !names::is_dns1123_subdomain(&ssh.secret_name) {
                f.push(format!(
                    "git.secretName {:?} is not a valid Secret name",
                    ssh.secret_name
                ));
            }
            if !names::is_config_key(&ssh.key) {
                f.push(format!(
                    "git SSH key name {:?} is not a valid Secret key",
                    ssh.key
                ));
            }
        }
        for (k, v) in &self.node_selector {
            if !names::is_qualified_name(k) {
                f.push(format!("nodeSelector key {k:?} is not a valid label key"));
            }
            if !names::is_label_value(v) {
                f.push(format!(
                    "nodeSelector value {v:?} (key {k:?}) is not a valid label value"
                ));
            }
        }
        for (i, t) in self.tolerations.iter().enumerate() {
            f.extend(toleration_faults(i, t));
        }
        if let Some(cmd) = &self.command {
            if cmd.first().is_none_or(|c| c.is_empty()) {
                f.push("command must not be empty".into());
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.secret_files {
            if !names::is_config_key(&m.key) || m.mode > 0o777 {
                f.push(format!("secret file mount {:?} is malformed", m.path));
            }
            match secret_files::check_destination(&m.path) {
                Ok(p) if p == m.path => {}
                Ok(_) => f.push(format!(
                    "secret file destination {:?} is not expanded",
                    m.path
                )),
                Err(e) => f.push(format!("secret file {e}")),
            }
            if !seen.insert(&m.path) {
                f.push(format!("secret file destination {} is used twice", m.path));
            }
        }
        f
    }

    fn resource_faults(&self) -> Vec<String> {
        let r = &self.resources;
        let mut f = Vec::new();
        let cpu = match quantity::parse_cpu_millis(&r.cpu) {
            Ok(0) => {
                f.push(format!("cpu {:?} must be at least 1m", r.cpu));
                None
            }
            Ok(m) => Some(m),
            Err(e) => {
                f.push(format!("cpu {:?}: {e}", r.cpu));
                None
            }
        };
        let mem = match quantity::parse_bytes(&r.memory) {
            Ok(0) => {
                f.push(format!("memory {:?} must be larger than zero", r.memory));
                None
            }
            Ok(b) => Some(b),
            Err(e) => {
                f.push(format!("memory {:?}: {e}", r.memory));
                None
            }
        };
        if let Some(req) = &r.cpu_request {
            match quantity::parse_cpu_millis(req) {
                Ok(0) => f.push(format!("cpu request {req:?} must be at least 1m")),
                Ok(m) if cpu.is_some_and(|l| m > l) => f.push(format!(
                    "cpu request {req:?} is larger than the cpu limit {:?}",
                    r.cpu
                )),
                Ok(_) => {}
                Err(e) => f.push(format!("cpu request {req:?}: {e}")),
            }
        }
        if let Some(req) = &r.memory_request {
            match quantity::parse_bytes(req) {
                Ok(0) => f.push(format!("memory request {req:?} must be larger than zero")),
                Ok(b) if mem.is_some_and(|l| b > l) => f.push(format!(
                    "memory request {req:?} is larger than the memory limit {:?}",
                    r.memory
                )),
                Ok(_) => {}
                Err(e) => f.push(format!("memory request {req:?}: {e}")),
            }
        }
        for (k, v) in &r.extra {
            f.extend(extra_resource_faults(k, v));
        }
        f
    }
}

fn toleration_faults(i: usize, t: &Toleration) -> Vec<String> {
    let mut f = Vec::new();
    let op = t.operator.as_deref().unwrap_or("Equal");
    if op != "Equal" && op != "Exists" {
        f.push(format!(
            "toleration {i}: operator {op:?} must be Equal or Exists"
        ));
    }
    if op == "Exists" && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
        f.push(format!("toleration {i}: operator Exists takes no value"));
    }
    if let Some(k) = &t.key {
        if !k.is_empty() && !names::is_qualified_name(k) {
            f.push(format!(
                "toleration {i}: key {k:?} is not a valid label key"
            ));
        }
    } else if op != "Exists" {
        f.push(format!(
            "toleration {i}: a toleration without a key needs operator Exists"
        ));
    }
    if let Some(v) = &t.value {
        if !names::is_label_value(v) {
            f.push(format!(
                "toleration {i}: value {v:?} is not a valid label value"
            ));
        }
    }
    if let Some(e) = &t.effect {
        if !e.is_empty() && !EFFECTS.contains(&e.as_str()) {
            f.push(format!(
                "toleration {i}: effect {e:?} must be NoSchedule, PreferNoSchedule or NoExecute"
            ));
        }
    }
    if t.toleration_seconds.is_some() && t.effect.as_deref() != Some("NoExecute") {
        f.push(format!(
            "toleration {i}: tolerationSeconds needs effect NoExecute"
        ));
    }
    f
}

/// Faults of one extended-resource entry (`--resource NAME=QUANTITY`).
fn extra_resource_faults(k: &str, v: &str) -> Vec<String> {
    let mut f = Vec::new();
    if k == "cpu" || k == "memory" {
        f.push(format!(
            "resource {k:?}: use --cpu/--memory (resources.cpu/memory) instead"
        ));
        return f;
    }
    let native = k == "ephemeral-storage" || k.starts_with("hugepages-");
    if !native {
        let domain_ok = k
            .split_once('/')
            .is_some_and(|(d, _)| !d.ends_with("kubernetes.io") && !d.starts_with("requests."));
        if !names::is_qualified_name(k) || !domain_ok {
            f.push(format!(
                "resource {k:?} is not an extended resource name; use a domain-prefixed name such as nvidia.com/gpu"
            ));
            return f;
        }
        match quantity::parse_integer(v) {
            Ok(0) => f.push(format!("resource {k}={v}: must be at least 1")),
            Ok(_) => {}
            Err(e) => f.push(format!(
                "resource {k}={v:?}: {e} (extended resources are counted in whole units)"
            )),
        }
    } else if let Err(e) = quantity::parse_bytes(v) {
        f.push(format!("resource {k}={v:?}: {e}"));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SessionSpec {
        SessionSpec::new("work", "default", "ghcr.io/x/kodama:1")
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(spec().faults(), Vec::<String>::new());
    }

    #[test]
    fn validation_table() {
        type Edit = fn(&mut SessionSpec);
        let cases: Vec<(Edit, &str)> = vec![
            (|s| s.name = "Bad_Name".into(), "session name"),
            (|s| s.namespace = "Dev".into(), "namespace"),
            (|s| s.image = "".into(), "image"),
            (|s| s.image = "a b".into(), "image"),
            (
                |s| s.image_pull_policy = Some("Sometimes".into()),
                "imagePullPolicy",
            ),
            (|s| s.resources.cpu = "0".into(), "at least 1m"),
            (|s| s.resources.cpu = "two".into(), "cpu"),
            (
                |s| s.resources.memory = "2GB".into(),
                "unknown suffix \"GB\"",
            ),
            (|s| s.resources.memory = "0".into(), "larger than zero"),
            (
                |s| s.resources.cpu_request = Some("2".into()),
                "larger than the cpu limit",
            ),
            (
                |s| s.resources.memory_request = Some("4Gi".into()),
                "larger than the memory limit",
            ),
            (
                |s| {
                    s.resources
                        .extra
                        .insert("nvidia.com/gpu".into(), "0.5".into());
                },
                "whole units",
            ),
            (
                |s| {
                    s.resources.extra.insert("gpu".into(), "1".into());
                },
                "extended resource name",
            ),
            (
                |s| {
                    s.resources
                        .extra
                        .insert("kubernetes.io/x".into(), "1".into());
                },
                "extended resource name",
            ),
            (
                |s| {
                    s.resources.extra.insert("cpu".into(), "1".into());
                },
                "--cpu",
            ),
            (
                |s| {
                    s.resources
                        .extra
                        .insert("ephemeral-storage".into(), "lots".into());
                },
                "ephemeral-storage",
            ),
            (|s| s.storage.workspace = "10GB".into(), "storage.workspace"),
            (|s| s.storage.claude_home = "0".into(), "storage.claudeHome"),
            (
                |s| s.storage.storage_class = Some("Fast SSD".into()),
                "storageClass",
            ),
            (|s| s.service_account = Some("A".into()), "serviceAccount"),
            (
                |s| {
                    s.ssh = Some(SshSpec {
                        secret_name: "x_y".into(),
                        key: "k".into(),
                        known_hosts: KnownHosts::AcceptNew,
                    })
                },
                "git.secretName",
            ),
            (
                |s| {
                    s.node_selector.insert("a b".into(), "x".into());
                },
                "nodeSelector key",
            ),
            (
                |s| {
                    s.node_selector.insert("disk".into(), "-x".into());
                },
                "nodeSelector value",
            ),
            (
                |s| {
                    s.tolerations.push(Toleration {
                        operator: Some("Maybe".into()),
                        key: Some("k".into()),
                        ..Default::default()
                    })
                },
                "operator",
            ),
            (
                |s| {
                    s.tolerations.push(Toleration {
                        operator: Some("Exists".into()),
                        value: Some("v".into()),
                        ..Default::default()
                    })
                },
                "takes no value",
            ),
            (
                |s| {
                    s.tolerations.push(Toleration {
                        key: Some("k".into()),
                        effect: Some("Never".into()),
                        ..Default::default()
                    })
                },
                "effect",
            ),
            (
                |s| {
                    s.tolerations.push(Toleration {
                        key: Some("k".into()),
                        toleration_seconds: Some(5),
                        ..Default::default()
                    })
                },
                "tolerationSeconds",
            ),
            (|s| s.command = Some(vec![]), "command"),
            (
                |s| {
                    s.secret_files.push(SecretFileMount {
                        key: "00-x".into(),
                        path: "/workspace/x".into(),
                        mode: 0o400,
                    })
                },
                "under /workspace",
            ),
            (
                |s| {
                    s.secret_files.push(SecretFileMount {
                        key: "a=b".into(),
                        path: "/etc/x".into(),
                        mode: 0o400,
                    })
                },
                "malformed",
            ),
        ];
        for (edit, needle) in cases {
            let mut s = spec();
            edit(&mut s);
            let f = s.faults();
            assert!(
                f.iter().any(|m| m.contains(needle)),
                "{needle:?} not in {f:?}"
            );
        }
    }

    #[test]
    fn every_fault_is_reported_at_once() {
        let mut s = spec();
        s.name = "X".into();
        s.resources.cpu = "lots".into();
        s.resources.memory = "-1Gi".into();
        s.storage.workspace = "big".into();
        let e = s.validate().expect_err("invalid");
        let text = e.to_string();
        for needle in ["session name", "cpu", "memory", "storage.workspace"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn spec_round_trips_through_serde() {
        let mut s = spec();
        s.ssh = Some(SshSpec {
            secret_name: "git-ssh".into(),
            key: "ssh-privatekey".into(),
            known_hosts: KnownHosts::Strict,
        });
        s.resources
            .extra
            .insert("nvidia.com/gpu".into(), "1".into());
        let j = serde_json::to_string(&s).expect("ser");
        assert!(j.contains("\"knownHosts\":\"strict\""), "{j}");
        let back: SessionSpec = serde_json::from_str(&j).expect("de");
        assert_eq!(back, s);
    }
}
