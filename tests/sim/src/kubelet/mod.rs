//! The simulated kubelet: schedules pods against the node's capacity, runs their containers as local
//! processes in one mount namespace per pod (volumes bind-mounted at their mountPaths), reports pod
//! status and Events, serves exec/attach/port-forward over WebSocket and container logs.
//!
//! One worker thread per pod owns that pod's processes and walks it through scheduling, image
//! "pull", sandbox/volume setup, init containers, the container restart loop and graceful deletion.
//! Locks of this module are never held while calling into `ClusterState`.
//!
//! May import: contract.

mod env;
pub mod fake;
mod logs;
mod proc;
mod stream;
mod util;
mod volumes;

use crate::contract::{ClusterState, Json, Kubelet, KubeletConfig, KubeletError, LogOptions};
use crate::contract::{Conn, StreamRequest};
use logs::Hub;
use proc::Identity;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use util::{arr, rfc3339, str_at};

/// The pod IP and host IP every simulated pod reports (pods share the host network).
pub const POD_IP: &str = "127.0.0.1";

/// Build the kubelet (see `contract::KubeletFactory`).
pub fn new(state: Arc<dyn ClusterState>, config: KubeletConfig) -> Arc<dyn Kubelet> {
    build(state, config, proc::namespaces_available().err())
}

/// A kubelet that behaves as on a host without root/namespaces (tests of that error path).
#[doc(hidden)]
pub fn new_without_namespaces(
    state: Arc<dyn ClusterState>,
    config: KubeletConfig,
) -> Arc<dyn Kubelet> {
    build(
        state,
        config,
        Some("simulated: this host cannot create mount namespaces (needs root)".to_string()),
    )
}

fn build(
    state: Arc<dyn ClusterState>,
    config: KubeletConfig,
    ns_error: Option<String>,
) -> Arc<dyn Kubelet> {
    let inner = Arc::new(Inner {
        state,
        ns_error,
        cfg: config,
        pods: Mutex::new(HashMap::new()),
        bound: Mutex::new(HashMap::new()),
        stopping: AtomicBool::new(false),
        workers: Mutex::new(Vec::new()),
    });
    let weak = Arc::downgrade(&inner);
    let _ = std::thread::Builder::new()
        .name("kubelet-housekeeping".into())
        .spawn(move || housekeeping(weak));
    Arc::new(SimKubelet { inner })
}

/// Every second: pods that vanished from the store (or were replaced by a new uid) without a
/// graceful deletion are torn down, like the real kubelet's orphan cleanup. A pod must be missing
/// on two checks in a row, so a creation racing with `pod_changed` is never mistaken for one.
fn housekeeping(weak: std::sync::Weak<Inner>) {
    let mut missing: HashMap<String, u32> = HashMap::new();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let pods: Vec<Arc<Pod>> = lock(&inner.pods).values().cloned().collect();
        let mut seen = HashMap::new();
        for p in pods {
            let key = Inner::key(&p);
            let gone = match inner.state.get("pods", &p.ns, &p.name) {
                None => true,
                Some(o) => !p.uid.is_empty() && str_at(&o, &["metadata", "uid"]) != Some(&p.uid),
            };
            if !gone {
                continue;
            }
            let n = missing.get(&key).copied().unwrap_or(0) + 1;
            if n >= 2 {
                let mut rt = lock(&p.rt);
                rt.orphaned = true;
                rt.delete = Some(Duration::ZERO);
                p.cv.notify_all();
            }
            seen.insert(key, n);
        }
        missing = seen;
    }
}

struct SimKubelet {
    inner: Arc<Inner>,
}

/// Resource requests of a pod.
#[derive(Debug, Default, Clone)]
struct Req {
    cpu: u64,
    mem: u64,
    ext: BTreeMap<String, u64>,
}

pub(crate) struct Inner {
    state: Arc<dyn ClusterState>,
    cfg: KubeletConfig,
    /// Why pods cannot run on this host (no root / namespaces), if so.
    ns_error: Option<String>,
    pods: Mutex<HashMap<String, Arc<Pod>>>,
    /// Requests of the pods holding node resources, by `ns/name`.
    bound: Mutex<HashMap<String, Req>>,
    stopping: AtomicBool,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) struct Pod {
    ns: String,
    name: String,
    uid: String,
    dir: PathBuf,
    obj: Mutex<Json>,
    rt: Mutex<Rt>,
    cv: Condvar,
}

#[derive(Debug, Clone)]
enum CState {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started: SystemTime,
    },
    Terminated {
        code: i32,
        signal: Option<i32>,
        reason: String,
        message: String,
        started: SystemTime,
        finished: SystemTime,
    },
}

/// Resolved configuration of a running container, reused by exec.
pub(crate) struct CtrCfg {
    env: Vec<(String, String)>,
    id: Identity,
}

type SharedStdin = Arc<Mutex<Option<Box<dyn Write + Send>>>>;

pub(crate) struct Running {
    child: Child,
    pid: i32,
    stdin: Option<SharedStdin>,
    pty: Option<Arc<OwnedFd>>,
    hub: Arc<Hub>,
    pumps: Vec<JoinHandle<()>>,
}

pub(crate) struct Ctr {
    name: String,
    image: String,
    spec: Json,
    init: bool,
    state: CState,
    last: Option<CState>,
    restarts: u32,
    run: Option<Running>,
    cfg: Option<Arc<CtrCfg>>,
    log: Option<PathBuf>,
    prev_log: Option<PathBuf>,
    backoff_until: Option<Instant>,
    instance: u64,
    container_id: String,
}

impl Ctr {
    fn new(spec: &Json, init: bool, waiting: &str) -> Ctr {
        Ctr {
            name: str_at(spec, &["name"]).unwrap_or("").to_string(),
            image: str_at(spec, &["image"]).unwrap_or("").to_string(),
            spec: spec.clone(),
            init,
            state: CState::Waiting {
                reason: waiting.to_string(),
                message: String::new(),
            },
            last: None,
            restarts: 0,
            run: None,
            cfg: None,
            log: None,
            prev_log: None,
            backoff_until: None,
            instance: 0,
            container_id: String::new(),
        }
    }
    fn running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }
}

#[derive(Default)]
pub(crate) struct Rt {
    /// Grace period of a requested deletion.
    delete: Option<Duration>,
    /// The kubelet is shutting down.
    stop: bool,
    phase: &'static str,
    unschedulable: Option<String>,
    scheduled: bool,
    initialized: bool,
    sandbox: Option<Child>,
    sandbox_ns: Option<PathBuf>,
    init: Vec<Ctr>,
    main: Vec<Ctr>,
    /// Process groups of running exec sessions.
    execs: Vec<i32>,
    start_time: Option<SystemTime>,
    cond_times: HashMap<&'static str, (bool, SystemTime)>,
    published: Option<Json>,
    message: Option<(String, String)>,
    /// The pod disappeared from the store without a graceful deletion.
    orphaned: bool,
}

impl Rt {
    fn ctr(&self, name: &str) -> Option<&Ctr> {
        self.main
            .iter()
            .chain(self.init.iter())
            .find(|c| c.name == name)
    }
    fn all_mut(&mut self) -> impl Iterator<Item = &mut Ctr> {
        self.init.iter_mut().chain(self.main.iter_mut())
    }
    fn interrupted(&self) -> bool {
        self.delete.is_some() || self.stop
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn image_fails(image: &str) -> bool {
    image.contains("does-not-exist") || image.ends_with(":missing")
}

fn hex_id(parts: &[&str]) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::new();
    for salt in 0..4u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut h);
        parts.hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

/// Effective requests: sum of containers, at least the largest init container (per resource).
fn pod_requests(pod: &Json) -> Req {
    let spec = pod.get("spec").cloned().unwrap_or(Json::Null);
    let one = |c: &Json| -> Req {
        let mut r = Req::default();
        let res = c.get("resources");
        let reqs = res
            .and_then(|r| r.get("requests"))
            .and_then(|r| r.as_object());
        let lims = res
            .and_then(|r| r.get("limits"))
            .and_then(|r| r.as_object());
        let mut keys: Vec<&String> = reqs.map(|m| m.keys().collect()).unwrap_or_default();
        keys.extend(
            lims.map(|m| m.keys().collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        for k in keys {
            let v = reqs
                .and_then(|m| m.get(k))
                .or_else(|| lims.and_then(|m| m.get(k)));
            let s = match v {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Number(n)) => n.to_string(),
                _ => continue,
            };
            match k.as_str() {
                "cpu" => r.cpu = util::cpu_millis(&s).unwrap_or(0),
                "memory" => r.mem = util::bytes(&s).unwrap_or(0),
                "ephemeral-storage" | "storage" => {}
                other => {
                    r.ext
                        .insert(other.to_string(), util::bytes(&s).unwrap_or(0));
                }
            }
        }
        r
    };
    let mut total = Req::default();
    for c in arr(&spec, "containers") {
        let r = one(c);
        total.cpu += r.cpu;
        total.mem += r.mem;
        for (k, v) in r.ext {
            *total.ext.entry(k).or_default() += v;
        }
    }
    for c in arr(&spec, "initContainers") {
        let r = one(c);
        total.cpu = total.cpu.max(r.cpu);
        total.mem = total.mem.max(r.mem);
        for (k, v) in r.ext {
            let e = total.ext.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    total
}

fn qos_class(pod: &Json) -> &'static str {
    let spec = pod.get("spec").cloned().unwrap_or(Json::Null);
    let all: Vec<&Json> = arr(&spec, "containers")
        .iter()
        .chain(arr(&spec, "initContainers"))
        .collect();
    let get = |c: &Json, kind: &str, r: &str| {
        c.pointer(&format!("/resources/{kind}/{r}"))
            .map(|v| v.to_string())
    };
    let any = all.iter().any(|c| {
        ["cpu", "memory"]
            .iter()
            .any(|r| get(c, "requests", r).is_some() || get(c, "limits", r).is_some())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let l = get(c, "limits", r);
            l.is_some() && (get(c, "requests", r).is_none() || get(c, "requests", r) == l)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

impl Inner {
    fn event(&self, pod: &Pod, type_: &str, reason: &str, msg: &str) {
        self.state
            .record_event(&pod.ns, &pod.name, type_, reason, msg);
    }

    /// Wait up to `d` or until the pod is deleted/stopped; true when interrupted.
    fn wait(&self, pod: &Pod, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut rt = lock(&pod.rt);
        loop {
            if rt.interrupted() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            rt = match pod.cv.wait_timeout(rt, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    fn obj(&self, pod: &Pod) -> Json {
        lock(&pod.obj).clone()
    }

    /// Publish the pod status if it changed.
    fn publish(&self, pod: &Pod) {
        let obj = self.obj(pod);
        let st = {
            let mut rt = lock(&pod.rt);
            let st = build_status(&obj, &mut rt);
            if rt.published.as_ref() == Some(&st) {
                return;
            }
            rt.published = Some(st.clone());
            st
        };
        self.state.set_pod_status(&pod.ns, &pod.name, st);
    }

    fn key(pod: &Pod) -> String {
        format!("{}/{}", pod.ns, pod.name)
    }

    fn release(&self, pod: &Pod) {
        lock(&self.bound).remove(&Self::key(pod));
    }

    /// Check volumes and resources; bind PVCs and reserve resources on success.
    fn try_schedule(&self, pod: &Pod) -> Result<(), String> {
        let obj = self.obj(pod);
        for claim in volumes::claims(&obj) {
            let Some(pvc) = self.state.get("persistentvolumeclaims", &pod.ns, &claim) else {
                return Err(format!(
                    "0/1 nodes are available: persistentvolumeclaim \"{claim}\" not found."
                ));
            };
            if pvc.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(format!(
                    "0/1 nodes are available: persistentvolumeclaim \"{claim}\" is being deleted."
                ));
            }
            if str_at(&pvc, &["status", "phase"]) != Some("Bound") {
                // Binding is the API server's (provisioner's) job; wait for it.
                return Err(
                    "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
                        .to_string(),
                );
            }
            volumes::ensure_pvc_dir(&self.cfg.data_dir, &pod.ns, &claim)?;
        }
        let req = pod_requests(&obj);
        let key = Self::key(pod);
        let mut bound = lock(&self.bound);
        let mut used = Req::default();
        for (k, r) in bound.iter() {
            if *k == key {
                continue;
            }
            used.cpu += r.cpu;
            used.mem += r.mem;
            for (e, v) in &r.ext {
                *used.ext.entry(e.clone()).or_default() += v;
            }
        }
        let mut short = Vec::new();
        if req.cpu > 0 && used.cpu + req.cpu > self.cfg.cpu_millis {
            short.push("cpu".to_string());
        }
        if req.mem > 0 && used.mem + req.mem > self.cfg.memory_bytes {
            short.push("memory".to_string());
        }
        for (e, v) in &req.ext {
            let cap = self
                .cfg
                .extended
                .iter()
                .find(|(n, _)| n == e)
                .map_or(0, |(_, c)| *c);
            if *v > 0 && used.ext.get(e).copied().unwrap_or(0) + v > cap {
                short.push(e.clone());
            }
        }
        if !short.is_empty() {
            let parts: Vec<String> = short
                .iter()
                .map(|r| format!("1 Insufficient {r}"))
                .collect();
            return Err(format!("0/1 nodes are available: {}.", parts.join(", ")));
        }
        bound.insert(key, req);
        Ok(())
    }
}

/// Build the pod's `status` from the runtime state.
fn build_status(obj: &Json, rt: &mut Rt) -> Json {
    let now = SystemTime::now();
    let mut conds = Vec::new();
    let mut cond =
        |rt: &mut Rt, t: &'static str, ok: bool, reason: Option<&str>, msg: Option<String>| {
            let e = rt.cond_times.entry(t).or_insert((ok, now));
            if e.0 != ok {
                *e = (ok, now);
            }
            let mut c = json!({
                "type": t,
                "status": if ok { "True" } else { "False" },
                "lastProbeTime": null,
                "lastTransitionTime": rfc3339(e.1),
            });
            if let Some(r) = reason {
                c["reason"] = json!(r);
            }
            if let Some(m) = msg {
                c["message"] = json!(m);
            }
            conds.push(c);
        };
    let phase = if rt.phase.is_empty() {
        "Pending"
    } else {
        rt.phase
    };
    if let Some(msg) = rt.unschedulable.clone() {
        cond(rt, "PodScheduled", false, Some("Unschedulable"), Some(msg));
    } else if rt.scheduled {
        let sandbox = rt.sandbox.is_some();
        cond(rt, "PodReadyToStartContainers", sandbox, None, None);
        let pending_init: Vec<String> = rt
            .init
            .iter()
            .filter(|c| !matches!(c.state, CState::Terminated { code: 0, .. }))
            .map(|c| c.name.clone())
            .collect();
        let initialized = rt.initialized || pending_init.is_empty();
        if initialized {
            cond(rt, "Initialized", true, None, None);
        } else {
            cond(
                rt,
                "Initialized",
                false,
                Some("ContainersNotInitialized"),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    pending_init.join(" ")
                )),
            );
        }
        let unready: Vec<String> = rt
            .main
            .iter()
            .filter(|c| !c.running())
            .map(|c| c.name.clone())
            .collect();
        let done = phase == "Succeeded" || phase == "Failed";
        for t in ["Ready", "ContainersReady"] {
            if unready.is_empty() && !done {
                cond(rt, t, true, None, None);
            } else if done {
                cond(rt, t, false, Some("PodCompleted"), None);
            } else {
                cond(
                    rt,
                    t,
                    false,
                    Some("ContainersNotReady"),
                    Some(format!(
                        "containers with unready status: [{}]",
                        unready.join(" ")
                    )),
                );
            }
        }
        cond(rt, "PodScheduled", true, None, None);
    }
    let mut st = json!({
        "phase": phase,
        "conditions": conds,
        "qosClass": qos_class(obj),
    });
    if let Some((reason, msg)) = &rt.message {
        st["reason"] = json!(reason);
        st["message"] = json!(msg);
    }
    if rt.scheduled {
        st["hostIP"] = json!(POD_IP);
        st["hostIPs"] = json!([{ "ip": POD_IP }]);
        st["podIP"] = json!(POD_IP);
        st["podIPs"] = json!([{ "ip": POD_IP }]);
        if let Some(t) = rt.start_time {
            st["startTime"] = json!(rfc3339(t));
        }
        let render = ctr_status;
        if !rt.init.is_empty() {
            st["initContainerStatuses"] = json!(rt.init.iter().map(render).collect::<Vec<_>>());
        }
        st["containerStatuses"] = json!(rt.main.iter().map(render).collect::<Vec<_>>());
    }
    st
}

fn state_json(s: &CState, cid: &str) -> Json {
    match s {
        CState::Waiting { reason, message } => {
            let mut w = json!({ "reason": reason });
            if !message.is_empty() {
                w["message"] = json!(message);
            }
            json!({ "waiting": w })
        }
        CState::Running { started } => json!({"running": {"startedAt": rfc3339(*started)}}),
        CState::Terminated {
            code,
            signal,
            reason,
            message,
            started,
            finished,
        } => {
            let mut t = json!({
                "exitCode": code,
                "reason": reason,
                "startedAt": rfc3339(*started),
                "finishedAt": rfc3339(*finished),
                "containerID": format!("sim://{cid}"),
            });
            if let Some(s) = signal {
                t["signal"] = json!(s);
            }
            if !message.is_empty() {
                t["message"] = json!(message);
            }
            json!({ "terminated": t })
        }
    }
}

fn ctr_status(c: &Ctr) -> Json {
    let running = c.running();
    let image_id = format!("sim.local/{}@sha256:{}", c.image, hex_id(&[&c.image]));
    let mut s = json!({
        "name": c.name,
        "image": c.image,
        "imageID": if c.instance > 0 { image_id } else { String::new() },
        "ready": running && !c.init,
        "started": running,
        "restartCount": c.restarts,
        "state": state_json(&c.state, &c.container_id),
        "lastState": c.last.as_ref().map_or(json!({}), |l| state_json(l, &c.container_id)),
    });
    if c.instance > 0 {
        s["containerID"] = json!(format!("sim://{}", c.container_id));
    }
    s
}

impl Kubelet for SimKubelet {
    fn pod_changed(&self, pod: &Json) {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let ns = str_at(pod, &["metadata", "namespace"])
            .unwrap_or("default")
            .to_string();
        let name = str_at(pod, &["metadata", "name"]).unwrap_or("").to_string();
        let uid = str_at(pod, &["metadata", "uid"]).unwrap_or("").to_string();
        let deleting = pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|d| !d.is_null());
        let grace = Duration::from_secs(
            pod.pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(|g| g.as_u64())
                .unwrap_or(30),
        );
        let key = format!("{ns}/{name}");
        let mut pods = lock(&inner.pods);
        if let Some(p) = pods.get(&key) {
            if p.uid == uid {
                *lock(&p.obj) = pod.clone();
                if deleting {
                    let mut rt = lock(&p.rt);
                    rt.delete = Some(rt.delete.map_or(grace, |g| g.min(grace)));
                    p.cv.notify_all();
                }
                return;
            }
        }
        let dir_name = if uid.is_empty() {
            format!("{ns}_{name}")
        } else {
            uid.clone()
        };
        let p = Arc::new(Pod {
            dir: inner.cfg.data_dir.join("pods").join(dir_name),
            ns,
            name,
            uid,
            obj: Mutex::new(pod.clone()),
            rt: Mutex::new(Rt {
                delete: deleting.then_some(grace),
                ..Rt::default()
            }),
            cv: Condvar::new(),
        });
        pods.insert(key, p.clone());
        drop(pods);
        let inner2 = inner.clone();
        let h = std::thread::Builder::new()
            .name(format!("pod-{}", p.name))
            .spawn(move || pod_worker(&inner2, &p));
        if let Ok(h) = h {
            let mut w = lock(&inner.workers);
            w.retain(|h| !h.is_finished());
            w.push(h);
        }
    }

    fn stream(&self, req: StreamRequest, conn: Box<dyn Conn>) {
        stream::serve(&self.inner, req, conn);
    }

    fn logs(
        &self,
        namespace: &str,
        pod: &str,
        opts: &LogOptions,
        out: &mut dyn Write,
    ) -> Result<(), KubeletError> {
        let Some(p) = self.inner.find(namespace, pod) else {
            return Err(util::not_found("pods", pod));
        };
        let (path, instance, cname) = {
            let rt = lock(&p.rt);
            let c = select_container(&p, &rt, opts.container.as_deref(), true)?;
            let path = if opts.previous {
                c.prev_log.clone().ok_or_else(|| {
                    util::bad_request(format!(
                        "previous terminated container \"{}\" in pod \"{}\" not found",
                        c.name, p.name
                    ))
                })?
            } else {
                match (&c.log, &c.state) {
                    (Some(l), _) => l.clone(),
                    (None, CState::Waiting { reason, .. }) => {
                        return Err(util::bad_request(format!(
                            "container \"{}\" in pod \"{}\" is waiting to start: {reason}",
                            c.name, p.name
                        )))
                    }
                    (None, _) => {
                        return Err(util::bad_request(format!(
                            "container \"{}\" in pod \"{}\" has no logs",
                            c.name, p.name
                        )))
                    }
                }
            };
            (path, c.instance, c.name.clone())
        };
        let ro = logs::ReadOpts {
            tail_lines: opts.tail_lines,
            since: opts
                .since_seconds
                .map(|s| SystemTime::now() - Duration::from_secs(s.max(0) as u64)),
            timestamps: opts.timestamps,
        };
        let Ok(offset) = logs::copy_log(&path, &ro, out) else {
            return Ok(());
        };
        if opts.follow && !opts.previous {
            let done = || {
                let rt = lock(&p.rt);
                rt.ctr(&cname)
                    .is_none_or(|c| c.instance != instance || !c.running() || c.run.is_none())
                    || rt.interrupted()
            };
            let _ = logs::follow_log(&path, offset, opts.timestamps, out, &done);
        }
        Ok(())
    }

    fn kill_pod_processes(&self, namespace: &str, pod: &str) {
        let Some(p) = self.inner.find(namespace, pod) else {
            return;
        };
        let rt = lock(&p.rt);
        kill_all(&rt, libc::SIGKILL, false);
    }

    fn shutdown(&self) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        let pods: Vec<Arc<Pod>> = lock(&inner.pods).values().cloned().collect();
        for p in &pods {
            let mut rt = lock(&p.rt);
            rt.stop = true;
            kill_all(&rt, libc::SIGKILL, false);
            p.cv.notify_all();
        }
        let workers: Vec<JoinHandle<()>> = lock(&inner.workers).drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

/// Signal every container and exec process group; with `sandbox_too`, also the sandbox. Every
/// other process found in the pod's mount namespace gets the signal as well.
fn kill_all(rt: &Rt, sig: i32, sandbox_too: bool) {
    for c in rt.init.iter().chain(rt.main.iter()) {
        if let Some(r) = &c.run {
            proc::kill_group(r.pid, sig);
            proc::kill_pid(r.pid, sig);
        }
    }
    for g in &rt.execs {
        proc::kill_group(*g, sig);
    }
    if let (Some(ns), Some(sb)) = (&rt.sandbox_ns, &rt.sandbox) {
        if sig == libc::SIGKILL {
            for pid in proc::pids_in_ns(ns, sb.id()) {
                proc::kill_pid(pid, sig);
            }
        }
        if sandbox_too {
            proc::kill_pid(sb.id() as i32, sig);
        }
    }
}

/// Pick the container of a request (exec/attach/logs) like the API server does.
fn select_container<'a>(
    p: &Pod,
    rt: &'a Rt,
    name: Option<&str>,
    allow_init: bool,
) -> Result<&'a Ctr, KubeletError> {
    match name.filter(|n| !n.is_empty()) {
        Some(n) => rt
            .main
            .iter()
            .chain(rt.init.iter().filter(|_| allow_init))
            .find(|c| c.name == n)
            .ok_or_else(|| {
                util::bad_request(format!("container {n} is not valid for pod {}", p.name))
            }),
        None => {
            if rt.main.len() == 1 {
                Ok(&rt.main[0])
            } else {
                let names: Vec<&str> = rt.main.iter().map(|c| c.name.as_str()).collect();
                Err(util::bad_request(format!(
                    "a container name must be specified for pod {}, choose one of: [{}]",
                    p.name,
                    names.join(" ")
                )))
            }
        }
    }
}

impl Inner {
    fn find(&self, ns: &str, name: &str) -> Option<Arc<Pod>> {
        lock(&self.pods).get(&format!("{ns}/{name}")).cloned()
    }
}

enum StartErr {
    Config(String),
    Start(String),
}

fn pod_worker(inner: &Arc<Inner>, pod: &Arc<Pod>) {
    let finished_normally = run_pod(inner, pod);
    // Tear down whatever is left.
    terminate(inner, pod, Duration::ZERO, false);
    inner.release(pod);
    {
        let mut pods = lock(&inner.pods);
        if pods
            .get(&Inner::key(pod))
            .is_some_and(|p| Arc::ptr_eq(p, pod))
        {
            pods.remove(&Inner::key(pod));
        }
    }
    let _ = std::fs::remove_dir_all(&pod.dir);
    let (deleted, orphaned) = {
        let rt = lock(&pod.rt);
        (rt.delete.is_some(), rt.orphaned)
    };
    if deleted && finished_normally && !orphaned {
        inner.state.finish_pod_deletion(&pod.ns, &pod.name);
    }
}

/// Drive the pod until it is deleted (returns true) or the kubelet stops (false).
fn run_pod(inner: &Arc<Inner>, pod: &Arc<Pod>) -> bool {
    let obj = inner.obj(pod);
    let spec = obj.get("spec").cloned().unwrap_or(Json::Null);
    let has_init = !arr(&spec, "initContainers").is_empty();
    {
        let mut rt = lock(&pod.rt);
        rt.phase = "Pending";
        rt.init = arr(&spec, "initContainers")
            .iter()
            .map(|c| Ctr::new(c, true, "PodInitializing"))
            .collect();
        let w = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        rt.main = arr(&spec, "containers")
            .iter()
            .map(|c| Ctr::new(c, false, w))
            .collect();
    }
    // 1. Scheduling.
    let mut last = String::new();
    loop {
        if lock(&pod.rt).interrupted() {
            return done(pod);
        }
        match inner.try_schedule(pod) {
            Ok(()) => break,
            Err(msg) => {
                if msg != last {
                    lock(&pod.rt).unschedulable = Some(msg.clone());
                    inner.event(pod, "Warning", "FailedScheduling", &msg);
                    inner.publish(pod);
                    last = msg;
                }
                inner.wait(pod, Duration::from_millis(200));
            }
        }
    }
    {
        let mut rt = lock(&pod.rt);
        rt.unschedulable = None;
        rt.scheduled = true;
        rt.start_time = Some(SystemTime::now());
    }
    inner.event(
        pod,
        "Normal",
        "Scheduled",
        &format!(
            "Successfully assigned {}/{} to {}",
            pod.ns, pod.name, inner.cfg.node_name
        ),
    );
    inner.publish(pod);
    if inner.wait(pod, inner.cfg.start_delay) {
        return done(pod);
    }
    // 2. Images.
    let bad: Vec<(String, String, bool)> = {
        let rt = lock(&pod.rt);
        rt.init
            .iter()
            .chain(rt.main.iter())
            .filter(|c| image_fails(&c.image))
            .map(|c| (c.name.clone(), c.image.clone(), c.init))
            .collect()
    };
    if !bad.is_empty() {
        return image_pull_failure(inner, pod, &bad);
    }
    // 3. Sandbox and volumes.
    if let Some(e) = &inner.ns_error {
        let msg = format!("Failed to create pod sandbox: {e}");
        inner.event(pod, "Warning", "FailedCreatePodSandBox", &msg);
        set_all_waiting(pod, "ContainerCreating", &msg);
        inner.publish(pod);
        while !inner.wait(pod, Duration::from_secs(3600)) {}
        return done(pod);
    }
    let envs: Vec<(String, Vec<(String, String)>)> = arr(&spec, "initContainers")
        .iter()
        .chain(arr(&spec, "containers"))
        .filter_map(|c| {
            let e =
                env::container_env(&*inner.state, &obj, c, POD_IP, &inner.cfg.node_name).ok()?;
            Some((str_at(c, &["name"])?.to_string(), e))
        })
        .collect();
    let mut last = String::new();
    let mounts = loop {
        match volumes::prepare(&*inner.state, &inner.cfg.data_dir, &pod.dir, &obj, &envs) {
            Ok(m) => break m,
            Err(e) => {
                if e != last {
                    inner.event(pod, "Warning", "FailedMount", &e);
                    last = e;
                }
                if inner.wait(pod, Duration::from_millis(500)) {
                    return done(pod);
                }
            }
        }
    };
    match proc::spawn_sandbox(&mounts) {
        Ok(child) => {
            let ns = proc::mnt_ns_of(child.id());
            let mut rt = lock(&pod.rt);
            rt.sandbox = Some(child);
            rt.sandbox_ns = ns;
        }
        Err(e) => {
            let msg = format!(
                "Failed to create pod sandbox: cannot set up the pod's mount namespace and volume \
                 bind mounts ({e}); the simulated kubelet needs root or CAP_SYS_ADMIN"
            );
            inner.event(pod, "Warning", "FailedCreatePodSandBox", &msg);
            set_all_waiting(pod, "ContainerCreating", &msg);
            inner.publish(pod);
            while !inner.wait(pod, Duration::from_secs(3600)) {}
            return done(pod);
        }
    }
    inner.publish(pod);
    let policy = str_at(&spec, &["restartPolicy"])
        .unwrap_or("Always")
        .to_string();
    // 4. Init containers, in order.
    let n_init = lock(&pod.rt).init.len();
    for i in 0..n_init {
        loop {
            if lock(&pod.rt).interrupted() {
                return graceful(inner, pod);
            }
            let ready = {
                let rt = lock(&pod.rt);
                rt.init[i].backoff_until.is_none_or(|t| Instant::now() >= t)
            };
            if !ready {
                inner.wait(pod, Duration::from_millis(50));
                continue;
            }
            if let Err(e) = start_container(inner, pod, &obj, true, i) {
                start_failed(inner, pod, true, i, e);
                inner.publish(pod);
                if inner.wait(pod, Duration::from_millis(500)) {
                    return graceful(inner, pod);
                }
                if lock(&pod.rt).phase == "Failed" {
                    break;
                }
                continue;
            }
            inner.publish(pod);
            // Wait for it to exit.
            let code = loop {
                if let Some(code) = reap(pod, true, i) {
                    break code;
                }
                if inner.wait(pod, Duration::from_millis(30)) {
                    return graceful(inner, pod);
                }
            };
            if code == 0 {
                break;
            }
            if policy == "Never" {
                lock(&pod.rt).phase = "Failed";
                break;
            }
            schedule_restart(inner, pod, true, i);
            inner.publish(pod);
        }
        if lock(&pod.rt).phase == "Failed" {
            inner.publish(pod);
            return finished_pod(inner, pod);
        }
    }
    {
        let mut rt = lock(&pod.rt);
        rt.initialized = true;
        for c in rt.main.iter_mut() {
            c.state = CState::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            };
        }
    }
    inner.publish(pod);
    // 5. Containers with restart policy.
    loop {
        if lock(&pod.rt).interrupted() {
            return graceful(inner, pod);
        }
        let n = lock(&pod.rt).main.len();
        for i in 0..n {
            if reap(pod, false, i).is_some() {
                let restart = {
                    let rt = lock(&pod.rt);
                    let code = match rt.main[i].state {
                        CState::Terminated { code, .. } => code,
                        _ => 0,
                    };
                    policy == "Always" || (policy == "OnFailure" && code != 0)
                };
                if restart {
                    schedule_restart(inner, pod, false, i);
                }
            }
            let should_start = {
                let rt = lock(&pod.rt);
                let c = &rt.main[i];
                c.run.is_none()
                    && match &c.state {
                        CState::Waiting { reason, .. } => {
                            reason != "CreateContainerConfigError"
                                || c.backoff_until.is_none_or(|t| Instant::now() >= t)
                        }
                        _ => false,
                    }
                    && c.backoff_until.is_none_or(|t| Instant::now() >= t)
            };
            if should_start {
                if let Err(e) = start_container(inner, pod, &obj, false, i) {
                    start_failed(inner, pod, false, i, e);
                    let mut rt = lock(&pod.rt);
                    let c = &mut rt.main[i];
                    if matches!(c.state, CState::Terminated { .. })
                        && (policy == "Always" || policy == "OnFailure")
                    {
                        drop(rt);
                        schedule_restart(inner, pod, false, i);
                    }
                }
            }
        }
        // Phase.
        let terminal = {
            let mut rt = lock(&pod.rt);
            let all_done = rt
                .main
                .iter()
                .all(|c| matches!(c.state, CState::Terminated { .. }) && c.backoff_until.is_none());
            if all_done {
                let ok = rt
                    .main
                    .iter()
                    .all(|c| matches!(c.state, CState::Terminated { code: 0, .. }));
                rt.phase = if ok { "Succeeded" } else { "Failed" };
                true
            } else {
                if rt.main.iter().any(|c| c.run.is_some() || c.restarts > 0) {
                    rt.phase = "Running";
                }
                false
            }
        };
        inner.publish(pod);
        if terminal {
            return finished_pod(inner, pod);
        }
        inner.wait(pod, Duration::from_millis(30));
    }
}

fn done(pod: &Pod) -> bool {
    !lock(&pod.rt).stop
}

/// The pod reached Succeeded/Failed: free its resources and processes, then wait for deletion.
fn finished_pod(inner: &Arc<Inner>, pod: &Arc<Pod>) -> bool {
    inner.release(pod);
    terminate(inner, pod, Duration::ZERO, false);
    inner.publish(pod);
    while !inner.wait(pod, Duration::from_secs(3600)) {}
    done(pod)
}

/// Deletion requested (or kubelet stopping) while containers may run.
fn graceful(inner: &Arc<Inner>, pod: &Arc<Pod>) -> bool {
    let (grace, stop) = {
        let rt = lock(&pod.rt);
        (rt.delete.unwrap_or(Duration::ZERO), rt.stop)
    };
    terminate(inner, pod, if stop { Duration::ZERO } else { grace }, !stop);
    done(pod)
}

/// SIGTERM every process group, wait up to `grace` for the containers to exit, SIGKILL the rest
/// (every process in the pod's namespace), then remove the sandbox.
fn terminate(inner: &Arc<Inner>, pod: &Arc<Pod>, grace: Duration, events: bool) {
    let running: Vec<String> = {
        let rt = lock(&pod.rt);
        rt.init
            .iter()
            .chain(rt.main.iter())
            .filter(|c| c.run.is_some())
            .map(|c| c.name.clone())
            .collect()
    };
    if events {
        for n in &running {
            inner.event(pod, "Normal", "Killing", &format!("Stopping container {n}"));
        }
    }
    if !grace.is_zero() && !running.is_empty() {
        kill_all(&lock(&pod.rt), libc::SIGTERM, false);
        let deadline = Instant::now() + grace;
        loop {
            let all_exited = {
                let mut rt = lock(&pod.rt);
                let mut all = true;
                for c in rt.all_mut() {
                    if let Some(r) = &mut c.run {
                        if !matches!(r.child.try_wait(), Ok(Some(_))) {
                            all = false;
                        }
                    }
                }
                all
            };
            if all_exited || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut rt = lock(&pod.rt);
    kill_all(&rt, libc::SIGKILL, true);
    for c in rt.all_mut() {
        if let Some(mut r) = c.run.take() {
            let _ = r.child.wait();
            r.hub.close();
            if let Some(s) = &r.stdin {
                lock(s).take();
            }
            if let CState::Running { started } = c.state {
                c.state = CState::Terminated {
                    code: 137,
                    signal: None,
                    reason: "Error".into(),
                    message: String::new(),
                    started,
                    finished: SystemTime::now(),
                };
            }
        }
    }
    if let Some(mut sb) = rt.sandbox.take() {
        proc::kill_pid(sb.id() as i32, libc::SIGKILL);
        let _ = sb.wait();
    }
    rt.sandbox_ns = None;
}

fn set_all_waiting(pod: &Pod, reason: &str, msg: &str) {
    let mut rt = lock(&pod.rt);
    for c in rt.all_mut() {
        c.state = CState::Waiting {
            reason: reason.into(),
            message: msg.into(),
        };
    }
}

fn image_pull_failure(inner: &Arc<Inner>, pod: &Arc<Pod>, bad: &[(String, String, bool)]) -> bool {
    let set = |reason: &str, msgf: &dyn Fn(&str) -> String| {
        let mut rt = lock(&pod.rt);
        for (name, image, init) in bad {
            let list = if *init { &mut rt.init } else { &mut rt.main };
            if let Some(c) = list.iter_mut().find(|c| &c.name == name) {
                c.state = CState::Waiting {
                    reason: reason.into(),
                    message: msgf(image),
                };
            }
        }
    };
    let pull_msg = |image: &str| {
        format!(
            "failed to pull and unpack image \"{image}\": not found (the simulated node never \
             pulls images; names containing \"does-not-exist\" or ending in \":missing\" fail)"
        )
    };
    for (_, image, _) in bad {
        inner.event(
            pod,
            "Normal",
            "Pulling",
            &format!("Pulling image \"{image}\""),
        );
        inner.event(
            pod,
            "Warning",
            "Failed",
            &format!("Failed to pull image \"{image}\": {}", pull_msg(image)),
        );
        inner.event(pod, "Warning", "Failed", "Error: ErrImagePull");
    }
    set("ErrImagePull", &pull_msg);
    inner.publish(pod);
    if inner.wait(pod, Duration::from_millis(500)) {
        return done(pod);
    }
    for (_, image, _) in bad {
        inner.event(
            pod,
            "Normal",
            "BackOff",
            &format!("Back-off pulling image \"{image}\""),
        );
        inner.event(pod, "Warning", "Failed", "Error: ImagePullBackOff");
    }
    set("ImagePullBackOff", &|image| {
        format!("Back-off pulling image \"{image}\"")
    });
    inner.publish(pod);
    while !inner.wait(pod, Duration::from_secs(3600)) {}
    done(pod)
}

fn ctr_mut(rt: &mut Rt, init: bool, i: usize) -> &mut Ctr {
    if init {
        &mut rt.init[i]
    } else {
        &mut rt.main[i]
    }
}

/// Backoff before restart number `n` (0-based): immediate, then 0.5 s doubling up to 10 s.
fn backoff(n: u32) -> Duration {
    if n == 0 {
        Duration::ZERO
    } else {
        Duration::from_millis(500u64 << (n - 1).min(5)).min(Duration::from_secs(10))
    }
}

fn schedule_restart(inner: &Inner, pod: &Pod, init: bool, i: usize) {
    let mut rt = lock(&pod.rt);
    let name = pod.name.clone();
    let uid = pod.uid.clone();
    let ns = pod.ns.clone();
    let c = ctr_mut(&mut rt, init, i);
    let d = backoff(c.restarts);
    c.backoff_until = Some(Instant::now() + d);
    c.last = Some(c.state.clone());
    if !d.is_zero() {
        let msg = format!(
            "Back-off restarting failed container {} in pod {}_{}({})",
            c.name, name, ns, uid
        );
        c.state = CState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "back-off {}ms restarting failed container={} pod={}_{}({})",
                d.as_millis(),
                c.name,
                name,
                ns,
                uid
            ),
        };
        drop(rt);
        inner.event(pod, "Warning", "BackOff", &msg);
    } else {
        c.state = CState::Waiting {
            reason: "ContainerCreating".into(),
            message: String::new(),
        };
    }
}

fn start_failed(inner: &Arc<Inner>, pod: &Arc<Pod>, init: bool, i: usize, e: StartErr) {
    let mut rt = lock(&pod.rt);
    let c = ctr_mut(&mut rt, init, i);
    match e {
        StartErr::Config(msg) => {
            let first = !matches!(&c.state, CState::Waiting { reason, message } if reason == "CreateContainerConfigError" && *message == msg);
            c.state = CState::Waiting {
                reason: "CreateContainerConfigError".into(),
                message: msg.clone(),
            };
            c.backoff_until = Some(Instant::now() + Duration::from_millis(500));
            drop(rt);
            if first {
                inner.event(pod, "Warning", "Failed", &format!("Error: {msg}"));
            }
        }
        StartErr::Start(msg) => {
            let now = SystemTime::now();
            if c.restarts > 0 || c.instance > 0 {
                c.restarts += 1;
            }
            c.instance += 1;
            c.backoff_until = None;
            c.state = CState::Terminated {
                code: 128,
                signal: None,
                reason: "StartError".into(),
                message: msg.clone(),
                started: now,
                finished: now,
            };
            let is_init = c.init;
            drop(rt);
            inner.event(pod, "Warning", "Failed", &format!("Error: {msg}"));
            if is_init && str_at(&inner.obj(pod), &["spec", "restartPolicy"]) == Some("Never") {
                lock(&pod.rt).phase = "Failed";
            }
        }
    }
}

/// If the container's process exited, record it; returns the exit code.
fn reap(pod: &Arc<Pod>, init: bool, i: usize) -> Option<i32> {
    let mut rt = lock(&pod.rt);
    let c = ctr_mut(&mut rt, init, i);
    let r = c.run.as_mut()?;
    let status = match r.child.try_wait() {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(_) => return None,
    };
    let r = c.run.take().expect("checked above");
    drop(rt);
    // Like the end of a container's PID namespace: what it left behind in its group dies too.
    proc::kill_group(r.pid, libc::SIGKILL);
    // Let the output pumps drain what the process wrote.
    let deadline = Instant::now() + Duration::from_millis(500);
    while r.pumps.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    r.hub.close();
    if let Some(s) = &r.stdin {
        lock(s).take();
    }
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = match (status.code(), status.signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        _ => (255, None),
    };
    let mut rt = lock(&pod.rt);
    let c = ctr_mut(&mut rt, init, i);
    let started = match c.state {
        CState::Running { started } => started,
        _ => SystemTime::now(),
    };
    c.state = CState::Terminated {
        code,
        signal,
        reason: if code == 0 { "Completed" } else { "Error" }.into(),
        message: String::new(),
        started,
        finished: SystemTime::now(),
    };
    drop(rt);
    Some(code)
}

fn start_container(
    inner: &Arc<Inner>,
    pod: &Arc<Pod>,
    obj: &Json,
    init: bool,
    i: usize,
) -> Result<(), StartErr> {
    let (spec, name, image, restarts, instance, sandbox_pid, cur_log) = {
        let rt = lock(&pod.rt);
        let c = if init { &rt.init[i] } else { &rt.main[i] };
        let sb = rt
            .sandbox
            .as_ref()
            .map(|s| s.id())
            .ok_or_else(|| StartErr::Start("pod sandbox is gone".into()))?;
        (
            c.spec.clone(),
            c.name.clone(),
            c.image.clone(),
            c.restarts,
            c.instance,
            sb,
            c.log.clone(),
        )
    };
    let env = env::container_env(&*inner.state, obj, &spec, POD_IP, &inner.cfg.node_name)
        .map_err(StartErr::Config)?;
    let argv = env::container_argv(&spec, &env);
    let id = env::identity(obj, &spec);
    let non_root = spec
        .pointer("/securityContext/runAsNonRoot")
        .or_else(|| obj.pointer("/spec/securityContext/runAsNonRoot"))
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if non_root && id.uid == 0 {
        return Err(StartErr::Config(format!(
            "container has runAsNonRoot and image will run as root (pod: \"{}_{}({})\", container: {name})",
            pod.name, pod.ns, pod.uid
        )));
    }
    let will_restart = instance > 0;
    let restart_no = if will_restart { restarts + 1 } else { 0 };
    let log_dir = pod.dir.join("logs").join(&name);
    std::fs::create_dir_all(&log_dir).map_err(|e| StartErr::Start(format!("log dir: {e}")))?;
    let log_path = log_dir.join(format!("{restart_no}.log"));
    let sink = File::create(&log_path).map_err(|e| StartErr::Start(format!("log file: {e}")))?;
    let sink = Arc::new(Mutex::new(sink));
    let tty = spec.get("tty").and_then(|t| t.as_bool()).unwrap_or(false);
    let stdin_open = spec.get("stdin").and_then(|t| t.as_bool()).unwrap_or(false);
    let hub = Arc::new(Hub::default());
    let mut pumps = Vec::new();
    let (child, stdin, pty) = if tty {
        let (master, slave) =
            proc::open_pty(80, 24).map_err(|e| StartErr::Start(format!("openpty: {e}")))?;
        let child = proc::spawn_in_pod(sandbox_pid, &argv, &env, &id, proc::Io::Pty(slave))
            .map_err(|e| StartErr::Start(spawn_msg(&argv, e)))?;
        let rd = File::from(
            master
                .try_clone()
                .map_err(|e| StartErr::Start(e.to_string()))?,
        );
        let wr = File::from(
            master
                .try_clone()
                .map_err(|e| StartErr::Start(e.to_string()))?,
        );
        let (s2, h2) = (sink.clone(), hub.clone());
        pumps.push(std::thread::spawn(move || {
            logs::pump(rd, "stdout", 1, s2, h2)
        }));
        let stdin: Option<SharedStdin> = if stdin_open {
            Some(Arc::new(Mutex::new(Some(
                Box::new(wr) as Box<dyn Write + Send>
            ))))
        } else {
            None
        };
        (child, stdin, Some(Arc::new(master)))
    } else {
        let mut child = proc::spawn_in_pod(
            sandbox_pid,
            &argv,
            &env,
            &id,
            proc::Io::Pipes { stdin: stdin_open },
        )
        .map_err(|e| StartErr::Start(spawn_msg(&argv, e)))?;
        if let Some(out) = child.stdout.take() {
            let (s2, h2) = (sink.clone(), hub.clone());
            pumps.push(std::thread::spawn(move || {
                logs::pump(out, "stdout", 1, s2, h2)
            }));
        }
        if let Some(err) = child.stderr.take() {
            let (s2, h2) = (sink.clone(), hub.clone());
            pumps.push(std::thread::spawn(move || {
                logs::pump(err, "stderr", 2, s2, h2)
            }));
        }
        let stdin: Option<SharedStdin> = child
            .stdin
            .take()
            .map(|s| Arc::new(Mutex::new(Some(Box::new(s) as Box<dyn Write + Send>))));
        (child, stdin, None)
    };
    let pid = child.id() as i32;
    {
        let mut rt = lock(&pod.rt);
        let c = ctr_mut(&mut rt, init, i);
        if will_restart {
            c.restarts += 1;
        }
        c.instance += 1;
        c.prev_log = cur_log;
        c.log = Some(log_path);
        c.backoff_until = None;
        c.container_id = hex_id(&[&pod.uid, &name, &c.instance.to_string()]);
        c.cfg = Some(Arc::new(CtrCfg { env, id }));
        c.state = CState::Running {
            started: SystemTime::now(),
        };
        c.run = Some(Running {
            child,
            pid,
            stdin,
            pty,
            hub,
            pumps,
        });
    }
    if !will_restart {
        inner.event(
            pod,
            "Normal",
            "Pulled",
            &format!("Container image \"{image}\" already present on machine"),
        );
    }
    inner.event(
        pod,
        "Normal",
        "Created",
        &format!("Created container: {name}"),
    );
    inner.event(
        pod,
        "Normal",
        "Started",
        &format!("Started container {name}"),
    );
    Ok(())
}

fn spawn_msg(argv: &[String], e: std::io::Error) -> String {
    format!(
        "failed to create containerd task: failed to start container process: exec: {:?}: {e}",
        argv.first().map(String::as_str).unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_sum_containers_and_take_the_largest_init() {
        let pod = json!({"spec": {
        "initContainers": [{"resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}],
        "containers": [
            {"resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "2Gi", "nvidia.com/gpu": "1"}}},
            {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
        ]}});
        let r = pod_requests(&pod);
        assert_eq!(r.cpu, 3000);
        assert_eq!(r.mem, (2 << 30) + (64 << 20));
        assert_eq!(r.ext.get("nvidia.com/gpu"), Some(&1));
    }

    #[test]
    fn qos_classes() {
        let none = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&none), "BestEffort");
        let burst = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&burst), "Burstable");
        let g = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(30), Duration::from_secs(10));
    }
}
