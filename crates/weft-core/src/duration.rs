//! Durations as Go and Kubernetes write them (`500ms`, `30s`, `15m`,
//! `1h0m30s`; a bare number is seconds), for flags and config files.

/// Parses `100ms`, `30s`, `15m`, `1h` (a bare number is seconds).
pub fn parse(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration (e.g. 500ms, 30s, 15m, 1h, 1m30s)");
    if s.is_empty() {
        return Err(bad());
    }
    // Go's form: number-unit pairs ("1h0m0s"); a bare number is seconds
    let mut rest = s;
    let mut secs = 0.0;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (num, tail) = rest.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        secs += match unit {
            "ms" => n / 1000.0,
            "" if tail.is_empty() && rest.len() == s.len() => n,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
        };
        rest = tail;
    }
    // a number beyond what a Duration holds is refused, not a panic
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations_and_their_limits() {
        assert_eq!(parse("1h0m30s"), Ok(Duration::from_secs(3630)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
        assert!(parse("5x").is_err());
        assert!(parse("").is_err());
        // beyond a Duration: an error (it panicked before)
        assert!(parse("99999999999999999999999h").is_err());
        assert!(parse("1e999").is_err());
    }
}
