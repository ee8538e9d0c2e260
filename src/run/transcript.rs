//! Rendering Claude Code stream-json transcripts for `kubectl kodama logs`, and sanitising remote
//! text before it reaches the user's terminal.
//!
//! One line in, zero or more lines out: `system/init` (model, cwd), assistant text, tool calls (name
//! plus a compact input), tool results (truncated, marked when `is_error`), the final `result` (cost,
//! duration, turns, error flag, text). Unknown event types are shown compactly; lines that are not
//! JSON are shown as they are. Everything that came from the pod passes through [`sanitize`].
//!
//! May import: error, term.

use serde_json::Value;
use std::collections::HashMap;

/// Limits for rendering.
#[derive(Debug, Clone)]
pub struct RenderOpts {
    /// Tool results longer than this many characters are cut.
    pub max_result_chars: usize,
    /// Tool results with more lines than this are cut.
    pub max_result_lines: usize,
    /// Tool-call inputs longer than this are cut.
    pub max_input_chars: usize,
}

impl Default for RenderOpts {
    fn default() -> Self {
        RenderOpts {
            max_result_chars: 800,
            max_result_lines: 8,
            max_input_chars: 200,
        }
    }
}

/// Remove terminal control sequences and control characters from remote text: CSI, OSC, DCS/SOS/
/// PM/APC strings, other ESC sequences, C1 controls, bidirectional overrides, and every C0 control
/// except `\n` and `\t`. The implementation is [`crate::term::sanitize_for_tty`]; this name stays
/// for callers in `run`.
pub fn sanitize(s: &str) -> String {
    crate::term::sanitize_for_tty(s)
}

/// Sanitise raw bytes (lossy UTF-8).
pub fn sanitize_bytes(b: &[u8]) -> String {
    sanitize(&String::from_utf8_lossy(b))
}

fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max).collect();
    t.push('…');
    t
}

fn one_line(s: &str, max: usize) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate_chars(&joined, max)
}

/// Turns stream-json lines into readable text; keeps the tool-use id → tool name map across lines.
#[derive(Debug, Default)]
pub struct Renderer {
    opts: RenderOpts,
    tools: HashMap<String, String>,
}

impl Renderer {
    /// A renderer with the given limits.
    pub fn new(opts: RenderOpts) -> Renderer {
        Renderer {
            opts,
            tools: HashMap::new(),
        }
    }

    /// Render one transcript line (without its newline). The result is sanitised and ends with a
    /// newline unless it is empty (an event with nothing to show).
    pub fn render(&mut self, line: &[u8]) -> String {
        let trimmed = line.strip_suffix(b"\r").unwrap_or(line);
        if trimmed.iter().all(|b| b.is_ascii_whitespace()) {
            return String::new();
        }
        let v: Value = match serde_json::from_slice(trimmed) {
            Ok(v @ Value::Object(_)) => v,
            _ => return format!("{}\n", sanitize_bytes(trimmed)),
        };
        let mut out = String::new();
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        match ty {
            "system" => self.system(&v, &mut out),
            "assistant" => self.assistant(&v, &mut out),
            "user" => self.user(&v, &mut out),
            "result" => self.result(&v, &mut out),
            _ => {
                let compact = v.to_string();
                out.push_str(&format!(
                    "[{}] {}\n",
                    if ty.is_empty() { "?" } else { ty },
                    truncate_chars(&compact, self.opts.max_input_chars)
                ));
            }
        }
        sanitize(&out)
    }

    fn system(&mut self, v: &Value, out: &mut String) {
        let sub = v.get("subtype").and_then(Value::as_str).unwrap_or("");
        if sub == "init" {
            let model = v.get("model").and_then(Value::as_str).unwrap_or("?");
            let cwd = v.get("cwd").and_then(Value::as_str).unwrap_or("?");
            out.push_str(&format!("[init] model {model}, cwd {cwd}\n"));
        } else {
            out.push_str(&format!(
                "[system {sub}] {}\n",
                truncate_chars(&v.to_string(), self.opts.max_input_chars)
            ));
        }
    }

    fn content(v: &Value) -> Vec<Value> {
        match v.get("message").and_then(|m| m.get("content")) {
            Some(Value::Array(a)) => a.clone(),
            Some(Value::String(s)) => vec![serde_json::json!({"type":"text","text":s})],
            _ => vec![],
        }
    }

    fn assistant(&mut self, v: &Value, out: &mut String) {
        for block in Self::content(v) {
            match block.get("type").and_then(Value::as_str).unwrap_or("") {
                "text" => {
                    let t = block.get("text").and_then(Value::as_str).unwrap_or("");
                    if !t.trim().is_empty() {
                        out.push_str(t.trim_end());
                        out.push('\n');
                    }
                }
                "thinking" => {}
                "tool_use" => {
                    let name = block.get("name").and_then(Value::as_str).unwrap_or("?");
                    if let Some(id) = block.get("id").and_then(Value::as_str) {
                        self.tools.insert(id.to_string(), name.to_string());
                    }
                    let input = block.get("input").cloned().unwrap_or(Value::Null);
                    out.push_str(&format!("→ {name} {}\n", self.compact_input(name, &input)));
                }
                other => out.push_str(&format!("[assistant {other}]\n")),
            }
        }
    }

    fn compact_input(&self, name: &str, input: &Value) -> String {
        let key = match name {
            "Bash" => "command",
            "Read" | "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => "file_path",
            "Grep" | "Glob" => "pattern",
            "WebFetch" => "url",
            "WebSearch" => "query",
            "Task" => "description",
            _ => "",
        };
        if let Some(s) = input.get(key).and_then(Value::as_str) {
            return one_line(s, self.opts.max_input_chars);
        }
        truncate_chars(&input.to_string(), self.opts.max_input_chars)
    }

    fn user(&mut self, v: &Value, out: &mut String) {
        for block in Self::content(v) {
            match block.get("type").and_then(Value::as_str).unwrap_or("") {
                "tool_result" => {
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let name = self.tools.get(id).cloned().unwrap_or_else(|| "tool".into());
                    let is_error = block
                        .get("is_error")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let text = match block.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(a)) => a
                            .iter()
                            .filter_map(|x| x.get("text").and_then(Value::as_str))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    let head = if is_error { "error" } else { "ok" };
                    out.push_str(&format!("← {name} {head}"));
                    let body = self.cut_result(&text);
                    if body.is_empty() {
                        out.push('\n');
                    } else {
                        out.push('\n');
                        for l in body.lines() {
                            out.push_str("  ");
                            out.push_str(l);
                            out.push('\n');
                        }
                    }
                }
                "text" => {
                    let t = block.get("text").and_then(Value::as_str).unwrap_or("");
                    out.push_str(&format!(
                        "[user] {}\n",
                        one_line(t, self.opts.max_input_chars)
                    ));
                }
                _ => {}
            }
        }
    }

    fn cut_result(&self, text: &str) -> String {
        let text = text.trim_end();
        let lines: Vec<&str> = text.lines().collect();
        let mut body = lines
            .iter()
            .take(self.opts.max_result_lines)
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        let mut cut = lines.len() > self.opts.max_result_lines;
        if body.chars().count() > self.opts.max_result_chars {
            body = body.chars().take(self.opts.max_result_chars).collect();
            cut = true;
        }
        if cut {
            body.push_str(&format!(
                "\n… ({} lines, {} chars in all)",
                lines.len(),
                text.chars().count()
            ));
        }
        body
    }

    fn result(&mut self, v: &Value, out: &mut String) {
        let is_error = v.get("is_error").and_then(Value::as_bool).unwrap_or(false);
        let sub = v.get("subtype").and_then(Value::as_str).unwrap_or("");
        let mut parts = vec![if is_error {
            format!("error ({sub})")
        } else {
            sub.to_string()
        }];
        if let Some(t) = v.get("num_turns").and_then(Value::as_u64) {
            parts.push(format!("{t} turns"));
        }
        if let Some(d) = v.get("duration_ms").and_then(Value::as_u64) {
            parts.push(format!("{:.1}s", d as f64 / 1000.0));
        }
        if let Some(c) = v.get("total_cost_usd").and_then(Value::as_f64) {
            parts.push(format!("${c:.4}"));
        }
        out.push_str(&format!("[result] {}\n", parts.join(" · ")));
        if let Some(t) = v.get("result").and_then(Value::as_str) {
            if !t.trim().is_empty() {
                out.push_str(t.trim_end());
                out.push('\n');
            }
        }
    }
}

/// Render a whole transcript (for `logs` without `-f`). `raw` passes lines through, sanitised.
pub fn render_all(data: &[u8], raw: bool, opts: RenderOpts) -> String {
    let mut r = Renderer::new(opts);
    let mut out = String::new();
    for line in data.split(|b| *b == b'\n') {
        if raw {
            if !line.is_empty() {
                out.push_str(&sanitize_bytes(line));
                out.push('\n');
            }
        } else {
            out.push_str(&r.render(line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_escapes_and_controls() {
        let s = "a\u{1b}[31mred\u{1b}[0m b\u{1b}]0;title\u{7}c\u{1b}]8;;http://x\u{1b}\\d\re\u{0}f\u{9b}g\n\th";
        assert_eq!(sanitize(s), "ared bcdefg\n\th");
        assert_eq!(sanitize("\u{1b}(Bx\u{1b}Py\u{1b}\\z"), "xz");
        assert_eq!(sanitize("日本語 ok"), "日本語 ok");
    }

    fn render(lines: &[&str]) -> String {
        let mut r = Renderer::new(RenderOpts::default());
        lines.iter().map(|l| r.render(l.as_bytes())).collect()
    }

    #[test]
    fn renders_each_event_kind() {
        let out = render(&[
            r#"{"type":"system","subtype":"init","cwd":"/workspace","model":"claude-sonnet-4-5","tools":["Bash"]}"#,
            r#"{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"ls -la\n  src"}}]}}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"a\nb","is_error":false}]}}"#,
            r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"boom"}],"is_error":true}]}}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"duration_ms":12345,"num_turns":3,"result":"All done.","total_cost_usd":0.0123}"#,
            r#"{"type":"stream_event","x":1}"#,
            "not json \u{1b}[2J at all",
        ]);
        assert!(
            out.contains("[init] model claude-sonnet-4-5, cwd /workspace\n"),
            "{out}"
        );
        assert!(out.contains("Let me look.\n"));
        assert!(out.contains("→ Bash ls -la src\n"), "{out}");
        assert!(out.contains("← Bash ok\n  a\n  b\n"), "{out}");
        assert!(out.contains("← Bash error\n  boom\n"), "{out}");
        assert!(
            out.contains("[result] success · 3 turns · 12.3s · $0.0123\nAll done.\n"),
            "{out}"
        );
        assert!(out.contains("[stream_event] {"), "{out}");
        assert!(out.contains("not json  at all\n"), "{out}");
        assert!(!out.contains('\u{1b}'));
    }

    #[test]
    fn long_tool_results_are_cut() {
        let text: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
        let ev = serde_json::json!({"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"x","content":text.join("\n")}]}});
        let out = render(&[&ev.to_string()]);
        assert!(
            out.contains("line 7\n") && !out.contains("line 8\n"),
            "{out}"
        );
        assert!(out.contains("(50 lines"), "{out}");
    }

    #[test]
    fn escape_sequences_inside_json_strings_are_removed() {
        let ev = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"hi \u001b]52;c;ZXZpbA==\u0007there"}]}}"#;
        assert_eq!(render(&[ev]), "hi there\n");
        let raw = render_all(b"{\"a\":1}\n\x1b[31mx\n", true, RenderOpts::default());
        assert_eq!(raw, "{\"a\":1}\nx\n");
    }
}
