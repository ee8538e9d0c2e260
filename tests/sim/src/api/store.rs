//! The object store: every object as JSON keyed by (resource, namespace, name), one global
//! resourceVersion counter, a bounded history of watch events, and the `ClusterState` the kubelet
//! uses.
//!
//! May import: std, serde_json, contract, api::util.

use super::util::{now_rfc3339, random_u64, uuid};
use crate::contract::{ClusterState, Json};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// (resource, namespace, name); namespace is "" for cluster-scoped kinds.
pub type Key = (String, String, String);

pub fn key(resource: &str, ns: &str, name: &str) -> Key {
    (resource.to_string(), ns.to_string(), name.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvType {
    Added,
    Modified,
    Deleted,
}

impl EvType {
    pub fn as_str(self) -> &'static str {
        match self {
            EvType::Added => "ADDED",
            EvType::Modified => "MODIFIED",
            EvType::Deleted => "DELETED",
        }
    }
}

/// One change in the history window.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub ty: EvType,
    pub key: Key,
    pub object: Json,
    pub old: Option<Json>,
}

/// Mutable store state (behind the store's mutex).
pub struct Inner {
    pub rv: u64,
    pub objects: BTreeMap<Key, Json>,
    pub history: VecDeque<Change>,
    pub history_cap: usize,
    /// Highest resourceVersion evicted from the history (watches from below it get 410).
    pub compacted_rv: u64,
    /// Bumped when the API server restarts: open watches end.
    pub epoch: u64,
    /// Server-side apply ownership: object key → (field path → manager).
    pub managers: HashMap<Key, super::patch::Owners>,
    pub node_name: String,
}

impl Inner {
    pub fn get(&self, k: &Key) -> Option<&Json> {
        self.objects.get(k)
    }

    fn record(&mut self, ty: EvType, k: Key, object: Json, old: Option<Json>) {
        self.history.push_back(Change {
            rv: self.rv,
            ty,
            key: k,
            object,
            old,
        });
        while self.history.len() > self.history_cap {
            if let Some(c) = self.history.pop_front() {
                self.compacted_rv = c.rv;
            }
        }
    }

    /// Store `obj` under `k` with a new resourceVersion; records ADDED or MODIFIED.
    pub fn put(&mut self, k: Key, mut obj: Json) -> Json {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let old = self.objects.insert(k.clone(), obj.clone());
        let ty = if old.is_some() {
            EvType::Modified
        } else {
            EvType::Added
        };
        self.record(ty, k, obj.clone(), old);
        obj
    }

    /// Remove an object; records DELETED with a new resourceVersion.
    pub fn remove(&mut self, k: &Key) -> Option<Json> {
        let mut obj = self.objects.remove(k)?;
        self.managers.remove(k);
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(EvType::Deleted, k.clone(), obj.clone(), None);
        Some(obj)
    }

    /// Objects of a resource, optionally in one namespace, ordered by (namespace, name).
    pub fn list(&self, resource: &str, ns: Option<&str>) -> Vec<(Key, Json)> {
        self.objects
            .range(key(resource, "", "")..)
            .take_while(|(k, _)| k.0 == resource)
            .filter(|(k, _)| ns.map(|n| k.1 == n).unwrap_or(true))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Create a core/v1 Event about any object.
    pub fn record_event(
        &mut self,
        involved: &Json,
        kind: &str,
        type_: &str,
        reason: &str,
        message: &str,
        component: &str,
    ) -> Json {
        let ns = involved["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        let name = involved["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ev_name = format!("{name}.{:016x}", random_u64());
        let now = now_rfc3339();
        let ev = json!({
            "kind": "Event",
            "apiVersion": "v1",
            "metadata": {
                "name": ev_name,
                "namespace": ns,
                "uid": uuid(),
                "creationTimestamp": now,
            },
            "involvedObject": {
                "kind": kind,
                "namespace": ns,
                "name": name,
                "uid": involved["metadata"]["uid"],
                "apiVersion": "v1",
                "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": component, "host": self.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": null,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": self.node_name,
        });
        self.put(key("events", &ns, &ev_name), ev)
    }

    /// Remove a Terminating namespace once it holds no pods any more.
    pub fn maybe_finish_namespace(&mut self, ns: &str) {
        let nk = key("namespaces", "", ns);
        let terminating = self
            .objects
            .get(&nk)
            .map(|n| !n["metadata"]["deletionTimestamp"].is_null())
            .unwrap_or(false);
        if terminating && self.list("pods", Some(ns)).is_empty() {
            self.remove(&nk);
        }
    }
}

/// The store: state behind a mutex plus a condition variable watchers wait on.
pub struct Store {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Store {
    pub fn new(history_cap: usize, node_name: &str) -> Store {
        Store {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_cap: history_cap.max(1),
                compacted_rv: 0,
                epoch: 0,
                managers: HashMap::new(),
                node_name: node_name.to_string(),
            }),
            changed: Condvar::new(),
        }
    }

    /// Read-only access.
    pub fn read(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutate under the lock, then wake watchers.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let r = {
            let mut g = self.read();
            f(&mut g)
        };
        self.changed.notify_all();
        r
    }

    /// Wait until the store changes or `timeout` passes.
    pub fn wait<'a>(&self, g: MutexGuard<'a, Inner>, timeout: Duration) -> MutexGuard<'a, Inner> {
        match self.changed.wait_timeout(g, timeout) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    /// End every open watch (API server restart).
    pub fn bump_epoch(&self) {
        self.mutate(|i| i.epoch += 1);
    }
}

impl ClusterState for Store {
    fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Json> {
        self.read().get(&key(resource, namespace, name)).cloned()
    }

    fn set_pod_status(&self, namespace: &str, name: &str, status: Json) {
        self.mutate(|i| {
            let k = key("pods", namespace, name);
            if let Some(mut pod) = i.get(&k).cloned() {
                // The scheduler's binding: a pod reported as scheduled gets the node's name.
                let scheduled = status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "PodScheduled" && c["status"] == "True");
                let bind = scheduled
                    && pod["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .is_empty();
                if bind {
                    pod["spec"]["nodeName"] = json!(i.node_name);
                }
                if pod["status"] != status || bind {
                    pod["status"] = status;
                    i.put(k, pod);
                }
            }
        });
    }

    fn set_pvc_status(&self, namespace: &str, name: &str, status: Json) {
        self.mutate(|i| {
            let k = key("persistentvolumeclaims", namespace, name);
            if let Some(mut pvc) = i.get(&k).cloned() {
                if pvc["status"] != status {
                    pvc["status"] = status;
                    i.put(k, pvc);
                }
            }
        });
    }

    fn finish_pod_deletion(&self, namespace: &str, name: &str) {
        self.mutate(|i| {
            if i.remove(&key("pods", namespace, name)).is_some() {
                i.maybe_finish_namespace(namespace);
            }
        });
    }

    fn record_event(&self, namespace: &str, pod: &str, type_: &str, reason: &str, message: &str) {
        self.mutate(|i| {
            let involved = i
                .get(&key("pods", namespace, pod))
                .cloned()
                .unwrap_or_else(|| json!({"metadata": {"namespace": namespace, "name": pod}}));
            // Scheduling events come from the scheduler on a real cluster.
            let component = match reason {
                "Scheduled" | "FailedScheduling" | "Preempted" => "default-scheduler",
                _ => "kubelet",
            };
            i.record_event(&involved, "Pod", type_, reason, message, component);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_rv_global() {
        let s = Store::new(2, "node");
        for n in ["a", "b", "c"] {
            s.mutate(|i| i.put(key("configmaps", "d", n), json!({"metadata": {"name": n}})));
        }
        let g = s.read();
        assert_eq!(g.rv, 4);
        assert_eq!(g.history.len(), 2);
        assert_eq!(g.compacted_rv, 2);
        assert_eq!(g.list("configmaps", Some("d")).len(), 3);
        assert_eq!(g.list("configmaps", Some("x")).len(), 0);
    }

    #[test]
    fn cluster_state_pod_lifecycle() {
        let s = Store::new(100, "node");
        s.mutate(|i| {
            i.put(
                key("pods", "d", "p"),
                json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}}),
            )
        });
        s.set_pod_status("d", "p", json!({"phase": "Running"}));
        assert_eq!(
            s.get("pods", "d", "p").expect("pod")["status"]["phase"],
            "Running"
        );
        s.record_event("d", "p", "Normal", "Started", "Started container main");
        let evs = s.read().list("events", Some("d"));
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].1["involvedObject"]["uid"], "u");
        assert_eq!(evs[0].1["source"]["component"], "kubelet");
        s.record_event(
            "d",
            "p",
            "Normal",
            "Scheduled",
            "Successfully assigned d/p to node",
        );
        let evs = s.read().list("events", Some("d"));
        assert!(evs
            .iter()
            .any(|(_, e)| e["source"]["component"] == "default-scheduler"));
        s.finish_pod_deletion("d", "p");
        assert!(s.get("pods", "d", "p").is_none());
        assert_eq!(s.read().history.back().expect("ev").ty, EvType::Deleted);
    }
}
