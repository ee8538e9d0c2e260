//! Kubernetes resource quantities ("500m", "2", "1.5Gi", "1e3"), parsed and validated the way the API
//! server does, so a bad value is caught locally with a clear message instead of by a 422 minutes later.
//!
//! A [`Quantity`] keeps the text the user wrote (that is what goes into manifests and session files) and
//! an exact value, exposed as millis (CPU) or bytes (memory, storage) for comparisons.
//!
//! May import: std, serde.

use std::fmt;

/// Binary suffixes and their power of 2.
const BINARY: &[(&str, u32)] = &[
    ("Ki", 10),
    ("Mi", 20),
    ("Gi", 30),
    ("Ti", 40),
    ("Pi", 50),
    ("Ei", 60),
];
/// Decimal SI suffixes and their power of 10.
const DECIMAL: &[(&str, i32)] = &[
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

/// The accepted form, for error messages.
pub const QUANTITY_FORM: &str =
    "a number with an optional suffix: 500m, 0.5, 2, 1.5Gi, 512Mi, 1e3 \
     (binary Ki Mi Gi Ti Pi Ei; decimal k M G T P E; m = thousandths)";

/// A parsed, non-negative Kubernetes quantity.
#[derive(Clone, PartialEq, Eq)]
pub struct Quantity {
    text: String,
    /// value = mantissa × 10^dec_exp × 2^bin_exp (mantissa holds every digit the user typed).
    mantissa: u128,
    dec_exp: i32,
    bin_exp: u32,
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantity({:?})", self.text)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Quantity {
    type Err = String;
    fn from_str(s: &str) -> Result<Quantity, String> {
        Quantity::parse(s)
    }
}

impl Quantity {
    /// Parse a quantity. Negative values are rejected (no resource may be negative); the error says
    /// what is wrong without the accepted form (callers add it with the key name).
    pub fn parse(input: &str) -> Result<Quantity, String> {
        let s = input.trim();
        if s.is_empty() {
            return Err("empty quantity".into());
        }
        if s.starts_with('-') {
            return Err(format!(
                "{input:?} is negative; resources cannot be negative"
            ));
        }
        let body = s.strip_prefix('+').unwrap_or(s);
        let num_len = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(num_len);
        if number.is_empty() || number == "." {
            return Err(format!("{input:?} does not start with a number"));
        }
        if number.matches('.').count() > 1 {
            return Err(format!("{input:?} has more than one decimal point"));
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 36 {
            return Err(format!("{input:?} has too many digits"));
        }
        let mantissa: u128 = if digits.is_empty() {
            0
        } else {
            digits
                .parse()
                .map_err(|_| format!("{input:?} is not a number"))?
        };
        let frac_len = i32::try_from(frac_part.len()).map_err(|_| "too long".to_string())?;
        let (dec, bin) = parse_suffix(suffix).ok_or_else(|| {
            let hint = match suffix {
                "Gb" | "GB" | "gb" | "g" => " (did you mean Gi or G?)",
                "Mb" | "MB" | "mb" => " (did you mean Mi or M?)",
                "Kb" | "KB" | "kb" | "K" => " (did you mean Ki or k?)",
                "Tb" | "TB" | "tb" => " (did you mean Ti or T?)",
                _ => "",
            };
            format!("{input:?} has an unknown suffix {suffix:?}{hint}")
        })?;
        let q = Quantity {
            text: s.to_string(),
            mantissa,
            dec_exp: dec - frac_len,
            bin_exp: bin,
        };
        // Reject values too large for our arithmetic (far beyond anything a cluster accepts).
        if q.scaled(3).is_none() {
            return Err(format!("{input:?} is too large"));
        }
        Ok(q)
    }

    /// The text as written (trimmed), which is what manifests carry.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the value is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// The value in thousandths, rounded up (1 → 1000, 500m → 500, 0.1m → 1). CPU is compared in these.
    pub fn millis(&self) -> u128 {
        self.scaled(3).unwrap_or(u128::MAX)
    }

    /// The value in whole units, rounded up (2Gi → 2147483648, 100m → 1). Memory and storage are bytes.
    pub fn value(&self) -> u128 {
        self.scaled(0).unwrap_or(u128::MAX)
    }

    /// True when the value is a whole number (extended resources such as GPUs must be).
    pub fn is_integer(&self) -> bool {
        self.scaled(3).is_some_and(|m| m % 1000 == 0)
    }

    /// value × 10^extra, rounded up; None on overflow.
    fn scaled(&self, extra: i32) -> Option<u128> {
        let mut n = self
            .mantissa
            .checked_mul(1u128.checked_shl(self.bin_exp)?)?;
        let exp = self.dec_exp + extra;
        if exp >= 0 {
            n = n.checked_mul(10u128.checked_pow(u32::try_from(exp).ok()?)?)?;
            Some(n)
        } else {
            let neg = u32::try_from(-exp).ok()?;
            match 10u128.checked_pow(neg) {
                Some(d) => Some(n.div_ceil(d)),
                // Dividing by more than u128::MAX: any non-zero value rounds up to 1.
                None => Some(u128::from(n > 0)),
            }
        }
    }
}

fn parse_suffix(suffix: &str) -> Option<(i32, u32)> {
    if let Some((_, p)) = BINARY.iter().find(|(s, _)| *s == suffix) {
        return Some((0, *p));
    }
    if let Some((_, p)) = DECIMAL.iter().find(|(s, _)| *s == suffix) {
        return Some((*p, 0));
    }
    // Decimal exponent: e3, E-2, e+6.
    let rest = suffix.strip_prefix(['e', 'E'])?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3 {
        return None;
    }
    let exp: i32 = rest.parse().ok()?;
    Some((exp, 0))
}

impl serde::Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Kubernetes quantity such as 500m, 2 or 4Gi")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u128 = 1 << 30;

    #[test]
    fn good_quantities() {
        // (input, millis, value)
        let table: &[(&str, u128, u128)] = &[
            ("1", 1000, 1),
            ("0.5", 500, 1),
            (".5", 500, 1),
            ("500m", 500, 1),
            ("2", 2000, 2),
            ("+2", 2000, 2),
            ("0", 0, 0),
            ("0.1m", 1, 1),
            ("250u", 1, 1),
            ("100n", 1, 1),
            ("2Gi", 2000 * GI, 2 * GI),
            ("1.5Gi", 1500 * GI, 3 * GI / 2),
            ("512Mi", 512_000 << 20, 512 << 20),
            ("1Ki", 1_024_000, 1024),
            ("1Ei", 1000 << 60, 1 << 60),
            ("1k", 1_000_000, 1000),
            ("4G", 4_000_000_000_000, 4_000_000_000),
            ("1M", 1_000_000_000, 1_000_000),
            ("1e3", 1_000_000, 1000),
            ("1E3", 1_000_000, 1000),
            ("1e+3", 1_000_000, 1000),
            ("5e-3", 5, 1),
            ("12345", 12_345_000, 12345),
            (" 2Gi ", 2000 * GI, 2 * GI),
        ];
        for (input, millis, value) in table {
            let q = Quantity::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(q.millis(), *millis, "millis of {input}");
            assert_eq!(q.value(), *value, "value of {input}");
            assert_eq!(q.as_str(), input.trim());
        }
    }

    #[test]
    fn bad_quantities() {
        // (input, a fragment the message must contain)
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("-1", "negative"),
            ("-500m", "negative"),
            ("2Gb", "did you mean Gi or G"),
            ("2GB", "unknown suffix"),
            ("2gi", "unknown suffix"),
            ("1.2.3", "more than one decimal point"),
            ("Gi", "does not start with a number"),
            (".", "does not start with a number"),
            ("1e", "unknown suffix"),
            ("1e3Gi", "unknown suffix"),
            ("2 Gi", "unknown suffix"),
            ("abc", "does not start with a number"),
            ("1e99999", "unknown suffix"),
            (
                "99999999999999999999999999999999999999999",
                "too many digits",
            ),
            ("999999999999999999999999999999Ei", "too large"),
        ];
        for (input, want) in table {
            let err = Quantity::parse(input).expect_err(input);
            assert!(
                err.contains(want),
                "{input:?}: {err:?} should contain {want:?}"
            );
        }
    }

    #[test]
    fn integers_and_zero() {
        assert!(Quantity::parse("1").unwrap().is_integer());
        assert!(Quantity::parse("1000m").unwrap().is_integer());
        assert!(!Quantity::parse("500m").unwrap().is_integer());
        assert!(!Quantity::parse("0.5").unwrap().is_integer());
        assert!(Quantity::parse("0").unwrap().is_zero());
        assert!(Quantity::parse("0.000").unwrap().is_zero());
        assert!(!Quantity::parse("1m").unwrap().is_zero());
    }

    #[test]
    fn serde_round_trip_keeps_the_text() {
        let q: Quantity = yaml_serde::from_str("\"1.5Gi\"").unwrap();
        assert_eq!(q.as_str(), "1.5Gi");
        let n: Quantity = yaml_serde::from_str("2").unwrap();
        assert_eq!(n.millis(), 2000);
        let f: Quantity = yaml_serde::from_str("0.5").unwrap();
        assert_eq!(f.millis(), 500);
        assert!(yaml_serde::from_str::<Quantity>("\"2Gb\"").is_err());
        assert_eq!(yaml_serde::to_string(&q).unwrap().trim(), "1.5Gi");
    }
}
