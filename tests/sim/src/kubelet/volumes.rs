//! Volumes of a simulated pod: host directories for PVCs (outliving the pod), emptyDirs, ConfigMap
//! and Secret files, per-container writable homes; ownership like the kubelet's fsGroup handling;
//! and the ordered list of bind mounts (with host mount points created) for the pod sandbox.
//!
//! May import: std, serde_json, contract, kubelet::{env, proc, util}.

use super::env::{fs_group, identity, object_values};
use super::proc::{lchown, BindMount};
use super::util::{arr, str_at};
use crate::contract::{ClusterState, Json};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The host directory of a PVC (`<data_dir>/pvc/<ns>/<claim>`).
pub fn pvc_dir(data_dir: &Path, ns: &str, claim: &str) -> PathBuf {
    data_dir.join("pvc").join(ns).join(claim)
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

fn chmod(p: &Path, mode: u32) -> Result<(), String> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| io_err("chmod", p, e))
}

fn mkdir(p: &Path, mode: u32) -> Result<(), String> {
    if !p.is_dir() {
        fs::create_dir_all(p).map_err(|e| io_err("mkdir", p, e))?;
        chmod(p, mode)?;
    }
    Ok(())
}

/// fsGroup ownership of a writable volume: if the root's group differs, chown the tree to the
/// group (fsGroupChangePolicy OnRootMismatch) and make directories g+rwxs, files g+rw.
fn apply_fs_group(root: &Path, gid: u32) -> Result<(), String> {
    let meta = fs::metadata(root).map_err(|e| io_err("stat", root, e))?;
    if meta.gid() == gid && meta.mode() & 0o2070 == 0o2070 {
        return Ok(());
    }
    fn walk(p: &Path, gid: u32) -> Result<(), String> {
        let m = fs::symlink_metadata(p).map_err(|e| io_err("stat", p, e))?;
        lchown(p, None, Some(gid)).map_err(|e| io_err("chown", p, e))?;
        if m.file_type().is_symlink() {
            return Ok(());
        }
        if m.is_dir() {
            chmod(p, (m.mode() & 0o7777) | 0o2070)?;
            for e in fs::read_dir(p).map_err(|e| io_err("read", p, e))?.flatten() {
                walk(&e.path(), gid)?;
            }
        } else {
            chmod(p, (m.mode() & 0o7777) | 0o060)?;
        }
        Ok(())
    }
    walk(root, gid)
}

fn safe_rel(p: &str) -> Option<PathBuf> {
    let pb = PathBuf::from(p);
    if pb
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && !p.is_empty()
    {
        Some(pb)
    } else {
        None
    }
}

/// Materialise a ConfigMap/Secret volume as plain files.
#[allow(clippy::too_many_arguments)]
fn project(
    state: &dyn ClusterState,
    ns: &str,
    resource: &str,
    name: &str,
    src: &Json,
    dir: &Path,
    owner: Option<u32>,
    fs_gid: Option<u32>,
) -> Result<(), String> {
    let optional = src
        .get("optional")
        .and_then(|o| o.as_bool())
        .unwrap_or(false);
    let kind = if resource == "secrets" {
        "secret"
    } else {
        "configmap"
    };
    mkdir(dir, 0o755)?;
    let Some(obj) = state.get(resource, ns, name) else {
        if optional {
            return Ok(());
        }
        return Err(format!("{kind} \"{name}\" not found"));
    };
    let values = object_values(resource, &obj);
    let default_mode = src
        .get("defaultMode")
        .and_then(|m| m.as_u64())
        .unwrap_or(0o644) as u32;
    let mut files: Vec<(PathBuf, Vec<u8>, u32)> = Vec::new();
    let items = arr(src, "items");
    if items.is_empty() {
        for (k, v) in values {
            files.push((PathBuf::from(k), v, default_mode));
        }
    } else {
        for it in items {
            let key = it.get("key").and_then(|k| k.as_str()).unwrap_or("");
            let path = it.get("path").and_then(|k| k.as_str()).unwrap_or(key);
            let mode = it
                .get("mode")
                .and_then(|m| m.as_u64())
                .map(|m| m as u32)
                .unwrap_or(default_mode);
            match values.iter().find(|(k, _)| k == key) {
                Some((_, v)) => {
                    let rel =
                        safe_rel(path).ok_or_else(|| format!("invalid item path {path:?}"))?;
                    files.push((rel, v.clone(), mode));
                }
                None if optional => {}
                None => return Err(format!("{kind} references non-existent config key: {key}")),
            }
        }
    }
    for (rel, data, mut mode) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            mkdir(parent, 0o755)?;
        }
        fs::write(&p, &data).map_err(|e| io_err("write", &p, e))?;
        if let Some(g) = fs_gid {
            // Like the kubelet's SetVolumeOwnership for read-only volumes: group = fsGroup, g+r.
            if mode & 0o400 != 0 {
                mode |= 0o040;
            }
            lchown(&p, None, Some(g)).map_err(|e| io_err("chown", &p, e))?;
        }
        if let Some(u) = owner {
            lchown(&p, Some(u), None).map_err(|e| io_err("chown", &p, e))?;
        }
        chmod(&p, mode & 0o7777)?;
    }
    Ok(())
}

/// The PVC claims a pod uses.
pub fn claims(pod: &Json) -> Vec<String> {
    arr(pod.get("spec").unwrap_or(&Json::Null), "volumes")
        .iter()
        .filter_map(|v| str_at(v, &["persistentVolumeClaim", "claimName"]))
        .map(str::to_string)
        .collect()
}

/// Prepare every volume of the pod and return the bind mounts in mount order. Errors are FailedMount
/// messages.
pub fn prepare(
    state: &dyn ClusterState,
    data_dir: &Path,
    pod_dir: &Path,
    pod: &Json,
    envs: &[(String, Vec<(String, String)>)],
) -> Result<Vec<BindMount>, String> {
    let ns = str_at(pod, &["metadata", "namespace"]).unwrap_or("default");
    let spec = pod.get("spec").cloned().unwrap_or(Json::Null);
    let fs_gid = fs_group(pod);
    let containers: Vec<&Json> = arr(&spec, "initContainers")
        .iter()
        .chain(arr(&spec, "containers"))
        .collect();
    // The user that owns projected files: the pod's runAsUser, else the first container's.
    let owner = pod
        .pointer("/spec/securityContext/runAsUser")
        .and_then(|u| u.as_u64())
        .or_else(|| {
            containers.iter().find_map(|c| {
                c.pointer("/securityContext/runAsUser")
                    .and_then(|u| u.as_u64())
            })
        })
        .map(|u| u as u32);
    let mut vol_dirs: Vec<(String, PathBuf)> = Vec::new();
    for v in arr(&spec, "volumes") {
        let name = v.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let vdir = pod_dir.join("volumes").join(name);
        let dir = if let Some(claim) = str_at(v, &["persistentVolumeClaim", "claimName"]) {
            let d = pvc_dir(data_dir, ns, claim);
            mkdir(&d, 0o777)?;
            if let Some(g) = fs_gid {
                apply_fs_group(&d, g)?;
            }
            d
        } else if v.get("emptyDir").is_some() {
            mkdir(&vdir, 0o777)?;
            if let Some(g) = fs_gid {
                apply_fs_group(&vdir, g)?;
            }
            vdir
        } else if let Some(cm) = v.get("configMap") {
            let n = cm.get("name").and_then(|n| n.as_str()).unwrap_or("");
            project(state, ns, "configmaps", n, cm, &vdir, owner, fs_gid)
                .map_err(|e| format!("MountVolume.SetUp failed for volume \"{name}\" : {e}"))?;
            vdir
        } else if let Some(s) = v.get("secret") {
            let n = s.get("secretName").and_then(|n| n.as_str()).unwrap_or("");
            project(state, ns, "secrets", n, s, &vdir, owner, fs_gid)
                .map_err(|e| format!("MountVolume.SetUp failed for volume \"{name}\" : {e}"))?;
            vdir
        } else if let Some(p) = str_at(v, &["hostPath", "path"]) {
            PathBuf::from(p)
        } else {
            // Unsupported volume types (projected, downwardAPI, ...) appear as empty directories.
            mkdir(&vdir, 0o755)?;
            vdir
        };
        vol_dirs.push((name.to_string(), dir));
    }
    let mut mounts: Vec<BindMount> = Vec::new();
    for c in &containers {
        for m in arr(c, "volumeMounts") {
            let vname = m.get("name").and_then(|n| n.as_str()).unwrap_or("");
            let Some(dst) = m.get("mountPath").and_then(|n| n.as_str()) else {
                continue;
            };
            let dst = normalize(dst);
            if mounts.iter().any(|x| x.dst == dst) {
                continue; // one namespace per pod: the first container's mount wins
            }
            let Some((_, vdir)) = vol_dirs.iter().find(|(n, _)| n == vname) else {
                return Err(format!("volume \"{vname}\" not found in the pod spec"));
            };
            let mut src = vdir.clone();
            if let Some(sp) = m.get("subPath").and_then(|s| s.as_str()) {
                if !sp.is_empty() {
                    let rel = safe_rel(sp).ok_or_else(|| format!("invalid subPath {sp:?}"))?;
                    src = src.join(rel);
                    if !src.exists() {
                        // Created writable for the pod user (the real kubelet's 0750 root-owned
                        // subPath dirs are a common surprise; the simulator prefers usability).
                        mkdir(&src, 0o777)?;
                        if let Some(g) = fs_gid {
                            apply_fs_group(&src, g)?;
                        }
                    }
                }
            }
            let read_only = m.get("readOnly").and_then(|r| r.as_bool()).unwrap_or(false);
            mounts.push(BindMount {
                src,
                dst,
                read_only,
            });
        }
    }
    // Writable homes: HOME that is not (inside) a mount gets a per-pod directory.
    for (cname, env) in envs {
        let Some((_, home)) = env.iter().find(|(k, _)| k == "HOME") else {
            continue;
        };
        let home = normalize(home);
        if home == "/" || mounts.iter().any(|m| is_under(&home, &m.dst)) {
            continue;
        }
        let ctr = containers
            .iter()
            .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(cname.as_str()));
        let id = identity(pod, ctr.copied().unwrap_or(&Json::Null));
        let hdir = pod_dir.join("home").join(cname);
        mkdir(&hdir, 0o755)?;
        let gid = fs_gid.unwrap_or(id.gid);
        lchown(&hdir, Some(id.uid), Some(gid)).map_err(|e| io_err("chown", &hdir, e))?;
        mounts.push(BindMount {
            src: hdir,
            dst: home,
            read_only: false,
        });
    }
    mounts.sort_by_key(|m| m.dst.split('/').filter(|s| !s.is_empty()).count());
    // Create the mount points (as root, empty, on the host or inside an enclosing volume).
    for i in 0..mounts.len() {
        let dst = mounts[i].dst.clone();
        let host = mounts[..i]
            .iter()
            .filter(|p| is_under(&dst, &p.dst))
            .max_by_key(|p| p.dst.len())
            .map(|p| {
                let rel = dst[p.dst.len()..].trim_start_matches('/');
                p.src.join(rel)
            })
            .unwrap_or_else(|| PathBuf::from(&dst));
        let src_is_file = mounts[i].src.is_file();
        if src_is_file {
            if !host.exists() {
                if let Some(parent) = host.parent() {
                    mkdir(parent, 0o755)?;
                }
                fs::write(&host, b"").map_err(|e| io_err("create mount point", &host, e))?;
            }
        } else if !host.is_dir() {
            fs::create_dir_all(&host).map_err(|e| io_err("create mount point", &host, e))?;
        }
    }
    Ok(mounts)
}

fn normalize(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn is_under(p: &str, dir: &str) -> bool {
    p == dir || dir == "/" || p.starts_with(&format!("{dir}/"))
}

/// Whether the volume directory of a PVC is ready (and create it).
pub fn ensure_pvc_dir(data_dir: &Path, ns: &str, claim: &str) -> Result<(), String> {
    mkdir(&pvc_dir(data_dir, ns, claim), 0o777)
}
