//! Coding-agent runs: the agent command line, run records on the claude-home volume, transcript
//! rendering for `logs`, and the in-pod watchdog.
//!
//! Layout of one run on the claude-home volume (the same for the binary runner and the sh fallback):
//! `<claude_home>/kodama/runs/<run-id>/{prompt.txt, meta.json, transcript.jsonl, stderr.log,
//! supervisor.log}` plus `<claude_home>/kodama/runs/current` (the id of the active run: the lock) and
//! `.../last` (the id of the most recent run).
//!
//! Submodules: `runner` (the hidden `run-agent` subcommand that runs inside the pod), `records`
//! (client side: start, list, status, follow through `Remote`), `transcript` (rendering stream-json),
//! `creds` (the "no Claude credentials" warning), `sys` (the few raw syscalls the runner needs).
//!
//! May import: error, remote, term (sanitising).

pub mod creds;
pub mod records;
pub mod runner;
pub mod transcript;

use serde::{Deserialize, Serialize};

/// The default agent: Claude Code, headless, stream-json on stdout, the prompt on stdin.
pub const DEFAULT_AGENT_COMMAND: &[&str] = &[
    "claude",
    "-p",
    "--output-format",
    "stream-json",
    "--verbose",
    "--dangerously-skip-permissions",
];
/// Appended to the agent command for a follow-up prompt (`prompt --continue`).
pub const DEFAULT_CONTINUE_ARGS: &[&str] = &["--continue"];
/// Default idle timeout: a run that prints nothing on stdout for this long is stopped (0 = off).
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 30 * 60;
/// Default grace after the final `result` event before a still-running agent is stopped.
pub const DEFAULT_RESULT_GRACE_SECS: u64 = 60;
/// Default time between SIGTERM and SIGKILL when the watchdog (or `stop`) ends a run.
pub const DEFAULT_KILL_GRACE_SECS: u64 = 10;
/// The runs directory below the claude home.
pub const RUNS_SUBDIR: &str = "kodama/runs";
/// Where the workspace is mounted in the pod.
pub const WORKSPACE: &str = "/workspace";

/// Placeholders that may appear inside any element of the agent command; they are replaced by plain
/// string substitution inside that one argv element (no shell is involved).
/// `{prompt_file}`: absolute path of the run's prompt.txt (the prompt is on stdin as well);
/// `{run_id}`: the run id; `{run_dir}`: the run directory.
pub const PLACEHOLDERS: &[&str] = &["{prompt_file}", "{run_id}", "{run_dir}"];

/// The state of a run as shown in list's AGENT column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    /// The lowercase word used in meta.json and the AGENT column.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

/// The agent's final result, taken from its `result` event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// `total_cost_usd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// `duration_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// `num_turns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<u64>,
    /// `result` (the final assistant text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `is_error`.
    #[serde(default)]
    pub is_error: bool,
}

impl RunResult {
    /// Parse a stream-json line; `Some` only for a `{"type":"result",...}` event.
    pub fn from_event(line: &[u8]) -> Option<RunResult> {
        let v: serde_json::Value = serde_json::from_slice(line).ok()?;
        if v.get("type")?.as_str()? != "result" {
            return None;
        }
        Some(RunResult {
            cost: v.get("total_cost_usd").and_then(|x| x.as_f64()),
            duration_ms: v.get("duration_ms").and_then(|x| x.as_u64()),
            turns: v.get("num_turns").and_then(|x| x.as_u64()),
            text: v.get("result").and_then(|x| x.as_str()).map(str::to_string),
            is_error: v.get("is_error").and_then(|x| x.as_bool()).unwrap_or(false),
        })
    }
}

/// meta.json of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMeta {
    pub id: String,
    /// SHA-256 of the prompt bytes, hex.
    #[serde(default)]
    pub prompt_sha256: String,
    /// The prompt's first line (at most 200 characters).
    #[serde(default)]
    pub prompt_first_line: String,
    #[serde(default)]
    pub prompt_bytes: u64,
    /// The agent argv after placeholder substitution.
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// RFC 3339 UTC.
    pub started_at: String,
    #[serde(default)]
    pub ended_at: Option<String>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub status: RunStatus,
    /// Why the run failed (or was stopped).
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub result: Option<RunResult>,
    /// "binary" (kodama's runner) or "sh" (the fallback launcher).
    #[serde(default)]
    pub launcher: String,
    /// Supervisor pid (in the pod's pid namespace).
    #[serde(default)]
    pub pid: Option<u32>,
    /// Agent pid; also its process-group id.
    #[serde(default)]
    pub agent_pid: Option<u32>,
    #[serde(default)]
    pub idle_timeout_secs: u64,
    #[serde(default)]
    pub result_grace_secs: u64,
    #[serde(default)]
    pub kill_grace_secs: u64,
}

/// Civil UTC date and time from seconds since the Unix epoch: (year, month, day, hour, min, sec).
pub fn utc_parts(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// RFC 3339 UTC timestamp, second precision.
pub fn rfc3339(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Seconds since the epoch now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A run id: `YYYYMMDD-HHMMSS-xxxx` (UTC, sortable), the suffix from the pid and clock.
pub fn new_run_id(secs: u64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(secs);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{salt:04x}")
}

/// True for a valid run id (what `new_run_id` makes, or any `[A-Za-z0-9._-]{1,64}` not starting with
/// a dot), so an id can never escape the runs directory.
pub fn valid_run_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The prompt's first line, trimmed to 200 characters.
pub fn first_line(prompt: &[u8]) -> String {
    let s = String::from_utf8_lossy(prompt);
    let line = s.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.trim().chars().take(200).collect()
}

/// SHA-256 of `data` as lowercase hex (FIPS 180-4), for the prompt fingerprint in meta.json.
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let long = vec![b'a'; 1000];
        assert_eq!(
            sha256_hex(&long),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    #[test]
    fn timestamps_are_utc_civil_time() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_736_951_400), "2025-01-15T14:30:00Z");
        let id = new_run_id(1_736_951_400);
        assert!(id.starts_with("20250115-143000-"), "{id}");
        assert!(valid_run_id(&id));
        assert!(!valid_run_id("../x") && !valid_run_id(".") && !valid_run_id(""));
    }

    #[test]
    fn result_event_is_parsed() {
        let r = RunResult::from_event(
            br#"{"type":"result","subtype":"success","is_error":false,"duration_ms":1234,"num_turns":3,"result":"done","total_cost_usd":0.0123}"#,
        )
        .expect("result");
        assert_eq!(r.cost, Some(0.0123));
        assert_eq!(r.duration_ms, Some(1234));
        assert_eq!(r.turns, Some(3));
        assert_eq!(r.text.as_deref(), Some("done"));
        assert!(RunResult::from_event(br#"{"type":"assistant"}"#).is_none());
        assert!(RunResult::from_event(b"not json").is_none());
    }
}
