//! The restricted Pod Security Standard checker: kodama's pods pass with zero violations, and a
//! hand-made bad pod trips each rule of baseline and restricted (for regular, init and ephemeral
//! containers alike).

use kodama::manifest::{build_pod, pss, SessionSpec};
use serde_json::{json, Value};

fn good_pod() -> Value {
    build_pod(&SessionSpec::new("pss", "default", "busybox:1")).expect("pod")
}

fn with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut p = good_pod();
    edit(&mut p);
    p
}

fn container(p: &mut Value) -> &mut Value {
    &mut p["spec"]["containers"][0]
}

fn sc(p: &mut Value) -> &mut Value {
    &mut container(p)["securityContext"]
}

fn psc(p: &mut Value) -> &mut Value {
    &mut p["spec"]["securityContext"]
}

fn assert_trips(pod: &Value, needle: &str, case: &str) {
    let v = pss::check_restricted(pod);
    assert!(
        v.iter().any(|m| m.contains(needle)),
        "{case}: expected a {needle:?} violation, got {v:#?}"
    );
}

#[test]
fn kodama_pod_has_zero_violations() {
    assert_eq!(pss::check_restricted(&good_pod()), Vec::<String>::new());
    assert_eq!(pss::check_baseline(&good_pod()), Vec::<String>::new());
}

type Case = (&'static str, &'static str, fn(&mut Value));

fn cases() -> Vec<Case> {
    vec![
        // Baseline
        ("pod hostProcess", "hostProcess", |p| {
            psc(p)["windowsOptions"] = json!({"hostProcess": true})
        }),
        ("container hostProcess", "hostProcess", |p| {
            sc(p)["windowsOptions"] = json!({"hostProcess": true})
        }),
        ("hostNetwork", "host namespaces", |p| {
            p["spec"]["hostNetwork"] = json!(true)
        }),
        ("hostPID", "host namespaces", |p| {
            p["spec"]["hostPID"] = json!(true)
        }),
        ("hostIPC", "host namespaces", |p| {
            p["spec"]["hostIPC"] = json!(true)
        }),
        ("privileged", "privileged", |p| {
            sc(p)["privileged"] = json!(true)
        }),
        ("add SYS_ADMIN", "capabilities", |p| {
            sc(p)["capabilities"]["add"] = json!(["SYS_ADMIN"])
        }),
        ("hostPath", "hostPath", |p| {
            p["spec"]["volumes"]
                .as_array_mut()
                .expect("vols")
                .push(json!({"name": "h", "hostPath": {"path": "/"}}))
        }),
        ("hostPort", "host ports", |p| {
            container(p)["ports"] = json!([{"containerPort": 80, "hostPort": 8080}])
        }),
        ("AppArmor pod field", "AppArmor", |p| {
            psc(p)["appArmorProfile"] = json!({"type": "Unconfined"})
        }),
        ("AppArmor container field", "AppArmor", |p| {
            sc(p)["appArmorProfile"] = json!({"type": "Unconfined"})
        }),
        ("AppArmor annotation", "AppArmor", |p| {
            p["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/session"] =
                json!("unconfined")
        }),
        ("SELinux type", "SELinux", |p| {
            psc(p)["seLinuxOptions"] = json!({"type": "spc_t"})
        }),
        ("SELinux user", "SELinux", |p| {
            sc(p)["seLinuxOptions"] = json!({"user": "system_u"})
        }),
        ("SELinux role", "SELinux", |p| {
            sc(p)["seLinuxOptions"] = json!({"role": "sysadm_r"})
        }),
        ("procMount", "/proc mount", |p| {
            sc(p)["procMount"] = json!("Unmasked")
        }),
        ("seccomp pod Unconfined", "seccomp", |p| {
            psc(p)["seccompProfile"] = json!({"type": "Unconfined"})
        }),
        ("seccomp container Unconfined", "seccomp", |p| {
            sc(p)["seccompProfile"] = json!({"type": "Unconfined"})
        }),
        ("seccomp annotation", "seccomp", |p| {
            p["metadata"]["annotations"]["seccomp.security.alpha.kubernetes.io/pod"] =
                json!("unconfined")
        }),
        ("unsafe sysctl", "sysctls", |p| {
            psc(p)["sysctls"] = json!([{"name": "kernel.msgmax", "value": "1"}])
        }),
        // Restricted
        ("nfs volume", "volume types", |p| {
            p["spec"]["volumes"]
                .as_array_mut()
                .expect("vols")
                .push(json!({"name": "n", "nfs": {"server": "x", "path": "/"}}))
        }),
        ("gitRepo volume", "volume types", |p| {
            p["spec"]["volumes"]
                .as_array_mut()
                .expect("vols")
                .push(json!({"name": "g", "gitRepo": {"repository": "x"}}))
        }),
        (
            "allowPrivilegeEscalation true",
            "privilege escalation",
            |p| sc(p)["allowPrivilegeEscalation"] = json!(true),
        ),
        (
            "allowPrivilegeEscalation unset",
            "privilege escalation",
            |p| {
                sc(p)
                    .as_object_mut()
                    .expect("sc")
                    .remove("allowPrivilegeEscalation");
            },
        ),
        ("runAsNonRoot false on the pod", "runAsNonRoot", |p| {
            psc(p)["runAsNonRoot"] = json!(false)
        }),
        ("runAsNonRoot false on a container", "runAsNonRoot", |p| {
            sc(p)["runAsNonRoot"] = json!(false)
        }),
        ("runAsNonRoot unset everywhere", "runAsNonRoot", |p| {
            psc(p).as_object_mut().expect("psc").remove("runAsNonRoot");
            sc(p).as_object_mut().expect("sc").remove("runAsNonRoot");
        }),
        ("runAsUser 0 on the pod", "runAsUser", |p| {
            psc(p)["runAsUser"] = json!(0)
        }),
        ("runAsUser 0 on a container", "runAsUser", |p| {
            sc(p)["runAsUser"] = json!(0)
        }),
        ("seccomp unset everywhere", "seccomp", |p| {
            psc(p)
                .as_object_mut()
                .expect("psc")
                .remove("seccompProfile");
            sc(p).as_object_mut().expect("sc").remove("seccompProfile");
        }),
        ("capabilities not dropped", "must drop ALL", |p| {
            sc(p)["capabilities"] = json!({"drop": ["NET_RAW"]})
        }),
        (
            "add CHOWN (baseline-allowed)",
            "restricted allows only NET_BIND_SERVICE",
            |p| sc(p)["capabilities"]["add"] = json!(["CHOWN"]),
        ),
    ]
}

#[test]
fn each_rule_is_tripped_by_a_bad_pod() {
    for (case, needle, edit) in cases() {
        assert_trips(&with(edit), needle, case);
    }
}

#[test]
fn init_and_ephemeral_containers_are_checked_too() {
    for field in ["initContainers", "ephemeralContainers"] {
        let pod = with(|p| {
            let mut c = p["spec"]["containers"][0].clone();
            c["name"] = json!("extra");
            c["securityContext"]["privileged"] = json!(true);
            c["securityContext"]
                .as_object_mut()
                .expect("sc")
                .remove("allowPrivilegeEscalation");
            p["spec"][field] = json!([c]);
        });
        let v = pss::check_restricted(&pod);
        assert!(
            v.iter()
                .any(|m| m.contains(field) && m.contains("privileged")),
            "{field}: {v:#?}"
        );
        assert!(
            v.iter()
                .any(|m| m.contains(field) && m.contains("privilege escalation")),
            "{field}: {v:#?}"
        );
    }
}

#[test]
fn allowed_values_pass() {
    let pod = with(|p| {
        sc(p)["capabilities"]["add"] = json!(["NET_BIND_SERVICE"]);
        psc(p)["sysctls"] = json!([{"name": "net.ipv4.ping_group_range", "value": "0 1"}]);
        psc(p)["seLinuxOptions"] = json!({"type": "container_t", "level": "s0:c1,c2"});
        psc(p)["appArmorProfile"] = json!({"type": "RuntimeDefault"});
        sc(p)["seccompProfile"] = json!({"type": "Localhost", "localhostProfile": "x.json"});
        sc(p)["procMount"] = json!("Default");
        container(p)["ports"] = json!([{"containerPort": 80, "hostPort": 0}]);
        p["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/session"] =
            json!("localhost/my-profile");
        for v in [
            json!({"name": "p", "projected": {"sources": []}}),
            json!({"name": "d", "downwardAPI": {"items": []}}),
            json!({"name": "c", "csi": {"driver": "x"}}),
            json!({"name": "e", "ephemeral": {}}),
        ] {
            p["spec"]["volumes"].as_array_mut().expect("vols").push(v);
        }
    });
    assert_eq!(pss::check_restricted(&pod), Vec::<String>::new());
    // Container-level settings may replace pod-level ones.
    let pod = with(|p| {
        psc(p).as_object_mut().expect("psc").remove("runAsNonRoot");
        psc(p)
            .as_object_mut()
            .expect("psc")
            .remove("seccompProfile");
    });
    assert_eq!(pss::check_restricted(&pod), Vec::<String>::new());
}

#[test]
fn baseline_allows_what_only_restricted_forbids() {
    let pod = with(|p| {
        sc(p)["capabilities"] = json!({"add": ["CHOWN"]});
        sc(p)["allowPrivilegeEscalation"] = json!(true);
        psc(p)["runAsUser"] = json!(0);
    });
    assert_eq!(pss::check_baseline(&pod), Vec::<String>::new());
    assert!(pss::check_restricted(&pod).len() >= 3);
}

#[test]
fn windows_pods_are_exempt_from_linux_only_restricted_rules() {
    let pod = with(|p| {
        p["spec"]["os"] = json!({"name": "windows"});
        sc(p)
            .as_object_mut()
            .expect("sc")
            .remove("allowPrivilegeEscalation");
        sc(p).as_object_mut().expect("sc").remove("capabilities");
        sc(p).as_object_mut().expect("sc").remove("seccompProfile");
        psc(p)
            .as_object_mut()
            .expect("psc")
            .remove("seccompProfile");
    });
    assert_eq!(pss::check_restricted(&pod), Vec::<String>::new());
}
