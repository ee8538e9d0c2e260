//! Validation the real API server runs on our kinds, with its field-error wording: names
//! (DNS-1123), labels, container/volume names, env names, quantities, volume references, duplicate
//! names, ConfigMap/Secret keys and the 1 MiB size limit, and pod-spec immutability.
//!
//! May import: std, serde_json, api::util.

use super::util::ApiError;
use serde_json::{json, Value as Json};
use std::collections::HashSet;

/// The largest total size of a Secret's or ConfigMap's data (core/v1 `MaxSecretSize`).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const ENV_NAME_MSG: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";
/// The message of a quantity that does not parse (a decode error, so 400 rather than 422).
pub const QUANTITY_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// One field error (`field.Error`).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldErr {
    /// Cause type, e.g. `FieldValueInvalid`.
    pub reason: &'static str,
    pub field: String,
    /// The error body, e.g. `Invalid value: "x": detail`.
    pub body: String,
}

pub fn invalid(field: &str, value: &str, detail: &str) -> FieldErr {
    FieldErr {
        reason: "FieldValueInvalid",
        field: field.into(),
        body: format!("Invalid value: {value:?}: {detail}"),
    }
}
pub fn required(field: &str, detail: &str) -> FieldErr {
    let body = if detail.is_empty() {
        "Required value".to_string()
    } else {
        format!("Required value: {detail}")
    };
    FieldErr {
        reason: "FieldValueRequired",
        field: field.into(),
        body,
    }
}
pub fn not_found(field: &str, value: &str) -> FieldErr {
    FieldErr {
        reason: "FieldValueNotFound",
        field: field.into(),
        body: format!("Not found: {value:?}"),
    }
}
pub fn duplicate(field: &str, value: &str) -> FieldErr {
    FieldErr {
        reason: "FieldValueDuplicate",
        field: field.into(),
        body: format!("Duplicate value: {value:?}"),
    }
}
pub fn forbidden(field: &str, detail: &str) -> FieldErr {
    FieldErr {
        reason: "FieldValueForbidden",
        field: field.into(),
        body: format!("Forbidden: {detail}"),
    }
}
pub fn too_long(field: &str, max: usize) -> FieldErr {
    FieldErr {
        reason: "FieldValueTooLong",
        field: field.into(),
        body: format!("Too long: must have at most {max} bytes"),
    }
}
pub fn not_supported(field: &str, value: &str, valid: &[&str]) -> FieldErr {
    let vals: Vec<String> = valid.iter().map(|v| format!("{v:?}")).collect();
    FieldErr {
        reason: "FieldValueNotSupported",
        field: field.into(),
        body: format!(
            "Unsupported value: {value:?}: supported values: {}",
            vals.join(", ")
        ),
    }
}

/// The 422 Invalid Status for `kind` `name` with these errors.
pub fn invalid_error(kind: &str, name: &str, errs: &[FieldErr]) -> ApiError {
    let mut seen = HashSet::new();
    let msgs: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.field, e.body))
        .filter(|m| seen.insert(m.clone()))
        .collect();
    let joined = if msgs.len() == 1 {
        msgs[0].clone()
    } else {
        format!("[{}]", msgs.join(", "))
    };
    let causes: Vec<Json> = errs
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.body, "field": e.field}))
        .collect();
    ApiError::new(
        422,
        "Invalid",
        format!("{kind} {name:?} is invalid: {joined}"),
        Some(json!({"name": name, "kind": kind, "causes": causes})),
    )
}

fn is_label_chars(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// DNS-1123 label errors (empty = valid).
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 63 {
        e.push("must be no more than 63 characters".to_string());
    }
    if !is_label_chars(s) {
        e.push(DNS1123_LABEL_MSG.to_string());
    }
    e
}

/// DNS-1123 subdomain errors (empty = valid).
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 253 {
        e.push("must be no more than 253 characters".to_string());
    }
    if s.is_empty() || !s.split('.').all(is_label_chars) {
        e.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    e
}

fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Qualified-name (label/annotation key) errors.
pub fn qualified_name(s: &str) -> Vec<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let mut e = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            e.push("prefix part must be non-empty".to_string());
        } else {
            e.extend(
                dns1123_subdomain(p)
                    .into_iter()
                    .map(|m| format!("prefix part {m}")),
            );
        }
    }
    if name.is_empty() {
        e.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            e.push("name part must be no more than 63 characters".to_string());
        }
        if !is_qualified_part(name) {
            e.push(QUALIFIED_NAME_MSG.to_string());
        }
    }
    e
}

/// Label value errors.
pub fn label_value(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 63 {
        e.push("must be no more than 63 characters".to_string());
    }
    if !s.is_empty() && !is_qualified_part(s) {
        e.push(LABEL_VALUE_MSG.to_string());
    }
    e
}

/// ConfigMap/Secret key errors.
pub fn config_key(s: &str) -> Vec<String> {
    let mut e = Vec::new();
    if s.len() > 253 {
        e.push("must be no more than 253 characters".to_string());
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
    {
        e.push(CONFIG_KEY_MSG.to_string());
    }
    if s == "." {
        e.push("must not be '.'".to_string());
    } else if s == ".." {
        e.push("must not be '..'".to_string());
    } else if s.starts_with("..") {
        e.push("must not start with '..'".to_string());
    }
    e
}

/// Parse a resource quantity to a number of base units (cores, bytes, …).
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    if num.is_empty() || num == "+" || num == "-" || num.matches('.').count() > 1 {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

fn quantity_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Quantities that do not parse: the real server fails to decode the object (400).
pub fn check_quantities_decode(kind: &str, obj: &Json) -> Result<(), ApiError> {
    let bad = |v: &Json| parse_quantity(&quantity_text(v)).is_none();
    let mut maps: Vec<&Json> = Vec::new();
    for list in ["containers", "initContainers"] {
        for c in obj["spec"][list].as_array().into_iter().flatten() {
            maps.push(&c["resources"]["requests"]);
            maps.push(&c["resources"]["limits"]);
        }
    }
    maps.push(&obj["spec"]["resources"]["requests"]);
    maps.push(&obj["spec"]["resources"]["limits"]);
    for m in maps {
        if let Some(o) = m.as_object() {
            if o.values().any(bad) {
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"v1\" cannot be handled as a {kind}: {QUANTITY_MSG}"
                )));
            }
        }
    }
    Ok(())
}

fn validate_meta(obj: &Json, name_check: fn(&str) -> Vec<String>, errs: &mut Vec<FieldErr>) {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errs.push(required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for m in name_check(name) {
            errs.push(invalid("metadata.name", name, &m));
        }
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            for m in qualified_name(k) {
                errs.push(invalid("metadata.labels", k, &m));
            }
            let v = v.as_str().unwrap_or_default();
            for m in label_value(v) {
                errs.push(invalid("metadata.labels", v, &m));
            }
        }
    }
    if let Some(ann) = obj["metadata"]["annotations"].as_object() {
        for k in ann.keys() {
            for m in qualified_name(&k.to_ascii_lowercase()) {
                errs.push(invalid("metadata.annotations", k, &m));
            }
        }
    }
}

fn validate_container(
    c: &Json,
    path: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    errs: &mut Vec<FieldErr>,
) {
    let name = c["name"].as_str().unwrap_or_default();
    if name.is_empty() {
        errs.push(required(&format!("{path}.name"), ""));
    } else {
        for m in dns1123_label(name) {
            errs.push(invalid(&format!("{path}.name"), name, &m));
        }
        if !names.insert(name.to_string()) {
            errs.push(duplicate(&format!("{path}.name"), name));
        }
    }
    if c["image"]
        .as_str()
        .map(|s| s.trim().is_empty())
        .unwrap_or(true)
    {
        errs.push(required(&format!("{path}.image"), ""));
    }
    for (i, e) in c["env"].as_array().into_iter().flatten().enumerate() {
        let n = e["name"].as_str().unwrap_or_default();
        let f = format!("{path}.env[{i}].name");
        if n.is_empty() {
            errs.push(required(&f, ""));
        } else if !n.bytes().all(|b| (32..=126).contains(&b) && b != b'=') {
            errs.push(invalid(&f, n, ENV_NAME_MSG));
        }
    }
    for (i, e) in c["envFrom"].as_array().into_iter().flatten().enumerate() {
        if e["configMapRef"].is_null() && e["secretRef"].is_null() {
            errs.push(invalid(
                &format!("{path}.envFrom[{i}]"),
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        }
    }
    let mut mount_paths = HashSet::new();
    for (i, m) in c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let vn = m["name"].as_str().unwrap_or_default();
        let f = format!("{path}.volumeMounts[{i}]");
        if vn.is_empty() {
            errs.push(required(&format!("{f}.name"), ""));
        } else if !volumes.contains(vn) {
            errs.push(not_found(&format!("{f}.name"), vn));
        }
        let mp = m["mountPath"].as_str().unwrap_or_default();
        if mp.is_empty() {
            errs.push(required(&format!("{f}.mountPath"), ""));
        } else if !mount_paths.insert(mp.to_string()) {
            errs.push(invalid(&format!("{f}.mountPath"), mp, "must be unique"));
        }
    }
    for kind in ["requests", "limits"] {
        if let Some(o) = c["resources"][kind].as_object() {
            for (k, v) in o {
                let txt = quantity_text(v);
                if parse_quantity(&txt).map(|q| q < 0.0).unwrap_or(false) {
                    errs.push(invalid(
                        &format!("{path}.resources.{kind}[{k}]"),
                        &txt,
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
    }
    if let (Some(req), Some(lim)) = (
        c["resources"]["requests"].as_object(),
        c["resources"]["limits"].as_object(),
    ) {
        for (k, v) in req {
            if let (Some(r), Some(l)) = (
                parse_quantity(&quantity_text(v)),
                lim.get(k).and_then(|l| parse_quantity(&quantity_text(l))),
            ) {
                if r > l {
                    errs.push(invalid(
                        &format!("{path}.resources.requests"),
                        &quantity_text(v),
                        &format!(
                            "must be less than or equal to {k} limit of {}",
                            quantity_text(&lim[k])
                        ),
                    ));
                }
            }
        }
    }
}

fn validate_pod(pod: &Json, errs: &mut Vec<FieldErr>) {
    let spec = &pod["spec"];
    let mut volumes = HashSet::new();
    for (i, v) in spec["volumes"].as_array().into_iter().flatten().enumerate() {
        let n = v["name"].as_str().unwrap_or_default();
        let f = format!("spec.volumes[{i}].name");
        if n.is_empty() {
            errs.push(required(&f, ""));
            continue;
        }
        for m in dns1123_label(n) {
            errs.push(invalid(&f, n, &m));
        }
        if !volumes.insert(n.to_string()) {
            errs.push(duplicate(&f, n));
        }
        if let Some(claim) = v.get("persistentVolumeClaim") {
            if claim["claimName"].as_str().unwrap_or_default().is_empty() {
                errs.push(required(
                    &format!("spec.volumes[{i}].persistentVolumeClaim.claimName"),
                    "",
                ));
            }
        }
    }
    let containers = spec["containers"].as_array();
    if containers.map(|c| c.is_empty()).unwrap_or(true) {
        errs.push(required("spec.containers", ""));
    }
    let mut names = HashSet::new();
    for (i, c) in spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        validate_container(
            c,
            &format!("spec.initContainers[{i}]"),
            &volumes,
            &mut names,
            errs,
        );
    }
    for (i, c) in containers.into_iter().flatten().enumerate() {
        validate_container(
            c,
            &format!("spec.containers[{i}]"),
            &volumes,
            &mut names,
            errs,
        );
    }
    if let Some(rp) = spec["restartPolicy"].as_str() {
        if !["Always", "OnFailure", "Never"].contains(&rp) {
            errs.push(not_supported(
                "spec.restartPolicy",
                rp,
                &["Always", "OnFailure", "Never"],
            ));
        }
    }
}

fn validate_data(obj: &Json, size_field: &str, errs: &mut Vec<FieldErr>, binary_keys: &[&str]) {
    let mut total = 0usize;
    let mut seen = HashSet::new();
    for section in ["data", "binaryData"] {
        if let Some(o) = obj[section].as_object() {
            for (k, v) in o {
                for m in config_key(k) {
                    errs.push(invalid(&format!("{section}[{k}]"), k, &m));
                }
                if !seen.insert(k.clone()) {
                    errs.push(invalid(
                        &format!("{section}[{k}]"),
                        k,
                        "duplicate of key present in data",
                    ));
                }
                let s = v.as_str().unwrap_or_default();
                total += if binary_keys.contains(&section) {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map(|b| b.len())
                        .unwrap_or(s.len())
                } else {
                    s.len()
                };
            }
        }
    }
    if total > MAX_DATA_SIZE {
        errs.push(too_long(size_field, MAX_DATA_SIZE));
    }
}

/// Validate an object about to be stored. Returns a 422 Invalid Status on failure.
pub fn validate(resource: &str, kind: &str, obj: &Json) -> Result<(), ApiError> {
    let mut errs = Vec::new();
    let name_check: fn(&str) -> Vec<String> = match resource {
        "namespaces" => dns1123_label,
        "events" => |_| Vec::new(),
        _ => dns1123_subdomain,
    };
    validate_meta(obj, name_check, &mut errs);
    match resource {
        "pods" => validate_pod(obj, &mut errs),
        "configmaps" => validate_data(obj, "[]", &mut errs, &["binaryData"]),
        "secrets" => validate_data(obj, "data", &mut errs, &["data"]),
        "persistentvolumeclaims" => {
            if obj["spec"]["accessModes"]
                .as_array()
                .map(|a| a.is_empty())
                .unwrap_or(true)
            {
                errs.push(required(
                    "spec.accessModes",
                    "at least 1 access mode is required",
                ));
            }
            if obj["spec"]["resources"]["requests"]["storage"].is_null() {
                errs.push(required("spec.resources[storage]", ""));
            }
        }
        _ => {}
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(invalid_error(
            kind,
            obj["metadata"]["name"].as_str().unwrap_or_default(),
            &errs,
        ))
    }
}

/// Pod spec fields that may change on update are masked before comparing.
fn mutable_masked(spec: &Json) -> Json {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(a) = s[list].as_array_mut() {
            for c in a {
                c["image"] = Json::Null;
            }
        }
    }
    if let Some(o) = s.as_object_mut() {
        o.remove("activeDeadlineSeconds");
        o.remove("tolerations");
        o.remove("terminationGracePeriodSeconds");
    }
    s
}

/// The pod-update immutability rule.
pub fn validate_pod_update(old: &Json, new: &Json) -> Result<(), ApiError> {
    if mutable_masked(&old["spec"]) != mutable_masked(&new["spec"]) {
        let e = forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        );
        return Err(invalid_error(
            "Pod",
            new["metadata"]["name"].as_str().unwrap_or_default(),
            &[e],
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Json) -> Json {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn names_and_labels() {
        assert!(dns1123_label("my-name").is_empty());
        assert!(!dns1123_label("My-name").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(dns1123_subdomain("a.b-c").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert!(qualified_name("example.com/my_key").is_empty());
        assert!(!qualified_name("-bad").is_empty());
        assert!(label_value("").is_empty());
        assert!(!label_value("bad value").is_empty());
        let e = validate(
            "configmaps",
            "ConfigMap",
            &json!({"metadata": {"name": "Bad_Name"}}),
        )
        .expect_err("bad");
        assert_eq!(e.code, 422);
        assert_eq!(e.status["reason"], "Invalid");
        assert_eq!(
            e.status["message"],
            format!("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": {DNS1123_SUBDOMAIN_MSG}")
        );
        assert_eq!(e.status["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(e.status["details"]["kind"], "ConfigMap");
    }

    #[test]
    fn pod_spec_errors_are_listed() {
        let p = pod(json!({
            "volumes": [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}],
            "containers": [
                {"name": "Main", "image": "", "env": [{"name": "A=B"}], "volumeMounts": [{"name": "nope", "mountPath": "/x"}]},
                {"name": "side", "image": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
                {"name": "side", "image": "i"}
            ]
        }));
        let e = validate("pods", "Pod", &p).expect_err("invalid");
        let msg = e.status["message"].as_str().expect("msg").to_string();
        assert!(msg.starts_with("Pod \"web\" is invalid: ["), "{msg}");
        for part in [
            "spec.volumes[1].name: Duplicate value: \"data\"",
            "spec.containers[0].name: Invalid value: \"Main\": a lowercase RFC 1123 label",
            "spec.containers[0].image: Required value",
            "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].volumeMounts[0].name: Not found: \"nope\"",
            "spec.containers[1].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[2].name: Duplicate value: \"side\"",
        ] {
            assert!(msg.contains(part), "missing {part} in {msg}");
        }
        assert_eq!(
            e.status["details"]["causes"]
                .as_array()
                .expect("causes")
                .len(),
            7
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2Gi"), Some(2.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Qi"), None);
        let p = pod(
            json!({"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "lots"}}}]}),
        );
        let e = check_quantities_decode("Pod", &p).expect_err("bad quantity");
        assert_eq!(e.code, 400);
        let p = pod(
            json!({"containers": [{"name": "a", "image": "i", "resources": {"requests": {"cpu": "-1"}}}]}),
        );
        let e = validate("pods", "Pod", &p).expect_err("negative");
        assert!(e.status["message"]
            .as_str()
            .expect("m")
            .contains("must be greater than or equal to 0"));
    }

    #[test]
    fn data_keys_and_size() {
        let s = json!({"metadata": {"name": "s"}, "data": {"bad key": "YQ=="}});
        let e = validate("secrets", "Secret", &s).expect_err("bad key");
        assert!(e.status["message"]
            .as_str()
            .expect("m")
            .contains("data[bad key]: Invalid value: \"bad key\": a valid config key"));
        let big = "a".repeat(MAX_DATA_SIZE + 1);
        let c = json!({"metadata": {"name": "c"}, "data": {"k": big}});
        let e = validate("configmaps", "ConfigMap", &c).expect_err("too big");
        assert_eq!(
            e.status["message"],
            "ConfigMap \"c\" is invalid: []: Too long: must have at most 1048576 bytes"
        );
        assert_eq!(
            e.status["details"]["causes"][0]["reason"],
            "FieldValueTooLong"
        );
        let ok = json!({"metadata": {"name": "c"}, "data": {"k": "a".repeat(MAX_DATA_SIZE)}});
        assert!(validate("configmaps", "ConfigMap", &ok).is_ok());
    }

    #[test]
    fn pod_updates_are_mostly_immutable() {
        let old = pod(json!({"containers": [{"name": "a", "image": "x"}]}));
        let img = pod(json!({"containers": [{"name": "a", "image": "y"}]}));
        assert!(validate_pod_update(&old, &img).is_ok());
        let cmd = pod(json!({"containers": [{"name": "a", "image": "x", "command": ["sh"]}]}));
        let e = validate_pod_update(&old, &cmd).expect_err("immutable");
        assert!(e.status["message"].as_str().expect("m").starts_with(
            "Pod \"web\" is invalid: spec: Forbidden: pod updates may not change fields other than"
        ));
    }
}

/// A schema node for unknown-field detection: known keys, each with its own node (None =
/// opaque: anything below is accepted).
struct Node(&'static [(&'static str, Option<&'static Node>, bool)]);

const OPAQUE: Option<&Node> = None;

const META: Node = Node(&[
    ("name", OPAQUE, false),
    ("generateName", OPAQUE, false),
    ("namespace", OPAQUE, false),
    ("selfLink", OPAQUE, false),
    ("uid", OPAQUE, false),
    ("resourceVersion", OPAQUE, false),
    ("generation", OPAQUE, false),
    ("creationTimestamp", OPAQUE, false),
    ("deletionTimestamp", OPAQUE, false),
    ("deletionGracePeriodSeconds", OPAQUE, false),
    ("labels", OPAQUE, false),
    ("annotations", OPAQUE, false),
    ("ownerReferences", OPAQUE, false),
    ("finalizers", OPAQUE, false),
    ("managedFields", OPAQUE, false),
]);

const ENV_VAR: Node = Node(&[
    ("name", OPAQUE, false),
    ("value", OPAQUE, false),
    ("valueFrom", OPAQUE, false),
]);
const ENV_FROM: Node = Node(&[
    ("prefix", OPAQUE, false),
    ("configMapRef", OPAQUE, false),
    ("secretRef", OPAQUE, false),
]);
const MOUNT: Node = Node(&[
    ("name", OPAQUE, false),
    ("readOnly", OPAQUE, false),
    ("recursiveReadOnly", OPAQUE, false),
    ("mountPath", OPAQUE, false),
    ("subPath", OPAQUE, false),
    ("mountPropagation", OPAQUE, false),
    ("subPathExpr", OPAQUE, false),
]);
const RESOURCES: Node = Node(&[
    ("limits", OPAQUE, false),
    ("requests", OPAQUE, false),
    ("claims", OPAQUE, false),
]);

/// (key, node, is_list_of_node)
const CONTAINER: Node = Node(&[
    ("name", OPAQUE, false),
    ("image", OPAQUE, false),
    ("command", OPAQUE, false),
    ("args", OPAQUE, false),
    ("workingDir", OPAQUE, false),
    ("ports", OPAQUE, false),
    ("envFrom", Some(&ENV_FROM), true),
    ("env", Some(&ENV_VAR), true),
    ("resources", Some(&RESOURCES), false),
    ("resizePolicy", OPAQUE, false),
    ("restartPolicy", OPAQUE, false),
    ("restartPolicyRules", OPAQUE, false),
    ("volumeMounts", Some(&MOUNT), true),
    ("volumeDevices", OPAQUE, false),
    ("livenessProbe", OPAQUE, false),
    ("readinessProbe", OPAQUE, false),
    ("startupProbe", OPAQUE, false),
    ("lifecycle", OPAQUE, false),
    ("terminationMessagePath", OPAQUE, false),
    ("terminationMessagePolicy", OPAQUE, false),
    ("imagePullPolicy", OPAQUE, false),
    ("securityContext", OPAQUE, false),
    ("stdin", OPAQUE, false),
    ("stdinOnce", OPAQUE, false),
    ("tty", OPAQUE, false),
]);

const POD_SPEC: Node = Node(&[
    ("volumes", OPAQUE, false),
    ("initContainers", Some(&CONTAINER), true),
    ("containers", Some(&CONTAINER), true),
    ("ephemeralContainers", OPAQUE, false),
    ("restartPolicy", OPAQUE, false),
    ("terminationGracePeriodSeconds", OPAQUE, false),
    ("activeDeadlineSeconds", OPAQUE, false),
    ("dnsPolicy", OPAQUE, false),
    ("nodeSelector", OPAQUE, false),
    ("serviceAccountName", OPAQUE, false),
    ("serviceAccount", OPAQUE, false),
    ("automountServiceAccountToken", OPAQUE, false),
    ("nodeName", OPAQUE, false),
    ("hostNetwork", OPAQUE, false),
    ("hostPID", OPAQUE, false),
    ("hostIPC", OPAQUE, false),
    ("shareProcessNamespace", OPAQUE, false),
    ("securityContext", OPAQUE, false),
    ("imagePullSecrets", OPAQUE, false),
    ("hostname", OPAQUE, false),
    ("hostnameOverride", OPAQUE, false),
    ("subdomain", OPAQUE, false),
    ("affinity", OPAQUE, false),
    ("schedulerName", OPAQUE, false),
    ("tolerations", OPAQUE, false),
    ("hostAliases", OPAQUE, false),
    ("priorityClassName", OPAQUE, false),
    ("priority", OPAQUE, false),
    ("dnsConfig", OPAQUE, false),
    ("readinessGates", OPAQUE, false),
    ("runtimeClassName", OPAQUE, false),
    ("enableServiceLinks", OPAQUE, false),
    ("preemptionPolicy", OPAQUE, false),
    ("overhead", OPAQUE, false),
    ("topologySpreadConstraints", OPAQUE, false),
    ("setHostnameAsFQDN", OPAQUE, false),
    ("os", OPAQUE, false),
    ("hostUsers", OPAQUE, false),
    ("schedulingGates", OPAQUE, false),
    ("resourceClaims", OPAQUE, false),
    ("resources", Some(&RESOURCES), false),
    ("workloadRef", OPAQUE, false),
]);

const PVC_SPEC: Node = Node(&[
    ("accessModes", OPAQUE, false),
    ("selector", OPAQUE, false),
    ("resources", Some(&RESOURCES), false),
    ("volumeName", OPAQUE, false),
    ("storageClassName", OPAQUE, false),
    ("volumeMode", OPAQUE, false),
    ("dataSource", OPAQUE, false),
    ("dataSourceRef", OPAQUE, false),
    ("volumeAttributesClassName", OPAQUE, false),
]);

const POD: Node = Node(&[
    ("apiVersion", OPAQUE, false),
    ("kind", OPAQUE, false),
    ("metadata", Some(&META), false),
    ("spec", Some(&POD_SPEC), false),
    ("status", OPAQUE, false),
]);
const PVC: Node = Node(&[
    ("apiVersion", OPAQUE, false),
    ("kind", OPAQUE, false),
    ("metadata", Some(&META), false),
    ("spec", Some(&PVC_SPEC), false),
    ("status", OPAQUE, false),
]);
const CONFIGMAP: Node = Node(&[
    ("apiVersion", OPAQUE, false),
    ("kind", OPAQUE, false),
    ("metadata", Some(&META), false),
    ("data", OPAQUE, false),
    ("binaryData", OPAQUE, false),
    ("immutable", OPAQUE, false),
]);
const SECRET: Node = Node(&[
    ("apiVersion", OPAQUE, false),
    ("kind", OPAQUE, false),
    ("metadata", Some(&META), false),
    ("data", OPAQUE, false),
    ("stringData", OPAQUE, false),
    ("type", OPAQUE, false),
    ("immutable", OPAQUE, false),
]);
const NAMESPACE: Node = Node(&[
    ("apiVersion", OPAQUE, false),
    ("kind", OPAQUE, false),
    ("metadata", Some(&META), false),
    ("spec", Some(&Node(&[("finalizers", OPAQUE, false)])), false),
    ("status", OPAQUE, false),
]);

fn walk_unknown(v: &Json, node: &Node, path: &str, out: &mut Vec<String>) {
    let Some(o) = v.as_object() else { return };
    for (k, child) in o {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match node.0.iter().find(|(name, _, _)| *name == k) {
            None => out.push(p),
            Some((_, Some(n), true)) => {
                for (i, item) in child.as_array().into_iter().flatten().enumerate() {
                    walk_unknown(item, n, &format!("{p}[{i}]"), out);
                }
            }
            Some((_, Some(n), false)) => walk_unknown(child, n, &p, out),
            Some((_, None, _)) => {}
        }
    }
}

/// Fields the real schema does not declare (`spec.containers[0].imagee`), for
/// `fieldValidation`. Only our kinds' main structures are checked; deep optional structures
/// (probes, affinity, volume sources, …) are accepted as they are.
pub fn unknown_fields(resource: &str, obj: &Json) -> Vec<String> {
    let node = match resource {
        "pods" => &POD,
        "persistentvolumeclaims" => &PVC,
        "configmaps" => &CONFIGMAP,
        "secrets" => &SECRET,
        "namespaces" => &NAMESPACE,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    walk_unknown(obj, node, "", &mut out);
    out
}

#[cfg(test)]
mod unknown_tests {
    use super::*;

    #[test]
    fn finds_unknown_fields() {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labelz": {}},
            "spec": {"containers": [{"name": "a", "imagee": "i", "env": [{"name": "A", "valu": "1"}], "securityContext": {"anything": 1}}], "bogus": 1}});
        assert_eq!(
            unknown_fields("pods", &p),
            vec![
                "metadata.labelz",
                "spec.bogus",
                "spec.containers[0].env[0].valu",
                "spec.containers[0].imagee"
            ]
        );
        assert!(unknown_fields(
            "configmaps",
            &json!({"data": {"x": "y"}, "metadata": {"name": "c"}})
        )
        .is_empty());
    }
}
