//! One configuration layer, read from a YAML file (the global `config.yaml` or a repository template
//! `.kodama.yaml`) or built from command-line flags, with every value already validated.
//!
//! Both files share one key set. Every key may be written at the top level or under `defaults:`; the
//! spec's global example puts namespace/image/resources/... under `defaults:` and its template example
//! puts `env:` at the top, and both forms mean the same thing. A key given in both places is an error.
//! `repo` and `branch` only make sense in a template; in the global file they are ignored with a
//! warning. An unknown key is a warning naming the file, the key and the closest known key; a value of
//! the wrong type, or an invalid quantity or duration, is an error naming the file, the key and the
//! accepted form. All faults of a file are reported together.
//!
//! `KnownHosts` and `Toleration` defined here are the only definitions: `manifest` and `git`
//! re-export them.
//!
//! May import: std, serde, yaml_serde, error, config::{quantity, duration, names}.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_serde::{Mapping, Value};

use super::duration::{parse_duration, DURATION_FORM};
use super::names::{closest, validate_namespace};
use super::quantity::{Quantity, QUANTITY_FORM};
use crate::error::{Error, Result};

/// Which kind of file a layer comes from (changes only which keys are meaningful).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `~/.kodama/config.yaml`.
    Global,
    /// `.kodama.yaml` in a repository, or `--config FILE`.
    Template,
}

/// How ssh verifies the git host's key when cloning over SSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KnownHosts {
    /// Trust a host key the first time it is seen, then insist on it (ssh `accept-new`).
    #[default]
    AcceptNew,
    /// Only hosts listed in the SSH secret's `known_hosts` key are accepted.
    Strict,
    /// No host key checking at all (not recommended).
    Off,
}

impl KnownHosts {
    /// Parse a policy given outside a config file (e.g. to the clone step): `accept-new` (or empty),
    /// `strict` (or ssh's `yes`), `off` (or ssh's `no`). Config files are stricter: see the
    /// `knownHosts` key in [`parse_layer`].
    pub fn parse(s: &str) -> Result<KnownHosts> {
        match s {
            "accept-new" | "" => Ok(KnownHosts::AcceptNew),
            "strict" | "yes" => Ok(KnownHosts::Strict),
            "off" | "no" => Ok(KnownHosts::Off),
            other => Err(Error::usage(
                format!("git.knownHosts {other:?} is not a known_hosts policy"),
                Some("use accept-new (default), strict or off".into()),
            )),
        }
    }

    /// The spelling used in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            KnownHosts::AcceptNew => "accept-new",
            KnownHosts::Strict => "strict",
            KnownHosts::Off => "off",
        }
    }
}

/// A local file to mount read-only in the pod: `SRC:DST`, or `{source, destination}` in YAML.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretFileSpec {
    /// Local path (relative paths in a template are relative to the template's directory).
    pub source: PathBuf,
    /// Absolute path in the pod.
    pub destination: String,
}

/// Parse `SRC:DST` (split at the last ':' that starts an absolute destination).
pub fn parse_secret_file_spec(s: &str) -> std::result::Result<SecretFileSpec, String> {
    let idx = s
        .rmatch_indices(":/")
        .next()
        .map(|(i, _)| i)
        .ok_or_else(|| format!("{s:?} is not SRC:DST with an absolute DST (e.g. ~/.ssh/id_ed25519:/home/dev/.ssh/id_ed25519)"))?;
    let (src, dst) = (&s[..idx], &s[idx + 1..]);
    if src.is_empty() {
        return Err(format!("{s:?} has an empty source path"));
    }
    validate_destination(dst)?;
    Ok(SecretFileSpec {
        source: PathBuf::from(src),
        destination: dst.to_string(),
    })
}

/// A destination must be absolute, not `/`, without `..`, `.` or empty segments, and not end in '/'.
pub fn validate_destination(dst: &str) -> std::result::Result<(), String> {
    if !dst.starts_with('/') {
        return Err(format!("destination {dst:?} must be an absolute path"));
    }
    if dst == "/" || dst.ends_with('/') {
        return Err(format!(
            "destination {dst:?} must name a file, not a directory"
        ));
    }
    if dst.contains('\0') {
        return Err(format!("destination {dst:?} contains a NUL byte"));
    }
    if dst[1..]
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!(
            "destination {dst:?} must not contain '..', '.' or empty path segments"
        ));
    }
    Ok(())
}

/// A pod toleration (`pod.tolerations[]`), with Kubernetes field names.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Exists` or `Equal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// One configuration layer; `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layer {
    pub namespace: Option<String>,
    pub image: Option<String>,
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
    /// Extended resources such as `nvidia.com/gpu` (request = limit).
    pub extra_resources: Option<BTreeMap<String, Quantity>>,
    pub workspace_size: Option<Quantity>,
    pub claude_home_size: Option<Quantity>,
    pub storage_class: Option<String>,
    pub branch_prefix: Option<String>,
    pub dotenv_files: Option<Vec<PathBuf>>,
    pub exclude_vars: Option<Vec<String>>,
    pub secret_files: Option<Vec<SecretFileSpec>>,
    pub use_gitignore: Option<bool>,
    pub exclude_patterns: Option<Vec<String>>,
    pub git_secret_name: Option<String>,
    pub known_hosts: Option<KnownHosts>,
    pub auto_branch: Option<bool>,
    pub git_user_name: Option<String>,
    pub git_user_email: Option<String>,
    pub agent_command: Option<Vec<String>>,
    pub agent_idle_timeout: Option<Duration>,
    pub agent_result_grace_timeout: Option<Duration>,
    pub service_account_name: Option<String>,
    pub automount_service_account_token: Option<bool>,
    pub node_selector: Option<BTreeMap<String, String>>,
    pub tolerations: Option<Vec<Toleration>>,
    pub start_timeout: Option<Duration>,
    /// Template only.
    pub repo: Option<String>,
    /// Template only.
    pub branch: Option<String>,
}

/// A non-fatal problem in a config file (an unknown or misplaced key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: PathBuf,
    /// Full dotted key, e.g. `defaults.resouces`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Keys of a layer (top level or under `defaults:`), with their sub-keys.
const SECTIONS: &[(&str, &[&str])] = &[
    ("namespace", &[]),
    ("image", &[]),
    ("resources", &["cpu", "memory", "extra"]),
    ("storage", &["workspace", "claudeHome", "storageClass"]),
    ("branchPrefix", &[]),
    ("env", &["dotenvFiles", "excludeVars"]),
    ("secretFiles", &[]),
    ("sync", &["useGitignore", "excludePatterns"]),
    (
        "git",
        &[
            "secretName",
            "knownHosts",
            "autoBranch",
            "userName",
            "userEmail",
        ],
    ),
    ("agent", &["command", "idleTimeout", "resultGraceTimeout"]),
    (
        "pod",
        &[
            "serviceAccountName",
            "automountServiceAccountToken",
            "nodeSelector",
            "tolerations",
        ],
    ),
    ("timeouts", &["start"]),
    ("repo", &[]),
    ("branch", &[]),
];

/// Every dotted key a config file may hold (for docs and tests).
pub fn known_keys() -> Vec<String> {
    let mut out = Vec::new();
    for (k, subs) in SECTIONS {
        if subs.is_empty() {
            out.push((*k).to_string());
        }
        for s in *subs {
            out.push(format!("{k}.{s}"));
        }
    }
    out
}

/// Read a layer from a file. A missing file is `Ok(None)`.
pub fn load_layer(
    path: &Path,
    kind: FileKind,
    home: Option<&Path>,
) -> Result<Option<(Layer, Vec<Warning>)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    parse_layer(&text, path, kind, home).map(Some)
}

/// Parse a layer from YAML text. `path` is used in messages and, for templates, as the base of
/// relative paths; `home` expands a leading `~/`.
pub fn parse_layer(
    text: &str,
    path: &Path,
    kind: FileKind,
    home: Option<&Path>,
) -> Result<(Layer, Vec<Warning>)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut value: Value = yaml_serde::from_str(text).map_err(|e| Error::File {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: format!("not valid YAML: {e}"),
        hint: Some("check the indentation and quoting near that line".into()),
    })?;
    value
        .apply_merge()
        .map_err(|e| Error::file(path, None, e.to_string()))?;
    let base = match kind {
        FileKind::Template => path.parent().map(Path::to_path_buf),
        FileKind::Global => None,
    };
    let mut w = Walker {
        path,
        kind,
        base,
        home,
        faults: Vec::new(),
        warnings: Vec::new(),
    };
    let mut layer = Layer::default();
    match &value {
        Value::Null => {}
        Value::Mapping(top) => {
            let mut known: Vec<&str> = SECTIONS.iter().map(|(k, _)| *k).collect();
            known.push("defaults");
            w.unknown_keys(top, "", &known);
            if let Some(d) = top.get("defaults") {
                if let Some(dm) = w.mapping(d, "defaults") {
                    let known: Vec<&str> = SECTIONS.iter().map(|(k, _)| *k).collect();
                    w.unknown_keys(dm, "defaults.", &known);
                    w.read_layer(dm, "defaults.", &mut layer);
                }
            }
            w.read_layer(top, "", &mut layer);
        }
        _ => w.faults.push(
            "the file must be a mapping of keys (like `defaults:`), not a list or a single value"
                .into(),
        ),
    }
    if w.faults.is_empty() {
        Ok((layer, w.warnings))
    } else {
        Err(Error::Invalid {
            what: format!("invalid configuration in {}", path.display()),
            faults: w.faults,
            hint: Some(
                "fix the keys above; README.md \"Configuration reference\" lists every key with its form"
                    .into(),
            ),
        })
    }
}

struct Walker<'a> {
    path: &'a Path,
    kind: FileKind,
    base: Option<PathBuf>,
    home: Option<&'a Path>,
    faults: Vec<String>,
    warnings: Vec<Warning>,
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "~".into(),
        _ => "<complex key>".into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Put `v` into `slot`, or record a fault if the key was already set under `defaults:`.
fn put<T>(faults: &mut Vec<String>, slot: &mut Option<T>, v: Option<T>, key: &str) {
    if let Some(v) = v {
        if slot.is_some() {
            faults.push(format!(
                "`{key}` is set both at the top level and under `defaults:`; keep one of them"
            ));
        } else {
            *slot = Some(v);
        }
    }
}

impl Walker<'_> {
    fn unknown_keys(&mut self, map: &Mapping, prefix: &str, known: &[&str]) {
        for k in map.keys() {
            let name = key_str(k);
            if known.contains(&name.as_str()) {
                continue;
            }
            let mut message = format!("unknown key `{prefix}{name}` is ignored");
            let layer_level = known.contains(&"namespace");
            let suggestion = closest(&name, known.iter().copied())
                .map(|s| format!("{prefix}{s}"))
                .or_else(|| {
                    // A known key in the wrong section (e.g. `cpu` at the top level).
                    layer_level
                        .then(|| {
                            SECTIONS.iter().find_map(|(sec, subs)| {
                                subs.contains(&name.as_str())
                                    .then(|| format!("{prefix}{sec}.{name}"))
                            })
                        })
                        .flatten()
                });
            if let Some(s) = suggestion {
                message.push_str(&format!(" (did you mean `{s}`?)"));
            }
            self.warnings.push(Warning {
                path: self.path.to_path_buf(),
                key: format!("{prefix}{name}"),
                message,
            });
        }
    }

    fn fault(&mut self, key: &str, v: &Value, form: &str) {
        self.faults
            .push(format!("`{key}` is {}; expected {form}", type_name(v)));
    }

    fn mapping<'v>(&mut self, v: &'v Value, key: &str) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            other => {
                self.fault(key, other, "a mapping of keys");
                None
            }
        }
    }

    /// A list, or a fault saying `form` is expected; None for null (unset) too.
    fn sequence<'v>(&mut self, v: &'v Value, key: &str, form: &str) -> Option<&'v [Value]> {
        match v {
            Value::Sequence(items) => Some(items),
            Value::Null => None,
            other => {
                self.fault(key, other, form);
                None
            }
        }
    }

    fn section<'v>(&mut self, map: &'v Mapping, name: &str, prefix: &str) -> Option<&'v Mapping> {
        let key = format!("{prefix}{name}");
        let m = self.mapping(map.get(name)?, &key)?;
        let subs = SECTIONS
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, s)| *s)
            .unwrap_or(&[]);
        self.unknown_keys(m, &format!("{key}."), subs);
        Some(m)
    }

    fn string(&mut self, v: Option<&Value>, key: &str) -> Option<String> {
        match v? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            other => {
                self.fault(
                    key,
                    other,
                    "a string (quote it if it looks like a number or yes/no)",
                );
                None
            }
        }
    }

    fn nonempty(&mut self, v: Option<&Value>, key: &str) -> Option<String> {
        let s = self.string(v, key)?;
        if s.trim().is_empty() {
            self.faults.push(format!(
                "`{key}` is empty; remove the key or give it a value"
            ));
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, v: Option<&Value>, key: &str) -> Option<bool> {
        match v? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            Value::String(s)
                if matches!(s.as_str(), "yes" | "on" | "Yes" | "On" | "YES" | "ON") =>
            {
                Some(true)
            }
            Value::String(s)
                if matches!(s.as_str(), "no" | "off" | "No" | "Off" | "NO" | "OFF") =>
            {
                Some(false)
            }
            other => {
                self.fault(key, other, "true or false");
                None
            }
        }
    }

    fn quantity(&mut self, v: Option<&Value>, key: &str, what: QKind) -> Option<Quantity> {
        let text = match v? {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                self.fault(key, other, QUANTITY_FORM);
                return None;
            }
        };
        match check_quantity(&text, what) {
            Ok(q) => Some(q),
            Err(e) => {
                self.faults.push(format!("`{key}`: {e}"));
                None
            }
        }
    }

    fn duration(&mut self, v: Option<&Value>, key: &str) -> Option<Duration> {
        let text = match v? {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            Value::Number(n) if n.is_u64() => n.to_string(),
            other => {
                self.fault(key, other, DURATION_FORM);
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                self.faults.push(format!(
                    "`{key}`: must be longer than zero; expected {DURATION_FORM}"
                ));
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.faults
                    .push(format!("`{key}`: {e}; expected {DURATION_FORM}"));
                None
            }
        }
    }

    fn string_list(&mut self, v: Option<&Value>, key: &str) -> Option<Vec<String>> {
        match v? {
            Value::Null => None,
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let k = format!("{key}[{i}]");
                    if let Some(s) = self.nonempty(Some(item), &k) {
                        out.push(s);
                    }
                }
                Some(out)
            }
            other => {
                self.fault(key, other, "a list of strings (one `- item` per line)");
                None
            }
        }
    }

    fn string_map(&mut self, v: Option<&Value>, key: &str) -> Option<BTreeMap<String, String>> {
        let m = self.mapping(v?, key)?;
        let mut out = BTreeMap::new();
        for (k, val) in m {
            let name = key_str(k);
            if let Some(s) = self.string(Some(val), &format!("{key}.{name}")) {
                out.insert(name, s);
            }
        }
        Some(out)
    }

    fn path(&mut self, s: &str, key: &str) -> Option<PathBuf> {
        let p = if let Some(rest) = s.strip_prefix("~/") {
            match self.home {
                Some(h) => h.join(rest),
                None => {
                    self.faults
                        .push(format!("`{key}`: {s:?} starts with ~/ but HOME is not set"));
                    return None;
                }
            }
        } else {
            PathBuf::from(s)
        };
        Some(match (&self.base, p.is_relative()) {
            (Some(b), true) => b.join(p),
            _ => p,
        })
    }

    fn read_layer(&mut self, map: &Mapping, prefix: &str, l: &mut Layer) {
        let k = |s: &str| format!("{prefix}{s}");
        let f = |w: &mut Self| std::mem::take(&mut w.faults);

        let v = self.nonempty(map.get("namespace"), &k("namespace"));
        if let Some(ns) = &v {
            if let Err(e) = validate_namespace(ns) {
                self.faults.push(format!("`{}`: {e}", k("namespace")));
            }
        }
        let mut faults = f(self);
        put(&mut faults, &mut l.namespace, v, &k("namespace"));
        self.faults.append(&mut faults);

        macro_rules! set {
            ($slot:expr, $val:expr, $key:expr) => {{
                let v = $val;
                let mut faults = f(self);
                put(&mut faults, &mut $slot, v, &$key);
                self.faults.append(&mut faults);
            }};
        }

        set!(
            l.image,
            self.nonempty(map.get("image"), &k("image")),
            k("image")
        );
        set!(
            l.branch_prefix,
            self.string(map.get("branchPrefix"), &k("branchPrefix")),
            k("branchPrefix")
        );
        for (name, slot) in [("repo", &mut l.repo), ("branch", &mut l.branch)] {
            if map.get(name).is_some() && self.kind == FileKind::Global {
                self.warnings.push(Warning {
                    path: self.path.to_path_buf(),
                    key: k(name),
                    message: format!(
                        "`{}` only applies in a repository template (.kodama.yaml) or as --{name}; it is ignored here",
                        k(name)
                    ),
                });
                continue;
            }
            let v = self.nonempty(map.get(name), &k(name));
            let mut faults = f(self);
            put(&mut faults, slot, v, &k(name));
            self.faults.append(&mut faults);
        }

        if let Some(r) = self.section(map, "resources", prefix) {
            let p = k("resources.");
            set!(
                l.cpu,
                self.quantity(r.get("cpu"), &format!("{p}cpu"), QKind::Positive),
                format!("{p}cpu")
            );
            set!(
                l.memory,
                self.quantity(r.get("memory"), &format!("{p}memory"), QKind::Positive),
                format!("{p}memory")
            );
            let extra = match r.get("extra") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let key = format!("{p}extra");
                    self.mapping(v, &key).map(|m| {
                        let mut out = BTreeMap::new();
                        for (rk, rv) in m {
                            let name = key_str(rk);
                            let kk = format!("{key}.{name}");
                            if let Err(e) = validate_resource_name(&name) {
                                self.faults.push(format!("`{kk}`: {e}"));
                                continue;
                            }
                            if let Some(q) = self.quantity(Some(rv), &kk, QKind::Integer) {
                                out.insert(name, q);
                            }
                        }
                        out
                    })
                }
            };
            set!(l.extra_resources, extra, format!("{p}extra"));
        }
        if let Some(s) = self.section(map, "storage", prefix) {
            let p = k("storage.");
            set!(
                l.workspace_size,
                self.quantity(
                    s.get("workspace"),
                    &format!("{p}workspace"),
                    QKind::Positive
                ),
                format!("{p}workspace")
            );
            set!(
                l.claude_home_size,
                self.quantity(
                    s.get("claudeHome"),
                    &format!("{p}claudeHome"),
                    QKind::Positive
                ),
                format!("{p}claudeHome")
            );
            set!(
                l.storage_class,
                self.nonempty(s.get("storageClass"), &format!("{p}storageClass")),
                format!("{p}storageClass")
            );
        }
        if let Some(e) = self.section(map, "env", prefix) {
            let p = k("env.");
            let files = self
                .string_list(e.get("dotenvFiles"), &format!("{p}dotenvFiles"))
                .map(|v| {
                    v.iter()
                        .filter_map(|s| self.path(s, &format!("{p}dotenvFiles")))
                        .collect()
                });
            set!(l.dotenv_files, files, format!("{p}dotenvFiles"));
            let vars = self.string_list(e.get("excludeVars"), &format!("{p}excludeVars"));
            set!(l.exclude_vars, vars, format!("{p}excludeVars"));
        }
        if let Some(v) = map.get("secretFiles") {
            let key = k("secretFiles");
            let specs = self.secret_files(v, &key);
            set!(l.secret_files, specs, key);
        }
        if let Some(s) = self.section(map, "sync", prefix) {
            let p = k("sync.");
            set!(
                l.use_gitignore,
                self.boolean(s.get("useGitignore"), &format!("{p}useGitignore")),
                format!("{p}useGitignore")
            );
            set!(
                l.exclude_patterns,
                self.string_list(s.get("excludePatterns"), &format!("{p}excludePatterns")),
                format!("{p}excludePatterns")
            );
        }
        if let Some(g) = self.section(map, "git", prefix) {
            let p = k("git.");
            set!(
                l.git_secret_name,
                self.nonempty(g.get("secretName"), &format!("{p}secretName")),
                format!("{p}secretName")
            );
            let kh = match self.string(g.get("knownHosts"), &format!("{p}knownHosts")) {
                None => None,
                Some(s) => match s.as_str() {
                    "accept-new" => Some(KnownHosts::AcceptNew),
                    "strict" => Some(KnownHosts::Strict),
                    "off" => Some(KnownHosts::Off),
                    _ => {
                        self.faults.push(format!(
                            "`{p}knownHosts` is {s:?}; expected accept-new, strict or off"
                        ));
                        None
                    }
                },
            };
            set!(l.known_hosts, kh, format!("{p}knownHosts"));
            set!(
                l.auto_branch,
                self.boolean(g.get("autoBranch"), &format!("{p}autoBranch")),
                format!("{p}autoBranch")
            );
            set!(
                l.git_user_name,
                self.nonempty(g.get("userName"), &format!("{p}userName")),
                format!("{p}userName")
            );
            set!(
                l.git_user_email,
                self.nonempty(g.get("userEmail"), &format!("{p}userEmail")),
                format!("{p}userEmail")
            );
        }
        if let Some(a) = self.section(map, "agent", prefix) {
            let p = k("agent.");
            let cmd = self.string_list(a.get("command"), &format!("{p}command"));
            if cmd.as_ref().is_some_and(Vec::is_empty) {
                self.faults.push(format!(
                    "`{p}command` is an empty list; expected the agent's argv, e.g. [claude, -p]"
                ));
            }
            set!(
                l.agent_command,
                cmd.filter(|c| !c.is_empty()),
                format!("{p}command")
            );
            set!(
                l.agent_idle_timeout,
                self.duration(a.get("idleTimeout"), &format!("{p}idleTimeout")),
                format!("{p}idleTimeout")
            );
            set!(
                l.agent_result_grace_timeout,
                self.duration(
                    a.get("resultGraceTimeout"),
                    &format!("{p}resultGraceTimeout")
                ),
                format!("{p}resultGraceTimeout")
            );
        }
        if let Some(pm) = self.section(map, "pod", prefix) {
            let p = k("pod.");
            set!(
                l.service_account_name,
                self.nonempty(
                    pm.get("serviceAccountName"),
                    &format!("{p}serviceAccountName")
                ),
                format!("{p}serviceAccountName")
            );
            set!(
                l.automount_service_account_token,
                self.boolean(
                    pm.get("automountServiceAccountToken"),
                    &format!("{p}automountServiceAccountToken")
                ),
                format!("{p}automountServiceAccountToken")
            );
            set!(
                l.node_selector,
                self.string_map(pm.get("nodeSelector"), &format!("{p}nodeSelector")),
                format!("{p}nodeSelector")
            );
            let tol = self.tolerations(pm.get("tolerations"), &format!("{p}tolerations"));
            set!(l.tolerations, tol, format!("{p}tolerations"));
        }
        if let Some(t) = self.section(map, "timeouts", prefix) {
            let p = k("timeouts.");
            set!(
                l.start_timeout,
                self.duration(t.get("start"), &format!("{p}start")),
                format!("{p}start")
            );
        }
    }

    fn secret_files(&mut self, v: &Value, key: &str) -> Option<Vec<SecretFileSpec>> {
        let items = self.sequence(
            v,
            key,
            "a list of SRC:DST strings or {source, destination} mappings",
        )?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let spec = match item {
                Value::String(s) => match parse_secret_file_spec(s) {
                    Ok(spec) => spec,
                    Err(e) => {
                        self.faults.push(format!("`{k}`: {e}"));
                        continue;
                    }
                },
                Value::Mapping(m) => {
                    self.unknown_keys(m, &format!("{k}."), &["source", "destination"]);
                    let src = self.nonempty(m.get("source"), &format!("{k}.source"));
                    let dst = self.nonempty(m.get("destination"), &format!("{k}.destination"));
                    let (Some(src), Some(dst)) = (src, dst) else {
                        if m.get("source").is_none() || m.get("destination").is_none() {
                            self.faults
                                .push(format!("`{k}` needs both `source` and `destination`"));
                        }
                        continue;
                    };
                    if let Err(e) = validate_destination(&dst) {
                        self.faults.push(format!("`{k}.destination`: {e}"));
                        continue;
                    }
                    SecretFileSpec {
                        source: PathBuf::from(src),
                        destination: dst,
                    }
                }
                other => {
                    self.fault(&k, other, "SRC:DST or {source, destination}");
                    continue;
                }
            };
            let src = spec.source.to_string_lossy().into_owned();
            if let Some(source) = self.path(&src, &k) {
                out.push(SecretFileSpec {
                    source,
                    destination: spec.destination,
                });
            }
        }
        Some(out)
    }

    fn tolerations(&mut self, v: Option<&Value>, key: &str) -> Option<Vec<Toleration>> {
        let items = self.sequence(
            v?,
            key,
            "a list of tolerations ({key, operator, value, effect})",
        )?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let k = format!("{key}[{i}]");
            let Some(m) = self.mapping(item, &k) else {
                continue;
            };
            self.unknown_keys(
                m,
                &format!("{k}."),
                &["key", "operator", "value", "effect", "tolerationSeconds"],
            );
            let t = Toleration {
                key: self.string(m.get("key"), &format!("{k}.key")),
                operator: self.string(m.get("operator"), &format!("{k}.operator")),
                value: self.string(m.get("value"), &format!("{k}.value")),
                effect: self.string(m.get("effect"), &format!("{k}.effect")),
                toleration_seconds: match m.get("tolerationSeconds") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
                    Some(other) => {
                        self.fault(
                            &format!("{k}.tolerationSeconds"),
                            other,
                            "a whole number of seconds",
                        );
                        None
                    }
                },
            };
            if let Some(op) = &t.operator {
                if op != "Exists" && op != "Equal" {
                    self.faults.push(format!(
                        "`{k}.operator` is {op:?}; expected Exists or Equal"
                    ));
                }
                if op == "Exists" && t.value.is_some() {
                    self.faults.push(format!(
                        "`{k}`: a toleration with operator Exists must not have a value"
                    ));
                }
            }
            if let Some(e) = &t.effect {
                if !matches!(e.as_str(), "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                    self.faults.push(format!(
                        "`{k}.effect` is {e:?}; expected NoSchedule, PreferNoSchedule or NoExecute"
                    ));
                }
            }
            out.push(t);
        }
        Some(out)
    }
}

/// What a quantity is for, which decides the extra rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QKind {
    /// CPU, memory, storage: greater than zero.
    Positive,
    /// Extended resources (GPUs): a whole number, zero allowed.
    Integer,
}

/// Parse and check a quantity; the error includes the accepted form.
pub fn check_quantity(text: &str, kind: QKind) -> std::result::Result<Quantity, String> {
    let q = Quantity::parse(text).map_err(|e| format!("{e}; expected {QUANTITY_FORM}"))?;
    match kind {
        QKind::Positive if q.is_zero() => Err(format!(
            "{text:?} must be greater than zero; expected {QUANTITY_FORM}"
        )),
        QKind::Integer if !q.is_integer() => Err(format!(
            "{text:?} must be a whole number (extended resources such as GPUs cannot be fractional)"
        )),
        _ => Ok(q),
    }
}

/// An extended resource name: `[prefix/]name` where the prefix is a DNS subdomain (e.g.
/// `nvidia.com/gpu`). `cpu` and `memory` have their own keys and flags.
pub fn validate_resource_name(name: &str) -> std::result::Result<(), String> {
    if name == "cpu" || name == "memory" {
        return Err(format!(
            "{name:?} has its own setting (--{name} / resources.{name})"
        ));
    }
    let (prefix, local) = match name.split_once('/') {
        Some((p, l)) => (Some(p), l),
        None => (None, name),
    };
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    let edge_ok = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    if local.is_empty() || local.len() > 63 || !local.chars().all(ok_char) || !edge_ok(local) {
        return Err(format!(
            "resource name {name:?} is invalid; expected a name like nvidia.com/gpu or example.com/foo"
        ));
    }
    if prefix.is_none() && local != "ephemeral-storage" && !local.starts_with("hugepages-") {
        return Err(format!(
            "resource name {name:?} needs a domain prefix, e.g. nvidia.com/{name} (only ephemeral-storage and hugepages-* go without one)"
        ));
    }
    if let Some(p) = prefix {
        if p == "kubernetes.io" || p.ends_with(".kubernetes.io") {
            return Err(format!(
                "resource name {name:?} uses the reserved prefix {p:?}; extended resources need their vendor's domain"
            ));
        }
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && edge_ok(seg)
            });
        if !ok {
            return Err(format!(
                "resource name {name:?} has an invalid prefix {p:?}; expected a DNS name like nvidia.com"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Layer, Vec<Warning>)> {
        parse_layer(
            text,
            Path::new("/cfg/config.yaml"),
            FileKind::Global,
            Some(Path::new("/home/u")),
        )
    }

    fn faults(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn both_forms_mean_the_same() {
        let (a, wa) =
            parse("defaults:\n  env:\n    dotenvFiles: [.env]\n  namespace: dev\n").unwrap();
        let (b, wb) = parse("env:\n  dotenvFiles: [.env]\nnamespace: dev\n").unwrap();
        assert_eq!(a, b);
        assert!(wa.is_empty() && wb.is_empty());
        assert_eq!(a.dotenv_files, Some(vec![PathBuf::from(".env")]));
    }

    #[test]
    fn a_key_in_both_places_is_an_error() {
        let e = faults("defaults:\n  image: a\nimage: b\n");
        assert!(
            e.contains("`image` is set both at the top level and under `defaults:`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_warn_with_suggestions() {
        let (_, w) = parse(
            "defaults:\n  resouces:\n    cpu: 1\n  namespace: x\n  storage:\n    workspce: 1Gi\nsync:\n  exclude: [a]\ncpu: 2\nzzzz: 1\n",
        )
        .unwrap();
        let msgs: Vec<String> = w.iter().map(ToString::to_string).collect();
        let all = msgs.join("\n");
        assert!(all.contains("/cfg/config.yaml: unknown key `defaults.resouces` is ignored (did you mean `defaults.resources`?)"), "{all}");
        assert!(all.contains("`defaults.storage.workspce` is ignored (did you mean `defaults.storage.workspace`?)"), "{all}");
        assert!(
            all.contains("`sync.exclude` is ignored (did you mean `sync.excludePatterns`?)"),
            "{all}"
        );
        assert!(
            all.contains("`cpu` is ignored (did you mean `resources.cpu`?)"),
            "{all}"
        );
        assert!(all.contains("unknown key `zzzz` is ignored"), "{all}");
        assert_eq!(w.len(), 5);
    }

    #[test]
    fn bad_values_name_file_key_and_form() {
        let table: &[(&str, &str)] = &[
            (
                "defaults:\n  resources:\n    memory: 2Gb\n",
                "`defaults.resources.memory`: \"2Gb\" has an unknown suffix",
            ),
            (
                "defaults:\n  resources:\n    cpu: \"-1\"\n",
                "`defaults.resources.cpu`: \"-1\" is negative",
            ),
            ("defaults:\n  resources:\n    cpu: -1\n", "negative"),
            (
                "defaults:\n  resources:\n    cpu: 0\n",
                "must be greater than zero",
            ),
            (
                "defaults:\n  resources:\n    cpu: [1]\n",
                "`defaults.resources.cpu` is a list; expected a number with an optional suffix",
            ),
            (
                "defaults:\n  storage:\n    workspace: 10GB\n",
                "`defaults.storage.workspace`",
            ),
            (
                "defaults:\n  resources:\n    extra:\n      nvidia.com/gpu: 0.5\n",
                "must be a whole number",
            ),
            (
                "defaults:\n  resources:\n    extra:\n      Bad Name: 1\n",
                "resource name \"Bad Name\" is invalid",
            ),
            (
                "defaults:\n  namespace: Dev_NS\n",
                "`defaults.namespace`: namespace \"Dev_NS\" is invalid",
            ),
            (
                "defaults:\n  namespace: [a]\n",
                "`defaults.namespace` is a list; expected a string",
            ),
            ("defaults:\n  image: \"\"\n", "`defaults.image` is empty"),
            (
                "defaults: [1, 2]\n",
                "`defaults` is a list; expected a mapping",
            ),
            (
                "sync:\n  useGitignore: maybe\n",
                "`sync.useGitignore` is a string; expected true or false",
            ),
            (
                "sync:\n  excludePatterns: \"*.log\"\n",
                "`sync.excludePatterns` is a string; expected a list of strings",
            ),
            (
                "git:\n  knownHosts: yes-please\n",
                "expected accept-new, strict or off",
            ),
            (
                "agent:\n  command: []\n",
                "`agent.command` is an empty list",
            ),
            ("agent:\n  idleTimeout: 5 minutes\n", "`agent.idleTimeout`"),
            ("timeouts:\n  start: 0s\n", "must be longer than zero"),
            (
                "pod:\n  tolerations:\n    - operator: Maybe\n",
                "expected Exists or Equal",
            ),
            (
                "pod:\n  tolerations:\n    - effect: Never\n",
                "expected NoSchedule, PreferNoSchedule or NoExecute",
            ),
            (
                "pod:\n  nodeSelector: [a]\n",
                "`pod.nodeSelector` is a list",
            ),
            ("secretFiles:\n  - relative/dest\n", "absolute DST"),
            ("secretFiles:\n  - a:/x/../y\n", "must not contain '..'"),
            (
                "secretFiles:\n  - source: a\n",
                "needs both `source` and `destination`",
            ),
            ("- a\n- b\n", "must be a mapping of keys"),
            ("defaults:\n  image: [\n", "not valid YAML"),
        ];
        for (text, want) in table {
            let e = faults(text);
            assert!(e.contains(want), "for:\n{text}\ngot: {e}\nwant: {want}");
            assert!(e.contains("/cfg/config.yaml"), "{e}");
        }
    }

    #[test]
    fn all_faults_are_reported_together() {
        let e = faults("defaults:\n  resources:\n    cpu: x\n    memory: 2Gb\n");
        assert!(
            e.contains("resources.cpu") && e.contains("resources.memory"),
            "{e}"
        );
    }

    #[test]
    fn hostile_yaml_is_an_error_not_a_panic() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let deep_map = "a:\n".repeat(2000);
        for text in [
            deep.as_str(),
            deep_map.as_str(),
            "\0",
            "a: *undefined\n",
            "a: &x [*x]\nb: *x\n",
            "defaults: !!binary AAAA\n",
            "\tdefaults:\n\t\timage: x\n",
            "defaults:\n  image: x\ndefaults:\n  image: y\n",
            "? [a, b]\n: c\n",
            "---\na: 1\n---\nb: 2\n",
        ] {
            let r = std::panic::catch_unwind(|| parse(text));
            assert!(r.is_ok(), "panicked on {:?}", &text[..text.len().min(40)]);
        }
    }

    #[test]
    fn yaml_error_carries_a_line() {
        let err = parse("defaults:\n  a: 1\n b: [\n").unwrap_err();
        match err {
            Error::File { line, .. } => assert!(line.is_some()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_comment_only_and_bom_files_are_fine() {
        assert_eq!(parse("").unwrap().0, Layer::default());
        assert_eq!(parse("# nothing\n").unwrap().0, Layer::default());
        let (l, _) = parse("\u{feff}defaults:\n  image: x\n").unwrap();
        assert_eq!(l.image.as_deref(), Some("x"));
    }

    #[test]
    fn repo_in_global_is_a_warning_and_template_paths_are_relative_to_it() {
        let (l, w) = parse("repo: https://x/y\n").unwrap();
        assert_eq!(l.repo, None);
        assert!(w[0]
            .message
            .contains("only applies in a repository template"));
        let (t, w) = parse_layer(
            "repo: https://x/y\nenv:\n  dotenvFiles: [.env, /abs/.env, ~/.env]\nsecretFiles:\n  - keys/id:/home/dev/.ssh/id\n  - source: ~/k\n    destination: /etc/k\n",
            Path::new("/repo/.kodama.yaml"),
            FileKind::Template,
            Some(Path::new("/home/u")),
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(t.repo.as_deref(), Some("https://x/y"));
        assert_eq!(
            t.dotenv_files.unwrap(),
            vec![
                PathBuf::from("/repo/.env"),
                PathBuf::from("/abs/.env"),
                PathBuf::from("/home/u/.env")
            ]
        );
        let sf = t.secret_files.unwrap();
        assert_eq!(sf[0].source, PathBuf::from("/repo/keys/id"));
        assert_eq!(sf[0].destination, "/home/dev/.ssh/id");
        assert_eq!(sf[1].source, PathBuf::from("/home/u/k"));
    }

    #[test]
    fn tilde_without_home_is_a_clear_fault() {
        let e = parse_layer(
            "env:\n  dotenvFiles: [~/.env]\n",
            Path::new("/c.yaml"),
            FileKind::Global,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("HOME is not set"), "{e}");
    }

    #[test]
    fn secret_file_specs() {
        let s = parse_secret_file_spec("~/.ssh/id:/home/dev/.ssh/id").unwrap();
        assert_eq!(s.source, PathBuf::from("~/.ssh/id"));
        assert_eq!(s.destination, "/home/dev/.ssh/id");
        let s = parse_secret_file_spec("C:odd:/etc/x").unwrap();
        assert_eq!(s.source, PathBuf::from("C:odd"));
        for bad in [":/x", "a", "a:b", "a:/", "a:/x/", "a:/x//y", "a:/./x"] {
            assert!(parse_secret_file_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resource_names() {
        for ok in [
            "nvidia.com/gpu",
            "example.com/foo-bar",
            "hugepages-2Mi",
            "amd.com/gpu",
        ] {
            assert_eq!(validate_resource_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "cpu",
            "memory",
            "/gpu",
            "Nvidia.com/gpu",
            "a/b/c",
            "x/-y",
            "a b",
        ] {
            assert!(validate_resource_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_keys_cover_the_spec() {
        let k = known_keys();
        for want in [
            "namespace",
            "image",
            "resources.cpu",
            "resources.memory",
            "storage.workspace",
            "storage.claudeHome",
            "branchPrefix",
            "env.dotenvFiles",
            "env.excludeVars",
            "sync.useGitignore",
            "sync.excludePatterns",
            "git.secretName",
        ] {
            assert!(k.contains(&want.to_string()), "{want}");
        }
    }
}
