//! A checker for the Pod Security Standards (baseline and restricted), over a Pod as JSON.
//!
//! It implements every control of the published standard, as the pod-security-admission plugin
//! evaluates it, over `spec.containers`, `spec.initContainers` and `spec.ephemeralContainers`:
//!
//! Baseline: HostProcess; host namespaces (hostNetwork/hostPID/hostIPC); privileged containers;
//! capabilities (only the baseline default set may be added); hostPath volumes; host ports;
//! AppArmor (field and legacy annotation: RuntimeDefault/Localhost only); SELinux (type from the
//! allowed list, no user or role); `/proc` mount type (Default only; the user-namespace exemption
//! of newer releases is not applied, so this is stricter); seccomp (never Unconfined, field or
//! legacy annotation); sysctls (the safe set only).
//!
//! Restricted adds: volume types (configMap, csi, downwardAPI, emptyDir, ephemeral,
//! persistentVolumeClaim, projected, secret); allowPrivilegeEscalation explicitly false;
//! runAsNonRoot true (pod level, or on every container; never false on a container); runAsUser
//! never 0; seccomp RuntimeDefault or Localhost (pod level, or on every container); capabilities
//! drop ALL and add nothing but NET_BIND_SERVICE. As in the standard, the privilege-escalation,
//! seccomp and capabilities rules of restricted do not apply to pods with `spec.os.name: windows`.
//!
//! May import: serde_json.

use serde_json::Value;

const BASELINE_CAPS: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];
const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SELINUX_TYPES: [&str; 5] = [
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];
const RESTRICTED_VOLUMES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];
const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";
const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// One container with its display path, e.g. `spec.containers[0] "session"`.
struct Container<'a> {
    at: String,
    c: &'a Value,
}

fn containers(pod: &Value) -> Vec<Container<'_>> {
    let mut out = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(list) = pod["spec"][field].as_array() {
            for (i, c) in list.iter().enumerate() {
                let name = c["name"].as_str().unwrap_or("");
                out.push(Container {
                    at: format!("spec.{field}[{i}] {name:?}"),
                    c,
                });
            }
        }
    }
    out
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Violations of the baseline standard (empty when the pod passes).
pub fn check_baseline(pod: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let spec = &pod["spec"];
    let psc = &spec["securityContext"];
    let cs = containers(pod);

    // HostProcess
    if is_true(&psc["windowsOptions"]["hostProcess"]) {
        v.push(
            "hostProcess: spec.securityContext.windowsOptions.hostProcess must not be true".into(),
        );
    }
    for c in &cs {
        if is_true(&c.c["securityContext"]["windowsOptions"]["hostProcess"]) {
            v.push(format!(
                "hostProcess: {} sets windowsOptions.hostProcess",
                c.at
            ));
        }
    }
    // Host namespaces
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        if is_true(&spec[f]) {
            v.push(format!("host namespaces: spec.{f} must not be true"));
        }
    }
    // Privileged
    for c in &cs {
        if is_true(&c.c["securityContext"]["privileged"]) {
            v.push(format!("privileged: {} is privileged", c.at));
        }
    }
    // Capabilities (baseline)
    for c in &cs {
        for cap in strs(&c.c["securityContext"]["capabilities"]["add"]) {
            if !BASELINE_CAPS.contains(&cap) {
                v.push(format!(
                    "capabilities: {} adds {cap}, which baseline forbids",
                    c.at
                ));
            }
        }
    }
    // Volumes: hostPath
    if let Some(vols) = spec["volumes"].as_array() {
        for vol in vols {
            if vol.get("hostPath").is_some_and(|h| !h.is_null()) {
                v.push(format!(
                    "hostPath volumes: volume {:?} uses hostPath",
                    vol["name"].as_str().unwrap_or("")
                ));
            }
        }
    }
    // Host ports
    for c in &cs {
        if let Some(ports) = c.c["ports"].as_array() {
            for p in ports {
                if p["hostPort"].as_i64().is_some_and(|hp| hp != 0) {
                    v.push(format!(
                        "host ports: {} uses hostPort {}",
                        c.at, p["hostPort"]
                    ));
                }
            }
        }
    }
    // AppArmor
    let apparmor_ok =
        |t: &Value| t.is_null() || matches!(t.as_str(), Some("RuntimeDefault") | Some("Localhost"));
    if !apparmor_ok(&psc["appArmorProfile"]["type"]) {
        v.push(format!(
            "AppArmor: spec.securityContext.appArmorProfile.type {} is not allowed",
            psc["appArmorProfile"]["type"]
        ));
    }
    for c in &cs {
        let t = &c.c["securityContext"]["appArmorProfile"]["type"];
        if !apparmor_ok(t) {
            v.push(format!("AppArmor: {} sets appArmorProfile.type {t}", c.at));
        }
    }
    if let Some(a) = pod["metadata"]["annotations"].as_object() {
        for (k, val) in a {
            if k.starts_with(APPARMOR_ANNOTATION) {
                let s = val.as_str().unwrap_or("");
                if !(s.is_empty() || s == "runtime/default" || s.starts_with("localhost/")) {
                    v.push(format!("AppArmor: annotation {k} is {s:?}"));
                }
            }
            if (k == SECCOMP_POD_ANNOTATION || k.starts_with(SECCOMP_CONTAINER_ANNOTATION))
                && val.as_str() == Some("unconfined")
            {
                v.push(format!("seccomp: annotation {k} is unconfined"));
            }
        }
    }
    // SELinux
    let selinux = |o: &Value, at: &str, v: &mut Vec<String>| {
        if o.is_null() {
            return;
        }
        let t = o["type"].as_str().unwrap_or("");
        if !SELINUX_TYPES.contains(&t) {
            v.push(format!(
                "SELinux: {at}.seLinuxOptions.type {t:?} is not allowed"
            ));
        }
        for f in ["user", "role"] {
            if o[f].as_str().is_some_and(|s| !s.is_empty()) {
                v.push(format!("SELinux: {at}.seLinuxOptions.{f} must not be set"));
            }
        }
    };
    selinux(&psc["seLinuxOptions"], "spec.securityContext", &mut v);
    for c in &cs {
        selinux(&c.c["securityContext"]["seLinuxOptions"], &c.at, &mut v);
    }
    // /proc mount
    for c in &cs {
        let pm = &c.c["securityContext"]["procMount"];
        if !(pm.is_null() || pm.as_str() == Some("Default")) {
            v.push(format!("/proc mount: {} sets procMount {pm}", c.at));
        }
    }
    // Seccomp (baseline): never Unconfined
    if psc["seccompProfile"]["type"].as_str() == Some("Unconfined") {
        v.push("seccomp: spec.securityContext.seccompProfile.type must not be Unconfined".into());
    }
    for c in &cs {
        if c.c["securityContext"]["seccompProfile"]["type"].as_str() == Some("Unconfined") {
            v.push(format!("seccomp: {} sets seccompProfile Unconfined", c.at));
        }
    }
    // Sysctls
    if let Some(list) = psc["sysctls"].as_array() {
        for s in list {
            let n = s["name"].as_str().unwrap_or("");
            if !SAFE_SYSCTLS.contains(&n) {
                v.push(format!("sysctls: {n:?} is not in the safe set"));
            }
        }
    }
    v
}

/// Violations of the restricted standard, which includes baseline (empty when the pod passes).
pub fn check_restricted(pod: &Value) -> Vec<String> {
    let mut v = check_baseline(pod);
    let spec = &pod["spec"];
    let psc = &spec["securityContext"];
    let cs = containers(pod);
    let windows = spec["os"]["name"].as_str() == Some("windows");

    // Volume types
    if let Some(vols) = spec["volumes"].as_array() {
        for vol in vols {
            let name = vol["name"].as_str().unwrap_or("");
            if let Some(o) = vol.as_object() {
                for (k, val) in o {
                    if k != "name" && !val.is_null() && !RESTRICTED_VOLUMES.contains(&k.as_str()) {
                        v.push(format!(
                            "volume types: volume {name:?} uses {k}, which restricted forbids"
                        ));
                    }
                }
            }
        }
    }
    // Privilege escalation
    if !windows {
        for c in &cs {
            if c.c["securityContext"]["allowPrivilegeEscalation"].as_bool() != Some(false) {
                v.push(format!(
                    "privilege escalation: {} must set securityContext.allowPrivilegeEscalation=false",
                    c.at
                ));
            }
        }
    }
    // Running as non-root
    let pod_nonroot = psc["runAsNonRoot"].as_bool();
    if pod_nonroot == Some(false) {
        v.push("runAsNonRoot: spec.securityContext.runAsNonRoot must not be false".into());
    }
    for c in &cs {
        match c.c["securityContext"]["runAsNonRoot"].as_bool() {
            Some(false) => v.push(format!("runAsNonRoot: {} sets runAsNonRoot=false", c.at)),
            Some(true) => {}
            None if pod_nonroot != Some(true) => v.push(format!(
                "runAsNonRoot: {} must set runAsNonRoot=true (or set it on the pod)",
                c.at
            )),
            None => {}
        }
    }
    // Running as non-root user
    if psc["runAsUser"].as_i64() == Some(0) {
        v.push("runAsUser: spec.securityContext.runAsUser must not be 0".into());
    }
    for c in &cs {
        if c.c["securityContext"]["runAsUser"].as_i64() == Some(0) {
            v.push(format!("runAsUser: {} sets runAsUser=0", c.at));
        }
    }
    if !windows {
        // Seccomp (restricted)
        let ok = |t: &Value| matches!(t.as_str(), Some("RuntimeDefault") | Some("Localhost"));
        let pod_type = &psc["seccompProfile"]["type"];
        let pod_ok = ok(pod_type);
        if !pod_type.is_null() && !pod_ok {
            v.push(format!(
                "seccomp: spec.securityContext.seccompProfile.type {pod_type} must be RuntimeDefault or Localhost"
            ));
        }
        for c in &cs {
            let t = &c.c["securityContext"]["seccompProfile"]["type"];
            if t.is_null() {
                if !pod_ok {
                    v.push(format!(
                        "seccomp: {} must set seccompProfile.type RuntimeDefault or Localhost (or set it on the pod)",
                        c.at
                    ));
                }
            } else if !ok(t) {
                v.push(format!(
                    "seccomp: {} sets seccompProfile.type {t}; use RuntimeDefault or Localhost",
                    c.at
                ));
            }
        }
        // Capabilities (restricted)
        for c in &cs {
            let caps = &c.c["securityContext"]["capabilities"];
            if !strs(&caps["drop"]).contains(&"ALL") {
                v.push(format!("capabilities: {} must drop ALL", c.at));
            }
            for cap in strs(&caps["add"]) {
                if cap != "NET_BIND_SERVICE" {
                    v.push(format!(
                        "capabilities: {} adds {cap}; restricted allows only NET_BIND_SERVICE",
                        c.at
                    ));
                }
            }
        }
    }
    v
}
