//! The local session store: one YAML file per session at `<config dir>/sessions/<name>.yaml`.
//!
//! Writes are atomic (a temp file in the same directory, fsync, rename, fsync of the directory), files
//! are 0600 and the directory 0700. Every write happens under an exclusive `flock` on
//! `sessions/.lock`, so two concurrent invocations cannot corrupt a file, lose each other's updates
//! or both create the same session ([`Store::create_new`] fails with "already exists"). Long
//! operations on one session (start, delete, resume) can additionally hold
//! [`Store::lock_session`], which fails fast when another kodama process holds it. Names are
//! validated before any path is built. A corrupt file is an error naming the file, never a panic, and
//! [`Store::list_all`] returns one result per file so `list` can show the rest.
//!
//! The record never holds secret values: only env variable *names* and secret-file destinations.
//!
//! May import: std, libc (flock only), serde, yaml_serde, error, config::{names, time, settings}.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::layer::Toleration;
use super::names::validate_session_name;
use super::settings::Settings;
use super::time::now_rfc3339;
use crate::error::{Error, IoResultExt, Result};

/// The lifecycle state recorded for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SessionStatus {
    /// Recorded, nothing created yet.
    #[default]
    Pending,
    /// Resources are being created; the pod is not Ready yet.
    Starting,
    /// The pod is Ready.
    Running,
    /// The pod was deleted on purpose; volumes are kept.
    Stopped,
    /// Something went wrong; see the pod's events.
    Failed,
}

impl SessionStatus {
    /// The spelling used in files and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Pending => "Pending",
            SessionStatus::Starting => "Starting",
            SessionStatus::Running => "Running",
            SessionStatus::Stopped => "Stopped",
            SessionStatus::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn yes() -> bool {
    true
}

/// The local sync of a session.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    #[serde(default)]
    pub enabled: bool,
    /// The local directory that is synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_path: Option<String>,
    /// Pid of the background sync process, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When a change last reached the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_at: Option<String>,
    /// Why sync stopped, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Keys this version does not know (kept on rewrite).
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

/// Resource limits of the session (quantities as written).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesRecord {
    #[serde(default)]
    pub cpu: String,
    #[serde(default)]
    pub memory: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// PVC sizes and class.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageRecord {
    #[serde(default)]
    pub workspace: String,
    #[serde(default)]
    pub claude_home: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// A mounted secret file: where it came from and where it is; never its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretFileRecord {
    pub source: String,
    pub destination: String,
}

/// A summary of the session's agent runs (the runs themselves live on the claude-home volume).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSummary {
    #[serde(default)]
    pub runs: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_id: Option<String>,
    /// running, succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_started_at: Option<String>,
}

/// Pod-level settings the session was created with (so `resume` recreates the same pod).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub automount_service_account_token: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// One session file (`sessions/<name>.yaml`), camelCase keys as in the spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_branch: Option<String>,
    #[serde(default = "yes")]
    pub auto_branch: bool,
    #[serde(default)]
    pub pod_name: String,
    #[serde(default, rename = "workspacePVC")]
    pub workspace_pvc: String,
    #[serde(default, rename = "claudeHomePVC")]
    pub claude_home_pvc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_hash: Option<String>,
    #[serde(default)]
    pub sync: SyncRecord,
    #[serde(default)]
    pub status: SessionStatus,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_at: String,
    #[serde(default)]
    pub resources: ResourcesRecord,
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageRecord>,
    /// The Secret holding the env variables (`kodama-env-<name>`), when one was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_secret_name: Option<String>,
    /// Names (never values) of the injected env variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<SecretFileRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSummary>,
    /// The agent's argv the session was created with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_command: Vec<String>,
    /// Secret with the SSH key for git, when one is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRecord>,
    /// The manifest builder's input the pod was built from, kept verbatim so `resume` can rebuild
    /// the identical pod (opaque here because `config` sits below `manifest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<yaml_serde::Value>,
    /// Keys this version does not know (kept on rewrite, so an older kodama does not drop them).
    #[serde(flatten)]
    pub extra: BTreeMap<String, yaml_serde::Value>,
}

/// Pod name of a session.
pub fn pod_name(session: &str) -> String {
    format!("kodama-{session}")
}
/// Workspace PVC name of a session.
pub fn workspace_pvc_name(session: &str) -> String {
    format!("kodama-workspace-{session}")
}
/// Claude-home PVC name of a session.
pub fn claude_home_pvc_name(session: &str) -> String {
    format!("kodama-claude-home-{session}")
}
/// Editor ConfigMap name of a session.
pub fn editor_config_map_name(session: &str) -> String {
    format!("kodama-editor-config-{session}")
}
/// Env Secret name of a session.
pub fn env_secret_name(session: &str) -> String {
    format!("kodama-env-{session}")
}

impl SessionRecord {
    /// A fresh `Pending` record with the derived object names and both timestamps set to now.
    pub fn new(name: &str, namespace: &str) -> SessionRecord {
        let now = now_rfc3339();
        SessionRecord {
            name: name.to_string(),
            namespace: namespace.to_string(),
            repo: None,
            branch: None,
            base_branch: None,
            auto_branch: true,
            pod_name: pod_name(name),
            workspace_pvc: workspace_pvc_name(name),
            claude_home_pvc: claude_home_pvc_name(name),
            commit_hash: None,
            sync: SyncRecord::default(),
            status: SessionStatus::Pending,
            created_at: now.clone(),
            updated_at: now,
            resources: ResourcesRecord::default(),
            image: String::new(),
            storage: None,
            env_secret_name: None,
            env_names: Vec::new(),
            secret_files: Vec::new(),
            agent: None,
            agent_command: Vec::new(),
            git_secret_name: None,
            pod: None,
            spec: None,
            extra: BTreeMap::new(),
        }
    }

    /// A fresh `Pending` record carrying what `settings` decide about the pod: image, resources,
    /// storage, secret files (source and destination only), git secret, agent command, pod knobs,
    /// repo and branch.
    pub fn from_settings(name: &str, namespace: &str, settings: &Settings) -> SessionRecord {
        let mut r = SessionRecord::new(name, namespace);
        r.image = settings.image.clone();
        r.repo = settings.repo.clone();
        r.branch = settings.branch.clone();
        r.auto_branch = settings.git.auto_branch;
        r.resources = ResourcesRecord {
            cpu: settings.resources.cpu.to_string(),
            memory: settings.resources.memory.to_string(),
            extra: settings
                .resources
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
        };
        r.storage = Some(StorageRecord {
            workspace: settings.storage.workspace.to_string(),
            claude_home: settings.storage.claude_home.to_string(),
            storage_class: settings.storage.storage_class.clone(),
        });
        r.secret_files = settings
            .secret_files
            .iter()
            .map(|f| SecretFileRecord {
                source: f.source.display().to_string(),
                destination: f.destination.clone(),
            })
            .collect();
        r.git_secret_name = settings.git.secret_name.clone();
        r.agent_command = settings.agent.command.clone();
        r.pod = Some(PodRecord {
            service_account_name: settings.pod.service_account_name.clone(),
            automount_service_account_token: settings.pod.automount_service_account_token,
            node_selector: settings.pod.node_selector.clone(),
            tolerations: settings.pod.tolerations.clone(),
        });
        r
    }

    /// The record as YAML (what the file holds, and `list -o yaml` prints).
    pub fn to_yaml(&self) -> Result<String> {
        yaml_serde::to_string(self)
            .map_err(|e| Error::msg(format!("encoding session {:?}: {e}", self.name)))
    }
}

/// One entry of [`Store::list_all`]: a file and what reading it gave.
#[derive(Debug)]
pub struct Listed {
    /// The name from the file name.
    pub name: String,
    pub path: PathBuf,
    pub record: Result<SessionRecord>,
}

/// Held while a long operation works on one session; dropping it releases the lock.
#[derive(Debug)]
pub struct SessionLock {
    _file: File,
}

/// The session store.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// How long a writer waits for another writer before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// The store under `config_dir` (`<config_dir>/sessions`). Nothing is created until a write.
    pub fn new(config_dir: impl Into<PathBuf>) -> Store {
        Store {
            dir: config_dir.into().join("sessions"),
        }
    }

    /// The store under the configuration directory ([`super::settings::config_dir`]).
    pub fn open() -> Result<Store> {
        Ok(Store::new(super::settings::config_dir()?))
    }

    /// `<config dir>/sessions`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of session `name`; validates the name first.
    pub fn path_for(&self, name: &str) -> Result<PathBuf> {
        validate_session_name(name).map_err(|m| Error::Invalid {
            what: "bad session name".into(),
            faults: vec![m],
            hint: Some(
                "session names are lowercase letters, digits and '-', at most 40 characters".into(),
            ),
        })?;
        Ok(self.dir.join(format!("{name}.yaml")))
    }

    /// Read one session; `Ok(None)` when there is no file.
    pub fn load(&self, name: &str) -> Result<Option<SessionRecord>> {
        let path = self.path_for(name)?;
        match fs::read_to_string(&path) {
            Ok(text) => parse_record(&text, &path, name).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Read one session; a missing file is an error that says how to see what exists.
    pub fn get(&self, name: &str) -> Result<SessionRecord> {
        self.load(name)?.ok_or_else(|| {
            Error::with_hint(
                format!("session {name:?} not found in {}", self.dir.display()),
                "run `kubectl kodama list -A` to see your sessions",
            )
        })
    }

    /// True when a file for `name` exists.
    pub fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.path_for(name)?.exists())
    }

    /// Create the file for a new session; fails with "already exists" when it is there.
    pub fn create_new(&self, rec: &SessionRecord) -> Result<()> {
        let path = self.checked_path(rec)?;
        let _lock = self.write_lock()?;
        if path.exists() {
            return Err(Error::with_hint(
                format!("session {:?} already exists ({})", rec.name, path.display()),
                format!(
                    "pick another name, attach to it with `kubectl kodama attach {0}`, or remove it with `kubectl kodama delete {0}`",
                    rec.name
                ),
            ));
        }
        self.write_atomic(&path, rec)
    }

    /// Create or replace the file of `rec.name`.
    pub fn save(&self, rec: &SessionRecord) -> Result<()> {
        let path = self.checked_path(rec)?;
        let _lock = self.write_lock()?;
        self.write_atomic(&path, rec)
    }

    /// Read-modify-write under the lock; sets `updatedAt`. Fails when the session does not exist.
    pub fn update(&self, name: &str, f: impl FnOnce(&mut SessionRecord)) -> Result<SessionRecord> {
        let path = self.path_for(name)?;
        let _lock = self.write_lock()?;
        let mut rec = self.get(name)?;
        f(&mut rec);
        rec.updated_at = now_rfc3339();
        if rec.name != name {
            return Err(Error::msg(format!(
                "internal error: update of session {name:?} renamed it to {:?}",
                rec.name
            )));
        }
        self.write_atomic(&path, &rec)?;
        Ok(rec)
    }

    /// Remove the file of `name`; `Ok(false)` when there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let path = self.path_for(name)?;
        let _lock = self.write_lock()?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Every `*.yaml` file in the store, sorted by name, each with its own result. A missing
    /// directory is an empty list.
    pub fn list_all(&self) -> Result<Vec<Listed>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.path_context(&self.dir)?;
            let path = entry.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let Some(name) = file.strip_suffix(".yaml") else {
                continue;
            };
            if file.starts_with('.') {
                continue;
            }
            let name = name.to_string();
            let record = match validate_session_name(&name) {
                Err(m) => Err(Error::file(
                    &path,
                    None,
                    format!("not a kodama session file: {m}"),
                )),
                Ok(()) => fs::read_to_string(&path)
                    .map_err(|e| Error::io(&path, e))
                    .and_then(|t| parse_record(&t, &path, &name)),
            };
            out.push(Listed { name, path, record });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Hold an exclusive lock on one session for a long operation. Fails at once when another
    /// kodama process holds it.
    pub fn lock_session(&self, name: &str) -> Result<SessionLock> {
        self.path_for(name)?;
        self.ensure_dir()?;
        let path = self.dir.join(format!(".{name}.lock"));
        let file = open_lock_file(&path)?;
        match try_lock_exclusive(&file) {
            Ok(()) => Ok(SessionLock { _file: file }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::with_hint(
                format!("another kodama command is working on session {name:?} right now"),
                "wait for it to finish (or stop it), then try again",
            )),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    fn checked_path(&self, rec: &SessionRecord) -> Result<PathBuf> {
        let path = self.path_for(&rec.name)?;
        if rec.namespace.is_empty() {
            return Err(Error::msg(format!(
                "internal error: session {:?} has no namespace",
                rec.name
            )));
        }
        Ok(path)
    }

    fn ensure_dir(&self) -> Result<()> {
        if let Some(parent) = self.dir.parent() {
            if !parent.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .path_context(parent)?;
            }
        }
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = fs::metadata(&self.dir).path_context(&self.dir)?;
                if !meta.is_dir() {
                    return Err(Error::file(
                        &self.dir,
                        None,
                        "exists but is not a directory",
                    ));
                }
                if meta.permissions().mode() & 0o077 != 0 {
                    fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                        .path_context(&self.dir)?;
                }
                Ok(())
            }
            Err(e) => Err(Error::io(&self.dir, e)),
        }
    }

    /// The store-wide writer lock, waited for up to [`LOCK_WAIT`].
    fn write_lock(&self) -> Result<File> {
        self.ensure_dir()?;
        let path = self.dir.join(".lock");
        let file = open_lock_file(&path)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match try_lock_exclusive(&file) {
                Ok(()) => return Ok(file),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        return Err(Error::with_hint(
                            format!(
                                "the session store {} is locked by another kodama process",
                                self.dir.display()
                            ),
                            "wait for the other kodama command to finish and try again",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }

    fn write_atomic(&self, path: &Path, rec: &SessionRecord) -> Result<()> {
        let text = rec.to_yaml()?;
        let tmp = self.dir.join(format!(
            ".{}.tmp.{}.{}",
            rec.name,
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, path)?;
            // Make the rename itself durable.
            File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(path, e).context(format!("saving session {:?}", rec.name)));
        }
        Ok(())
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .path_context(path)
}

/// Take an exclusive advisory lock (flock) on `file` without waiting; `WouldBlock` when another
/// process holds it. The lock is released when the file is closed.
fn try_lock_exclusive(file: &File) -> std::io::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::ErrorKind::WouldBlock.into()),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn parse_record(text: &str, path: &Path, name: &str) -> Result<SessionRecord> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rec: SessionRecord = yaml_serde::from_str(text).map_err(|e| Error::File {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: format!("corrupt session file: {e}"),
        hint: Some(format!(
            "fix the file by hand, or remove it with `rm {}` (the session's pod and volumes are not affected)",
            path.display()
        )),
    })?;
    if rec.name != name {
        return Err(Error::File {
            path: path.to_path_buf(),
            line: None,
            message: format!(
                "the file is named for session {name:?} but holds {:?}",
                rec.name
            ),
            hint: Some("rename the file to match its `name:` key, or fix the key".into()),
        });
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_store(tag: &str) -> (PathBuf, Store) {
        let dir = std::env::temp_dir().join(format!(
            "kodama-store-{tag}-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let store = Store::new(&dir);
        (dir, store)
    }

    #[test]
    fn create_load_update_remove() {
        let (dir, store) = tmp_store("crud");
        let mut rec = SessionRecord::new("my-work", "default");
        rec.env_names = vec!["GITHUB_TOKEN".into()];
        store.create_new(&rec).unwrap();
        let err = store.create_new(&rec).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let got = store.get("my-work").unwrap();
        assert_eq!(got, rec);
        assert_eq!(got.pod_name, "kodama-my-work");
        assert_eq!(got.workspace_pvc, "kodama-workspace-my-work");
        let after = store
            .update("my-work", |r| r.status = SessionStatus::Running)
            .unwrap();
        assert_eq!(after.status, SessionStatus::Running);
        assert_eq!(store.get("my-work").unwrap().status, SessionStatus::Running);
        assert!(store.remove("my-work").unwrap());
        assert!(!store.remove("my-work").unwrap());
        assert!(store.load("my-work").unwrap().is_none());
        let e = store.get("my-work").unwrap_err();
        assert!(e.render().contains("kubectl kodama list"), "{}", e.render());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn permissions_are_private_and_no_temp_files_remain() {
        let (dir, store) = tmp_store("perm");
        store.save(&SessionRecord::new("a", "ns")).unwrap();
        store.save(&SessionRecord::new("a", "ns2")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.dir().join("a.yaml")), 0o600);
        let names: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".tmp.")), "{names:?}");
        // A wider directory is tightened on the next write.
        fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        store.save(&SessionRecord::new("a", "ns")).unwrap();
        assert_eq!(mode(store.dir()), 0o700);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_names_touch_nothing() {
        let (dir, store) = tmp_store("names");
        for bad in ["../evil", "a/b", "", "UPPER", &"x".repeat(41)] {
            let rec = SessionRecord::new(bad, "default");
            assert!(store.create_new(&rec).is_err(), "{bad}");
            assert!(store.load(bad).is_err(), "{bad}");
            assert!(store.lock_session(bad).is_err(), "{bad}");
        }
        assert!(!dir.exists(), "a bad name created {}", dir.display());
    }

    #[test]
    fn corrupt_files_are_reported_per_file() {
        let (dir, store) = tmp_store("corrupt");
        store.save(&SessionRecord::new("good", "default")).unwrap();
        fs::write(store.dir().join("bad.yaml"), "name: [unclosed\n").unwrap();
        fs::write(
            store.dir().join("wrong.yaml"),
            "name: other\nnamespace: x\n",
        )
        .unwrap();
        fs::write(store.dir().join("notes.txt"), "ignored").unwrap();
        let all = store.list_all().unwrap();
        let names: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["bad", "good", "wrong"]);
        let bad = all[0].record.as_ref().unwrap_err().render();
        assert!(
            bad.contains("bad.yaml") && bad.contains("corrupt session file"),
            "{bad}"
        );
        assert!(bad.contains("rm "), "{bad}");
        assert!(all[1].record.is_ok());
        let wrong = all[2].record.as_ref().unwrap_err().to_string();
        assert!(wrong.contains("holds \"other\""), "{wrong}");
        let e = store.get("bad").unwrap_err().to_string();
        assert!(e.contains("bad.yaml"), "{e}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_survive_a_rewrite() {
        let (dir, store) = tmp_store("extra");
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(
            store.dir().join("x.yaml"),
            "name: x\nnamespace: default\nfutureKey: {a: 1}\nsync:\n  enabled: true\n  mutagenSession: m\nstatus: Running\n",
        )
        .unwrap();
        store.update("x", |r| r.image = "img".into()).unwrap();
        let text = fs::read_to_string(store.dir().join("x.yaml")).unwrap();
        assert!(text.contains("futureKey"), "{text}");
        assert!(text.contains("mutagenSession: m"), "{text}");
        assert!(text.contains("image: img"), "{text}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn session_lock_is_exclusive() {
        let (dir, store) = tmp_store("lock");
        let held = store.lock_session("s").unwrap();
        let e = store.lock_session("s").unwrap_err();
        assert!(e.to_string().contains("another kodama command"), "{e}");
        assert!(store.lock_session("other").is_ok());
        drop(held);
        assert!(store.lock_session("s").is_ok());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn threads_race_to_create_and_exactly_one_wins() {
        let (dir, store) = tmp_store("race");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut rec = SessionRecord::new("same", "default");
                    rec.image = format!("img-{i}");
                    barrier.wait();
                    store.create_new(&rec).map(|()| i)
                })
            })
            .collect();
        let results: Vec<Result<i32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<i32> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(r
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("already exists"));
        }
        assert_eq!(
            store.get("same").unwrap().image,
            format!("img-{}", winners[0])
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn readers_never_see_a_half_written_file() {
        let (dir, store) = tmp_store("atomic");
        let small = SessionRecord::new("big", "default");
        let mut big = small.clone();
        big.env_names = (0..500).map(|i| format!("VARIABLE_NUMBER_{i}")).collect();
        store.save(&small).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !done.load(Ordering::Acquire) || reads == 0 {
                    let rec = store.get("big").expect("every read parses");
                    assert!(rec.env_names.is_empty() || rec.env_names.len() == 500);
                    reads += 1;
                }
                reads
            })
        };
        for i in 0..60 {
            store.save(if i % 2 == 0 { &big } else { &small }).unwrap();
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_from_settings_round_trip() {
        let (dir, store) = tmp_store("settings");
        let (l, _) = crate::config::layer::parse_layer(
            "image: img\nresources:\n  cpu: 500m\n  extra:\n    nvidia.com/gpu: 1\nstorage:\n  storageClass: fast\nsecretFiles:\n  - /k:/home/dev/.ssh/id\ngit:\n  secretName: key\npod:\n  nodeSelector: {zone: a}\n",
            Path::new("/t/.kodama.yaml"),
            crate::config::layer::FileKind::Template,
            None,
        )
        .unwrap();
        let s = crate::config::resolve(&Default::default(), Some(&l), None);
        let rec = SessionRecord::from_settings("w", "ns", &s);
        assert_eq!(rec.image, "img");
        assert_eq!(rec.resources.cpu, "500m");
        assert_eq!(rec.resources.memory, "2Gi");
        assert_eq!(rec.resources.extra["nvidia.com/gpu"], "1");
        assert_eq!(
            rec.storage.as_ref().unwrap().storage_class.as_deref(),
            Some("fast")
        );
        assert_eq!(rec.secret_files[0].destination, "/home/dev/.ssh/id");
        assert_eq!(rec.git_secret_name.as_deref(), Some("key"));
        assert_eq!(rec.pod.as_ref().unwrap().node_selector["zone"], "a");
        assert_eq!(rec.agent_command[0], "claude");
        store.create_new(&rec).unwrap();
        assert_eq!(store.get("w").unwrap(), rec);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn spec_session_example_loads() {
        let text = "name: my-work\nnamespace: default\nrepo: github.com/myorg/myrepo\nbranch: kodama/my-work-20250115143000\nbaseBranch: main\nautoBranch: true\n\npodName: kodama-my-work\nworkspacePVC: kodama-workspace-my-work\nclaudeHomePVC: kodama-claude-home-my-work\n\ncommitHash: abc123def456\n\nsync:\n  enabled: true\n  localPath: /Users/shogo/projects/myrepo\n  mutagenSession: kodama-my-work-sync\n\nstatus: Running\ncreatedAt: \"2025-01-15T14:30:00Z\"\nupdatedAt: \"2025-01-15T14:35:00Z\"\n\nresources:\n  cpu: \"2\"\n  memory: \"4Gi\"\n";
        let r = parse_record(text, Path::new("my-work.yaml"), "my-work").unwrap();
        assert_eq!(r.status, SessionStatus::Running);
        assert_eq!(r.workspace_pvc, "kodama-workspace-my-work");
        assert_eq!(r.resources.memory, "4Gi");
        assert_eq!(
            r.sync.local_path.as_deref(),
            Some("/Users/shogo/projects/myrepo")
        );
        assert!(r.extra.is_empty(), "{:?}", r.extra);
        let out = r.to_yaml().unwrap();
        assert!(
            out.contains("workspacePVC: kodama-workspace-my-work"),
            "{out}"
        );
        assert!(out.contains("createdAt:"), "{out}");
    }
}
