//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!`exists) and field selectors
//! (`=`, `==`, `!=` over the field labels the real API server supports for our kinds).
//!
//! May import: std, serde_json, api::util.

use super::util::ApiError;
use serde_json::Value as Json;

/// One label requirement.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn bad(sel: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: {why} (in label selector {sel:?})"
    ))
}

fn set_values(sel: &str, rest: &str) -> Result<Vec<String>, ApiError> {
    let r = rest.trim();
    if !r.starts_with('(') || !r.ends_with(')') {
        return Err(bad(sel, "found '', expected: '('"));
    }
    Ok(r[1..r.len() - 1]
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

/// Parse a label selector.
pub fn parse_labels(sel: &str) -> Result<Vec<LabelReq>, ApiError> {
    let mut reqs = Vec::new();
    for term in split_top(sel) {
        if let Some(k) = term.strip_prefix('!') {
            reqs.push(LabelReq::NotExists(k.trim().to_string()));
        } else if let Some((k, v)) = term.split_once("!=") {
            reqs.push(LabelReq::NotEq(k.trim().to_string(), v.trim().to_string()));
        } else if let Some((k, v)) = term.split_once("==") {
            reqs.push(LabelReq::Eq(k.trim().to_string(), v.trim().to_string()));
        } else if let Some((k, v)) = term.split_once('=') {
            reqs.push(LabelReq::Eq(k.trim().to_string(), v.trim().to_string()));
        } else if let Some((k, rest)) = term.split_once(" notin ") {
            reqs.push(LabelReq::NotIn(
                k.trim().to_string(),
                set_values(sel, rest)?,
            ));
        } else if let Some((k, rest)) = term.split_once(" in ") {
            reqs.push(LabelReq::In(k.trim().to_string(), set_values(sel, rest)?));
        } else if term.contains(' ') || term.contains('(') {
            return Err(bad(sel, &format!("invalid requirement {term:?}")));
        } else {
            reqs.push(LabelReq::Exists(term));
        }
    }
    Ok(reqs)
}

/// Does an object's `metadata.labels` satisfy every requirement?
pub fn labels_match(reqs: &[LabelReq], obj: &Json) -> bool {
    let labels = &obj["metadata"]["labels"];
    let get = |k: &str| labels.get(k).and_then(|v| v.as_str());
    reqs.iter().all(|r| match r {
        LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
        LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
        LabelReq::In(k, vs) => get(k).map(|x| vs.iter().any(|v| v == x)).unwrap_or(false),
        LabelReq::NotIn(k, vs) => get(k).map(|x| !vs.iter().any(|v| v == x)).unwrap_or(true),
        LabelReq::Exists(k) => get(k).is_some(),
        LabelReq::NotExists(k) => get(k).is_none(),
    })
}

/// One field requirement: (field, equal?, value).
pub type FieldReq = (String, bool, String);

fn supported_fields(resource: &str) -> &'static [&'static str] {
    match resource {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "secrets" => &["type"],
        "namespaces" => &["status.phase"],
        _ => &[],
    }
}

/// Parse a field selector for `resource`; unsupported fields are a 400 like the real server.
pub fn parse_fields(resource: &str, sel: &str) -> Result<Vec<FieldReq>, ApiError> {
    let mut out = Vec::new();
    for term in sel.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
            (k, false, v)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, true, v)
        } else {
            return Err(ApiError::bad_request(format!(
                "invalid selector: '{sel}'; can't understand '{term}'"
            )));
        };
        let k = k.trim();
        if k != "metadata.name"
            && k != "metadata.namespace"
            && !supported_fields(resource).contains(&k)
        {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {k}"
            )));
        }
        out.push((k.to_string(), eq, v.trim().to_string()));
    }
    Ok(out)
}

fn field_value(obj: &Json, field: &str) -> String {
    let v = match field {
        "source" => &obj["source"]["component"],
        f => {
            let mut cur = obj;
            for part in f.split('.') {
                cur = &cur[part];
            }
            cur
        }
    };
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Does the object satisfy every field requirement?
pub fn fields_match(reqs: &[FieldReq], obj: &Json) -> bool {
    reqs.iter()
        .all(|(k, eq, v)| (field_value(obj, k) == *v) == *eq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        let m = |s: &str| labels_match(&parse_labels(s).expect("parse"), &o);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (web, db)"));
        assert!(!m("app notin (web)"));
        assert!(m("env notin (prod)"));
        assert!(m("!env"));
        assert!(!m("!app"));
        assert!(!m("env"));
        assert!(m(""));
        assert!(parse_labels("app in web").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod =
            json!({"metadata": {"name": "p", "namespace": "d"}, "status": {"phase": "Running"}});
        let f = |s: &str| fields_match(&parse_fields("pods", s).expect("parse"), &pod);
        assert!(f("metadata.name=p"));
        assert!(f("metadata.name==p,status.phase!=Pending"));
        assert!(!f("status.phase=Pending"));
        let e = parse_fields("pods", "spec.foo=x").expect_err("unsupported");
        assert_eq!(e.code, 400);
        assert_eq!(e.status["message"], "field label not supported: spec.foo");
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p"}});
        assert!(fields_match(
            &parse_fields("events", "involvedObject.kind=Pod,involvedObject.name=p").expect("p"),
            &ev
        ));
    }
}
