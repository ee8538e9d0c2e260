//! A small, deterministic YAML emitter for JSON values, in kubectl's layout (sequence items at their
//! parent key's indent, multi-line strings as literal blocks).
//!
//! Why not `yaml_serde::to_string`: it leaves YAML 1.1 words (`yes`, `on`, `y`) and forms such as
//! `1_000` unquoted, which kubectl's YAML 1.1 reader turns into booleans and numbers. This emitter
//! writes a string plain only when it is unambiguous in both YAML 1.1 and 1.2, and double-quotes it
//! otherwise, so the output reads back as the same JSON everywhere (the tests round-trip it).
//!
//! May import: std, serde_json.

use serde_json::Value;

/// Render one value as a YAML document body (no `---` marker), ending with a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => emit_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => emit_seq(a, 0, &mut out),
        _ => {
            out.push_str(&scalar(v, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn emit_map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let mut first = true;
    for (k, v) in m {
        if !first {
            pad(indent, out);
        }
        first = false;
        out.push_str(&quote_if_needed(k));
        out.push(':');
        emit_value_after_key(v, indent, out);
    }
}

/// Emit `v` after `key:`; block collections go on the following lines.
fn emit_value_after_key(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            pad(indent + 2, out);
            emit_map(m, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            pad(indent, out);
            emit_seq(a, indent, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(v, indent + 2));
            out.push('\n');
        }
    }
}

/// A sequence whose first `- ` is already positioned (the caller padded the first line).
fn emit_seq(a: &[Value], indent: usize, out: &mut String) {
    let mut first = true;
    for item in a {
        if !first {
            pad(indent, out);
        }
        first = false;
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => emit_map(m, indent + 2, out),
            Value::Array(inner) if !inner.is_empty() => emit_seq(inner, indent + 2, out),
            _ => {
                out.push_str(&scalar(item, indent + 2));
                out.push('\n');
            }
        }
    }
}

/// A scalar (or empty collection) in flow position. `indent` is the indent of literal block lines.
fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) => match literal_block(s, indent) {
            Some(block) => block,
            None => quote_if_needed(s),
        },
    }
}

/// YAML 1.1 and 1.2 words that read as booleans or null when plain.
const RESERVED: [&str; 12] = [
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf", "none",
];

/// True when `s` can be written plain and reads back as the same string under YAML 1.1 and 1.2.
fn is_plain_safe(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        return false;
    }
    let body_ok = b
        .iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'/' | b'-'));
    if !body_ok {
        // allow a single ':' inside names like images (`repo:tag`) as long as it starts with a
        // letter and has no ": " (impossible here: no spaces) and no sexagesimal digits-only form.
        let colon_ok = b[0].is_ascii_alphabetic()
            && b.iter().all(|&c| {
                c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'/' | b'-' | b':' | b'@')
            })
            && !s.ends_with(':');
        return colon_ok;
    }
    if b[0].is_ascii_alphabetic() || b[0] == b'/' {
        return true;
    }
    // Digits first: allow only `<digits>[.<digits>]<letters>` quantities such as 2Gi or 500m, whose
    // unit does not start with an exponent or radix letter.
    if b[0].is_ascii_digit() {
        let num_end = b
            .iter()
            .position(|c| !(c.is_ascii_digit() || *c == b'.'))
            .unwrap_or(b.len());
        let (num, unit) = s.split_at(num_end);
        return !unit.is_empty()
            && num.matches('.').count() <= 1
            && !num.ends_with('.')
            && unit.bytes().all(|c| c.is_ascii_alphabetic())
            && !unit.starts_with(['e', 'E', 'x', 'X', 'o', 'O', 'b', 'B']);
    }
    false
}

fn quote_if_needed(s: &str) -> String {
    if is_plain_safe(s) {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

/// True for characters YAML allows unescaped (c-printable minus the BOM).
fn is_printable(c: char) -> bool {
    // NEL and the Unicode line/paragraph separators are printable but read as line breaks by YAML
    // 1.1 parsers, so they are escaped too.
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '\u{feff}' | '\u{2028}' | '\u{2029}')
}

/// A double-quoted YAML scalar with every non-printable character escaped.
pub fn double_quoted(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            '\r' => o.push_str("\\r"),
            c if is_printable(c) => o.push(c),
            c if (c as u32) <= 0xff => o.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    o.push('"');
    o
}

/// A literal block (`|`, `|-`, `|+`) for multi-line text, or None when the text cannot be one
/// (carriage returns, non-printable characters, a first line starting with a space).
fn literal_block(s: &str, indent: usize) -> Option<String> {
    if !s.contains('\n')
        || s.chars()
            .any(|c| c == '\r' || (c != '\n' && !is_printable(c)))
    {
        return None;
    }
    let first_content = s.lines().find(|l| !l.is_empty())?;
    if first_content.starts_with([' ', '\t']) {
        return None;
    }
    let trailing = s.len() - s.trim_end_matches('\n').len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    let mut o = format!("|{chomp}");
    let body = if trailing > 0 { &s[..s.len() - 1] } else { s };
    for line in body.split('\n') {
        o.push('\n');
        if !line.is_empty() {
            for _ in 0..indent {
                o.push(' ');
            }
            o.push_str(line);
        }
    }
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(v: &Value) {
        let y = to_yaml(v);
        let back: Value = yaml_serde::from_str(&y).unwrap_or_else(|e| panic!("{e}\n{y}"));
        assert_eq!(&back, v, "yaml was:\n{y}");
    }

    #[test]
    fn ambiguous_strings_are_quoted_and_round_trip() {
        let words = [
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "n",
            "true",
            "null",
            "~",
            "1",
            "0o10",
            "1e3",
            "1_000",
            "1:20",
            "2024-01-01",
            "-",
            "-1",
            ".5",
            "=",
            "<redacted>",
            " lead",
            "trail ",
            "",
            "#x",
            "a: b",
            "a #b",
            "@x",
            "`x",
            "%x",
            "!x",
            "&x",
            "*x",
            "[x",
            "{x",
            "|",
            ">",
            "?",
            "'",
            "\"",
            "2Gi",
            "500m",
            "1.5Gi",
            "1e3m",
            "0x1F",
            "0b101",
            "1.",
            "1.2.3Gi",
            "ghcr.io/x/y:1.2",
            "x:",
            "\u{7f}del",
            "\u{feff}bom",
            "tab\there",
            "nvidia.com/gpu",
            "a\u{85}b",
            "a\u{2028}b",
            "☃",
        ];
        let v = json!({ "words": words.to_vec(), "keys": { "yes": 1, "1": 2, "a b": 3, "": 4 } });
        roundtrip(&v);
        let y = to_yaml(&v);
        assert!(y.contains("- \"yes\"\n"));
        assert!(y.contains("- 2Gi\n"));
        assert!(y.contains("- \"1e3m\"\n"));
        assert!(y.contains("- ghcr.io/x/y:1.2\n"));
    }

    #[test]
    fn multi_line_strings_use_literal_blocks() {
        let v = json!({
            "data": {
                "one": "a\n  b\n",
                "nonl": "a\nb",
                "many": "a\n\n\n",
                "blank": "\nx\n",
                "indented": "  a\nb\n",
                "crlf": "a\r\nb\n",
                "only": "\n\n",
            },
            "list": ["x\ny\n", {"k": "p\nq\n"}],
            "empty": {}, "none": [], "n": null, "b": false, "num": 3
        });
        roundtrip(&v);
        let y = to_yaml(&v);
        assert!(y.contains("  one: |\n    a\n      b\n"), "{y}");
        assert!(y.contains("  nonl: |-\n    a\n    b\n"), "{y}");
        assert!(y.contains("empty: {}\n"));
        assert!(y.contains("\"none\": []\n"));
    }

    #[test]
    fn kubectl_layout() {
        let v = json!({"spec": {"containers": [{"name": "a", "args": ["x", "z"]}]}});
        assert_eq!(
            to_yaml(&v),
            "spec:\n  containers:\n  - args:\n    - x\n    - z\n    name: a\n"
        );
        roundtrip(&json!([[1, [2]], {"a": [[]]}]));
    }
}
