//! The proxy-scale scenario's repeated cold starts: one start per proxy
//! was too little (kube-proxy's own varied from 5.6 s to 23.6 s between
//! two runs of one command), so each starts --cold-starts times and the
//! median is reported, with every start beside it.

use std::collections::BTreeMap;

/// Sets `json`'s `cold_start_ms` to the median of `starts` (in the order
/// they ran) and keeps them all in `cold_starts_ms`.
pub(crate) fn record(json: &mut serde_json::Value, starts: Vec<Option<f64>>) {
    json["cold_start_ms"] = median(&starts).into();
    json["cold_starts_ms"] = starts.into();
}

/// The median cold start; one that did not finish counts as longer than
/// any that did, so `None` when half or more did not.
pub(crate) fn median(starts: &[Option<f64>]) -> Option<f64> {
    let n = starts.len();
    if n == 0 {
        return None;
    }
    let mut done: Vec<f64> = starts.iter().flatten().copied().collect();
    done.sort_by(f64::total_cmp);
    match (n % 2, done.get((n - 1) / 2), done.get(n / 2)) {
        (1, Some(m), _) => Some(*m),
        (0, Some(a), Some(b)) => Some((a + b) / 2.0),
        _ => None,
    }
}

/// Every cold start of the mode's proxies, in the order they ran.
pub(crate) fn print(mode: &str, row: &BTreeMap<&str, serde_json::Value>) {
    let each: Vec<String> = row
        .iter()
        .map(|(who, j)| {
            let ms: Vec<String> = j["cold_starts_ms"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_f64().map_or("-".into(), |ms| format!("{ms:.0}")))
                .collect();
            format!("{who} {}", ms.join(", "))
        })
        .collect();
    println!(
        "{mode:>15} cold starts, ms (median above): {}",
        each.join("; ")
    );
}

#[cfg(test)]
mod tests {
    use super::{median, record};

    #[test]
    fn the_json_holds_the_median_and_every_start_in_order() {
        let mut json = serde_json::json!({"cold_start_ms": 3.0, "rss_mib": 1.0});
        record(&mut json, vec![Some(8.0), None, Some(3.0)]);
        assert_eq!(json["cold_start_ms"], 8.0);
        assert_eq!(json["cold_starts_ms"], serde_json::json!([8.0, null, 3.0]));
        assert_eq!(json["rss_mib"], 1.0);
    }

    #[test]
    fn the_median_cold_start_counts_unfinished_starts_as_the_longest() {
        assert_eq!(median(&[Some(9.0), Some(1.0), Some(5.0)]), Some(5.0));
        assert_eq!(median(&[Some(4.0), Some(2.0)]), Some(3.0));
        assert_eq!(median(&[None, Some(1.0), Some(5.0)]), Some(5.0));
        assert_eq!(median(&[None, None, Some(5.0)]), None);
        assert_eq!(median(&[None, Some(2.0)]), None);
        assert_eq!(median(&[Some(7.0)]), Some(7.0));
        assert_eq!(median(&[]), None);
    }
}
