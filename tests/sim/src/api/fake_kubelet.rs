//! A fake kubelet for API-only tests: no processes. Pods are scheduled (PVCs must be Bound, requests
//! must fit the node), then marked Running/Ready after `start_delay`; deletions finish at once;
//! logs are synthetic lines; streams get a plain HTTP answer (enough to test the hand-off and the
//! stream-drop fault).
//!
//! May import: std, serde_json, contract, api::{util, validate}.

use super::util::{now_rfc3339, random_u64};
use super::validate::parse_quantity;
use crate::contract::{
    ClusterState, Conn, Json, Kubelet, KubeletConfig, KubeletError, LogOptions, StreamRequest,
};
use serde_json::json;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The fake kubelet.
pub struct FakeKubelet {
    state: Arc<dyn ClusterState>,
    config: KubeletConfig,
    started: Mutex<HashSet<String>>,
    stopped: Arc<AtomicBool>,
}

/// Build the fake kubelet (same shape as `contract::KubeletFactory`).
pub fn new(state: Arc<dyn ClusterState>, config: KubeletConfig) -> Arc<dyn Kubelet> {
    Arc::new(FakeKubelet {
        state,
        config,
        started: Mutex::new(HashSet::new()),
        stopped: Arc::new(AtomicBool::new(false)),
    })
}

fn cond(ty: &str, status: bool, now: &str) -> Json {
    json!({"type": ty, "status": if status { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now})
}

fn requests(pod: &Json, res: &str) -> f64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c["resources"]["requests"][res]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    c["resources"]["requests"][res]
                        .as_f64()
                        .map(|f| f.to_string())
                })
        })
        .filter_map(|q| parse_quantity(&q))
        .sum()
}

impl FakeKubelet {
    fn alive(&self, ns: &str, name: &str, uid: &str) -> bool {
        !self.stopped.load(Ordering::SeqCst)
            && self
                .state
                .get("pods", ns, name)
                .map(|p| {
                    p["metadata"]["uid"].as_str() == Some(uid)
                        && p["metadata"]["deletionTimestamp"].is_null()
                })
                .unwrap_or(false)
    }

    fn run_pod(&self, pod: Json) {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut status = pod["status"].clone();
        // Capacity.
        let mut short = Vec::new();
        if requests(&pod, "cpu") * 1000.0 > self.config.cpu_millis as f64 {
            short.push("Insufficient cpu");
        }
        if requests(&pod, "memory") > self.config.memory_bytes as f64 {
            short.push("Insufficient memory");
        }
        if !short.is_empty() {
            let msg = format!("0/1 nodes are available: 1 {}. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.", short.join(", 1 "));
            status["conditions"] = json!([{"type": "PodScheduled", "status": "False", "lastProbeTime": null, "lastTransitionTime": now_rfc3339(), "reason": "Unschedulable", "message": msg}]);
            self.state.set_pod_status(&ns, &name, status);
            self.state
                .record_event(&ns, &name, "Warning", "FailedScheduling", &msg);
            return;
        }
        // PVCs must be bound.
        let claims: Vec<String> = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v["persistentVolumeClaim"]["claimName"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        let mut warned = false;
        loop {
            let unbound: Vec<&String> = claims
                .iter()
                .filter(|c| {
                    self.state
                        .get("persistentvolumeclaims", &ns, c)
                        .map(|p| p["status"]["phase"] != "Bound")
                        .unwrap_or(true)
                })
                .collect();
            if unbound.is_empty() {
                break;
            }
            if !warned {
                warned = true;
                let missing = unbound
                    .iter()
                    .find(|c| self.state.get("persistentvolumeclaims", &ns, c).is_none());
                let msg = match missing {
                    Some(c) => format!("0/1 nodes are available: persistentvolumeclaim \"{c}\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."),
                    None => "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".to_string(),
                };
                let mut st = status.clone();
                st["conditions"] = json!([{"type": "PodScheduled", "status": "False", "lastProbeTime": null, "lastTransitionTime": now_rfc3339(), "reason": "Unschedulable", "message": msg}]);
                self.state.set_pod_status(&ns, &name, st);
                self.state
                    .record_event(&ns, &name, "Warning", "FailedScheduling", &msg);
            }
            if !self.alive(&ns, &name, &uid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let now = now_rfc3339();
        status["conditions"] = json!([cond("PodScheduled", true, &now)]);
        self.state.set_pod_status(&ns, &name, status.clone());
        self.state.record_event(
            &ns,
            &name,
            "Normal",
            "Scheduled",
            &format!(
                "Successfully assigned {ns}/{name} to {}",
                self.config.node_name
            ),
        );
        let until = Instant::now() + self.config.start_delay;
        while Instant::now() < until {
            if !self.alive(&ns, &name, &uid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10).min(self.config.start_delay));
        }
        if !self.alive(&ns, &name, &uid) {
            return;
        }
        let now = now_rfc3339();
        let statuses: Vec<Json> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                json!({
                    "name": c["name"], "image": c["image"], "imageID": format!("sim://{}", c["image"].as_str().unwrap_or_default()),
                    "containerID": format!("sim://{:016x}", random_u64()),
                    "ready": true, "started": true, "restartCount": 0,
                    "state": {"running": {"startedAt": now}}, "lastState": {}
                })
            })
            .collect();
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            let cn = c["name"].as_str().unwrap_or_default();
            self.state.record_event(
                &ns,
                &name,
                "Normal",
                "Pulled",
                &format!(
                    "Container image \"{}\" already present on machine",
                    c["image"].as_str().unwrap_or_default()
                ),
            );
            self.state.record_event(
                &ns,
                &name,
                "Normal",
                "Created",
                &format!("Created container: {cn}"),
            );
            self.state.record_event(
                &ns,
                &name,
                "Normal",
                "Started",
                &format!("Started container {cn}"),
            );
        }
        status["phase"] = json!("Running");
        status["hostIP"] = json!("127.0.0.1");
        status["hostIPs"] = json!([{"ip": "127.0.0.1"}]);
        status["podIP"] = json!("10.244.0.10");
        status["podIPs"] = json!([{"ip": "10.244.0.10"}]);
        status["startTime"] = json!(now);
        status["conditions"] = json!([
            cond("PodReadyToStartContainers", true, &now),
            cond("Initialized", true, &now),
            cond("Ready", true, &now),
            cond("ContainersReady", true, &now),
            cond("PodScheduled", true, &now),
        ]);
        status["containerStatuses"] = json!(statuses);
        self.state.set_pod_status(&ns, &name, status);
    }
}

impl Kubelet for FakeKubelet {
    fn pod_changed(&self, pod: &Json) {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            self.started
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
            let state = self.state.clone();
            let _ = std::thread::Builder::new()
                .name("fake-kubelet-del".into())
                .spawn(move || {
                    if state
                        .get("pods", &ns, &name)
                        .map(|p| p["metadata"]["uid"].as_str() == Some(uid.as_str()))
                        .unwrap_or(false)
                    {
                        state.finish_pod_deletion(&ns, &name);
                    }
                });
            return;
        }
        if !self
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid)
        {
            return;
        }
        let me = FakeKubelet {
            state: self.state.clone(),
            config: self.config.clone(),
            started: Mutex::new(HashSet::new()),
            stopped: self.stopped.clone(),
        };
        let pod = pod.clone();
        let _ = std::thread::Builder::new()
            .name("fake-kubelet-pod".into())
            .spawn(move || me.run_pod(pod));
    }

    fn stream(&self, req: StreamRequest, mut conn: Box<dyn Conn>) {
        // `command=echo`: echo one line back (tests the hand-off: leftover bytes, read timeouts).
        if req.query.iter().any(|(k, v)| k == "command" && v == "echo") {
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            );
            let _ = conn.flush();
            let mut line = Vec::new();
            let mut b = [0u8; 256];
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut timeouts = 0u32;
            while !line.contains(&b'\n') && Instant::now() < deadline {
                match conn.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => line.extend_from_slice(&b[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        timeouts += 1
                    }
                    Err(_) => break,
                }
            }
            let _ = conn.write_all(format!("timeouts>0={} echo:", timeouts > 0).as_bytes());
            let _ = conn.write_all(&line);
            let _ = conn.flush();
            return;
        }
        let mut body = format!(
            "fake-kubelet {:?} {}/{}\n",
            req.kind, req.namespace, req.pod
        )
        .into_bytes();
        body.extend(std::iter::repeat_n(b'y', 64 * 1024));
        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(&body);
        let _ = conn.flush();
    }

    fn logs(
        &self,
        namespace: &str,
        pod: &str,
        opts: &LogOptions,
        out: &mut dyn Write,
    ) -> Result<(), KubeletError> {
        let p = self
            .state
            .get("pods", namespace, pod)
            .ok_or_else(|| KubeletError {
                code: 404,
                reason: "NotFound".into(),
                message: format!("pods \"{pod}\" not found"),
            })?;
        let container = opts
            .container
            .clone()
            .or_else(|| {
                p["spec"]["containers"][0]["name"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        if p["status"]["phase"] != "Running" {
            return Err(KubeletError {
                code: 400,
                reason: "BadRequest".into(),
                message: format!("container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"),
            });
        }
        let uid = p["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut i = 1;
        loop {
            let line = format!("fake log line {i} from {container}\n");
            if out
                .write_all(line.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return Ok(());
            }
            i += 1;
            if !opts.follow && i > 3 {
                return Ok(());
            }
            if opts.follow {
                if !self.alive(namespace, pod, &uid) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn kill_pod_processes(&self, namespace: &str, pod: &str) {
        let Some(p) = self.state.get("pods", namespace, pod) else {
            return;
        };
        let mut status = p["status"].clone();
        let never = p["spec"]["restartPolicy"] == "Never";
        let now = now_rfc3339();
        if let Some(cs) = status["containerStatuses"].as_array_mut() {
            for c in cs {
                let term = json!({"terminated": {"exitCode": 137, "reason": "Error", "startedAt": c["state"]["running"]["startedAt"], "finishedAt": now}});
                if never {
                    c["state"] = term;
                    c["ready"] = json!(false);
                } else {
                    c["lastState"] = term;
                    c["restartCount"] = json!(c["restartCount"].as_i64().unwrap_or(0) + 1);
                    c["state"] = json!({"running": {"startedAt": now}});
                }
            }
        }
        if never {
            status["phase"] = json!("Failed");
        }
        self.state.set_pod_status(namespace, pod, status);
    }

    fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}
