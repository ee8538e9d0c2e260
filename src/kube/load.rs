//! Turning command-line [`Overrides`] into a [`KubeConfig`]: which kubeconfig files to read
//! (`--kubeconfig`, the `KUBECONFIG` list, `~/.kube/config`), merging and selecting through
//! `kubeconfig.rs`, reading CA/cert/key files, and the in-cluster service-account fallback.
//!
//! The process environment is read only by [`LoadEnv::from_process`]; tests build a `LoadEnv` by hand
//! (including the service-account directory), so no test touches real env vars.
//!
//! May import: error, secret, kube::{kubeconfig, auth, tls, proxy}.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::error::{Error, Result};
use crate::kube::auth::AuthConfig;
use crate::kube::kubeconfig::{self, Selection};
use crate::kube::proxy::ProxyEnv;
use crate::kube::tls::TlsSettings;

/// Where in-cluster credentials live.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The kubectl-style connection flags, as plain data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--kubeconfig`: only this file, which must exist.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--cluster`.
    pub cluster: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `-n/--namespace`.
    pub namespace: Option<String>,
    /// `--request-timeout` for plain (non-streaming) requests.
    pub request_timeout: Option<Duration>,
}

/// The parts of the environment that loading depends on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadEnv {
    /// `$KUBECONFIG`.
    pub kubeconfig: Option<String>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$KUBERNETES_SERVICE_HOST` / `$KUBERNETES_SERVICE_PORT`.
    pub service_host: Option<String>,
    pub service_port: Option<String>,
    /// `$POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// The service-account directory (normally [`SERVICE_ACCOUNT_DIR`]).
    pub sa_dir: PathBuf,
    /// Proxy variables.
    pub proxy: ProxyEnv,
}

impl LoadEnv {
    /// Reads this process's environment.
    pub fn from_process() -> LoadEnv {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        LoadEnv {
            kubeconfig: var("KUBECONFIG"),
            home: var("HOME").map(PathBuf::from),
            service_host: var("KUBERNETES_SERVICE_HOST"),
            service_port: var("KUBERNETES_SERVICE_PORT"),
            pod_namespace: var("POD_NAMESPACE"),
            sa_dir: PathBuf::from(SERVICE_ACCOUNT_DIR),
            proxy: ProxyEnv::from_process(),
        }
    }
}

/// Everything needed to build a client for one cluster/user/namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeConfig {
    /// Server URL, e.g. `https://10.0.0.1:6443/prefix` (path prefix kept, trailing `/` removed).
    pub server: String,
    pub tls: TlsSettings,
    pub tls_server_name: Option<String>,
    /// The cluster's `proxy-url`.
    pub proxy_url: Option<String>,
    pub proxy_env: ProxyEnv,
    pub auth: AuthConfig,
    pub namespace: String,
    /// True when the namespace came from a flag or the context.
    pub namespace_explicit: bool,
    /// Context name ("" when none; "in-cluster" for the service account).
    pub context: String,
    pub cluster_name: String,
    pub request_timeout: Option<Duration>,
    /// Where this came from, for messages ("kubeconfig /a, /b" or "in-cluster service account").
    pub source: String,
    /// `spec.cluster` for exec plugins that ask for cluster info.
    pub exec_cluster: Option<serde_json::Value>,
}

/// Loads the configuration the way kubectl would for these flags and this process's environment.
pub fn load(o: &Overrides) -> Result<KubeConfig> {
    load_with(o, &LoadEnv::from_process())
}

/// [`load`] with an explicit environment.
pub fn load_with(o: &Overrides, env: &LoadEnv) -> Result<KubeConfig> {
    let mut configs = Vec::new();
    let mut looked_at: Vec<PathBuf> = Vec::new();
    if let Some(p) = &o.kubeconfig {
        if !p.exists() {
            return Err(Error::with_hint(
                format!(
                    "kubeconfig {} (from --kubeconfig) does not exist",
                    p.display()
                ),
                "check the path given to --kubeconfig",
            ));
        }
        configs.push(kubeconfig::parse_file(p)?);
    } else if let Some(list) = env.kubeconfig.as_deref() {
        for p in kubeconfig::split_kubeconfig_env(list) {
            looked_at.push(p.clone());
            if p.exists() {
                configs.push(kubeconfig::parse_file(&p)?);
            }
        }
    } else if let Some(home) = &env.home {
        let p = home.join(".kube").join("config");
        looked_at.push(p.clone());
        if p.exists() {
            configs.push(kubeconfig::parse_file(&p)?);
        }
    }
    let merged = kubeconfig::merge(configs);
    let flags_pick_something = o.context.is_some() || o.cluster.is_some() || o.user.is_some();
    if merged.is_empty() && !flags_pick_something {
        if let Some(ic) = in_cluster(o, env)? {
            return Ok(ic);
        }
        let looked: Vec<String> = looked_at.iter().map(|p| p.display().to_string()).collect();
        let where_ = if looked.is_empty() {
            "no KUBECONFIG and no HOME".to_string()
        } else {
            format!("looked at {}", looked.join(", "))
        };
        return Err(Error::with_hint(
            format!("no Kubernetes configuration found ({where_})"),
            "set KUBECONFIG or pass --kubeconfig, or check that `kubectl config view` shows a cluster",
        ));
    }
    let sel = kubeconfig::select(
        &merged,
        &Selection {
            context: o.context.clone(),
            cluster: o.cluster.clone(),
            user: o.user.clone(),
            namespace: o.namespace.clone(),
        },
    )?;
    let files: Vec<String> = merged
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let c = &sel.cluster;
    let (ca_pem, ca_source) = match (&c.certificate_authority_data, &c.certificate_authority) {
        (Some(d), _) => (
            Some(d.clone()),
            format!("cluster {:?} certificate-authority-data", sel.cluster_name),
        ),
        (None, Some(p)) => (
            Some(std::fs::read(p).map_err(|e| {
                Error::with_hint(
                    format!(
                        "cannot read certificate-authority {} of cluster {:?}: {e}",
                        p.display(),
                        sel.cluster_name
                    ),
                    format!(
                        "fix the path in {} (relative paths are relative to that file)",
                        sel.cluster_source.display()
                    ),
                )
            })?),
            p.display().to_string(),
        ),
        (None, None) => (None, String::new()),
    };
    let auth = AuthConfig::from_user(&sel.user_name, &sel.user)?;
    let server = normalize_server(&c.server).map_err(|m| {
        Error::file(
            &sel.cluster_source,
            None,
            format!("cluster {:?}: {m}", sel.cluster_name),
        )
    })?;
    let exec_cluster = Some(exec_cluster_info(&server, c, ca_pem.as_deref()));
    Ok(KubeConfig {
        server,
        tls: TlsSettings {
            ca_pem,
            ca_source,
            insecure: c.insecure_skip_tls_verify,
        },
        tls_server_name: c.tls_server_name.clone(),
        proxy_url: c.proxy_url.clone(),
        proxy_env: env.proxy.clone(),
        auth,
        namespace: sel.namespace,
        namespace_explicit: sel.namespace_explicit,
        context: sel.context_name,
        cluster_name: sel.cluster_name,
        request_timeout: o.request_timeout,
        source: format!("kubeconfig {}", files.join(", ")),
        exec_cluster,
    })
}

/// `spec.cluster` as client-go builds it for exec plugins (CA inlined as base64 PEM).
fn exec_cluster_info(
    server: &str,
    c: &kubeconfig::Cluster,
    ca: Option<&[u8]>,
) -> serde_json::Value {
    let mut v = serde_json::json!({ "server": server });
    if let Some(n) = &c.tls_server_name {
        v["tls-server-name"] = n.clone().into();
    }
    if c.insecure_skip_tls_verify {
        v["insecure-skip-tls-verify"] = true.into();
    }
    if let Some(ca) = ca {
        v["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(ca).into();
    }
    if let Some(p) = &c.proxy_url {
        v["proxy-url"] = p.clone().into();
    }
    if c.disable_compression {
        v["disable-compression"] = true.into();
    }
    if let Some(x) = &c.exec_extension {
        v["config"] = x.clone();
    }
    v
}

/// Checks a server URL and strips query, fragment and trailing slashes (the path prefix is kept).
pub fn normalize_server(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("server {s:?} is not a URL (expected https://host:port)"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("server {s:?} must start with https:// or http://"));
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("server {s:?} has no valid host"));
    }
    Ok(format!(
        "{scheme}://{authority}{}",
        path.trim_end_matches('/')
    ))
}

fn in_cluster(o: &Overrides, env: &LoadEnv) -> Result<Option<KubeConfig>> {
    let (Some(host), Some(port)) = (&env.service_host, &env.service_port) else {
        return Ok(None);
    };
    let token = env.sa_dir.join("token");
    if !token.is_file() {
        return Ok(None);
    }
    let host_part = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    let server = format!("https://{host_part}:{port}");
    let ca_path = env.sa_dir.join("ca.crt");
    let ca_pem = std::fs::read(&ca_path).ok();
    let (namespace, explicit) = match o.namespace.as_deref().filter(|s| !s.is_empty()) {
        Some(n) => (n.to_string(), true),
        None => (in_cluster_namespace(env, &env.sa_dir), false),
    };
    Ok(Some(KubeConfig {
        exec_cluster: None,
        server,
        tls: TlsSettings {
            ca_source: ca_path.display().to_string(),
            ca_pem,
            insecure: false,
        },
        tls_server_name: None,
        proxy_url: None,
        proxy_env: env.proxy.clone(),
        auth: AuthConfig {
            user_name: "in-cluster service account".into(),
            token: None,
            token_file: Some(token),
            ..AuthConfig::default()
        },
        namespace,
        namespace_explicit: explicit,
        context: "in-cluster".into(),
        cluster_name: "in-cluster".into(),
        request_timeout: o.request_timeout,
        source: format!("in-cluster service account ({})", env.sa_dir.display()),
    }))
}

fn in_cluster_namespace(env: &LoadEnv, sa_dir: &Path) -> String {
    if let Some(n) = &env.pod_namespace {
        return n.clone();
    }
    match std::fs::read_to_string(sa_dir.join("namespace")) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => "default".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kodama-load-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tmp");
        d
    }

    fn fixture(name: &str) -> String {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/kubeconfig")
            .join(name)
            .display()
            .to_string()
    }

    #[test]
    fn kubeconfig_list_skips_missing_files_and_merges() {
        let env = LoadEnv {
            kubeconfig: Some(format!(
                "/nonexistent/a:{}:{}",
                fixture("merge-a.yaml"),
                fixture("merge-b.yaml")
            )),
            ..LoadEnv::default()
        };
        let k = load_with(&Overrides::default(), &env).expect("loads");
        assert_eq!(k.context, "ctx-b");
        assert_eq!(
            k.server, "https://a.example:6443",
            "merge-a's shared cluster wins"
        );
        assert_eq!(k.namespace, "ns-b");
        assert!(k.source.contains("merge-a.yaml") && k.source.contains("merge-b.yaml"));
    }

    #[test]
    fn explicit_kubeconfig_must_exist_and_is_used_alone() {
        let env = LoadEnv {
            kubeconfig: Some(fixture("merge-a.yaml")),
            ..LoadEnv::default()
        };
        let o = Overrides {
            kubeconfig: Some(PathBuf::from("/nonexistent/kc")),
            ..Overrides::default()
        };
        let e = load_with(&o, &env).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/kc"));
        let o = Overrides {
            kubeconfig: Some(PathBuf::from(fixture("merge-b.yaml"))),
            namespace: Some("flag-ns".into()),
            ..Overrides::default()
        };
        let k = load_with(&o, &env).expect("loads");
        assert_eq!(k.server, "https://b.example:6443");
        assert_eq!(k.tls_server_name.as_deref(), Some("b-name"));
        assert_eq!(k.namespace, "flag-ns");
    }

    #[test]
    fn home_default_and_nothing_found() {
        let home = tmpdir("home");
        let env = LoadEnv {
            home: Some(home.clone()),
            sa_dir: home.join("no-sa"),
            ..LoadEnv::default()
        };
        let e = load_with(&Overrides::default(), &env).expect_err("none");
        assert!(e.to_string().contains(".kube/config"), "{e}");
        std::fs::create_dir_all(home.join(".kube")).expect("mkdir");
        std::fs::copy(fixture("json.json"), home.join(".kube/config")).expect("copy");
        let k = load_with(&Overrides::default(), &env).expect("loads");
        assert_eq!(k.server, "https://10.0.0.1:6443");
        assert_eq!(k.namespace, "default");
        assert!(!k.namespace_explicit);
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn in_cluster_when_no_kubeconfig() {
        let sa = tmpdir("sa");
        std::fs::write(sa.join("token"), "sa-token").expect("w");
        std::fs::write(sa.join("namespace"), "team-x\n").expect("w");
        let env = LoadEnv {
            service_host: Some("fd00::1".into()),
            service_port: Some("443".into()),
            sa_dir: sa.clone(),
            ..LoadEnv::default()
        };
        let k = load_with(&Overrides::default(), &env).expect("in-cluster");
        assert_eq!(k.server, "https://[fd00::1]:443");
        assert_eq!(k.namespace, "team-x");
        assert_eq!(k.auth.token_file, Some(sa.join("token")));
        assert_eq!(k.context, "in-cluster");
        let env2 = LoadEnv {
            pod_namespace: Some("from-env".into()),
            ..env.clone()
        };
        assert_eq!(
            load_with(&Overrides::default(), &env2)
                .expect("ok")
                .namespace,
            "from-env"
        );
        let o = Overrides {
            namespace: Some("flag".into()),
            ..Overrides::default()
        };
        assert_eq!(load_with(&o, &env2).expect("ok").namespace, "flag");
        // No token file → not in-cluster.
        std::fs::remove_file(sa.join("token")).expect("rm");
        assert!(load_with(&Overrides::default(), &env).is_err());
        let _ = std::fs::remove_dir_all(&sa);
    }

    #[test]
    fn missing_ca_file_names_it() {
        let env = LoadEnv {
            kubeconfig: Some(fixture("merge-b.yaml")),
            ..LoadEnv::default()
        };
        let o = Overrides {
            context: Some("ctx-a".into()),
            ..Overrides::default()
        };
        let e = load_with(&o, &env).expect_err("ca missing");
        let s = e.to_string();
        assert!(s.contains("fixtures/kubeconfig/ca.crt"), "{s}");
    }

    #[test]
    fn server_urls_are_normalized() {
        let ok = [
            ("https://k:6443", "https://k:6443"),
            ("https://k:6443/", "https://k:6443"),
            (
                "https://rancher.example/k8s/clusters/c-1/?x=1",
                "https://rancher.example/k8s/clusters/c-1",
            ),
            ("HTTPS://[::1]:6443", "https://[::1]:6443"),
        ];
        for (i, o) in ok {
            assert_eq!(normalize_server(i).as_deref(), Ok(o));
        }
        for bad in ["k:6443", "ftp://k", "https://", "https://u:p@k"] {
            assert!(normalize_server(bad).is_err(), "{bad}");
        }
    }
}
