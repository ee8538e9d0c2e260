//! Integration tests of the simulated API server over real HTTPS (fake kubelet).

use kodama_sim::{SimClient, SimCluster, SimOptions, ADMIN_USER, CERT_USER, RESTRICTED_USER};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn cluster() -> SimCluster {
    SimCluster::start(SimOptions {
        start_delay: Duration::from_millis(50),
        ..SimOptions::fake()
    })
    .expect("start sim")
}

fn admin(c: &SimCluster) -> SimClient {
    SimClient::new(c, ADMIN_USER).expect("client")
}

/// Poll `f` until it returns Some or the deadline passes.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}})
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

#[test]
fn authentication_and_authorization() {
    let c = cluster();
    let anon = SimClient::with_token(&c, None).expect("anon");
    let r = anon.get("/api/v1/namespaces").expect("req");
    assert_eq!(r.code, 401);
    assert_eq!(r.json()["reason"], "Unauthorized");
    assert_eq!(r.json()["kind"], "Status");
    let bad = SimClient::with_token(&c, Some("nope")).expect("bad");
    assert_eq!(bad.get("/version").expect("req").code, 401);

    assert_eq!(admin(&c).get("/version").expect("v").json()["minor"], "37");
    let cert = SimClient::new(&c, CERT_USER).expect("cert");
    assert_eq!(cert.get("/api/v1/namespaces").expect("ns").code, 200);

    let r = SimClient::new(&c, RESTRICTED_USER).expect("r");
    assert_eq!(
        r.get("/api/v1/namespaces/restricted/pods")
            .expect("ok")
            .code,
        200
    );
    let f = r.get("/api/v1/namespaces/default/pods").expect("forbidden");
    assert_eq!(f.code, 403);
    assert_eq!(
        f.json()["message"],
        r#"pods is forbidden: User "sim-restricted" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    assert_eq!(f.json()["reason"], "Forbidden");
    assert_eq!(f.json()["details"]["kind"], "pods");
    let f = r.get("/api/v1/pods").expect("forbidden");
    assert_eq!(
        f.json()["message"],
        r#"pods is forbidden: User "sim-restricted" cannot list resource "pods" in API group "" at the cluster scope"#
    );
    let f = r
        .get("/api/v1/namespaces/default/pods/x/exec?command=sh")
        .expect("exec");
    assert_eq!(f.code, 403);
    assert_eq!(
        f.json()["message"],
        r#"pods "x" is forbidden: User "sim-restricted" cannot get resource "pods/exec" in API group "" in the namespace "default""#
    );
    // Discovery is open to every authenticated user.
    assert_eq!(r.get("/api/v1").expect("disc").code, 200);

    let ssar = |cl: &SimClient, ns: &str, verb: &str, sub: &str| {
        let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": ns, "verb": verb, "resource": "pods", "subresource": sub}}});
        let resp = cl
            .post(
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                &body,
            )
            .expect("ssar");
        assert_eq!(resp.code, 201);
        resp.json()["status"]["allowed"].as_bool().expect("allowed")
    };
    assert!(ssar(&r, "restricted", "create", "exec"));
    assert!(!ssar(&r, "default", "create", "exec"));
    assert!(ssar(&admin(&c), "default", "get", "exec"));
}

#[test]
fn discovery_documents() {
    let c = cluster();
    let a = admin(&c);
    assert_eq!(
        a.get("/api").expect("api").json()["versions"],
        json!(["v1"])
    );
    let v1 = a.get("/api/v1").expect("v1").json();
    let pods = v1["resources"]
        .as_array()
        .expect("r")
        .iter()
        .find(|r| r["name"] == "pods")
        .expect("pods")
        .clone();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert!(pods["verbs"]
        .as_array()
        .expect("verbs")
        .contains(&json!("watch")));
    for sub in [
        "pods/exec",
        "pods/log",
        "pods/attach",
        "pods/portforward",
        "pods/status",
    ] {
        assert!(
            v1["resources"]
                .as_array()
                .expect("r")
                .iter()
                .any(|r| r["name"] == sub),
            "{sub}"
        );
    }
    let groups = a.get("/apis").expect("apis").json();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, vec!["authentication.k8s.io", "authorization.k8s.io"]);
    assert_eq!(
        a.get("/apis/authorization.k8s.io/v1").expect("g").json()["resources"][0]["name"],
        "selfsubjectaccessreviews"
    );
    assert_eq!(a.get("/openapi/v2").expect("openapi").code, 404);
    assert_eq!(a.get("/api/v1/widgets").expect("unknown").code, 404);
}

#[test]
fn namespaces_and_create_get_conflicts() {
    let c = cluster();
    let a = admin(&c);
    let names: Vec<String> = a.get("/api/v1/namespaces").expect("ns").json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|n| n["metadata"]["name"].as_str().expect("name").to_string())
        .collect();
    assert!(names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()));

    let r = a
        .post("/api/v1/namespaces/nope/pods", &pod("p"))
        .expect("missing ns");
    assert_eq!(r.code, 404);
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");

    let r = a
        .post(
            "/api/v1/namespaces/default/configmaps",
            &cm("one", json!({})),
        )
        .expect("create");
    assert_eq!(r.code, 201);
    let obj = r.json();
    for f in ["uid", "resourceVersion", "creationTimestamp"] {
        assert!(obj["metadata"][f].is_string(), "{f}");
    }
    let r = a
        .post(
            "/api/v1/namespaces/default/configmaps",
            &cm("one", json!({})),
        )
        .expect("dup");
    assert_eq!(r.code, 409);
    assert_eq!(r.json()["reason"], "AlreadyExists");
    assert_eq!(r.json()["message"], "configmaps \"one\" already exists");

    let r = a
        .get("/api/v1/namespaces/default/configmaps/zzz")
        .expect("404");
    assert_eq!(r.code, 404);
    assert_eq!(r.json()["message"], "configmaps \"zzz\" not found");
    assert_eq!(
        r.json()["details"],
        json!({"name": "zzz", "kind": "configmaps"})
    );

    // PUT with a stale resourceVersion conflicts; with the current one succeeds.
    let mut stale = obj.clone();
    stale["data"]["k"] = json!("new");
    assert_eq!(
        a.put("/api/v1/namespaces/default/configmaps/one", &stale)
            .expect("put")
            .code,
        200
    );
    let r = a
        .put("/api/v1/namespaces/default/configmaps/one", &stale)
        .expect("stale");
    assert_eq!(r.code, 409);
    assert_eq!(r.json()["reason"], "Conflict");
    assert!(r.json()["message"].as_str().expect("m").starts_with(
        "Operation cannot be fulfilled on configmaps \"one\": the object has been modified"
    ));

    // generateName
    let r = a
        .post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"generateName": "gen-"}, "data": {}}),
        )
        .expect("gen");
    assert_eq!(r.code, 201);
    let n = r.json()["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    assert!(n.starts_with("gen-") && n.len() == 9, "{n}");

    // Delete returns a Status for configmaps; then 404.
    let r = a
        .delete("/api/v1/namespaces/default/configmaps/one")
        .expect("del");
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["status"], "Success");
    assert_eq!(
        a.delete("/api/v1/namespaces/default/configmaps/one")
            .expect("again")
            .code,
        404
    );
}

#[test]
fn secrets_string_data_and_size_limit() {
    let c = cluster();
    let a = admin(&c);
    let r = a
        .post("/api/v1/namespaces/default/secrets", &json!({"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "hello"}}))
        .expect("create");
    assert_eq!(r.code, 201);
    let s = a
        .get("/api/v1/namespaces/default/secrets/s")
        .expect("get")
        .json();
    assert_eq!(s["data"], json!({"a": "eA==", "b": "aGVsbG8="}));
    assert!(s.get("stringData").is_none());
    assert_eq!(s["type"], "Opaque");
    let big = "a".repeat(1024 * 1024 + 1);
    let r = a
        .post(
            "/api/v1/namespaces/default/secrets",
            &json!({"metadata": {"name": "big"}, "stringData": {"k": big}}),
        )
        .expect("big");
    assert_eq!(r.code, 422);
    assert_eq!(
        r.json()["message"],
        "Secret \"big\" is invalid: data: Too long: must have at most 1048576 bytes"
    );
    let r = a
        .post(
            "/api/v1/namespaces/default/secrets",
            &json!({"metadata": {"name": "b64"}, "data": {"k": "!!"}}),
        )
        .expect("bad b64");
    assert_eq!(r.code, 400);
}

#[test]
fn pod_validation_is_422_with_causes() {
    let c = cluster();
    let a = admin(&c);
    let bad = json!({"metadata": {"name": "Bad"}, "spec": {"containers": [{"name": "x_y", "image": "i", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]}});
    let r = a
        .post("/api/v1/namespaces/default/pods", &bad)
        .expect("invalid");
    assert_eq!(r.code, 422);
    let st = r.json();
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(st["details"]["kind"], "Pod");
    let msg = st["message"].as_str().expect("m");
    assert!(msg.starts_with("Pod \"Bad\" is invalid: [metadata.name: Invalid value: \"Bad\": a lowercase RFC 1123 subdomain"), "{msg}");
    let fields: Vec<&str> = st["details"]["causes"]
        .as_array()
        .expect("c")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        vec![
            "metadata.name",
            "spec.containers[0].name",
            "spec.containers[0].volumeMounts[0].name"
        ]
    );
    let q = json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "lots"}}}]}});
    assert_eq!(
        a.post("/api/v1/namespaces/default/pods", &q)
            .expect("q")
            .code,
        400
    );
    // Pod spec is immutable apart from images.
    assert_eq!(
        a.post("/api/v1/namespaces/default/pods", &pod("im"))
            .expect("create")
            .code,
        201
    );
    let r = a
        .patch(
            "/api/v1/namespaces/default/pods/im",
            "application/merge-patch+json",
            br#"{"spec":{"restartPolicy":"Never"}}"#,
        )
        .expect("patch");
    assert_eq!(r.code, 422);
    let r = a
        .patch(
            "/api/v1/namespaces/default/pods/im",
            "application/strategic-merge-patch+json",
            br#"{"spec":{"containers":[{"name":"main","image":"busybox:1.37"}]}}"#,
        )
        .expect("image patch");
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(r.json()["metadata"]["generation"], 2);
}

#[test]
fn lists_selectors_and_paging() {
    let c = SimCluster::start(SimOptions {
        namespaces: vec!["other".into()],
        ..SimOptions::fake()
    })
    .expect("start");
    let a = admin(&c);
    for (ns, name, tier) in [
        ("default", "a", "fe"),
        ("default", "b", "be"),
        ("default", "c", "fe"),
        ("other", "d", "fe"),
    ] {
        let r = a
            .post(
                &format!("/api/v1/namespaces/{ns}/configmaps"),
                &cm(name, json!({"tier": tier})),
            )
            .expect("c");
        assert_eq!(r.code, 201);
    }
    let names = |path: &str| -> Vec<String> {
        let v = a.get(path).expect("list").json();
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().expect("n").to_string())
            .collect()
    };
    assert_eq!(
        names("/api/v1/configmaps?labelSelector=tier%3Dfe"),
        vec!["a", "c", "d"]
    );
    assert_eq!(
        names("/api/v1/namespaces/default/configmaps?labelSelector=tier%20notin%20(fe)"),
        vec!["b"]
    );
    assert_eq!(
        names("/api/v1/namespaces/default/configmaps?labelSelector=tier!%3Dbe,tier"),
        vec!["a", "c"]
    );
    assert_eq!(
        names("/api/v1/configmaps?fieldSelector=metadata.namespace%3Dother"),
        vec!["d"]
    );
    assert_eq!(
        names("/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Db"),
        vec!["b"]
    );
    let r = a
        .get("/api/v1/configmaps?fieldSelector=data.k%3Dv")
        .expect("bad field");
    assert_eq!(r.code, 400);
    assert_eq!(r.json()["message"], "field label not supported: data.k");

    let p1 = a.get("/api/v1/configmaps?limit=2").expect("p1").json();
    assert_eq!(p1["kind"], "ConfigMapList");
    assert_eq!(p1["items"].as_array().expect("i").len(), 2);
    assert_eq!(p1["metadata"]["remainingItemCount"], 2);
    let tok = p1["metadata"]["continue"].as_str().expect("continue");
    let p2 = a
        .get(&format!("/api/v1/configmaps?limit=2&continue={tok}"))
        .expect("p2")
        .json();
    let got: Vec<&str> = p2["items"]
        .as_array()
        .expect("i")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(got, vec!["c", "d"]);
    assert!(p2["metadata"].get("continue").is_none());
    assert!(p1["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse::<u64>()
        .is_ok());

    let t = SimClient::new(&c, ADMIN_USER)
        .expect("c")
        .connect()
        .expect("conn");
    let mut t = t;
    t.send(
        "GET",
        "/api/v1/namespaces",
        None,
        &[(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )],
        b"",
    )
    .expect("send");
    let table = t.read_response().expect("table").json();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["columnDefinitions"][1]["name"], "Status");
    assert!(table["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .any(|r| r["cells"][0] == "default" && r["cells"][1] == "Active"));
}

#[test]
fn watch_events_resume_and_expiry() {
    let c = SimCluster::start(SimOptions {
        watch_history: 5,
        bookmark_interval: Duration::from_millis(100),
        ..SimOptions::fake()
    })
    .expect("start");
    let a = admin(&c);
    a.post(
        "/api/v1/namespaces/default/configmaps",
        &cm("w1", json!({"x": "1"})),
    )
    .expect("c");
    let mut w = a.watch("/api/v1/namespaces/default/configmaps?watch=1&labelSelector=x%3D1&allowWatchBookmarks=true").expect("watch");
    assert_eq!(w.code, 200);
    assert!(w
        .headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked"));
    let e = w
        .next_event(Duration::from_secs(5))
        .expect("ev")
        .expect("some");
    assert_eq!(e["type"], "ADDED");
    assert_eq!(e["object"]["metadata"]["name"], "w1");
    a.patch(
        "/api/v1/namespaces/default/configmaps/w1",
        "application/merge-patch+json",
        br#"{"data":{"k":"2"}}"#,
    )
    .expect("p");
    let e = w
        .until(Duration::from_secs(5), |e| e["type"] != "BOOKMARK")
        .expect("mod");
    assert_eq!(e["type"], "MODIFIED");
    let rv_after_modify = e["object"]["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    // Stops matching the selector → DELETED; then a bookmark arrives while idle.
    a.patch(
        "/api/v1/namespaces/default/configmaps/w1",
        "application/merge-patch+json",
        br#"{"metadata":{"labels":{"x":"2"}}}"#,
    )
    .expect("p");
    let e = w
        .until(Duration::from_secs(5), |e| e["type"] != "BOOKMARK")
        .expect("del");
    assert_eq!(e["type"], "DELETED");
    let b = w
        .until(Duration::from_secs(5), |e| e["type"] == "BOOKMARK")
        .expect("bookmark");
    assert_eq!(b["object"]["kind"], "ConfigMap");
    assert!(b["object"]["metadata"]["resourceVersion"].is_string());

    // Resume from a resourceVersion: only later changes, no synthetic ADDED.
    let mut w2 = a
        .watch(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv_after_modify}"
        ))
        .expect("w2");
    let e = w2
        .next_event(Duration::from_secs(5))
        .expect("ev")
        .expect("some");
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(e["object"]["metadata"]["labels"]["x"], "2");

    // Push the history window past the old version: a too-old RV gets an in-band 410.
    for i in 0..8 {
        a.post(
            "/api/v1/namespaces/default/configmaps",
            &cm(&format!("f{i}"), json!({})),
        )
        .expect("fill");
    }
    let mut w3 = a
        .watch("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=2")
        .expect("w3");
    assert_eq!(w3.code, 200);
    let e = w3
        .next_event(Duration::from_secs(5))
        .expect("ev")
        .expect("some");
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(w3
        .next_event(Duration::from_secs(5))
        .expect("end")
        .is_none());
    // A stale exact list is an HTTP 410.
    assert_eq!(
        a.get("/api/v1/configmaps?resourceVersion=2&resourceVersionMatch=Exact")
            .expect("l")
            .code,
        410
    );

    // timeoutSeconds ends the stream cleanly.
    let start = Instant::now();
    let mut w4 = a
        .watch("/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&resourceVersion=0")
        .expect("w4");
    while w4.next_event(Duration::from_secs(5)).expect("ev").is_some() {}
    assert!(
        start.elapsed() >= Duration::from_millis(900) && start.elapsed() < Duration::from_secs(5)
    );

    // sendInitialEvents ends the initial state with an annotated bookmark.
    let mut w5 = a
        .watch("/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")
        .expect("w5");
    let b = w5
        .until(Duration::from_secs(5), |e| e["type"] == "BOOKMARK")
        .expect("initial end");
    assert_eq!(
        b["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
}

#[test]
fn pods_run_and_delete_gracefully_with_the_fake_kubelet() {
    let c = cluster();
    let a = admin(&c);
    let mut w = a
        .watch("/api/v1/namespaces/default/pods?watch=1&fieldSelector=metadata.name%3Dweb")
        .expect("watch");
    assert_eq!(
        a.post("/api/v1/namespaces/default/pods", &pod("web"))
            .expect("create")
            .code,
        201
    );
    let ready = w
        .until(Duration::from_secs(10), |e| {
            e["object"]["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .expect("ready");
    assert_eq!(ready["object"]["status"]["phase"], "Running");
    assert_eq!(ready["object"]["spec"]["nodeName"], "sim-node");
    let evs = a.get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.kind%3DPod,involvedObject.name%3Dweb").expect("ev").json();
    let reasons: Vec<&str> = evs["items"]
        .as_array()
        .expect("i")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"Scheduled") && reasons.contains(&"Started"),
        "{reasons:?}"
    );

    // Logs.
    let r = a
        .get("/api/v1/namespaces/default/pods/web/log")
        .expect("log");
    assert_eq!(r.code, 200);
    assert_eq!(
        r.text(),
        "fake log line 1 from main\nfake log line 2 from main\nfake log line 3 from main\n"
    );
    assert_eq!(
        a.get("/api/v1/namespaces/default/pods/web/log?container=nope")
            .expect("log")
            .code,
        400
    );

    // Graceful delete returns the pod with deletionTimestamp, then DELETED.
    let r = a
        .request(
            "DELETE",
            "/api/v1/namespaces/default/pods/web?gracePeriodSeconds=5",
            None,
            b"",
        )
        .expect("del");
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["kind"], "Pod");
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(r.json()["metadata"]["deletionGracePeriodSeconds"], 5);
    w.until(Duration::from_secs(10), |e| e["type"] == "DELETED")
        .expect("deleted");
    assert_eq!(
        a.get("/api/v1/namespaces/default/pods/web")
            .expect("gone")
            .code,
        404
    );

    // Requests above the node's capacity leave the pod Unschedulable.
    let mut big = pod("big");
    big["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "64"}});
    assert_eq!(
        a.post("/api/v1/namespaces/default/pods", &big)
            .expect("big")
            .code,
        201
    );
    eventually("unschedulable", || {
        let p = c.get("pods", "default", "big")?;
        let cond = p["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled")?
            .clone();
        (cond["reason"] == "Unschedulable").then_some(())
    });
}

#[test]
fn storage_provisioner_binds_or_leaves_pending() {
    let pvc = json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let c = cluster();
    let a = admin(&c);
    assert_eq!(
        a.post("/api/v1/namespaces/default/persistentvolumeclaims", &pvc)
            .expect("pvc")
            .code,
        201
    );
    let bound = eventually("bound", || {
        c.get("persistentvolumeclaims", "default", "data")
            .filter(|p| p["status"]["phase"] == "Bound")
    });
    assert!(bound["spec"]["volumeName"]
        .as_str()
        .expect("vol")
        .starts_with("pvc-"));
    assert_eq!(bound["status"]["capacity"]["storage"], "1Gi");
    assert_eq!(bound["spec"]["storageClassName"], "standard");

    let c2 = SimCluster::start(SimOptions {
        default_storage_class: false,
        ..SimOptions::fake()
    })
    .expect("start");
    let a2 = admin(&c2);
    assert_eq!(
        a2.post("/api/v1/namespaces/default/persistentvolumeclaims", &pvc)
            .expect("pvc")
            .code,
        201
    );
    let mut p = pod("uses-pvc");
    p["spec"]["volumes"] =
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
    assert_eq!(
        a2.post("/api/v1/namespaces/default/pods", &p)
            .expect("pod")
            .code,
        201
    );
    let ev = eventually("FailedScheduling", || {
        let evs = a2
            .get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Duses-pvc")
            .ok()?
            .json();
        evs["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "FailedScheduling")
            .cloned()
    });
    assert_eq!(ev["type"], "Warning");
    assert!(ev["message"]
        .as_str()
        .expect("m")
        .contains("unbound immediate PersistentVolumeClaims"));
    assert_eq!(
        c2.get("persistentvolumeclaims", "default", "data")
            .expect("pvc")["status"]["phase"],
        "Pending"
    );
}

#[test]
fn server_side_apply_and_patches() {
    let c = cluster();
    let a = admin(&c);
    let path = "/api/v1/namespaces/default/configmaps/applied";
    let yaml = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"1\"\n";
    let r = a
        .patch(path, "application/apply-patch+yaml", yaml)
        .expect("no manager");
    assert_eq!(r.code, 422);
    assert!(r.json()["message"]
        .as_str()
        .expect("m")
        .contains("fieldManager: Required value: is required for apply patch"));
    let r = a
        .patch(
            &format!("{path}?fieldManager=one"),
            "application/apply-patch+yaml",
            yaml,
        )
        .expect("create");
    assert_eq!(r.code, 201);
    let r = a
        .patch(
            &format!("{path}?fieldManager=two"),
            "application/apply-patch+yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"2\"\n",
        )
        .expect("conflict");
    assert_eq!(r.code, 409);
    assert_eq!(
        r.json()["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    let r = a
        .patch(
            &format!("{path}?fieldManager=two&force=true"),
            "application/apply-patch+yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"2\"\n",
        )
        .expect("force");
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["data"]["a"], "2");
    let r = a
        .patch(
            path,
            "application/merge-patch+json",
            br#"{"data":{"b":"x","a":null}}"#,
        )
        .expect("merge");
    assert_eq!(r.json()["data"], json!({"b": "x"}));
    let r = a
        .patch(
            path,
            "application/json-patch+json",
            br#"[{"op":"add","path":"/data/c","value":"y"}]"#,
        )
        .expect("json patch");
    assert_eq!(r.json()["data"]["c"], "y");
    assert_eq!(
        a.patch(path, "text/plain", b"x").expect("bad type").code,
        415
    );
}

#[test]
fn fault_injection() {
    let c = cluster();
    let a = admin(&c);
    let f = c.faults();
    f.fail_next(Some("GET"), "/api/v1/namespaces/default/configmaps", 2, 503);
    assert_eq!(
        a.get("/api/v1/namespaces/default/configmaps")
            .expect("1")
            .code,
        503
    );
    assert_eq!(
        a.get("/api/v1/namespaces/default/configmaps")
            .expect("2")
            .code,
        503
    );
    assert_eq!(
        a.get("/api/v1/namespaces/default/configmaps")
            .expect("3")
            .code,
        200
    );
    f.throttle_next(None, "/api/v1/namespaces", 1, 2);
    let r = a.get("/api/v1/namespaces").expect("429");
    assert_eq!(r.code, 429);
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!(r.json()["reason"], "TooManyRequests");

    f.add_latency(None, "/version", Duration::from_millis(300));
    let t = Instant::now();
    a.get("/version").expect("slow");
    assert!(t.elapsed() >= Duration::from_millis(300));
    f.clear();

    // Tokens: expire → 401; rotate → new token in the kubeconfig, old one refused.
    let r = SimClient::new(&c, RESTRICTED_USER).expect("r");
    f.expire_token(RESTRICTED_USER);
    assert_eq!(
        r.get("/api/v1/namespaces/restricted/pods")
            .expect("expired")
            .code,
        401
    );
    let admin_old = c.token(ADMIN_USER).expect("t");
    f.rotate_token(ADMIN_USER).expect("rotate");
    assert_eq!(a.get("/version").expect("old").code, 401);
    let new = c.token(ADMIN_USER).expect("new");
    assert_ne!(new, admin_old);
    let kc = std::fs::read_to_string(c.kubeconfig_path()).expect("kc");
    assert!(kc.contains(&new) && !kc.contains(&admin_old));
    assert_eq!(
        std::fs::read_to_string(c.token_file_for(ADMIN_USER)).expect("tf"),
        new
    );
    let a = admin(&c);
    assert_eq!(a.get("/version").expect("new").code, 200);

    // A running pod for streams, kills and deletes.
    a.post("/api/v1/namespaces/default/pods", &pod("s"))
        .expect("pod");
    eventually("running", || {
        c.get("pods", "default", "s")
            .filter(|p| p["status"]["phase"] == "Running")
    });
    f.drop_stream_after("/pods/s/exec", 200);
    // The fake kubelet answers with a 64 KiB body; the connection is cut after 200 bytes, so the
    // client sees a truncated response.
    let r = a.get("/api/v1/namespaces/default/pods/s/exec?command=sh&stdout=true");
    assert!(r.is_err(), "stream was not cut: {r:?}");
    let full = a
        .get("/api/v1/namespaces/default/pods/s/exec?command=sh&stdout=true")
        .expect("full");
    assert!(full.body.len() > 64 * 1024);
    f.drop_stream_after("/pods/s/log", 10);
    let mut conn = a.connect().expect("conn");
    conn.send(
        "GET",
        "/api/v1/namespaces/default/pods/s/log?follow=true",
        None,
        &[],
        b"",
    )
    .expect("send");
    let cut = conn.read_response();
    assert!(cut.is_err() || cut.expect("resp").body.len() <= 10);

    f.kill_pod_processes("default", "s");
    eventually("restart counted", || {
        c.get("pods", "default", "s")
            .filter(|p| p["status"]["containerStatuses"][0]["restartCount"] == 1)
    });
    let gone = f.delete_pod("default", "s", Some(1)).expect("delete");
    assert!(gone["metadata"]["deletionTimestamp"].is_string());
    eventually("pod gone", || {
        c.get("pods", "default", "s").is_none().then_some(())
    });
}

#[test]
fn restart_keeps_state_and_ends_watches() {
    let c = cluster();
    let a = admin(&c);
    a.post(
        "/api/v1/namespaces/default/configmaps",
        &cm("keep", json!({})),
    )
    .expect("c");
    let mut w = a
        .watch("/api/v1/namespaces/default/configmaps?watch=1")
        .expect("watch");
    w.next_event(Duration::from_secs(5))
        .expect("ev")
        .expect("added");
    let rv = c.resource_version();
    c.restart_api().expect("restart");
    // The watch ends (connection closed).
    let end = w.next_event(Duration::from_secs(5));
    assert!(matches!(end, Err(_) | Ok(None)), "{end:?}");
    assert_eq!(
        a.get("/api/v1/namespaces/default/configmaps/keep")
            .expect("get")
            .code,
        200
    );
    assert_eq!(c.resource_version(), rv);
}

#[test]
fn journal_records_requests() {
    let c = cluster();
    let a = admin(&c);
    c.clear_journal();
    a.post(
        "/api/v1/namespaces/default/configmaps?fieldManager=t",
        &cm("j", json!({})),
    )
    .expect("c");
    SimClient::with_token(&c, None)
        .expect("anon")
        .get("/api/v1/pods?limit=1")
        .expect("anon");
    let j = c.journal();
    assert_eq!(j.len(), 2);
    assert_eq!(j[0].method, "POST");
    assert_eq!(j[0].path, "/api/v1/namespaces/default/configmaps");
    assert_eq!(j[0].query, "fieldManager=t");
    assert_eq!(j[0].query_param("fieldManager").as_deref(), Some("t"));
    assert_eq!(j[0].body_json().expect("json")["metadata"]["name"], "j");
    assert_eq!(j[0].user, ADMIN_USER);
    assert_eq!(j[0].code, 201);
    assert_eq!(j[1].user, "");
    assert_eq!(j[1].code, 401);
    assert!(j[0].timestamp <= j[1].timestamp);
    c.clear_journal();
    assert!(c.journal().is_empty());
}

#[test]
fn namespace_deletion_and_stop_cleanup() {
    let c = SimCluster::start(SimOptions {
        namespaces: vec!["gone".into()],
        ..SimOptions::fake()
    })
    .expect("start");
    let a = admin(&c);
    a.post("/api/v1/namespaces/gone/configmaps", &cm("x", json!({})))
        .expect("cm");
    let r = a.delete("/api/v1/namespaces/gone").expect("delete ns");
    assert_eq!(r.code, 200);
    eventually("namespace removed", || {
        c.get("namespaces", "", "gone").is_none().then_some(())
    });
    assert!(c.get("configmaps", "gone", "x").is_none());
    assert_eq!(
        a.delete("/api/v1/namespaces/default")
            .expect("default")
            .code,
        403
    );
    let dir = c.data_dir().to_path_buf();
    assert!(dir.join("kubeconfig").exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&dir).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o755);
    c.stop();
    assert!(!dir.exists());
}

#[test]
fn streams_are_handed_over_with_leftover_bytes_and_read_timeouts() {
    let c = cluster();
    let a = admin(&c);
    a.post("/api/v1/namespaces/default/pods", &pod("e"))
        .expect("pod");
    let mut conn = a.connect().expect("conn");
    // Request head and the first stream bytes in one write: the bytes after the head must reach
    // the kubelet.
    let head = "GET /api/v1/namespaces/default/pods/e/exec?command=echo&stdin=true HTTP/1.1\r\nHost: x\r\n";
    let tok = c.token(ADMIN_USER).expect("token");
    let raw = format!("{head}Authorization: Bearer {tok}\r\n\r\nhel");
    std::io::Write::write_all(&mut conn.io, raw.as_bytes()).expect("write");
    std::io::Write::flush(&mut conn.io).expect("flush");
    // Stay idle longer than the stream read timeout, then finish the line.
    std::thread::sleep(Duration::from_millis(100));
    std::io::Write::write_all(&mut conn.io, b"lo\n").expect("write");
    std::io::Write::flush(&mut conn.io).expect("flush");
    let r = conn.read_response().expect("response");
    assert_eq!(r.code, 200);
    assert_eq!(r.text(), "timeouts>0=true echo:hello\n");
    let j = c.journal();
    let e = j
        .iter()
        .find(|e| e.path.ends_with("/exec"))
        .expect("journal");
    assert_eq!(e.code, 101);
}

#[test]
fn keep_alive_and_status_subresource() {
    let c = cluster();
    let a = admin(&c);
    a.post("/api/v1/namespaces/default/pods", &pod("st"))
        .expect("pod");
    eventually("running", || {
        c.get("pods", "default", "st")
            .filter(|p| p["status"]["phase"] == "Running")
    });
    let mut conn = a.connect().expect("conn");
    conn.send("GET", "/version", None, &[], b"").expect("1");
    assert_eq!(conn.read_response().expect("r1").code, 200);
    conn.send(
        "PATCH",
        "/api/v1/namespaces/default/pods/st/status",
        Some("application/merge-patch+json"),
        &[],
        br#"{"status":{"phase":"Succeeded"},"spec":{"restartPolicy":"Never"}}"#,
    )
    .expect("2");
    let r = conn.read_response().expect("r2");
    assert_eq!(r.code, 200, "{}", r.text());
    assert_eq!(r.json()["status"]["phase"], "Succeeded");
    assert_eq!(
        r.json()["spec"]["restartPolicy"],
        "Always",
        "status writes ignore spec"
    );
    // A finished pod is deleted at once (grace forced to 0).
    conn.send(
        "DELETE",
        "/api/v1/namespaces/default/pods/st",
        None,
        &[],
        b"",
    )
    .expect("3");
    assert_eq!(conn.read_response().expect("r3").code, 200);
    assert!(c.get("pods", "default", "st").is_none());
}

#[test]
fn unknown_fields_follow_field_validation() {
    let c = cluster();
    let a = admin(&c);
    let mut p = pod("typo");
    p["spec"]["containers"][0]["imagee"] = json!("x");
    let r = a
        .post("/api/v1/namespaces/default/pods?fieldValidation=Strict", &p)
        .expect("strict");
    assert_eq!(r.code, 400);
    assert_eq!(
        r.json()["message"],
        "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\""
    );
    let r = a.post("/api/v1/namespaces/default/pods", &p).expect("warn");
    assert_eq!(r.code, 201);
    assert_eq!(
        r.header("warning"),
        Some("299 - \"unknown field \\\"spec.containers[0].imagee\\\"\"")
    );
}

#[test]
fn owner_references_are_garbage_collected_unless_orphaned() {
    let c = cluster();
    let a = admin(&c);
    let owner = a
        .post("/api/v1/namespaces/default/pods", &pod("owner"))
        .expect("pod")
        .json();
    let uid = owner["metadata"]["uid"].as_str().expect("uid").to_string();
    let owned = |name: &str| json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": uid}]}, "data": {}});
    a.post("/api/v1/namespaces/default/configmaps", &owned("dep"))
        .expect("dep");
    a.post("/api/v1/namespaces/default/secrets", &owned("sdep"))
        .expect("sdep");
    a.post(
        "/api/v1/namespaces/default/configmaps",
        &cm("free", json!({})),
    )
    .expect("free");
    a.request(
        "DELETE",
        "/api/v1/namespaces/default/pods/owner?gracePeriodSeconds=0",
        None,
        b"",
    )
    .expect("delete");
    eventually("dependents collected", || {
        (c.get("configmaps", "default", "dep").is_none()
            && c.get("secrets", "default", "sdep").is_none())
        .then_some(())
    });
    assert!(c.get("configmaps", "default", "free").is_some());

    let owner = a
        .post(
            "/api/v1/namespaces/default/configmaps",
            &cm("owner2", json!({})),
        )
        .expect("o2")
        .json();
    let uid2 = owner["metadata"]["uid"].as_str().expect("uid").to_string();
    let dep = json!({"metadata": {"name": "dep2", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": uid2}]}});
    a.post("/api/v1/namespaces/default/configmaps", &dep)
        .expect("dep2");
    a.request(
        "DELETE",
        "/api/v1/namespaces/default/configmaps/owner2?propagationPolicy=Orphan",
        None,
        b"",
    )
    .expect("orphan");
    let kept = eventually("orphaned", || {
        c.get("configmaps", "default", "dep2").filter(|d| {
            d["metadata"]["ownerReferences"]
                .as_array()
                .map(|a| a.is_empty())
                .unwrap_or(true)
        })
    });
    assert_eq!(kept["metadata"]["name"], "dep2");
    // Sync point: a later collection has happened, and dep2 is still there.
    let o3 = a
        .post(
            "/api/v1/namespaces/default/configmaps",
            &cm("owner3", json!({})),
        )
        .expect("o3")
        .json();
    let dep3 = json!({"metadata": {"name": "dep3", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner3", "uid": o3["metadata"]["uid"]}]}});
    a.post("/api/v1/namespaces/default/configmaps", &dep3)
        .expect("dep3");
    a.delete("/api/v1/namespaces/default/configmaps/owner3")
        .expect("delete o3");
    eventually("dep3 collected", || {
        c.get("configmaps", "default", "dep3")
            .is_none()
            .then_some(())
    });
    assert!(c.get("configmaps", "default", "dep2").is_some());
}

#[test]
fn followed_logs_stream_until_the_pod_is_gone() {
    let c = cluster();
    let a = admin(&c);
    a.post("/api/v1/namespaces/default/pods", &pod("f"))
        .expect("pod");
    // Not running yet: the kubelet's error before any byte is a Status.
    let early = a
        .get("/api/v1/namespaces/default/pods/f/log")
        .expect("early");
    if early.code != 200 {
        assert_eq!(early.code, 400);
        assert!(early.json()["message"]
            .as_str()
            .expect("m")
            .contains("is waiting to start"));
    }
    eventually("running", || {
        c.get("pods", "default", "f")
            .filter(|p| p["status"]["phase"] == "Running")
    });
    let mut w = a
        .watch("/api/v1/namespaces/default/pods/f/log?follow=true")
        .expect("follow");
    assert_eq!(w.code, 200);
    let mut lines = 0;
    while lines < 5 {
        let ev = w.next_event(Duration::from_secs(5));
        // Log lines are not JSON: next_event reports InvalidData per line, which still proves a
        // line arrived.
        assert!(
            matches!(&ev, Err(e) if e.kind() == std::io::ErrorKind::InvalidData),
            "{ev:?}"
        );
        lines += 1;
    }
    a.request(
        "DELETE",
        "/api/v1/namespaces/default/pods/f?gracePeriodSeconds=0",
        None,
        b"",
    )
    .expect("delete");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match w.next_event(Duration::from_secs(5)) {
            Ok(None) => break,
            Ok(Some(_)) | Err(_) => assert!(Instant::now() < deadline, "follow did not end"),
        }
    }
}

#[test]
fn delete_collection_honours_selectors() {
    let c = cluster();
    let a = admin(&c);
    for (n, t) in [("a", "x"), ("b", "x"), ("c", "y")] {
        a.post(
            "/api/v1/namespaces/default/configmaps",
            &cm(n, json!({"t": t})),
        )
        .expect("cm");
    }
    let r = a
        .delete("/api/v1/namespaces/default/configmaps?labelSelector=t%3Dx")
        .expect("deletecollection");
    assert_eq!(r.code, 200);
    assert_eq!(r.json()["kind"], "ConfigMapList");
    assert_eq!(r.json()["items"].as_array().expect("items").len(), 2);
    assert!(
        c.get("configmaps", "default", "a").is_none()
            && c.get("configmaps", "default", "b").is_none()
    );
    assert!(c.get("configmaps", "default", "c").is_some());
    let j = c.journal();
    assert_eq!(j.last().expect("entry").method, "DELETE");
}

#[test]
fn concurrent_patches_lose_no_update() {
    let c = cluster();
    let a = admin(&c);
    a.post(
        "/api/v1/namespaces/default/configmaps",
        &cm("hot", json!({})),
    )
    .expect("cm");
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut conn = a.connect().expect("conn");
                for i in 0..10 {
                    let body = format!(r#"{{"data":{{"k{t}-{i}":"v"}}}}"#);
                    conn.send(
                        "PATCH",
                        "/api/v1/namespaces/default/configmaps/hot",
                        Some("application/merge-patch+json"),
                        &[],
                        body.as_bytes(),
                    )
                    .expect("send");
                    assert_eq!(conn.read_response().expect("resp").code, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    let data = c.get("configmaps", "default", "hot").expect("cm")["data"].clone();
    assert_eq!(data.as_object().expect("data").len(), 61, "{data}");
}

#[test]
fn watch_expiry_fault() {
    let c = cluster();
    let a = admin(&c);
    c.faults().expire_next_watch("/configmaps?watch");
    let mut w = a
        .watch("/api/v1/namespaces/default/configmaps?watch=1")
        .expect("watch");
    assert_eq!(w.code, 200);
    let e = w
        .next_event(Duration::from_secs(5))
        .expect("ev")
        .expect("some");
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(w.next_event(Duration::from_secs(5)).expect("end").is_none());
    // One-shot: the next watch works.
    a.post("/api/v1/namespaces/default/configmaps", &cm("x", json!({})))
        .expect("cm");
    let mut w = a
        .watch("/api/v1/namespaces/default/configmaps?watch=1")
        .expect("watch");
    assert_eq!(
        w.next_event(Duration::from_secs(5))
            .expect("ev")
            .expect("some")["type"],
        "ADDED"
    );
}
