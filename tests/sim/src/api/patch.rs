//! Patches: JSON merge patch (RFC 7386), a strategic-merge patch that merges lists of named
//! objects by `name` and replaces every other list, and server-side apply with per-field
//! ownership (conflicts → 409 `FieldManagerConflict` unless `force`).
//!
//! May import: std, serde_json, api::util.

use super::util::ApiError;
use serde_json::{json, Map, Value as Json};
use std::collections::BTreeMap;

/// RFC 7386: objects merge recursively, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Json, patch: &Json) {
    match patch {
        Json::Object(p) => {
            if !target.is_object() {
                *target = Json::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Json::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn named_list(a: &[Json]) -> bool {
    !a.is_empty()
        && a.iter()
            .all(|e| e.get("name").and_then(|n| n.as_str()).is_some())
}

/// Strategic merge (simplified): like a merge patch, but lists whose elements are all objects
/// with a `name` are merged element-by-name (containers, volumes, env, …); other lists are
/// replaced. Directive keys (`$patch`, `$setElementOrder/…`, `$retainKeys`) are ignored.
pub fn strategic_merge(target: &mut Json, patch: &Json) {
    match patch {
        Json::Object(p) => {
            if !target.is_object() {
                *target = Json::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                let slot = t.entry(k.clone()).or_insert(Json::Null);
                match (slot.as_array_mut(), v.as_array()) {
                    (Some(old), Some(new)) if named_list(new) && named_list(old) => {
                        for item in new {
                            let name = item["name"].as_str().unwrap_or_default();
                            if item.get("$patch").and_then(|d| d.as_str()) == Some("delete") {
                                old.retain(|o| o["name"].as_str() != Some(name));
                            } else if let Some(o) =
                                old.iter_mut().find(|o| o["name"].as_str() == Some(name))
                            {
                                strategic_merge(o, item);
                            } else {
                                let mut fresh = Json::Null;
                                strategic_merge(&mut fresh, item);
                                old.push(fresh);
                            }
                        }
                    }
                    _ => strategic_merge(slot, v),
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Separator of path parts in ownership keys (keys such as annotation names contain dots).
const SEP: char = '\u{1f}';

/// How the real server prints a field path in conflicts: `.metadata.annotations.a.b/c`.
pub fn display_path(p: &str) -> String {
    p.replace(SEP, ".")
}

const IGNORED: &[&str] = &[
    ".apiVersion",
    ".kind",
    ".metadata.name",
    ".metadata.namespace",
    ".metadata.resourceVersion",
    ".metadata.uid",
    ".metadata.creationTimestamp",
    ".metadata.generation",
    ".metadata.managedFields",
    ".metadata.deletionTimestamp",
    ".metadata.deletionGracePeriodSeconds",
];

/// Leaf field paths (`.spec.containers`, `.data.key`) of an object; lists are leaves.
pub fn leaf_paths(v: &Json) -> BTreeMap<String, Json> {
    fn walk(v: &Json, prefix: String, out: &mut BTreeMap<String, Json>) {
        match v {
            Json::Object(o) if !o.is_empty() => {
                for (k, c) in o {
                    walk(c, format!("{prefix}{SEP}{k}"), out);
                }
            }
            other => {
                if !prefix.is_empty() && !IGNORED.contains(&display_path(&prefix).as_str()) {
                    out.insert(prefix, other.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(v, String::new(), &mut out);
    out
}

/// Is `a` contained in `b` (objects: every key of `a` matches; lists: same length, element-wise)?
/// Applying a value the server has only defaulted further is not a conflict.
fn subset(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => x
            .iter()
            .all(|(k, v)| y.get(k).map(|w| subset(v, w)).unwrap_or(v.is_null())),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| subset(v, w))
        }
        _ => a == b,
    }
}

fn get_path<'a>(v: &'a Json, path: &str) -> &'a Json {
    let mut cur = v;
    for part in path.split(SEP).skip(1) {
        cur = &cur[part];
    }
    cur
}

fn remove_path(v: &mut Json, path: &str) {
    let parts: Vec<&str> = path.split(SEP).skip(1).collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = v;
    for p in parents {
        match cur.get_mut(*p) {
            Some(c) => cur = c,
            None => return,
        }
    }
    if let Some(o) = cur.as_object_mut() {
        o.remove(*last);
    }
}

/// Field ownership of one object: field path → managers (co-owners when they applied the same
/// value).
pub type Owners = BTreeMap<String, Vec<String>>;

/// Record that `manager` now owns the leaf fields that differ between `old` and `new` (non-apply
/// writes: create, update, patch).
pub fn record_update(owners: &mut Owners, old: Option<&Json>, new: &Json, manager: &str) {
    let before = old.map(leaf_paths).unwrap_or_default();
    for (p, v) in leaf_paths(new) {
        if before.get(&p) != Some(&v) {
            owners.insert(p, vec![manager.to_string()]);
        }
    }
}

/// Server-side apply of `applied` by `manager` onto `existing` (None = create).
pub fn apply(
    existing: Option<&Json>,
    applied: &Json,
    manager: &str,
    force: bool,
    owners: &mut Owners,
    resource: &str,
    name: &str,
) -> Result<Json, ApiError> {
    let new_paths = leaf_paths(applied);
    let mut conflicts: Vec<(String, String)> = Vec::new();
    let mut changed = Vec::new();
    if let Some(cur) = existing {
        for (p, v) in &new_paths {
            if subset(v, get_path(cur, p)) {
                continue;
            }
            changed.push(p.clone());
            for owner in owners.get(p).into_iter().flatten() {
                if owner != manager {
                    conflicts.push((p.clone(), owner.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Json> = conflicts
            .iter()
            .map(|(p, m)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m:?} using v1"), "field": display_path(p)}))
            .collect();
        let msg = if conflicts.len() == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with {:?} using v1: {}",
                conflicts[0].1,
                display_path(&conflicts[0].0)
            )
        } else {
            let lines: Vec<String> = conflicts
                .iter()
                .map(|(p, m)| format!("conflict with {m:?} using v1: {}", display_path(p)))
                .collect();
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        return Err(ApiError::new(
            409,
            "Conflict",
            msg,
            Some(json!({"name": name, "kind": resource, "causes": causes})),
        ));
    }
    let mut result = existing.cloned().unwrap_or(Json::Null);
    strategic_merge(&mut result, applied);
    // Fields this manager applied before but no longer does lose it as owner; a field nobody
    // owns any more is removed.
    let previously: Vec<String> = owners
        .iter()
        .filter(|(_, ms)| ms.iter().any(|m| m == manager))
        .map(|(p, _)| p.clone())
        .collect();
    for p in previously {
        if !new_paths.contains_key(&p) {
            let ms = owners.entry(p.clone()).or_default();
            ms.retain(|m| m != manager);
            if ms.is_empty() {
                owners.remove(&p);
                remove_path(&mut result, &p);
            }
        }
    }
    for p in new_paths.keys() {
        let ms = owners.entry(p.clone()).or_default();
        if changed.contains(p) || existing.is_none() {
            // A changed value (forced or unowned) belongs to the applier alone.
            *ms = vec![manager.to_string()];
        } else if !ms.iter().any(|m| m == manager) {
            ms.push(manager.to_string());
        }
    }
    Ok(result)
}

/// Parse an apply body: YAML or JSON.
pub fn parse_apply_body(body: &[u8]) -> Result<Json, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Json>(body) {
        return Ok(v);
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("apply patch is not UTF-8"))?;
    yaml_serde::from_str::<Json>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 9}, "l": [3]}));
        assert_eq!(t, json!({"b": {"c": 9, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merges_named_lists() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}], "args": ["1"]}});
        strategic_merge(
            &mut t,
            &json!({"spec": {"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}], "args": ["2"], "$setElementOrder/containers": []}}),
        );
        assert_eq!(t["spec"]["containers"].as_array().expect("list").len(), 3);
        assert_eq!(t["spec"]["containers"][1]["image"], "z");
        assert_eq!(t["spec"]["args"], json!(["2"]));
        assert!(t["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn apply_ownership_and_conflicts() {
        let mut owners = BTreeMap::new();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let created =
            apply(None, &cm, "one", false, &mut owners, "configmaps", "c").expect("create");
        assert_eq!(created["data"]["a"], "1");
        // Another manager changing an owned field conflicts.
        let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "X"}});
        let e = apply(
            Some(&created),
            &other,
            "two",
            false,
            &mut owners,
            "configmaps",
            "c",
        )
        .expect_err("conflict");
        assert_eq!(e.code, 409);
        assert_eq!(
            e.status["details"]["causes"][0]["reason"],
            "FieldManagerConflict"
        );
        assert_eq!(e.status["details"]["causes"][0]["field"], ".data.a");
        let forced = apply(
            Some(&created),
            &other,
            "two",
            true,
            &mut owners,
            "configmaps",
            "c",
        )
        .expect("force");
        assert_eq!(forced["data"]["a"], "X");
        // The first manager drops b: it is removed.
        let shrink =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
        let r = apply(
            Some(&forced),
            &shrink,
            "one",
            false,
            &mut owners,
            "configmaps",
            "c",
        )
        .expect("shrink");
        assert!(r["data"].get("b").is_none());
        assert_eq!(r["data"]["a"], "X");
    }

    #[test]
    fn applying_the_defaulted_value_is_not_a_conflict() {
        let mut owners = BTreeMap::new();
        let key = format!("{SEP}spec{SEP}containers");
        owners.insert(key.clone(), vec!["kubectl-client-side-apply".to_string()]);
        let cur = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "IfNotPresent"}]}});
        let same = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}});
        assert!(apply(
            Some(&cur),
            &same,
            "kubectl",
            false,
            &mut owners,
            "pods",
            "p"
        )
        .is_ok());
        let changed = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "y"}]}});
        owners.insert(key, vec!["other".to_string()]);
        let dotted = json!({"metadata": {"name": "p", "annotations": {"a.b/c": "1"}}});
        let mut o2 = BTreeMap::new();
        let created = apply(None, &dotted, "m1", false, &mut o2, "pods", "p").expect("create");
        assert!(apply(Some(&created), &dotted, "m2", false, &mut o2, "pods", "p").is_ok());
        let e = apply(
            Some(&created),
            &json!({"metadata": {"name": "p", "annotations": {"a.b/c": "2"}}}),
            "m2",
            false,
            &mut o2,
            "pods",
            "p",
        )
        .expect_err("conflict");
        assert_eq!(
            e.status["details"]["causes"][0]["field"],
            ".metadata.annotations.a.b/c"
        );
        assert!(apply(
            Some(&cur),
            &changed,
            "kubectl",
            false,
            &mut owners,
            "pods",
            "p"
        )
        .is_err());
    }

    #[test]
    fn apply_body_yaml_or_json() {
        assert_eq!(
            parse_apply_body(b"a: 1\nb: [x]\n").expect("yaml"),
            json!({"a": 1, "b": ["x"]})
        );
        assert_eq!(
            parse_apply_body(br#"{"a":1}"#).expect("json"),
            json!({"a": 1})
        );
    }
}
