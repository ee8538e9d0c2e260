//! Container configuration the simulated kubelet resolves before starting a container: environment
//! (env, envFrom, valueFrom, `$(VAR)` expansion, defaults), argv and the process identity.
//!
//! May import: std, serde_json, base64, contract, kubelet::{util, proc}.

use super::proc::Identity;
use super::util::{arr, str_at};
use crate::contract::{ClusterState, Json};
use base64::Engine;

/// Default PATH when the container sets none (the one container runtimes use).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The string values of a ConfigMap (`data` + `binaryData`) or Secret (`data` + `stringData`).
pub fn object_values(kind: &str, obj: &Json) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let decode = |v: &Json| v.as_str().and_then(|s| b64.decode(s).ok());
    if let Some(m) = obj.get("data").and_then(|d| d.as_object()) {
        for (k, v) in m {
            let bytes = if kind == "secrets" {
                decode(v)
            } else {
                v.as_str().map(|s| s.as_bytes().to_vec())
            };
            if let Some(b) = bytes {
                out.push((k.clone(), b));
            }
        }
    }
    let extra = if kind == "secrets" {
        "stringData"
    } else {
        "binaryData"
    };
    if let Some(m) = obj.get(extra).and_then(|d| d.as_object()) {
        for (k, v) in m {
            let bytes = if kind == "secrets" {
                v.as_str().map(|s| s.as_bytes().to_vec())
            } else {
                decode(v)
            };
            if let Some(b) = bytes {
                out.retain(|(ok, _)| ok != k);
                out.push((k.clone(), b));
            }
        }
    }
    out
}

fn singular(resource: &str) -> (&'static str, &'static str) {
    if resource == "secrets" {
        ("secret", "Secret")
    } else {
        ("configmap", "ConfigMap")
    }
}

/// Expand `$(VAR)` references against already defined variables (`$$(` escapes), like the kubelet.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('(') {
            match a.find(')') {
                Some(j) => {
                    let name = &a[..j];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &a[j + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = a;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set(env: &mut Vec<(String, String)>, k: &str, v: String) {
    env.retain(|(ek, _)| ek != k);
    env.push((k.to_string(), v));
}

fn field_ref(pod: &Json, path: &str, pod_ip: &str, node: &str) -> Option<String> {
    let label = |kind: &str| {
        let inner = path.strip_prefix(&format!("metadata.{kind}['"))?;
        let key = inner.strip_suffix("']")?;
        str_at(pod, &["metadata", kind, key]).map(str::to_string)
    };
    match path {
        "metadata.name" => str_at(pod, &["metadata", "name"]).map(str::to_string),
        "metadata.namespace" => str_at(pod, &["metadata", "namespace"]).map(str::to_string),
        "metadata.uid" => str_at(pod, &["metadata", "uid"]).map(str::to_string),
        "spec.nodeName" => Some(node.to_string()),
        "spec.serviceAccountName" => Some(
            str_at(pod, &["spec", "serviceAccountName"])
                .unwrap_or("default")
                .to_string(),
        ),
        "status.podIP" | "status.hostIP" => Some(pod_ip.to_string()),
        "status.podIPs" | "status.hostIPs" => Some(pod_ip.to_string()),
        _ => label("labels").or_else(|| label("annotations")),
    }
}

/// Resolve a container's environment. Errors are the kubelet's CreateContainerConfigError messages.
pub fn container_env(
    state: &dyn ClusterState,
    pod: &Json,
    ctr: &Json,
    pod_ip: &str,
    node: &str,
) -> Result<Vec<(String, String)>, String> {
    let ns = str_at(pod, &["metadata", "namespace"]).unwrap_or("default");
    let pod_name = str_at(pod, &["metadata", "name"]).unwrap_or("");
    let mut env: Vec<(String, String)> = vec![
        ("KUBERNETES_SERVICE_HOST".into(), "127.0.0.1".into()),
        ("KUBERNETES_SERVICE_PORT".into(), "443".into()),
        ("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into()),
        ("KUBERNETES_PORT".into(), "tcp://127.0.0.1:443".into()),
    ];
    if let Ok(v) = std::env::var("KODAMA_SIM_API_PORT") {
        set(&mut env, "KUBERNETES_SERVICE_PORT", v.clone());
        set(&mut env, "KUBERNETES_SERVICE_PORT_HTTPS", v.clone());
        set(&mut env, "KUBERNETES_PORT", format!("tcp://127.0.0.1:{v}"));
    }
    let fetch = |resource: &str, name: &str, optional: bool| -> Result<Option<Json>, String> {
        match state.get(resource, ns, name) {
            Some(o) => Ok(Some(o)),
            None if optional => Ok(None),
            None => Err(format!("{} \"{name}\" not found", singular(resource).0)),
        }
    };
    for ef in arr(ctr, "envFrom") {
        let prefix = ef.get("prefix").and_then(|p| p.as_str()).unwrap_or("");
        for (key, resource) in [("configMapRef", "configmaps"), ("secretRef", "secrets")] {
            let Some(r) = ef.get(key) else { continue };
            let name = r.get("name").and_then(|n| n.as_str()).unwrap_or("");
            let optional = r.get("optional").and_then(|o| o.as_bool()).unwrap_or(false);
            if let Some(obj) = fetch(resource, name, optional)? {
                for (k, v) in object_values(resource, &obj) {
                    let name = format!("{prefix}{k}");
                    if is_env_name(&name) {
                        set(&mut env, &name, String::from_utf8_lossy(&v).into_owned());
                    }
                }
            }
        }
    }
    for e in arr(ctr, "env") {
        let Some(name) = e.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        if let Some(v) = e.get("value").and_then(|v| v.as_str()) {
            let v = expand(v, &env);
            set(&mut env, name, v);
            continue;
        }
        let Some(vf) = e.get("valueFrom") else {
            set(&mut env, name, String::new());
            continue;
        };
        if let Some(f) = vf.get("fieldRef") {
            let path = f.get("fieldPath").and_then(|p| p.as_str()).unwrap_or("");
            let v = field_ref(pod, path, pod_ip, node).unwrap_or_default();
            set(&mut env, name, v);
            continue;
        }
        for (key, resource) in [
            ("configMapKeyRef", "configmaps"),
            ("secretKeyRef", "secrets"),
        ] {
            let Some(r) = vf.get(key) else { continue };
            let oname = r.get("name").and_then(|n| n.as_str()).unwrap_or("");
            let okey = r.get("key").and_then(|n| n.as_str()).unwrap_or("");
            let optional = r.get("optional").and_then(|o| o.as_bool()).unwrap_or(false);
            let Some(obj) = fetch(resource, oname, optional)? else {
                continue;
            };
            match object_values(resource, &obj)
                .into_iter()
                .find(|(k, _)| k == okey)
            {
                Some((_, v)) => set(&mut env, name, String::from_utf8_lossy(&v).into_owned()),
                None if optional => {}
                None => {
                    return Err(format!(
                        "couldn't find key {okey} in {} {ns}/{oname}",
                        singular(resource).1
                    ))
                }
            }
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    if !env.iter().any(|(k, _)| k == "HOSTNAME") {
        env.push(("HOSTNAME".into(), pod_name.to_string()));
    }
    Ok(env)
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// argv of a container: `command` + `args`, with `$(VAR)` expansion (no image entrypoint exists).
pub fn container_argv(ctr: &Json, env: &[(String, String)]) -> Vec<String> {
    let strs = |k: &str| -> Vec<String> {
        arr(ctr, k)
            .iter()
            .filter_map(|s| s.as_str())
            .map(|s| expand(s, env))
            .collect()
    };
    let mut argv = strs("command");
    argv.extend(strs("args"));
    argv
}

fn num(v: Option<&Json>) -> Option<u32> {
    v.and_then(|x| x.as_u64())
        .and_then(|x| u32::try_from(x).ok())
}

/// The pod-level fsGroup, if any.
pub fn fs_group(pod: &Json) -> Option<u32> {
    num(pod.pointer("/spec/securityContext/fsGroup"))
}

/// The identity a container runs as: runAsUser/runAsGroup (container overrides pod), supplemental
/// groups and fsGroup.
pub fn identity(pod: &Json, ctr: &Json) -> Identity {
    let psc = pod.pointer("/spec/securityContext");
    let csc = ctr.get("securityContext");
    let pick = |k: &str| num(csc.and_then(|c| c.get(k))).or(num(psc.and_then(|c| c.get(k))));
    let uid = pick("runAsUser").unwrap_or(0);
    let gid = pick("runAsGroup").unwrap_or(0);
    let mut groups: Vec<u32> = psc
        .map(|p| arr(p, "supplementalGroups"))
        .unwrap_or(&[])
        .iter()
        .filter_map(|g| num(Some(g)))
        .collect();
    if let Some(fg) = fs_group(pod) {
        groups.push(fg);
    }
    groups.push(gid);
    groups.sort_unstable();
    groups.dedup();
    let workdir = ctr
        .get("workingDir")
        .and_then(|w| w.as_str())
        .filter(|w| !w.is_empty())
        .unwrap_or("/")
        .to_string();
    Identity {
        uid,
        gid,
        groups,
        workdir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_like_the_kubelet() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &env), "x-$(B)-$(A)-$");
    }
}
