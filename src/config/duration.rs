//! Durations as users write them: "90s", "5m", "1h30m", "500ms", or a bare number of seconds ("30"),
//! the same forms kubectl's --request-timeout takes.
//!
//! May import: std.

use std::time::Duration;

/// The accepted form, for error messages.
pub const DURATION_FORM: &str =
    "a duration such as 30s, 5m, 1h30m or 500ms (units ms, s, m, h; a bare number means seconds)";

/// Parse a duration. Zero is allowed here; callers that need a positive value check it.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.starts_with('-') {
        return Err(format!("{input:?} is negative"));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| format!("{input:?} is too large"))?;
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let n_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(n_len);
        if num.is_empty() {
            return Err(format!("{input:?} is not a duration"));
        }
        let u_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(u_len);
        let unit_secs = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "{input:?} needs a unit after {num} (ms, s, m or h)"
                ))
            }
            other => return Err(format!("{input:?} has an unknown unit {other:?}")),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("{input:?} has a bad number {num:?}"))?;
        let part = Duration::try_from_secs_f64(n * unit_secs)
            .map_err(|_| format!("{input:?} is out of range"))?;
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("{input:?} is out of range"))?;
        rest = next;
    }
    Ok(total)
}

/// Format a duration compactly: 5m, 1h30m, 45s, 250ms.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    let h = secs / 3600;
    if h > 0 {
        out.push_str(&format!("{h}h"));
        secs %= 3600;
    }
    let m = secs / 60;
    if m > 0 {
        out.push_str(&format!("{m}m"));
        secs %= 60;
    }
    if secs > 0 {
        out.push_str(&format!("{secs}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_durations() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("30", 30_000),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("1m30s", 90_000),
            ("500ms", 500),
            ("1.5s", 1500),
            ("2h0m5s", 7_205_000),
        ];
        for (input, ms) in table {
            let d = parse_duration(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(d.as_millis(), u128::from(*ms), "{input}");
        }
    }

    #[test]
    fn bad_durations() {
        for (input, want) in [
            ("", "empty"),
            ("-5m", "negative"),
            ("5x", "unknown unit"),
            ("5 m", "unknown unit"),
            ("m", "not a duration"),
            ("1.2.3s", "bad number"),
            ("5m3", "needs a unit"),
        ] {
            let err = parse_duration(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
    }
}
