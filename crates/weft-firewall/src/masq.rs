//! flannel's masquerade (`-ip-masq`) and forward (`-iptables-forward-rules`)
//! rules, as iptables chains `FLANNEL-POSTRTG` / `FLANNEL-FWD` and as the
//! nftables table `flannel-ipv4`.
//!
//! Masquerade: traffic from pods leaving the cluster network is
//! masqueraded (`--random-fully`), traffic within it is not, traffic that
//! kube-proxy marked (0x4000/0x4000) returns untouched, and traffic from
//! the host into the network is masqueraded.

use std::fmt::Write as _;

use ipnet::IpNet;

/// The kube-proxy masquerade mark flannel leaves alone.
pub const KUBE_PROXY_MARK: &str = "0x4000/0x4000";
pub const POSTRTG_CHAIN: &str = "FLANNEL-POSTRTG";
pub const FWD_CHAIN: &str = "FLANNEL-FWD";
pub const NFT_TABLE: &str = "flannel-ipv4";
pub const NFT_TABLE6: &str = "flannel-ipv6";
const MASQ_COMMENT: &str = "-m comment --comment \"flanneld masq\"";
const FWD_COMMENT: &str = "-m comment --comment \"flanneld forward\"";

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasqRules {
    /// The cluster network (FLANNEL_NETWORK or FLANNEL_IPV6_NETWORK).
    pub network: IpNet,
    /// This host's lease of the same family.
    pub subnet: IpNet,
    /// `-ip-masq`
    pub masquerade: bool,
    /// Fully random source ports (`--random-fully`); off with flannel
    /// v0.28's `-ip-masq-fully-random-disable`.
    pub fully_random: bool,
    /// `-iptables-forward-rules`
    pub forward: bool,
}

/// One table's worth of iptables rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRules {
    /// ip6tables rather than iptables.
    pub v6: bool,
    pub table: &'static str,
    pub chain: &'static str,
    /// The built-in chain that jumps to `chain`.
    pub hook: &'static str,
    /// The jump rule's arguments (after `-A/-I <hook>`).
    pub jump: String,
    /// Rules in `iptables-save` form, each starting with `-A <chain>`.
    pub rules: Vec<String>,
    /// Insert the jump first in the hook (POSTROUTING) rather than append.
    pub insert_first: bool,
}

impl MasqRules {
    pub fn v6(&self) -> bool {
        matches!(self.network, IpNet::V6(_))
    }

    /// The nftables family and table name.
    pub fn nft_table(&self) -> (&'static str, &'static str) {
        if self.v6() {
            ("ip6", NFT_TABLE6)
        } else {
            ("ip", NFT_TABLE)
        }
    }

    fn multicast(&self) -> &'static str {
        if self.v6() {
            "ff00::/8"
        } else {
            "224.0.0.0/4"
        }
    }

    /// The iptables chains to maintain (empty when neither option is on).
    pub fn iptables(&self) -> Vec<ChainRules> {
        let (net, sub) = (self.network.trunc(), self.subnet.trunc());
        let mcast = self.multicast();
        let v6 = self.v6();
        let mut out = Vec::new();
        if self.masquerade {
            let c = POSTRTG_CHAIN;
            let masq = if self.fully_random {
                "MASQUERADE --random-fully"
            } else {
                "MASQUERADE"
            };
            let rules = vec![
                format!("-A {c} -m mark --mark {KUBE_PROXY_MARK} {MASQ_COMMENT} -j RETURN"),
                format!("-A {c} -s {sub} -d {net} {MASQ_COMMENT} -j RETURN"),
                format!("-A {c} -s {net} -d {sub} {MASQ_COMMENT} -j RETURN"),
                format!("-A {c} ! -s {net} -d {sub} {MASQ_COMMENT} -j RETURN"),
                format!("-A {c} -s {net} ! -d {mcast} {MASQ_COMMENT} -j {masq}"),
                format!("-A {c} ! -s {net} -d {net} {MASQ_COMMENT} -j {masq}"),
            ];
            out.push(ChainRules {
                v6,
                table: "nat",
                chain: c,
                hook: "POSTROUTING",
                jump: format!("{MASQ_COMMENT} -j {c}"),
                rules,
                insert_first: true,
            });
        }
        if self.forward {
            let c = FWD_CHAIN;
            out.push(ChainRules {
                v6,
                table: "filter",
                chain: c,
                hook: "FORWARD",
                jump: format!("{FWD_COMMENT} -j {c}"),
                rules: vec![
                    format!("-A {c} -s {net} {FWD_COMMENT} -j ACCEPT"),
                    format!("-A {c} -d {net} {FWD_COMMENT} -j ACCEPT"),
                ],
                insert_first: false,
            });
        }
        out
    }

    /// The nftables transaction that replaces table `ip flannel-ipv4`
    /// atomically (create-if-missing, delete, define). `None` when neither
    /// option is on.
    pub fn nft(&self) -> Option<String> {
        if !self.masquerade && !self.forward {
            return None;
        }
        let (net, sub) = (self.network.trunc(), self.subnet.trunc());
        let (fam, t) = self.nft_table();
        let ip = fam;
        let mcast = self.multicast();
        let masq = if self.fully_random {
            "masquerade fully-random"
        } else {
            "masquerade"
        };
        let mut s = format!("table {fam} {t}\ndelete table {fam} {t}\ntable {fam} {t} {{\n");
        if self.masquerade {
            let _ = write!(
                s,
                "\tchain postrtg {{\n\
                 \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
                 \t\tmeta mark & 0x00004000 == 0x00004000 return\n\
                 \t\t{ip} saddr {sub} {ip} daddr {net} return\n\
                 \t\t{ip} saddr {net} {ip} daddr {sub} return\n\
                 \t\t{ip} saddr != {net} {ip} daddr {sub} return\n\
                 \t\t{ip} saddr {net} {ip} daddr != {mcast} {masq}\n\
                 \t\t{ip} saddr != {net} {ip} daddr {net} {masq}\n\
                 \t}}\n"
            );
        }
        if self.forward {
            let _ = write!(
                s,
                "\tchain forward {{\n\
                 \t\ttype filter hook forward priority filter; policy accept;\n\
                 \t\t{ip} saddr {net} accept\n\
                 \t\t{ip} daddr {net} accept\n\
                 \t}}\n"
            );
        }
        s.push_str("}\n");
        Some(s)
    }

    /// How many rules the nft table holds when intact.
    pub fn nft_rule_count(&self) -> usize {
        6 * self.masquerade as usize + 2 * self.forward as usize
    }
}

/// `iptables-restore --noflush` input for `chains`: each chain declared
/// (which flushes it) and refilled; `missing_jumps` are the hooks whose
/// jump rule is absent and must be added.
pub fn restore_text(chains: &[ChainRules], missing_jumps: &[&str]) -> String {
    let mut s = String::new();
    for table in ["nat", "filter"] {
        let in_table: Vec<&ChainRules> = chains.iter().filter(|c| c.table == table).collect();
        if in_table.is_empty() {
            continue;
        }
        let _ = writeln!(s, "*{table}");
        for c in &in_table {
            let _ = writeln!(s, ":{} - [0:0]", c.chain);
        }
        for c in &in_table {
            for r in &c.rules {
                let _ = writeln!(s, "{r}");
            }
            if missing_jumps.contains(&c.chain) {
                let verb = if c.insert_first { "-I" } else { "-A" };
                let pos = if c.insert_first { " 1" } else { "" };
                let _ = writeln!(s, "{verb} {}{pos} {}", c.hook, c.jump);
            }
        }
        s.push_str("COMMIT\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(masquerade: bool, forward: bool) -> MasqRules {
        MasqRules {
            network: "172.30.0.0/16".parse().expect("net"),
            subnet: "172.30.46.0/24".parse().expect("net"),
            masquerade,
            fully_random: true,
            forward,
        }
    }

    #[test]
    fn fully_random_can_be_disabled_as_in_flannel_v0_28() {
        let r = MasqRules {
            fully_random: false,
            ..article(true, false)
        };
        let rules = &r.iptables()[0].rules;
        assert!(
            rules.iter().any(|l| l.ends_with("-j MASQUERADE")),
            "{rules:?}"
        );
        assert!(rules.iter().all(|l| !l.contains("random-fully")));
        let nft = r.nft().expect("nft");
        assert!(
            nft.contains(" masquerade\n") && !nft.contains("fully-random"),
            "{nft}"
        );
    }

    #[test]
    fn iptables_restore_golden() {
        let chains = article(true, true).iptables();
        let text = restore_text(&chains, &["FLANNEL-POSTRTG", "FLANNEL-FWD"]);
        assert_eq!(
            text,
            "*nat\n\
             :FLANNEL-POSTRTG - [0:0]\n\
             -A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN\n\
             -A FLANNEL-POSTRTG -s 172.30.46.0/24 -d 172.30.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN\n\
             -A FLANNEL-POSTRTG -s 172.30.0.0/16 -d 172.30.46.0/24 -m comment --comment \"flanneld masq\" -j RETURN\n\
             -A FLANNEL-POSTRTG ! -s 172.30.0.0/16 -d 172.30.46.0/24 -m comment --comment \"flanneld masq\" -j RETURN\n\
             -A FLANNEL-POSTRTG -s 172.30.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n\
             -A FLANNEL-POSTRTG ! -s 172.30.0.0/16 -d 172.30.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully\n\
             -I POSTROUTING 1 -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG\n\
             COMMIT\n\
             *filter\n\
             :FLANNEL-FWD - [0:0]\n\
             -A FLANNEL-FWD -s 172.30.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n\
             -A FLANNEL-FWD -d 172.30.0.0/16 -m comment --comment \"flanneld forward\" -j ACCEPT\n\
             -A FORWARD -m comment --comment \"flanneld forward\" -j FLANNEL-FWD\n\
             COMMIT\n"
        );
        // with the jumps already in place only the chains are rewritten
        let text = restore_text(&chains, &[]);
        assert!(!text.contains("POSTROUTING") && !text.contains("-A FORWARD"));
    }

    #[test]
    fn forward_only_by_default_and_nothing_when_off() {
        let chains = article(false, true).iptables();
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].chain, "FLANNEL-FWD");
        assert!(article(false, false).iptables().is_empty());
        assert!(article(false, false).nft().is_none());
    }

    #[test]
    fn nft_golden() {
        let text = article(true, true).nft().expect("text");
        assert!(text.starts_with(
            "table ip flannel-ipv4\ndelete table ip flannel-ipv4\ntable ip flannel-ipv4 {\n"
        ));
        assert!(text.contains("\t\tmeta mark & 0x00004000 == 0x00004000 return\n"));
        assert!(text.contains(
            "\t\tip saddr 172.30.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random\n"
        ));
        assert!(text.contains("\t\tip saddr != 172.30.0.0/16 ip daddr 172.30.46.0/24 return\n"));
        assert!(text.contains("\t\ttype filter hook forward priority filter; policy accept;\n\t\tip saddr 172.30.0.0/16 accept\n"));
        assert_eq!(article(true, true).nft_rule_count(), 8);
        assert_eq!(article(false, true).nft_rule_count(), 2);
    }
}

#[cfg(test)]
mod v6_tests {
    use super::*;

    #[test]
    fn ipv6_rules_use_ip6_forms() {
        let r = MasqRules {
            network: "2001:db8:f::/48".parse().expect("net"),
            subnet: "2001:db8:f:e::/64".parse().expect("net"),
            masquerade: true,
            fully_random: true,
            forward: true,
        };
        let chains = r.iptables();
        assert!(chains.iter().all(|c| c.v6));
        assert!(chains[0].rules.contains(&"-A FLANNEL-POSTRTG -s 2001:db8:f::/48 ! -d ff00::/8 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully".to_string()));
        let nft = r.nft().expect("nft");
        assert!(nft.starts_with("table ip6 flannel-ipv6\n"));
        assert!(
            nft.contains("ip6 saddr 2001:db8:f::/48 ip6 daddr != ff00::/8 masquerade fully-random")
        );
    }
}
