//! `start --dry-run` output: every object as a multi-document YAML stream or a JSON `List`, with
//! every Secret value replaced by `<redacted>` (keys kept, so the user sees what would be injected).
//!
//! May import: error, manifest::yaml, serde_json.

use super::yaml;
use crate::error::{Error, Result};
use serde_json::{json, Value};

/// What every Secret value becomes in redacted output.
pub const REDACTED: &str = "<redacted>";

/// Output format of the dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Yaml,
    Json,
}

impl OutputFormat {
    /// Parse `-o yaml|json`.
    pub fn parse(s: &str) -> Result<OutputFormat> {
        match s {
            "yaml" | "yml" => Ok(OutputFormat::Yaml),
            "json" => Ok(OutputFormat::Json),
            _ => Err(Error::usage(
                format!("unknown output format {s:?}"),
                Some("use -o yaml or -o json".into()),
            )),
        }
    }
}

/// A copy of `obj` with Secret `data` and `stringData` values replaced by `<redacted>`. Other kinds
/// are returned unchanged (kodama puts secret values only in Secrets).
pub fn redact(obj: &Value) -> Value {
    let mut o = obj.clone();
    if o["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            if let Some(m) = o.get_mut(field).and_then(Value::as_object_mut) {
                for v in m.values_mut() {
                    *v = json!(REDACTED);
                }
            }
        }
    }
    o
}

/// Render `objects` for `start --dry-run`. YAML: one document per object, each opened by `---`.
/// JSON: a `v1` `List`, pretty-printed. Both end with a newline.
pub fn render_dry_run(
    objects: &[Value],
    format: OutputFormat,
    redact_secrets: bool,
) -> Result<String> {
    let objs: Vec<Value> = objects
        .iter()
        .map(|o| if redact_secrets { redact(o) } else { o.clone() })
        .collect();
    match format {
        OutputFormat::Yaml => {
            let mut out = String::new();
            for o in &objs {
                out.push_str("---\n");
                out.push_str(&yaml::to_yaml(o));
            }
            Ok(out)
        }
        OutputFormat::Json => {
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": objs });
            let mut s = serde_json::to_string_pretty(&list)
                .map_err(|e| Error::msg(format!("rendering JSON: {e}")))?;
            s.push('\n');
            Ok(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_secret_values_are_redacted() {
        let s = json!({"kind": "Secret", "data": {"A": "c2VjcmV0"}, "stringData": {"B": "x"}});
        let r = redact(&s);
        assert_eq!(r["data"]["A"], REDACTED);
        assert_eq!(r["stringData"]["B"], REDACTED);
        let cm = json!({"kind": "ConfigMap", "data": {"A": "visible"}});
        assert_eq!(redact(&cm), cm);
    }

    #[test]
    fn formats() {
        let objs = vec![json!({"kind": "ConfigMap", "apiVersion": "v1"})];
        let y = render_dry_run(&objs, OutputFormat::Yaml, true).expect("yaml");
        assert_eq!(y, "---\napiVersion: v1\nkind: ConfigMap\n");
        let j = render_dry_run(&objs, OutputFormat::Json, true).expect("json");
        let v: Value = serde_json::from_str(&j).expect("parse");
        assert_eq!(v["kind"], "List");
        assert_eq!(v["items"][0]["kind"], "ConfigMap");
        assert!(OutputFormat::parse("xml").is_err());
    }
}
