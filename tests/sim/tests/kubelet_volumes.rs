//! Volumes, identity and environment of simulated pods: PVC/emptyDir/ConfigMap/Secret bind mounts
//! with owners and modes, fsGroup, writable home, read-only mounts, subPath, env/envFrom and config
//! errors; plus scheduling (capacity, PVCs) and image pull failures.

mod kubelet_support;

use kodama_sim::contract::{ClusterState, LogOptions};
use kubelet_support::*;
use serde_json::json;
use std::os::unix::fs::MetadataExt;

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn pvc(name: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "namespace": NS},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
           "status": {"phase": "Bound"}})
}

/// Parse `key=value` lines printed by a pod.
fn kv(log: &str) -> std::collections::HashMap<String, String> {
    log.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn volumes_are_mounted_with_owners_modes_and_identity() {
    let h = H::new("volumes");
    h.put("persistentvolumeclaims", pvc("data"));
    h.put(
        "configmaps",
        json!({"metadata": {"name": "cfg", "namespace": NS},
               "data": {"settings.json": "{\"a\":1}", "other": "x"}}),
    );
    h.put(
        "secrets",
        json!({"metadata": {"name": "creds", "namespace": NS},
               "data": {"token": b64("s3cr3t"), "key": b64("k")}}),
    );
    let (ws, data, cfg, sec, home, ro, sub) = (
        h.path("mnt/workspace"),
        h.path("mnt/data"),
        h.path("mnt/cfg"),
        h.path("mnt/secret"),
        h.path("mnt/home/agent"),
        h.path("mnt/ro"),
        h.path("mnt/sub"),
    );
    let script = format!(
        "echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G); echo pwd=$(pwd); \
         echo home=$HOME; \
         echo data=$(stat -c '%a %g' {data}); echo ws=$(stat -c '%a %g' {ws}); \
         echo cfgmode=$(stat -c '%a' {cfg}/conf/settings.json); \
         echo cfgfiles=$(ls {cfg} | tr '\\n' ,); \
         echo secmode=$(stat -c '%a %u %g' {sec}/token); echo token=$(cat {sec}/token); \
         touch {home}/.rc && echo homewrite=ok; \
         echo persisted > {data}/file && echo pvcwrite=ok; \
         touch {ro}/x 2>/dev/null && echo rowrite=yes || echo rowrite=no; \
         echo sub=$(ls {data}/nested 2>/dev/null | wc -l); touch {sub}/inner && echo subwrite=ok; true"
    );
    let spec = json!({
        "metadata": {"name": "vols"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000},
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "work", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "settings.json", "path": "conf/settings.json", "mode": 0o600}]}},
                {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            ],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", script],
                "workingDir": ws,
                "env": [{"name": "HOME", "value": home}],
                "volumeMounts": [
                    {"name": "data", "mountPath": data},
                    {"name": "work", "mountPath": ws},
                    {"name": "cfg", "mountPath": cfg},
                    {"name": "sec", "mountPath": sec, "readOnly": true},
                    {"name": "work", "mountPath": ro, "readOnly": true},
                    {"name": "data", "mountPath": sub, "subPath": "nested"},
                ],
            }],
        }
    });
    h.create(spec);
    let p = h.wait_phase("vols", "Succeeded");
    let log = h.logs("vols", &LogOptions::default());
    let v = kv(&log);
    assert_eq!(v["uid"], "1000", "{log}");
    assert_eq!(v["gid"], "1000");
    assert!(
        v["groups"].split(' ').any(|g| g == "2000"),
        "fsGroup is a supplementary group: {log}"
    );
    assert_eq!(v["pwd"], ws);
    assert_eq!(v["home"], home);
    assert_eq!(
        v["data"], "2777 2000",
        "PVC dir: g+rwxs, group fsGroup: {log}"
    );
    assert_eq!(v["ws"], "2777 2000", "emptyDir: {log}");
    assert_eq!(v["cfgmode"], "640", "item mode + fsGroup g+r: {log}");
    assert_eq!(v["cfgfiles"], "conf,", "only the listed items: {log}");
    assert_eq!(
        v["secmode"], "440 1000 2000",
        "0400 secret readable by runAsUser: {log}"
    );
    assert_eq!(v["token"], "s3cr3t");
    assert_eq!(v["homewrite"], "ok");
    assert_eq!(v["pvcwrite"], "ok");
    assert_eq!(
        v["rowrite"], "no",
        "readOnly mount must refuse writes: {log}"
    );
    assert_eq!(v["subwrite"], "ok");
    // PVC bound by the kubelet, data on the host.
    let claim = h
        .state
        .get("persistentvolumeclaims", NS, "data")
        .expect("pvc");
    assert_eq!(claim["status"]["phase"], "Bound");
    let host = pvc_host_dir(&h, "data");
    assert_eq!(
        std::fs::read_to_string(host.join("file")).expect("pvc file"),
        "persisted\n"
    );
    assert!(
        host.join("nested").join("inner").exists(),
        "subPath lives inside the PVC"
    );
    assert_eq!(std::fs::metadata(&host).expect("stat").gid(), 2000);
    // The mounts exist only inside the pod's namespace: on the host the mount point is empty.
    assert!(std::fs::read_dir(&data)
        .expect("mount point")
        .next()
        .is_none());
    assert_eq!(p["status"]["phase"], "Succeeded");

    // PVC data outlives the pod: a second pod sees the file.
    h.delete("vols", 5);
    h.wait_deleted("vols", TIMEOUT);
    let again = json!({
        "metadata": {"name": "again"},
        "spec": {"restartPolicy": "Never",
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            "containers": [{"name": "main", "image": "busybox",
                "command": ["cat", format!("{data}/file")],
                "volumeMounts": [{"name": "data", "mountPath": data}]}]}
    });
    h.create(again);
    h.wait_phase("again", "Succeeded");
    assert_eq!(h.logs("again", &LogOptions::default()), "persisted\n");
}

#[test]
fn env_env_from_and_config_errors() {
    let h = H::new("env");
    h.put(
        "configmaps",
        json!({"metadata": {"name": "settings", "namespace": NS},
               "data": {"MODE": "fast", "LEVEL": "3"}}),
    );
    h.put(
        "secrets",
        json!({"metadata": {"name": "api", "namespace": NS},
               "data": {"API_KEY": b64("key-123")}}),
    );
    let spec = json!({
        "metadata": {"name": "envs", "labels": {"app": "demo"}},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "env | sort"],
                "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
                            {"secretRef": {"name": "api"}}],
                "env": [
                    {"name": "PLAIN", "value": "v-$(CFG_MODE)"},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "api", "key": "API_KEY"}}},
                    {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x", "optional": true}}},
                ]}]}
    });
    h.create(spec);
    h.wait_phase("envs", "Succeeded");
    let v = kv(&h.logs("envs", &LogOptions::default()));
    for (k, want) in [
        ("CFG_MODE", "fast"),
        ("CFG_LEVEL", "3"),
        ("API_KEY", "key-123"),
        ("PLAIN", "v-fast"),
        ("FROM_SECRET", "key-123"),
        ("FROM_CM", "3"),
        ("POD_NAME", "envs"),
        ("POD_NS", NS),
        ("POD_IP", "127.0.0.1"),
        ("APP", "demo"),
        ("HOSTNAME", "envs"),
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
    ] {
        assert_eq!(v.get(k).map(String::as_str), Some(want), "{k}: {v:?}");
    }
    assert!(v.get("PATH").is_some_and(|p| p.contains("/usr/bin")));
    assert!(!v.contains_key("OPT"));

    // runAsNonRoot without a user: the kubelet refuses, like with an image running as root.
    let mut nr = pod("nonroot", &["true"]);
    nr["spec"]["securityContext"] = json!({"runAsNonRoot": true});
    h.create(nr);
    let p = h.wait_pod("nonroot", "CreateContainerConfigError", |p| {
        ctr_status(p, "main")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    assert!(ctr_status(&p, "main")["state"]["waiting"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("container has runAsNonRoot and image will run as root")));

    // A missing (non-optional) Secret: CreateContainerConfigError until it appears.
    let spec = json!({
        "metadata": {"name": "missing"},
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", "echo $TOKEN"],
                "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "t"}}}]}]}
    });
    h.create(spec);
    let p = h.wait_pod("missing", "CreateContainerConfigError", |p| {
        ctr_status(p, "main")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(
        ctr_status(&p, "main")["state"]["waiting"]["message"],
        "secret \"later\" not found"
    );
    assert!(h.has_event("missing", "Failed", "Error: secret \"later\" not found"));
    h.put(
        "secrets",
        json!({"metadata": {"name": "later", "namespace": NS}, "data": {"t": b64("now")}}),
    );
    h.wait_phase("missing", "Succeeded");
    assert_eq!(h.logs("missing", &LogOptions::default()), "now\n");
}

#[test]
fn insufficient_resources_leave_pods_unschedulable_until_freed() {
    let h = H::new("sched");
    let with_req = |name: &str, cpu: &str, gpu: Option<u64>| {
        let mut p = pod(name, &["sleep", "300"]);
        p["spec"]["containers"][0]["resources"] =
            json!({"requests": {"cpu": cpu, "memory": "64Mi"}});
        if let Some(g) = gpu {
            p["spec"]["containers"][0]["resources"]["limits"] = json!({"nvidia.com/gpu": g});
        }
        p
    };
    h.create(with_req("big", "3", None));
    h.wait_ready("big");
    h.create(with_req("second", "1500m", None));
    let p = h.wait_pod("second", "Unschedulable", |p| {
        condition(p, "PodScheduled")["reason"] == "Unschedulable"
    });
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(condition(&p, "PodScheduled")["status"], "False");
    assert_eq!(
        condition(&p, "PodScheduled")["message"],
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert!(h.has_event(
        "second",
        "FailedScheduling",
        "0/1 nodes are available: 1 Insufficient cpu."
    ));
    assert!(p["status"]["containerStatuses"].is_null());
    // Deleting a pod that never scheduled completes at once.
    h.create(with_req("third", "3500m", None));
    h.wait_pod("third", "Unschedulable", |p| {
        condition(p, "PodScheduled")["reason"] == "Unschedulable"
    });
    h.delete("third", 30);
    h.wait_deleted("third", std::time::Duration::from_secs(5));
    // Freeing the node lets it schedule.
    h.delete("big", 1);
    h.wait_ready("second");
    // Extended resources: the node has one GPU.
    h.create(with_req("gpus", "100m", Some(2)));
    let p = h.wait_pod("gpus", "Unschedulable", |p| {
        condition(p, "PodScheduled")["reason"] == "Unschedulable"
    });
    assert_eq!(
        condition(&p, "PodScheduled")["message"],
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    );
    h.create(with_req("gpu", "100m", Some(1)));
    h.wait_ready("gpu");
}

#[test]
fn missing_pvc_keeps_pod_pending_until_created() {
    let h = H::new("pvc");
    let mount = h.path("mnt/d");
    let spec = json!({
        "metadata": {"name": "needs-pvc"},
        "spec": {"restartPolicy": "Never",
            "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "later"}}],
            "containers": [{"name": "main", "image": "busybox", "command": ["ls", mount],
                "volumeMounts": [{"name": "d", "mountPath": mount}]}]}
    });
    h.create(spec);
    let p = h.wait_pod("needs-pvc", "FailedScheduling", |p| {
        condition(p, "PodScheduled")["status"] == "False"
    });
    assert!(condition(&p, "PodScheduled")["message"]
        .as_str()
        .is_some_and(|m| m.contains("persistentvolumeclaim \"later\" not found")));
    assert!(h.has_event("needs-pvc", "FailedScheduling", "\"later\""));
    // Exists but not bound yet: still unschedulable, with the scheduler's message.
    let mut pending = pvc("later");
    pending["status"]["phase"] = json!("Pending");
    h.put("persistentvolumeclaims", pending);
    h.wait_pod("needs-pvc", "unbound message", |p| {
        condition(p, "PodScheduled")["message"]
            == "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
    });
    h.put("persistentvolumeclaims", pvc("later"));
    h.wait_phase("needs-pvc", "Succeeded");
}

#[test]
fn missing_image_fails_to_pull_and_never_starts() {
    let h = H::new("image");
    let mut p = pod("noimage", &["true"]);
    p["spec"]["containers"][0]["image"] = json!("registry.local/tool:missing");
    h.create(p);
    h.wait_pod("noimage", "ErrImagePull", |p| {
        ctr_status(p, "main")["state"]["waiting"]["reason"] == "ErrImagePull"
    });
    let p = h.wait_pod("noimage", "ImagePullBackOff", |p| {
        ctr_status(p, "main")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    assert_eq!(p["status"]["phase"], "Pending");
    assert!(h.has_event("noimage", "Failed", "Error: ErrImagePull"));
    assert!(h.has_event(
        "noimage",
        "Failed",
        "Failed to pull image \"registry.local/tool:missing\""
    ));
    assert!(h.has_event("noimage", "BackOff", "Back-off pulling image"));
    assert!(!h.has_event("noimage", "Started", ""));
    let mut p = pod("noimage2", &["true"]);
    p["spec"]["containers"][0]["image"] = json!("does-not-exist/agent:1");
    h.create(p);
    h.wait_pod("noimage2", "ErrImagePull", |p| {
        ctr_status(p, "main")["state"]["waiting"]["reason"] == "ErrImagePull"
    });
    h.delete("noimage", 30);
    h.wait_deleted("noimage", TIMEOUT);
}
