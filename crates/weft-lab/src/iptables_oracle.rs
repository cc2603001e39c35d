//! The oracle of the proxy's iptables mode: kube-proxy's and weft's
//! `iptables-save` output compared chain by chain, after normalising what
//! legitimately differs (counters, the printed precision of
//! probabilities, the order of rules kube-proxy writes in Go map order).
//! Used by the oracle e2e test and by the scale benchmark (`weft-bench
//! --scenario proxy-scale`, iptables modes), so speed is never bought with
//! a different result.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::netns::sh;

/// Per `table/chain`, its rules without counters.
pub type Chains = BTreeMap<String, Vec<String>>;

/// Chains only kube-proxy makes, on purpose: its iptables monitor's canary
/// (weft checks its own entry points instead: `weft_proxy::shell::canary`).
const IGNORED_CHAINS: [&str; 1] = ["KUBE-PROXY-CANARY"];

/// Chains whose rule order kube-proxy leaves to Go's map iteration.
const UNORDERED: [&str; 4] = [
    "KUBE-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-PROXY-FIREWALL",
];

/// `tool` (`iptables-save`, `ip6tables-save`, `iptables-legacy-save`) in
/// network namespace `ns`, normalised: KUBE-* chains whole, built-in
/// chains only their jumps into KUBE-* chains.
pub fn chains(ns: &str, tool: &str) -> Result<Chains> {
    let out = sh("ip", &["netns", "exec", ns, tool])?;
    Ok(chains_of(&String::from_utf8_lossy(&out.stdout)))
}

/// The chain a rule jumps to (the word after its last `-j`), or "".
fn jump_target(rule: &str) -> &str {
    rule.rsplit("-j ")
        .next()
        .and_then(|t| t.split(' ').next())
        .unwrap_or_default()
}

/// The normalised chains of an `iptables-save` text.
pub fn chains_of(text: &str) -> Chains {
    let mut table = String::new();
    let mut chains = Chains::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split(' ').next().unwrap_or_default();
            if name.starts_with("KUBE-") && !IGNORED_CHAINS.contains(&name) {
                chains.entry(format!("{table}/{name}")).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let (chain, rest) = rule.split_once(' ').unwrap_or((rule, ""));
            let target = jump_target(rest);
            let ours = chain.starts_with("KUBE-") && !IGNORED_CHAINS.contains(&chain);
            let jump = target.starts_with("KUBE-")
                && !IGNORED_CHAINS.iter().any(|c| target.starts_with(c));
            if ours || jump {
                chains
                    .entry(format!("{table}/{chain}"))
                    .or_default()
                    .push(normalize(rest));
            }
        }
    }
    for (name, rules) in chains.iter_mut() {
        let chain = name.split_once('/').map(|(_, c)| c).unwrap_or_default();
        if UNORDERED.contains(&chain) {
            // the node-ports jump stays last in nat KUBE-SERVICES
            let last = rules
                .iter()
                .position(|r| r.contains("NOTE: this must be the last rule"))
                .map(|i| rules.remove(i));
            rules.sort();
            rules.extend(last);
        }
    }
    chains
}

/// Probabilities to 5 decimals (iptables-save prints the kernel's 32-bit
/// fraction with 11; both proxies write `%0.10f`, which rounds alike).
fn normalize(rule: &str) -> String {
    let mut out = Vec::new();
    let mut words = rule.split(' ').peekable();
    while let Some(w) = words.next() {
        out.push(w.to_string());
        if w == "--probability" {
            if let Some(p) = words.next() {
                let v: f64 = p.parse().unwrap_or(-1.0);
                out.push(format!("{v:.5}"));
            }
        }
    }
    out.join(" ")
}

/// A readable difference of two rule sets (chains missing on either side,
/// then rules that differ per chain).
pub fn difference(kube: &Chains, weft: &Chains) -> String {
    let mut out = String::new();
    for (name, k) in kube {
        match weft.get(name) {
            None => out.push_str(&format!("only kube-proxy has {name}: {k:#?}\n")),
            Some(w) if w != k => {
                out.push_str(&format!("{name} differs:\n"));
                let (mut i, mut j) = (0, 0);
                while i < k.len() || j < w.len() {
                    match (k.get(i), w.get(j)) {
                        (Some(a), Some(b)) if a == b => {
                            i += 1;
                            j += 1;
                        }
                        (Some(a), _) if !w[j..].contains(a) => {
                            out.push_str(&format!("  kube-proxy: {a}\n"));
                            i += 1;
                        }
                        (_, Some(b)) => {
                            out.push_str(&format!("  weft:       {b}\n"));
                            j += 1;
                        }
                        (Some(a), None) => {
                            out.push_str(&format!("  kube-proxy: {a}\n"));
                            i += 1;
                        }
                        (None, None) => break,
                    }
                }
            }
            Some(_) => {}
        }
    }
    for (name, w) in weft {
        if !kube.contains_key(name) {
            out.push_str(&format!("only weft has {name}: {w:#?}\n"));
        }
    }
    out
}

/// The prefixes of the per-service chains whose deletion kube-proxy
/// defers (its `isServiceChainName`).
const SERVICE_CHAINS: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-SEP-",
    "KUBE-FW-",
    "KUBE-EXT-",
];

/// `chains` without the per-service chains that no rule reaches from a
/// built-in chain. kube-proxy's iptables mode, past 1,000 endpoints
/// ("large-cluster mode"), deletes the service chains it no longer uses
/// at most once per sync period, during a sync; until then they carry no
/// traffic. Its fixed chains (KUBE-MARK-MASQ, …) stay whether used or not.
/// The oracle applies this to kube-proxy's side only: weft deletes its
/// unused chains in the sync that stops using them, and is held to that.
pub fn reachable(chains: &Chains) -> Chains {
    let mut seen: std::collections::BTreeSet<&str> = chains
        .keys()
        .filter(|name| {
            !name
                .split_once('/')
                .is_some_and(|(_, c)| c.starts_with("KUBE-"))
        })
        .map(String::as_str)
        .collect();
    let mut todo: Vec<&str> = seen.iter().copied().collect();
    while let Some(name) = todo.pop() {
        let table = name.split_once('/').map_or("", |(t, _)| t);
        for rule in chains.get(name).into_iter().flatten() {
            let key = format!("{table}/{}", jump_target(rule));
            if let Some((k, _)) = chains.get_key_value(&key) {
                if seen.insert(k.as_str()) {
                    todo.push(k.as_str());
                }
            }
        }
    }
    let service_chain = |name: &str| {
        let chain = name.split_once('/').map_or("", |(_, c)| c);
        SERVICE_CHAINS.iter().any(|p| chain.starts_with(p))
    };
    chains
        .iter()
        .filter(|(name, _)| seen.contains(name.as_str()) || !service_chain(name))
        .map(|(name, rules)| (name.clone(), rules.clone()))
        .collect()
}

/// The number of rules in `chains`.
pub fn rule_count(chains: &Chains) -> usize {
    chains.values().map(Vec::len).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBE: &str = "*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-PROXY-CANARY - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -j KUBE-NODEPORTS
-A KUBE-SERVICES -d 10.0.0.2/32 -j KUBE-SVC-B
-A KUBE-SERVICES -d 10.0.0.1/32 -j KUBE-SVC-A
-A KUBE-SVC-A -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-1
COMMIT
";

    #[test]
    fn counters_order_and_precision_are_normalised() {
        let kube = chains_of(KUBE);
        assert!(!kube.contains_key("nat/KUBE-PROXY-CANARY"));
        let services = &kube["nat/KUBE-SERVICES"];
        assert!(services[0].contains("10.0.0.1"), "{services:?}");
        assert!(
            services[2].contains("must be the last rule"),
            "{services:?}"
        );
        assert_eq!(
            kube["nat/KUBE-SVC-A"],
            vec!["-m statistic --mode random --probability 0.33333 -j KUBE-SEP-1"]
        );
        assert_eq!(rule_count(&kube), 5);
        let weft = KUBE
            .replace(":KUBE-SVC-A - [0:0]", ":KUBE-SVC-A - [5:300]")
            .replace("0.33333333349", "0.3333333333");
        assert_eq!(difference(&kube, &chains_of(&weft)), "");
        // a chain no rule jumps to (left for a later sync) is not reached
        let stale = format!(
            "{}:KUBE-SEP-OLD - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n-A KUBE-SEP-OLD -j DNAT\nCOMMIT\n",
            KUBE
        );
        let stale = chains_of(&stale.replacen("COMMIT\n", "", 1));
        assert!(stale.contains_key("nat/KUBE-SEP-OLD"));
        let kept = reachable(&stale);
        assert!(!kept.contains_key("nat/KUBE-SEP-OLD"));
        // an unused fixed chain stays: kube-proxy keeps those
        assert!(kept.contains_key("nat/KUBE-MARK-MASQ"));
        assert_eq!(kept.len(), kube.len() + 1);
        let other = chains_of(&KUBE.replace("10.0.0.2/32", "10.0.0.3/32"));
        let d = difference(&kube, &other);
        assert!(d.contains("nat/KUBE-SERVICES differs"), "{d}");
    }
}
