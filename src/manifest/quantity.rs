//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `1e3`): strict parsing into exact integers
//! (millicores for CPU, bytes for memory and storage) and canonical formatting, plus the request
//! policy that turns limits into sensible requests.
//!
//! The grammar follows apimachinery's `resource.Quantity`: an unsigned decimal number followed by a
//! binary suffix (`Ki` … `Ei`), a decimal suffix (`n u m "" k M G T P E`) or an exponent (`e3`, `E-2`).
//! Negative quantities are rejected: no kodama setting can be negative.
//!
//! May import: std only.

/// A parsed quantity as an exact rational `num / den` (den is a power of ten or one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    num: u128,
    den: u128,
}

const MAX_DIGITS: usize = 30;

/// Parse a quantity into an exact value. The error says what is wrong with it (no value echo needed:
/// quantities are not secret, but callers add the field name).
fn parse_exact(s: &str) -> Result<Exact, String> {
    if s.is_empty() {
        return Err("empty quantity".into());
    }
    if s.trim() != s {
        return Err("quantity has surrounding whitespace".into());
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    if bytes[0] == b'+' {
        i = 1;
    } else if bytes[0] == b'-' {
        return Err("quantity must not be negative".into());
    }
    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let int_part = &s[start..i];
    let mut frac_part = "";
    if i < bytes.len() && bytes[i] == b'.' {
        let fs = i + 1;
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        frac_part = &s[fs..i];
    }
    if int_part.is_empty() && frac_part.is_empty() {
        return Err("quantity must start with a number".into());
    }
    if int_part.len() + frac_part.len() > MAX_DIGITS {
        return Err("quantity has too many digits".into());
    }
    let digits = format!("{int_part}{frac_part}");
    let mut num: u128 = digits
        .parse()
        .map_err(|_| "quantity is not a number".to_string())?;
    let mut den: u128 = 10u128.pow(frac_part.len() as u32);
    let suffix = &s[i..];
    // (multiplier numerator, multiplier denominator)
    let (mn, md): (u128, u128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        _ if suffix.starts_with(['e', 'E']) => {
            let exp = &suffix[1..];
            let (neg, digits) = match exp.as_bytes().first() {
                Some(b'-') => (true, &exp[1..]),
                Some(b'+') => (false, &exp[1..]),
                _ => (false, exp),
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 2
            {
                return Err(format!(
                    "unknown unit {suffix:?} (use m, k, M, G, Ki, Mi, Gi, …)"
                ));
            }
            let e: u32 = digits.parse().map_err(|_| "bad exponent".to_string())?;
            if e > 18 {
                return Err("quantity exponent is too large".into());
            }
            if neg {
                (1, 10u128.pow(e))
            } else {
                (10u128.pow(e), 1)
            }
        }
        _ => {
            return Err(format!(
                "unknown unit {suffix:?} (use m, k, M, G, Ki, Mi, Gi, …)"
            ))
        }
    };
    num = num
        .checked_mul(mn)
        .ok_or_else(|| "quantity is too large".to_string())?;
    den = den
        .checked_mul(md)
        .ok_or_else(|| "quantity is too precise".to_string())?;
    Ok(Exact { num, den })
}

fn div_ceil(a: u128, b: u128) -> u128 {
    a / b + u128::from(!a.is_multiple_of(b))
}

/// A CPU quantity in millicores, rounded up to 1m as the API server does. `"0.5"` → 500, `"2"` → 2000.
pub fn parse_cpu_millis(s: &str) -> Result<u64, String> {
    let e = parse_exact(s)?;
    let m = div_ceil(e.num * 1000, e.den);
    u64::try_from(m).map_err(|_| "quantity is too large".to_string())
}

/// A byte quantity (memory, storage), rounded up to whole bytes. `"1.5Gi"` → 1610612736.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let e = parse_exact(s)?;
    let b = div_ceil(e.num, e.den);
    u64::try_from(b).map_err(|_| "quantity is too large".to_string())
}

/// A whole-number quantity (extended resources such as `nvidia.com/gpu` must be integers).
pub fn parse_integer(s: &str) -> Result<u64, String> {
    let e = parse_exact(s)?;
    if e.num % e.den != 0 {
        return Err("must be a whole number".into());
    }
    u64::try_from(e.num / e.den).map_err(|_| "quantity is too large".to_string())
}

/// Canonical CPU text: whole cores as `"2"`, otherwise millicores as `"250m"`.
pub fn format_millis(m: u64) -> String {
    if m.is_multiple_of(1000) {
        format!("{}", m / 1000)
    } else {
        format!("{m}m")
    }
}

/// Canonical byte text: the largest binary suffix that divides exactly (`"1Gi"`, `"768Mi"`), else bytes.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("Ei", 1 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    if b == 0 {
        return "0".into();
    }
    for (u, n) in UNITS {
        if b.is_multiple_of(n) {
            return format!("{}{u}", b / n);
        }
    }
    format!("{b}")
}

/// The floor for a default CPU request (never zero; see [`default_cpu_request`]).
pub const MIN_CPU_REQUEST_MILLIS: u64 = 100;
/// The floor for a default memory request.
pub const MIN_MEMORY_REQUEST_BYTES: u64 = 128 << 20;

/// The CPU request kodama asks for when the user set only a limit: a quarter of the limit, at least
/// 100m, never above the limit. A session idles most of the time, so reserving the whole limit would
/// waste the cluster; a zero request (the earlier version's bug) would let the scheduler pack the node.
pub fn default_cpu_request(limit_millis: u64) -> u64 {
    (limit_millis / 4)
        .max(MIN_CPU_REQUEST_MILLIS)
        .min(limit_millis)
}

/// The memory request kodama asks for when the user set only a limit: half the limit, at least
/// 128Mi, never above the limit.
pub fn default_memory_request(limit_bytes: u64) -> u64 {
    (limit_bytes / 2)
        .max(MIN_MEMORY_REQUEST_BYTES)
        .min(limit_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_table() {
        for (s, want) in [
            ("1", 1000),
            ("0.5", 500),
            ("500m", 500),
            ("2", 2000),
            (".1", 100),
            ("1.", 1000),
            ("100m", 100),
            ("1e3", 1_000_000),
            ("1e-3", 1),
            ("1E-3", 1),
            ("0.0001", 1),
            ("250u", 1),
            ("1k", 1_000_000),
            ("+1", 1000),
        ] {
            assert_eq!(parse_cpu_millis(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn bytes_table() {
        for (s, want) in [
            ("2Gi", 2u64 << 30),
            ("1.5Gi", 3u64 << 29),
            ("512Mi", 512u64 << 20),
            ("1G", 1_000_000_000),
            ("128974848", 128_974_848),
            ("129e6", 129_000_000),
            ("10Ki", 10 * 1024),
            ("1m", 1),
        ] {
            assert_eq!(parse_bytes(s), Ok(want), "{s}");
        }
    }

    #[test]
    fn rejects_bad_quantities() {
        for s in [
            "", " 1", "1 ", "-1", "abc", "1GB", "1gi", "Gi", "1.2.3", "1e", "1e100", "0x10",
            "1_000", "1,5", "1 Gi", "1e3m",
        ] {
            assert!(parse_bytes(s).is_err(), "{s:?} should be rejected");
            assert!(parse_cpu_millis(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn integers_only_for_extended_resources() {
        assert_eq!(parse_integer("2"), Ok(2));
        assert_eq!(parse_integer("1k"), Ok(1000));
        assert!(parse_integer("0.5").is_err());
        assert!(parse_integer("500m").is_err());
    }

    #[test]
    fn formatting_is_canonical() {
        assert_eq!(format_millis(2000), "2");
        assert_eq!(format_millis(250), "250m");
        assert_eq!(format_millis(1500), "1500m");
        assert_eq!(format_bytes(1 << 30), "1Gi");
        assert_eq!(format_bytes(768 << 20), "768Mi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(format_bytes(0), "0");
    }

    #[test]
    fn default_requests_are_never_zero_and_never_above_the_limit() {
        assert_eq!(default_cpu_request(1000), 250);
        assert_eq!(default_cpu_request(500), 125);
        assert_eq!(default_cpu_request(4000), 1000);
        assert_eq!(default_cpu_request(200), 100);
        assert_eq!(default_cpu_request(50), 50);
        assert_eq!(default_cpu_request(1), 1);
        for l in [1u64, 7, 99, 100, 101, 399, 400, 1000, 64_000] {
            let r = default_cpu_request(l);
            assert!(r > 0 && r <= l, "{l} -> {r}");
        }
        assert_eq!(default_memory_request(2 << 30), 1 << 30);
        assert_eq!(default_memory_request(200 << 20), 128 << 20);
        assert_eq!(default_memory_request(64 << 20), 64 << 20);
    }
}
