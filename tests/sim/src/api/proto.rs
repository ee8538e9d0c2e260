//! Decoding of the Kubernetes protobuf request bodies that kubectl's typed clients send
//! (`application/vnd.kubernetes.protobuf`: "k8s\0" + runtime.Unknown). Only the kinds kubectl
//! creates through typed clients are known (ConfigMap, Secret, Namespace, SelfSubjectAccessReview,
//! DeleteOptions); anything else is reported as unsupported. Responses are always JSON (kubectl
//! accepts both).
//!
//! May import: std, serde_json, base64.

use base64::Engine;
use serde_json::{json, Map, Value as Json};

/// How a field is turned into JSON.
#[derive(Clone, Copy)]
enum F {
    Str,
    Int,
    Bool,
    RepStr,
    MapStr,
    MapBytes,
    Msg(&'static [(u64, &'static str, F)]),
    Time,
}

const OBJECT_META: &[(u64, &str, F)] = &[
    (1, "name", F::Str),
    (2, "generateName", F::Str),
    (3, "namespace", F::Str),
    (5, "uid", F::Str),
    (6, "resourceVersion", F::Str),
    (7, "generation", F::Int),
    (8, "creationTimestamp", F::Time),
    (9, "deletionTimestamp", F::Time),
    (10, "deletionGracePeriodSeconds", F::Int),
    (11, "labels", F::MapStr),
    (12, "annotations", F::MapStr),
    (14, "finalizers", F::RepStr),
];

const CONFIG_MAP: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapStr),
    (3, "binaryData", F::MapBytes),
    (4, "immutable", F::Bool),
];

const SECRET: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "data", F::MapBytes),
    (3, "type", F::Str),
    (4, "stringData", F::MapStr),
    (5, "immutable", F::Bool),
];

const NAMESPACE: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (2, "spec", F::Msg(&[(1, "finalizers", F::RepStr)])),
    (3, "status", F::Msg(&[(1, "phase", F::Str)])),
];

const RESOURCE_ATTRS: &[(u64, &str, F)] = &[
    (1, "namespace", F::Str),
    (2, "verb", F::Str),
    (3, "group", F::Str),
    (4, "version", F::Str),
    (5, "resource", F::Str),
    (6, "subresource", F::Str),
    (7, "name", F::Str),
];

const SSAR: &[(u64, &str, F)] = &[
    (1, "metadata", F::Msg(OBJECT_META)),
    (
        2,
        "spec",
        F::Msg(&[
            (1, "resourceAttributes", F::Msg(RESOURCE_ATTRS)),
            (
                2,
                "nonResourceAttributes",
                F::Msg(&[(1, "path", F::Str), (2, "verb", F::Str)]),
            ),
        ]),
    ),
];

const DELETE_OPTIONS: &[(u64, &str, F)] = &[
    (1, "gracePeriodSeconds", F::Int),
    (
        2,
        "preconditions",
        F::Msg(&[(1, "uid", F::Str), (2, "resourceVersion", F::Str)]),
    ),
    (3, "orphanDependents", F::Bool),
    (4, "propagationPolicy", F::Str),
    (5, "dryRun", F::RepStr),
];

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.varint()? as usize;
        let s = self.b.get(self.i..self.i + n)?;
        self.i += n;
        Some(s)
    }
    /// (field, wire type, payload: varint value or bytes)
    fn field(&mut self) -> Option<(u64, u64, u64, &'a [u8])> {
        let tag = self.varint()?;
        let (num, wt) = (tag >> 3, tag & 7);
        match wt {
            0 => Some((num, wt, self.varint()?, &[])),
            1 => {
                let s = self.b.get(self.i..self.i + 8)?;
                self.i += 8;
                Some((num, wt, 0, s))
            }
            2 => Some((num, wt, 0, self.bytes()?)),
            5 => {
                let s = self.b.get(self.i..self.i + 4)?;
                self.i += 4;
                Some((num, wt, 0, s))
            }
            _ => None,
        }
    }
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }
}

fn map_entry(b: &[u8], bytes_value: bool) -> Option<(String, Json)> {
    let mut r = Reader { b, i: 0 };
    let (mut k, mut v) = (String::new(), json!(""));
    while !r.done() {
        let (n, _, _, payload) = r.field()?;
        match n {
            1 => k = String::from_utf8_lossy(payload).into_owned(),
            2 if bytes_value => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(payload))
            }
            2 => v = json!(String::from_utf8_lossy(payload)),
            _ => {}
        }
    }
    Some((k, v))
}

fn decode_msg(b: &[u8], schema: &[(u64, &str, F)]) -> Option<Json> {
    let mut out = Map::new();
    let mut r = Reader { b, i: 0 };
    while !r.done() {
        let (num, _wt, int, payload) = r.field()?;
        let Some((_, name, f)) = schema.iter().find(|(n, _, _)| *n == num) else {
            continue;
        };
        let name = name.to_string();
        match f {
            // Go's omitempty: gogo-protobuf writes empty strings and zero numbers too.
            F::Str if payload.is_empty() => {}
            F::Int if int == 0 => {}
            F::Str => {
                out.insert(name, json!(String::from_utf8_lossy(payload)));
            }
            F::Int => {
                out.insert(name, json!(int as i64));
            }
            F::Bool => {
                out.insert(name, json!(int != 0));
            }
            F::RepStr => {
                let e = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = e.as_array_mut() {
                    a.push(json!(String::from_utf8_lossy(payload)));
                }
            }
            F::MapStr | F::MapBytes => {
                let (k, v) = map_entry(payload, matches!(f, F::MapBytes))?;
                let e = out.entry(name).or_insert_with(|| json!({}));
                e[k] = v;
            }
            F::Msg(s) => {
                out.insert(name, decode_msg(payload, s)?);
            }
            F::Time => {
                let t = decode_msg(payload, &[(1, "seconds", F::Int)])?;
                out.insert(
                    name,
                    json!(super::util::rfc3339(t["seconds"].as_i64().unwrap_or(0))),
                );
            }
        }
    }
    Some(Json::Object(out))
}

/// Decode a protobuf request body to the JSON object the JSON path would have received.
pub fn decode(body: &[u8]) -> Result<Json, String> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("protobuf body without the k8s envelope")?;
    let unknown = {
        let mut r = Reader { b: rest, i: 0 };
        let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
        while !r.done() {
            let (n, _, _, payload) = r.field().ok_or("truncated protobuf envelope")?;
            match n {
                1 => {
                    let tm = decode_msg(payload, &[(1, "apiVersion", F::Str), (2, "kind", F::Str)])
                        .ok_or("bad typeMeta")?;
                    api_version = tm["apiVersion"].as_str().unwrap_or_default().to_string();
                    kind = tm["kind"].as_str().unwrap_or_default().to_string();
                }
                2 => raw = payload,
                _ => {}
            }
        }
        (api_version, kind, raw)
    };
    let (api_version, kind, raw) = unknown;
    let schema = match kind.as_str() {
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        "Namespace" => NAMESPACE,
        "SelfSubjectAccessReview" => SSAR,
        "DeleteOptions" => DELETE_OPTIONS,
        "SelfSubjectReview" => &[(1, "metadata", F::Msg(OBJECT_META))],
        other => {
            return Err(format!(
                "the simulated API server cannot decode protobuf {other:?}; send JSON"
            ))
        }
    };
    let mut obj = decode_msg(raw, schema).ok_or_else(|| format!("malformed protobuf {kind}"))?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![((num << 3) | 2) as u8, payload.len() as u8];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decodes_a_configmap() {
        let meta = [
            field(1, b"cfg"),
            field(11, &[field(1, b"app"), field(2, b"x")].concat()),
        ]
        .concat();
        let cm = [
            field(1, &meta),
            field(2, &[field(1, b"a"), field(2, b"1")].concat()),
            field(3, &[field(1, b"b"), field(2, &[0xff])].concat()),
        ]
        .concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let mut body = b"k8s\0".to_vec();
        body.extend([field(1, &tm), field(2, &cm)].concat());
        let j = decode(&body).expect("decode");
        assert_eq!(j["kind"], "ConfigMap");
        assert_eq!(j["metadata"]["name"], "cfg");
        assert_eq!(j["metadata"]["labels"]["app"], "x");
        assert_eq!(j["data"]["a"], "1");
        assert_eq!(j["binaryData"]["b"], "/w==");
        let mut bad = b"k8s\0".to_vec();
        bad.extend(field(1, &[field(1, b"v1"), field(2, b"Pod")].concat()));
        assert!(decode(&bad).is_err());
    }
}
