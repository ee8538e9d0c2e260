//! RFC 3339 timestamps (UTC, whole seconds) for session files and a kubectl-style age ("5m", "3d").
//! No calendar crate: the civil-date conversion is the standard days-from-epoch algorithm, and this
//! is its one copy in the crate: `run` (run ids, run records) and `git::branch` (branch
//! timestamps) call [`utc_parts`]. Parsing RFC 3339 is `kube::auth::parse_rfc3339` (`kube` sits
//! below `config`), re-offered here as [`parse_rfc3339`].
//!
//! May import: std, kube::auth (its RFC 3339 parser).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, as `2025-01-15T14:30:00Z`.
pub fn now_rfc3339() -> String {
    format_rfc3339(SystemTime::now())
}

/// Format a time as `YYYY-MM-DDTHH:MM:SSZ` (UTC; times before 1970 clamp to the epoch).
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_rfc3339_secs(secs)
}

/// Format seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_rfc3339_secs(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = utc_parts(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// Civil UTC date and time from seconds since the Unix epoch: (year, month, day, hour, minute,
/// second).
pub fn utc_parts(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // rem < 86_400, so every part fits in u32.
    let part = |v: u64| u32::try_from(v).unwrap_or(0);
    (
        y,
        m,
        d,
        part(rem / 3600),
        part(rem % 3600 / 60),
        part(rem % 60),
    )
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; None when malformed. The parser is
/// `kube::auth::parse_rfc3339` (one copy in the crate; it keeps fractional seconds).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    crate::kube::auth::parse_rfc3339(s)
}

/// kubectl-style age: 45s, 5m, 3h, 2d (and 2d3h under a week, like kubectl's short form).
pub fn format_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=3599 => format!("{}m", s / 60),
        3600..=86_399 => {
            let h = s / 3600;
            let m = (s % 3600) / 60;
            if h < 8 && m > 0 {
                format!("{h}h{m}m")
            } else {
                format!("{h}h")
            }
        }
        _ => {
            let days = s / 86_400;
            let h = (s % 86_400) / 3600;
            if days < 8 && h > 0 {
                format!("{days}d{h}h")
            } else {
                format!("{days}d")
            }
        }
    }
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2025-01-15T14:30:00Z",
            "2000-02-29T23:59:59Z",
            "2100-12-31T00:00:01Z",
        ] {
            let t = parse_rfc3339(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(format_rfc3339(t), s);
        }
        let t = parse_rfc3339("2025-01-15T15:30:00.123+01:00").unwrap();
        assert_eq!(format_rfc3339(t), "2025-01-15T14:30:00Z");
        assert_eq!(
            parse_rfc3339("2025-01-15T14:30:00Z")
                .unwrap()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            1_736_951_400
        );
        for bad in [
            "",
            "2025-01-15",
            "2025-13-01T00:00:00Z",
            "2025-01-15T14:30:00",
            "x025-01-15T14:30:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn utc_parts_and_seconds_format() {
        assert_eq!(utc_parts(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(utc_parts(951_868_799), (2000, 2, 29, 23, 59, 59));
        assert_eq!(utc_parts(1_736_951_400), (2025, 1, 15, 14, 30, 0));
        assert_eq!(format_rfc3339_secs(1_736_951_400), "2025-01-15T14:30:00Z");
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(Duration::from_secs(5)), "5s");
        assert_eq!(format_age(Duration::from_secs(300)), "5m");
        assert_eq!(format_age(Duration::from_secs(3 * 3600 + 600)), "3h10m");
        assert_eq!(format_age(Duration::from_secs(10 * 3600)), "10h");
        assert_eq!(format_age(Duration::from_secs(2 * 86_400 + 3600)), "2d1h");
        assert_eq!(format_age(Duration::from_secs(30 * 86_400)), "30d");
    }
}
