//! The resolved configuration of one session: flags > template (.kodama.yaml) > global
//! (~/.kodama/config.yaml) > built-in defaults, as one plain [`Settings`] value.
//!
//! Merge rules: a scalar comes from the highest layer that sets it. Lists that describe *what to use*
//! (`env.dotenvFiles`, `agent.command`, `pod.tolerations`) are replaced by a higher layer. Lists that
//! *exclude* things (`env.excludeVars`, `sync.excludePatterns`) accumulate across layers. Maps
//! (`resources.extra`, `pod.nodeSelector`) merge key by key, the higher layer winning; `secretFiles`
//! merge by destination the same way.
//!
//! May import: std, error, config::{layer, quantity, duration}.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layer::{load_layer, FileKind, KnownHosts, Layer, SecretFileSpec, Toleration, Warning};
use super::quantity::Quantity;
use crate::error::{Error, Result};

/// The default session image.
pub const DEFAULT_IMAGE: &str = "ghcr.io/illumination-k/kodama-claude:latest";
/// Default CPU limit.
pub const DEFAULT_CPU: &str = "1";
/// Default memory limit.
pub const DEFAULT_MEMORY: &str = "2Gi";
/// Default workspace PVC size.
pub const DEFAULT_WORKSPACE: &str = "10Gi";
/// Default claude-home PVC size.
pub const DEFAULT_CLAUDE_HOME: &str = "1Gi";
/// Default prefix of automatic branches.
pub const DEFAULT_BRANCH_PREFIX: &str = "kodama/";
/// Namespace used when no layer and no kubeconfig context names one.
pub const DEFAULT_NAMESPACE: &str = "default";
/// How long `start` waits for the pod to become Ready.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(300);
/// An agent run that prints nothing for this long is stopped.
pub const DEFAULT_AGENT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// An agent run that printed its final result but has not exited after this long is stopped.
pub const DEFAULT_AGENT_RESULT_GRACE: Duration = Duration::from_secs(60);

/// The default agent: Claude Code, headless, streaming JSON on stdout; the prompt arrives on stdin.
/// The one definition: `run::DEFAULT_AGENT_COMMAND` re-exports it.
pub const DEFAULT_AGENT_COMMAND: &[&str] = &[
    "claude",
    "-p",
    "--output-format",
    "stream-json",
    "--verbose",
    "--dangerously-skip-permissions",
];

/// [`DEFAULT_AGENT_COMMAND`] as owned strings.
pub fn default_agent_command() -> Vec<String> {
    DEFAULT_AGENT_COMMAND
        .iter()
        .map(|s| (*s).to_string())
        .collect()
}

/// CPU, memory and extended resources (limits; requests are derived by the manifest builder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub cpu: Quantity,
    pub memory: Quantity,
    pub extra: BTreeMap<String, Quantity>,
}

/// PVC sizes and class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    pub workspace: Quantity,
    pub claude_home: Quantity,
    /// None: the cluster's default StorageClass.
    pub storage_class: Option<String>,
}

/// Dotenv injection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvSettings {
    pub dotenv_files: Vec<PathBuf>,
    pub exclude_vars: Vec<String>,
}

/// Sync filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSettings {
    pub use_gitignore: bool,
    pub exclude_patterns: Vec<String>,
}

/// Git behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSettings {
    /// Secret holding `ssh-privatekey` (and optionally `known_hosts`).
    pub secret_name: Option<String>,
    pub known_hosts: KnownHosts,
    pub auto_branch: bool,
    pub branch_prefix: String,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
}

/// The coding agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSettings {
    pub command: Vec<String>,
    pub idle_timeout: Duration,
    pub result_grace_timeout: Duration,
}

/// Pod-level knobs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodSettings {
    pub service_account_name: Option<String>,
    pub automount_service_account_token: bool,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
}

/// Everything a session is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// None: use the kubeconfig context's namespace, else [`DEFAULT_NAMESPACE`]; see [`Settings::namespace_or`].
    pub namespace: Option<String>,
    pub image: String,
    pub resources: Resources,
    pub storage: Storage,
    pub env: EnvSettings,
    pub secret_files: Vec<SecretFileSpec>,
    pub sync: SyncSettings,
    pub git: GitSettings,
    pub agent: AgentSettings,
    pub pod: PodSettings,
    pub start_timeout: Duration,
    /// From the template (or --repo).
    pub repo: Option<String>,
    /// From the template (or --branch).
    pub branch: Option<String>,
}

impl Settings {
    /// The namespace to use, given the kubeconfig context's namespace.
    pub fn namespace_or(&self, context_namespace: Option<&str>) -> String {
        self.namespace
            .clone()
            .or_else(|| {
                context_namespace
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
    }
}

fn q(s: &str) -> Quantity {
    Quantity::parse(s).expect("built-in default quantities are valid")
}

fn first<T: Clone>(layers: &[&Layer], get: impl Fn(&Layer) -> &Option<T>) -> Option<T> {
    layers.iter().find_map(|l| get(l).clone())
}

/// Accumulate lists from the lowest layer up, dropping duplicates.
fn union(layers: &[&Layer], get: impl Fn(&Layer) -> &Option<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in layers.iter().rev() {
        for s in get(l).iter().flatten() {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
    }
    out
}

/// Merge maps from the lowest layer up, the higher layer winning per key.
fn merge_maps<V: Clone>(
    layers: &[&Layer],
    get: impl Fn(&Layer) -> &Option<BTreeMap<String, V>>,
) -> BTreeMap<String, V> {
    let mut out = BTreeMap::new();
    for l in layers.iter().rev() {
        for (k, v) in get(l).iter().flatten() {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// Resolve layers into settings. `flags` is the layer built from the command line.
pub fn resolve(flags: &Layer, template: Option<&Layer>, global: Option<&Layer>) -> Settings {
    let empty = Layer::default();
    let layers: [&Layer; 3] = [flags, template.unwrap_or(&empty), global.unwrap_or(&empty)];
    let ls = &layers[..];

    let mut secret_files: Vec<SecretFileSpec> = Vec::new();
    for l in ls.iter().rev() {
        for s in l.secret_files.iter().flatten() {
            secret_files.retain(|x| x.destination != s.destination);
            secret_files.push(s.clone());
        }
    }

    Settings {
        namespace: first(ls, |l| &l.namespace),
        image: first(ls, |l| &l.image).unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
        resources: Resources {
            cpu: first(ls, |l| &l.cpu).unwrap_or_else(|| q(DEFAULT_CPU)),
            memory: first(ls, |l| &l.memory).unwrap_or_else(|| q(DEFAULT_MEMORY)),
            extra: merge_maps(ls, |l| &l.extra_resources),
        },
        storage: Storage {
            workspace: first(ls, |l| &l.workspace_size).unwrap_or_else(|| q(DEFAULT_WORKSPACE)),
            claude_home: first(ls, |l| &l.claude_home_size)
                .unwrap_or_else(|| q(DEFAULT_CLAUDE_HOME)),
            storage_class: first(ls, |l| &l.storage_class),
        },
        env: EnvSettings {
            dotenv_files: first(ls, |l| &l.dotenv_files).unwrap_or_default(),
            exclude_vars: union(ls, |l| &l.exclude_vars),
        },
        secret_files,
        sync: SyncSettings {
            use_gitignore: first(ls, |l| &l.use_gitignore).unwrap_or(true),
            exclude_patterns: union(ls, |l| &l.exclude_patterns),
        },
        git: GitSettings {
            secret_name: first(ls, |l| &l.git_secret_name),
            known_hosts: first(ls, |l| &l.known_hosts).unwrap_or_default(),
            auto_branch: first(ls, |l| &l.auto_branch).unwrap_or(true),
            branch_prefix: first(ls, |l| &l.branch_prefix)
                .unwrap_or_else(|| DEFAULT_BRANCH_PREFIX.to_string()),
            user_name: first(ls, |l| &l.git_user_name),
            user_email: first(ls, |l| &l.git_user_email),
        },
        agent: AgentSettings {
            command: first(ls, |l| &l.agent_command).unwrap_or_else(default_agent_command),
            idle_timeout: first(ls, |l| &l.agent_idle_timeout)
                .unwrap_or(DEFAULT_AGENT_IDLE_TIMEOUT),
            result_grace_timeout: first(ls, |l| &l.agent_result_grace_timeout)
                .unwrap_or(DEFAULT_AGENT_RESULT_GRACE),
        },
        pod: PodSettings {
            service_account_name: first(ls, |l| &l.service_account_name),
            automount_service_account_token: first(ls, |l| &l.automount_service_account_token)
                .unwrap_or(false),
            node_selector: merge_maps(ls, |l| &l.node_selector),
            tolerations: first(ls, |l| &l.tolerations).unwrap_or_default(),
        },
        start_timeout: first(ls, |l| &l.start_timeout).unwrap_or(DEFAULT_START_TIMEOUT),
        repo: first(ls, |l| &l.repo),
        branch: first(ls, |l| &l.branch),
    }
}

/// The configuration directory: `$KODAMA_CONFIG_DIR`, else `$HOME/.kodama`. Pure: callers pass the
/// environment (see [`config_dir`]).
pub fn config_dir_from(
    kodama_config_dir: Option<&std::ffi::OsStr>,
    home: Option<&std::ffi::OsStr>,
) -> Result<PathBuf> {
    if let Some(d) = kodama_config_dir.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(h) => Ok(Path::new(h).join(".kodama")),
        None => Err(Error::with_hint(
            "cannot find kodama's configuration directory: neither KODAMA_CONFIG_DIR nor HOME is set",
            "set KODAMA_CONFIG_DIR to a directory kodama may write to (for example: export KODAMA_CONFIG_DIR=/tmp/kodama)",
        )),
    }
}

/// The configuration directory from the process environment.
pub fn config_dir() -> Result<PathBuf> {
    config_dir_from(
        std::env::var_os("KODAMA_CONFIG_DIR").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// `$HOME` when set and non-empty.
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The template to use: `explicit` (--config; it must exist), else `.kodama.yaml` in the sync
/// directory, else in the current directory. None when there is none.
pub fn find_template(
    explicit: Option<&Path>,
    sync_dir: Option<&Path>,
    cwd: &Path,
) -> Result<Option<PathBuf>> {
    if let Some(p) = explicit {
        return match std::fs::metadata(p) {
            Ok(m) if m.is_file() => Ok(Some(p.to_path_buf())),
            Ok(_) => Err(Error::file(
                p,
                None,
                "--config must name a file, not a directory",
            )),
            Err(e) => Err(Error::io(p, e).context("reading the --config template")),
        };
    }
    for dir in sync_dir.into_iter().chain(std::iter::once(cwd)) {
        let p = dir.join(".kodama.yaml");
        if p.is_file() {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// What [`load`] found.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub settings: Settings,
    /// Unknown or misplaced keys in either file; print them as warnings.
    pub warnings: Vec<Warning>,
    /// The global file, when it exists.
    pub global_path: Option<PathBuf>,
    /// The template used, when any.
    pub template_path: Option<PathBuf>,
}

/// Load the global file from `config_dir` and the template at `template` (see [`find_template`]),
/// then resolve them under `flags`.
pub fn load(config_dir: Option<&Path>, template: Option<&Path>, flags: &Layer) -> Result<Loaded> {
    let home = home_dir();
    let mut warnings = Vec::new();
    let mut global_path = None;
    let global = match config_dir {
        Some(dir) => {
            let p = dir.join("config.yaml");
            match load_layer(&p, FileKind::Global, home.as_deref())? {
                Some((l, w)) => {
                    warnings.extend(w);
                    global_path = Some(p);
                    Some(l)
                }
                None => None,
            }
        }
        None => None,
    };
    let tmpl = match template {
        Some(p) => match load_layer(p, FileKind::Template, home.as_deref())? {
            Some((l, w)) => {
                warnings.extend(w);
                Some(l)
            }
            None => {
                return Err(Error::file(
                    p,
                    None,
                    "template file disappeared while reading it",
                ))
            }
        },
        None => None,
    };
    Ok(Loaded {
        settings: resolve(flags, tmpl.as_ref(), global.as_ref()),
        warnings,
        global_path,
        template_path: template.map(Path::to_path_buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::layer::parse_layer;
    use std::ffi::OsStr;

    fn layer(text: &str, kind: FileKind) -> Layer {
        let (l, w) = parse_layer(text, Path::new("/r/f.yaml"), kind, None).unwrap();
        assert!(w.is_empty(), "{w:?}");
        l
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let s = resolve(&Layer::default(), None, None);
        assert_eq!(s.namespace, None);
        assert_eq!(s.namespace_or(None), "default");
        assert_eq!(s.namespace_or(Some("ctx")), "ctx");
        assert_eq!(s.image, DEFAULT_IMAGE);
        assert_eq!(s.resources.cpu.as_str(), "1");
        assert_eq!(s.resources.memory.as_str(), "2Gi");
        assert_eq!(s.storage.workspace.as_str(), "10Gi");
        assert_eq!(s.storage.claude_home.as_str(), "1Gi");
        assert_eq!(s.git.branch_prefix, "kodama/");
        assert!(s.git.auto_branch);
        assert_eq!(s.git.known_hosts, KnownHosts::AcceptNew);
        assert!(s.sync.use_gitignore);
        assert!(!s.pod.automount_service_account_token);
        assert_eq!(s.start_timeout, Duration::from_secs(300));
        assert_eq!(s.agent.command[0], "claude");
    }

    #[test]
    fn precedence_flags_over_template_over_global_over_defaults() {
        let global = layer(
            "defaults:\n  namespace: g-ns\n  image: g-img\n  resources:\n    cpu: 2\n    memory: 4Gi\n    extra:\n      nvidia.com/gpu: 1\n      example.com/fpga: 1\n  storage:\n    workspace: 20Gi\n  branchPrefix: g/\n  env:\n    dotenvFiles: [g.env]\n    excludeVars: [G_ONLY, SHARED]\nsync:\n  useGitignore: false\n  excludePatterns: ['*.log']\ngit:\n  secretName: g-key\npod:\n  nodeSelector: {zone: a, disk: ssd}\n",
            FileKind::Global,
        );
        let template = layer(
            "namespace: t-ns\nimage: t-img\nresources:\n  memory: 8Gi\n  extra:\n    nvidia.com/gpu: 2\nenv:\n  dotenvFiles: [t.env]\n  excludeVars: [T_ONLY, SHARED]\nsync:\n  excludePatterns: [tmp/]\npod:\n  nodeSelector: {zone: b}\nrepo: https://example.com/t.git\n",
            FileKind::Template,
        );
        let flags = Layer {
            namespace: Some("f-ns".into()),
            cpu: Some(Quantity::parse("500m").unwrap()),
            exclude_vars: Some(vec!["F_ONLY".into()]),
            ..Layer::default()
        };
        let s = resolve(&flags, Some(&template), Some(&global));
        assert_eq!(s.namespace.as_deref(), Some("f-ns"));
        assert_eq!(s.image, "t-img");
        assert_eq!(s.resources.cpu.as_str(), "500m");
        assert_eq!(s.resources.memory.as_str(), "8Gi");
        assert_eq!(s.resources.extra["nvidia.com/gpu"].as_str(), "2");
        assert_eq!(s.resources.extra["example.com/fpga"].as_str(), "1");
        assert_eq!(s.storage.workspace.as_str(), "20Gi");
        assert_eq!(s.storage.claude_home.as_str(), "1Gi");
        assert_eq!(s.git.branch_prefix, "g/");
        assert_eq!(s.git.secret_name.as_deref(), Some("g-key"));
        assert_eq!(s.env.dotenv_files, vec![PathBuf::from("/r/t.env")]);
        assert_eq!(
            s.env.exclude_vars,
            vec!["G_ONLY", "SHARED", "T_ONLY", "F_ONLY"]
        );
        assert!(!s.sync.use_gitignore);
        assert_eq!(s.sync.exclude_patterns, vec!["*.log", "tmp/"]);
        assert_eq!(s.pod.node_selector["zone"], "b");
        assert_eq!(s.pod.node_selector["disk"], "ssd");
        assert_eq!(s.repo.as_deref(), Some("https://example.com/t.git"));

        // Without the template, the global values show through.
        let s = resolve(&Layer::default(), None, Some(&global));
        assert_eq!(s.namespace.as_deref(), Some("g-ns"));
        assert_eq!(s.image, "g-img");
        assert_eq!(s.resources.memory.as_str(), "4Gi");
        assert_eq!(s.env.dotenv_files, vec![PathBuf::from("g.env")]);
    }

    #[test]
    fn secret_files_merge_by_destination() {
        let global = layer(
            "secretFiles:\n  - /g/a:/dst/a\n  - /g/b:/dst/b\n",
            FileKind::Global,
        );
        let template = layer("secretFiles:\n  - /t/b:/dst/b\n", FileKind::Template);
        let s = resolve(&Layer::default(), Some(&template), Some(&global));
        let got: Vec<(String, String)> = s
            .secret_files
            .iter()
            .map(|f| (f.source.display().to_string(), f.destination.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/g/a".into(), "/dst/a".into()),
                ("/t/b".into(), "/dst/b".into())
            ]
        );
    }

    #[test]
    fn config_dir_rules() {
        assert_eq!(
            config_dir_from(Some(OsStr::new("/x")), Some(OsStr::new("/h"))).unwrap(),
            PathBuf::from("/x")
        );
        assert_eq!(
            config_dir_from(Some(OsStr::new("")), Some(OsStr::new("/h"))).unwrap(),
            PathBuf::from("/h/.kodama")
        );
        let e = config_dir_from(None, Some(OsStr::new(""))).unwrap_err();
        assert!(e.render().contains("KODAMA_CONFIG_DIR"), "{}", e.render());
        assert!(config_dir_from(None, None).is_err());
    }

    #[test]
    fn template_discovery() {
        let tmp = std::env::temp_dir().join(format!("kodama-tmpl-{}", std::process::id()));
        let sync = tmp.join("sync");
        let cwd = tmp.join("cwd");
        std::fs::create_dir_all(&sync).unwrap();
        std::fs::create_dir_all(&cwd).unwrap();
        assert_eq!(find_template(None, Some(&sync), &cwd).unwrap(), None);
        std::fs::write(cwd.join(".kodama.yaml"), "image: x\n").unwrap();
        assert_eq!(
            find_template(None, Some(&sync), &cwd).unwrap(),
            Some(cwd.join(".kodama.yaml"))
        );
        std::fs::write(sync.join(".kodama.yaml"), "image: y\n").unwrap();
        assert_eq!(
            find_template(None, Some(&sync), &cwd).unwrap(),
            Some(sync.join(".kodama.yaml"))
        );
        let missing = tmp.join("nope.yaml");
        let e = find_template(Some(&missing), Some(&sync), &cwd).unwrap_err();
        assert!(e.to_string().contains("nope.yaml"), "{e}");
        assert!(find_template(Some(&tmp), None, &cwd).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
