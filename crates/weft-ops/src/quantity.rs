//! Kubernetes resource quantities (`250m`, `1Gi`, `0.5`, `1e3`), parsed into
//! an exact decimal so that `"1"` and `"1000m"` compare equal.

use std::fmt;

/// An exactly represented quantity: `±mantissa × 10^exp10`, normalised so
/// that the mantissa has no trailing zeros (zero is `0 × 10^0`, positive).
/// Two quantities are equal exactly when their normalised forms are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
}

/// Largest decimal exponent accepted; Kubernetes itself rejects far smaller
/// values, this only keeps the arithmetic in range.
const MAX_EXP10: i32 = 1000;

impl Quantity {
    /// Parses Kubernetes' quantity syntax: an optional sign, a decimal number
    /// (`1`, `1.5`, `.5`, `5.`), then one suffix: binary `Ki Mi Gi Ti Pi Ei`,
    /// decimal `n u m k M G T P E` or none, or an exponent `e3` / `E-2`.
    /// Returns `None` for anything else (including surrounding whitespace).
    pub fn parse(text: &str) -> Option<Quantity> {
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if let Some(&c) = bytes.first() {
            if c == b'+' || c == b'-' {
                negative = c == b'-';
                i = 1;
            }
        }
        let mut mantissa: u128 = 0;
        let mut exp10: i32 = 0;
        let mut digits = 0usize;
        let mut seen_point = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_digit() {
                digits += 1;
                let d = u128::from(c - b'0');
                match mantissa.checked_mul(10).and_then(|m| m.checked_add(d)) {
                    Some(m) => {
                        mantissa = m;
                        if seen_point {
                            exp10 -= 1;
                        }
                    }
                    // More significant digits than fit: only trailing zeros
                    // can be dropped without changing the value.
                    None if d == 0 => {
                        if !seen_point {
                            exp10 += 1;
                        }
                    }
                    None => return None,
                }
            } else if c == b'.' && !seen_point {
                seen_point = true;
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        let mut q = Quantity {
            negative,
            mantissa,
            exp10,
        }
        .normalised();
        let suffix = &text[i..];
        let binary_power = match suffix {
            "Ki" => Some(10),
            "Mi" => Some(20),
            "Gi" => Some(30),
            "Ti" => Some(40),
            "Pi" => Some(50),
            "Ei" => Some(60),
            _ => None,
        };
        if let Some(power) = binary_power {
            q.mantissa = q.mantissa.checked_mul(1u128 << power)?;
            return Some(q.normalised());
        }
        let shift = match suffix {
            "" => 0,
            "n" => -9,
            "u" => -6,
            "m" => -3,
            "k" => 3,
            "M" => 6,
            "G" => 9,
            "T" => 12,
            "P" => 15,
            "E" => 18,
            _ => parse_exponent(suffix)?,
        };
        q.exp10 = q.exp10.checked_add(shift)?;
        if q.exp10.abs() > MAX_EXP10 + 40 {
            return None;
        }
        Some(q.normalised())
    }

    /// True for quantities greater than zero.
    pub fn is_positive(&self) -> bool {
        !self.negative && self.mantissa != 0
    }

    fn normalised(mut self) -> Quantity {
        if self.mantissa == 0 {
            return Quantity {
                negative: false,
                mantissa: 0,
                exp10: 0,
            };
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.exp10 += 1;
        }
        self
    }
}

/// `e3`, `E-2`, `e+10`: an exponent suffix (digits only after the sign).
fn parse_exponent(suffix: &str) -> Option<i32> {
    let rest = suffix.strip_prefix(['e', 'E'])?;
    let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i32 = rest.parse().ok()?;
    if value.abs() > MAX_EXP10 {
        return None;
    }
    Some(value)
}

impl fmt::Display for Quantity {
    /// Scientific form of the exact value, e.g. `25e-2`; meant for debugging,
    /// reports quote the quantity as it was written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.negative { "-" } else { "" };
        if self.exp10 == 0 {
            write!(f, "{sign}{}", self.mantissa)
        } else {
            write!(f, "{sign}{}e{}", self.mantissa, self.exp10)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Quantity;

    fn q(text: &str) -> Quantity {
        match Quantity::parse(text) {
            Some(q) => q,
            None => panic!("{text:?} should parse"),
        }
    }

    #[test]
    fn equal_values_in_different_units() {
        let pairs = [
            ("1", "1000m"),
            ("0.5", "500m"),
            (".5", "500m"),
            ("5.", "5"),
            ("1Gi", "1024Mi"),
            ("1Ki", "1024"),
            ("1k", "1000"),
            ("1e3", "1k"),
            ("1E3", "1000"),
            ("1M", "1e6"),
            ("2G", "2000M"),
            ("1T", "1000G"),
            ("1P", "1000T"),
            ("1E", "1000P"),
            ("1Ei", "1024Pi"),
            ("1Ti", "1024Gi"),
            ("1Pi", "1024Ti"),
            ("1000n", "1u"),
            ("1000u", "1m"),
            ("+1", "1"),
            ("0", "0m"),
            ("-0", "0"),
            ("100e-2", "1"),
            ("0.001", "1m"),
            ("1.5Gi", "1536Mi"),
            ("01", "1"),
        ];
        for (a, b) in pairs {
            assert_eq!(q(a), q(b), "{a} == {b}");
        }
    }

    #[test]
    fn different_values() {
        let pairs = [("1", "999m"), ("1Gi", "1G"), ("1Mi", "1M"), ("-1", "1")];
        for (a, b) in pairs {
            assert_ne!(q(a), q(b), "{a} != {b}");
        }
    }

    #[test]
    fn sign_and_zero() {
        assert!(q("1m").is_positive());
        assert!(!q("0").is_positive());
        assert!(!q("0Gi").is_positive());
        assert!(!q("-1").is_positive());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "", "abc", "1 ", " 1", "1.2.3", "1x", "1mi", "1KI", "1e", "1e+", "Gi", ".", "-",
            "1e3.5", "1Gi5", "1e99999", "1e-99999",
        ] {
            assert_eq!(Quantity::parse(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn long_values_stay_exact() {
        assert_eq!(q("100000000000000000000000000000000000000000"), q("1e41"));
        assert_ne!(q("1e41"), q("1e40"));
        assert_eq!(
            Quantity::parse("123456789012345678901234567890123456789012"),
            None
        );
    }
}
