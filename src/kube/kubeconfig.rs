//! Kubeconfig files: parsing (YAML or JSON, with the quirks kubectl tolerates), merging several files
//! exactly like kubectl, and selecting the cluster, user and namespace to use.
//!
//! Pure: no environment, no network. File reading is limited to `parse_file` (one named file), which
//! `load.rs` calls; everything else works on text and values so it is table-tested.
//!
//! Merge rules (client-go `clientcmd`): the first file that defines a cluster, user or context by name
//! wins the whole entry; the first file that sets a non-empty `current-context` wins. Relative paths
//! (`certificate-authority`, `client-certificate`, `client-key`, `tokenFile`, and `exec.command` when it
//! contains a `/`) are resolved against the directory of the file that defined the entry.
//!
//! May import: error, secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The name of the cluster extension whose value is handed to exec plugins as `spec.cluster.config`.
pub const EXEC_EXTENSION_NAME: &str = "client.authentication.k8s.io/exec";

/// One cluster entry, with paths already made absolute and `*-data` fields decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    pub server: String,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub certificate_authority: Option<PathBuf>,
    /// Decoded PEM bytes of `certificate-authority-data` (wins over the path).
    pub certificate_authority_data: Option<Vec<u8>>,
    pub proxy_url: Option<String>,
    pub disable_compression: bool,
    /// The `client.authentication.k8s.io/exec` extension, for `provideClusterInfo`.
    pub exec_extension: Option<serde_json::Value>,
}

/// Impersonation settings (`as`, `as-uid`, `as-groups`, `as-user-extra`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Impersonation {
    pub user: Option<String>,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    /// True when no impersonation is configured.
    pub fn is_empty(&self) -> bool {
        self.user.is_none() && self.uid.is_none() && self.groups.is_empty() && self.extra.is_empty()
    }
}

/// An exec credential plugin (`user.exec`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecConfig {
    pub api_version: String,
    /// The command, made absolute when it contained a `/` and was relative.
    pub command: String,
    pub args: Vec<String>,
    /// Extra environment for the plugin (values may be secrets).
    pub env: Vec<(String, Secret)>,
    /// `Never`, `IfAvailable` or `Always` (v1beta1 defaults to `IfAvailable`).
    pub interactive_mode: String,
    pub provide_cluster_info: bool,
    pub install_hint: Option<String>,
}

/// A legacy `auth-provider` entry; we only report it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthProvider {
    pub name: String,
}

/// One user entry (`AuthInfo`), with paths made absolute and data decoded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct User {
    pub client_certificate: Option<PathBuf>,
    pub client_certificate_data: Option<Vec<u8>>,
    pub client_key: Option<PathBuf>,
    pub client_key_data: Option<Secret>,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub impersonate: Impersonation,
    pub auth_provider: Option<AuthProvider>,
    pub exec: Option<ExecConfig>,
}

/// One context entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    pub cluster: String,
    pub user: String,
    pub namespace: Option<String>,
}

/// A named entry and the file that defined it.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T> {
    pub name: String,
    pub value: T,
    pub source: PathBuf,
}

/// One parsed kubeconfig file, or the merge of several.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub clusters: Vec<Named<Cluster>>,
    pub users: Vec<Named<User>>,
    pub contexts: Vec<Named<Context>>,
    pub current_context: Option<String>,
    /// The files this config came from, in load order.
    pub files: Vec<PathBuf>,
}

impl Config {
    /// True when nothing is defined (kubectl then considers in-cluster config).
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
            && self.users.is_empty()
            && self.contexts.is_empty()
            && self.current_context.is_none()
    }

    fn files_text(&self) -> String {
        if self.files.is_empty() {
            return "the kubeconfig".to_string();
        }
        let names: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        names.join(", ")
    }
}

/// Command-line choices that override the kubeconfig.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    pub namespace: Option<String>,
}

/// What [`select`] picked: everything needed to talk to one cluster as one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub context_name: String,
    pub cluster_name: String,
    pub cluster: Cluster,
    /// The file that defined the cluster.
    pub cluster_source: PathBuf,
    pub user_name: String,
    pub user: User,
    pub namespace: String,
    /// True when the namespace came from the flag or the context (not the "default" fallback).
    pub namespace_explicit: bool,
}

// ---------------------------------------------------------------------------------------------
// Raw serde shapes (what the file says, before resolution).

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFile {
    clusters: Option<Vec<RawNamed<RawCluster>>>,
    users: Option<Vec<RawNamed<RawUser>>>,
    contexts: Option<Vec<RawNamed<RawContext>>>,
    #[serde(rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Deserialize)]
struct RawNamed<T> {
    name: Option<String>,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCluster {
    server: Option<String>,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", deserialize_with = "yaml11_bool")]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
    #[serde(rename = "disable-compression", deserialize_with = "yaml11_bool")]
    disable_compression: Option<bool>,
    extensions: Option<Vec<RawExtension>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawExtension {
    name: Option<String>,
    extension: Option<yaml_serde::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawUser {
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<Secret>,
    token: Option<Secret>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    #[serde(rename = "as")]
    as_user: Option<String>,
    #[serde(rename = "as-uid")]
    as_uid: Option<String>,
    #[serde(rename = "as-groups")]
    as_groups: Option<Vec<String>>,
    #[serde(rename = "as-user-extra")]
    as_user_extra: Option<BTreeMap<String, Option<Vec<String>>>>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<RawAuthProvider>,
    exec: Option<RawExec>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawAuthProvider {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawExec {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    command: Option<String>,
    args: Option<Vec<String>>,
    env: Option<Vec<RawEnv>>,
    #[serde(rename = "interactiveMode")]
    interactive_mode: Option<String>,
    #[serde(rename = "provideClusterInfo", deserialize_with = "yaml11_bool")]
    provide_cluster_info: Option<bool>,
    #[serde(rename = "installHint")]
    install_hint: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEnv {
    name: Option<String>,
    value: Option<Secret>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawContext {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

/// Accepts a YAML 1.1 boolean (`true`, `yes`, `on`, `y`, and their negatives, any case), as kubectl's
/// YAML reader does, as well as a real boolean or null.
fn yaml11_bool<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Text(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(None),
        Some(B::Bool(b)) => Ok(Some(b)),
        Some(B::Text(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "on" => Ok(Some(true)),
            "false" | "no" | "n" | "off" | "" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a boolean (true/false), found {s:?}"
            ))),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Reads and parses one kubeconfig file. Relative paths are resolved against its directory.
pub fn parse_file(path: &Path) -> Result<Config> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::file(path, None, format!("cannot read kubeconfig: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::file(path, None, "kubeconfig is not valid UTF-8"))?;
    let abs = absolute(path);
    parse_str(&text, &abs)
}

/// Makes `path` absolute against the current directory (without touching the filesystem further).
pub fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => path.to_path_buf(),
        }
    }
}

/// Parses kubeconfig text as if it were the file `path` (used for error messages and to resolve
/// relative paths against `path`'s directory).
pub fn parse_str(text: &str, path: &Path) -> Result<Config> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let only_comments = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
    let raw: RawFile = if only_comments {
        RawFile::default()
    } else {
        let parsed: Option<RawFile> = yaml_serde::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            Error::file(path, line, format!("not a valid kubeconfig: {e}"))
                .with_file_hint("fix the file, or point KUBECONFIG / --kubeconfig at a working one")
        })?;
        parsed.unwrap_or_default()
    };
    let fault = |what: String| Error::file(path, None, what);

    let mut cfg = Config {
        files: vec![path.to_path_buf()],
        current_context: raw.current_context.filter(|s| !s.is_empty()),
        ..Config::default()
    };
    for (i, e) in raw.clusters.unwrap_or_default().into_iter().enumerate() {
        let name = entry_name(e.name, "clusters", i).map_err(fault)?;
        let value = resolve_cluster(e.value.unwrap_or_default(), &dir)
            .map_err(|m| fault(format!("cluster {name:?}: {m}")))?;
        push_unique(&mut cfg.clusters, name, value, path, "cluster")?;
    }
    for (i, e) in raw.users.unwrap_or_default().into_iter().enumerate() {
        let name = entry_name(e.name, "users", i).map_err(fault)?;
        let value = resolve_user(e.value.unwrap_or_default(), &dir)
            .map_err(|m| fault(format!("user {name:?}: {m}")))?;
        push_unique(&mut cfg.users, name, value, path, "user")?;
    }
    for (i, e) in raw.contexts.unwrap_or_default().into_iter().enumerate() {
        let name = entry_name(e.name, "contexts", i).map_err(fault)?;
        let c = e.value.unwrap_or_default();
        let value = Context {
            cluster: c.cluster.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            namespace: c.namespace.filter(|s| !s.is_empty()),
        };
        push_unique(&mut cfg.contexts, name, value, path, "context")?;
    }
    Ok(cfg)
}

trait FileHint {
    fn with_file_hint(self, hint: &str) -> Error;
}

impl FileHint for Error {
    fn with_file_hint(self, h: &str) -> Error {
        match self {
            Error::File {
                path,
                line,
                message,
                ..
            } => Error::File {
                path,
                line,
                message,
                hint: Some(h.to_string()),
            },
            other => other,
        }
    }
}

fn entry_name(name: Option<String>, list: &str, i: usize) -> std::result::Result<String, String> {
    match name {
        Some(n) if !n.is_empty() => Ok(n),
        _ => Err(format!("{list}[{i}] has no name")),
    }
}

fn push_unique<T>(
    list: &mut Vec<Named<T>>,
    name: String,
    value: T,
    path: &Path,
    what: &str,
) -> Result<()> {
    if list.iter().any(|n| n.name == name) {
        return Err(Error::file(
            path,
            None,
            format!("{what} {name:?} is defined twice"),
        ));
    }
    list.push(Named {
        name,
        value,
        source: path.to_path_buf(),
    });
    Ok(())
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn resolve_path(s: Option<String>, dir: &Path) -> Option<PathBuf> {
    nonempty(s).map(|p| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            dir.join(p)
        }
    })
}

fn decode_data(s: Option<&str>, field: &str) -> std::result::Result<Option<Vec<u8>>, String> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(None);
    };
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map(Some)
        .map_err(|_| format!("{field} is not valid base64"))
}

fn resolve_cluster(c: RawCluster, dir: &Path) -> std::result::Result<Cluster, String> {
    let exec_extension = c
        .extensions
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name.as_deref() == Some(EXEC_EXTENSION_NAME))
        .and_then(|e| e.extension)
        .and_then(|v| serde_json::to_value(v).ok());
    Ok(Cluster {
        server: c.server.unwrap_or_default(),
        tls_server_name: nonempty(c.tls_server_name),
        insecure_skip_tls_verify: c.insecure_skip_tls_verify.unwrap_or(false),
        certificate_authority: resolve_path(c.certificate_authority, dir),
        certificate_authority_data: decode_data(
            c.certificate_authority_data.as_deref(),
            "certificate-authority-data",
        )?,
        proxy_url: nonempty(c.proxy_url),
        disable_compression: c.disable_compression.unwrap_or(false),
        exec_extension,
    })
}

fn resolve_user(u: RawUser, dir: &Path) -> std::result::Result<User, String> {
    let key_data = match u.client_key_data {
        Some(s) => decode_data(Some(s.expose()), "client-key-data")?
            .map(|b| {
                String::from_utf8(b).map_err(|_| "client-key-data is not PEM text".to_string())
            })
            .transpose()?
            .map(Secret::new),
        None => None,
    };
    let exec = match u.exec {
        None => None,
        Some(e) => Some(resolve_exec(e, dir)?),
    };
    let extra = u
        .as_user_extra
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect();
    Ok(User {
        client_certificate: resolve_path(u.client_certificate, dir),
        client_certificate_data: decode_data(
            u.client_certificate_data.as_deref(),
            "client-certificate-data",
        )?,
        client_key: resolve_path(u.client_key, dir),
        client_key_data: key_data,
        token: u.token.filter(|t| !t.is_empty()),
        token_file: resolve_path(u.token_file, dir),
        username: nonempty(u.username),
        password: u.password.filter(|p| !p.is_empty()),
        impersonate: Impersonation {
            user: nonempty(u.as_user),
            uid: nonempty(u.as_uid),
            groups: u.as_groups.unwrap_or_default(),
            extra,
        },
        auth_provider: u.auth_provider.map(|a| AuthProvider {
            name: a.name.unwrap_or_default(),
        }),
        exec,
    })
}

fn resolve_exec(e: RawExec, dir: &Path) -> std::result::Result<ExecConfig, String> {
    let command = nonempty(e.command).ok_or("exec has no command")?;
    let command = if command.contains('/') && !Path::new(&command).is_absolute() {
        dir.join(&command).display().to_string()
    } else {
        command
    };
    let api_version = nonempty(e.api_version).ok_or("exec has no apiVersion")?;
    let interactive_mode = match nonempty(e.interactive_mode) {
        Some(m) => m,
        None if api_version == "client.authentication.k8s.io/v1beta1" => "IfAvailable".to_string(),
        None => {
            return Err(
                "exec.interactiveMode is required for client.authentication.k8s.io/v1 (Never, IfAvailable or Always)"
                    .into(),
            )
        }
    };
    if !matches!(
        interactive_mode.as_str(),
        "Never" | "IfAvailable" | "Always"
    ) {
        return Err(format!(
            "exec.interactiveMode {interactive_mode:?} is not one of Never, IfAvailable, Always"
        ));
    }
    let mut env = Vec::new();
    for (i, v) in e.env.unwrap_or_default().into_iter().enumerate() {
        let name = nonempty(v.name).ok_or_else(|| format!("exec.env[{i}] has no name"))?;
        env.push((name, v.value.unwrap_or_default()));
    }
    Ok(ExecConfig {
        api_version,
        command,
        args: e.args.unwrap_or_default(),
        env,
        interactive_mode,
        provide_cluster_info: e.provide_cluster_info.unwrap_or(false),
        install_hint: nonempty(e.install_hint),
    })
}

// ---------------------------------------------------------------------------------------------
// Merging and selection

/// Merges parsed files in order: for every named entry and for `current-context`, the first file that
/// sets it wins; later definitions are dropped whole.
pub fn merge(configs: Vec<Config>) -> Config {
    let mut out = Config::default();
    for c in configs {
        out.files.extend(c.files);
        if out.current_context.is_none() {
            out.current_context = c.current_context;
        }
        for e in c.clusters {
            if !out.clusters.iter().any(|x| x.name == e.name) {
                out.clusters.push(e);
            }
        }
        for e in c.users {
            if !out.users.iter().any(|x| x.name == e.name) {
                out.users.push(e);
            }
        }
        for e in c.contexts {
            if !out.contexts.iter().any(|x| x.name == e.name) {
                out.contexts.push(e);
            }
        }
    }
    out
}

fn names<T>(list: &[Named<T>]) -> String {
    if list.is_empty() {
        return "none are defined".to_string();
    }
    let n: Vec<String> = list.iter().map(|e| format!("{:?}", e.name)).collect();
    format!("defined: {}", n.join(", "))
}

fn not_found(message: String, hint: String) -> Error {
    Error::with_hint(message, hint)
}

/// Picks the context, cluster, user and namespace (flag > kubeconfig > default).
pub fn select(cfg: &Config, sel: &Selection) -> Result<Selected> {
    let files = cfg.files_text();
    let context_name = match sel.context.as_deref().filter(|s| !s.is_empty()) {
        Some(c) => c.to_string(),
        None => cfg.current_context.clone().unwrap_or_default(),
    };
    let context = if context_name.is_empty() {
        Context::default()
    } else {
        match cfg.contexts.iter().find(|c| c.name == context_name) {
            Some(c) => c.value.clone(),
            None => {
                let how = if sel.context.is_some() {
                    "--context"
                } else {
                    "current-context"
                };
                return Err(not_found(
                    format!("context {context_name:?} does not exist in {files} (named by {how})"),
                    format!(
                        "pick one of the contexts ({}) with --context, or run `kubectl config use-context`",
                        names(&cfg.contexts)
                    ),
                ));
            }
        }
    };
    let cluster_name = sel
        .cluster
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| context.cluster.clone());
    if cluster_name.is_empty() {
        let msg = if context_name.is_empty() {
            format!("no current context is set in {files}")
        } else {
            format!("context {context_name:?} in {files} names no cluster")
        };
        return Err(not_found(
            msg,
            "pass --context, or run `kubectl config use-context <name>`".to_string(),
        ));
    }
    let Some(cluster) = cfg.clusters.iter().find(|c| c.name == cluster_name) else {
        return Err(not_found(
            format!(
                "cluster {cluster_name:?} (used by context {context_name:?}) does not exist in {files}"
            ),
            format!("fix the context or pass --cluster ({})", names(&cfg.clusters)),
        ));
    };
    if cluster.value.server.is_empty() {
        return Err(Error::file(
            &cluster.source,
            None,
            format!("cluster {cluster_name:?} has no server"),
        ));
    }
    let user_name = sel
        .user
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| context.user.clone());
    let user = if user_name.is_empty() {
        User::default()
    } else {
        match cfg.users.iter().find(|u| u.name == user_name) {
            Some(u) => u.value.clone(),
            None => {
                return Err(not_found(
                    format!(
                        "user {user_name:?} (used by context {context_name:?}) does not exist in {files}"
                    ),
                    format!("fix the context or pass --user ({})", names(&cfg.users)),
                ))
            }
        }
    };
    let (namespace, namespace_explicit) = match sel.namespace.as_deref().filter(|s| !s.is_empty()) {
        Some(n) => {
            if !is_dns1123_label(n) {
                return Err(Error::usage(
                    format!("invalid namespace {n:?} given with -n/--namespace"),
                    Some(NAMESPACE_RULE.to_string()),
                ));
            }
            (n.to_string(), true)
        }
        None => match &context.namespace {
            Some(n) => {
                if !is_dns1123_label(n) {
                    let src = cfg
                        .contexts
                        .iter()
                        .find(|c| c.name == context_name)
                        .map(|c| c.source.display().to_string())
                        .unwrap_or(files);
                    return Err(Error::with_hint(
                        format!("context {context_name:?} in {src} has an invalid namespace {n:?}"),
                        NAMESPACE_RULE,
                    ));
                }
                (n.clone(), true)
            }
            None => ("default".to_string(), false),
        },
    };
    Ok(Selected {
        context_name,
        cluster_name,
        cluster: cluster.value.clone(),
        cluster_source: cluster.source.clone(),
        user_name,
        user,
        namespace,
        namespace_explicit,
    })
}

const NAMESPACE_RULE: &str =
    "a namespace is at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit";

/// True for a valid DNS-1123 label (what namespace names must be).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Splits a KUBECONFIG value into paths: ':'-separated, empty entries and duplicates dropped (first
/// occurrence kept).
pub fn split_kubeconfig_env(value: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for part in value.split(':') {
        if part.is_empty() {
            continue;
        }
        let p = PathBuf::from(part);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/kubeconfig")
            .join(name)
    }

    fn parse(name: &str) -> Config {
        parse_file(&fixture(name)).expect("fixture parses")
    }

    #[test]
    fn parses_bom_yaml11_bools_null_lists_and_data() {
        let c = parse("quirks.yaml");
        assert_eq!(c.current_context.as_deref(), Some("quirky"));
        let cl = &c.clusters[0].value;
        assert!(cl.insecure_skip_tls_verify, "yes → true");
        assert!(!cl.disable_compression, "off → false");
        assert_eq!(
            cl.certificate_authority_data.as_deref(),
            Some(&b"hello"[..])
        );
        assert!(c.users.is_empty(), "users: null is an empty list");
        assert_eq!(c.contexts[0].value.namespace.as_deref(), Some("team-a"));
    }

    #[test]
    fn parses_json_kubeconfig() {
        let c = parse("json.json");
        assert_eq!(c.clusters[0].value.server, "https://10.0.0.1:6443");
        assert_eq!(
            c.users[0].value.token.as_ref().map(Secret::expose),
            Some("json-token")
        );
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_configs() {
        for text in ["", "# just a comment\n", "\u{feff}", "---\n"] {
            let c = parse_str(text, Path::new("/x/config")).expect("empty ok");
            assert!(c.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_defining_file() {
        let c = parse_str(
            "clusters:\n- name: c\n  cluster:\n    server: https://k\n    certificate-authority: ca.crt\nusers:\n- name: u\n  user:\n    client-certificate: certs/u.crt\n    client-key: /abs/u.key\n    tokenFile: tok\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: ./bin/plugin\n- name: v\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n      interactiveMode: Never\n",
            Path::new("/home/me/.kube/config"),
        )
        .expect("parses");
        assert_eq!(
            c.clusters[0].value.certificate_authority,
            Some(PathBuf::from("/home/me/.kube/ca.crt"))
        );
        let u = &c.users[0].value;
        assert_eq!(
            u.client_certificate,
            Some(PathBuf::from("/home/me/.kube/certs/u.crt"))
        );
        assert_eq!(u.client_key, Some(PathBuf::from("/abs/u.key")));
        assert_eq!(u.token_file, Some(PathBuf::from("/home/me/.kube/tok")));
        let e = u.exec.as_ref().expect("exec");
        assert_eq!(e.command, "/home/me/.kube/./bin/plugin");
        assert_eq!(e.interactive_mode, "IfAvailable", "v1beta1 default");
        assert_eq!(c.users[1].value.exec.as_ref().expect("exec").command, "aws");
    }

    #[test]
    fn errors_name_the_file_and_the_fault() {
        let cases = [
            ("clusters: [", "not a valid kubeconfig"),
            ("clusters:\n- cluster: {server: x}\n", "clusters[0] has no name"),
            (
                "clusters:\n- name: a\n  cluster: {server: x, certificate-authority-data: '!!!'}\n",
                "certificate-authority-data is not valid base64",
            ),
            (
                "clusters:\n- name: a\n  cluster: {server: x}\n- name: a\n  cluster: {server: y}\n",
                "cluster \"a\" is defined twice",
            ),
            (
                "users:\n- name: u\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: x}\n",
                "interactiveMode is required",
            ),
            (
                "clusters:\n- name: a\n  cluster: {server: x, insecure-skip-tls-verify: maybe}\n",
                "expected a boolean",
            ),
        ];
        for (text, want) in cases {
            let err = parse_str(text, Path::new("/etc/kc.yaml")).expect_err(text);
            let s = err.to_string();
            assert!(s.contains("/etc/kc.yaml"), "{s}");
            assert!(s.contains(want), "{text:?}: {s}");
        }
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = parse_file(Path::new("/nonexistent/kubeconfig")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/kubeconfig"));
    }

    #[test]
    fn merge_first_file_wins_per_entry_and_current_context() {
        let a = parse("merge-a.yaml");
        let b = parse("merge-b.yaml");
        let m = merge(vec![a, b]);
        // current-context: a has none, b sets it.
        assert_eq!(m.current_context.as_deref(), Some("ctx-b"));
        // shared cluster: a's whole entry wins, b's extra field is dropped.
        let shared = m
            .clusters
            .iter()
            .find(|c| c.name == "shared")
            .expect("shared");
        assert_eq!(shared.value.server, "https://a.example:6443");
        assert_eq!(shared.value.tls_server_name, None);
        assert!(shared.source.ends_with("merge-a.yaml"));
        // b-only entries are kept, with b's directory for relative paths.
        let bonly = m
            .clusters
            .iter()
            .find(|c| c.name == "b-only")
            .expect("b-only");
        assert!(bonly.source.ends_with("merge-b.yaml"));
        assert_eq!(m.contexts.len(), 2);
        assert_eq!(m.files.len(), 2);
        // Reverse order: b first.
        let m2 = merge(vec![parse("merge-b.yaml"), parse("merge-a.yaml")]);
        let shared = m2
            .clusters
            .iter()
            .find(|c| c.name == "shared")
            .expect("shared");
        assert_eq!(shared.value.server, "https://b.example:6443");
        assert_eq!(shared.value.tls_server_name.as_deref(), Some("b-name"));
    }

    #[test]
    fn selection_table() {
        let m = merge(vec![parse("merge-a.yaml"), parse("merge-b.yaml")]);
        struct Case {
            sel: Selection,
            want: std::result::Result<(&'static str, &'static str, &'static str), &'static str>,
        }
        let s = |c: Option<&str>, cl: Option<&str>, u: Option<&str>, n: Option<&str>| Selection {
            context: c.map(String::from),
            cluster: cl.map(String::from),
            user: u.map(String::from),
            namespace: n.map(String::from),
        };
        let cases = [
            // current-context ctx-b: cluster shared, user ub, namespace from context.
            Case {
                sel: s(None, None, None, None),
                want: Ok(("shared", "ub", "ns-b")),
            },
            // flag namespace wins over the context's.
            Case {
                sel: s(None, None, None, Some("flag")),
                want: Ok(("shared", "ub", "flag")),
            },
            // ctx-a has no namespace → "default".
            Case {
                sel: s(Some("ctx-a"), None, None, None),
                want: Ok(("shared", "ua", "default")),
            },
            // --cluster and --user override the context.
            Case {
                sel: s(Some("ctx-a"), Some("b-only"), Some("ub"), None),
                want: Ok(("b-only", "ub", "default")),
            },
            Case {
                sel: s(Some("nope"), None, None, None),
                want: Err("context \"nope\" does not exist in"),
            },
            Case {
                sel: s(Some("ctx-a"), Some("ghost"), None, None),
                want: Err("cluster \"ghost\" (used by context \"ctx-a\") does not exist"),
            },
            Case {
                sel: s(Some("ctx-a"), None, Some("ghost"), None),
                want: Err("user \"ghost\" (used by context \"ctx-a\") does not exist"),
            },
        ];
        for c in cases {
            match (select(&m, &c.sel), c.want) {
                (Ok(got), Ok((cl, u, ns))) => {
                    assert_eq!(
                        (
                            got.cluster_name.as_str(),
                            got.user_name.as_str(),
                            got.namespace.as_str()
                        ),
                        (cl, u, ns),
                        "{:?}",
                        c.sel
                    );
                }
                (Err(e), Err(want)) => {
                    let s = e.to_string();
                    assert!(s.contains(want), "{s}");
                    assert!(s.contains("merge-a.yaml"), "names the files: {s}");
                }
                (got, want) => panic!("{:?}: got {got:?}, want {want:?}", c.sel),
            }
        }
    }

    #[test]
    fn no_current_context_is_a_clear_error() {
        let c = parse_str(
            "clusters:\n- name: a\n  cluster: {server: https://a}\n",
            Path::new("/k/config"),
        )
        .expect("parses");
        let e = select(&c, &Selection::default()).expect_err("no context");
        assert!(e
            .to_string()
            .contains("no current context is set in /k/config"));
        assert!(e.render().contains("hint:"));
    }

    #[test]
    fn namespaces_must_be_dns_labels() {
        for ok in ["default", "a", "team-1", "x".repeat(63).as_str()] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in [
            "",
            "Team",
            "a_b",
            "-a",
            "a-",
            "a.b",
            "x".repeat(64).as_str(),
        ] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        let m = merge(vec![parse("merge-a.yaml"), parse("merge-b.yaml")]);
        let e = select(
            &m,
            &Selection {
                namespace: Some("Bad_NS".into()),
                ..Selection::default()
            },
        )
        .expect_err("bad flag");
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        let c = parse_str(
            "current-context: c\nclusters:\n- name: a\n  cluster: {server: https://a}\ncontexts:\n- name: c\n  context: {cluster: a, namespace: Nope}\n",
            Path::new("/k/config"),
        )
        .expect("parses");
        let e = select(&c, &Selection::default()).expect_err("bad context ns");
        assert!(
            e.to_string()
                .contains("context \"c\" in /k/config has an invalid namespace \"Nope\""),
            "{e}"
        );
    }

    #[test]
    fn kubeconfig_env_split_dedupes_and_drops_empty() {
        assert_eq!(
            split_kubeconfig_env("/a::/b:/a:"),
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let c = parse("json.json");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("json-token"), "{dbg}");
    }

    #[test]
    fn exec_extension_and_impersonation_are_read() {
        let c = parse_str(
            "clusters:\n- name: a\n  cluster:\n    server: https://a\n    extensions:\n    - name: client.authentication.k8s.io/exec\n      extension: {audience: x}\nusers:\n- name: u\n  user:\n    as: alice\n    as-groups: [g1, g2]\n    as-user-extra: {scopes: [s1], empty: null}\n",
            Path::new("/k/config"),
        )
        .expect("parses");
        assert_eq!(
            c.clusters[0].value.exec_extension,
            Some(serde_json::json!({"audience": "x"}))
        );
        let imp = &c.users[0].value.impersonate;
        assert_eq!(imp.user.as_deref(), Some("alice"));
        assert_eq!(imp.groups, vec!["g1", "g2"]);
        assert_eq!(imp.extra.get("scopes"), Some(&vec!["s1".to_string()]));
    }
}
