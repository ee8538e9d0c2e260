//! kodama's Kubernetes client (`kodama::kube`) against the simulated cluster's real HTTPS API
//! server (API-only, fake kubelet): TLS with client certificates and bearer tokens, 403/401
//! rendering, an exec credential plugin with expiry and token rotation, 429/5xx retries (and POST
//! never retried), watch relist on 410, REST verbs with paging/conflicts/patches/apply/delete,
//! error rendering (404 namespace, 422 fields), Warning headers, keep-alive reuse, TLS
//! verification (SANs, tls-server-name, wrong CA) and the in-cluster service account.
//!
//! Every assertion that matters is checked against the simulator's request journal, so a client
//! that silently did something else (polled, re-sent a POST, opened a connection per request)
//! fails here.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kodama::kube::client::{Client, RetryPolicy};
use kodama::kube::load::{load_with, LoadEnv, Overrides};
use kodama::kube::request::{DeleteOptions, ListOptions, PatchKind, Propagation};
use kodama::kube::resource::{CONFIG_MAPS, NAMESPACES, PODS};
use kodama::kube::watch::{watch_until, EventType, WatchTarget};
use kodama_sim::{JournalEntry, SimCluster, SimOptions, ADMIN_USER, CERT_USER, RESTRICTED_USER};
use serde_json::{json, Value};

fn sim() -> SimCluster {
    SimCluster::start(SimOptions {
        start_delay: Duration::from_millis(20),
        ..SimOptions::fake()
    })
    .expect("start the simulated cluster")
}

fn client_for(path: &Path) -> Client {
    let cfg = load_with(
        &Overrides {
            kubeconfig: Some(path.to_path_buf()),
            ..Overrides::default()
        },
        &LoadEnv::default(),
    )
    .expect("load kubeconfig");
    let c = Client::new(cfg).expect("client");
    // Keep retries quick in tests; Retry-After is still honoured up to max_backoff.
    c.set_retry_policy(RetryPolicy {
        max_retries: 4,
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(3),
    });
    c
}

fn admin(sim: &SimCluster) -> Client {
    client_for(&sim.kubeconfig_path())
}

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

/// Journal entries for `method` whose path ends with `path_suffix` (and whose query contains
/// `query_has`).
fn requests(
    sim: &SimCluster,
    method: &str,
    path_suffix: &str,
    query_has: &str,
) -> Vec<JournalEntry> {
    sim.journal()
        .into_iter()
        .filter(|e| {
            e.method == method && e.path.ends_with(path_suffix) && e.query.contains(query_has)
        })
        .collect()
}

fn codes(es: &[JournalEntry]) -> Vec<u16> {
    es.iter().map(|e| e.code).collect()
}

fn write_kubeconfig(dir: &Path, name: &str, sim: &SimCluster, user: Value) -> PathBuf {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(sim.ca_pem());
    let cfg = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "sim", "cluster": {"server": sim.server_url(), "certificate-authority-data": ca}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "sim", "user": "u", "namespace": "default"}}],
        "current-context": "c",
    });
    let p = dir.join(name);
    std::fs::write(&p, cfg.to_string()).expect("write kubeconfig");
    p
}

fn scratch(sim: &SimCluster, name: &str) -> PathBuf {
    let d = sim.data_dir().join(format!("test-{name}"));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn tls_client_cert_token_403_and_401() {
    let sim = sim();
    // Client certificate (mTLS): the server authenticates us by the certificate's CN.
    let cert = client_for(&sim.kubeconfig_for(CERT_USER).expect("cert kubeconfig"));
    let ns = cert
        .get(&NAMESPACES, None, "default")
        .expect("get ns as cert user");
    assert_eq!(ns["metadata"]["name"], "default");
    let last = sim.journal().pop().expect("journal");
    assert_eq!((last.user.as_str(), last.code), (CERT_USER, 200));

    // Bearer token.
    let tok = admin(&sim);
    tok.list(&NAMESPACES, None, &ListOptions::default())
        .expect("list namespaces with a token");
    let last = sim.journal().pop().expect("journal");
    assert_eq!((last.user.as_str(), last.code), (ADMIN_USER, 200));

    // Namespace-scoped user: fine in its namespace, 403 elsewhere, rendered with verb, resource,
    // namespace and a next step.
    let r = client_for(
        &sim.kubeconfig_for(RESTRICTED_USER)
            .expect("restricted kubeconfig"),
    );
    assert_eq!(r.namespace(), "restricted");
    r.list(&CONFIG_MAPS, Some("restricted"), &ListOptions::default())
        .expect("list in own namespace");
    let e = r
        .list(&PODS, Some("default"), &ListOptions::default())
        .expect_err("403 outside the namespace");
    let api = e.api().expect("an API error");
    assert_eq!(api.code, 403);
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(
        text.contains("listing pods in namespace \"default\""),
        "{text}"
    );
    assert!(
        text.contains("cannot list resource \"pods\"") && text.contains("\"default\""),
        "{text}"
    );
    assert!(
        text.contains("hint: you may not list pods in namespace \"default\"")
            && text.contains("kubectl auth can-i list pods -n default"),
        "{text}"
    );
    let e = r
        .create(&CONFIG_MAPS, Some("default"), &cm("nope", json!({})))
        .expect_err("403 create");
    assert!(
        e.render()
            .contains("you may not create configmaps in namespace \"default\""),
        "{}",
        e.render()
    );
    // The restricted user can ask what it may do.
    assert!(r
        .can_i("list", "pods", None, Some("restricted"))
        .expect("ssar"));
    assert!(!r
        .can_i("list", "pods", None, Some("default"))
        .expect("ssar"));

    // Anonymous: 401, rendered with what to do.
    let dir = scratch(&sim, "anon");
    let anon = client_for(&write_kubeconfig(&dir, "anon.json", &sim, json!({})));
    let e = anon
        .get(&NAMESPACES, None, "default")
        .expect_err("anonymous must be rejected");
    assert_eq!(e.api().map(|a| a.code), Some(401), "{e}");
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(text.contains("getting namespaces \"default\""), "{text}");
    assert!(text.contains("Unauthorized"), "{text}");
    assert!(
        text.contains("hint: the API server rejected your credentials"),
        "{text}"
    );
    let last = sim.journal().pop().expect("journal");
    assert_eq!((last.user.as_str(), last.code), ("", 401));
    // A wrong token is just as clear, and the token never appears in the error.
    let bad = client_for(&write_kubeconfig(
        &dir,
        "bad.json",
        &sim,
        json!({"token": "not-the-token-xyz"}),
    ));
    let e = bad
        .get(&NAMESPACES, None, "default")
        .expect_err("bad token");
    assert_eq!(e.api().map(|a| a.code), Some(401));
    assert!(!e.render().contains("not-the-token-xyz"), "{}", e.render());
}

fn plugin_kubeconfig(sim: &SimCluster, dir: &Path, ttl: Option<u64>) -> (PathBuf, PathBuf) {
    let plugin =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeconfig/exec-plugin-sim.sh");
    let counter = dir.join("count");
    let mut env = vec![
        json!({"name": "KODAMA_TEST_COUNTER", "value": counter.display().to_string()}),
        json!({"name": "KODAMA_TEST_TOKEN_FILE", "value": sim.token_file_for(ADMIN_USER).display().to_string()}),
    ];
    if let Some(t) = ttl {
        env.push(json!({"name": "KODAMA_TEST_TTL", "value": t.to_string()}));
    }
    let user = json!({"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": plugin.display().to_string(),
        "env": env,
        "interactiveMode": "Never",
        "installHint": "it is a test fixture",
    }});
    (write_kubeconfig(dir, "plugin.json", sim, user), counter)
}

fn runs(counter: &Path) -> u32 {
    std::fs::read_to_string(counter)
        .map(|s| s.trim().parse().expect("counter"))
        .unwrap_or(0)
}

#[test]
fn exec_plugin_credential_cached_until_shortly_before_expiry() {
    let sim = sim();
    let dir = scratch(&sim, "plugin-expiry");
    // 63 s of validity: fresh for 2-3 s more than kodama's 60 s safety margin.
    let (kc, counter) = plugin_kubeconfig(&sim, &dir, Some(63));
    let c = client_for(&kc);
    c.get(&NAMESPACES, None, "default").expect("first request");
    assert_eq!(runs(&counter), 1);
    c.get(&NAMESPACES, None, "default").expect("second request");
    c.list(&CONFIG_MAPS, Some("default"), &ListOptions::default())
        .expect("third request");
    assert_eq!(runs(&counter), 1, "a fresh credential must be reused");
    // Wait until the credential is inside the refresh margin (expiry - 60 s).
    let expiry: u64 = std::fs::read_to_string(counter.with_extension("expiry"))
        .expect("expiry")
        .trim()
        .parse()
        .expect("expiry number");
    let deadline = Instant::now() + Duration::from_secs(5);
    while SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 60
        < expiry
    {
        assert!(Instant::now() < deadline, "clock did not advance");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.get(&NAMESPACES, None, "default")
        .expect("request after the margin");
    assert_eq!(
        runs(&counter),
        2,
        "the plugin must run again before the credential expires"
    );
    // Every request succeeded at first try: no 401 was needed to notice the expiry.
    assert!(sim
        .journal()
        .iter()
        .all(|e| e.code == 200 && e.user == ADMIN_USER));
}

#[test]
fn exec_plugin_rerun_and_retried_once_on_rotation_and_expiry() {
    let sim = sim();
    let dir = scratch(&sim, "plugin-rotate");
    let (kc, counter) = plugin_kubeconfig(&sim, &dir, None);
    let c = client_for(&kc);
    c.get(&NAMESPACES, None, "default").expect("first request");
    assert_eq!(runs(&counter), 1);

    // Rotation: the cached token now gets 401; the plugin re-runs (it reads the new token) and
    // the same GET is retried once.
    sim.faults().rotate_token(ADMIN_USER).expect("rotate");
    sim.clear_journal();
    let ns = c
        .get(&NAMESPACES, None, "kube-system")
        .expect("retried after rotation");
    assert_eq!(ns["metadata"]["name"], "kube-system");
    assert_eq!(runs(&counter), 2);
    assert_eq!(
        codes(&requests(&sim, "GET", "/namespaces/kube-system", "")),
        vec![401, 200]
    );

    // The same for a POST: a 401 means the server did nothing, so one retry is safe.
    sim.faults().rotate_token(ADMIN_USER).expect("rotate again");
    sim.clear_journal();
    c.create(
        &CONFIG_MAPS,
        Some("default"),
        &cm("after-rotation", json!({})),
    )
    .expect("create after rotation");
    assert_eq!(runs(&counter), 3);
    assert_eq!(
        codes(&requests(&sim, "POST", "/configmaps", "")),
        vec![401, 201]
    );

    // Expiry without a new token: re-run once, retry once, then a clear 401 (no loop).
    sim.faults().expire_token(ADMIN_USER);
    sim.clear_journal();
    let e = c
        .get(&NAMESPACES, None, "default")
        .expect_err("expired token");
    assert_eq!(e.api().map(|a| a.code), Some(401));
    assert!(
        e.render()
            .contains("hint: the API server rejected your credentials"),
        "{}",
        e.render()
    );
    assert_eq!(runs(&counter), 4);
    assert_eq!(
        codes(&requests(&sim, "GET", "/namespaces/default", "")),
        vec![401, 401]
    );
}

#[test]
fn retries_429_and_5xx_for_idempotent_requests_never_post() {
    let sim = sim();
    let c = admin(&sim);
    c.create(&CONFIG_MAPS, Some("default"), &cm("r", json!({})))
        .expect("create");
    let f = sim.faults();

    // 429 with Retry-After: 1 → the GET waits about a second, then succeeds.
    sim.clear_journal();
    f.throttle_next(Some("GET"), "/configmaps/r", 1, 1);
    let t = Instant::now();
    c.get(&CONFIG_MAPS, Some("default"), "r")
        .expect("retried after 429");
    assert!(
        t.elapsed() >= Duration::from_millis(950),
        "Retry-After not honoured: {:?}",
        t.elapsed()
    );
    let gets = requests(&sim, "GET", "/configmaps/r", "");
    assert_eq!(codes(&gets), vec![429, 200]);
    let gap = gets[1]
        .timestamp
        .duration_since(gets[0].timestamp)
        .expect("order");
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");

    // 500 then 503: retried with growing backoff.
    sim.clear_journal();
    f.fail_next(Some("GET"), "/configmaps/r", 1, 500);
    f.fail_next(Some("GET"), "/configmaps/r", 1, 503);
    c.get(&CONFIG_MAPS, Some("default"), "r")
        .expect("retried after 5xx");
    let gets = requests(&sim, "GET", "/configmaps/r", "");
    let mut seen = codes(&gets);
    seen.sort_unstable();
    assert_eq!(seen, vec![200, 500, 503]);
    assert_eq!(gets[2].code, 200);
    let g1 = gets[1]
        .timestamp
        .duration_since(gets[0].timestamp)
        .expect("order");
    let g2 = gets[2]
        .timestamp
        .duration_since(gets[1].timestamp)
        .expect("order");
    assert!(
        g1 >= Duration::from_millis(40) && g2 >= Duration::from_millis(80),
        "{g1:?} {g2:?}"
    );

    // PUT and DELETE are idempotent too.
    sim.clear_journal();
    let mut obj = c.get(&CONFIG_MAPS, Some("default"), "r").expect("get");
    obj["data"]["k"] = json!("v2");
    f.fail_next(Some("PUT"), "/configmaps/r", 2, 503);
    c.replace(&CONFIG_MAPS, Some("default"), "r", &obj)
        .expect("put retried");
    assert_eq!(
        codes(&requests(&sim, "PUT", "/configmaps/r", "")),
        vec![503, 503, 200]
    );

    // Retries give up after the policy's budget, with the server's error rendered.
    sim.clear_journal();
    f.fail_next(Some("GET"), "/configmaps/r", 10, 503);
    let e = c
        .get(&CONFIG_MAPS, Some("default"), "r")
        .expect_err("budget exhausted");
    assert_eq!(requests(&sim, "GET", "/configmaps/r", "").len(), 5);
    assert!(
        e.render().contains("hint: the API server failed"),
        "{}",
        e.render()
    );
    f.clear();

    // A POST is never retried: exactly one POST, whatever the failure.
    for (code, throttle) in [(503, false), (500, false), (429, true)] {
        sim.clear_journal();
        if throttle {
            f.throttle_next(Some("POST"), "/configmaps", 1, 0);
        } else {
            f.fail_next(Some("POST"), "/configmaps", 1, code);
        }
        let e = c
            .create(&CONFIG_MAPS, Some("default"), &cm("once", json!({})))
            .expect_err("the injected failure reaches the caller");
        assert_eq!(e.api().map(|a| a.code), Some(code), "{e}");
        assert_eq!(
            codes(&requests(&sim, "POST", "/configmaps", "")),
            vec![code]
        );
        assert!(sim.get("configmaps", "default", "once").is_none());
        f.clear();
    }
}

#[test]
fn watch_relists_on_410_in_band_and_http() {
    let sim = sim();
    let c = admin(&sim);
    c.create(&CONFIG_MAPS, Some("default"), &cm("a", json!({"w": "1"})))
        .expect("create a");
    for http in [false, true] {
        sim.clear_journal();
        if http {
            // Plain HTTP 410 on the watch request itself.
            sim.faults().fail_next(Some("GET"), "watch=1", 1, 410);
        } else {
            // In-band ERROR event with a 410 Expired Status, then end of stream.
            sim.faults().expire_next_watch("configmaps");
        }
        let target_name = if http { "c" } else { "b" };
        let c2 = c.clone();
        let h = std::thread::spawn(move || {
            watch_until(
                &c2,
                &CONFIG_MAPS,
                Some("default"),
                &WatchTarget {
                    label_selector: Some("w=1".into()),
                    field_selector: None,
                },
                Instant::now() + Duration::from_secs(20),
                &mut |ev| {
                    Ok((ev.kind == EventType::Added
                        && ev.object["metadata"]["name"] == target_name)
                        .then(|| ev.object.clone()))
                },
            )
        });
        // Wait until the client has listed twice (the relist) and watches again.
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lists = requests(&sim, "GET", "/configmaps", "")
                .into_iter()
                .filter(|e| e.query_param("watch").is_none())
                .count();
            let watches = requests(&sim, "GET", "/configmaps", "watch=1").len();
            if lists >= 2 && watches >= 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no relist after 410: {:?}",
                sim.journal()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sim.create("configmaps", "default", cm(target_name, json!({"w": "1"})))
            .expect("create target");
        let got = h.join().expect("watch thread").expect("watch result");
        assert_eq!(got.expect("found")["metadata"]["name"], target_name);
        let watches = requests(&sim, "GET", "/configmaps", "watch=1");
        assert_eq!(watches[0].code, if http { 410 } else { 200 });
        // The relist happened, no polling: at most a few list requests in total.
        let lists = requests(&sim, "GET", "/configmaps", "")
            .into_iter()
            .filter(|e| e.query_param("watch").is_none())
            .count();
        assert!(lists <= 3, "{lists} list requests");
        // The second watch resumes from the relist's resourceVersion.
        assert!(watches
            .last()
            .expect("watch")
            .query_param("resourceVersion")
            .is_some());
    }
}

#[test]
fn rest_verbs_paging_conflicts_patches_apply_delete() {
    let sim = sim();
    let c = admin(&sim);
    let warnings = Arc::new(Mutex::new(Vec::<String>::new()));
    let w2 = Arc::clone(&warnings);
    c.set_warning_handler(move |w| w2.lock().expect("warnings").push(w.to_string()));

    // Create 7 labelled + 2 unlabelled config maps; list with a selector and limit 3.
    for i in 0..7 {
        c.create(
            &CONFIG_MAPS,
            Some("default"),
            &cm(&format!("p{i}"), json!({"app": "kodama"})),
        )
        .expect("create");
    }
    for i in 0..2 {
        c.create(
            &CONFIG_MAPS,
            Some("default"),
            &cm(&format!("other{i}"), json!({"app": "x"})),
        )
        .expect("create");
    }
    sim.clear_journal();
    let opts = ListOptions {
        label_selector: Some("app=kodama".into()),
        limit: Some(3),
        ..ListOptions::default()
    };
    let all = c.list(&CONFIG_MAPS, Some("default"), &opts).expect("list");
    let mut names: Vec<String> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["metadata"]["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    assert_eq!(names, (0..7).map(|i| format!("p{i}")).collect::<Vec<_>>());
    let pages = requests(&sim, "GET", "/namespaces/default/configmaps", "");
    assert_eq!(pages.len(), 3, "7 items at limit 3 = 3 pages");
    assert!(pages
        .iter()
        .all(|p| p.query_param("limit").as_deref() == Some("3")
            && p.query_param("labelSelector").as_deref() == Some("app=kodama")));
    assert!(pages[0].query_param("continue").is_none());
    assert!(
        pages[1].query_param("continue").is_some() && pages[2].query_param("continue").is_some()
    );
    // One page at a time.
    let p1 = c
        .list_page(&CONFIG_MAPS, Some("default"), &opts)
        .expect("page");
    assert_eq!(p1["items"].as_array().map(Vec::len), Some(3));
    let tok = p1["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_string();
    let p2 = c
        .list_page(
            &CONFIG_MAPS,
            Some("default"),
            &ListOptions {
                continue_token: Some(tok),
                ..opts.clone()
            },
        )
        .expect("page 2");
    assert_eq!(p2["items"].as_array().map(Vec::len), Some(3));

    // get + replace with a stale resourceVersion → 409 Conflict, rendered.
    let v1 = c.get(&CONFIG_MAPS, Some("default"), "p0").expect("get");
    let mut fresh = v1.clone();
    fresh["data"]["k"] = json!("changed");
    c.replace(&CONFIG_MAPS, Some("default"), "p0", &fresh)
        .expect("replace");
    let mut stale = v1.clone();
    stale["data"]["k"] = json!("stale");
    let e = c
        .replace(&CONFIG_MAPS, Some("default"), "p0", &stale)
        .expect_err("stale rv");
    assert_eq!(e.api().map(|a| a.code), Some(409));
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(
        text.contains("updating configmaps \"p0\" in namespace \"default\""),
        "{text}"
    );
    assert!(text.contains("the object has been modified"), "{text}");
    assert!(
        text.contains("hint: the object was changed by someone else"),
        "{text}"
    );
    // Create twice → 409 AlreadyExists with its own hint.
    let e = c
        .create(&CONFIG_MAPS, Some("default"), &cm("p1", json!({})))
        .expect_err("exists");
    assert!(e.is_already_exists(), "{e}");
    assert!(
        e.render()
            .contains("already exists in namespace \"default\""),
        "{}",
        e.render()
    );

    // Merge patch.
    let p = c
        .patch(
            &CONFIG_MAPS,
            Some("default"),
            "p1",
            PatchKind::Merge,
            &json!({"metadata": {"labels": {"patched": "merge"}}, "data": {"k": null, "n": "1"}}),
        )
        .expect("merge patch");
    assert_eq!(p["metadata"]["labels"]["patched"], "merge");
    assert_eq!(p["data"], json!({"n": "1"}));
    let last = sim.journal().pop().expect("journal");
    assert_eq!(
        last.content_type.as_deref(),
        Some("application/merge-patch+json")
    );

    // Strategic merge patch on a pod: containers merged by name, not replaced.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sp"},
        "spec": {"containers": [
            {"name": "a", "image": "busybox", "command": ["sleep", "60"]},
            {"name": "b", "image": "busybox", "command": ["sleep", "60"]}]}});
    c.create(&PODS, Some("default"), &pod).expect("create pod");
    let p = c
        .patch(
            &PODS,
            Some("default"),
            "sp",
            PatchKind::StrategicMerge,
            &json!({"spec": {"containers": [{"name": "b", "image": "busybox:2"}]}}),
        )
        .expect("strategic merge patch");
    let cs = p["spec"]["containers"].as_array().expect("containers");
    assert_eq!(cs.len(), 2, "{p}");
    assert_eq!(cs[1]["image"], "busybox:2");
    assert_eq!(cs[0]["image"], "busybox");
    let last = sim.journal().pop().expect("journal");
    assert_eq!(
        last.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );

    // Server-side apply with fieldManager kodama: creates, then updates.
    let applied = c
        .apply(&CONFIG_MAPS, Some("default"), "ssa",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}))
        .expect("apply create");
    assert_eq!(applied["data"], json!({"a": "1"}));
    let applied = c
        .apply(&CONFIG_MAPS, Some("default"), "ssa",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}}))
        .expect("apply update");
    assert_eq!(
        applied["data"],
        json!({"b": "2"}),
        "fields dropped from our intent are removed"
    );
    let last = sim.journal().pop().expect("journal");
    assert_eq!(last.method, "PATCH");
    assert_eq!(last.query_param("fieldManager").as_deref(), Some("kodama"));
    assert_eq!(
        last.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );

    // Delete with grace period and propagation.
    sim.clear_journal();
    c.delete(
        &PODS,
        Some("default"),
        "sp",
        &DeleteOptions {
            grace_period_seconds: Some(0),
            propagation_policy: Some(Propagation::Background),
        },
    )
    .expect("delete pod");
    let del = requests(&sim, "DELETE", "/pods/sp", "");
    assert_eq!(del.len(), 1);
    let e = &del[0];
    let body = e.body_json().unwrap_or(Value::Null);
    let grace = e
        .query_param("gracePeriodSeconds")
        .or_else(|| body["gracePeriodSeconds"].as_i64().map(|g| g.to_string()));
    let prop = e
        .query_param("propagationPolicy")
        .or_else(|| body["propagationPolicy"].as_str().map(String::from));
    assert_eq!(grace.as_deref(), Some("0"), "{e:?}");
    assert_eq!(prop.as_deref(), Some("Background"), "{e:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .get_opt(&PODS, Some("default"), "sp")
        .expect("get_opt")
        .is_some()
    {
        assert!(Instant::now() < deadline, "pod with grace 0 not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = c
        .delete(
            &CONFIG_MAPS,
            Some("default"),
            "never-was",
            &DeleteOptions::default(),
        )
        .expect_err("404");
    assert!(e.is_not_found(), "{e}");

    // 404 for a namespace that does not exist.
    let e = c
        .create(&CONFIG_MAPS, Some("nowhere"), &cm("x", json!({})))
        .expect_err("no ns");
    assert!(e.is_not_found());
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(
        text.contains("namespace \"nowhere\" does not exist"),
        "{text}"
    );
    assert!(text.contains("kubectl create namespace nowhere"), "{text}");

    // 422 lists each invalid field.
    let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "Bad_Name", "labels": {"ok": "not valid!"}},
        "spec": {"containers": [{"name": "Main_C", "image": "busybox"}]}});
    let e = c.create(&PODS, Some("default"), &bad).expect_err("422");
    let api = e.api().expect("api error");
    assert_eq!(api.code, 422);
    let text = e.render();
    eprintln!("{text}\n---");
    assert!(
        text.contains("422 Invalid: Pod \"Bad_Name\" is invalid:\n  - "),
        "{text}"
    );
    for field in [
        "metadata.name",
        "metadata.labels",
        "spec.containers[0].name",
    ] {
        // Each invalid field on its own line, exactly once (not also inside the server's
        // bracketed summary).
        assert_eq!(text.matches(field).count(), 1, "{field} in:\n{text}");
        assert!(
            text.contains(&format!("\n  - {field}: Invalid value")),
            "{field} in:\n{text}"
        );
    }
    assert!(text.contains("hint: fix the fields listed above"), "{text}");
    assert!(api.causes.len() >= 3, "{:?}", api.causes);

    // Warning headers (an unknown field with the default fieldValidation=Warn) go to the
    // handler, each text once.
    let odd = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w1"}, "data": {}, "bogusField": 1});
    c.create(&CONFIG_MAPS, Some("default"), &odd)
        .expect("create with unknown field");
    let mut odd2 = odd.clone();
    odd2["metadata"]["name"] = json!("w2");
    c.create(&CONFIG_MAPS, Some("default"), &odd2)
        .expect("create with unknown field again");
    let ws = warnings.lock().expect("warnings").clone();
    assert_eq!(ws.len(), 1, "{ws:?}");
    assert!(ws[0].contains("bogusField"), "{ws:?}");
}

/// Client-side TCP sockets to `port` in this network namespace (any state, TIME_WAIT included).
fn client_sockets_to(port: u16) -> usize {
    let mut n = 0;
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let remote_port = cols
                .get(2)
                .and_then(|r| r.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn rest_calls_reuse_one_keep_alive_connection() {
    let sim = sim();
    let c = admin(&sim);
    c.get(&NAMESPACES, None, "default").expect("warm up");
    let before = client_sockets_to(sim.port());
    for i in 0..12 {
        match i % 3 {
            0 => drop(c.get(&NAMESPACES, None, "default").expect("get")),
            1 => drop(
                c.list(&CONFIG_MAPS, Some("default"), &ListOptions::default())
                    .expect("list"),
            ),
            _ => drop(
                c.create(
                    &CONFIG_MAPS,
                    Some("default"),
                    &cm(&format!("ka{i}"), json!({})),
                )
                .expect("create"),
            ),
        }
    }
    let after = client_sockets_to(sim.port());
    assert!(before >= 1, "no socket seen at all");
    assert_eq!(
        after, before,
        "12 sequential calls must reuse the kept-alive connection"
    );
    assert_eq!(sim.journal().len(), 13);
}

#[test]
fn token_file_reread_after_rotation() {
    let sim = sim();
    let dir = scratch(&sim, "tokenfile");
    let kc = write_kubeconfig(
        &dir,
        "tf.json",
        &sim,
        json!({"tokenFile": sim.token_file_for(ADMIN_USER).display().to_string()}),
    );
    let c = client_for(&kc);
    c.get(&NAMESPACES, None, "default").expect("first");
    sim.faults().rotate_token(ADMIN_USER).expect("rotate");
    sim.clear_journal();
    c.get(&NAMESPACES, None, "default")
        .expect("re-read after 401");
    assert_eq!(
        codes(&requests(&sim, "GET", "/namespaces/default", "")),
        vec![401, 200]
    );
}

#[test]
fn requests_after_an_api_restart_use_a_new_connection() {
    let sim = sim();
    let c = admin(&sim);
    c.get(&NAMESPACES, None, "default")
        .expect("warm up the pool");
    sim.restart_api().expect("restart");
    sim.clear_journal();
    // The pooled connection is dead; a create (never retried once sent) must still go through,
    // exactly once.
    c.create(
        &CONFIG_MAPS,
        Some("default"),
        &cm("after-restart", json!({})),
    )
    .expect("create after restart");
    assert_eq!(codes(&requests(&sim, "POST", "/configmaps", "")), vec![201]);
    c.get(&NAMESPACES, None, "default")
        .expect("get after restart");
}

#[test]
fn watch_survives_an_api_restart() {
    let sim = sim();
    let c = admin(&sim);
    let c2 = c.clone();
    sim.clear_journal();
    let h = std::thread::spawn(move || {
        watch_until(
            &c2,
            &CONFIG_MAPS,
            Some("default"),
            &WatchTarget::default(),
            Instant::now() + Duration::from_secs(20),
            &mut |ev| {
                Ok(
                    (ev.kind == EventType::Added && ev.object["metadata"]["name"] == "later")
                        .then_some(()),
                )
            },
        )
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while requests(&sim, "GET", "/configmaps", "watch=1").is_empty() {
        assert!(Instant::now() < deadline, "never watched");
        std::thread::sleep(Duration::from_millis(10));
    }
    sim.restart_api().expect("restart");
    // Wait for the client to watch again, then create the object it waits for.
    let deadline = Instant::now() + Duration::from_secs(15);
    while requests(&sim, "GET", "/configmaps", "watch=1").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no new watch after the restart: {:?}",
            sim.journal()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    sim.create("configmaps", "default", cm("later", json!({})))
        .expect("create");
    let r = h.join().expect("thread").expect("watch after restart");
    assert_eq!(r, Some(()));
}

#[test]
fn exec_plugin_client_certificate_over_mtls() {
    let sim = sim();
    let dir = scratch(&sim, "plugin-cert");
    let (cert, key) = sim.cert_user_pem();
    std::fs::write(dir.join("cert.pem"), cert).expect("cert");
    std::fs::write(dir.join("key.pem"), key).expect("key");
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kubeconfig/exec-plugin.sh");
    let env = |k: &str, v: &Path| json!({"name": k, "value": v.display().to_string()});
    let user = json!({"exec": {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": plugin.display().to_string(),
        "env": [env("KODAMA_TEST_COUNTER", &dir.join("count")),
                env("KODAMA_TEST_INFO_LOG", &dir.join("info")),
                env("KODAMA_TEST_CERT", &dir.join("cert.pem")),
                env("KODAMA_TEST_KEY", &dir.join("key.pem"))],
        "interactiveMode": "Never",
    }});
    let c = client_for(&write_kubeconfig(&dir, "k.json", &sim, user));
    c.get(&NAMESPACES, None, "default")
        .expect("get with the plugin's certificate");
    c.list(&CONFIG_MAPS, Some("default"), &ListOptions::default())
        .expect("list");
    assert_eq!(runs(&dir.join("count")), 1);
    let j = sim.journal();
    assert_eq!(j.len(), 2);
    assert!(
        j.iter().all(|e| e.user == CERT_USER && e.code == 200),
        "{j:?}"
    );
}

#[test]
fn expired_continue_token_relists_and_a_down_server_is_named() {
    let sim = sim();
    let c = admin(&sim);
    for i in 0..5 {
        c.create(
            &CONFIG_MAPS,
            Some("default"),
            &cm(&format!("m{i}"), json!({})),
        )
        .expect("create");
    }
    // The second page's continue token has expired (410): the list starts over, complete.
    sim.clear_journal();
    sim.faults().fail_next(Some("GET"), "continue=", 1, 410);
    let all = c
        .list(
            &CONFIG_MAPS,
            Some("default"),
            &ListOptions {
                limit: Some(2),
                ..ListOptions::default()
            },
        )
        .expect("list despite an expired continue token");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(5));
    let pages = requests(&sim, "GET", "/configmaps", "limit=2");
    assert_eq!(pages[1].code, 410, "{:?}", codes(&pages));
    assert!(
        pages[2].query_param("continue").is_none(),
        "restarted from the top"
    );

    // With the API server gone, a request fails at once naming the server and the kubeconfig.
    let kubeconfig = sim.kubeconfig_path();
    let server = sim.server_url();
    sim.stop();
    let t = Instant::now();
    let e = c
        .get(&NAMESPACES, None, "default")
        .expect_err("server down");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let text = e.render();
    assert!(
        text.contains(&format!("cannot talk to the API server at {server}")),
        "{text}"
    );
    assert!(text.contains(&kubeconfig.display().to_string()), "{text}");
}

#[test]
fn in_cluster_service_account_with_token_rotation() {
    let sim = sim();
    let sa = scratch(&sim, "serviceaccount");
    std::fs::write(sa.join("ca.crt"), sim.ca_pem()).expect("ca");
    std::fs::write(sa.join("namespace"), "restricted").expect("namespace");
    let write_token = |t: &str| {
        // Written next to it and renamed, as the kubelet's atomic writer does.
        std::fs::write(sa.join("token.new"), t).expect("token");
        std::fs::rename(sa.join("token.new"), sa.join("token")).expect("rename");
    };
    write_token(&sim.token(RESTRICTED_USER).expect("restricted token"));
    let env = LoadEnv {
        home: Some(scratch(&sim, "empty-home")),
        service_host: Some("127.0.0.1".into()),
        service_port: Some(sim.port().to_string()),
        sa_dir: sa.clone(),
        ..LoadEnv::default()
    };
    let c = Client::new(load_with(&Overrides::default(), &env).expect("in-cluster config"))
        .expect("client");
    assert_eq!(c.namespace(), "restricted");
    c.list(&CONFIG_MAPS, Some("restricted"), &ListOptions::default())
        .expect("list with the service account");
    // The kubelet rotates the token: the next request gets 401, re-reads the file, succeeds.
    sim.faults().rotate_token(RESTRICTED_USER).expect("rotate");
    write_token(&sim.token(RESTRICTED_USER).expect("new token"));
    sim.clear_journal();
    c.list(&CONFIG_MAPS, Some("restricted"), &ListOptions::default())
        .expect("list after rotation");
    let lists = requests(&sim, "GET", "/namespaces/restricted/configmaps", "");
    assert_eq!(codes(&lists), vec![401, 200]);
    assert_eq!(lists[1].user, RESTRICTED_USER);
}

#[test]
fn tls_verification_ip_san_server_name_wrong_ca_and_insecure() {
    use base64::Engine;
    let sim = sim();
    let other = SimCluster::start(SimOptions::fake()).expect("second cluster");
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let token = sim.token(ADMIN_USER).expect("token");
    let dir = scratch(&sim, "tls");
    let try_cluster = |name: &str, cluster: Value| {
        let cfg = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "s", "cluster": cluster}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "s", "user": "u"}}],
            "current-context": "c"});
        let p = dir.join(format!("{name}.json"));
        std::fs::write(&p, cfg.to_string()).expect("kubeconfig");
        load_with(
            &Overrides {
                kubeconfig: Some(p),
                ..Overrides::default()
            },
            &LoadEnv::default(),
        )
        .and_then(Client::new)
        .and_then(|c| c.get(&NAMESPACES, None, "default"))
        .map(|_| ())
    };
    let url = sim.server_url();
    // Addressed by IP (IP SAN), by name, and by IP with tls-server-name.
    try_cluster(
        "ip",
        json!({"server": url, "certificate-authority-data": b(sim.ca_pem())}),
    )
    .expect("IP SAN");
    try_cluster(
        "name",
        json!({"server": url.replace("127.0.0.1", "localhost"), "certificate-authority-data": b(sim.ca_pem())}),
    )
    .expect("DNS SAN");
    try_cluster(
        "sni",
        json!({"server": url, "certificate-authority-data": b(sim.ca_pem()), "tls-server-name": "localhost"}),
    )
    .expect("tls-server-name");
    // Wrong name, wrong CA, no CA: refused, saying where to look.
    for (name, cluster, want) in [
        (
            "sni-wrong",
            json!({"server": url, "certificate-authority-data": b(sim.ca_pem()), "tls-server-name": "wrong.example"}),
            "not valid for name \"wrong.example\"",
        ),
        (
            "other-ca",
            json!({"server": url, "certificate-authority-data": b(other.ca_pem())}),
            "invalid peer certificate",
        ),
        ("no-ca", json!({"server": url}), "invalid peer certificate"),
    ] {
        let e = try_cluster(name, cluster).expect_err(name);
        let text = e.render();
        assert!(text.contains(want), "{name}: {text}");
        assert!(
            text.contains("hint: check certificate-authority / tls-server-name")
                && text.contains(&format!("{name}.json")),
            "{name}: {text}"
        );
        assert!(!text.contains(&token), "{text}");
    }
    try_cluster(
        "insecure",
        json!({"server": url, "insecure-skip-tls-verify": true}),
    )
    .expect("insecure-skip-tls-verify");
}
