//! Noticing, within a second, that something outside removed the proxy's
//! rules (a firewalld reload, `iptables -F`, `nft flush ruleset`), so that
//! the sync loop restores them at once instead of at the next periodic
//! full sync. kube-proxy does the same with its KUBE-PROXY-CANARY chains,
//! checked once per sync period (30 s by default); here the proxy's own
//! entry points are checked, several times a second and cheaply:
//! - nftables mode: the `kube-proxy` table's `nat-prerouting` chain still
//!   jumps to `services`;
//! - iptables mode on nf_tables (iptables-nft): nat PREROUTING still jumps
//!   to KUBE-SERVICES and filter FORWARD to KUBE-FORWARD.
//!
//! Both are one netlink rule dump that the kernel filters to the one
//! chain ([`weft_kernel::chain_jumps`]): tens of microseconds, whatever
//! the size of the ruleset. (libnftables' `list chain` reads the whole
//! ruleset first: a second at 10,000 Services.)
//! - iptables mode on the legacy backend: x_tables has no such per-chain
//!   read, so the kernel's entry count and size of nat and filter are read
//!   (a `getsockopt`), and only when they changed since the last check
//!   are the jumps looked for with `iptables -C`.

use weft_firewall::xtables::{kernel, Family as XFamily};
use weft_firewall::{Backend, FirewallError, Iptables};
use weft_kernel::{chain_jumps, NFPROTO_IPV4, NFPROTO_IPV6};

use crate::render::iptables::HOOKS;
use crate::render::nft;

/// The iptables jumps whose loss means the rules were flushed.
fn canary_hooks() -> impl Iterator<Item = &'static crate::render::iptables::Hook> {
    HOOKS.iter().filter(|h| {
        (h.table == "nat" && h.chain == "PREROUTING")
            || (h.table == "filter" && h.rule.contains("-j KUBE-FORWARD"))
    })
}

/// A saved rule's words, as a shell would split them (double quotes
/// group words; the rules here hold no other quoting).
fn words(rule: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in rule.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The state of the legacy tables at the last check that found the rules
/// in place: (entries, size) of nat and filter.
pub type LegacySeen = Option<[(u32, u32); 2]>;

fn legacy_state(v6: bool) -> std::io::Result<[(u32, u32); 2]> {
    let family = if v6 { XFamily::V6 } else { XFamily::V4 };
    let fd = kernel::socket(family)?;
    let nat = kernel::info(&fd, family, "nat")?;
    let filter = kernel::info(&fd, family, "filter")?;
    Ok([
        (nat.num_entries, nat.size),
        (filter.num_entries, filter.size),
    ])
}

fn nf_family(v6: bool) -> u8 {
    if v6 {
        NFPROTO_IPV6
    } else {
        NFPROTO_IPV4
    }
}

/// Whether `chain` of `table` (nf_tables) jumps to `target`.
fn jumps_to(v6: bool, table: &str, chain: &str, target: &str) -> Result<bool, FirewallError> {
    let jumps = chain_jumps(nf_family(v6), table, chain).map_err(|e| FirewallError::Failed {
        cmd: format!("reading {table} {chain} over netlink"),
        stderr: e.to_string(),
    })?;
    Ok(jumps.iter().any(|j| j == target))
}

/// Whether the iptables entry points of one family are in place.
pub fn iptables_intact(
    ipt: &Iptables,
    v6: bool,
    seen: &mut LegacySeen,
) -> Result<bool, FirewallError> {
    if ipt.backend != Backend::Legacy {
        for hook in canary_hooks() {
            let target = hook.rule.rsplit(' ').next().unwrap_or_default();
            if !jumps_to(v6, hook.table, hook.chain, target)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    let state = legacy_state(v6).ok();
    if state.is_some() && state == *seen {
        return Ok(true);
    }
    let program = ipt.command(v6);
    for hook in canary_hooks() {
        let mut args = vec![
            "-w".to_string(),
            "-t".into(),
            hook.table.into(),
            "-C".into(),
            hook.chain.into(),
        ];
        args.extend(words(hook.rule));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        match weft_firewall::tool::run(&program, &refs, None) {
            Ok(_) => {}
            Err(FirewallError::Failed { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    *seen = state;
    Ok(true)
}

/// Whether the nftables table of one family is in place.
pub fn nft_intact(v6: bool) -> Result<bool, FirewallError> {
    jumps_to(v6, nft::TABLE, "nat-prerouting", "services")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_comments_stay_one_word() {
        assert_eq!(
            words(r#"-m comment --comment "kubernetes service portals" -j KUBE-SERVICES"#),
            [
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "KUBE-SERVICES"
            ]
        );
    }

    #[test]
    fn the_canaries_are_the_nat_and_forward_entry_points() {
        let hooks: Vec<String> = canary_hooks().map(|h| h.saved()).collect();
        for h in canary_hooks() {
            assert!(h.rule.ends_with("-j KUBE-SERVICES") || h.rule.ends_with("-j KUBE-FORWARD"));
        }
        assert_eq!(hooks.len(), 2, "{hooks:?}");
        assert!(hooks.iter().any(|h| h.starts_with("-A PREROUTING")));
        assert!(hooks.iter().any(|h| h.contains("KUBE-FORWARD")));
    }
}
