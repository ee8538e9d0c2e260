//! Golden-file tests for the objects of a session (fixtures/golden/*.yaml, *.json), plus the
//! properties the golden files stand for: restricted PSS, sensible requests, deterministic output,
//! redaction of every secret value. `UPDATE_GOLDEN=1 cargo test --test manifest_golden` rewrites
//! the golden files; review their diff like code.

use kodama::envfile;
use kodama::manifest::{
    self, build_all, build_pod, editor, names, pss, render_dry_run, secret_files, KnownHosts,
    OutputFormat, SessionInputs, SessionMeta, SessionSpec, SshSpec, Toleration,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn inputs_dir() -> PathBuf {
    root().join("fixtures/golden/inputs")
}

/// Compare `actual` with the golden file, or rewrite it under UPDATE_GOLDEN=1.
fn golden(name: &str, actual: &str) {
    let path = root().join("fixtures/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_GOLDEN=1 cargo test --test manifest_golden",
            path.display()
        )
    });
    if want != actual {
        let diff_at = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the built output at line {}:\n  golden: {:?}\n  actual: {:?}\nrun UPDATE_GOLDEN=1 cargo test --test manifest_golden and review the diff",
            path.display(),
            diff_at + 1,
            want.lines().nth(diff_at),
            actual.lines().nth(diff_at)
        );
    }
}

fn meta() -> SessionMeta {
    SessionMeta {
        created_at: Some("2026-01-15T14:30:00Z".into()),
        kodama_version: Some("0.1.0".into()),
        ..Default::default()
    }
}

fn minimal() -> (SessionSpec, SessionInputs) {
    let mut spec = SessionSpec::new(
        "my-work",
        "default",
        "ghcr.io/illumination-k/kodama-claude:latest",
    );
    spec.meta = meta();
    (spec, SessionInputs::default())
}

const ENV_VALUES: [&str; 3] = ["golden-db-password", "ghp_goldenAmbientToken", "line one"];
const FILE_VALUES: [&str; 2] = [
    "THIS-IS-A-FAKE-KEY-FOR-GOLDEN-TESTS-ONLY",
    "golden-file-content",
];

fn full() -> (SessionSpec, SessionInputs) {
    let mut spec = SessionSpec::new(
        "gpu-train",
        "ml-team",
        "registry.example.com/team/kodama:1.4",
    );
    spec.image_pull_policy = Some("IfNotPresent".into());
    spec.resources.cpu = "4".into();
    spec.resources.memory = "16Gi".into();
    spec.resources
        .extra
        .insert("nvidia.com/gpu".into(), "1".into());
    spec.storage.workspace = "50Gi".into();
    spec.storage.claude_home = "2Gi".into();
    spec.storage.storage_class = Some("fast-ssd".into());
    spec.ssh = Some(SshSpec {
        secret_name: "git-ssh-key".into(),
        key: "ssh-privatekey".into(),
        known_hosts: KnownHosts::AcceptNew,
    });
    spec.service_account = Some("kodama-sessions".into());
    spec.automount_token = true;
    spec.node_selector
        .insert("nvidia.com/gpu.present".into(), "true".into());
    spec.tolerations.push(Toleration {
        key: Some("nvidia.com/gpu".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    });
    spec.meta = SessionMeta {
        repo: Some("https://github.com/myorg/myrepo".into()),
        branch: Some("kodama/gpu-train-20260115143000".into()),
        base_branch: Some("main".into()),
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        created_by: Some("shogo@laptop".into()),
        agent_command: Some("claude -p --dangerously-skip-permissions".into()),
        ..meta()
    };

    let ambient = |k: &str| (k == "GITHUB_TOKEN").then(|| "ghp_goldenAmbientToken".to_string());
    let env = envfile::load(&[inputs_dir().join("full.env")], &[], &ambient).expect("full.env");
    let files = secret_files::load(
        &[
            secret_files::parse_arg("files/settings.json:/etc/app/settings.json").expect("arg"),
            secret_files::parse_arg("files/deploy_key:~/.ssh/deploy_key").expect("arg"),
        ],
        &inputs_dir(),
        None,
    )
    .expect("secret files");
    let editor = editor::load(Some(&inputs_dir().join("repo"))).expect("editor");
    let inputs = SessionInputs {
        editor,
        env: env.vars,
        files,
    };
    (spec, inputs)
}

fn objects(case: fn() -> (SessionSpec, SessionInputs)) -> Vec<Value> {
    let (spec, inputs) = case();
    build_all(&spec, &inputs).expect("build_all")
}

fn pod_of(objs: &[Value]) -> &Value {
    objs.iter().find(|o| o["kind"] == "Pod").expect("a pod")
}

#[test]
fn golden_minimal_session() {
    let objs = objects(minimal);
    golden(
        "minimal.yaml",
        &render_dry_run(&objs, OutputFormat::Yaml, true).expect("render"),
    );
}

#[test]
fn golden_full_session() {
    let objs = objects(full);
    golden(
        "full.yaml",
        &render_dry_run(&objs, OutputFormat::Yaml, true).expect("render"),
    );
    golden(
        "full.json",
        &render_dry_run(&objs, OutputFormat::Json, true).expect("render"),
    );
}

#[test]
fn yaml_output_reads_back_as_the_same_objects() {
    for case in [minimal as fn() -> _, full] {
        let objs = objects(case);
        let y = render_dry_run(&objs, OutputFormat::Yaml, false).expect("render");
        let docs: Vec<&str> = y.split("---\n").filter(|d| !d.is_empty()).collect();
        assert_eq!(docs.len(), objs.len());
        for (doc, obj) in docs.iter().zip(&objs) {
            let back: Value = yaml_serde::from_str(doc).expect("yaml parses");
            assert_eq!(&back, obj);
        }
    }
}

#[test]
fn objects_come_in_creation_order_with_the_documented_names() {
    let kinds: Vec<(String, String)> = objects(full)
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or("").to_string(),
                o["metadata"]["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want = [
        ("PersistentVolumeClaim", "kodama-workspace-gpu-train"),
        ("PersistentVolumeClaim", "kodama-claude-home-gpu-train"),
        ("ConfigMap", "kodama-editor-config-gpu-train"),
        ("Secret", "kodama-env-gpu-train"),
        ("Secret", "kodama-files-gpu-train"),
        ("Pod", "kodama-gpu-train"),
    ];
    assert_eq!(
        kinds,
        want.map(|(k, n)| (k.to_string(), n.to_string())).to_vec()
    );
    // No env, no files: no Secrets and no envFrom.
    let min = objects(minimal);
    assert!(min.iter().all(|o| o["kind"] != "Secret"));
    assert!(pod_of(&min)["spec"]["containers"][0]
        .get("envFrom")
        .is_none());
}

#[test]
fn every_object_is_labelled_for_listing() {
    for o in objects(full) {
        let l = &o["metadata"]["labels"];
        assert_eq!(l[names::LABEL_MANAGED_BY], "kodama", "{}", o["kind"]);
        assert_eq!(l[names::LABEL_NAME], "kodama");
        assert_eq!(l[names::LABEL_SESSION], "gpu-train");
        assert_eq!(o["metadata"]["namespace"], "ml-team");
    }
}

#[test]
fn pods_pass_the_restricted_pod_security_standard() {
    for case in [minimal as fn() -> _, full] {
        let objs = objects(case);
        let v = pss::check_restricted(pod_of(&objs));
        assert!(v.is_empty(), "violations: {v:#?}");
    }
}

#[test]
fn pod_shape() {
    let objs = objects(full);
    let pod = pod_of(&objs);
    let spec = &pod["spec"];
    let c = &spec["containers"][0];
    assert_eq!(spec["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(c["name"], manifest::MAIN_CONTAINER);
    assert_eq!(c["stdin"], true);
    assert_eq!(c["tty"], true);
    assert_eq!(c["workingDir"], "/workspace");
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["securityContext"]["fsGroup"], 1000);
    assert_eq!(spec["automountServiceAccountToken"], true);
    let env: Vec<(&str, &str)> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or(""),
                e["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(env.contains(&("HOME", "/home/kodama")));
    assert!(env.contains(&("USER", "kodama")));
    assert!(env
        .iter()
        .any(|(n, v)| *n == "GIT_SSH_COMMAND" && v.contains("/etc/kodama/ssh/identity")));
    assert_eq!(c["envFrom"][0]["secretRef"]["name"], "kodama-env-gpu-train");
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap_or(""))
        .collect();
    let mut sorted = mounts.clone();
    sorted.sort();
    assert_eq!(mounts, sorted, "mounts are sorted");
    for p in [
        "/workspace",
        "/home/kodama",
        "/home/kodama/.claude",
        "/home/kodama/.config",
        "/home/kodama/.config/helix",
        "/home/kodama/.config/zellij",
        "/etc/kodama/ssh",
        "/etc/app/settings.json",
        "/home/kodama/.ssh/deploy_key",
    ] {
        assert!(mounts.contains(&p), "{p} not mounted: {mounts:?}");
    }
    // Secret file modes: the key 0400, the rest 0440.
    let items = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "secret-files")
        .expect("secret-files volume")["secret"]["items"]
        .clone();
    assert_eq!(items[0]["key"], "00-settings.json");
    assert_eq!(items[0]["mode"], 0o440);
    assert_eq!(items[1]["key"], "01-deploy_key");
    assert_eq!(items[1]["mode"], 0o400);
    // Extended resources: request = limit.
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert_eq!(c["resources"]["requests"]["nvidia.com/gpu"], "1");
    // Annotations carry the session metadata and read back.
    let meta = manifest::meta_from_annotations(pod);
    assert_eq!(
        meta.branch.as_deref(),
        Some("kodama/gpu-train-20260115143000")
    );
    assert_eq!(meta.base_branch.as_deref(), Some("main"));
    assert_eq!(
        meta,
        manifest::meta_from_annotations(&objs[0]),
        "the workspace PVC carries the same metadata"
    );
    assert_eq!(meta, manifest::meta_from_annotations(&objs[1]));
}

#[test]
fn requests_are_sensible_and_never_zero() {
    for (cpu, mem, want_cpu, want_mem) in [
        ("1", "2Gi", "250m", "1Gi"),
        ("0.5", "1Gi", "125m", "512Mi"),
        ("500m", "256Mi", "125m", "128Mi"),
        ("100m", "64Mi", "100m", "64Mi"),
        ("50m", "128Mi", "50m", "128Mi"),
        ("3", "4Gi", "750m", "2Gi"),
        ("16", "64Gi", "4", "32Gi"),
    ] {
        let (mut spec, _) = minimal();
        spec.resources.cpu = cpu.into();
        spec.resources.memory = mem.into();
        let pod = build_pod(&spec).expect("pod");
        let r = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(r["requests"]["cpu"], want_cpu, "cpu {cpu}");
        assert_eq!(r["requests"]["memory"], want_mem, "memory {mem}");
    }
    let (mut spec, _) = minimal();
    spec.resources.cpu_request = Some("2".into());
    spec.resources.cpu = "2".into();
    let pod = build_pod(&spec).expect("pod");
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "2"
    );
}

#[test]
fn building_is_deterministic_whatever_the_input_order() {
    let a = objects(full);
    let b = objects(full);
    assert_eq!(a, b);
    let (spec, mut inputs) = full();
    inputs.files.reverse();
    assert_eq!(build_all(&spec, &inputs).expect("build"), a);
}

#[test]
fn no_secret_value_appears_in_dry_run_output_or_debug() {
    let (spec, inputs) = full();
    let objs = build_all(&spec, &inputs).expect("build");
    let mut forbidden: Vec<String> = ENV_VALUES
        .iter()
        .chain(FILE_VALUES.iter())
        .map(|s| s.to_string())
        .collect();
    // The base64 forms of every stored value, too.
    for o in objs.iter().filter(|o| o["kind"] == "Secret") {
        for v in o["data"].as_object().expect("data").values() {
            forbidden.push(v.as_str().expect("b64").to_string());
        }
    }
    for format in [OutputFormat::Yaml, OutputFormat::Json] {
        let out = render_dry_run(&objs, format, true).expect("render");
        for f in &forbidden {
            assert!(
                !out.contains(f.as_str()),
                "{f:?} leaked into {format:?} dry-run output"
            );
        }
        // Key names stay visible.
        for k in [
            "DATABASE_URL",
            "GITHUB_TOKEN",
            "00-settings.json",
            "01-deploy_key",
        ] {
            assert!(out.contains(k), "{k} missing from {format:?} output");
        }
    }
    let debug = format!("{inputs:?} {spec:?}");
    for f in ENV_VALUES.iter().chain(FILE_VALUES.iter()) {
        assert!(!debug.contains(f), "{f:?} leaked into Debug");
    }
    // The pod itself never holds a secret value.
    let pod = serde_json::to_string(pod_of(&objs)).expect("json");
    for f in &forbidden {
        assert!(!pod.contains(f.as_str()), "{f:?} is in the pod spec");
    }
    // Unredacted output holds the real base64 data (what start would POST).
    let raw = render_dry_run(&objs, OutputFormat::Json, false).expect("render");
    assert!(forbidden[5..].iter().all(|b| raw.contains(b.as_str())));
}

#[test]
fn stored_spec_rebuilds_the_identical_pod_on_resume() {
    let (mut spec, inputs) = full();
    let objs = build_all(&spec, &inputs).expect("build");
    inputs.apply_to(&mut spec);
    let stored = serde_json::to_string(&spec).expect("store");
    for v in ENV_VALUES.iter().chain(FILE_VALUES.iter()) {
        assert!(!stored.contains(v), "{v} in the stored spec");
    }
    let back: SessionSpec = serde_json::from_str(&stored).expect("load");
    assert_eq!(&build_pod(&back).expect("pod"), pod_of(&objs));
    // A teammate without the session file finds the same spec on the workspace PVC.
    let from_cluster = manifest::spec_from_annotations(&objs[0]).expect("spec annotation");
    assert_eq!(from_cluster, spec);
    assert_eq!(&build_pod(&from_cluster).expect("pod"), pod_of(&objs));
    let pvc_text = serde_json::to_string(&objs[0]).expect("json");
    for v in ENV_VALUES.iter().chain(FILE_VALUES.iter()) {
        assert!(!pvc_text.contains(v), "{v} in the PVC");
    }
    assert!(manifest::spec_from_annotations(&objs[1]).is_none());
}

#[test]
fn invalid_spec_builds_nothing() {
    let (mut spec, inputs) = minimal();
    spec.resources.cpu = "0".into();
    spec.name = "Nope".into();
    let err = build_all(&spec, &inputs).expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("at least 1m") && text.contains("session name"),
        "{text}"
    );
}

#[test]
fn editor_overrides_reach_the_config_map() {
    let objs = objects(full);
    let cm = objs.iter().find(|o| o["kind"] == "ConfigMap").expect("cm");
    assert!(cm["data"][editor::KEY_HELIX_CONFIG]
        .as_str()
        .is_some_and(|s| s.starts_with("theme = \"onedark\"")));
    assert_eq!(
        cm["data"][editor::KEY_ZELLIJ_CONFIG],
        editor::EditorConfig::defaults().zellij_config
    );
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kodama-sf-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn refs(pairs: &[(&str, &str)]) -> Vec<secret_files::SecretFileRef> {
    pairs
        .iter()
        .map(|(s, d)| secret_files::SecretFileRef {
            source: s.to_string(),
            destination: d.to_string(),
        })
        .collect()
}

#[test]
fn secret_files_report_every_fault_at_once() {
    let d = tmp("faults");
    std::fs::write(d.join("a"), "a").expect("write");
    std::fs::create_dir(d.join("dir")).expect("mkdir");
    let err = secret_files::load(
        &refs(&[
            ("missing", "/etc/x"),
            ("dir", "/etc/y"),
            ("a", "relative"),
            ("a", "/workspace/.env"),
            ("a", "/etc/dup"),
            ("a", "/etc/dup"),
            ("a", "/etc/nest"),
            ("a", "/etc/nest/inner"),
            ("~/x", "/etc/home"),
        ]),
        &d,
        None,
    )
    .expect_err("faults");
    let text = err.to_string();
    for needle in [
        "no such file",
        "not a regular file",
        "must be an absolute path",
        "/workspace",
        "given more than once",
        "is inside destination /etc/nest",
        "cannot expand '~'",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn secret_files_are_limited_to_one_mebibyte_in_total() {
    let d = tmp("size");
    std::fs::write(d.join("big1"), vec![b'x'; 600 * 1024]).expect("write");
    std::fs::write(d.join("big2"), vec![b'y'; 600 * 1024]).expect("write");
    let err = secret_files::load(&refs(&[("big1", "/etc/a"), ("big2", "/etc/b")]), &d, None)
        .expect_err("too big");
    assert!(err.to_string().contains("1 MiB"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn secret_files_expand_home_and_pick_modes() {
    let d = tmp("home");
    std::fs::create_dir_all(d.join(".ssh")).expect("mkdir");
    std::fs::write(d.join(".ssh/id_ed25519"), "not really a key").expect("write");
    std::fs::write(d.join("notes.txt"), "hello").expect("write");
    let files = secret_files::load(
        &refs(&[
            ("~/.ssh/id_ed25519", "~/.ssh/id_ed25519"),
            ("notes.txt", "/etc/notes.txt"),
        ]),
        Path::new("/nonexistent-base"),
        Some(&d),
    );
    // notes.txt is relative to the base, which does not exist.
    assert!(files.is_err());
    let files = secret_files::load(
        &refs(&[
            ("~/.ssh/id_ed25519", "~/.ssh/id_ed25519"),
            ("notes.txt", "/etc/notes.txt"),
        ]),
        &d,
        Some(&d),
    )
    .expect("load");
    let by_path: Vec<(&str, u32, &str)> = files
        .iter()
        .map(|f| (f.mount.path.as_str(), f.mount.mode, f.mount.key.as_str()))
        .collect();
    assert_eq!(
        by_path,
        vec![
            ("/etc/notes.txt", 0o440, "00-notes.txt"),
            ("/home/kodama/.ssh/id_ed25519", 0o400, "01-id_ed25519"),
        ]
    );
    assert!(!format!("{files:?}").contains("hello"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn image_home_keeps_the_images_home_directory() {
    let (mut spec, _) = minimal();
    spec.image_home = true;
    let pod = build_pod(&spec).expect("pod");
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(!mounts.contains("\"/home/kodama\""), "{mounts}");
    assert!(mounts.contains("/home/kodama/.claude"));
    assert!(pod["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .all(|v| v["name"] != "home"));
    assert!(pss::check_restricted(&pod).is_empty());
}

#[test]
fn env_secret_checks_keys_and_size_without_showing_values() {
    use kodama::secret::Secret;
    use std::collections::BTreeMap;
    let (spec, _) = minimal();
    let big = "v".repeat(700 * 1024);
    let env = BTreeMap::from([
        ("A".to_string(), Secret::new(big.clone())),
        ("B".to_string(), Secret::new(big.clone())),
        ("bad=key".to_string(), Secret::new("tiny-secret-value")),
    ]);
    let err = manifest::build_env_secret(&spec, &env).expect_err("too big");
    let text = err.to_string();
    assert!(
        text.contains("1 MiB") && text.contains("\"bad=key\""),
        "{text}"
    );
    assert!(!text.contains("tiny-secret-value") && !text.contains(&big[..32]));
    let ok = BTreeMap::from([("TOKEN".to_string(), Secret::new("s3cr3t"))]);
    let s = manifest::build_env_secret(&spec, &ok).expect("secret");
    assert_eq!(s["data"]["TOKEN"], "czNjcjN0");
    assert_eq!(s["type"], "Opaque");
}
