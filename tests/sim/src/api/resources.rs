//! The resource table (what the simulated API server serves), discovery documents (/version,
//! /api, /api/v1, /apis, authorization.k8s.io) and server-side Table conversion for kubectl's
//! human-readable output.
//!
//! May import: std, serde_json, api::util.

use super::util::{human_age, now_secs, parse_rfc3339};
use serde_json::{json, Value as Json};

/// One served resource.
#[derive(Debug)]
pub struct ResDef {
    pub name: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The core/v1 resources we serve.
pub const CORE: &[ResDef] = &[
    ResDef {
        name: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
    },
    ResDef {
        name: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short: &["po"],
        verbs: ALL_VERBS,
    },
    ResDef {
        name: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        short: &["pvc"],
        verbs: ALL_VERBS,
    },
    ResDef {
        name: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
        verbs: ALL_VERBS,
    },
    ResDef {
        name: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short: &[],
        verbs: ALL_VERBS,
    },
    ResDef {
        name: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short: &["ev"],
        verbs: ALL_VERBS,
    },
];

/// Look a core resource up by its plural name.
pub fn core(name: &str) -> Option<&'static ResDef> {
    CORE.iter().find(|r| r.name == name)
}

pub const VERSION_MAJOR: &str = "1";
pub const VERSION_MINOR: &str = "37";

pub fn version() -> Json {
    json!({
        "major": VERSION_MAJOR,
        "minor": VERSION_MINOR,
        "emulationMajor": VERSION_MAJOR,
        "emulationMinor": VERSION_MINOR,
        "minCompatibilityMajor": VERSION_MAJOR,
        "minCompatibilityMinor": "36",
        "gitVersion": "v1.37.0-kodama-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn api_versions(server_addr: &str) -> Json {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}]
    })
}

pub fn core_resource_list() -> Json {
    let mut resources = Vec::new();
    for r in CORE {
        let mut e = json!({
            "name": r.name,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short.is_empty() {
            e["shortNames"] = json!(r.short);
        }
        if r.name == "pods" {
            e["categories"] = json!(["all"]);
        }
        resources.push(e);
        if r.name == "pods" {
            for (sub, kind, verbs) in [
                ("pods/attach", "PodAttachOptions", json!(["create", "get"])),
                ("pods/exec", "PodExecOptions", json!(["create", "get"])),
                ("pods/log", "Pod", json!(["get"])),
                (
                    "pods/portforward",
                    "PodPortForwardOptions",
                    json!(["create", "get"]),
                ),
                ("pods/status", "Pod", json!(["get", "patch", "update"])),
            ] {
                resources.push(json!({"name": sub, "singularName": "", "namespaced": true, "kind": kind, "verbs": verbs}));
            }
        }
        if r.name == "namespaces" {
            resources.push(json!({"name": "namespaces/status", "singularName": "", "namespaced": false, "kind": "Namespace", "verbs": ["get", "patch", "update"]}));
        }
        if r.name == "persistentvolumeclaims" {
            resources.push(json!({"name": "persistentvolumeclaims/status", "singularName": "", "namespaced": true, "kind": "PersistentVolumeClaim", "verbs": ["get", "patch", "update"]}));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources})
}

pub const AUTHZ_GROUP: &str = "authorization.k8s.io";

fn authz_group() -> Json {
    let gv = json!({"groupVersion": "authorization.k8s.io/v1", "version": "v1"});
    json!({"name": AUTHZ_GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

pub const AUTHN_GROUP: &str = "authentication.k8s.io";

fn authn_group() -> Json {
    let gv = json!({"groupVersion": "authentication.k8s.io/v1", "version": "v1"});
    json!({"name": AUTHN_GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn authn_api_group() -> Json {
    let mut g = authn_group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

pub fn authn_resource_list() -> Json {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "authentication.k8s.io/v1",
        "resources": [
            {"name": "selfsubjectreviews", "singularName": "selfsubjectreview", "namespaced": false, "kind": "SelfSubjectReview", "verbs": ["create"]}
        ]
    })
}

pub fn api_group_list() -> Json {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [authn_group(), authz_group()]})
}

pub fn authz_api_group() -> Json {
    let mut g = authz_group();
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    g
}

pub fn authz_resource_list() -> Json {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "authorization.k8s.io/v1",
        "resources": [
            {"name": "selfsubjectaccessreviews", "singularName": "selfsubjectaccessreview", "namespaced": false, "kind": "SelfSubjectAccessReview", "verbs": ["create"]},
            {"name": "selfsubjectrulesreviews", "singularName": "selfsubjectrulesreview", "namespaced": false, "kind": "SelfSubjectRulesReview", "verbs": ["create"]}
        ]
    })
}

/// `/openapi/v3`: the discovery of OpenAPI v3 documents per group-version. kubectl reads it to
/// learn that the server supports `fieldValidation` (then validates server-side and never needs
/// the v2 schema). We publish paths and parameters only, no schemas.
pub fn openapi_v3_root() -> Json {
    json!({"paths": {
        "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=KODAMASIMV1"},
        "apis/authorization.k8s.io/v1": {"serverRelativeURL": "/openapi/v3/apis/authorization.k8s.io/v1?hash=KODAMASIMAUTHZ"}
    }})
}

/// A minimal OpenAPI v3 document for a group-version: every operation of our resources with its
/// `x-kubernetes-group-version-kind` and query parameters (notably `fieldValidation`).
pub fn openapi_v3_doc(group_version: &str) -> Option<Json> {
    let param = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let write_params = json!([
        param("dryRun"),
        param("fieldManager"),
        param("fieldValidation")
    ]);
    let resp = json!({"200": {"description": "OK"}});
    let mut paths = serde_json::Map::new();
    match group_version {
        "api/v1" => {
            for r in CORE {
                let gvk = json!({"group": "", "version": "v1", "kind": r.kind});
                let (coll, item) = if r.namespaced {
                    (
                        format!("/api/v1/namespaces/{{namespace}}/{}", r.name),
                        format!("/api/v1/namespaces/{{namespace}}/{}/{{name}}", r.name),
                    )
                } else {
                    (
                        format!("/api/v1/{}", r.name),
                        format!("/api/v1/{}/{{name}}", r.name),
                    )
                };
                let op = |action: &str, params: Json| json!({"operationId": format!("{action}CoreV1{}", r.kind), "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": resp});
                paths.insert(
                    coll,
                    json!({"get": op("list", json!([])), "post": op("post", write_params.clone())}),
                );
                let mut patch_params = write_params.clone();
                patch_params
                    .as_array_mut()
                    .expect("array")
                    .push(param("force"));
                paths.insert(
                    item,
                    json!({"get": op("get", json!([])), "put": op("put", write_params.clone()), "patch": op("patch", patch_params), "delete": op("delete", json!([param("dryRun")]))}),
                );
            }
        }
        "apis/authorization.k8s.io/v1" => {
            let gvk =
                json!({"group": AUTHZ_GROUP, "version": "v1", "kind": "SelfSubjectAccessReview"});
            paths.insert(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews".into(),
                json!({"post": {"operationId": "createAuthorizationV1SelfSubjectAccessReview", "x-kubernetes-action": "post", "x-kubernetes-group-version-kind": gvk, "parameters": write_params, "responses": resp}}),
            );
        }
        _ => return None,
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0-kodama-sim"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}

/// Does the request's Accept header ask for a server-side Table?
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.map(|a| a.contains("as=Table")).unwrap_or(false)
}

fn col(name: &str, ty: &str, format: &str, priority: u8, desc: &str) -> Json {
    json!({"name": name, "type": ty, "format": format, "description": desc, "priority": priority})
}

fn age(obj: &Json) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(parse_rfc3339)
        .map(|t| human_age(now_secs() - t))
        .unwrap_or_else(|| "<unknown>".into())
}

fn columns(resource: &str) -> Vec<Json> {
    let name = col(
        "Name",
        "string",
        "name",
        0,
        "Name must be unique within a namespace.",
    );
    let age_c = col("Age", "string", "", 0, "CreationTimestamp is a timestamp representing the server time when this object was created.");
    match resource {
        "pods" => vec![
            name,
            col("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
            col("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age_c,
            col("IP", "string", "", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            col("Node", "string", "", 1, "NodeName is a request to schedule this pod onto a specific node."),
        ],
        "namespaces" => vec![name, col("Status", "string", "", 0, "The status of the namespace"), age_c],
        "configmaps" => vec![name, col("Data", "integer", "", 0, "Data contains the configuration data."), age_c],
        "secrets" => vec![
            name,
            col("Type", "string", "", 0, "The type of the secret"),
            col("Data", "integer", "", 0, "The total number of data in the secret"),
            age_c,
        ],
        "persistentvolumeclaims" => vec![
            name,
            col("Status", "string", "", 0, "Phase represents the current phase of PersistentVolumeClaim."),
            col("Volume", "string", "", 0, "VolumeName is the binding reference to the PersistentVolume backing this claim."),
            col("Capacity", "string", "", 0, "Capacity represents the actual resources of the underlying volume."),
            col("Access Modes", "string", "", 0, "AccessModes contains the actual access modes the volume backing the PVC has."),
            col("StorageClass", "string", "", 0, "StorageClassName is the name of the StorageClass required by the claim."),
            col("VolumeAttributesClass", "string", "", 0, "VolumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
            age_c,
        ],
        "events" => vec![
            col("Last Seen", "string", "", 0, "The last time the event was seen"),
            col("Type", "string", "", 0, "Type of this event"),
            col("Reason", "string", "", 0, "Reason is why the action was taken"),
            col("Object", "string", "", 0, "The object this Event is about"),
            col("Message", "string", "", 0, "A human-readable description of the status of this operation."),
        ],
        _ => vec![name, age_c],
    }
}

/// kubectl's pod STATUS column.
pub fn pod_status_text(p: &Json) -> String {
    if !p["metadata"]["deletionTimestamp"].is_null() {
        return "Terminating".into();
    }
    let mut reason = p["status"]["reason"]
        .as_str()
        .or(p["status"]["phase"].as_str())
        .unwrap_or("Pending")
        .to_string();
    for cs in p["status"]["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(w) = cs["state"]["waiting"]["reason"].as_str() {
            if w != "PodInitializing" {
                return format!("Init:{w}");
            }
        }
    }
    for cs in p["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(w) = cs["state"]["waiting"]["reason"].as_str() {
            reason = w.to_string();
        } else if let Some(t) = cs["state"]["terminated"]["reason"].as_str() {
            reason = t.to_string();
        }
    }
    reason
}

fn cells(resource: &str, o: &Json) -> Vec<Json> {
    let name = json!(o["metadata"]["name"].as_str().unwrap_or_default());
    match resource {
        "pods" => {
            let statuses = o["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = o["spec"]["containers"]
                .as_array()
                .map(|a| a.len())
                .unwrap_or(0);
            let ready = statuses
                .iter()
                .filter(|c| c["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status_text(o)),
                json!(restarts.to_string()),
                json!(age(o)),
                json!(o["status"]["podIP"].as_str().unwrap_or("<none>")),
                json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
            ]
        }
        "namespaces" => vec![
            name,
            json!(o["status"]["phase"].as_str().unwrap_or("Active")),
            json!(age(o)),
        ],
        "configmaps" => {
            let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
            vec![name, json!(n), json!(age(o))]
        }
        "secrets" => vec![
            name,
            json!(o["type"].as_str().unwrap_or("Opaque")),
            json!(o["data"].as_object().map(|m| m.len()).unwrap_or(0)),
            json!(age(o)),
        ],
        "persistentvolumeclaims" => {
            let modes: Vec<&str> = o["status"]["accessModes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str())
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    x => x,
                })
                .collect();
            vec![
                name,
                json!(o["status"]["phase"].as_str().unwrap_or("Pending")),
                json!(o["spec"]["volumeName"].as_str().unwrap_or("")),
                json!(o["status"]["capacity"]["storage"].as_str().unwrap_or("")),
                json!(modes.join(",")),
                json!(o["spec"]["storageClassName"].as_str().unwrap_or("<unset>")),
                json!("<unset>"),
                json!(age(o)),
            ]
        }
        "events" => {
            let last = o["lastTimestamp"]
                .as_str()
                .and_then(parse_rfc3339)
                .map(|t| human_age(now_secs() - t))
                .unwrap_or_else(|| "<unknown>".into());
            let inv = &o["involvedObject"];
            vec![
                json!(last),
                json!(o["type"].as_str().unwrap_or_default()),
                json!(o["reason"].as_str().unwrap_or_default()),
                json!(format!(
                    "{}/{}",
                    inv["kind"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                    inv["name"].as_str().unwrap_or_default()
                )),
                json!(o["message"].as_str().unwrap_or_default()),
            ]
        }
        _ => vec![name, json!(age(o))],
    }
}

/// Convert objects to a `meta.k8s.io/v1` Table. `include` is the `includeObject` parameter.
pub fn to_table(resource: &str, objects: &[Json], include: Option<&str>, list_meta: Json) -> Json {
    let rows: Vec<Json> = objects
        .iter()
        .map(|o| {
            let object = match include.unwrap_or("Metadata") {
                "None" => Json::Null,
                "Object" => o.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}),
            };
            let mut row = json!({"cells": cells(resource, o)});
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(resource),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_has_pod_subresources() {
        let l = core_resource_list();
        let names: Vec<&str> = l["resources"]
            .as_array()
            .expect("r")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for n in [
            "pods",
            "pods/exec",
            "pods/log",
            "pods/attach",
            "pods/portforward",
            "pods/status",
            "namespaces",
            "secrets",
        ] {
            assert!(names.contains(&n), "{n}");
        }
    }

    #[test]
    fn pod_table_row() {
        let p = json!({
            "metadata": {"name": "web", "creationTimestamp": crate::api::util::now_rfc3339()},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n"},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 1}, {"ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        });
        let t = to_table("pods", &[p], None, json!({}));
        let c = &t["rows"][0]["cells"];
        assert_eq!(c[0], "web");
        assert_eq!(c[1], "1/2");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "1");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
